//go:build framebus_webrtc && framebus_opencv && cgo

package viewer

import (
	"context"
	"fmt"
	"image"
	"time"

	"gocv.io/x/gocv"

	"github.com/framebus/framebus/capture"
	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/framebus/feed"
	"github.com/framebus/framebus/internal/vpx"
)

// vp8Encoder is the bridge's encoder while it is a consumer of the bus:
// libvpx for the frames' size, the conversion into its input picture, and
// what the progress log says.
type vp8Encoder struct {
	enc       *vpx.Encoder
	format    framebus.Format // the encoder's input picture, as an I420 bus format
	conv      *Converter
	i420      gocv.Mat
	lastKey   time.Time
	lastPTS   int64
	pic       Picture
	formatErr string // the last format error logged (each is logged once)

	lat     latencyMeter
	encoded uint64
	lastLog time.Time
}

func (e *vp8Encoder) close() {
	if e.enc != nil {
		e.enc.Close()
	}
	e.i420.Close()
	e.conv.Close()
}

// encode is the bridge as a consumer of the bus: from the first viewer in to
// the last one out (ctx).
func (b *webrtcBridge) encode(ctx context.Context) error {
	// No held wait (Hold < 0): it would keep one of the process's Ps for
	// the last ~2 ms before each frame, which pion's network goroutines
	// need more than a VP8 encode of 6-12 ms needs 30 us less of wake.
	in := feed.New(b.name, feed.Options{Dir: b.o.Dir, Timeout: b.o.Timeout, Persist: true, Copy: true, Spin: b.o.Spin, Hold: -1,
		Log: b.log})
	defer in.Close()
	e := &vp8Encoder{conv: NewConverter(), i420: gocv.NewMat(), lastLog: time.Now()}
	defer e.close()
	for {
		fr, err := nextFrame(ctx, in, nil)
		if fr == nil {
			return err
		}
		if err := b.encodeFrame(e, fr, in); err != nil {
			return err
		}
	}
}

// encodeFrame converts, encodes and publishes one frame of the bus. A frame
// it cannot encode (its size, its format) is logged once and skipped.
func (b *webrtcBridge) encodeFrame(e *vp8Encoder, fr *framebus.Frame, in *feed.Feed) error {
	t0 := framebus.Now()
	if ok, err := b.openEncoder(e, fr.Format); !ok || err != nil {
		return err
	}
	if err := toI420(e.enc.Input().Buf, e.format, fr, e.conv, &e.i420); err != nil {
		if msg := err.Error(); msg != e.formatErr {
			b.log.Error("WebRTC: cannot convert the frames", "bus", b.name, "error", err)
			e.formatErr = msg
		}
		return nil
	}
	e.formatErr = ""
	target := b.targetBitrate()
	e.enc.SetBitrate(target)
	now := time.Now()
	if b.keyWanted.Load() && now.Sub(e.lastKey) >= 250*time.Millisecond {
		b.keyWanted.Store(false)
		e.enc.ForceKey()
	}
	// The encoder's clock: the capture time at 90 kHz, never going back.
	pts := max(int64(uint64(fr.CaptureNS)*9/100000), e.lastPTS+1)
	e.lastPTS = pts
	data, key, err := e.enc.Encode(pts)
	if err != nil {
		return err
	}
	if key {
		e.lastKey = now
	}
	if len(data) == 0 { // the rate control dropped it
		b.mu.Lock()
		b.st.RateDrops++
		b.mu.Unlock()
		return nil
	}
	t1 := framebus.Now()
	w, h := int(fr.Format.Width), int(fr.Format.Height)
	e.pic = Picture{Seq: fr.Seq, Generation: fr.Generation, CaptureNS: fr.CaptureNS, CommitNS: fr.CommitNS,
		EncodedNS: t1, Width: w, Height: h, Data: data, Key: key}
	b.hub.Publish(&e.pic)
	e.pic.Data = nil
	b.encoded(w, h, key, in.Stats(), t1-t0, target)
	e.lat.add(t1 - t0)
	e.encoded++
	if time.Since(e.lastLog) >= progressEvery {
		b.logProgress(e, target)
	}
	return nil
}

// openEncoder makes the encoder for frames of format f, unless it has it:
// false (and nil) for a size VP8 cannot encode here, logged once.
func (b *webrtcBridge) openEncoder(e *vp8Encoder, f framebus.Format) (bool, error) {
	if e.enc != nil && e.format.Width == f.Width && e.format.Height == f.Height {
		return true, nil
	}
	if e.enc != nil {
		e.enc.Close()
		e.enc = nil
	}
	w, h := int(f.Width), int(f.Height)
	if w%2 != 0 || h%2 != 0 || w < 16 || h < 16 {
		if msg := fmt.Sprintf("%dx%d", w, h); msg != e.formatErr {
			b.log.Error(fmt.Sprintf("WebRTC: cannot encode %dx%d frames (VP8 here wants even sizes from 16x16)", w, h), "bus", b.name)
			e.formatErr = msg
		}
		return false, nil
	}
	fps := 30.0
	if f.FPSNum > 0 && f.FPSDen > 0 {
		fps = float64(f.FPSNum) / float64(f.FPSDen)
	}
	maxRate := b.wo.MaxBitrate
	if maxRate <= 0 {
		maxRate = max(1_000_000, int(0.1*float64(w*h)*fps))
	}
	maxRate = max(maxRate, b.wo.MinBitrate)
	b.mu.Lock()
	b.encMax = maxRate
	b.mu.Unlock()
	enc, err := vpx.NewEncoder(w, h, vpx.EncoderOptions{Bitrate: min(maxRate, 1_000_000), FPS: fps,
		Speed: b.wo.Speed, Threads: b.wo.Threads})
	if err != nil {
		return false, err
	}
	e.enc = enc
	p := enc.Input()
	e.format, err = framebus.Format{Width: uint32(w), Height: uint32(h), PixelFormat: framebus.FormatI420, PlaneCount: 3,
		PlaneStride: [framebus.MaxPlanes]uint32{uint32(p.YStride), uint32(p.CStride), uint32(p.CStride)},
		PlaneOffset: [framebus.MaxPlanes]uint32{0, uint32(p.UOff), uint32(p.VOff)}}.Complete()
	if err != nil {
		return false, fmt.Errorf("the encoder's picture layout: %v", err)
	}
	b.log.Info("WebRTC: VP8 encoder", "bus", b.name, "size", fmt.Sprintf("%dx%d", w, h), "max_bitrate", maxRate)
	return true, nil
}

// logProgress logs the encoder's rates since the last time.
func (b *webrtcBridge) logProgress(e *vp8Encoder, target int) {
	n, mean, mx := e.lat.take()
	st := b.Status()
	sent := 0
	for _, v := range st.Sessions {
		sent += v.Bitrate
	}
	b.log.Info("WebRTC progress", "bus", b.name, "viewers", st.Viewers, "fps", f1(float64(n)/time.Since(e.lastLog).Seconds()),
		"encode_mean", mean.String(), "encode_max", mx.String(), "target_bitrate", target, "sent_bitrate", sent,
		"frames_encoded", e.encoded, "keyframes", st.Keyframes, "skipped", st.FramesDropped,
		"rate_drops", st.RateDrops)
	e.lastLog = time.Now()
}

// toI420 writes frame fr into dst, laid out as f (I420): Go copies for
// I420, NV12 and GREY frames (capture/convert.go), one OpenCV conversion
// for RGBA, RGB24 and BGR24, two (through BGR, the viewer's Converter) for
// YUYV and MJPEG. fr is a copy of the bus's frame (copy mode): OpenCV reads
// that copy, never the bus.
func toI420(dst []byte, f framebus.Format, fr *framebus.Frame, conv *Converter, i420 *gocv.Mat) error {
	sf := fr.Format
	rect := image.Rect(0, 0, int(sf.Width), int(sf.Height))
	if uint64(len(fr.Data)) < sf.FrameSize && sf.PixelFormat != framebus.FormatMJPEG {
		return &FrameError{Format: sf, Reason: fmt.Sprintf("%d bytes, the format needs %d", len(fr.Data), sf.FrameSize)}
	}
	plane := func(i int) []byte { return fr.Data[sf.PlaneOffset[i]:] }
	switch sf.PixelFormat {
	case framebus.FormatGrey:
		_, err := capture.ConvertGray(dst, f, &image.Gray{Pix: plane(0), Stride: int(sf.PlaneStride[0]), Rect: rect})
		return err
	case framebus.FormatI420:
		_, err := capture.ConvertYCbCr(dst, f, &image.YCbCr{Y: plane(0), Cb: plane(1), Cr: plane(2),
			YStride: int(sf.PlaneStride[0]), CStride: int(sf.PlaneStride[1]), SubsampleRatio: image.YCbCrSubsampleRatio420, Rect: rect}, capture.LimitedRange)
		return err
	case framebus.FormatNV12:
		nv12ToI420(dst, f, fr)
		return nil
	}
	return cvToI420(dst, f, fr, conv, i420)
}

// nv12ToI420 copies the luma and splits the interleaved chroma.
func nv12ToI420(dst []byte, f framebus.Format, fr *framebus.Frame) {
	sf := fr.Format
	w, h := int(sf.Width), int(sf.Height)
	ys, uvs := int(sf.PlaneStride[0]), int(sf.PlaneStride[1])
	y0, uv0 := fr.Data[sf.PlaneOffset[0]:], fr.Data[sf.PlaneOffset[1]:]
	for y := 0; y < h; y++ {
		copy(dst[int(f.PlaneOffset[0])+y*int(f.PlaneStride[0]):][:w], y0[y*ys:][:w])
	}
	for y := 0; y < h/2; y++ {
		uv := uv0[y*uvs:][:w]
		u := dst[int(f.PlaneOffset[1])+y*int(f.PlaneStride[1]):][:w/2]
		v := dst[int(f.PlaneOffset[2])+y*int(f.PlaneStride[2]):][:w/2]
		for x := range u {
			u[x], v[x] = uv[2*x], uv[2*x+1]
		}
	}
}

// cvToI420 converts with OpenCV (RGBA, RGB24, BGR24 at once; the other
// formats through the Converter's BGR) and copies OpenCV's packed I420
// into dst's planes.
func cvToI420(dst []byte, f framebus.Format, fr *framebus.Frame, conv *Converter, i420 *gocv.Mat) error {
	sf := fr.Format
	w, h := int(sf.Width), int(sf.Height)
	var code gocv.ColorConversionCode
	var src *gocv.Mat
	switch sf.PixelFormat {
	case framebus.FormatRGBA, framebus.FormatRGB24, framebus.FormatBGR24:
		key, _, err := layoutOf(sf)
		if err != nil {
			return err
		}
		if src, err = conv.src(fr.Data, key); err != nil {
			return err
		}
		switch code = gocv.ColorRGBAToYUVI420; sf.PixelFormat {
		case framebus.FormatRGB24:
			code = gocv.ColorRGBToYUVI420
		case framebus.FormatBGR24:
			code = gocv.ColorBGRToYUVI420
		}
	default:
		bgr, err := conv.Convert(fr.Data, sf)
		if err != nil {
			return err
		}
		if bgr.Cols() != w || bgr.Rows() != h {
			return &FrameError{Format: sf, Reason: fmt.Sprintf("decoded %dx%d, the bus says %dx%d", bgr.Cols(), bgr.Rows(), w, h)}
		}
		src, code = bgr, gocv.ColorBGRToYUVI420
	}
	gocv.CvtColor(*src, i420, code)
	out, err := i420.DataPtrUint8()
	if err != nil {
		return err
	}
	if len(out) < w*h*3/2 {
		return &FrameError{Format: sf, Reason: "OpenCV made a short I420 picture"}
	}
	for y := 0; y < h; y++ {
		copy(dst[int(f.PlaneOffset[0])+y*int(f.PlaneStride[0]):][:w], out[y*w:])
	}
	cw, chh := w/2, h/2
	u, v := out[w*h:], out[w*h+cw*chh:]
	for y := 0; y < chh; y++ {
		copy(dst[int(f.PlaneOffset[1])+y*int(f.PlaneStride[1]):][:cw], u[y*cw:])
		copy(dst[int(f.PlaneOffset[2])+y*int(f.PlaneStride[2]):][:cw], v[y*cw:])
	}
	return nil
}
