//go:build framebus_webrtc && cgo

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"

	"github.com/framebus/framebus/internal/testutil"
	"github.com/framebus/framebus/internal/vpx"
)

// janus is a Janus (Debian's, with the VideoRoom plugin) and a
// simple-whip-server in front of it, on ports of their own on 127.0.0.1.
type janus struct {
	cfg, sws       string
	http, ws, whip int
	proc, front    *proc
	t              *testing.T
}

// startJanus starts Janus from a copy of /etc/janus with its own HTTP and
// WebSocket ports, and simple-whip-server (scripts/setup-whip-server.sh
// sets it up in bin/ when missing) talking to it.
func startJanus(t *testing.T) *janus {
	t.Helper()
	needInterop(t, "janus", "node", "npm")
	root, _ := filepath.Abs("../..")
	out, err := exec.Command(filepath.Join(root, "scripts/setup-whip-server.sh"), filepath.Join(root, "bin/simple-whip-server")).CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/setup-whip-server.sh: %v\n%s", err, out)
	}
	sws := strings.TrimSpace(string(out))
	j := &janus{t: t, cfg: t.TempDir(), sws: t.TempDir(), http: freePort(t), ws: freePort(t), whip: freePort(t)}
	files, _ := filepath.Glob("/etc/janus/*.jcfg")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		switch filepath.Base(f) {
		case "janus.transport.http.jcfg":
			s = regexp.MustCompile(`(?m)^(\s*)port = 8088`).ReplaceAllString(s, fmt.Sprintf("${1}port = %d", j.http))
			s = regexp.MustCompile(`(?m)^(\s*)admin_port = 7088`).ReplaceAllString(s, fmt.Sprintf("${1}admin_port = %d", freePort(t)))
		case "janus.transport.websockets.jcfg":
			s = regexp.MustCompile(`(?m)^(\s*)ws_port = 8188`).ReplaceAllString(s, fmt.Sprintf("${1}ws_port = %d", j.ws))
		}
		os.WriteFile(filepath.Join(j.cfg, filepath.Base(f)), []byte(s), 0o644)
	}
	for _, f := range []string{"server.js", "whip-janus.js"} {
		b, _ := os.ReadFile(filepath.Join(sws, f))
		os.WriteFile(filepath.Join(j.sws, f), b, 0o644)
	}
	b, _ := os.ReadFile(filepath.Join(sws, "config.js"))
	c := strings.Replace(strings.Replace(string(b), "ws://127.0.0.1:8188", fmt.Sprintf("ws://127.0.0.1:%d", j.ws), 1), "port: 7080", fmt.Sprintf("port: %d", j.whip), 1)
	os.WriteFile(filepath.Join(j.sws, "config.js"), []byte(c), 0o644)
	os.Symlink(filepath.Join(sws, "node_modules"), filepath.Join(j.sws, "node_modules"))
	j.startJanus()
	j.front = startProg(t, nil, "node", filepath.Join(j.sws, "server.js"))
	testutil.WaitFor(t, 20*time.Second, "simple-whip-server", func() bool {
		resp, err := http.Get(j.whipURL("/endpoints"))
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200 && strings.Contains(j.front.Stdout.String()+j.front.Stderr.String(), "Janus OK")
	})
	return j
}

func (j *janus) startJanus() {
	j.proc = startProg(j.t, nil, "janus", "-F", j.cfg, "-C", filepath.Join(j.cfg, "janus.jcfg"))
	testutil.WaitFor(j.t, 20*time.Second, "Janus's HTTP API", func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/janus/info", j.http))
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
}

func (j *janus) whipURL(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d/whip%s", j.whip, path)
}

// api POSTs a Janus API request and returns its data.
func (j *janus) api(path string, req map[string]any) map[string]any {
	j.t.Helper()
	req["transaction"] = "t"
	b, _ := json.Marshal(req)
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/janus%s", j.http, path), "application/json", bytes.NewReader(b))
	if err != nil {
		j.t.Fatal(err)
	}
	defer resp.Body.Close()
	var v map[string]any
	json.NewDecoder(resp.Body).Decode(&v)
	if v["janus"] != "success" {
		j.t.Fatalf("Janus %s %v: %v", path, req, v)
	}
	return v
}

// room makes VideoRoom room N (VP8, 4 Mbit/s).
func (j *janus) room(n int) {
	j.t.Helper()
	s := j.api("", map[string]any{"janus": "create"})["data"].(map[string]any)["id"]
	sid := fmt.Sprintf("/%.0f", s)
	h := j.api(sid, map[string]any{"janus": "attach", "plugin": "janus.plugin.videoroom"})["data"].(map[string]any)["id"]
	j.api(fmt.Sprintf("%s/%.0f", sid, h), map[string]any{"janus": "message", "body": map[string]any{"request": "create", "room": n, "bitrate": 4000000, "videocodec": "vp8", "publishers": 4}})
}

// endpoints is simple-whip-server's GET /whip/endpoints: id to enabled.
func (j *janus) endpoints() map[string]bool {
	j.t.Helper()
	resp, err := http.Get(j.whipURL("/endpoints"))
	if err != nil {
		j.t.Fatal(err)
	}
	defer resp.Body.Close()
	var es []struct {
		ID      string `json:"id"`
		Enabled bool   `json:"enabled"`
	}
	json.NewDecoder(resp.Body).Decode(&es)
	m := map[string]bool{}
	for _, e := range es {
		m[e.ID] = e.Enabled
	}
	return m
}

// rtpSink receives the VP8 RTP that Janus forwards and decodes it.
type rtpSink struct {
	conn            *net.UDPConn
	decoded, broken atomic.Int64
}

func newRTPSink(t *testing.T) *rtpSink {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s := &rtpSink{conn: c}
	dec, err := vpx.NewDecoder(1)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer dec.Close()
		buf := make([]byte, 2048)
		var frame []byte
		var vp8 codecs.VP8Packet
		var pkt rtp.Packet
		var ts uint32
		var next uint16
		ok := false
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			if pkt.Unmarshal(buf[:n]) != nil || pkt.PayloadType < 96 {
				continue
			}
			if pkt.Timestamp != ts || (ok && pkt.SequenceNumber != next) { // a new frame, or a gap: start again
				frame, ts, ok = frame[:0], pkt.Timestamp, pkt.SequenceNumber == next || len(frame) == 0
			}
			next = pkt.SequenceNumber + 1
			p, err := vp8.Unmarshal(pkt.Payload)
			if err != nil {
				continue
			}
			frame = append(frame, p...)
			if pkt.Marker {
				if pic, corrupt, err := dec.Decode(frame); err == nil && !corrupt && pic != nil {
					s.decoded.Add(1)
				} else {
					s.broken.Add(1)
				}
				frame = frame[:0]
			}
		}
	}()
	return s
}

func (s *rtpSink) port() int { return s.conn.LocalAddr().(*net.UDPAddr).Port }

// framebus push through Janus: a 720p30 bus pushed over WHIP to
// simple-whip-server, which publishes it in a Janus VideoRoom; Janus
// forwards the publisher's RTP to a receiver here that decodes every VP8
// frame (libvpx): frames keep coming at the source's rate. Janus is then
// killed (SIGKILL) and started again: push makes a new session by itself
// and frames come again. After push ends (SIGINT), simple-whip-server
// shows the endpoint disabled: the session was deleted.
func TestPushThroughJanus(t *testing.T) {
	needWebRTC(t)
	j := startJanus(t)
	j.room(4242)
	sink := newRTPSink(t)
	const token = "janus-tok-7"
	body := fmt.Sprintf(`{"id":"cam","room":4242,"token":%q,"recipient":{"host":"127.0.0.1","videoPort":%d}}`, token, sink.port())
	resp, err := http.Post(j.whipURL("/create"), "application/json", strings.NewReader(body))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST /whip/create: %v %v", err, resp)
	}
	resp.Body.Close()
	dir := t.TempDir()
	startLive(t, nil, "capture", "--name", "src", "--source", "pattern", "--size", "1280x720", "--fps", "30", "--dir", dir)
	testutil.WaitFor(t, 15*time.Second, "the bus", func() bool { return exists(segment(dir, "src")) })
	push := startLive(t, []string{"FRAMEBUS_WHIP_TOKEN=" + token}, "push", "src", "--whip", j.whipURL("/endpoint/cam"), "--dir", dir)
	testutil.WaitFor(t, 20*time.Second, "frames through Janus", func() bool { return sink.decoded.Load() > 10 })
	if !j.endpoints()["cam"] {
		t.Errorf("simple-whip-server does not show the endpoint enabled")
	}
	n0, t0 := sink.decoded.Load(), time.Now()
	time.Sleep(5 * time.Second)
	fps := float64(sink.decoded.Load()-n0) / time.Since(t0).Seconds()
	t.Logf("through Janus: %.1f fps decoded, %d broken", fps, sink.broken.Load())
	if fps < 24 {
		t.Errorf("%.1f fps decoded through Janus, want the source's 30 within 20%%", fps)
	}

	// Janus dies and comes back (its rooms with it: made again).
	j.proc.Signal(t, syscall.SIGKILL)
	j.proc.Wait(t, 5*time.Second)
	down := time.Now()
	time.Sleep(time.Second)
	j.startJanus()
	j.room(4242)
	n1 := sink.decoded.Load()
	testutil.WaitFor(t, 45*time.Second, "frames through the restarted Janus", func() bool { return sink.decoded.Load() > n1+30 })
	t.Logf("frames again %v after Janus was killed", time.Since(down).Round(100*time.Millisecond))
	if s := push.Stderr.String(); !strings.Contains(s, "session=2") {
		t.Errorf("push did not make a second session:\n%s", s)
	}

	push.Signal(t, syscall.SIGINT)
	if code := push.Wait(t, 10*time.Second); code != 0 {
		t.Errorf("push exit %d:\n%s", code, push.Stderr.String())
	}
	if j.endpoints()["cam"] {
		t.Errorf("the endpoint is still enabled after push ended")
	}
	if strings.Contains(push.Stderr.String(), token) {
		t.Errorf("the token is in push's log")
	}
}
