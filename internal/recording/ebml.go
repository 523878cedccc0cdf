package recording

import (
	"encoding/binary"
	"math"
)

// EBML element IDs of the Matroska subset written and read here
// (https://www.matroska.org/technical/elements.html).
const (
	idEBML               = 0x1A45DFA3
	idEBMLVersion        = 0x4286
	idEBMLReadVersion    = 0x42F7
	idEBMLMaxIDLength    = 0x42F2
	idEBMLMaxSizeLength  = 0x42F3
	idDocType            = 0x4282
	idDocTypeVersion     = 0x4287
	idDocTypeReadVersion = 0x4285

	idSegment = 0x18538067
	idVoid    = 0xEC
	idCRC32   = 0xBF

	idInfo           = 0x1549A966
	idTimestampScale = 0x2AD7B1
	idMuxingApp      = 0x4D80
	idWritingApp     = 0x5741
	idTitle          = 0x7BA9

	idTracks          = 0x1654AE6B
	idTrackEntry      = 0xAE
	idTrackNumber     = 0xD7
	idTrackUID        = 0x73C5
	idTrackType       = 0x83
	idFlagLacing      = 0x9C
	idCodecID         = 0x86
	idName            = 0x536E
	idDefaultDuration = 0x23E383
	idVideo           = 0xE0
	idPixelWidth      = 0xB0
	idPixelHeight     = 0xBA
	idColourSpace     = 0x2EB524
	idBlockAddMapping = 0x41E4
	idBlockAddIDValue = 0x41F0
	idBlockAddIDName  = 0x41A4
	idBlockAddIDType  = 0x41E7

	idTags        = 0x1254C367
	idTag         = 0x7373
	idTargets     = 0x63C0
	idTagTrackUID = 0x63C5
	idSimpleTag   = 0x67C8
	idTagName     = 0x45A3
	idTagString   = 0x4487

	idCluster         = 0x1F43B675
	idTimestamp       = 0xE7
	idBlockGroup      = 0xA0
	idBlock           = 0xA1
	idSimpleBlock     = 0xA3
	idBlockAdditions  = 0x75A1
	idBlockMore       = 0xA6
	idBlockAddID      = 0xEE
	idBlockAdditional = 0xA5
)

// unknownSize is the 8-byte size of an element whose end is not known when
// it is written (the Segment of a recording being streamed to disk).
var unknownSize = []byte{0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}

// appendID appends an element ID (its bytes as they are: 1 to 4).
func appendID(b []byte, id uint32) []byte {
	switch {
	case id >= 1<<24:
		return append(b, byte(id>>24), byte(id>>16), byte(id>>8), byte(id))
	case id >= 1<<16:
		return append(b, byte(id>>16), byte(id>>8), byte(id))
	case id >= 1<<8:
		return append(b, byte(id>>8), byte(id))
	}
	return append(b, byte(id))
}

// appendSize appends n as an EBML variable-length size, in the fewest bytes
// (all ones is reserved for "unknown", hence the -1).
func appendSize(b []byte, n uint64) []byte {
	l := 1
	for l < 8 && n >= 1<<(7*l)-1 {
		l++
	}
	return appendSizeLen(b, n, l)
}

// appendSizeLen appends n as a size of exactly l bytes.
func appendSizeLen(b []byte, n uint64, l int) []byte {
	v := n | 1<<(7*l)
	for i := l - 1; i >= 0; i-- {
		b = append(b, byte(v>>(8*i)))
	}
	return b
}

// sizeLen is the length of appendSize's encoding of n.
func sizeLen(n uint64) int {
	l := 1
	for l < 8 && n >= 1<<(7*l)-1 {
		l++
	}
	return l
}

func appendUint(b []byte, id uint32, v uint64) []byte {
	n := 1
	for n < 8 && v >= 1<<(8*n) {
		n++
	}
	b = appendID(b, id)
	b = appendSize(b, uint64(n))
	for i := n - 1; i >= 0; i-- {
		b = append(b, byte(v>>(8*i)))
	}
	return b
}

func appendString(b []byte, id uint32, s string) []byte {
	b = appendID(b, id)
	b = appendSize(b, uint64(len(s)))
	return append(b, s...)
}

func appendBinary(b []byte, id uint32, p []byte) []byte {
	b = appendID(b, id)
	b = appendSize(b, uint64(len(p)))
	return append(b, p...)
}

// appendMaster appends a master element around the children that fill
// appends.
func appendMaster(b []byte, id uint32, fill func([]byte) []byte) []byte {
	return appendBinary(b, id, fill(nil))
}

// readVint decodes an EBML variable-length integer at the start of p: the
// value with its length marker removed, its length, and whether all its
// value bits are ones (an unknown size). ok is false when p is too short or
// the first byte is 0.
func readVint(p []byte) (v uint64, n int, allOnes bool, ok bool) {
	if len(p) == 0 || p[0] == 0 {
		return 0, 0, false, false
	}
	n = 1
	for p[0]&(0x80>>(n-1)) == 0 {
		n++
	}
	if len(p) < n {
		return 0, 0, false, false
	}
	v = uint64(p[0] & (0xFF >> n))
	for i := 1; i < n; i++ {
		v = v<<8 | uint64(p[i])
	}
	return v, n, v == 1<<(7*n)-1, true
}

// readID decodes an element ID at the start of p (1 to 4 bytes, marker
// kept).
func readID(p []byte) (id uint32, n int, ok bool) {
	if len(p) == 0 || p[0] < 0x10 {
		return 0, 0, false // more than 4 bytes, or 0
	}
	n = 1
	for p[0]&(0x80>>(n-1)) == 0 {
		n++
	}
	if len(p) < n {
		return 0, 0, false
	}
	for i := range n {
		id = id<<8 | uint32(p[i])
	}
	return id, n, true
}

func beUint(p []byte) uint64 {
	var v uint64
	for _, c := range p {
		v = v<<8 | uint64(c)
	}
	return v
}

var le = binary.LittleEndian

const maxSize = math.MaxInt64
