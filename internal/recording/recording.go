// Package recording writes and reads framebus's lossless recordings: every
// frame of a bus byte for byte, in the bus's own pixel format, with its
// sequence number, capture, commit and read times, generation, the drops
// before it and its user metadata, in a Matroska file that ffmpeg, ffprobe,
// GStreamer and mkvtoolnix read as raw video.
//
// Why Matroska: it is a standard container that the tools video people use
// read as they are (V_UNCOMPRESSED with the pixel format's fourcc, or
// V_MJPEG), it streams (a Segment and Clusters of unknown size need no
// seeking back, so memory stays bounded however long the recording), and it
// has room for what framebus adds: per-frame data in BlockAdditions and
// recording-wide facts in Tags. NUT would have done as well for ffmpeg but
// not for GStreamer; a format of our own would have needed an export.
//
// The layout (docs/RECORDING.md has it in full):
//
//	EBML header (DocType matroska)
//	Segment (written with an unknown size; the size is filled in at the end)
//	  a header region of 64 KiB, rewritten in place when a format is added and at the end:
//	  Info      TimestampScale 1000 (µs), MuxingApp, WritingApp, Title
//	  Tracks    one video track per format: V_UNCOMPRESSED (ColourSpace = the
//	            fourcc ffmpeg knows) or V_MJPEG, its size, DefaultDuration from the
//	            bus's rate, a BlockAdditionMapping for the frame record (ID 2, 'FBUS')
//	  Tags      FRAMEBUS_BUS; FRAMEBUS_END once the recording ended cleanly (JSON:
//	            frames, drops, why); per track FRAMEBUS_FORMAT (JSON: the whole bus
//	            format, generation, when it began)
//	  Void      the rest of the region
//	  Cluster   one per frame: CRC-32 (of the cluster's content), Timestamp (µs since
//	            the first frame's capture), BlockGroup { BlockAdditions { BlockMore
//	            { BlockAddID 2, BlockAdditional: the 64-byte frame record + user
//	            metadata } }, Block: the frame's track and bytes }
//	  ...
//
// A format change adds a track, so one file holds every format and tools
// see one video stream per format. A file cut short (a killed recorder)
// still reads up to its last whole cluster, by ffmpeg and by Reader; a
// recording that hits a full disk is cut back to its last whole frame by
// the Writer.
package recording

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/framebus/framebus/framebus"
)

// Frame is one recorded frame.
type Frame struct {
	Format        framebus.Format
	Seq           uint64
	CaptureNS     int64 // framebus.Now's clock (CLOCK_MONOTONIC) of the recording machine
	CommitNS      int64
	ReadNS        int64 // when the recorder read it
	Generation    uint64
	NewGeneration bool   // the first frame of a generation the recorder followed
	Dropped       uint64 // frames the bus had before this one that the recorder never saw
	TornRetries   uint64
	UserMeta      []byte
	Data          []byte // Writer: the frame's bytes; Reader: nil (ReadData reads them)
	Size          int    // Reader: the frame's bytes
}

// recordSize is the fixed part of the per-frame record (BlockAdditional).
const recordSize = 64

// recordVersion is the version of the frame record.
const recordVersion = 1

// blockAddID marks the frame record among a block's additions (declared
// in the track's BlockAdditionMapping with type 'FBUS').
const blockAddID = 2

// fbusType is the BlockAddIDType of the record: the characters FBUS.
const fbusType = 0x46425553

// encodeRecord appends the frame record of fr.
func encodeRecord(b []byte, fr *Frame) []byte {
	var r [recordSize]byte
	r[0] = recordVersion
	if fr.NewGeneration {
		r[1] |= 1
	}
	le.PutUint16(r[2:], uint16(len(fr.UserMeta)))
	le.PutUint64(r[8:], fr.Seq)
	le.PutUint64(r[16:], uint64(fr.CaptureNS))
	le.PutUint64(r[24:], uint64(fr.CommitNS))
	le.PutUint64(r[32:], uint64(fr.ReadNS))
	le.PutUint64(r[40:], fr.Generation)
	le.PutUint64(r[48:], fr.Dropped)
	le.PutUint64(r[56:], fr.TornRetries)
	b = append(b, r[:]...)
	return append(b, fr.UserMeta...)
}

// decodeRecord fills fr from a frame record (UserMeta aliases p).
func decodeRecord(p []byte, fr *Frame) error {
	if len(p) < recordSize {
		return fmt.Errorf("frame record of %d bytes, want at least %d", len(p), recordSize)
	}
	if p[0] != recordVersion {
		return fmt.Errorf("frame record version %d, this build reads %d", p[0], recordVersion)
	}
	n := int(le.Uint16(p[2:]))
	if n > framebus.UserMetaMax || len(p) != recordSize+n {
		return fmt.Errorf("frame record of %d bytes with %d bytes of user metadata (at most %d)", len(p), n, framebus.UserMetaMax)
	}
	fr.NewGeneration = p[1]&1 != 0
	fr.Seq = le.Uint64(p[8:])
	fr.CaptureNS = int64(le.Uint64(p[16:]))
	fr.CommitNS = int64(le.Uint64(p[24:]))
	fr.ReadNS = int64(le.Uint64(p[32:]))
	fr.Generation = le.Uint64(p[40:])
	fr.Dropped = le.Uint64(p[48:])
	fr.TornRetries = le.Uint64(p[56:])
	fr.UserMeta = p[recordSize:]
	return nil
}

// formatTag is FRAMEBUS_FORMAT: the recording's format, for Reader and for
// people (ffprobe -show_format prints it).
type formatTag struct {
	Version      int       `json:"version"`
	Bus          string    `json:"bus"`
	Generation   uint64    `json:"generation"` // of the first frame in this format
	Track        uint64    `json:"track"`
	Width        uint32    `json:"width"`
	Height       uint32    `json:"height"`
	PixelFormat  string    `json:"pixel_format"` // the fourcc's characters
	FourCC       uint32    `json:"fourcc"`
	PlaneCount   uint32    `json:"plane_count"`
	PlaneStride  [4]uint32 `json:"plane_stride"`
	PlaneOffset  [4]uint32 `json:"plane_offset"`
	FrameSize    uint64    `json:"frame_size"`
	FPSNum       uint32    `json:"fps_num"`
	FPSDen       uint32    `json:"fps_den"`
	StartedUnix  int64     `json:"started_unix_ns"`  // wall clock at the first frame of this format
	StartedMono  int64     `json:"started_mono_ns"`  // framebus.Now then
	FirstCapture int64     `json:"first_capture_ns"` // the first frame's capture time
}

func (t formatTag) format() (framebus.Format, error) {
	f := framebus.Format{Width: t.Width, Height: t.Height, PixelFormat: framebus.FourCC(t.FourCC), PlaneCount: t.PlaneCount,
		PlaneStride: t.PlaneStride, PlaneOffset: t.PlaneOffset, FrameSize: t.FrameSize, FPSNum: t.FPSNum, FPSDen: t.FPSDen}
	c, err := f.Complete()
	if err != nil {
		return f, err
	}
	if c != f {
		return f, fmt.Errorf("format %v is not complete as recorded", f)
	}
	return f, nil
}

// End is what FRAMEBUS_END says: how the recording ended.
type End struct {
	Frames      uint64 `json:"frames"`  // frames in the file
	Dropped     uint64 `json:"dropped"` // frames the bus had that are not in it
	EndOfStream bool   `json:"end_of_stream"`
	Why         string `json:"why"` // "end of stream", "--duration reached", "interrupted", ...
	FirstSeq    uint64 `json:"first_seq"`
	LastSeq     uint64 `json:"last_seq"`
	Formats     int    `json:"formats"`  // formats recorded: a track each
	Segments    int    `json:"segments"` // Matroska segments (more than one only after very many format changes)
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// Sentinels, tested with errors.Is.
var (
	// ErrNotRecording: the file is not a framebus recording.
	ErrNotRecording = errors.New("not a framebus recording")
	// ErrTruncated: the file ends inside an element (a recorder killed
	// mid-write, a copy cut short); what comes before it reads.
	ErrTruncated = errors.New("recording cut short")
	// ErrCorrupt: a frame fails its CRC-32 or a structure is wrong.
	ErrCorrupt = errors.New("corrupt recording")
)

// TruncatedError says where a recording is cut short.
type TruncatedError struct {
	Path   string
	Frames uint64 // whole frames before the cut
	Offset int64  // where the cut element starts
	Size   int64  // the file's size
}

func (e *TruncatedError) Error() string {
	return fmt.Sprintf("%s is cut short inside the element at offset %d (the file has %d bytes): %d whole frames before it", e.Path, e.Offset, e.Size, e.Frames)
}
func (e *TruncatedError) Unwrap() error { return ErrTruncated }
