package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/framebus/framebus/viewer"
)

// webrtcFlags are view --http's WebRTC (WHEP) flags.
type webrtcFlags struct {
	on              bool
	maxViewers      int
	maxBitrate      string
	iceServers, ips listFlag
	origins         listFlag
	udpPorts        string
}

// listFlag is a flag given any number of times, or once with commas.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

func (f *webrtcFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&f.on, "webrtc", true, "web preview: serve WHEP at /whep and play WebRTC on the page (--webrtc=false: MJPEG only)")
	fs.IntVar(&f.maxViewers, "webrtc-max-viewers", 16, "web preview: at most `N` WebRTC viewers at a time")
	fs.StringVar(&f.maxBitrate, "webrtc-max-bitrate", "", "web preview: the VP8 encoder's highest bitrate, `BPS` (e.g. 4M, 800k; default 0.1 bit per pixel per frame)")
	fs.Var(&f.iceServers, "ice-server", "web preview: a STUN or TURN `URL` for WebRTC viewers behind NAT (repeatable)")
	fs.Var(&f.ips, "webrtc-public-ip", "web preview: an `IP` to announce to WebRTC viewers instead of this host's (1:1 NAT; repeatable)")
	fs.StringVar(&f.udpPorts, "webrtc-udp-ports", "", "web preview: the local UDP ports of WebRTC, `MIN-MAX` (default: any)")
	fs.Var(&f.origins, "webrtc-allow-origin", "web preview: let pages of `ORIGIN` (https://host, or *) use /whep (CORS; repeatable)")
}

func (f *webrtcFlags) options() (viewer.WebRTCOptions, error) {
	o := viewer.WebRTCOptions{Off: !f.on, MaxViewers: f.maxViewers, ICEServers: f.iceServers, PublicIPs: f.ips, AllowOrigins: f.origins}
	if f.maxViewers < 1 {
		return o, fmt.Errorf("--webrtc-max-viewers %d: want at least 1", f.maxViewers)
	}
	if f.maxBitrate != "" {
		bps, err := parseBitrate(f.maxBitrate)
		if err != nil {
			return o, fmt.Errorf("--webrtc-max-bitrate %q: %v", f.maxBitrate, err)
		}
		o.MaxBitrate = bps
	}
	if f.udpPorts != "" {
		lo, hi, ok := strings.Cut(f.udpPorts, "-")
		a, err1 := strconv.ParseUint(lo, 10, 16)
		b, err2 := strconv.ParseUint(hi, 10, 16)
		if !ok || err1 != nil || err2 != nil || a == 0 || a > b {
			return o, fmt.Errorf("--webrtc-udp-ports %q: want MIN-MAX, e.g. 50000-50100", f.udpPorts)
		}
		o.UDPPortMin, o.UDPPortMax = uint16(a), uint16(b)
	}
	return o, nil
}

// parseBitrate reads 800000, 800k or 4M (bits per second).
func parseBitrate(s string) (int, error) {
	mul := 1.0
	switch {
	case strings.HasSuffix(s, "k"), strings.HasSuffix(s, "K"):
		mul, s = 1e3, s[:len(s)-1]
	case strings.HasSuffix(s, "M"), strings.HasSuffix(s, "m"):
		mul, s = 1e6, s[:len(s)-1]
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v*mul < 50_000 || v*mul > 1e9 {
		return 0, fmt.Errorf("want bits per second from 50k to 1000M")
	}
	return int(v * mul), nil
}
