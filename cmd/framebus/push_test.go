package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/internal/testutil"
)

// bus -> framebus push -> WHIP -> framebus capture --source whip: -> bus,
// two processes on 127.0.0.1: frames arrive at the source's rate with
// their capture times (tail on the far bus shows capture to wake). Then the
// far framebus is killed (SIGKILL: no DELETE, no goodbye) and started
// again: push notices, makes a new session by itself and frames come
// again; SIGINT ends push with the session deleted.
func TestPushToWHIP(t *testing.T) {
	needWebRTC(t)
	dir := t.TempDir()
	startLive(t, nil, "capture", "--name", "src", "--source", "pattern", "--size", "1280x720", "--fps", "30", "--dir", dir)
	port := fmt.Sprint(freePort(t))
	farArgs := []string{"capture", "--name", "far", "--source", "whip:127.0.0.1:" + port, "--size", "1280x720", "--fps", "30", "--format", "I420", "--dir", dir}
	far := startLive(t, nil, farArgs...)
	testutil.WaitFor(t, 15*time.Second, "the far bus", func() bool { return exists(segment(dir, "far")) })
	push := startLive(t, nil, "push", "src", "--whip", "http://127.0.0.1:"+port+"/whip", "--dir", dir)
	r := readFar(t, dir, "far", 6*time.Second)
	t.Logf("far bus: %v", r)
	if fps := r.fps(); fps < 20 {
		t.Errorf("the far bus got %.1f fps, want about 30", fps)
	}
	if p50, p99 := percentile(r.latencyMS, 0.5), percentile(r.latencyMS, 0.99); p50 <= 0 || p50 > 500 || p99 > 2000 {
		t.Errorf("capture to wake p50 %.1f ms, p99 %.1f ms: the capture time did not cross", p50, p99)
	}
	res := run(t, "tail", "far", "--json", "--duration", "2s", "--dir", dir)
	if n := strings.Count(res.Stdout, `"capture_to_wake_us"`); n < 30 {
		t.Errorf("tail on the far bus: %d lines", n)
	}

	// The far end dies and comes back.
	far.Signal(t, syscall.SIGKILL)
	far.Wait(t, 5*time.Second)
	t0 := time.Now()
	time.Sleep(time.Second)
	far = startLive(t, nil, farArgs...)
	testutil.WaitFor(t, 30*time.Second, "push's second session", func() bool {
		return strings.Contains(push.Stderr.String(), "session=2")
	})
	r = readFar(t, dir, "far", 3*time.Second)
	t.Logf("after the far end came back (%v): %v", time.Since(t0).Round(100*time.Millisecond), r)
	if r.frames < 30 {
		t.Errorf("%d frames after the far end came back", r.frames)
	}
	if !strings.Contains(push.Stderr.String(), "push: the WHIP session ended; reconnecting") {
		t.Errorf("push did not say it reconnects:\n%s", push.Stderr.String())
	}
	push.Signal(t, syscall.SIGINT)
	if code := push.Wait(t, 10*time.Second); code != 0 {
		t.Errorf("push exit %d", code)
	}
	if s := push.Stderr.String(); !strings.Contains(s, "the WHIP session is deleted") || strings.Contains(s, "delete=") {
		t.Errorf("push's end:\n%s", s)
	}
	if !far.Running() {
		t.Errorf("the far capture ended: %s", far.Stderr.String())
	}
}

// capture --source whep: across a restart of the server (view --http,
// killed with SIGKILL, started again on the same port): a consumer of the
// whep: bus reads on without an error and sees frames again, in the same
// generation; the capture logs the loss and the return and counts it.
func TestWHEPReconnects(t *testing.T) {
	needWebRTC(t)
	dir := t.TempDir()
	startLive(t, nil, "capture", "--name", "src", "--source", "pattern", "--size", "640x480", "--fps", "30", "--dir", dir)
	testutil.WaitFor(t, 15*time.Second, "the bus", func() bool { return exists(segment(dir, "src")) })
	port := fmt.Sprint(freePort(t))
	viewArgs := []string{"view", "src", "--http", "127.0.0.1:" + port, "--dir", dir}
	view := startLive(t, nil, viewArgs...)
	testutil.WaitFor(t, 15*time.Second, "the preview", func() bool { return strings.Contains(view.Stdout.String(), "http://") })
	far := startLive(t, nil, "capture", "--name", "far", "--source", "whep:http://127.0.0.1:"+port+"/whep", "--format", "I420", "--dir", dir)

	c, err := framebus.Open("far", framebus.ConsumerOptions{Dir: dir, Wait: 20 * time.Second})
	if err != nil {
		t.Fatalf("open the far bus: %v", err)
	}
	defer c.Close()
	var frames atomic.Int64
	var readErr error
	var gens sync.Map
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			fr, err := c.Next(ctx)
			if err != nil {
				if ctx.Err() == nil {
					readErr = err
				}
				return
			}
			gens.Store(fr.Generation, true)
			frames.Add(1)
		}
	}()
	testutil.WaitFor(t, 15*time.Second, "frames on the far bus", func() bool { return frames.Load() > 30 })
	view.Signal(t, syscall.SIGKILL)
	view.Wait(t, 5*time.Second)
	down := time.Now()
	time.Sleep(2 * time.Second)
	view = startLive(t, nil, viewArgs...)
	before := frames.Load()
	testutil.WaitFor(t, 30*time.Second, "frames again on the far bus", func() bool { return frames.Load() > before+30 })
	t.Logf("frames again %v after the server was killed", time.Since(down).Round(100*time.Millisecond))
	cancel()
	<-done
	if readErr != nil {
		t.Errorf("the consumer of the whep: bus saw %v", readErr)
	}
	n := 0
	gens.Range(func(any, any) bool { n++; return true })
	if n != 1 {
		t.Errorf("the far bus changed generation (%d generations)", n)
	}
	if !far.Running() {
		t.Fatalf("the whep: capture ended: %s", far.Stderr.String())
	}
	s := far.Stderr.String()
	if !strings.Contains(s, "reconnecting") || !strings.Contains(s, "the stream is back as 640x480") {
		t.Errorf("the capture's log:\n%s", s)
	}
	testutil.WaitFor(t, 8*time.Second, "a progress line with source_reconnects=1", func() bool {
		return strings.Contains(far.Stderr.String(), "source_reconnects=1")
	})
}

// push against servers that refuse: 401 ends it at once saying so, 404
// too (no session ever worked), 500 is retried with the backoff until
// --retries, an answer that is not SDP is a clear error (retried); the
// bearer token from $FRAMEBUS_WHIP_TOKEN is sent and never printed, and a
// --token-file's too.
func TestPushRefusals(t *testing.T) {
	needWebRTC(t)
	const token = "tok-Sekr3t-42"
	var mu sync.Mutex
	hits := map[string]int{}
	var auths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		hits[r.URL.Path]++
		auths = append(auths, r.Header.Get("Authorization"))
		mu.Unlock()
		switch r.URL.Path {
		case "/401":
			http.Error(w, "unauthorized", http.StatusUnauthorized)
		case "/404":
			http.Error(w, "Invalid endpoint ID", http.StatusNotFound)
		case "/500":
			http.Error(w, "No such room", http.StatusInternalServerError)
		case "/garbage":
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, "<html>not sdp</html>")
		}
	}))
	defer srv.Close()
	dir := t.TempDir()
	env := []string{"FRAMEBUS_WHIP_TOKEN=" + token}
	cases := []struct {
		path  string
		extra []string
		hits  int
		msg   string
	}{
		{"/401", nil, 1, "401 Unauthorized: unauthorized (check the bearer token"},
		{"/404", nil, 1, "404 Not Found: Invalid endpoint ID (check the WHIP endpoint's URL)"},
		{"/500", []string{"--retries", "3"}, 3, "500 Internal Server Error: No such room (gave up after 3 attempts in a row (--retries))"},
		{"/garbage", []string{"--retries", "2"}, 2, "the answer is not SDP"},
	}
	for _, c := range cases {
		t0 := time.Now()
		p := startLive(t, env, append([]string{"push", "src", "--whip", srv.URL + c.path, "--dir", dir}, c.extra...)...)
		code := p.Wait(t, 30*time.Second)
		took := time.Since(t0)
		s := p.Stderr.String()
		mu.Lock()
		h := hits[c.path]
		mu.Unlock()
		t.Logf("%s: exit %d after %v, %d requests", c.path, code, took.Round(10*time.Millisecond), h)
		if code != 1 || !strings.Contains(s, c.msg) || h != c.hits {
			t.Errorf("%s: exit %d, %d requests (want 1, %d), stderr:\n%s", c.path, code, h, c.hits, s)
		}
		if strings.Contains(s, token) {
			t.Errorf("%s: the token is in the output:\n%s", c.path, s)
		}
		if c.path == "/500" && (took < 1200*time.Millisecond || !strings.Contains(s, "retry_in=")) {
			t.Errorf("/500: 3 attempts in %v: no backoff between them?\n%s", took, s)
		}
	}
	mu.Lock()
	for _, a := range auths {
		if a != "Bearer "+token {
			t.Errorf("Authorization %q", a)
		}
	}
	mu.Unlock()
	// --token-file; the token never on the command line.
	tf := dir + "/token"
	if err := os.WriteFile(tf, []byte("from-file-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startLive(t, nil, "push", "src", "--whip", srv.URL+"/401", "--token-file", tf, "--dir", dir)
	if code := p.Wait(t, 30*time.Second); code != 1 || strings.Contains(p.Stderr.String(), "from-file-token") {
		t.Errorf("--token-file: exit %d:\n%s", code, p.Stderr.String())
	}
	mu.Lock()
	if last := auths[len(auths)-1]; last != "Bearer from-file-token" {
		t.Errorf("--token-file: Authorization %q", last)
	}
	mu.Unlock()
	// Usage errors: exit 2.
	for _, args := range [][]string{{"push", "src"}, {"push", "src", "--whip", "ftp://x"}, {"push", "src", "--whip", srv.URL, "--token-file", dir + "/none"}} {
		if res := run(t, args...); res.Code != 2 {
			t.Errorf("%q: exit %d, want 2:\n%s", args, res.Code, res.Stderr)
		}
	}
}
