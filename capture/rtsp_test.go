package capture

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/internal/testutil"
)

// startCamera starts testdata/rtsp_server.py (gst-rtsp-server through
// python3-gi) on a free port of 127.0.0.1 and returns its URL.
func startCamera(t *testing.T) (*exec.Cmd, string) {
	t.Helper()
	for _, tool := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	if err := exec.Command("/usr/bin/python3", "-c", `import gi; gi.require_version("GstRtspServer", "1.0"); from gi.repository import GstRtspServer`).Run(); err != nil {
		if os.Getenv("FRAMEBUS_REQUIRE_TOOLS") != "" {
			t.Fatal("python3-gi or gir1.2-gst-rtsp-server-1.0 is missing")
		}
		t.Skip("python3-gi or gir1.2-gst-rtsp-server-1.0 is missing (make sysdeps installs them)")
	}
	cmd := exec.Command("/usr/bin/python3", "../testdata/rtsp_server.py", "0", "160", "120", "25")
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGCONT)
		cmd.Process.Kill()
		cmd.Wait()
	})
	port := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "ready" {
				port <- f[1]
			}
		}
	}()
	select {
	case p := <-port:
		return cmd, "rtsp://127.0.0.1:" + p + "/cam"
	case <-time.After(20 * time.Second):
		t.Fatal("the RTSP server did not start")
		return nil, ""
	}
}

// A camera that stalls (its server stopped, the connection open and
// silent): Read never blocks past its context meanwhile, the source
// notices within rtspStallAfter and reconnects, and frames come again when
// the camera does.
func TestRTSPStalledCamera(t *testing.T) {
	oldStall, oldIO, oldMax := rtspStallAfter, rtspIOTimeout, rtspRetryMax
	rtspStallAfter, rtspIOTimeout, rtspRetryMax = time.Second, time.Second, 500*time.Millisecond
	defer func() { rtspStallAfter, rtspIOTimeout, rtspRetryMax = oldStall, oldIO, oldMax }()
	srv, url := startCamera(t)
	var logs testutil.Logs
	src, err := Open(url, Config{PixelFormat: framebus.FormatGrey, DefaultSize: true, DefaultFPS: true, Log: logs.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	f := src.Format()
	if f.Width != 160 || f.Height != 120 || f.FPSNum != 25 || f.FPSDen != 1 || f.PixelFormat != framebus.FormatGrey {
		t.Fatalf("format %v, the camera is 160x120 at 25 fps", f)
	}
	buf := make([]byte, f.FrameSize)
	read := func(d time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		_, _, err := src.Read(ctx, buf)
		return err
	}
	for i := range 10 {
		if err := read(10 * time.Second); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	srv.Process.Signal(syscall.SIGSTOP) // the camera stalls
	stalled := 0
	for start := time.Now(); time.Since(start) < 3*time.Second; {
		t0 := time.Now()
		err := read(200 * time.Millisecond)
		if errors.Is(err, context.DeadlineExceeded) {
			stalled++
			if el := time.Since(t0); el > 2*time.Second {
				t.Fatalf("Read held on for %v past its 200 ms context", el)
			}
			continue
		}
		if err != nil {
			t.Fatalf("Read while the camera stalls: %v", err)
		}
	}
	if stalled == 0 {
		t.Fatal("frames while the camera was stopped")
	}
	srv.Process.Signal(syscall.SIGCONT)
	if err := read(30 * time.Second); err != nil {
		t.Fatalf("no frame after the camera resumed: %v", err)
	}
	if logs.Count("WARN rtsp") == 0 || logs.Count("the stream was lost") == 0 || logs.Count("INFO rtsp") == 0 || logs.Count("frames again") == 0 {
		t.Errorf("the source did not say it lost (WARN) and found (INFO) the stream: %q", logs.Lines())
	}
}
