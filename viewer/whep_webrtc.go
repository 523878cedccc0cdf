//go:build framebus_webrtc && framebus_opencv && cgo

package viewer

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/transport/v5"

	"github.com/framebus/framebus/internal/logx"
	"github.com/framebus/framebus/internal/rtc"
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
//
// This file is the bridge and its life; whep_encode_webrtc.go the encoder,
// whep_http_webrtc.go the routes, whep_session_webrtc.go a viewer's session,
// whep_stats_webrtc.go the numbers.
type webrtcBridge struct {
	name string
	o    HTTPOptions
	wo   WebRTCOptions
	cfg  rtc.Config
	log  *slog.Logger
	ctx  context.Context
	hub  *Hub
	mux  *http.ServeMux // the routes of /whep

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
	if o.WebRTC.Off {
		return nil, func() {}, nil
	}
	b, err := newBridge(ctx, name, o, log)
	if err != nil {
		return nil, nil, err
	}
	b.mux = b.routes()
	return b, b.close, nil
}

// newBridge makes the bridge of bus name and starts its encoder's loop,
// which encodes while it has sessions: the WHEP server's viewers, or the
// one WHIP session of a push (Push).
func newBridge(ctx context.Context, name string, o HTTPOptions, log *slog.Logger) (*webrtcBridge, error) {
	wo, err := webrtcDefaults(o.WebRTC)
	if err != nil {
		return nil, err
	}
	cfg := rtc.Config{
		Log:        log,
		ICEServers: wo.ICEServers, NAT1To1IPs: wo.PublicIPs, UDPPortMin: wo.UDPPortMin, UDPPortMax: wo.UDPPortMax,
		LoopbackOnly: wo.LoopbackOnly, FailedTimeout: wo.ICEFailedTimeout, DisconnectedTimeout: min(4*time.Second, wo.ICEFailedTimeout/2),
		MinBitrate: wo.MinBitrate, MaxBitrate: wo.MaxBitrate, // 0: rtc's default, the encoder bounds itself
		Net: webrtcNet,
	}
	if err := cfg.Check(); err != nil {
		return nil, &OptionError{Reason: err.Error()}
	}
	b := &webrtcBridge{name: name, o: o, wo: wo, cfg: cfg, log: logx.Or(log), ctx: ctx, hub: NewHub(),
		sessions: map[string]*whepSession{}, wake: make(chan struct{}, 1)}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		b.run(ctx)
	}()
	return b, nil
}

// webrtcDefaults fills in the options' defaults and checks the origins.
func webrtcDefaults(wo WebRTCOptions) (WebRTCOptions, error) {
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
			return wo, &OptionError{Reason: fmt.Sprintf("--webrtc-allow-origin %q: want * or an origin such as https://example.com", o)}
		}
	}
	return wo, nil
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
		s.peer.Close("the preview stops")
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

// targetBitrate is the lowest estimate of the viewers' links, within the
// bounds.
func (b *webrtcBridge) targetBitrate() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := 0
	for _, s := range b.sessions {
		if e := s.estimator.Load(); e != nil && s.peer.Connected() {
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
