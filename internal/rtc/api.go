package rtc

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/framebus/framebus/internal/logx"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/interceptor/pkg/gcc"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/logging"
	"github.com/pion/transport/v5"
	"github.com/pion/webrtc/v4"
)

// AbsCaptureTimeURI names the abs-capture-time RTP header extension.
const AbsCaptureTimeURI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time"

// ClockRate is VP8's RTP clock.
const ClockRate = 90000

// PayloadType is the VP8 payload type the answerer offers when it must
// choose (a remote offer's own number wins).
const PayloadType = 96

// Config is what both ends configure; the zero value works on one machine
// and on a LAN (host candidates, loopback included).
type Config struct {
	// Log receives pion's errors at Warn, its warnings at Debug (mostly
	// benign: a ping before any candidate pair, a packet for a stream
	// just closed); nil drops them.
	Log *slog.Logger

	// ICEServers are STUN or TURN URLs (stun:host:port) for peers behind NAT.
	ICEServers []string
	// NAT1To1IPs are public addresses to announce instead of the host's
	// (a server behind a 1:1 NAT).
	NAT1To1IPs []string
	// UDPPortMin and UDPPortMax bound the local UDP ports (0: any).
	UDPPortMin, UDPPortMax uint16
	// LoopbackOnly gathers 127.0.0.1 only (tests).
	LoopbackOnly bool

	// DisconnectedTimeout and FailedTimeout are ICE's: a peer silent that
	// long is disconnected, then failed (and its session ends). Defaults
	// 4 s and 10 s.
	DisconnectedTimeout, FailedTimeout time.Duration

	// Bitrates of the congestion controller (sender), bits per second:
	// defaults 1 Mbit/s to start, 100 kbit/s to 20 Mbit/s.
	StartBitrate, MinBitrate, MaxBitrate int

	// Net replaces the network (pion's vnet in tests).
	Net transport.Net
}

func (c Config) withDefaults() Config {
	if c.DisconnectedTimeout <= 0 {
		c.DisconnectedTimeout = 4 * time.Second
	}
	if c.FailedTimeout <= 0 {
		c.FailedTimeout = 10 * time.Second
	}
	if c.MinBitrate <= 0 {
		c.MinBitrate = 100_000
	}
	if c.MaxBitrate <= 0 {
		c.MaxBitrate = 20_000_000
	}
	c.MaxBitrate = max(c.MaxBitrate, c.MinBitrate)
	if c.StartBitrate <= 0 {
		c.StartBitrate = 1_000_000
	}
	c.StartBitrate = max(c.MinBitrate, min(c.StartBitrate, c.MaxBitrate))
	return c
}

// ICEConfig is the configuration of a peer connection: its ICE servers.
func (c Config) ICEConfig() webrtc.Configuration {
	var cfg webrtc.Configuration
	for _, u := range c.ICEServers {
		cfg.ICEServers = append(cfg.ICEServers, webrtc.ICEServer{URLs: []string{u}})
	}
	return cfg
}

// Check validates what a user gives (URLs, addresses, ports).
func (c Config) Check() error {
	for _, u := range c.ICEServers {
		if _, err := ice.ParseURL(u); err != nil {
			return fmt.Errorf("ICE server %q: %v (want stun:HOST:PORT or turn:HOST:PORT)", u, err)
		}
	}
	for _, ip := range c.NAT1To1IPs {
		if net.ParseIP(ip) == nil {
			return fmt.Errorf("public IP %q is not an IP address", ip)
		}
	}
	if c.UDPPortMin > c.UDPPortMax || (c.UDPPortMin == 0) != (c.UDPPortMax == 0) {
		return fmt.Errorf("UDP ports %d-%d: want MIN-MAX with 0 < MIN <= MAX", c.UDPPortMin, c.UDPPortMax)
	}
	return nil
}

// VP8Codec is the one codec both ends speak, with the feedback they use:
// NACK and PLI (loss repair, keyframe requests), FIR, transport-cc (the
// congestion controller's feedback).
var VP8Codec = webrtc.RTPCodecParameters{
	RTPCodecCapability: webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeVP8, ClockRate: ClockRate,
		RTCPFeedback: []webrtc.RTCPFeedback{
			{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"},
			{Type: webrtc.TypeRTCPFBTransportCC},
		},
	},
	PayloadType: PayloadType,
}

// NewSendAPI makes the API of one sending peer connection: its own
// congestion controller (GCC, delay and loss based, fed by the receiver's
// transport-cc feedback), whose estimator is handed to onEstimator when the
// connection is made. Packets are not paced: the sender writes each frame
// as it comes and never queues (pion's leaky-bucket pacer has an unbounded
// queue); the frames themselves follow the estimate.
func NewSendAPI(c Config, onEstimator func(cc.BandwidthEstimator)) (*webrtc.API, error) {
	c = c.withDefaults()
	lf := loggerFactory(c.Log)
	me, reg, err := mediaEngine(lf)
	if err != nil {
		return nil, err
	}
	ccf, err := cc.NewInterceptor(func() (cc.BandwidthEstimator, error) {
		return gcc.NewSendSideBWE(gcc.SendSideBWEInitialBitrate(c.StartBitrate),
			gcc.SendSideBWEMinBitrate(c.MinBitrate), gcc.SendSideBWEMaxBitrate(c.MaxBitrate),
			gcc.SendSideBWEPacer(gcc.NewNoOpPacer()), gcc.WithLoggerFactory(lf))
	})
	if err != nil {
		return nil, err
	}
	ccf.OnNewPeerConnection(func(_ string, e cc.BandwidthEstimator) {
		if onEstimator != nil {
			onEstimator(e)
		}
	})
	reg.Add(ccf)
	if err := webrtc.ConfigureTWCCHeaderExtensionSender(me, reg); err != nil {
		return nil, err
	}
	return newAPI(c, me, reg, lf)
}

// NewRecvAPI makes the API of a receiving peer connection: NACKs sent
// every 20 ms for missing packets, receiver reports, transport-cc feedback.
func NewRecvAPI(c Config) (*webrtc.API, error) {
	c = c.withDefaults()
	lf := loggerFactory(c.Log)
	me, reg, err := mediaEngine(lf)
	if err != nil {
		return nil, err
	}
	return newAPI(c, me, reg, lf)
}

func mediaEngine(lf logging.LoggerFactory) (*webrtc.MediaEngine, *interceptor.Registry, error) {
	me := &webrtc.MediaEngine{}
	if err := me.RegisterCodec(VP8Codec, webrtc.RTPCodecTypeVideo); err != nil {
		return nil, nil, err
	}
	if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: AbsCaptureTimeURI}, webrtc.RTPCodecTypeVideo); err != nil {
		return nil, nil, err
	}
	reg := &interceptor.Registry{}
	err := webrtc.RegisterDefaultInterceptorsWithOptions(me, reg,
		webrtc.WithInterceptorLoggerFactory(lf),
		webrtc.WithNackGeneratorOptions(nack.GeneratorInterval(20*time.Millisecond), nack.GeneratorSize(1024)),
		webrtc.WithNackResponderOptions(nack.ResponderSize(1024)))
	if err != nil {
		return nil, nil, err
	}
	return me, reg, nil
}

func newAPI(c Config, me *webrtc.MediaEngine, reg *interceptor.Registry, lf logging.LoggerFactory) (*webrtc.API, error) {
	se := webrtc.SettingEngine{LoggerFactory: lf}
	se.SetICETimeouts(c.DisconnectedTimeout, c.FailedTimeout, time.Second)
	se.SetIncludeLoopbackCandidate(true)
	// Browsers hide their addresses behind mDNS names; pion learns them
	// from the connectivity checks anyway (peer-reflexive candidates), and
	// multicast may not work where the bridge runs.
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
	if c.LoopbackOnly {
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	}
	if len(c.NAT1To1IPs) > 0 {
		se.SetNAT1To1IPs(c.NAT1To1IPs, webrtc.ICECandidateTypeHost)
	}
	if c.UDPPortMin != 0 {
		if err := se.SetEphemeralUDPPortRange(c.UDPPortMin, c.UDPPortMax); err != nil {
			return nil, err
		}
	}
	if c.Net != nil {
		se.SetNet(c.Net)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se)), nil
}

// loggerFactory routes pion's errors to l at Warn and its warnings at
// Debug.
func loggerFactory(l *slog.Logger) logging.LoggerFactory {
	return logAdapter{l: logx.Or(l)}
}

type logAdapter struct{ l *slog.Logger }

func (l logAdapter) NewLogger(scope string) logging.LeveledLogger { return scoped{l, scope} }

type scoped struct {
	l     logAdapter
	scope string
}

func (s scoped) out(lvl slog.Level, level, msg string) {
	s.l.l.Log(context.Background(), lvl, fmt.Sprintf("pion %s %s: %s", s.scope, level, strings.TrimSpace(msg)))
}
func (s scoped) Trace(string)              {}
func (s scoped) Tracef(string, ...any)     {}
func (s scoped) Debug(string)              {}
func (s scoped) Debugf(string, ...any)     {}
func (s scoped) Info(string)               {}
func (s scoped) Infof(string, ...any)      {}
func (s scoped) Warn(m string)             { s.out(slog.LevelDebug, "warning", m) }
func (s scoped) Warnf(f string, a ...any)  { s.out(slog.LevelDebug, "warning", fmt.Sprintf(f, a...)) }
func (s scoped) Error(m string)            { s.out(slog.LevelWarn, "error", m) }
func (s scoped) Errorf(f string, a ...any) { s.out(slog.LevelWarn, "error", fmt.Sprintf(f, a...)) }
