//go:build framebus_webrtc && cgo

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/framebus/framebus/capture"
	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/internal/rtc"
	"github.com/framebus/framebus/internal/testutil"
	"github.com/framebus/framebus/internal/vpx"
)

// TestMeasurePushFanout measures (FRAMEBUS_MEASURE=1; scripts/measure-push.sh)
// how many subscribers one `framebus push` serves through Janus's
// VideoRoom (each a pion peer subscribing to the publisher through Janus's
// HTTP API) against how many WebRTC viewers `view --http` serves directly
// (rtc.DialWHEP, as `whep:`), in one run on one 720p30 pattern bus: each
// subscriber's fps, the CPU of the framebus processes and Janus (from
// /proc/PID/stat), and capture to decoded latency. Latency is measured
// the same way on both paths, independent of abs-capture-time: one
// subscriber decodes every frame (libvpx), reads the pattern's frame
// number off the picture and looks its capture time up in the bus (read by
// the test); whether abs-capture-time came through is logged too.
// FRAMEBUS_MEASURE_VIEWERS sets the counts (default 1,4,8,16,32).
func TestMeasurePushFanout(t *testing.T) {
	if os.Getenv("FRAMEBUS_MEASURE") == "" {
		t.Skip("a measurement: FRAMEBUS_MEASURE=1 (scripts/measure-push.sh)")
	}
	needWebRTC(t)
	counts := []int{1, 4, 8, 16, 32}
	if s := os.Getenv("FRAMEBUS_MEASURE_VIEWERS"); s != "" {
		counts = counts[:0]
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(f)
			if err != nil || n < 1 {
				t.Fatalf("FRAMEBUS_MEASURE_VIEWERS=%q", s)
			}
			counts = append(counts, n)
		}
	}
	dir := t.TempDir()
	src := start(t, "capture", "--name", "src", "--source", "pattern", "--size", "1280x720", "--fps", "30", "--dir", dir)
	testutil.WaitFor(t, 15*time.Second, "the bus", func() bool { return exists(segment(dir, "src")) })
	times := watchNumbers(t, dir, "src")

	// Directly: view --http's WHEP.
	port := freePort(t)
	view := start(t, "view", "src", "--http", fmt.Sprintf("127.0.0.1:%d", port), "--webrtc-max-viewers", "200", "--dir", dir)
	whep := fmt.Sprintf("http://127.0.0.1:%d/whep", port)
	testutil.WaitFor(t, 15*time.Second, "view --http", func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	for _, n := range counts {
		fanout(t, fmt.Sprintf("direct (view --http), %2d viewers", n), n, times, map[string]int{"capture": src.Pid(), "view": view.Pid()},
			func(ctx context.Context) (*rtc.Receiver, func(), error) {
				s, err := rtc.DialWHEP(ctx, whep, rtc.Config{})
				if err != nil {
					return nil, nil, err
				}
				r, err := s.Receiver(ctx)
				return r, func() { s.Close() }, err
			})
	}
	view.Signal(t, syscall.SIGINT)
	view.Wait(t, 10*time.Second)

	// Through Janus: push to simple-whip-server's endpoint in room 4242,
	// subscribers of the VideoRoom's publisher.
	j := startJanus(t)
	j.room(4242)
	resp, err := http.Post(j.whipURL("/create"), "application/json", strings.NewReader(`{"id":"cam","room":4242}`))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST /whip/create: %v %v", err, resp)
	}
	resp.Body.Close()
	push := start(t, "push", "src", "--whip", j.whipURL("/endpoint/cam"), "--max-bitrate", "4000000", "--dir", dir)
	var feed float64
	testutil.WaitFor(t, 20*time.Second, "the publisher in the room", func() bool {
		feed = j.publisher(4242)
		return feed != 0
	})
	time.Sleep(2 * time.Second)
	for _, n := range counts {
		fanout(t, fmt.Sprintf("through Janus (push),     %2d subscribers", n), n, times,
			map[string]int{"capture": src.Pid(), "push": push.Pid(), "janus": j.proc.Pid()},
			func(ctx context.Context) (*rtc.Receiver, func(), error) { return j.subscribe(ctx, 4242, feed) })
	}
	push.Signal(t, syscall.SIGINT)
	push.Wait(t, 10*time.Second)
}

// busNumbers maps the pattern's frame numbers to their capture times.
type busNumbers struct {
	mu sync.Mutex
	ns map[uint64]int64
}

func (b *busNumbers) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.ns)
}

func (b *busNumbers) at(n uint64) (int64, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ns, ok := b.ns[n]
	return ns, ok
}

// watchNumbers reads bus name until the test ends, keeping each pattern
// frame number's capture time.
func watchNumbers(t *testing.T, dir, name string) *busNumbers {
	b := &busNumbers{ns: map[uint64]int64{}}
	c, err := framebus.Open(name, framebus.ConsumerOptions{Dir: dir, Wait: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done; c.Close() })
	go func() {
		defer close(done)
		buf := make([]byte, c.Format().FrameSize)
		for ctx.Err() == nil {
			fr, err := c.ReadInto(ctx, buf)
			if err != nil {
				continue
			}
			if n, ok := capture.PatternFrameNumber(fr.Data, fr.Format); ok {
				b.mu.Lock()
				b.ns[n] = fr.CaptureNS
				b.mu.Unlock()
			}
		}
	}()
	return b
}

// procTicks is a process's user and system time, in clock ticks (1/100 s).
func procTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // field 3 on
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return u + k
}

type dialFunc func(ctx context.Context) (*rtc.Receiver, func(), error)

// fanout connects n subscribers, lets them settle for 4 s and measures
// over 10 s: each one's fps (the lowest and the median), the processes'
// CPU, and the first subscriber's capture to decoded latency.
func fanout(t *testing.T, name string, n int, times *busNumbers, pids map[string]int, dial dialFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	counts := make([]atomic.Int64, n)
	var lat, latStamped []float64
	var latMu sync.Mutex
	var measuring atomic.Bool
	var stamped, unstamped, unread atomic.Int64
	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	for i := range n {
		dctx, dcancel := context.WithTimeout(ctx, 15*time.Second)
		r, closer, err := dial(dctx)
		dcancel()
		if err != nil {
			t.Errorf("%s: subscriber %d: %v", name, i+1, err)
			if closer != nil {
				closer()
			}
			n = i
			break
		}
		closers = append(closers, closer)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var dec *vpx.Decoder
			if i == 0 {
				dec, _ = vpx.NewDecoder(1)
				defer dec.Close()
			}
			for f := range r.Frames() {
				if !measuring.Load() {
					continue
				}
				counts[i].Add(1)
				if dec == nil {
					continue
				}
				pic, corrupt, err := dec.Decode(f.Data)
				now := framebus.Now()
				if err != nil || corrupt || pic == nil {
					continue
				}
				if f.Stamped {
					stamped.Add(1)
				} else {
					unstamped.Add(1)
				}
				if f.Stamped {
					latMu.Lock()
					latStamped = append(latStamped, float64(now-f.CaptureNS)/1e6)
					latMu.Unlock()
				}
				k, ok := patternNumber(pic)
				if !ok {
					unread.Add(1)
					continue
				}
				if ns, ok := times.at(k); ok {
					latMu.Lock()
					lat = append(lat, float64(now-ns)/1e6)
					latMu.Unlock()
				}
			}
		}()
	}
	time.Sleep(4 * time.Second)
	const d = 10 * time.Second
	pids["subscribers (the test)"] = os.Getpid()
	t0 := make(map[string]int64)
	for k, pid := range pids {
		t0[k] = procTicks(pid)
	}
	start := time.Now()
	measuring.Store(true)
	time.Sleep(d)
	measuring.Store(false)
	el := time.Since(start).Seconds()
	var cpu []string
	total := 0.0
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range pids {
			if !yield(k) {
				return
			}
		}
	}) {
		pct := float64(procTicks(pids[k])-t0[k]) / el // ticks are 1/100 s: percent of a CPU
		if pids[k] != os.Getpid() {
			total += pct
		}
		cpu = append(cpu, fmt.Sprintf("%s %.0f%%", k, pct))
	}
	fps := make([]float64, n)
	for i := range n {
		fps[i] = float64(counts[i].Load()) / el
	}
	slices.Sort(fps)
	latMu.Lock()
	defer latMu.Unlock()
	slices.Sort(lat)
	slices.Sort(latStamped)
	q := func(v []float64, p float64) float64 {
		if len(v) == 0 {
			return -1
		}
		return v[min(len(v)-1, int(p*float64(len(v))))]
	}
	if n == 0 {
		t.Logf("%s: none connected", name)
		return
	}
	served := "serves them"
	if fps[0] < 27 {
		served = "falls behind (the lowest under 90% of 30 fps)"
	}
	t.Logf("MEASURE %s: fps lowest %.1f median %.1f; CPU %s (producer side %.0f%% of a CPU); capture to decoded (pattern numbers) p50 %.1f ms p99 %.1f ms (%d frames, %d unread, %d on the bus); "+
		"abs-capture-time on %d of %d decoded frames (p50 %.1f ms p99 %.1f ms by it); %s",
		name, fps[0], fps[n/2], strings.Join(cpu, ", "), total, q(lat, 0.5), q(lat, 0.99), len(lat), unread.Load(), times.len(),
		stamped.Load(), stamped.Load()+unstamped.Load(), q(latStamped, 0.5), q(latStamped, 0.99), served)
}

// patternNumber reads the pattern's frame number off a decoded picture.
func patternNumber(pic *image.YCbCr) (uint64, bool) {
	w, h := pic.Rect.Dx(), pic.Rect.Dy()
	f := framebus.Format{Width: uint32(w), Height: uint32(h), PixelFormat: framebus.FormatGrey}
	f.PlaneStride[0] = uint32(pic.YStride)
	f.FrameSize = uint64(len(pic.Y)) // the last row may stop at its width
	return capture.PatternFrameNumber(pic.Y, f)
}

// janusCall POSTs a Janus API request and returns the reply.
func (j *janus) janusCall(path string, req map[string]any) (map[string]any, error) {
	req["transaction"] = "t"
	b, _ := json.Marshal(req)
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/janus%s", j.http, path), "application/json", bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var v map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return nil, err
	}
	if v["janus"] == "error" {
		return v, fmt.Errorf("Janus %s: %v", path, v["error"])
	}
	return v, nil
}

// handle makes a Janus session with a VideoRoom handle: their paths.
func (j *janus) handle() (sess, h string, err error) {
	v, err := j.janusCall("", map[string]any{"janus": "create"})
	if err != nil {
		return "", "", err
	}
	sess = fmt.Sprintf("/%.0f", v["data"].(map[string]any)["id"])
	v, err = j.janusCall(sess, map[string]any{"janus": "attach", "plugin": "janus.plugin.videoroom"})
	if err != nil {
		return "", "", err
	}
	return sess, fmt.Sprintf("%s/%.0f", sess, v["data"].(map[string]any)["id"]), nil
}

// publisher is the id of room's first publisher (0: none yet).
func (j *janus) publisher(room int) float64 {
	sess, h, err := j.handle()
	if err != nil {
		return 0
	}
	defer j.janusCall(sess, map[string]any{"janus": "destroy"})
	v, err := j.janusCall(h, map[string]any{"janus": "message", "body": map[string]any{"request": "listparticipants", "room": room}})
	if err != nil {
		return 0
	}
	pd, _ := v["plugindata"].(map[string]any)
	data, _ := pd["data"].(map[string]any)
	ps, _ := data["participants"].([]any)
	for _, p := range ps {
		if m, _ := p.(map[string]any); m != nil && m["publisher"] == true {
			id, _ := m["id"].(float64)
			return id
		}
	}
	return 0
}

// subscribe joins room as a subscriber of feed (Janus offers, a pion
// receiving peer answers with every candidate) and returns its receiver;
// a long poll on the session keeps it alive until the closer is called.
func (j *janus) subscribe(ctx context.Context, room int, feed float64) (*rtc.Receiver, func(), error) {
	sess, h, err := j.handle()
	if err != nil {
		return nil, nil, err
	}
	pctx, pcancel := context.WithCancel(context.Background())
	events := make(chan map[string]any, 16)
	go func() { // the session's events, and its keep-alive
		for pctx.Err() == nil {
			req, _ := http.NewRequestWithContext(pctx, "GET", fmt.Sprintf("http://127.0.0.1:%d/janus%s?maxev=1", j.http, sess), nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				select {
				case <-pctx.Done():
					return
				case <-time.After(200 * time.Millisecond):
					continue
				}
			}
			var v map[string]any
			json.NewDecoder(resp.Body).Decode(&v)
			resp.Body.Close()
			select {
			case events <- v:
			default:
			}
		}
	}()
	var peer *rtc.Peer
	closer := func() {
		if peer != nil {
			peer.Close("done")
		}
		pcancel()
		j.janusCall(sess, map[string]any{"janus": "destroy"})
	}
	if _, err := j.janusCall(h, map[string]any{"janus": "message", "body": map[string]any{"request": "join", "ptype": "subscriber", "room": room, "feed": feed}}); err != nil {
		return nil, closer, err
	}
	var offer string
	for offer == "" {
		select {
		case v := <-events:
			if js, ok := v["jsep"].(map[string]any); ok && js["type"] == "offer" {
				offer, _ = js["sdp"].(string)
			}
		case <-ctx.Done():
			return nil, closer, fmt.Errorf("no offer from Janus: %w", ctx.Err())
		}
	}
	peer, err = rtc.NewRecvPeer(rtc.Config{}, rtc.PeerOptions{})
	if err != nil {
		return nil, closer, err
	}
	answer, err := peer.Answer(ctx, offer)
	if err != nil {
		return nil, closer, err
	}
	if _, err := j.janusCall(h, map[string]any{"janus": "message", "body": map[string]any{"request": "start", "room": room},
		"jsep": map[string]any{"type": "answer", "sdp": answer}}); err != nil {
		return nil, closer, err
	}
	r, err := peer.Receiver(ctx)
	return r, closer, err
}
