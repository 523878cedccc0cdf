//go:build linux || windows

package framebus_test

// The one way the tests start another process. A child runs one of two
// programs, started, watched and ended the same way:
//
//   - this test binary, re-executed (the roles of childRoles, in the
//     process_helpers_<os>_test.go files: TestMain below runs them). It is
//     the only program there is under Wine (make test-windows), and it needs
//     no build;
//   - internal/fbproc, built once per test binary with -tags framebus_faults
//     (any other role: producer, consumer, write-frame): the kill points of
//     FRAMEBUS_FAULT are compiled into it and not into this binary, and it
//     lives in a directory other users can reach (TestProcessOtherUser).
//
// Both print what they do as JSON lines on stdout ({"event": kind, "ns":
// CLOCK_MONOTONIC, "pid": ...}), which are collected as they come. Every
// wait is bounded, and a child still running when its test ends is killed by
// its pid.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/framebus/framebus/framebus"

	"github.com/framebus/framebus/internal/testutil"
)

const (
	procStartTimeout = 15 * time.Second // a process's first event
	procRunTimeout   = 45 * time.Second // a whole run

	// childEnv marks a re-executed test binary: its first argument is the
	// role, the rest the role's flags.
	childEnv = "FRAMEBUS_TEST_CHILD"
)

// TestMain runs a child role when this binary was started as a child, and
// the tests otherwise; then it removes the fbproc build of this run.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(runChild(os.Args[1:]))
	}
	code := m.Run()
	if fbprocPath != "" {
		os.RemoveAll(filepath.Dir(fbprocPath))
	}
	os.Exit(code)
}

// runChild runs the role argv[0] of childRoles with the flags argv[1:]. A
// role that fails reports an "error" event and exits 3.
func runChild(argv []string) int {
	if len(argv) == 0 {
		fmt.Fprintln(os.Stderr, "child: no role")
		return 2
	}
	run, ok := childRoles[argv[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "child: unknown role %q\n", argv[0])
		return 2
	}
	if err := run(argv[1:]); err != nil {
		childEmit("error", map[string]any{"error": err.Error()})
		fmt.Fprintf(os.Stderr, "child %s: %v\n", argv[0], err)
		return 3
	}
	return 0
}

var childOut = json.NewEncoder(os.Stdout)

// childEmit prints one event of a child role, in fbproc's format.
func childEmit(kind string, kv map[string]any) {
	if kv == nil {
		kv = map[string]any{}
	}
	kv["event"], kv["ns"], kv["pid"] = kind, framebus.Now(), os.Getpid()
	childOut.Encode(kv)
}

// ---- internal/fbproc ----

var (
	fbprocOnce sync.Once
	fbprocPath string
	fbprocErr  error
)

const fbprocDirPrefix = "framebus-fbproc-"

// fbprocBinary builds the fault-injecting test process once per test binary
// and returns its path. The binary lives in a 0755 directory so that a
// process running as another uid can execute it. TestMain removes it when the
// tests end; a test binary that did not get there (killed, a -timeout panic)
// leaves it behind, so each build first removes the directories of test
// binaries that are no longer running (their pid is part of the name).
func fbprocBinary(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("multi-process tests skipped in -short mode")
	}
	fbprocOnce.Do(func() {
		fbprocSweepStale()
		dir, err := os.MkdirTemp("", fbprocDirPrefix+strconv.Itoa(os.Getpid())+"-")
		if err != nil {
			fbprocErr = err
			return
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			fbprocErr = err
			return
		}
		bin := filepath.Join(dir, "fbproc")
		cmd := exec.Command("go", "build", "-tags", "framebus_faults", "-o", bin, "./internal/fbproc")
		out, err := cmd.CombinedOutput()
		if err != nil {
			fbprocErr = fmt.Errorf("go build ./internal/fbproc: %v\n%s", err, out)
			return
		}
		if err := os.Chmod(bin, 0o755); err != nil {
			fbprocErr = err
			return
		}
		fbprocPath = bin
	})
	if fbprocErr != nil {
		t.Fatalf("building fbproc: %v", fbprocErr)
	}
	return fbprocPath
}

// fbprocSweepStale removes the binary directories of dead test processes.
func fbprocSweepStale() {
	matches, _ := filepath.Glob(filepath.Join(os.TempDir(), fbprocDirPrefix+"*"))
	for _, m := range matches {
		rest := strings.TrimPrefix(filepath.Base(m), fbprocDirPrefix)
		pidStr, _, ok := strings.Cut(rest, "-")
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if processGone(pid) {
			os.RemoveAll(m)
		}
	}
}

// ---- buses of the multi-process tests (in framebus.ShmDir) ----

var busNames atomic.Int64

// busName returns a bus name unique to the test binary and the call.
func busName(t testing.TB) string {
	return fmt.Sprintf("proc%d-%d", os.Getpid(), busNames.Add(1))
}

// busArgs joins the flags of a child's bus with more.
func busArgs(dir, name string, more ...string) []string {
	return append([]string{"-dir", dir, "-name", name}, more...)
}

// ---- children ----

// event is one JSON line of a child.
type event struct {
	Kind string
	NS   int64
	Line string
	m    map[string]any
}

func (e event) str(key string) string {
	if s, ok := e.m[key].(string); ok {
		return s
	}
	return ""
}

func (e event) num(key string) (int64, bool) {
	n, ok := e.m[key].(json.Number)
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseInt(string(n), 10, 64)
	return v, err == nil
}

// u returns the unsigned integer field key (0 if missing).
func (e event) u(key string) uint64 {
	n, ok := e.m[key].(json.Number)
	if !ok {
		return 0
	}
	v, err := strconv.ParseUint(string(n), 10, 64)
	if err != nil {
		return 0
	}
	return v
}

// uints returns the array of unsigned integers field key.
func (e event) uints(key string) []uint64 {
	a, _ := e.m[key].([]any)
	var out []uint64
	for _, x := range a {
		if n, ok := x.(json.Number); ok {
			v, _ := strconv.ParseUint(string(n), 10, 64)
			out = append(out, v)
		}
	}
	return out
}

// child is a running child process.
type child struct {
	t     testing.TB
	label string
	cmd   *exec.Cmd
	pid   int

	mu      sync.Mutex
	events  []event
	junk    []string      // lines that were not JSON (a line cut by SIGKILL)
	changed chan struct{} // closed and replaced at every new event and at exit
	exited  bool
	exitErr error
	exitNS  int64           // framebus.Now() when Wait returned
	stderr  testutil.Buffer // the first MiB (Max, set at the start)

	done chan struct{} // closed once the process has been waited for
}

// childOpts are the process-level settings of a start.
type childOpts struct {
	fault string     // FRAMEBUS_FAULT=STEP:N (fbproc only)
	user  *childUser // run as another user (Linux, as root)
	env   []string   // extra environment
}

// childUser is a uid and gid to run a child as, with no supplementary groups.
type childUser struct{ uid, gid uint32 }

// startChild starts a child in role with args: a role of childRoles in this
// test binary re-executed, any other in fbproc. The child is killed (by its
// pid: SIGKILL, TerminateProcess) when the test ends if it is still running;
// on failure its events and stderr are logged. Children are multi-process
// tests, skipped with -short.
func startChild(t testing.TB, label string, o childOpts, role string, args ...string) *child {
	t.Helper()
	if testing.Short() {
		t.Skip("multi-process tests skipped in -short mode")
	}
	env := make([]string, 0, len(os.Environ())+3)
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "FRAMEBUS_FAULT=") || strings.HasPrefix(kv, "FRAMEBUS_DIR=") || strings.HasPrefix(kv, childEnv+"=") {
			continue
		}
		env = append(env, kv)
	}
	var cmd *exec.Cmd
	if _, self := childRoles[role]; self {
		if o.fault != "" {
			t.Fatalf("%s: FRAMEBUS_FAULT needs fbproc; the test binary has no kill points (role %s)", label, role)
		}
		cmd = exec.Command(os.Args[0], append([]string{role}, args...)...)
		env = append(env, childEnv+"=1")
	} else {
		cmd = exec.Command(fbprocBinary(t), append([]string{role}, args...)...)
	}
	if o.fault != "" {
		env = append(env, "FRAMEBUS_FAULT="+o.fault)
	}
	cmd.Env = append(env, o.env...)
	setChildAttrs(cmd, o.user)
	p := &child{t: t, label: label, cmd: cmd, changed: make(chan struct{}), done: make(chan struct{})}
	p.stderr.Max = 1 << 20
	cmd.Stderr = &p.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("%s: %v", label, err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: start %s %v: %v", label, role, args, err)
	}
	p.pid = cmd.Process.Pid
	go p.read(stdout)
	t.Cleanup(func() {
		if !p.hasExited() {
			cmd.Process.Kill()
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				t.Errorf("%s (pid %d) still not reaped 10s after SIGKILL", label, p.pid)
			}
		}
		if t.Failed() {
			p.dump()
		}
	})
	return p
}

func (p *child) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		dec := json.NewDecoder(strings.NewReader(line))
		dec.UseNumber()
		var m map[string]any
		p.mu.Lock()
		if err := dec.Decode(&m); err != nil {
			p.junk = append(p.junk, line)
		} else {
			e := event{m: m, Line: line}
			e.Kind, _ = m["event"].(string)
			e.NS, _ = e.num("ns")
			p.events = append(p.events, e)
			close(p.changed)
			p.changed = make(chan struct{})
		}
		p.mu.Unlock()
	}
	// Drain anything the scanner refused (an over-long line) so that the
	// process never blocks on a full pipe.
	buf := make([]byte, 32<<10)
	for {
		if _, err := r.Read(buf); err != nil {
			break
		}
	}
	err := p.cmd.Wait()
	now := framebus.Now()
	p.mu.Lock()
	p.exited, p.exitErr, p.exitNS = true, err, now
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
	close(p.done)
}

func (p *child) hasExited() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exited
}

// snapshot returns the events received so far.
func (p *child) snapshot() []event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]event(nil), p.events...)
}

// all returns the events of one kind received so far.
func (p *child) all(kind string) []event {
	var out []event
	for _, e := range p.snapshot() {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// waitMatch waits, at most timeout, for an event for which match is true,
// looking at every event from the first. It fails the test if the process
// exits or the time runs out first.
func (p *child) waitMatch(what string, timeout time.Duration, match func(event) bool) event {
	p.t.Helper()
	e, ok := p.tryWaitMatch(timeout, match)
	if !ok {
		p.t.Fatalf("%s (pid %d): no %s within %v (exited: %v)\n%s", p.label, p.pid, what, timeout, p.hasExited(), p.describe())
	}
	return e
}

// waitFrames waits (procRunTimeout at most) until p has reported n frames.
func (p *child) waitFrames(n int) {
	count := 0
	p.waitMatch(fmt.Sprintf("%d frames", n), procRunTimeout, func(e event) bool {
		if e.Kind == "frame" {
			count++
		}
		return count >= n
	})
}

// tryWaitMatch is waitMatch that reports failure instead of failing.
func (p *child) tryWaitMatch(timeout time.Duration, match func(event) bool) (event, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	seen := 0
	for {
		p.mu.Lock()
		evs, ch, exited := p.events[seen:], p.changed, p.exited
		seen = len(p.events)
		p.mu.Unlock()
		for _, e := range evs {
			if match(e) {
				return e, true
			}
		}
		if exited {
			return event{}, false
		}
		select {
		case <-ch:
		case <-deadline.C:
			return event{}, false
		}
	}
}

// waitEvent waits for the first event of kind.
func (p *child) waitEvent(kind string, timeout time.Duration) event {
	p.t.Helper()
	return p.waitMatch(strconv.Quote(kind)+" event", timeout, func(e event) bool { return e.Kind == kind })
}

// waitExit waits, at most timeout, for the process to exit and returns
// framebus.Now() when Wait returned, and Wait's error.
func (p *child) waitExit(timeout time.Duration) (int64, error) {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Fatalf("%s (pid %d) did not exit within %v\n%s", p.label, p.pid, timeout, p.describe())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitNS, p.exitErr
}

// kill ends the child the hard way (SIGKILL, TerminateProcess: no cleanup
// runs in it; the kernel drops its locks, Windows abandons its mutexes) and
// waits for it (10 s at most): framebus.Now() when Wait returned, and Wait's
// error.
func (p *child) kill() (int64, error) {
	p.t.Helper()
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.t.Fatalf("%s (pid %d): kill: %v", p.label, p.pid, err)
	}
	return p.waitExit(10 * time.Second)
}

// summary waits for the consumer's summary event and its exit.
func (p *child) summary(timeout time.Duration) event {
	p.t.Helper()
	s := p.waitEvent("summary", timeout)
	if _, err := p.waitExit(5 * time.Second); err != nil {
		p.t.Errorf("%s (pid %d) exited with %v after its summary", p.label, p.pid, err)
	}
	return s
}

func (p *child) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("%s (pid %d): %v: %v", p.label, p.pid, sig, err)
	}
}

// describe renders the events (the last 40), junk lines and stderr, and how
// the child exited if it did.
func (p *child) describe() string {
	p.mu.Lock()
	evs, junk, exited, exitErr := p.events, p.junk, p.exited, p.exitErr
	p.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "--- %s (pid %d): %d events", p.label, p.pid, len(evs))
	start := 0
	if len(evs) > 40 {
		start = len(evs) - 40
		fmt.Fprintf(&b, " (last 40)")
	}
	if exited {
		fmt.Fprintf(&b, ", exited (%v)", exitErr)
	}
	b.WriteString("\n")
	for _, e := range evs[start:] {
		b.WriteString("  " + e.Line + "\n")
	}
	for _, j := range junk {
		b.WriteString("  junk: " + j + "\n")
	}
	if s := p.stderr.String(); s != "" {
		b.WriteString("  stderr: " + strings.TrimSpace(s) + "\n")
	}
	return b.String()
}

func (p *child) dump() { p.t.Log("\n" + p.describe()) }

// noEvents fails the test for every event of the given kinds.
func (p *child) noEvents(kinds ...string) {
	p.t.Helper()
	for _, e := range p.snapshot() {
		for _, k := range kinds {
			if e.Kind == k {
				p.t.Errorf("%s (pid %d): unexpected event: %s", p.label, p.pid, e.Line)
			}
		}
	}
}

// killedBy reports whether a Wait error says the process died of sig.
func killedBy(err error, sig syscall.Signal) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

// ---- segment files ----

// segSnapshot is a snapshot of the first bytes of a segment file (header,
// slot table), read with pread: on tmpfs that is the live shared memory. Its
// header is decoded with the package's codec (framebus.DecodeHeader).
type segSnapshot struct {
	framebus.Header
	b []byte
}

func readSegment(path string) (*segSnapshot, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readSegmentFrom(f)
}

func readSegmentFrom(f *os.File) (*segSnapshot, error) {
	b := make([]byte, framebus.HeaderSize+framebus.MaxSlots*framebus.SlotDescSize)
	n, err := f.ReadAt(b, 0)
	if n < framebus.HeaderSize {
		return nil, fmt.Errorf("%s: read %d bytes: %v", f.Name(), n, err)
	}
	return &segSnapshot{Header: framebus.DecodeHeader(b), b: b[:n]}, nil
}

// slot returns slot i's lock and frame_seq (both all ones if the header
// puts the slot outside the bytes read).
func (s *segSnapshot) slot(i int) (lock, seq uint64) {
	d := s.SlotTableOffset + uint64(i)*framebus.SlotDescSize
	if i < 0 || s.SlotTableOffset > uint64(len(s.b)) || d+framebus.SlotDescSize > uint64(len(s.b)) {
		return ^uint64(0), ^uint64(0)
	}
	sd := framebus.DecodeSlot(s.b[d:])
	return sd.Lock, sd.FrameSeq
}

func procMS(ns int64) string { return fmt.Sprintf("%.1fms", float64(ns)/1e6) }
