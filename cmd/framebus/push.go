package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/framebus/framebus/internal/cli"
	"github.com/framebus/framebus/viewer"
)

// tokenEnv holds push's bearer token (or --token-file names a file).
const tokenEnv = "FRAMEBUS_WHIP_TOKEN"

var pushCmd = &cli.Command{
	Name:    "push",
	Args:    "NAME --whip URL [--token-file FILE] [--max-bitrate BPS] [--retries N] [--duration D] [--timeout D] [--dir DIR]",
	Summary: "send a bus to a WHIP endpoint (a media server, another framebus) over WebRTC",
	Description: `Sends the frames of bus NAME to the WHIP endpoint URL (RFC 9725): a media
server (Janus through simple-whip-server, mediamtx, LiveKit, Cloudflare, ...)
or another framebus's capture --source whip:LISTEN. The frames are encoded
in VP8 by the encoder view --http uses for WHEP (libvpx, real time), at the
bitrate the congestion controller (GCC over transport-cc) finds, between
--min-bitrate and --max-bitrate; a keyframe on the server's PLI or FIR. Every
frame's capture time travels in the abs-capture-time RTP header extension, so
a framebus on the far side (capture --source whip:, or whep: through a server
that keeps the extension) puts it back on its bus, and tail there measures
capture to wake across both hosts.

The bearer token is read from $` + tokenEnv + ` or from --token-file FILE
(its first line), never from the command line, where ps would show it; it is
never logged.

The session is deleted (DELETE of its Location) when push ends: --duration,
SIGINT, SIGTERM or SIGHUP. It comes back by itself: a connection that goes
silent is restarted in place when the server takes an ICE restart by PATCH,
else, and when it fails or the server ends it, push makes a new session after
a pause of 0.5 s doubling to 5 s (each ±25%, from 0.5 s again after a session
that lasted 10 s), for ever or for --retries N failed attempts in a row.
Refusals: 401 ends push at once (exit 1: check the token), so do 403 and 404
before any session worked (a wrong token or URL); after one did, they are
retried (a restarted server whose endpoint comes back, or that still thinks
it busy); 5xx, an unreachable server and an answer that is not SDP are
retried. The log says each attempt, and the
progress line every 5 s the state, sessions, reconnects, failures, the rate
and bitrate sent, RTT and loss.

Needs a build with cgo and -tags framebus_webrtc,framebus_opencv (make build).`,
	Examples: `FRAMEBUS_WHIP_TOKEN=secret framebus push cam0 --whip https://sfu.example.net/whip/endpoint/cam0
		framebus push cam0 --whip http://127.0.0.1:7080/whip/endpoint/cam --token-file /etc/framebus/whip.token
		framebus push cam0 --whip http://far-box:8090/whip --max-bitrate 4M   # far-box: framebus capture --name cam0 --source whip:0.0.0.0:8090
		framebus push cam0 --whip http://127.0.0.1:7080/whip/endpoint/cam --retries 10 --duration 1h`,
	Setup: func(fs *flag.FlagSet) func(context.Context, []string) error {
		o := &pushOpts{}
		fs.StringVar(&o.url, "whip", "", "the WHIP endpoint's `URL` (http:// or https://)")
		fs.StringVar(&o.tokenFile, "token-file", "", "read the bearer token from the first line of `FILE` (default: $"+tokenEnv+")")
		fs.StringVar(&o.maxBitrate, "max-bitrate", "", "the VP8 encoder's highest bitrate, `BPS` (e.g. 4M, 800k; default 0.1 bit per pixel per frame)")
		fs.StringVar(&o.minBitrate, "min-bitrate", "", "the encoder's lowest bitrate, `BPS` (default 50k)")
		fs.IntVar(&o.retries, "retries", 0, "give up after `N` failed attempts in a row (0: never)")
		fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "wait up to `D` for a producer that has not started (then for ever, saying so)")
		fs.DurationVar(&o.duration, "duration", 0, "stop after `D` (0: until interrupted)")
		fs.Var(&o.iceServers, "ice-server", "a STUN or TURN `URL` (repeatable)")
		fs.StringVar(&o.udpPorts, "webrtc-udp-ports", "", "the local UDP ports of WebRTC, `MIN-MAX` (default: any)")
		fs.StringVar(&o.dir, "dir", "", dirUsage)
		return o.run
	},
}

type pushOpts struct {
	url, tokenFile, dir    string
	maxBitrate, minBitrate string
	udpPorts               string
	retries                int
	timeout, duration      time.Duration
	iceServers             listFlag
}

func (o *pushOpts) run(ctx context.Context, args []string) error {
	log := zerolog.Ctx(ctx)
	name, err := oneName(args)
	if err != nil {
		return err
	}
	if o.url == "" {
		return cli.Usagef("--whip URL is required (the WHIP endpoint)")
	}
	if !strings.HasPrefix(o.url, "http://") && !strings.HasPrefix(o.url, "https://") {
		return cli.Usagef("--whip %q: want an http:// or https:// URL", o.url)
	}
	if o.duration < 0 || o.timeout < 0 || o.retries < 0 {
		return cli.Usagef("--duration, --timeout and --retries must not be negative")
	}
	token, err := o.token()
	if err != nil {
		return cli.Usage(err)
	}
	wf := webrtcFlags{on: true, maxViewers: 1, maxBitrate: o.maxBitrate, iceServers: o.iceServers, udpPorts: o.udpPorts}
	wo, err := wf.options()
	if err != nil {
		return cli.Usage(errors.New(strings.ReplaceAll(err.Error(), "--webrtc-max-bitrate", "--max-bitrate")))
	}
	if o.minBitrate != "" {
		if wo.MinBitrate, err = parseBitrate(o.minBitrate); err != nil {
			return cli.Usagef("--min-bitrate %q: %v", o.minBitrate, err)
		}
	}
	if !viewer.HasPush {
		return cli.Usage(viewer.Push(ctx, name, viewer.PushOptions{URL: o.url}))
	}
	ctx, stop := runContext(ctx, o.duration)
	defer stop()
	log.Info().Str("bus", name).Str("url", o.url).Bool("token", token != "").Msg("push: sending the bus over WHIP")
	err = viewer.Push(ctx, name, viewer.PushOptions{Dir: o.dir, Timeout: o.timeout, URL: o.url, Token: token, Retries: o.retries, WebRTC: wo, Log: cli.Slog(log)})
	var pe *viewer.PushError
	if errors.As(err, &pe) {
		return err
	}
	return consumerError(name, o.dir, err)
}

// token is the bearer token: --token-file's first line, else $FRAMEBUS_WHIP_TOKEN.
func (o *pushOpts) token() (string, error) {
	if o.tokenFile == "" {
		return strings.TrimSpace(os.Getenv(tokenEnv)), nil
	}
	b, err := os.ReadFile(o.tokenFile)
	if err != nil {
		return "", fmt.Errorf("--token-file: %v", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	if line = strings.TrimSpace(line); line == "" {
		return "", fmt.Errorf("--token-file %s: the first line is empty", o.tokenFile)
	}
	if strings.ContainsAny(line, "\r\x00") || !strconv.CanBackquote(line) {
		return "", fmt.Errorf("--token-file %s: the token has control characters", o.tokenFile)
	}
	return line, nil
}
