//go:build linux

package test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/internal/testutil"
)

// tools is what every test runs, built once per test binary.
type tools struct {
	root      string // the repository
	pluginDir string // gst/build, for GST_PLUGIN_PATH
	registry  string // a registry file of our own (GST_REGISTRY)
	framebus  string // the Go command
	consumer  string // libframebus's reference C consumer
	tmp       string
}

var (
	toolsOnce sync.Once
	built     *tools
	buildErr  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if built != nil {
		os.RemoveAll(built.tmp)
	}
	os.Exit(code)
}

// need skips the test when GStreamer or its development files are missing, unless
// FRAMEBUS_REQUIRE_TOOLS=1 (make test), which makes that a failure.
func need(t *testing.T, elements ...string) *tools {
	t.Helper()
	var missing []string
	for _, c := range []string{"gst-launch-1.0", "gst-inspect-1.0", "gcc", "make", "pkg-config"} {
		if _, err := exec.LookPath(c); err != nil {
			missing = append(missing, c)
		}
	}
	if len(missing) == 0 && exec.Command("pkg-config", "--exists", "gstreamer-video-1.0").Run() != nil {
		missing = append(missing, "gstreamer-video-1.0 (libgstreamer-plugins-base1.0-dev)")
	}
	for _, e := range elements {
		if e == "ffprobe" {
			if _, err := exec.LookPath("ffprobe"); err != nil {
				missing = append(missing, "ffprobe")
			}
		} else if len(missing) == 0 && exec.Command("gst-inspect-1.0", "--exists", e).Run() != nil {
			missing = append(missing, "GStreamer element "+e)
		}
	}
	if len(missing) > 0 {
		if os.Getenv("FRAMEBUS_REQUIRE_TOOLS") == "1" {
			t.Fatalf("missing %v (make test-gst installs them)", missing)
		}
		t.Skipf("missing %v", missing)
	}
	toolsOnce.Do(func() {
		root, _ := filepath.Abs("../..")
		tmp, err := os.MkdirTemp("", "framebus-gst-")
		if err != nil {
			buildErr = err.Error()
			return
		}
		tl := &tools{root: root, pluginDir: filepath.Join(root, "gst", "build"), registry: filepath.Join(tmp, "registry.bin"),
			framebus: filepath.Join(tmp, "framebus"), consumer: filepath.Join(tmp, "consumer"), tmp: tmp}
		srcs, _ := filepath.Glob(filepath.Join(root, "libframebus", "src", "*.c"))
		for _, c := range [][]string{
			{"make", "-s", "-C", filepath.Join(root, "gst")},
			{"go", "build", "-o", tl.framebus, "./cmd/framebus"},
			append([]string{"gcc", "-O2", "-std=gnu11", "-pthread", "-I", "libframebus/include", "-I", "framebus/include",
				"-o", tl.consumer, "framebus/testdata/c/consumer.c"}, srcs...),
		} {
			cmd := exec.Command(c[0], c[1:]...)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Sprintf("%s: %v\n%s", strings.Join(c, " "), err, out)
				return
			}
		}
		built = tl
	})
	if built == nil {
		t.Fatalf("build: %s", buildErr)
	}
	return built
}

// env is the environment of a test's processes: the plugin from the build folder, a
// registry of our own, the test's bus directory.
func (tl *tools) env(dir string) []string {
	return append(os.Environ(), "GST_PLUGIN_PATH="+tl.pluginDir, "GST_REGISTRY="+tl.registry,
		"FRAMEBUS_DIR="+dir, "GST_DEBUG_NO_COLOR=1")
}

// proc is a child process of a test: a testutil.Proc (killed by pid when
// the test ends, its end waited for with a bound), with cmd for the
// signals the tests send.
type proc struct {
	*testutil.Proc
	cmd *exec.Cmd
}

func start(t *testing.T, env []string, name string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = env
	return &proc{Proc: testutil.Start(t, cmd), cmd: cmd}
}

// startWithStdin is start with a pipe to the child's stdin.
func startWithStdin(t *testing.T, env []string, name string, args ...string) (*proc, io.WriteCloser) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = env
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	return &proc{Proc: testutil.Start(t, cmd), cmd: cmd}, in
}

// output is what the process wrote, stdout then stderr (gst-launch's
// messages, the C consumer's frame lines and summary, framebus's log).
func (p *proc) output() string { return p.Stdout.String() + p.Stderr.String() }

// wait waits for the process to end, up to d (the test fails past it), and
// returns how it ended: nil for exit 0.
func (p *proc) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	p.Wait(t, d)
	return p.Err
}

// waitFor polls cond up to d; the test fails past it.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, d, what, cond)
}

// consumers is the number of active consumer entries on the bus (0 when absent).
func consumers(name, dir string) int {
	s, err := framebus.Inspect(name, dir)
	if err != nil || s == nil {
		return 0
	}
	n := 0
	for _, c := range s.Consumers {
		if c.State == framebus.EntryActive {
			n++
		}
	}
	return n
}

// minLastSeq is the lowest last_seq of the bus's active consumers (0 when none).
func minLastSeq(name, dir string) uint64 {
	s, err := framebus.Inspect(name, dir)
	if err != nil || s == nil {
		return 0
	}
	var m uint64 = math.MaxUint64
	for _, c := range s.Consumers {
		if c.State == framebus.EntryActive && c.LastSeq < m {
			m = c.LastSeq
		}
	}
	if m == math.MaxUint64 {
		return 0
	}
	return m
}

// delivered is the most frames any active consumer of the bus's current generation took.
func delivered(name, dir string) uint64 {
	s, err := framebus.Inspect(name, dir)
	if err != nil || s == nil {
		return 0
	}
	var m uint64
	for _, c := range s.Consumers {
		if c.State == framebus.EntryActive && c.Delivered > m {
			m = c.Delivered
		}
	}
	return m
}

// published is the bus's frames_published (0 when absent).
func published(name, dir string) uint64 {
	s, err := framebus.Inspect(name, dir)
	if err != nil || s == nil {
		return 0
	}
	return s.Header.FramesPublished
}

// statsMessage parses gst-launch -m's framebussrc-stats message into its fields.
func statsMessage(out string) map[string]string { return statsOf(out, "framebussrc-stats") }

// statsOf parses the last element message named name (gst-launch -m) into its fields.
func statsOf(out, name string) map[string]string {
	i := strings.LastIndex(out, name+", ")
	if i < 0 {
		return nil
	}
	line := out[i:]
	if j := strings.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	m := map[string]string{}
	for _, f := range strings.Split(line, ", ")[1:] {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			continue
		}
		if j := strings.IndexByte(v, ')'); j >= 0 && strings.HasPrefix(v, "(") {
			v = v[j+1:]
		}
		m[k] = strings.TrimSuffix(strings.Trim(v, "\";"), "\"")
	}
	return m
}

func atoi(t *testing.T, s string) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	if err != nil {
		t.Fatalf("not a number: %q", s)
	}
	return n
}

// lines returns the output's lines that start with prefix.
func lines(out, prefix string) []string {
	var r []string
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), prefix) {
			r = append(r, sc.Text())
		}
	}
	return r
}

// rss and fds of a live process.
func procStat(pid int) (rssKB int, fds int) {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				rssKB, _ = strconv.Atoi(f[1])
			}
		}
	}
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return rssKB, len(ents)
}

var _ = context.Background
