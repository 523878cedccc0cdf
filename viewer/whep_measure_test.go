//go:build framebus_webrtc && framebus_opencv && cgo

package viewer

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"image/jpeg"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/framebus/framebus/capture"
	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/internal/rtc"
	"github.com/framebus/framebus/internal/testutil"
)

// The measurements of docs/VIEWER.md's WebRTC section, run by hand:
//
//	FRAMEBUS_MEASURE=1 go test -tags framebus_opencv,framebus_webrtc -run TestMeasureWebRTC -v -timeout 30m ./viewer/
//
// One process plays the pattern on a bus, serves the preview, and is its
// own clients over loopback: capture to decoded for WebRTC (libvpx, like
// capture --source whep:) and for MJPEG (Go's image/jpeg on /stream.mjpg),
// the CPU of the whole process with one WebRTC viewer at 720p30 and
// 1080p30, and how many WebRTC viewers the one encoder serves before frames
// are dropped (viewers that receive and count frames without decoding them,
// so that what is measured is the sending side).
func TestMeasureWebRTC(t *testing.T) {
	if os.Getenv("FRAMEBUS_MEASURE") == "" {
		t.Skip("set FRAMEBUS_MEASURE=1 to run the WebRTC measurements")
	}
	for _, size := range [][2]uint32{{1280, 720}, {1920, 1080}} {
		t.Run(fmt.Sprintf("%dx%d", size[0], size[1]), func(t *testing.T) {
			m := startMeasureBus(t, size[0], size[1])
			base := m.cpu(t, 5*time.Second)
			t.Logf("no viewer: the process (pattern producer, the preview's idle feed) uses %.1f%% of a CPU", base)

			// WebRTC, one viewer that decodes.
			ctx, cancel := context.WithCancel(context.Background())
			var lat latencies
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { defer wg.Done(); m.webrtcDecode(ctx, t, &lat) }()
			testutil.WaitFor(t, 20*time.Second, "the first WebRTC frame", lat.any)
			time.Sleep(2 * time.Second) // the encoder's bitrate ramps up: a warm-up by design, not a condition
			lat.reset()
			cpu := m.cpu(t, 10*time.Second)
			st := m.srv(t)
			t.Logf("WebRTC, one decoding viewer: %s; the process %.1f%% of a CPU (+%.1f%% over none); encoder: last frame %.1f ms, target %d kbit/s, sent %d kbit/s",
				lat.summary(), cpu, cpu-base, st.EncodeUS/1e3, st.TargetBitrate/1000, firstBitrate(st)/1000)
			cancel()
			wg.Wait()

			// MJPEG, one viewer that decodes.
			ctx, cancel = context.WithCancel(context.Background())
			lat = latencies{}
			wg.Add(1)
			go func() { defer wg.Done(); m.mjpegDecode(ctx, t, &lat) }()
			testutil.WaitFor(t, 20*time.Second, "the first MJPEG picture", lat.any)
			time.Sleep(time.Second) // warm-up
			lat.reset()
			cpu = m.cpu(t, 10*time.Second)
			t.Logf("MJPEG, one decoding viewer: %s; the process %.1f%% of a CPU", lat.summary(), cpu)
			cancel()
			wg.Wait()

			// How many WebRTC viewers before frames are dropped.
			for _, n := range []int{1, 8, 16, 32, 64} {
				m.viewers(t, n)
			}
		})
	}
}

type measureBus struct {
	dir, name, url string
}

func startMeasureBus(t *testing.T, w, h uint32) *measureBus {
	m := &measureBus{dir: t.TempDir(), name: "measure"}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	playPattern(ctx, t, &wg, m.name, m.dir, w, h)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.url = "http://" + ln.Addr().String() + "/"
	wg.Add(1)
	go func() {
		defer wg.Done()
		ServeHTTP(ctx, m.name, ln, HTTPOptions{Dir: m.dir, Timeout: 10 * time.Second, WebRTC: WebRTCOptions{MaxViewers: 100, LoopbackOnly: true}})
	}()
	testutil.WaitFor(t, 10*time.Second, "the preview at "+m.url, func() bool {
		resp, err := http.Get(m.url)
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	return m
}

// cpu is the process's CPU use over d, in percent of one CPU.
func (m *measureBus) cpu(t *testing.T, d time.Duration) float64 {
	var r0, r1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &r0)
	t0 := time.Now()
	time.Sleep(d)
	syscall.Getrusage(syscall.RUSAGE_SELF, &r1)
	used := time.Duration(r1.Utime.Nano() + r1.Stime.Nano() - r0.Utime.Nano() - r0.Stime.Nano())
	return 100 * used.Seconds() / time.Since(t0).Seconds()
}

func (m *measureBus) srv(t *testing.T) WebRTCStatus {
	var st struct {
		WebRTC WebRTCStatus `json:"webrtc"`
	}
	getJSONT(t, m.url+"viewer.json", &st)
	return st.WebRTC
}

func firstBitrate(st WebRTCStatus) int {
	if len(st.Sessions) == 0 {
		return 0
	}
	return st.Sessions[0].Bitrate
}

func getJSONT(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

type latencies struct {
	mu sync.Mutex
	ms []float64
	t0 time.Time
}

func (l *latencies) add(ns int64) {
	l.mu.Lock()
	l.ms = append(l.ms, float64(ns)/1e6)
	l.mu.Unlock()
}

// any says whether a frame came.
func (l *latencies) any() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ms) > 0
}

func (l *latencies) reset() {
	l.mu.Lock()
	l.ms, l.t0 = l.ms[:0], time.Now()
	l.mu.Unlock()
}

func (l *latencies) summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := slices.Sorted(slices.Values(l.ms))
	if len(s) == 0 {
		return "no frames"
	}
	q := func(p float64) float64 { return s[min(len(s)-1, int(p*float64(len(s))))] }
	return fmt.Sprintf("%.1f fps, capture to decoded p50 %.1f ms, p99 %.1f ms (%d frames)", float64(len(s))/time.Since(l.t0).Seconds(), q(0.5), q(0.99), len(s))
}

// webrtcDecode is one WHEP viewer that decodes every frame into an I420
// frame, as capture --source whep: does.
func (m *measureBus) webrtcDecode(ctx context.Context, t *testing.T, lat *latencies) {
	src, err := capture.OpenWHEP(ctx, capture.Config{Arg: m.url + "whep", PixelFormat: framebus.FormatI420, DefaultFPS: true}, rtc.Config{LoopbackOnly: true})
	if err != nil {
		t.Error(err)
		return
	}
	defer src.Close()
	buf := make([]byte, src.Format().FrameSize)
	for {
		_, ns, err := src.Read(ctx, buf)
		if err != nil {
			return
		}
		lat.add(framebus.Now() - ns)
	}
}

// mjpegDecode reads /stream.mjpg and decodes every part with image/jpeg.
func (m *measureBus) mjpegDecode(ctx context.Context, t *testing.T, lat *latencies) {
	req, _ := http.NewRequestWithContext(ctx, "GET", m.url+"stream.mjpg", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return
	}
	defer resp.Body.Close()
	_, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil {
		t.Error(err)
		return
	}
	mr := multipart.NewReader(bufio.NewReader(resp.Body), params["boundary"])
	for {
		part, err := mr.NextPart()
		if err != nil {
			return
		}
		ns, _ := strconv.ParseInt(part.Header.Get("X-Capture-NS"), 10, 64)
		if _, err := jpeg.Decode(part); err != nil {
			return
		}
		io.Copy(io.Discard, part)
		lat.add(framebus.Now() - ns)
	}
}

// viewers connects n WHEP viewers that count frames without decoding, for
// 8 s, and reports what they got and what the bridge dropped.
func (m *measureBus) viewers(t *testing.T, n int) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var frames atomic.Uint64
	var gaps atomic.Uint64
	var wg sync.WaitGroup
	var sessions []*rtc.Session
	for i := 0; i < n; i++ {
		dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
		s, err := rtc.DialWHEP(dctx, m.url+"whep", rtc.Config{LoopbackOnly: true})
		dcancel()
		if err != nil {
			t.Errorf("viewer %d of %d: %v", i+1, n, err)
			break
		}
		sessions = append(sessions, s)
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := s.Receiver(ctx)
			if err != nil {
				return
			}
			for f := range r.Frames() {
				frames.Add(1)
				if f.Gap {
					gaps.Add(1)
				}
			}
		}()
	}
	testutil.WaitFor(t, 30*time.Second, "frames at every viewer", func() bool { return frames.Load() >= uint64(10*len(sessions)) })
	time.Sleep(time.Second) // warm-up
	st0 := m.srv(t)
	f0 := frames.Load()
	cpu := m.cpu(t, 8*time.Second)
	st1 := m.srv(t)
	got := frames.Load() - f0
	var dropped uint64
	for _, s := range st1.Sessions {
		dropped += s.FramesDropped
	}
	for _, s := range st0.Sessions {
		dropped -= s.FramesDropped
	}
	t.Logf("%2d WebRTC viewers: %.1f fps each received, %d frames dropped for them, the encoder skipped %d bus frames, the process %.1f%% of a CPU",
		n, float64(got)/8/float64(max(1, len(sessions))), dropped, st1.FramesDropped-st0.FramesDropped, cpu)
	for _, s := range sessions {
		s.Close()
	}
	cancel()
	wg.Wait()
}
