//go:build linux

// The test of the C++ example (../grey_mean.cpp): libframebus installed
// into a staging PREFIX (make install), the example built against it with its Makefile
// (pkg-config opencv4 framebus), then run against framebus capture and against a Go
// producer of a known picture, whose grey mean OpenCV must find through the zero-copy
// cv::Mat.

package test

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/framebus/framebus/framebus"
)

// needTools skips the test without g++, make and OpenCV's development files, unless
// FRAMEBUS_REQUIRE_TOOLS=1 (make test), which makes that a failure.
func needTools(t *testing.T) {
	t.Helper()
	var missing []string
	for _, c := range []string{"g++", "gcc", "make", "pkg-config"} {
		if _, err := exec.LookPath(c); err != nil {
			missing = append(missing, c)
		}
	}
	if len(missing) == 0 && exec.Command("pkg-config", "--exists", "opencv4").Run() != nil {
		missing = append(missing, "opencv4 (libopencv-dev)")
	}
	if len(missing) == 0 {
		return
	}
	if os.Getenv("FRAMEBUS_REQUIRE_TOOLS") == "1" {
		t.Fatalf("missing %v (Debian: g++ make pkg-config libopencv-dev)", missing)
	}
	t.Skipf("missing %v", missing)
}

func run(t *testing.T, dir string, env []string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

var (
	buildOnce              sync.Once
	builtExample, builtCmd string
	buildFailed            bool
	buildDir               string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// build installs libframebus into a staging prefix and builds the example and the
// framebus command, once per test binary; it returns their paths.
func build(t *testing.T) (example, command string) {
	t.Helper()
	buildOnce.Do(func() {
		tmp, err := os.MkdirTemp("", "framebus-cpp-")
		if err != nil {
			t.Fatal(err)
		}
		buildDir = tmp
		buildFailed = true
		builtExample, builtCmd = buildIn(t, tmp)
		buildFailed = false
	})
	if buildFailed {
		t.Fatal("the build failed (see the first test)")
	}
	return builtExample, builtCmd
}

func buildIn(t *testing.T, tmp string) (example, command string) {
	t.Helper()
	prefix := filepath.Join(tmp, "prefix")
	run(t, "../../../libframebus", nil, "make", "-s", "install", "PREFIX="+prefix, "B="+filepath.Join(tmp, "build"))
	for _, f := range []string{"include/framebus/libframebus.h", "include/framebus/framebus.h", "lib/libframebus.so.1",
		"lib/libframebus.a", "lib/pkgconfig/framebus.pc"} {
		if _, err := os.Stat(filepath.Join(prefix, f)); err != nil {
			t.Fatalf("make install: %v", err)
		}
	}
	example = filepath.Join(tmp, "grey_mean")
	run(t, "..", nil, "make", "-s", "OUT="+example, "PKG_CONFIG_PATH="+filepath.Join(prefix, "lib", "pkgconfig"))
	command = filepath.Join(tmp, "framebus")
	run(t, "../../..", []string{"CGO_ENABLED=0"}, "go", "build", "-o", command, "./cmd/framebus")
	return example, command
}

var line = regexp.MustCompile(`^frame seq=(\d+) size=(\d+)x(\d+) format=(\w+) mean=([\d.]+) held=([01]) valid=([01])$`)

type result struct {
	seq         uint64
	w, h        int
	format      string
	mean        float64
	held, valid bool
}

func parse(t *testing.T, out []byte) []result {
	t.Helper()
	var rs []result
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		m := line.FindStringSubmatch(sc.Text())
		if m == nil {
			t.Fatalf("grey_mean printed %q", sc.Text())
		}
		seq, _ := strconv.ParseUint(m[1], 10, 64)
		w, _ := strconv.Atoi(m[2])
		h, _ := strconv.Atoi(m[3])
		mean, _ := strconv.ParseFloat(m[5], 64)
		rs = append(rs, result{seq, w, h, m[4], mean, m[6] == "1", m[7] == "1"})
	}
	return rs
}

func TestGreyMeanOnCapture(t *testing.T) {
	needTools(t)
	example, command := build(t)
	for _, tc := range []struct {
		format, fourcc, slots string
		held                  bool // 4 slots allow 2 holds; 2 slots none (a plain view)
	}{
		{"RGBA", "AB24", "4", true},
		{"BGR24", "BGR3", "3", true},
		{"NV12", "NV12", "2", false},
		{"YUYV", "YUYV", "2", false},
	} {
		t.Run(tc.format, func(t *testing.T) {
			bus := t.TempDir()
			cp := exec.Command(command, "capture", "--name", "cpp", "--source", "pattern", "--size", "320x240",
				"--format", tc.format, "--slots", tc.slots, "--fps", "30", "--dir", bus)
			var capErr bytes.Buffer
			cp.Stderr = &capErr
			if err := cp.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				cp.Process.Signal(os.Interrupt)
				cp.Wait()
			}()
			const frames = 15
			out, err := exec.Command(example, "cpp", "--dir", bus, "--frames", strconv.Itoa(frames), "--timeout", "20000").Output()
			if err != nil {
				t.Fatalf("grey_mean: %v\n%s\ncapture: %s", err, exitStderr(err), capErr.String())
			}
			rs := parse(t, out)
			if len(rs) != frames {
				t.Fatalf("%d lines, want %d", len(rs), frames)
			}
			var last uint64
			invalid := 0
			for _, r := range rs {
				if r.seq <= last || r.w != 320 || r.h != 240 || r.format != tc.fourcc || r.mean <= 0 || r.mean >= 255 {
					t.Fatalf("line %+v after seq %d", r, last)
				}
				if r.held != tc.held {
					t.Errorf("seq %d held %v, want %v", r.seq, r.held, tc.held)
				}
				if !r.valid {
					invalid++
				}
				last = r.seq
			}
			if tc.held && invalid > 0 {
				t.Errorf("%d held frames not valid after use", invalid)
			}
		})
	}
}

// A Go producer of one flat RGBA colour (200, 100, 50): the grey OpenCV computes from the
// zero-copy cv::Mat is 0.299*200 + 0.587*100 + 0.114*50 = 124.2, rounded per pixel to 124.
func TestGreyMeanKnownPicture(t *testing.T) {
	needTools(t)
	example, _ := build(t)
	bus := t.TempDir()
	const w, h = 96, 64
	p, err := framebus.Create("known", framebus.ProducerOptions{
		Format: framebus.Format{Width: w, Height: h, PixelFormat: framebus.FormatRGBA},
		Slots:  4, Checksum: true, Dir: bus,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	frame := make([]byte, w*h*4)
	for i := 0; i < len(frame); i += 4 {
		frame[i], frame[i+1], frame[i+2], frame[i+3] = 200, 100, 50, 255
	}
	cmd := exec.Command(example, "known", "--dir", bus, "--frames", "5", "--timeout", "20000")
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(60 * time.Second)
	for running := true; running; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("grey_mean: %v\n%s", err, stderr.String())
			}
			running = false
		case <-tick.C:
			if _, err := p.Publish(frame, framebus.Meta{}); err != nil {
				t.Fatal(err)
			}
		case <-timeout:
			cmd.Process.Kill()
			t.Fatalf("grey_mean did not finish\n%s", stderr.String())
		}
	}
	rs := parse(t, out.Bytes())
	if len(rs) != 5 {
		t.Fatalf("%d lines, want 5:\n%s", len(rs), out.String())
	}
	for _, r := range rs {
		if r.mean != 124 || !r.held || !r.valid || r.w != w || r.h != h {
			t.Errorf("%+v: want mean 124, held and valid", r)
		}
	}
}

func exitStderr(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
