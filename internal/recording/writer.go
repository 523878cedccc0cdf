package recording

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"time"

	"github.com/framebus/framebus/framebus"
)

// File is what a Writer writes to: an *os.File. Seek and WriteAt rewrite
// the header region in place; Truncate cuts a frame that did not fit back
// off the file.
type File interface {
	io.Writer
	io.WriterAt
	io.Seeker
	Truncate(size int64) error
}

// regionSize is the room kept after a Segment's start for its Info, Tracks
// and Tags, rewritten in place when a format is added and at the end (a
// Void element fills the rest). One format takes about 700 bytes: a
// recording with more format changes than fit starts a new Segment.
const regionSize = 64 << 10

// track is one format of the recording: a video track of the segment.
type track struct {
	number, uid uint64
	format      framebus.Format
	generation  uint64
	tag         formatTag
}

// Writer streams a recording to a file: per frame, one write of a few
// hundred bytes and one of the frame's bytes, nothing kept in memory but a
// header buffer. It is not safe for concurrent use.
type Writer struct {
	f    File
	bus  string
	app  string
	off  int64 // bytes written and whole: the file ends at a frame boundary here
	buf  []byte
	err  error // sticky
	end  End
	t0   int64  // capture time of the first frame: cluster timestamp 0
	last uint64 // the last cluster timestamp (µs)

	inSeg     bool
	segSizeAt int64 // where the current Segment's 8-byte size is (written as unknown)
	regionAt  int64 // where its header region starts
	tracks    []track
	cur       *track
}

// NewWriter starts a recording of the bus named bus in f (empty, at its
// start). app names the writing application in the file's Info.
func NewWriter(f File, bus, app string) *Writer {
	return &Writer{f: f, bus: bus, app: app, buf: make([]byte, 0, 512)}
}

// Frames returns the frames written.
func (w *Writer) Frames() uint64 { return w.end.Frames }

// Formats returns the formats recorded so far (a track each).
func (w *Writer) Formats() int { return w.end.Formats }

// Continues reports whether a frame of format f goes into the current
// track: writing it changes nothing before the file's end but the frame.
func (w *Writer) Continues(f framebus.Format) bool { return w.cur != nil && w.cur.format == f }

// Mark is the end of the file after a whole frame, to go back to with Undo.
type Mark struct {
	off  int64
	end  End
	last uint64
}

// Mark returns where the file ends now.
func (w *Writer) Mark() Mark { return Mark{off: w.off, end: w.end, last: w.last} }

// Undo cuts the file back to m and forgets what was written since,
// including a write error it caused: for a frame whose bytes turned out bad
// only after WriteFrame read them (they were a view into memory that
// faulted, or that changed while written). Only frames of the current track
// (Continues) may be undone: a new track rewrote the header region, which
// Undo does not restore.
func (w *Writer) Undo(m Mark) error {
	if err := w.f.Truncate(m.off); err != nil {
		return err
	}
	if _, err := w.f.Seek(m.off, io.SeekStart); err != nil {
		return err
	}
	w.off, w.end, w.last, w.err = m.off, m.end, m.last, nil
	return nil
}

// Size returns the bytes of whole elements written.
func (w *Writer) Size() int64 { return w.off }

// WriteError is a write that failed: the file was cut back to its last
// whole frame, which it keeps.
type WriteError struct {
	Frames uint64 // whole frames in the file
	Size   int64  // the file's size after the cut
	Err    error  // the write's error (syscall.ENOSPC on a full disk)
}

func (e *WriteError) Error() string {
	return fmt.Sprintf("write failed after %d frames (%d bytes kept, up to the last whole frame): %v", e.Frames, e.Size, e.Err)
}
func (e *WriteError) Unwrap() error { return e.Err }

// write appends the parts of one element as a whole, or cuts the file back.
func (w *Writer) write(parts ...[]byte) error {
	if w.err != nil {
		return w.err
	}
	var n int64
	for _, p := range parts {
		m, err := w.f.Write(p)
		n += int64(m)
		if err == nil && m < len(p) {
			err = io.ErrShortWrite
		}
		if err != nil {
			// Cut the partial element off: the file ends at a whole frame.
			if terr := w.f.Truncate(w.off); terr == nil {
				w.f.Seek(w.off, io.SeekStart)
			}
			w.err = &WriteError{Frames: w.end.Frames, Size: w.off, Err: err}
			return w.err
		}
	}
	w.off += n
	return nil
}

// rewrite writes b over the file at off (the header region, a size).
func (w *Writer) rewrite(b []byte, off int64) error {
	if _, err := w.f.WriteAt(b, off); err != nil {
		w.err = &WriteError{Frames: w.end.Frames, Size: w.off, Err: err}
		return w.err
	}
	return nil
}

// WriteFrame appends fr (its Format, Data and metadata). A frame whose format
// differs from the previous one's adds a track (or, past regionSize, starts
// a new Segment).
func (w *Writer) WriteFrame(fr *Frame) error {
	if w.err != nil {
		return w.err
	}
	if uint64(len(fr.Data)) > fr.Format.FrameSize || (fr.Format.PixelFormat != framebus.FormatMJPEG && uint64(len(fr.Data)) != fr.Format.FrameSize) {
		return fmt.Errorf("recording: frame of %d bytes for a format of %d", len(fr.Data), fr.Format.FrameSize)
	}
	if len(fr.UserMeta) > framebus.UserMetaMax {
		return fmt.Errorf("recording: %d bytes of user metadata, at most %d", len(fr.UserMeta), framebus.UserMetaMax)
	}
	if w.end.Frames == 0 {
		w.t0 = fr.CaptureNS
		w.end.FirstSeq = fr.Seq
	}
	if w.cur == nil || fr.Format != w.cur.format {
		if err := w.addTrack(fr); err != nil {
			return err
		}
	}
	// The cluster's timestamp: µs since the first frame's capture, never
	// going back (a source whose clock does).
	ts := uint64(0)
	if d := fr.CaptureNS - w.t0; d > 0 {
		ts = uint64(d / 1000)
	}
	if w.end.Frames > 0 && ts <= w.last {
		ts = w.last + 1
	}
	w.last = ts

	// Cluster { CRC-32, Timestamp, BlockGroup { BlockAdditions, Block } }:
	// everything but the frame's bytes is built here, in one buffer.
	b := w.buf[:0]
	rec := len(fr.UserMeta) + recordSize
	more := elemLen(idBlockAddID, 1) + elemLen(idBlockAdditional, rec)
	adds := elemLen(idBlockMore, more)
	blockData := 4 + len(fr.Data) // track number, relative timestamp, flags
	group := elemLen(idBlockAdditions, adds) + elemLen(idBlock, blockData)
	content := 6 + (2 + uintLen(ts)) + elemLen(idBlockGroup, group)
	b = appendID(b, idCluster)
	b = appendSize(b, uint64(content))
	crcAt := len(b) + 2
	b = append(b, idCRC32, 0x84, 0, 0, 0, 0)
	from := len(b)
	b = appendUint(b, idTimestamp, ts)
	b = appendID(b, idBlockGroup)
	b = appendSize(b, uint64(group))
	b = appendID(b, idBlockAdditions)
	b = appendSize(b, uint64(adds))
	b = appendID(b, idBlockMore)
	b = appendSize(b, uint64(more))
	b = appendUint(b, idBlockAddID, blockAddID)
	b = appendID(b, idBlockAdditional)
	b = appendSize(b, uint64(rec))
	b = encodeRecord(b, fr)
	b = appendID(b, idBlock)
	b = appendSize(b, uint64(blockData))
	// The track (numbers up to 126 fit the one byte), timestamp +0, no flags:
	// a Block in a BlockGroup without a reference is a key frame.
	b = append(b, 0x80|byte(w.cur.number), 0, 0, 0)
	sum := crc32.Update(crc32.Update(0, crc32.IEEETable, b[from:]), crc32.IEEETable, fr.Data)
	le.PutUint32(b[crcAt:], sum)
	w.buf = b
	if err := w.write(b, fr.Data); err != nil {
		return err
	}
	w.end.Frames++
	w.end.Dropped += fr.Dropped
	w.end.LastSeq = fr.Seq
	return nil
}

// maxTracks keeps track numbers to one byte in a block.
const maxTracks = 126

// addTrack makes fr's format the current one: a track it had already, a new
// track in the header region, or a new Segment when the region is full.
func (w *Writer) addTrack(fr *Frame) error {
	for i := range w.tracks {
		if w.tracks[i].format == fr.Format {
			w.cur = &w.tracks[i]
			return nil
		}
	}
	t := track{number: uint64(len(w.tracks) + 1), uid: randomUID(), format: fr.Format, generation: fr.Generation}
	f := fr.Format
	t.tag = formatTag{Version: 1, Bus: w.bus, Generation: fr.Generation, Track: t.number, Width: f.Width, Height: f.Height,
		PixelFormat: f.PixelFormat.String(), FourCC: uint32(f.PixelFormat), PlaneCount: f.PlaneCount,
		PlaneStride: f.PlaneStride, PlaneOffset: f.PlaneOffset, FrameSize: f.FrameSize, FPSNum: f.FPSNum, FPSDen: f.FPSDen,
		StartedUnix: time.Now().UnixNano(), StartedMono: framebus.Now(), FirstCapture: fr.CaptureNS}
	if w.inSeg && len(w.tracks) < maxTracks {
		tracks := append(w.tracks[:len(w.tracks):len(w.tracks)], t)
		if r, ok := w.region(tracks, nil); ok {
			if err := w.rewrite(r, w.regionAt); err != nil {
				return err
			}
			w.tracks = tracks
			w.cur = &w.tracks[len(w.tracks)-1]
			w.end.Formats++
			return nil
		}
	}
	// A new Segment: the first, or the region is full.
	if w.inSeg {
		w.endSegment()
	}
	t.number = 1
	t.tag.Track = 1
	w.tracks = []track{t}
	r, _ := w.region(w.tracks, nil)
	var b []byte
	b = appendMaster(b, idEBML, func(b []byte) []byte {
		b = appendUint(b, idEBMLVersion, 1)
		b = appendUint(b, idEBMLReadVersion, 1)
		b = appendUint(b, idEBMLMaxIDLength, 4)
		b = appendUint(b, idEBMLMaxSizeLength, 8)
		b = appendString(b, idDocType, "matroska")
		b = appendUint(b, idDocTypeVersion, 4)
		return appendUint(b, idDocTypeReadVersion, 2)
	})
	b = appendID(b, idSegment)
	sizeAt := w.off + int64(len(b))
	b = append(b, unknownSize...)
	regionAt := w.off + int64(len(b))
	b = append(b, r...)
	if err := w.write(b); err != nil {
		return err
	}
	w.inSeg, w.segSizeAt, w.regionAt = true, sizeAt, regionAt
	w.cur = &w.tracks[0]
	w.end.Formats++
	w.end.Segments++
	return nil
}

// Close writes FRAMEBUS_END into the header region, which marks the
// recording whole, and the Segment's size. It does not close the file.
func (w *Writer) Close(end End) error {
	if w.err != nil {
		return w.err
	}
	if !w.inSeg {
		return nil // no frame: nothing to end
	}
	e := w.end
	e.EndOfStream, e.Why = end.EndOfStream, end.Why
	e.Dropped += end.Dropped
	r, ok := w.region(w.tracks, &e)
	if !ok {
		return fmt.Errorf("recording: the header region has no room for the end mark")
	}
	if err := w.rewrite(r, w.regionAt); err != nil {
		return err
	}
	w.end = e
	return w.endSegment()
}

// endSegment writes the size of the Segment that ends into its header,
// written as unknown: readers then know where it ends (ffmpeg stops there
// instead of reading the next segment's frames as its own). A file cut
// short before this keeps the unknown size, which readers handle too.
func (w *Writer) endSegment() error {
	var b [8]byte
	appendSizeLen(b[:0], uint64(w.off-w.segSizeAt-8), 8)
	return w.rewrite(b[:], w.segSizeAt)
}

// region is the header region of a Segment with these tracks (and the
// end, once known), padded to regionSize; ok is false when it does not fit.
func (w *Writer) region(tracks []track, end *End) ([]byte, bool) {
	b := make([]byte, 0, regionSize)
	b = appendMaster(b, idInfo, func(b []byte) []byte {
		b = appendUint(b, idTimestampScale, 1000) // µs
		b = appendString(b, idMuxingApp, "framebus")
		b = appendString(b, idWritingApp, w.app)
		return appendString(b, idTitle, "framebus bus "+w.bus)
	})
	b = appendMaster(b, idTracks, func(b []byte) []byte {
		for _, t := range tracks {
			b = appendTrackEntry(b, t, w.bus)
		}
		return b
	})
	b = appendMaster(b, idTags, func(b []byte) []byte {
		b = appendMaster(b, idTag, func(b []byte) []byte {
			b = appendBinary(b, idTargets, nil)
			b = appendSimpleTag(b, "FRAMEBUS_BUS", w.bus)
			if end != nil {
				b = appendSimpleTag(b, "FRAMEBUS_END", mustJSON(end))
			}
			return b
		})
		for _, t := range tracks {
			b = appendMaster(b, idTag, func(b []byte) []byte {
				b = appendMaster(b, idTargets, func(b []byte) []byte { return appendUint(b, idTagTrackUID, t.uid) })
				return appendSimpleTag(b, "FRAMEBUS_FORMAT", mustJSON(t.tag))
			})
		}
		return b
	})
	if len(b)+9 > regionSize {
		return nil, false
	}
	b = appendID(b, idVoid)
	b = appendSizeLen(b, uint64(regionSize-len(b)-8), 8)
	return b[:regionSize], true
}

func appendTrackEntry(b []byte, t track, bus string) []byte {
	f := t.format
	return appendMaster(b, idTrackEntry, func(b []byte) []byte {
		b = appendUint(b, idTrackNumber, t.number)
		b = appendUint(b, idTrackUID, t.uid)
		b = appendUint(b, idTrackType, 1) // video
		b = appendUint(b, idFlagLacing, 0)
		b = appendString(b, idName, fmt.Sprintf("bus %s, generation %d", bus, t.generation))
		if f.PixelFormat == framebus.FormatMJPEG {
			b = appendString(b, idCodecID, "V_MJPEG")
		} else {
			b = appendString(b, idCodecID, "V_UNCOMPRESSED")
		}
		if f.FPSNum != 0 {
			b = appendUint(b, idDefaultDuration, uint64((int64(f.FPSDen)*int64(time.Second)+int64(f.FPSNum)/2)/int64(f.FPSNum)))
		}
		b = appendMaster(b, idBlockAddMapping, func(b []byte) []byte {
			b = appendUint(b, idBlockAddIDValue, blockAddID)
			b = appendString(b, idBlockAddIDName, "framebus frame record")
			return appendUint(b, idBlockAddIDType, fbusType)
		})
		return appendMaster(b, idVideo, func(b []byte) []byte {
			b = appendUint(b, idPixelWidth, uint64(f.Width))
			b = appendUint(b, idPixelHeight, uint64(f.Height))
			if cs, ok := colourSpace(f.PixelFormat); ok {
				b = appendBinary(b, idColourSpace, cs[:])
			}
			return b
		})
	})
}

func appendSimpleTag(b []byte, name, value string) []byte {
	return appendMaster(b, idSimpleTag, func(b []byte) []byte {
		b = appendString(b, idTagName, name)
		return appendString(b, idTagString, value)
	})
}

// colourSpace is the fourcc that ffmpeg's and GStreamer's Matroska readers
// know for each raw bus format (ffmpeg's raw pixel format tags).
func colourSpace(f framebus.FourCC) ([4]byte, bool) {
	switch f {
	case framebus.FormatRGBA:
		return [4]byte{'R', 'G', 'B', 'A'}, true
	case framebus.FormatRGB24:
		return [4]byte{'R', 'G', 'B', 24}, true
	case framebus.FormatBGR24:
		return [4]byte{'B', 'G', 'R', 24}, true
	case framebus.FormatGrey:
		return [4]byte{'Y', '8', '0', '0'}, true
	case framebus.FormatYUYV:
		return [4]byte{'Y', 'U', 'Y', '2'}, true
	case framebus.FormatNV12:
		return [4]byte{'N', 'V', '1', '2'}, true
	case framebus.FormatI420:
		return [4]byte{'I', '4', '2', '0'}, true
	}
	return [4]byte{}, false
}

// elemLen is the length of an element of ID id with n bytes of data.
func elemLen(id uint32, n int) int {
	return idLen(id) + sizeLen(uint64(n)) + n
}

func idLen(id uint32) int {
	switch {
	case id >= 1<<24:
		return 4
	case id >= 1<<16:
		return 3
	case id >= 1<<8:
		return 2
	}
	return 1
}

// uintLen is the data length of appendUint's encoding of v.
func uintLen(v uint64) int {
	n := 1
	for n < 8 && v >= 1<<(8*n) {
		n++
	}
	return n
}

func randomUID() uint64 {
	var b [8]byte
	rand.Read(b[:])
	if v := binary.LittleEndian.Uint64(b[:]) >> 1; v != 0 {
		return v
	}
	return 1
}
