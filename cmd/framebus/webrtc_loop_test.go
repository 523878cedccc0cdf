package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/framebus/framebus/capture"
	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/internal/report"

	"github.com/framebus/framebus/internal/testutil"
)

// farFrames is what a consumer of the far bus saw.
type farFrames struct {
	format    framebus.Format
	frames    int       // read
	numbered  int       // whose pattern frame number read
	first     uint64    // pattern frame numbers, first and last
	last      uint64    //
	gaps      uint64    // pattern frames missing between the ones read
	disorder  int       // frame numbers not above the one before
	latencyMS []float64 // capture (at the source) to wake (here), sorted
	elapsed   time.Duration
}

// readFar reads the far bus for d, decoding the pattern's frame number of
// every frame it gets.
func readFar(t *testing.T, dir, name string, d time.Duration) farFrames {
	t.Helper()
	c, err := framebus.Open(name, framebus.ConsumerOptions{Dir: dir, Wait: 20 * time.Second})
	if err != nil {
		t.Fatalf("open the far bus: %v", err)
	}
	defer c.Close()
	var r farFrames
	r.format = c.Format()
	buf := make([]byte, r.format.FrameSize)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	t0 := time.Now()
	for {
		fr, err := c.ReadInto(ctx, buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
				break
			}
			t.Fatalf("reading the far bus: %v", err)
		}
		r.frames++
		r.latencyMS = append(r.latencyMS, float64(fr.WakeNS-fr.CaptureNS)/1e6)
		n, ok := capture.PatternFrameNumber(fr.Data, fr.Format)
		if !ok {
			continue
		}
		switch {
		case r.numbered == 0:
			r.first = n
		case n <= r.last:
			r.disorder++
		default:
			r.gaps += n - r.last - 1
		}
		r.numbered++
		r.last = max(r.last, n)
	}
	r.elapsed = time.Since(t0)
	slices.Sort(r.latencyMS)
	return r
}

func (r farFrames) fps() float64 { return float64(r.frames) / r.elapsed.Seconds() }

func (r farFrames) String() string {
	return fmt.Sprintf("%s; %d frames in %v (%.1f fps); pattern #%d to #%d, %d missing, %d out of order, %d unreadable; capture to wake p50 %.1f ms, p99 %.1f ms",
		report.FormatString(r.format), r.frames, r.elapsed.Round(time.Millisecond), r.fps(), r.first, r.last, r.gaps, r.disorder,
		r.frames-r.numbered, percentile(r.latencyMS, 0.5), percentile(r.latencyMS, 0.99))
}

// A bus -> WebRTC -> bus loop between two framebus processes on 127.0.0.1:
// view --http serves the 1280x720 pattern over WHEP, capture --source
// whep:URL publishes it on a second bus. That bus has the source's size and
// rate, the pattern's frame numbers arrive in order with few missing, the
// capture time crosses (capture to wake is measured end to end and is
// positive and bounded), framebus tail reports it, and framebus stat shows
// the bridge as a consumer of the source bus.
func TestWebRTCLoop(t *testing.T) {
	needWebRTC(t)
	dir := t.TempDir()
	startLive(t, nil, "capture", "--name", "src", "--source", "pattern", "--size", "1280x720", "--fps", "30", "--dir", dir)
	testutil.WaitFor(t, 15*time.Second, "the bus", func() bool { return exists(segment(dir, "src")) }) // or the offer gets a 404
	_, url := startViewHTTP(t, dir, "src", "--timeout", "30s")
	far := startLive(t, nil, "capture", "--name", "far", "--source", "whep:"+url+"whep", "--format", "I420", "--dir", dir)
	r := readFar(t, dir, "far", 6*time.Second)
	t.Logf("far bus: %v", r)
	if !far.Running() {
		t.Fatalf("the far capture ended: %s", far.Stderr.String())
	}
	f := r.format
	if f.Width != 1280 || f.Height != 720 || f.PixelFormat != framebus.FormatI420 || f.FPSNum != 30 || f.FPSDen != 1 {
		t.Errorf("far bus format %v, want 1280x720 I420 at 30 fps", f)
	}
	if fps := r.fps(); fps < 24 || fps > 36 {
		t.Errorf("the far bus got %.1f fps, want the source's 30 within 20%%", fps)
	}
	if r.numbered < r.frames*9/10 {
		t.Errorf("only %d of %d frames show a readable frame number", r.numbered, r.frames)
	}
	if r.disorder != 0 {
		t.Errorf("%d frames out of order", r.disorder)
	}
	if got := r.last - r.first + 1; r.gaps > got/5 {
		t.Errorf("%d of %d pattern frames missing", r.gaps, got)
	}
	if p50 := percentile(r.latencyMS, 0.5); p50 <= 0 || p50 > 1000 {
		t.Errorf("capture to wake p50 %.1f ms: the capture time did not cross", p50)
	}
	// framebus tail on the far bus reports the same latency.
	res := run(t, "tail", "far", "--json", "--duration", "2s", "--dir", dir)
	var lines, sane int
	for _, line := range strings.Split(strings.TrimSpace(res.Stdout), "\n") {
		var tl struct {
			CaptureToWake float64 `json:"capture_to_wake_us"`
		}
		if json.Unmarshal([]byte(line), &tl) == nil {
			lines++
			if tl.CaptureToWake > 0 && tl.CaptureToWake < 1e6 {
				sane++
			}
		}
	}
	if lines < 20 || sane < lines*9/10 {
		t.Errorf("tail: %d lines, %d with a capture to wake within (0, 1 s):\n%s", lines, sane, res.Stdout)
	}
	// The bridge is a consumer of the source bus, like the preview's own.
	res = run(t, "stat", "src", "--json", "--dir", dir)
	var st struct {
		Consumers []json.RawMessage `json:"consumers"`
	}
	if err := json.Unmarshal([]byte(res.Stdout), &st); err != nil || len(st.Consumers) < 2 {
		t.Errorf("stat src: %d consumers (%v), want the preview and the WebRTC bridge:\n%s", len(st.Consumers), err, res.Stdout)
	}
	// Ending the far capture DELETEs its session.
	far.Signal(t, 2)
	if code := far.Wait(t, 15*time.Second); code != 0 {
		t.Errorf("the far capture exited %d: %s", code, far.Stderr.String())
	}
	var vs struct {
		WebRTC struct{ Viewers int } `json:"webrtc"`
	}
	testutil.WaitFor(t, 10*time.Second, "the session to end", func() bool {
		getJSON(t, url+"viewer.json", &vs)
		return vs.WebRTC.Viewers == 0
	})
}
