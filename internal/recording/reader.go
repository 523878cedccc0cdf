package recording

import (
	"bufio"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"os"

	"github.com/framebus/framebus/framebus"
)

// Reader reads a recording frame by frame: Next gives a frame's metadata,
// ReadData its bytes (into the caller's buffer: a bus slot), checked
// against the cluster's CRC-32. It keeps nothing but a read buffer and the
// current frame's record. It is not safe for concurrent use.
type Reader struct {
	path string
	f    *os.File
	size int64 // the file's size when opened
	br   *bufio.Reader
	pos  int64 // offset of br's next byte

	inSeg   bool
	segEnd  int64 // -1: unknown size (ends at the next EBML header or the file's end)
	format  framebus.Format
	bus     string
	have    bool              // a FRAMEBUS_FORMAT in this segment
	uids    map[uint64]uint64 // track UID -> track number
	formats map[uint64]framebus.Format
	end     *End
	frames  uint64

	// The frame Next returned, whose bytes ReadData reads.
	left    int    // its bytes not read yet
	crc     uint32 // the CRC-32 so far of its cluster
	want    uint32 // the CRC-32 stored in the cluster
	dataAt  int64  // where its bytes start
	seq     uint64
	scratch []byte
	rec     []byte  // the frame record (Frame.UserMeta aliases it)
	small   [4]byte // a CRC-32 or a block header (a local array would escape to the heap through io.ReadFull)
}

// maxMeta bounds the elements read whole (Info, Tracks, Tags, a frame's
// headers): real ones are a few hundred bytes.
const maxMeta = 1 << 20

// Open opens the recording at path and reads its first format.
func Open(path string) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if fi.IsDir() {
		f.Close()
		return nil, fmt.Errorf("%s is a directory, not a recording", path)
	}
	r := &Reader{path: path, f: f, size: fi.Size(), br: bufio.NewReaderSize(f, 1<<16), scratch: make([]byte, 0, 512)}
	if err := r.start(); err != nil {
		f.Close()
		return nil, err
	}
	return r, nil
}

// start reads the file's first segment up to its first cluster.
func (r *Reader) start() error {
	if r.size == 0 {
		return fmt.Errorf("%w: %s is empty (a recorder that got no frame writes nothing)", ErrNotRecording, r.path)
	}
	for !r.have {
		at := r.pos
		id, size, err := r.header()
		if err == io.EOF {
			return fmt.Errorf("%w: %s has no frame format (FRAMEBUS_FORMAT) before its end", ErrNotRecording, r.path)
		}
		if err != nil {
			return err
		}
		if id == idCluster {
			return fmt.Errorf("%w: %s is a Matroska file without framebus's FRAMEBUS_FORMAT tag: record one with framebus record --lossless", ErrNotRecording, r.path)
		}
		if err := r.element(at, id, size); err != nil {
			return err
		}
	}
	return nil
}

// Path is the file's path.
func (r *Reader) Path() string { return r.path }

// Format is the format of the frames Next returns now.
func (r *Reader) Format() framebus.Format { return r.format }

// Bus is the name of the recorded bus.
func (r *Reader) Bus() string { return r.bus }

// Frames is the frames Next has returned since the start (or Rewind).
func (r *Reader) Frames() uint64 { return r.frames }

// End is the recording's FRAMEBUS_END, once Next has passed it: ok is false
// for a recording that was interrupted (it has none).
func (r *Reader) End() (End, bool) {
	if r.end == nil {
		return End{}, false
	}
	return *r.end, true
}

// Close closes the file.
func (r *Reader) Close() error { return r.f.Close() }

// Rewind goes back to the first frame.
func (r *Reader) Rewind() error {
	if _, err := r.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	r.br.Reset(r.f)
	r.pos, r.inSeg, r.have, r.end, r.frames, r.left = 0, false, false, nil, 0, 0
	r.formats, r.uids = nil, nil
	return r.start()
}

// Next reads the metadata of the next frame into fr (Format, Size and the
// record; UserMeta is valid until the next call). A frame whose Format
// differs from the previous one's is the first of a new format. At the end
// it returns io.EOF (End says whether the recording was marked whole), a
// *TruncatedError when the file is cut short inside a frame, or an error
// wrapping ErrCorrupt.
func (r *Reader) Next(fr *Frame) error {
	if r.left > 0 { // the previous frame's bytes were not read: skip them
		if _, err := r.br.Discard(r.left); err != nil {
			r.frames--
			return r.truncated(r.dataAt)
		}
		r.pos += int64(r.left)
		r.left = 0
	}
	for {
		at := r.pos
		if r.inSeg && r.segEnd >= 0 && at >= r.segEnd {
			r.inSeg, r.have = false, false
		}
		id, size, err := r.header()
		if err == io.EOF && r.end != nil && r.end.Frames > r.frames {
			// Marked whole, but frames are missing: a copy cut short.
			return r.truncated(at)
		}
		if err != nil {
			return err
		}
		if id != idCluster {
			if err := r.element(at, id, size); err != nil {
				return err
			}
			continue
		}
		if !r.have {
			return fmt.Errorf("%w: %s: a frame at offset %d before its segment's FRAMEBUS_FORMAT", ErrCorrupt, r.path, at)
		}
		if size < 0 {
			return fmt.Errorf("%w: %s: a cluster of unknown size at offset %d", ErrCorrupt, r.path, at)
		}
		end := r.pos + size
		if end > r.size {
			return r.truncated(at)
		}
		return r.cluster(at, end, fr)
	}
}

// cluster reads one frame's cluster up to its bytes.
func (r *Reader) cluster(at, end int64, fr *Frame) error {
	bad := func(why string) error {
		return fmt.Errorf("%w: %s: the frame at offset %d: %s", ErrCorrupt, r.path, at, why)
	}
	// CRC-32 first, then Timestamp, then the BlockGroup.
	id, size, err := r.header()
	if err != nil {
		return r.truncated(at)
	}
	if id != idCRC32 || size != 4 {
		return bad("no CRC-32 element first")
	}
	c := r.small[:]
	if _, err := io.ReadFull(r.br, c); err != nil {
		return r.truncated(at)
	}
	r.pos += 4
	r.want = le.Uint32(c)
	r.crc = 0
	got := false
	for r.pos < end {
		hdrAt := r.pos
		id, size, raw, err := r.headerRaw()
		if err != nil {
			return r.truncated(at)
		}
		r.crc = crc32.Update(r.crc, crc32.IEEETable, raw)
		if size < 0 || r.pos+size > end {
			return bad(fmt.Sprintf("element 0x%X at offset %d overruns the cluster", id, hdrAt))
		}
		switch id {
		case idBlockGroup:
			continue // its children follow
		case idBlockAdditions, idBlockMore:
			continue
		case idBlock:
			if size < 4 {
				return bad("a block of less than 4 bytes")
			}
			if r.pos+size != end {
				return bad("the block is not the cluster's last element")
			}
			h := r.small[:]
			if _, err := io.ReadFull(r.br, h); err != nil {
				return r.truncated(at)
			}
			r.pos += 4
			r.crc = crc32.Update(r.crc, crc32.IEEETable, h)
			if h[0]&0x80 == 0 {
				return bad("a block with a track number of more than one byte")
			}
			f, ok := r.formats[uint64(h[0]&0x7F)]
			if !ok {
				return bad(fmt.Sprintf("a block of track %d, which has no FRAMEBUS_FORMAT", h[0]&0x7F))
			}
			if !got {
				return bad("no framebus frame record (BlockAdditional) before the block")
			}
			r.format, fr.Format = f, f
			fr.Size = int(size - 4)
			if r.format.PixelFormat != framebus.FormatMJPEG && uint64(fr.Size) != r.format.FrameSize {
				return bad(fmt.Sprintf("a frame of %d bytes, the format has %d", fr.Size, r.format.FrameSize))
			}
			if uint64(fr.Size) > r.format.FrameSize {
				return bad(fmt.Sprintf("a frame of %d bytes, more than the format's %d", fr.Size, r.format.FrameSize))
			}
			r.left, r.dataAt, r.seq = fr.Size, r.pos, fr.Seq
			r.frames++
			return nil
		}
		if size > maxMeta {
			return bad(fmt.Sprintf("element 0x%X of %d bytes", id, size))
		}
		p, err := r.read(int(size))
		if err != nil {
			return r.truncated(at)
		}
		r.crc = crc32.Update(r.crc, crc32.IEEETable, p)
		if id == idBlockAdditional {
			r.rec = append(r.rec[:0], p...)
			if err := decodeRecord(r.rec, fr); err != nil {
				return bad(err.Error())
			}
			got = true
		}
	}
	return bad("no block")
}

// ReadData reads the bytes of the frame Next returned into dst (at least
// Frame.Size bytes) and checks its cluster's CRC-32.
func (r *Reader) ReadData(dst []byte) error {
	n := r.left
	if len(dst) < n {
		return fmt.Errorf("recording: buffer of %d bytes for a frame of %d", len(dst), n)
	}
	if _, err := io.ReadFull(r.br, dst[:n]); err != nil {
		r.frames-- // not whole
		return r.truncated(r.dataAt)
	}
	r.pos += int64(n)
	r.left = 0
	if crc32.Update(r.crc, crc32.IEEETable, dst[:n]) != r.want {
		return fmt.Errorf("%w: %s: frame %d (seq %d) at offset %d fails its CRC-32", ErrCorrupt, r.path, r.frames, r.seq, r.dataAt)
	}
	return nil
}

// truncated is the error of a file cut short inside the element at at.
func (r *Reader) truncated(at int64) error {
	return &TruncatedError{Path: r.path, Frames: r.frames, Offset: at, Size: r.size}
}

// element handles an element outside clusters: the EBML header, a Segment,
// Info, Tracks, Tags; anything else is skipped.
func (r *Reader) element(at int64, id uint32, size int64) error {
	switch id {
	case idEBML:
		p, err := r.readWhole(at, size)
		if err != nil {
			return err
		}
		if dt := findString(p, idDocType); dt != "matroska" {
			return fmt.Errorf("%w: %s: EBML DocType %q, not matroska", ErrNotRecording, r.path, dt)
		}
		r.inSeg = false
		return nil
	case idSegment:
		r.inSeg, r.have = true, false
		r.formats, r.uids = map[uint64]framebus.Format{}, map[uint64]uint64{}
		r.segEnd = -1
		if size >= 0 {
			r.segEnd = r.pos + size
		}
		return nil
	}
	if !r.inSeg {
		return fmt.Errorf("%w: %s: element 0x%X at offset %d outside a Matroska segment", ErrNotRecording, r.path, id, at)
	}
	if size < 0 {
		return fmt.Errorf("%w: %s: element 0x%X of unknown size at offset %d", ErrCorrupt, r.path, id, at)
	}
	if id == idTracks {
		p, err := r.readWhole(at, size)
		if err != nil {
			return err
		}
		walk(p, func(id uint32, data []byte) bool {
			if id == idTrackEntry {
				var num, uid uint64
				walk(data, func(id uint32, v []byte) bool {
					switch id {
					case idTrackNumber:
						num = beUint(v)
					case idTrackUID:
						uid = beUint(v)
					}
					return true
				})
				r.uids[uid] = num
			}
			return true
		})
		return nil
	}
	if id != idTags {
		if r.pos+size > r.size {
			return r.truncated(at)
		}
		if _, err := r.br.Discard(int(size)); err != nil {
			return r.truncated(at)
		}
		r.pos += size
		return nil
	}
	p, err := r.readWhole(at, size)
	if err != nil {
		return err
	}
	return r.tags(at, p)
}

// tags reads the framebus tags of a Tags element.
func (r *Reader) tags(at int64, p []byte) error {
	var err error
	walk(p, func(id uint32, data []byte) bool {
		if id != idTag {
			return true
		}
		var uid uint64
		walk(data, func(id uint32, data []byte) bool {
			if id == idTargets {
				walk(data, func(id uint32, v []byte) bool {
					if id == idTagTrackUID {
						uid = beUint(v)
					}
					return true
				})
			}
			return true
		})
		walk(data, func(id uint32, data []byte) bool {
			if id != idSimpleTag {
				return true
			}
			name, value := findString(data, idTagName), findString(data, idTagString)
			switch name {
			case "FRAMEBUS_FORMAT":
				var t formatTag
				if e := json.Unmarshal([]byte(value), &t); e != nil {
					err = fmt.Errorf("%w: %s: FRAMEBUS_FORMAT at offset %d: %v", ErrCorrupt, r.path, at, e)
					return false
				}
				f, e := t.format()
				if e != nil {
					err = fmt.Errorf("%w: %s: FRAMEBUS_FORMAT at offset %d: %v", ErrCorrupt, r.path, at, e)
					return false
				}
				num, ok := r.uids[uid]
				if !ok {
					err = fmt.Errorf("%w: %s: FRAMEBUS_FORMAT at offset %d for a track that is not there", ErrCorrupt, r.path, at)
					return false
				}
				if !r.have {
					r.format = f // the first format: until a frame says otherwise
				}
				r.formats[num], r.have = f, true
			case "FRAMEBUS_BUS":
				r.bus = value
			case "FRAMEBUS_END":
				var e End
				if je := json.Unmarshal([]byte(value), &e); je != nil {
					err = fmt.Errorf("%w: %s: FRAMEBUS_END at offset %d: %v", ErrCorrupt, r.path, at, je)
					return false
				}
				r.end = &e
			}
			return true
		})
		return err == nil
	})
	return err
}

// header reads an element's ID and size (-1: unknown). io.EOF at the end of
// the file between elements.
func (r *Reader) header() (uint32, int64, error) {
	id, size, _, err := r.headerRaw()
	return id, size, err
}

// headerRaw is header that also returns the header's bytes (valid until the
// next read).
func (r *Reader) headerRaw() (uint32, int64, []byte, error) {
	at := r.pos
	p, err := r.br.Peek(12)
	if len(p) == 0 {
		if err == io.EOF {
			return 0, 0, nil, io.EOF
		}
		return 0, 0, nil, err
	}
	id, n, ok := readID(p)
	if !ok {
		if err != nil && p[0] >= 0x10 { // an ID cut short by the end of the file
			return 0, 0, nil, r.truncated(at)
		}
		return 0, 0, nil, fmt.Errorf("%w: %s: no EBML element ID at offset %d", ErrCorrupt, r.path, at)
	}
	v, m, unknown, ok := readVint(p[n:])
	if !ok {
		if err != nil {
			return 0, 0, nil, r.truncated(at)
		}
		return 0, 0, nil, fmt.Errorf("%w: %s: bad element size at offset %d", ErrCorrupt, r.path, at)
	}
	raw := p[:n+m]
	r.br.Discard(n + m)
	r.pos += int64(n + m)
	if unknown {
		return id, -1, raw, nil
	}
	if v > maxSize {
		return 0, 0, nil, fmt.Errorf("%w: %s: element size %d at offset %d", ErrCorrupt, r.path, v, at)
	}
	return id, int64(v), raw, nil
}

// read reads n bytes (at most maxMeta) into the scratch buffer, valid until
// the next read; it grows only for an unusually large element.
func (r *Reader) read(n int) ([]byte, error) {
	if n > cap(r.scratch) {
		r.scratch = make([]byte, n)
	}
	p := r.scratch[:n]
	if _, err := io.ReadFull(r.br, p); err != nil {
		return nil, err
	}
	r.pos += int64(n)
	return p, nil
}

// readWhole reads the data of a metadata element (bounded).
func (r *Reader) readWhole(at, size int64) ([]byte, error) {
	if size < 0 || size > maxMeta {
		return nil, fmt.Errorf("%w: %s: element at offset %d of %d bytes", ErrCorrupt, r.path, at, size)
	}
	if r.pos+size > r.size {
		return nil, r.truncated(at)
	}
	p := make([]byte, size)
	if _, err := io.ReadFull(r.br, p); err != nil {
		return nil, r.truncated(at)
	}
	r.pos += size
	return p, nil
}

// walk calls fn for each element in p (stopping when fn says false or an
// element overruns p).
func walk(p []byte, fn func(id uint32, data []byte) bool) {
	for len(p) > 0 {
		id, n, ok := readID(p)
		if !ok {
			return
		}
		v, m, unknown, ok := readVint(p[n:])
		if !ok || unknown || v > uint64(len(p)-n-m) {
			return
		}
		if !fn(id, p[n+m:n+m+int(v)]) {
			return
		}
		p = p[n+m+int(v):]
	}
}

// findString is the data of the first child id of p, as a string.
func findString(p []byte, id uint32) string {
	var s string
	walk(p, func(i uint32, data []byte) bool {
		if i == id {
			s = string(data)
			return false
		}
		return true
	})
	return s
}
