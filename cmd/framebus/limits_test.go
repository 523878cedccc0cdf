package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/framebus/framebus/internal/testutil"
)

// procFDs and procRSS read a process's open descriptors and resident set.
func procFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func procRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// 5,000 idle connections to the web preview: it keeps at most
// --http-max-conns (the rest are answered 503 at once), closes the idle
// ones after --http-idle, and its descriptors and memory come back to
// where they were; a client that comes afterwards is served as usual.
func TestViewHTTPIdleConnections(t *testing.T) {
	needOpenCV(t)
	const conns, maxConns, idle = 5000, 200, 2 * time.Second
	dir := t.TempDir()
	startCapture(t, dir, "lim")
	v, url := startViewHTTP(t, dir, "lim", "--http-max-conns", strconv.Itoa(maxConns), "--http-idle", idle.String())
	get(t, url+"viewer.json")
	fds0, rss0 := procFDs(t, v.Pid()), procRSS(t, v.Pid())
	addr := strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/")

	// Half of them ask for something and then stay idle (keep-alive), the
	// other half connect and send nothing.
	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	served, refused := 0, 0
	for i := 0; i < conns; i++ {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		open = append(open, c)
		if i%2 == 1 {
			continue
		}
		fmt.Fprintf(c, "GET /viewer.json HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		r, err := http.ReadResponse(bufio.NewReader(c), nil)
		switch {
		case err != nil:
			refused++ // closed on us: over the limit (a reset before the 503 was read)
		case r.StatusCode == http.StatusOK:
			served++
			r.Body.Close()
		case r.StatusCode == http.StatusServiceUnavailable:
			refused++
			r.Body.Close()
		default:
			t.Fatalf("connection %d: %s", i, r.Status)
		}
	}
	peak := procFDs(t, v.Pid())
	// The preview is full: its own stats come once an idle connection has
	// been closed (a loaded machine opens the 5,000 faster than the first
	// ones time out, and this request got the 503 of the rest).
	var st viewerStatus
	testutil.WaitFor(t, idle+15*time.Second, "the preview's stats", func() bool {
		r, err := httpClient.Get(url + "viewer.json")
		if err != nil {
			return false
		}
		defer r.Body.Close()
		return r.StatusCode == http.StatusOK && json.NewDecoder(r.Body).Decode(&st) == nil
	})
	t.Logf("%d connections: %d served, %d refused; the preview had %d descriptors (%d before), %d connections, %d refused; RSS %.1f MB (%.1f before)",
		conns, served, refused, peak, fds0, st.Connections, st.Refused, float64(procRSS(t, v.Pid()))/1e6, float64(rss0)/1e6)
	if peak > fds0+maxConns+5 {
		t.Errorf("the preview held %d descriptors with %d connections open, want at most %d + %d", peak, conns, fds0, maxConns)
	}
	if served == 0 || refused == 0 || st.Refused == 0 {
		t.Errorf("served %d, refused %d (the preview counts %d): want both", served, refused, st.Refused)
	}

	// Within the idle timeout (and the 10 s allowed for a first request)
	// everything is closed, though the clients keep their ends open.
	testutil.WaitFor(t, idle+15*time.Second, "the idle connections to be closed", func() bool {
		return procFDs(t, v.Pid()) <= fds0+2
	})
	if rss := procRSS(t, v.Pid()); rss > rss0+32<<20 {
		t.Errorf("RSS %.1f MB after the connections went, %.1f MB before", float64(rss)/1e6, float64(rss0)/1e6)
	}
	if r, _ := get(t, url+"viewer.json"); r.StatusCode != http.StatusOK {
		t.Errorf("a new client afterwards: %s", r.Status)
	}
	if !v.Running() {
		t.Fatalf("the preview ended:\n%s", v.Stderr.String())
	}
}
