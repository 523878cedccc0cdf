//go:build !(framebus_webrtc && cgo)

package vpx

import (
	"errors"
	"image"
)

// Available says whether this build has the codec.
const Available = false

// ErrNotInBuild is what every constructor returns in a build without the
// codec.
var ErrNotInBuild = errors.New("this build lacks the WebRTC codec (libvpx): build with cgo and -tags framebus_webrtc (make build)")

// ErrClosed is returned by the methods of a closed encoder or decoder.
var ErrClosed = errors.New("vpx: closed")

// Encoder is a VP8 encoder; this build has none.
type Encoder struct{}

// NewEncoder fails: this build lacks libvpx.
func NewEncoder(w, h int, o EncoderOptions) (*Encoder, error) { return nil, ErrNotInBuild }

func (e *Encoder) Size() (w, h int)                       { return 0, 0 }
func (e *Encoder) Input() *Picture                        { return &Picture{} }
func (e *Encoder) SetBitrate(bps int)                     {}
func (e *Encoder) Bitrate() int                           { return 0 }
func (e *Encoder) ForceKey()                              {}
func (e *Encoder) Encode(pts int64) ([]byte, bool, error) { return nil, false, ErrNotInBuild }
func (e *Encoder) Close() error                           { return nil }

// Decoder is a VP8 decoder; this build has none.
type Decoder struct{}

// NewDecoder fails: this build lacks libvpx.
func NewDecoder(threads int) (*Decoder, error) { return nil, ErrNotInBuild }

func (d *Decoder) Decode(frame []byte) (*image.YCbCr, bool, error) { return nil, false, ErrNotInBuild }
func (d *Decoder) Close() error                                    { return nil }
