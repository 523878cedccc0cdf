//go:build framebus_webrtc && framebus_opencv && cgo

package viewer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/rtcp"
	"github.com/pion/transport/v5"
	"github.com/pion/webrtc/v4"
	"gocv.io/x/gocv"

	"github.com/framebus/framebus/capture"
	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/framebus/feed"
	"github.com/framebus/framebus/internal/rtc"
	"github.com/framebus/framebus/internal/vpx"
)

// HasWebRTC says whether this build has the WHEP endpoint.
const HasWebRTC = true

// webrtcNet replaces the network of the bridge's connections (tests: pion's
// vnet, with delay and loss).
var webrtcNet transport.Net

// WebRTCMissing is why this build has no WebRTC (it has).
const WebRTCMissing = ""

// The WebRTC side of the web preview, served at /whep (WHEP: POST an SDP
// offer, get the answer and a session URL; DELETE the URL to end; PATCH it
// with trickled candidates).
//
// One bridge per bus: while at least one WebRTC viewer is connected, the
// bridge is a consumer of the bus (its own feed, in copy mode: the C
// encoder never sees bus memory), converts the newest frame to I420 in Go
// (RGBA, GREY, I420) or through OpenCV (the other formats), encodes it with
// libvpx (VP8) and publishes the encoded frame on a Hub. Each viewer's
// sender takes the newest encoded frame when it is done with the previous
// one: a viewer that falls behind skips frames and resumes at the next
// keyframe (which it asks for), it never queues them. The encoder's bitrate
// is the lowest of the viewers' congestion-controller estimates (GCC over
// transport-cc feedback), between MinBitrate and MaxBitrate: one encoder
// serves everybody at the rate of the weakest link. PLI and FIR from any
// viewer ask for a keyframe; keyframes are at most 4 a second.
type webrtcBridge struct {
	name string
	o    HTTPOptions
	wo   WebRTCOptions
	cfg  rtc.Config
	log  *slog.Logger
	ctx  context.Context
	hub  *Hub

	mu       sync.Mutex
	sessions map[string]*whepSession
	wake     chan struct{} // a first viewer came
	stopEnc  context.CancelFunc
	encoding bool
	refused  uint64
	encMax   int          // the encoder's highest bitrate, for its picture size
	st       WebRTCStatus // the encoder's part, under mu

	keyWanted atomic.Bool
	wg        sync.WaitGroup
}

func newWebRTC(ctx context.Context, name string, o HTTPOptions, log *slog.Logger) (webrtcEndpoint, func(), error) {
	wo := o.WebRTC
	if wo.Off {
		return nil, func() {}, nil
	}
	if wo.MaxViewers <= 0 {
		wo.MaxViewers = 16
	}
	if wo.MinBitrate <= 0 {
		wo.MinBitrate = 50_000
	}
	if wo.ICEFailedTimeout <= 0 {
		wo.ICEFailedTimeout = 10 * time.Second
	}
	if wo.ConnectTimeout <= 0 {
		wo.ConnectTimeout = 20 * time.Second
	}
	for _, o := range wo.AllowOrigins {
		if o != "*" && !strings.HasPrefix(o, "http://") && !strings.HasPrefix(o, "https://") {
			return nil, nil, &OptionError{Reason: fmt.Sprintf("--webrtc-allow-origin %q: want * or an origin such as https://example.com", o)}
		}
	}
	cfg := rtc.Config{
		Log:        log,
		ICEServers: wo.ICEServers, NAT1To1IPs: wo.PublicIPs, UDPPortMin: wo.UDPPortMin, UDPPortMax: wo.UDPPortMax,
		LoopbackOnly: wo.LoopbackOnly, FailedTimeout: wo.ICEFailedTimeout, DisconnectedTimeout: min(4*time.Second, wo.ICEFailedTimeout/2),
		MinBitrate: wo.MinBitrate, MaxBitrate: wo.MaxBitrate, // 0: rtc's default, the encoder bounds itself
		Net: webrtcNet,
	}
	if err := cfg.Check(); err != nil {
		return nil, nil, &OptionError{Reason: err.Error()}
	}
	b := &webrtcBridge{name: name, o: o, wo: wo, cfg: cfg, log: log, ctx: ctx, hub: NewHub(),
		sessions: map[string]*whepSession{}, wake: make(chan struct{}, 1)}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		b.run(ctx)
	}()
	return b, b.close, nil
}

// close ends every session and the encoder (ctx has ended).
func (b *webrtcBridge) close() {
	b.mu.Lock()
	ss := make([]*whepSession, 0, len(b.sessions))
	for _, s := range b.sessions {
		ss = append(ss, s)
	}
	b.mu.Unlock()
	for _, s := range ss {
		b.end(s, "the preview stops")
	}
	b.hub.Close()
	b.wg.Wait()
}

// run encodes while somebody watches, until ctx ends.
func (b *webrtcBridge) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.wake:
		}
		b.mu.Lock()
		if len(b.sessions) == 0 || b.encoding {
			b.mu.Unlock()
			continue
		}
		ectx, cancel := context.WithCancel(ctx)
		b.stopEnc, b.encoding = cancel, true
		b.st.Encoding = true
		b.mu.Unlock()
		b.log.Info("WebRTC: encoding for the viewers", "bus", b.name)
		err := b.encode(ectx)
		cancel()
		b.mu.Lock()
		b.encoding, b.st.Encoding = false, false
		again := len(b.sessions) > 0
		b.mu.Unlock()
		if err == nil && ctx.Err() == nil && !again {
			b.log.Info("WebRTC: no viewer left; the bridge leaves the bus", "bus", b.name)
		}
		if err != nil && ctx.Err() == nil {
			b.log.Error("WebRTC: the encoder stopped", "bus", b.name, "error", err)
			select { // not at once again: the same error would come back
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
		if again {
			b.poke()
		}
	}
}

func (b *webrtcBridge) poke() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
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
	conv := NewConverter()
	defer conv.Close()
	i420 := gocv.NewMat()
	defer i420.Close()
	var enc *vpx.Encoder
	var encFormat framebus.Format // the encoder input's layout
	defer func() {
		if enc != nil {
			enc.Close()
		}
	}()
	var lastKey time.Time
	var lastPTS int64
	var encLat latencyMeter
	var encoded uint64
	lastLog := time.Now()
	pic := Picture{}
	var formatErr string
	for {
		fr, err := in.Next(ctx)
		if err != nil {
			var we *feed.WaitingError
			switch {
			case ctx.Err() != nil:
				return nil
			case errors.As(err, &we), errors.Is(err, feed.ErrIdle):
				continue
			}
			return err
		}
		t0 := framebus.Now()
		w, h := int(fr.Format.Width), int(fr.Format.Height)
		if enc == nil || encFormat.Width != fr.Format.Width || encFormat.Height != fr.Format.Height {
			if enc != nil {
				enc.Close()
				enc = nil
			}
			if w%2 != 0 || h%2 != 0 || w < 16 || h < 16 {
				if msg := fmt.Sprintf("%dx%d", w, h); msg != formatErr {
					b.log.Error(fmt.Sprintf("WebRTC: cannot encode %dx%d frames (VP8 here wants even sizes from 16x16)", w, h), "bus", b.name)
					formatErr = msg
				}
				continue
			}
			fps := 30.0
			if fr.Format.FPSNum > 0 && fr.Format.FPSDen > 0 {
				fps = float64(fr.Format.FPSNum) / float64(fr.Format.FPSDen)
			}
			maxRate := b.wo.MaxBitrate
			if maxRate <= 0 {
				maxRate = max(1_000_000, int(0.1*float64(w*h)*fps))
			}
			maxRate = max(maxRate, b.wo.MinBitrate)
			b.mu.Lock()
			b.encMax = maxRate
			b.mu.Unlock()
			enc, err = vpx.NewEncoder(w, h, vpx.EncoderOptions{Bitrate: min(maxRate, 1_000_000), FPS: fps,
				Speed: b.wo.Speed, Threads: b.wo.Threads})
			if err != nil {
				return err
			}
			p := enc.Input()
			encFormat, err = framebus.Format{Width: uint32(w), Height: uint32(h), PixelFormat: framebus.FormatI420, PlaneCount: 3,
				PlaneStride: [framebus.MaxPlanes]uint32{uint32(p.YStride), uint32(p.CStride), uint32(p.CStride)},
				PlaneOffset: [framebus.MaxPlanes]uint32{0, uint32(p.UOff), uint32(p.VOff)}}.Complete()
			if err != nil {
				return fmt.Errorf("the encoder's picture layout: %v", err)
			}
			b.log.Info("WebRTC: VP8 encoder", "bus", b.name, "size", fmt.Sprintf("%dx%d", w, h), "max_bitrate", maxRate)
		}
		if err := toI420(enc.Input().Buf, encFormat, fr, conv, &i420); err != nil {
			if msg := err.Error(); msg != formatErr {
				b.log.Error("WebRTC: cannot convert the frames", "bus", b.name, "error", err)
				formatErr = msg
			}
			continue
		}
		formatErr = ""
		target := b.targetBitrate()
		enc.SetBitrate(target)
		now := time.Now()
		if b.keyWanted.Load() && now.Sub(lastKey) >= 250*time.Millisecond {
			b.keyWanted.Store(false)
			enc.ForceKey()
		}
		// The encoder's clock: the capture time at 90 kHz, never going back.
		pts := max(int64(uint64(fr.CaptureNS)*9/100000), lastPTS+1)
		lastPTS = pts
		data, key, err := enc.Encode(pts)
		if err != nil {
			return err
		}
		if key {
			lastKey = now
		}
		if len(data) == 0 { // the rate control dropped it
			b.mu.Lock()
			b.st.RateDrops++
			b.mu.Unlock()
			continue
		}
		t1 := framebus.Now()
		pic = Picture{Seq: fr.Seq, Generation: fr.Generation, CaptureNS: fr.CaptureNS, CommitNS: fr.CommitNS,
			EncodedNS: t1, Width: w, Height: h, Data: data, Key: key}
		b.hub.Publish(&pic)
		pic.Data = nil
		fs := in.Stats()
		b.mu.Lock()
		b.st.Width, b.st.Height = w, h
		b.st.FramesEncoded++
		if key {
			b.st.Keyframes++
		}
		b.st.FramesDropped = fs.Dropped + fs.Discarded
		b.st.EncodeUS = float64(t1-t0) / 1e3
		b.st.TargetBitrate = target
		b.mu.Unlock()
		encLat.add(t1 - t0)
		encoded++
		if time.Since(lastLog) >= progressEvery {
			n, mean, mx := encLat.take()
			st := b.Status()
			sent := 0
			for _, v := range st.Sessions {
				sent += v.Bitrate
			}
			b.log.Info("WebRTC progress", "bus", b.name, "viewers", st.Viewers, "fps", f1(float64(n)/time.Since(lastLog).Seconds()), "encode_mean", mean.String(), "encode_max", mx.String(), "target_bitrate", target, "sent_bitrate", sent, "frames_encoded", encoded, "keyframes", st.Keyframes, "skipped", st.FramesDropped, "rate_drops", st.RateDrops)
			lastLog = time.Now()
		}
	}
}

// toI420 writes frame fr into dst, laid out as f (I420): Go copies for
// I420, NV12 and GREY frames (capture/convert.go), one OpenCV conversion
// for RGBA, RGB24 and BGR24, two (through BGR, the viewer's Converter) for
// YUYV and MJPEG. fr is a copy of the bus's frame (copy mode): OpenCV reads
// that copy, never the bus.
func toI420(dst []byte, f framebus.Format, fr *framebus.Frame, conv *Converter, i420 *gocv.Mat) error {
	sf := fr.Format
	w, h := int(sf.Width), int(sf.Height)
	rect := image.Rect(0, 0, w, h)
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
		ys, uvs := int(sf.PlaneStride[0]), int(sf.PlaneStride[1])
		for y := 0; y < h; y++ {
			copy(dst[int(f.PlaneOffset[0])+y*int(f.PlaneStride[0]):][:w], plane(0)[y*ys:][:w])
		}
		for y := 0; y < h/2; y++ {
			uv := plane(1)[y*uvs:][:w]
			u := dst[int(f.PlaneOffset[1])+y*int(f.PlaneStride[1]):][:w/2]
			v := dst[int(f.PlaneOffset[2])+y*int(f.PlaneStride[2]):][:w/2]
			for x := range u {
				u[x], v[x] = uv[2*x], uv[2*x+1]
			}
		}
		return nil
	}
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

// targetBitrate is the lowest estimate of the viewers' links, within the
// bounds.
func (b *webrtcBridge) targetBitrate() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := 0
	for _, s := range b.sessions {
		if e := s.estimator.Load(); e != nil && s.connected.Load() {
			if r := (*e).GetTargetBitrate(); r > 0 && (t == 0 || r < t) {
				t = r
			}
		}
	}
	if t == 0 {
		t = 1_000_000 // rtc.Config's start
	}
	hi := b.encMax
	if hi == 0 {
		hi = 1_000_000
	}
	return max(b.wo.MinBitrate, min(t, hi))
}

// whepSession is one viewer.
type whepSession struct {
	id, remote string
	created    time.Time
	pc         *webrtc.PeerConnection
	track      *rtc.VideoTrack
	sender     *webrtc.RTPSender
	ssrc       uint32
	estimator  atomic.Pointer[cc.BandwidthEstimator]
	connected  atomic.Bool
	cancel     context.CancelFunc
	ended      atomic.Bool

	sent, dropped, bytes, keyReqs, nacks atomic.Uint64

	mu        sync.Mutex
	state     webrtc.PeerConnectionState
	rttMS     float64
	loss      float64
	lost      int64
	rateBytes uint64
	rateAt    time.Time
	bitrate   int
}

// ServeHTTP answers /whep and /whep/{id}.
func (b *webrtcBridge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.cors(w, r)
	rest := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/whep"), "/")
	if r.Method == http.MethodOptions {
		w.Header().Set("Allow", "OPTIONS, POST, PATCH, DELETE")
		w.Header().Set("Accept-Post", "application/sdp")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if rest == "" || rest == b.name {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "OPTIONS, POST")
			http.Error(w, "POST an SDP offer (Content-Type: application/sdp) to start a WHEP session", http.StatusMethodNotAllowed)
			return
		}
		b.post(w, r)
		return
	}
	b.mu.Lock()
	s := b.sessions[rest]
	b.mu.Unlock()
	if s == nil {
		if r.Method == http.MethodPost {
			http.Error(w, fmt.Sprintf("this preview serves bus %s: there is no bus %q here", b.name, rest), http.StatusNotFound)
			return
		}
		http.Error(w, fmt.Sprintf("no WHEP session %q (ended, or never made)", rest), http.StatusNotFound)
		return
	}
	switch r.Method {
	case http.MethodDelete:
		b.end(s, "deleted by the viewer")
		w.WriteHeader(http.StatusOK)
	case http.MethodPatch:
		b.patch(w, r, s)
	default:
		w.Header().Set("Allow", "OPTIONS, PATCH, DELETE")
		http.Error(w, "a WHEP session takes PATCH (trickle ICE) and DELETE", http.StatusMethodNotAllowed)
	}
}

// cors lets the allowed origins' pages use the endpoint.
func (b *webrtcBridge) cors(w http.ResponseWriter, r *http.Request) {
	origin := r.Header.Get("Origin")
	if origin == "" || len(b.wo.AllowOrigins) == 0 {
		return
	}
	h := w.Header()
	switch {
	case slices.Contains(b.wo.AllowOrigins, "*"):
		h.Set("Access-Control-Allow-Origin", "*")
	case slices.Contains(b.wo.AllowOrigins, origin):
		h.Set("Access-Control-Allow-Origin", origin)
		h.Add("Vary", "Origin")
	default:
		return
	}
	h.Set("Access-Control-Allow-Methods", "OPTIONS, POST, PATCH, DELETE")
	h.Set("Access-Control-Allow-Headers", "Content-Type, If-Match, Authorization")
	h.Set("Access-Control-Expose-Headers", "Location, ETag, Accept-Patch")
}

// readSDP reads a request body of the given content type, at most 64 KiB.
func readSDP(w http.ResponseWriter, r *http.Request, ctype string) (string, bool) {
	if ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";"); !strings.EqualFold(strings.TrimSpace(ct), ctype) {
		http.Error(w, "the body must be "+ctype+" (Content-Type)", http.StatusUnsupportedMediaType)
		return "", false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			http.Error(w, "the body is over 64 KiB", http.StatusRequestEntityTooLarge)
		} else {
			http.Error(w, "reading the body: "+err.Error(), http.StatusBadRequest)
		}
		return "", false
	}
	return string(body), true
}

// post makes a session from an offer.
func (b *webrtcBridge) post(w http.ResponseWriter, r *http.Request) {
	offer, ok := readSDP(w, r, "application/sdp")
	if !ok {
		return
	}
	if !strings.HasPrefix(strings.TrimSpace(offer), "v=0") {
		http.Error(w, "bad SDP offer: it does not start with v=0", http.StatusBadRequest)
		return
	}
	if _, err := framebus.Inspect(b.name, b.o.Dir); errors.Is(err, framebus.ErrNotFound) {
		http.Error(w, fmt.Sprintf("bus %s does not exist (its producer has not started, or removed it)", b.name), http.StatusNotFound)
		return
	}
	b.mu.Lock()
	if len(b.sessions) >= b.wo.MaxViewers {
		b.refused++
		b.mu.Unlock()
		w.Header().Set("Retry-After", "5")
		http.Error(w, fmt.Sprintf("this preview has its %d WebRTC viewers already (--webrtc-max-viewers)", b.wo.MaxViewers), http.StatusServiceUnavailable)
		return
	}
	b.mu.Unlock()

	s := &whepSession{id: newID(), remote: r.RemoteAddr, created: time.Now(), rateAt: time.Now()}
	api, err := rtc.NewSendAPI(b.cfg, func(e cc.BandwidthEstimator) { s.estimator.Store(&e) })
	if err != nil {
		http.Error(w, "WebRTC: "+err.Error(), http.StatusInternalServerError)
		return
	}
	pc, err := api.NewPeerConnection(b.cfg.ICEConfig())
	if err != nil {
		http.Error(w, "WebRTC: "+err.Error(), http.StatusInternalServerError)
		return
	}
	s.pc = pc
	fail := func(code int, msg string) {
		pc.Close()
		http.Error(w, msg, code)
	}
	var seq [6]byte
	rand.Read(seq[:])
	s.track = rtc.NewVideoTrack("video", "framebus-"+b.name, uint16(seq[0])<<8|uint16(seq[1]),
		uint32(seq[2])<<24|uint32(seq[3])<<16|uint32(seq[4])<<8|uint32(seq[5]))
	if s.sender, err = pc.AddTrack(s.track); err != nil {
		fail(http.StatusInternalServerError, "WebRTC: "+err.Error())
		return
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		fail(http.StatusBadRequest, "bad SDP offer: "+err.Error())
		return
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		fail(http.StatusBadRequest, "cannot answer this offer: "+err.Error())
		return
	}
	if !strings.Contains(answer.SDP, "VP8/90000") || !sendsVideo(pc, s.sender) {
		fail(http.StatusBadRequest, "the offer does not receive VP8 video (this endpoint sends one VP8 video track)")
		return
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		fail(http.StatusInternalServerError, "WebRTC: "+err.Error())
		return
	}
	select {
	case <-gathered:
	case <-time.After(5 * time.Second): // answer with what was gathered
	case <-r.Context().Done():
		pc.Close()
		return
	}
	if p := s.sender.GetParameters(); len(p.Encodings) > 0 {
		s.ssrc = uint32(p.Encodings[0].SSRC)
	}
	ctx, cancel := context.WithCancel(b.ctx)
	s.cancel = cancel
	b.mu.Lock()
	if len(b.sessions) >= b.wo.MaxViewers { // others came meanwhile
		b.refused++
		b.mu.Unlock()
		cancel()
		w.Header().Set("Retry-After", "5")
		fail(http.StatusServiceUnavailable, fmt.Sprintf("this preview has its %d WebRTC viewers already", b.wo.MaxViewers))
		return
	}
	b.sessions[s.id] = s
	b.mu.Unlock()
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		s.mu.Lock()
		s.state = st
		s.mu.Unlock()
		switch st {
		case webrtc.PeerConnectionStateConnected:
			s.connected.Store(true)
			b.keyWanted.Store(true) // the viewer starts at a keyframe
		case webrtc.PeerConnectionStateFailed:
			go b.end(s, "the connection failed (the viewer is gone)")
		case webrtc.PeerConnectionStateClosed:
			go b.end(s, "the connection closed")
		}
	})
	b.wg.Add(2)
	go func() {
		defer b.wg.Done()
		b.send(ctx, s)
	}()
	go func() {
		defer b.wg.Done()
		b.readRTCP(s)
	}()
	time.AfterFunc(b.wo.ConnectTimeout, func() {
		if !s.connected.Load() {
			b.end(s, fmt.Sprintf("not connected within %v", b.wo.ConnectTimeout))
		}
	})
	b.poke()
	b.log.Info("WebRTC: viewer joined", "bus", b.name, "session", s.id, "remote", s.remote)
	h := w.Header()
	h.Set("Content-Type", "application/sdp")
	h.Set("Location", "/whep/"+s.id)
	h.Set("ETag", `"`+s.id+`"`)
	h.Set("Accept-Patch", "application/trickle-ice-sdpfrag")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, pc.LocalDescription().SDP)
}

// sendsVideo says whether the sender's transceiver is part of the answer.
func sendsVideo(pc *webrtc.PeerConnection, snd *webrtc.RTPSender) bool {
	for _, t := range pc.GetTransceivers() {
		if t.Sender() == snd {
			d := t.Direction()
			return t.Mid() != "" && (d == webrtc.RTPTransceiverDirectionSendonly || d == webrtc.RTPTransceiverDirectionSendrecv)
		}
	}
	return false
}

func newID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// patch takes trickled candidates (RFC 8840 fragments).
func (b *webrtcBridge) patch(w http.ResponseWriter, r *http.Request, s *whepSession) {
	frag, ok := readSDP(w, r, "application/trickle-ice-sdpfrag")
	if !ok {
		return
	}
	mid := ""
	for _, line := range strings.Split(frag, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "a=mid:"):
			mid = strings.TrimPrefix(line, "a=mid:")
		case strings.HasPrefix(line, "a=candidate:"):
			c := webrtc.ICECandidateInit{Candidate: strings.TrimPrefix(line, "a=")}
			if mid != "" {
				c.SDPMid = &mid
			}
			if err := s.pc.AddICECandidate(c); err != nil {
				http.Error(w, "bad candidate: "+err.Error(), http.StatusBadRequest)
				return
			}
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// end closes a session once.
func (b *webrtcBridge) end(s *whepSession, why string) {
	if s.ended.Swap(true) {
		return
	}
	b.mu.Lock()
	delete(b.sessions, s.id)
	last := len(b.sessions) == 0
	if last && b.stopEnc != nil {
		b.stopEnc()
		b.stopEnc = nil
	}
	b.mu.Unlock()
	if s.cancel != nil {
		s.cancel()
	}
	s.pc.Close()
	b.log.Info("WebRTC: viewer left", "bus", b.name, "session", s.id, "why", why, "frames_sent", s.sent.Load(), "frames_dropped", s.dropped.Load())
}

// send writes the newest encoded frame each time the previous one is out. A
// gap (the viewer was slower than the stream) waits for a keyframe.
func (b *webrtcBridge) send(ctx context.Context, s *whepSession) {
	rd := b.hub.Reader(ctx)
	defer rd.Close()
	var last uint64
	if p := b.hub.Latest(); p != nil { // start after the frame already there
		last = p.ID()
		b.hub.Release(p)
	}
	needKey := true
	for {
		p := rd.Next(last)
		if p == nil {
			return
		}
		if last != 0 && p.ID() > last+1 {
			s.dropped.Add(p.ID() - last - 1)
			needKey = true
		}
		last = p.ID()
		if !s.connected.Load() {
			b.hub.Release(p)
			continue
		}
		if needKey && !p.Key {
			s.dropped.Add(1)
			b.keyWanted.Store(true)
			b.hub.Release(p)
			continue
		}
		n, err := s.track.WriteFrame(p.Data, p.CaptureNS)
		captureNS := p.CaptureNS
		b.hub.Release(p)
		if err != nil {
			if errors.Is(err, io.ErrClosedPipe) || ctx.Err() != nil {
				return
			}
			s.dropped.Add(1)
			needKey = true
			continue
		}
		needKey = false
		s.sent.Add(1)
		s.bytes.Add(uint64(n))
		b.mu.Lock()
		b.st.CaptureToSent = float64(framebus.Now()-captureNS) / 1e3
		b.mu.Unlock()
	}
}

// readRTCP handles the viewer's reports: keyframe requests, loss and round
// trip time.
func (b *webrtcBridge) readRTCP(s *whepSession) {
	for {
		pkts, _, err := s.sender.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			switch p := p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				s.keyReqs.Add(1)
				b.keyWanted.Store(true)
			case *rtcp.TransportLayerNack:
				s.nacks.Add(uint64(len(p.Nacks)))
			case *rtcp.ReceiverReport:
				s.report(p.Reports)
			case *rtcp.SenderReport:
				s.report(p.Reports)
			}
		}
	}
}

// report takes the reception report of our stream.
func (s *whepSession) report(rs []rtcp.ReceptionReport) {
	for _, r := range rs {
		if s.ssrc != 0 && r.SSRC != s.ssrc {
			continue
		}
		s.mu.Lock()
		s.loss = float64(r.FractionLost) / 256
		s.lost = int64(r.TotalLost)
		if r.LastSenderReport != 0 {
			// RFC 3550 section 6.4.1: now - LSR - DLSR, in 1/65536 s.
			now := uint32(rtc.NTP(time.Now().UnixNano()) >> 16)
			if d := now - r.LastSenderReport - r.Delay; d < 1<<30 {
				s.rttMS = float64(d) * 1000 / 65536
			}
		}
		s.mu.Unlock()
	}
}

// Status is the bridge's and every session's state.
func (b *webrtcBridge) Status() *WebRTCStatus {
	b.mu.Lock()
	st := b.st
	st.Enabled = true
	st.Refused = b.refused
	ss := make([]*whepSession, 0, len(b.sessions))
	for _, s := range b.sessions {
		ss = append(ss, s)
	}
	b.mu.Unlock()
	slices.SortFunc(ss, func(a, c *whepSession) int { return a.created.Compare(c.created) })
	now := time.Now()
	st.Viewers = len(ss)
	st.Sessions = make([]WebRTCViewer, 0, len(ss))
	for _, s := range ss {
		v := WebRTCViewer{ID: s.id, Remote: s.remote, AgeS: now.Sub(s.created).Seconds(),
			FramesSent: s.sent.Load(), FramesDropped: s.dropped.Load(), KeyRequests: s.keyReqs.Load(), NACKs: s.nacks.Load()}
		if e := s.estimator.Load(); e != nil {
			v.TargetBitrate = (*e).GetTargetBitrate()
			v.Estimator = (*e).GetStats()
		}
		bytes := s.bytes.Load()
		s.mu.Lock()
		if dt := now.Sub(s.rateAt); dt >= time.Second {
			s.bitrate = int(float64(bytes-s.rateBytes) * 8 / dt.Seconds())
			s.rateBytes, s.rateAt = bytes, now
		}
		v.State, v.Bitrate, v.RTTMS, v.Loss, v.PacketsLost = s.state.String(), s.bitrate, s.rttMS, s.loss, s.lost
		s.mu.Unlock()
		st.Sessions = append(st.Sessions, v)
	}
	return &st
}
