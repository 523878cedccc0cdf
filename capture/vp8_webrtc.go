//go:build framebus_webrtc && cgo

package capture

import (
	"fmt"
	"image"

	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/internal/rtc"
	"github.com/framebus/framebus/internal/vpx"
)

// What the whep: and whip: sources share: libvpx's VP8 decoder behind a
// gate that lets only whole pictures through, and the bus format of the
// decoded frames. (What they share of WebRTC is internal/rtc's.)

// vp8Decoder decodes a received stream's frames. A gap in the stream (lost
// packets NACK did not repair) or a frame that does not decode makes it
// skip frames until a keyframe, which it asks for (PLI): frames are
// skipped, never shown broken.
type vp8Decoder struct {
	dec     *vpx.Decoder
	waitKey bool
	skipped uint64
	decoded uint64
	stamped bool // the last frame's capture time came from the sender
}

// otherSize is what a keyframe of another size than the bus's does.
type otherSize int

const (
	sizeIsError otherSize = iota // an error: the stream changed size (whep:)
	sizeSkipped                  // skipped, with the frames after it, until a keyframe of the size (whip:)
)

func newVP8Decoder() (*vp8Decoder, error) {
	dec, err := vpx.NewDecoder(1)
	if err != nil {
		return nil, err
	}
	return &vp8Decoder{dec: dec}, nil
}

// decode decodes fr of r's stream, or skips it (ok false) while the stream
// is broken. want is the bus's size (0x0: any).
func (d *vp8Decoder) decode(fr rtc.Frame, r *rtc.Receiver, want image.Point, other otherSize) (pic *image.YCbCr, ok bool, err error) {
	if fr.Gap && !fr.Key {
		d.waitKey = true
	}
	if fr.Key && want != (image.Point{}) && (fr.Width != want.X || fr.Height != want.Y) {
		if other == sizeIsError {
			return nil, false, fmt.Errorf("the remote stream changed size from %dx%d to %dx%d: a bus keeps one format (start the capture again)",
				want.X, want.Y, fr.Width, fr.Height)
		}
		d.waitKey = true // not the bus's size: skipped until a keyframe that is
		d.skipped++
		return nil, false, nil
	}
	if d.waitKey && !fr.Key {
		d.skipped++
		r.RequestKeyFrame()
		return nil, false, nil
	}
	pic, corrupt, err := d.dec.Decode(fr.Data)
	if err != nil || corrupt || pic == nil {
		d.skipped++
		d.waitKey = true
		r.RequestKeyFrame()
		return nil, false, nil
	}
	d.waitKey = false
	d.stamped = fr.Stamped
	return pic, true, nil
}

// deliver converts a decoded picture into the slot dst, laid out as f.
func (d *vp8Decoder) deliver(dst []byte, f framebus.Format, pic *image.YCbCr) (int, error) {
	n, err := ConvertYCbCr(dst, f, pic, LimitedRange)
	if err != nil {
		return 0, err
	}
	d.decoded++
	return n, nil
}

func (d *vp8Decoder) close() { d.dec.Close() }

// decodedFormat is the pixel format asked of a source that decodes VP8
// (I420 by default), checked.
func decodedFormat(source string, c Config) (framebus.FourCC, error) {
	pf := c.PixelFormat
	if pf == 0 {
		pf = framebus.FormatI420
	}
	if !CanConvert(pf) {
		return 0, &ConfigError{Source: source, Err: fmt.Errorf("pixel format %v: the decoded frames can be RGBA, RGB24, BGR24, GREY, YUYV, NV12 or I420", pf)}
	}
	return pf, nil
}

// completeFormat completes a decoding source's bus format.
func completeFormat(source string, f framebus.Format) (framebus.Format, error) {
	f, err := f.Complete()
	if err == nil && f.FrameSize > uint64(maxInt) {
		err = fmt.Errorf("frame of %d bytes is too large", f.FrameSize)
	}
	if err != nil {
		return f, &ConfigError{Source: source, Err: err}
	}
	return f, nil
}
