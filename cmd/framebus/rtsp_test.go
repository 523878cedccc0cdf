package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/framebus/framebus/internal/testutil"
)

// rtspServer is testdata/rtsp_server.py: gst-rtsp-server serving a live
// videotestsrc as RTP/JPEG on 127.0.0.1.
type rtspServer struct {
	*testutil.Proc
	port string
}

// needRTSPServer checks for Debian's python3-gi and gst-rtsp-server.
func needRTSPServer(t *testing.T) {
	t.Helper()
	needInterop(t, "ffmpeg", "ffprobe")
	err := exec.Command("/usr/bin/python3", "-c", `import gi; gi.require_version("GstRtspServer", "1.0"); from gi.repository import GstRtspServer`).Run()
	if err != nil {
		if os.Getenv("FRAMEBUS_REQUIRE_TOOLS") != "" {
			t.Fatalf("gst-rtsp-server for Python is missing (Debian: python3-gi gir1.2-gst-rtsp-server-1.0): %v", err)
		}
		t.Skipf("gst-rtsp-server for Python is missing (Debian: python3-gi gir1.2-gst-rtsp-server-1.0; make sysdeps installs them)")
	}
}

// startRTSP starts the server on port ("0": a free one) and waits until it
// listens. Cleanup kills it by pid.
func startRTSP(t *testing.T, port string, w, h, fps int) *rtspServer {
	t.Helper()
	cmd := exec.Command("/usr/bin/python3", "../../testdata/rtsp_server.py", port, fmt.Sprint(w), fmt.Sprint(h), fmt.Sprint(fps))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &rtspServer{Proc: testutil.Start(t, cmd)}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "ready" {
				ready <- f[1]
			}
		}
	}()
	select {
	case s.port = <-ready:
	case <-s.Done():
		t.Fatalf("the RTSP server ended:\n%s", s.Stderr.String())
	case <-time.After(20 * time.Second):
		t.Fatalf("the RTSP server did not start within 20 s:\n%s", s.Stderr.String())
	}
	return s
}

type busStat struct {
	Width, Height   uint32
	FPSNum          uint32 `json:"fps_num"`
	FPSDen          uint32 `json:"fps_den"`
	Generation      uint64 `json:"generation"`
	FramesPublished uint64 `json:"frames_published"`
	ProducerAlive   bool   `json:"producer_alive"`
	HeartbeatAgeNS  int64  `json:"heartbeat_age_ns"`
}

func statBus(t *testing.T, dir, name string) busStat {
	t.Helper()
	r := run(t, "stat", name, "--json", "--dir", dir)
	var st busStat
	if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &st) != nil {
		t.Fatalf("stat %s: exit %d: %s%s", name, r.Code, r.Stdout, r.Stderr)
	}
	return st
}

// An RTSP camera on the bus at its own size and rate; the camera dropping
// (its server killed) leaves the bus alive and its consumers waiting, and
// when it comes back on the same port the frames flow again in the same
// generation.
func TestRTSPCameraDropsAndComesBack(t *testing.T) {
	needRTSPServer(t)
	srv := startRTSP(t, "0", 320, 240, 25)
	url := "rtsp://127.0.0.1:" + srv.port + "/cam"
	dir := t.TempDir()
	capt := start(t, "capture", "--name", "door", "--source", url, "--format", "I420", "--dir", dir)
	testutil.WaitFor(t, 30*time.Second, "the bus", func() bool {
		if !capt.Running() {
			t.Fatalf("capture ended (exit %d):\n%s", capt.Code, capt.Stderr.String())
		}
		return exists(segment(dir, "door"))
	})
	tail := start(t, "tail", "door", "--dir", dir, "--timeout", "60s")
	st := statBus(t, dir, "door")
	if st.Width != 320 || st.Height != 240 || st.FPSNum != 25 || st.FPSDen != 1 {
		t.Fatalf("the bus is %dx%d at %d/%d fps, the camera 320x240 at 25", st.Width, st.Height, st.FPSNum, st.FPSDen)
	}
	testutil.WaitFor(t, 20*time.Second, "frames", func() bool { return statBus(t, dir, "door").FramesPublished >= 10 })

	srv.Kill() // the camera drops
	testutil.WaitFor(t, 20*time.Second, "capture to notice", func() bool { return strings.Contains(capt.Stderr.String(), "the stream was lost") })
	before := statBus(t, dir, "door")
	time.Sleep(1500 * time.Millisecond)
	down := statBus(t, dir, "door")
	if !down.ProducerAlive || down.HeartbeatAgeNS > int64(time.Second) || !capt.Running() {
		t.Fatalf("the camera down blocked the bus: producer alive %v, heartbeat %v ago, capture running %v", down.ProducerAlive, time.Duration(down.HeartbeatAgeNS), capt.Running())
	}
	if down.FramesPublished != before.FramesPublished {
		t.Errorf("frames published with no camera: %d, then %d", before.FramesPublished, down.FramesPublished)
	}

	startRTSP(t, srv.port, 320, 240, 25) // the camera comes back
	testutil.WaitFor(t, 30*time.Second, "frames again", func() bool { return statBus(t, dir, "door").FramesPublished >= down.FramesPublished+10 })
	if back := statBus(t, dir, "door"); back.Generation != st.Generation {
		t.Errorf("generation %d after the camera came back, was %d", back.Generation, st.Generation)
	}
	if !strings.Contains(capt.Stderr.String(), "frames again") {
		t.Errorf("capture did not say the frames came back:\n%s", capt.Stderr.String())
	}
	capt.Signal(t, syscall.SIGTERM)
	if code := capt.Wait(t, 15*time.Second); code != 0 {
		t.Errorf("capture exit %d:\n%s", code, capt.Stderr.String())
	}
	if code := tail.Wait(t, 15*time.Second); code != 0 || !strings.HasSuffix(strings.TrimSpace(tail.Stdout.String()), "closed") {
		t.Errorf("tail exit %d, did not end with closed", code)
	}
	if n := strings.Count(tail.Stdout.String(), "\n"); uint64(n) < down.FramesPublished/2 {
		t.Errorf("tail printed %d lines", n)
	}
}

// A camera that cannot be reached, and URLs that are not cameras, are one
// clear line each; nothing is created.
func TestRTSPBadCamera(t *testing.T) {
	needInterop(t, "ffmpeg", "ffprobe")
	for _, c := range []struct {
		source string
		code   int
		want   string
	}{
		{"rtsp://127.0.0.1:1/none", 1, "Connection refused"},
		{"rtsp://user:secret@127.0.0.1:1/none", 1, "user:xxxxx@127.0.0.1:1"},
		{"rtsp://", 2, "want rtsp://HOST"},
		{"rtsp://127.0.0.1:1/x", 2, "the rtsp source makes"}, // with --format MJPEG below
	} {
		dir := t.TempDir()
		args := []string{"capture", "--name", "cam", "--source", c.source, "--dir", dir}
		if c.code == 2 && strings.HasSuffix(c.source, "/x") {
			args = append(args, "--format", "MJPEG")
		}
		r := run(t, args...)
		if r.Code != c.code || !strings.Contains(r.Stderr, c.want) || strings.Count(r.Stderr, "\n") != 1 || strings.Contains(r.Stderr, "secret") {
			t.Errorf("%s: exit %d, %q", c.source, r.Code, r.Stderr)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("%s: left %d files", c.source, len(ents))
		}
	}
}
