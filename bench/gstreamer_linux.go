//go:build linux

package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/framebus/framebus/framebus"
)

// findGstLaunch finds gst-launch-1.0 (path: a path or a name to look up in
// PATH; "": gst-launch-1.0) and the plugins the baseline needs; it says why
// when it cannot.
func findGstLaunch(path string) (string, string) {
	if path == "" {
		path = "gst-launch-1.0"
	}
	p, err := exec.LookPath(path)
	if err != nil {
		return "", errNoGst.Error()
	}
	inspect := filepath.Join(filepath.Dir(p), "gst-inspect-1.0")
	for _, el := range []string{"shmsink", "shmsrc", "videotestsrc", "identity", "fakesink"} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := exec.CommandContext(ctx, inspect, "--exists", el).Run()
		cancel()
		if err != nil {
			return "", fmt.Sprintf("GStreamer element %s not found (%v): install gstreamer1.0-plugins-bad (shm) and gstreamer1.0-plugins-base", el, err)
		}
	}
	return p, ""
}

// gstVersion is the first line of gst-launch-1.0 --version.
func gstVersion(path string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line)
}

// gstFormats are GStreamer's names of the pattern's formats.
var gstFormats = map[framebus.FourCC]string{
	framebus.FormatRGBA: "RGBA", framebus.FormatRGB24: "RGB", framebus.FormatBGR24: "BGR",
	framebus.FormatGrey: "GRAY8", framebus.FormatYUYV: "YUY2", framebus.FormatNV12: "NV12", framebus.FormatI420: "I420",
}

var gstElapsed = regexp.MustCompile(`Execution ended after (\d+):(\d+):(\d+)\.(\d+)`)

// runGStreamer measures shmsink -> shmsrc: a producer pipeline rendering
// frames as fast as it can, and a consumer pipeline that takes a fixed
// number of them; fps is that number over the consumer's execution time.
//
// The source renders into private memory and shmsink copies into its
// area (identity drop-allocation=true): with the zero-copy allocation, the
// source's buffer pool fills the area and the producer stalls (GStreamer
// 1.22). gst-launch-1.0 gives no per-frame timestamps across processes, so
// there is no latency.
func (r *runner) runGStreamer(ctx context.Context, sc Scenario, spec childSpec, limit time.Duration) (*runResult, error) {
	gf, ok := gstFormats[sc.Size.Format]
	if !ok {
		return nil, fmt.Errorf("no GStreamer name for %s", sc.Size.FormatName())
	}
	frame, err := sc.Size.FrameBytes()
	if err != nil {
		return nil, err
	}
	caps := fmt.Sprintf("video/x-raw,format=%s,width=%d,height=%d,framerate=10000/1", gf, sc.Size.Width, sc.Size.Height)
	sock := filepath.Join(spec.Dir, "gst.sock")
	prodCPU, consCPU := r.cpus(sc.Placement)

	g := newGroup()
	defer g.killAll()
	pcmd := exec.Command(r.gst, "-q", "videotestsrc", "pattern=black", "num-buffers=-1", "!", caps, "!",
		"identity", "drop-allocation=true", "!",
		"shmsink", "socket-path="+sock, fmt.Sprintf("shm-size=%d", 4*frame), "wait-for-connection=true", "sync=false")
	prod, err := g.start("gstreamer producer", pcmd, prodCPU)
	if err != nil {
		return nil, err
	}
	defer func() {
		g.killAll()
		removeShmPipes(prod.cmd.Process.Pid)
	}()
	if err := waitSocket(ctx, sock, prod); err != nil { // the consumer needs it
		return nil, err
	}
	// Frames for about the measured time: a guess of the rate from the
	// frame size (GStreamer moves ~10 GB/s at most here, ~20000 buffers/s).
	perSec := min(20000, 1e10/float64(frame))
	n := max(100, int(perSec*spec.Measure.Seconds()))
	ccmd := exec.Command(r.gst, "shmsrc", "socket-path="+sock, "num-buffers="+strconv.Itoa(n), "!", caps, "!",
		"fakesink", "enable-last-sample=false", "sync=false")
	cons, err := g.start("gstreamer consumer", ccmd, consCPU)
	if err != nil {
		return nil, err
	}
	// The consumer ends by itself after n frames; the producer would go on
	// forever: stop it then (SIGINT, then SIGKILL).
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-cons.done:
	case <-prod.done:
		return nil, fmt.Errorf("gstreamer producer ended first: %v", prod.failure())
	case <-t.C:
		return nil, fmt.Errorf("gstreamer consumer: %d frames not received within %v (shmsink stalled?): %w", n, limit, errKilled)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	prod.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-prod.done:
	case <-time.After(3 * time.Second):
		prod.cmd.Process.Kill()
		<-prod.done
	}
	if cons.err != nil {
		return nil, cons.failure()
	}
	return gstResult(prod, cons, n)
}

// waitSocket waits (10 s at most) for the shmsink's socket.
func waitSocket(ctx context.Context, sock string, prod *proc) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			return nil
		}
		select {
		case <-prod.done:
			return prod.failure()
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gstreamer producer made no socket within 10 s")
		}
	}
}

// gstResult is the run's result from the consumer's execution time (its
// output) for n frames and both processes' CPU.
func gstResult(prod, cons *proc, n int) (*runResult, error) {
	m := gstElapsed.FindStringSubmatch(cons.stdout.String())
	if m == nil {
		return nil, fmt.Errorf("gstreamer consumer: no execution time in its output: %q", lastLines(cons.stdout.String(), 3))
	}
	h, _ := strconv.Atoi(m[1])
	mi, _ := strconv.Atoi(m[2])
	s, _ := strconv.Atoi(m[3])
	frac, _ := strconv.ParseFloat("0."+m[4], 64)
	elapsed := float64(h*3600+mi*60+s) + frac
	if elapsed <= 0 {
		return nil, fmt.Errorf("gstreamer consumer: execution time %q", m[0])
	}
	rr := &runResult{waiting: -1, processCPU: prod.cpu() + cons.cpu()}
	rr.fps = float64(n) / elapsed
	rr.producerFPS = rr.fps
	rr.windowCPU = rr.processCPU
	rr.prodUSPerFrame = float64(prod.cpu().Nanoseconds()) / float64(n) / 1e3
	rr.consUSPerFrame = float64(cons.cpu().Nanoseconds()) / float64(n) / 1e3
	rr.prodPct = 100 * prod.cpu().Seconds() / elapsed
	rr.consPct = 100 * cons.cpu().Seconds() / elapsed
	rr.note = fmt.Sprintf("%d frames in %.3f s; CPU times are whole processes (start-up included)", n, elapsed)
	return rr, nil
}

// removeShmPipes removes the shared memory areas a shmsink of process pid
// left in /dev/shm (shmpipe.PID.N: a killed or interrupted gst-launch
// leaves its area behind).
func removeShmPipes(pid int) {
	ents, err := os.ReadDir("/dev/shm")
	if err != nil {
		return
	}
	for _, e := range ents {
		parts := strings.Split(e.Name(), ".")
		if len(parts) == 3 && parts[0] == "shmpipe" && strings.TrimSpace(parts[1]) == strconv.Itoa(pid) {
			os.Remove(filepath.Join("/dev/shm", e.Name()))
		}
	}
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}
