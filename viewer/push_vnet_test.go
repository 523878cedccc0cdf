//go:build framebus_webrtc && framebus_opencv && cgo

package viewer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/framebus/framebus/capture"
	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/internal/cli"
	"github.com/framebus/framebus/internal/rtc"
)

// pushLine is one of push's progress lines (the sender's numbers).
type pushLine struct {
	at            time.Time
	state         string
	target, sent  int // the encoder's target and what the session sent, bit/s
	fps, rttMS    float64
	loss          float64 // %
	framesSent    uint64
	nacks, keyReq uint64
}

// pushLog keeps push's progress lines (zerolog's JSON, one object a Write).
type pushLog struct {
	mu    sync.Mutex
	lines []pushLine
	other []string
}

func (l *pushLog) Write(p []byte) (int, error) {
	var m map[string]any
	if json.Unmarshal(p, &m) != nil {
		return len(p), nil
	}
	num := func(k string) float64 {
		switch v := m[k].(type) {
		case float64:
			return v
		case string:
			f, _ := strconv.ParseFloat(strings.TrimSuffix(v, "%"), 64)
			return f
		}
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if m["message"] != "push progress" {
		if len(l.other) < 100 {
			l.other = append(l.other, strings.TrimSpace(string(p)))
		}
		return len(p), nil
	}
	st, _ := m["state"].(string)
	l.lines = append(l.lines, pushLine{at: time.Now(), state: st, target: int(num("target_bitrate")), sent: int(num("sent_bitrate")),
		fps: num("fps"), rttMS: num("rtt_ms"), loss: num("loss"), framesSent: uint64(num("frames_sent")),
		nacks: uint64(num("nacks")), keyReq: uint64(num("key_requests"))})
	return len(p), nil
}

// since is the progress lines logged after t.
func (l *pushLog) since(t time.Time) []pushLine {
	l.mu.Lock()
	defer l.mu.Unlock()
	var r []pushLine
	for _, x := range l.lines {
		if x.at.After(t) {
			r = append(r, x)
		}
	}
	return r
}

// pushPhase is what the far end decoded over a phase, and the sender's
// progress lines logged in it.
type pushPhase struct {
	frames, gaps, disorder int
	latMS                  []float64
	lines                  []pushLine
}

// last is the phase's last progress line (the sender's numbers at its end).
func (r pushPhase) last() pushLine {
	if len(r.lines) == 0 {
		return pushLine{}
	}
	return r.lines[len(r.lines)-1]
}

// lowest is the lowest target of the phase's progress lines.
func (r pushPhase) lowest() int {
	lo := 0
	for i, x := range r.lines {
		if i == 0 || x.target < lo {
			lo = x.target
		}
	}
	return lo
}

// Push over pion's virtual network with 40 ms of delay each way and 5%
// loss each way, to a WHIP receiver (capture's whip: source) in the same
// process: the push's frames keep coming at the far end (in order, the
// missing ones counted), and the encoder's target adapts: a link shaped to
// 300 kbit/s brings it under 390 kbit/s, and it climbs again once the cap
// is lifted. The sender's numbers are push's own progress lines (every 5
// s). The user-space twin of cmd/framebus's TestPushOverImpairedLink (the
// kernel's netem, which this machine lacks).
func TestPushOverImpairedNetwork(t *testing.T) {
	dir := t.TempDir()
	w, h := uint32(640), uint32(360)
	if sz := os.Getenv("FRAMEBUS_VNET_SIZE"); sz != "" {
		if _, err := fmt.Sscanf(sz, "%dx%d", &w, &h); err != nil {
			t.Fatalf("FRAMEBUS_VNET_SIZE=%q: %v", sz, err)
		}
	}
	n := newImpairedNet(t, 0.05)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	playPattern(ctx, t, &wg, "vpush", dir, w, h)

	// The receiver on net b (its downlink shaped), its HTTP on the loopback.
	far, err := capture.OpenWHIP(capture.Config{Arg: "0", Width: w, Height: h, PixelFormat: framebus.FormatGrey, FPS: 30}, rtc.Config{Net: n.b})
	if err != nil {
		t.Fatal(err)
	}
	defer far.Close()
	f := far.Format()

	// The push on net a.
	webrtcNet = n.a
	t.Cleanup(func() { webrtcNet = nil })
	plog := &pushLog{}
	zl := zerolog.New(plog).With().Timestamp().Logger()
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := Push(ctx, "vpush", PushOptions{Dir: dir, Timeout: 10 * time.Second, URL: "http://" + far.Addr() + "/whip", Log: cli.Slog(&zl)})
		if err != nil && ctx.Err() == nil {
			t.Errorf("Push: %v", err)
		}
	}()
	defer func() {
		if t.Failed() {
			plog.mu.Lock()
			for _, s := range plog.other {
				t.Log("push: " + s)
			}
			plog.mu.Unlock()
		}
	}()

	buf := make([]byte, f.FrameSize)
	var last uint64
	phase := func(name string, d time.Duration) pushPhase {
		t.Helper()
		var r pushPhase
		t0 := time.Now()
		rctx, rcancel := context.WithTimeout(ctx, d)
		defer rcancel()
		for {
			_, ns, err := far.Read(rctx, buf)
			if err != nil {
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("%s: Read: %v", name, err)
				}
				break
			}
			r.frames++
			r.latMS = append(r.latMS, float64(framebus.Now()-ns)/1e6)
			if k, ok := capture.PatternFrameNumber(buf, f); ok {
				switch {
				case k <= last:
					r.disorder++
				case last != 0:
					r.gaps += int(k - last - 1)
				}
				last = max(last, k)
			}
		}
		r.lines = plog.since(t0)
		if r.frames == 0 {
			t.Fatalf("%s: no frame", name)
		}
		slices.Sort(r.latMS)
		q := func(p float64) float64 { return r.latMS[min(len(r.latMS)-1, int(p*float64(len(r.latMS))))] }
		s := r.last()
		t.Logf("%s: %d frames decoded in %v (%.1f fps), %d missing, %d out of order; capture to decoded p50 %.0f ms p99 %.0f ms; "+
			"push: state %s, target %.0f kbit/s (lowest in the phase %.0f), sent %.0f kbit/s at %.1f fps, RTT %.0f ms, loss %.1f%%, %d NACKs, %d keyframe requests",
			name, r.frames, d, float64(r.frames)/d.Seconds(), r.gaps, r.disorder, q(0.5), q(0.99),
			s.state, float64(s.target)/1e3, float64(r.lowest())/1e3, float64(s.sent)/1e3, s.fps, s.rttMS, s.loss, s.nacks, s.keyReq)
		return r
	}

	warm := phase("40 ms, 5% loss (connecting, warming up)", 8*time.Second)
	lossy := phase("40 ms, 5% loss", 10*time.Second)
	if lossy.frames < 10*30/3 {
		t.Errorf("40 ms and 5%% loss: %d frames in 10 s, want at least a third of 30 fps", lossy.frames)
	}
	if lossy.disorder > 0 || warm.disorder > 0 {
		t.Errorf("frames out of order: %d, %d", warm.disorder, lossy.disorder)
	}
	if s := lossy.last(); s.state != "connected" || s.rttMS < 60 || s.rttMS > 400 {
		t.Errorf("push's progress: state %q, RTT %.0f ms, want connected and about 80 ms (40 ms each way)", s.state, s.rttMS)
	}
	n.cap(300_000)
	capped := phase("40 ms, 5% loss, 300 kbit/s cap", 15*time.Second)
	if capped.frames < 15*30/5 {
		t.Errorf("under the cap: %d frames in 15 s, want at least a fifth of 30 fps", capped.frames)
	}
	// The estimate hovers around the link's rate: the encoder within 30%
	// over it, what is sent under 330 kbit/s.
	if s := capped.last(); s.target > 390_000 || s.sent > 330_000 {
		t.Errorf("under a 300 kbit/s cap the encoder aims at %d bit/s and the push sends %d: the bitrate did not adapt", s.target, s.sent)
	}
	n.cap(0)
	again := phase("40 ms, 5% loss, cap lifted", 10*time.Second)
	if again.frames < 10*30/3 {
		t.Errorf("after the cap: %d frames in 10 s", again.frames)
	}
	// GCC climbs only while it sees no overuse, and a loaded machine's own
	// scheduling delays read as queueing: give it up to 20 s more to rise.
	for i := 0; i < 2 && again.last().target <= capped.last().target; i++ {
		again = phase("40 ms, 5% loss, cap lifted, longer", 10*time.Second)
	}
	if again.last().target <= capped.last().target {
		t.Errorf("the cap lifted, the encoder's target stays at %d bit/s (%d under the cap)", again.last().target, capped.last().target)
	}
	if st := far.Stats(); !st.Stamped {
		t.Errorf("the far end's capture times are arrival times: abs-capture-time did not come through")
	}
	t.Logf("the network: %d packets passed, %d dropped", n.loss.passed.Load(), n.loss.lost.Load())
}
