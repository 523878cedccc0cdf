//go:build linux

package framebus_test

// The harness of the multi-process tests (process_test.go): it builds
// internal/fbproc once per test binary with -tags framebus_faults, starts
// producers and consumers as separate processes, and collects the JSON lines
// they print as they come. Every wait is bounded and every process is killed
// (by its pid) when its test ends.

import (
	"bufio"
	"bytes"
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
)

var (
	fbprocOnce sync.Once
	fbprocPath string
	fbprocErr  error
)

const fbprocDirPrefix = "framebus-fbproc-"

// fbprocBinary builds the fault-injecting test process once per test binary
// and returns its path. The binary lives in a 0755 directory so that a
// process running as another uid can execute it. The directory cannot be
// removed when the test binary exits (there is no TestMain to do it), so
// each build first removes the directories left by test binaries that are no
// longer running (their pid is part of the name).
func fbprocBinary(t *testing.T) string {
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
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(m)
		}
	}
}

// fbprocBusDir makes a bus directory under /dev/shm (tmpfs, as in
// production), falling back to t.TempDir, removed when the test ends.
func fbprocBusDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "framebus-test-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

var fbprocNames atomic.Int64

// fbprocBusName returns a bus name unique to the test binary and the call.
func fbprocBusName(t *testing.T) string {
	return fmt.Sprintf("proc%d-%d", os.Getpid(), fbprocNames.Add(1))
}

// fbprocEvent is one JSON line of an fbproc process.
type fbprocEvent struct {
	Kind string
	NS   int64
	Line string
	m    map[string]any
}

func (e fbprocEvent) str(key string) string {
	if s, ok := e.m[key].(string); ok {
		return s
	}
	return ""
}

func (e fbprocEvent) num(key string) (int64, bool) {
	n, ok := e.m[key].(json.Number)
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseInt(string(n), 10, 64)
	return v, err == nil
}

// u returns the unsigned integer field key (0 if missing).
func (e fbprocEvent) u(key string) uint64 {
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
func (e fbprocEvent) uints(key string) []uint64 {
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

// fbprocProc is a running fbproc process.
type fbprocProc struct {
	t     *testing.T
	label string
	cmd   *exec.Cmd
	pid   int

	mu      sync.Mutex
	events  []fbprocEvent
	junk    []string      // lines that were not JSON (a line cut by SIGKILL)
	changed chan struct{} // closed and replaced at every new event and at exit
	exited  bool
	exitErr error
	exitNS  int64 // framebus.Now() when Wait returned
	stderr  fbprocBuffer

	done chan struct{} // closed once the process has been waited for
}

type fbprocBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *fbprocBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.b.Len() < 1<<20 {
		b.b.Write(p)
	}
	return len(p), nil
}

func (b *fbprocBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// fbprocOpts are the process-level settings of a start.
type fbprocOpts struct {
	fault string              // FRAMEBUS_FAULT=STEP:N for a producer
	cred  *syscall.Credential // run as another user
	env   []string            // extra environment
}

// startFbproc starts fbproc with role ("producer" or "consumer") and args.
// The process is killed with SIGKILL (by pid) when the test ends, if it is
// still running; on failure its events and stderr are logged.
func startFbproc(t *testing.T, label string, o fbprocOpts, role string, args ...string) *fbprocProc {
	t.Helper()
	bin := fbprocBinary(t)
	cmd := exec.Command(bin, append([]string{role}, args...)...)
	env := make([]string, 0, len(os.Environ())+2)
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "FRAMEBUS_FAULT=") || strings.HasPrefix(kv, "FRAMEBUS_DIR=") {
			continue
		}
		env = append(env, kv)
	}
	if o.fault != "" {
		env = append(env, "FRAMEBUS_FAULT="+o.fault)
	}
	cmd.Env = append(env, o.env...)
	// Pdeathsig: if the test binary dies (a -timeout panic), its children go
	// with it instead of running on. Go sets it after the credential change.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: o.cred}
	p := &fbprocProc{t: t, label: label, cmd: cmd, changed: make(chan struct{}), done: make(chan struct{})}
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

func (p *fbprocProc) read(r io.Reader) {
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
			e := fbprocEvent{m: m, Line: line}
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

func (p *fbprocProc) hasExited() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exited
}

// snapshot returns the events received so far.
func (p *fbprocProc) snapshot() []fbprocEvent {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]fbprocEvent(nil), p.events...)
}

// all returns the events of one kind received so far.
func (p *fbprocProc) all(kind string) []fbprocEvent {
	var out []fbprocEvent
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
func (p *fbprocProc) waitMatch(what string, timeout time.Duration, match func(fbprocEvent) bool) fbprocEvent {
	p.t.Helper()
	e, ok := p.tryWaitMatch(timeout, match)
	if !ok {
		p.t.Fatalf("%s (pid %d): no %s within %v (exited: %v)\n%s", p.label, p.pid, what, timeout, p.hasExited(), p.describe())
	}
	return e
}

// waitFrames waits (procRunTimeout at most) until p has reported n frames.
func (p *fbprocProc) waitFrames(n int) {
	count := 0
	p.waitMatch(fmt.Sprintf("%d frames", n), procRunTimeout, func(e fbprocEvent) bool {
		if e.Kind == "frame" {
			count++
		}
		return count >= n
	})
}

// tryWaitMatch is waitMatch that reports failure instead of failing.
func (p *fbprocProc) tryWaitMatch(timeout time.Duration, match func(fbprocEvent) bool) (fbprocEvent, bool) {
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
			return fbprocEvent{}, false
		}
		select {
		case <-ch:
		case <-deadline.C:
			return fbprocEvent{}, false
		}
	}
}

// waitEvent waits for the first event of kind.
func (p *fbprocProc) waitEvent(kind string, timeout time.Duration) fbprocEvent {
	p.t.Helper()
	return p.waitMatch(strconv.Quote(kind)+" event", timeout, func(e fbprocEvent) bool { return e.Kind == kind })
}

// waitExit waits, at most timeout, for the process to exit and returns
// framebus.Now() when Wait returned, and Wait's error.
func (p *fbprocProc) waitExit(timeout time.Duration) (int64, error) {
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

// summary waits for the consumer's summary event and its exit.
func (p *fbprocProc) summary(timeout time.Duration) fbprocEvent {
	p.t.Helper()
	s := p.waitEvent("summary", timeout)
	if _, err := p.waitExit(5 * time.Second); err != nil {
		p.t.Errorf("%s (pid %d) exited with %v after its summary", p.label, p.pid, err)
	}
	return s
}

func (p *fbprocProc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("%s (pid %d): %v: %v", p.label, p.pid, sig, err)
	}
}

// describe renders the events (the last 40), junk lines and stderr.
func (p *fbprocProc) describe() string {
	p.mu.Lock()
	evs := p.events
	junk := p.junk
	p.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "--- %s (pid %d): %d events", p.label, p.pid, len(evs))
	start := 0
	if len(evs) > 40 {
		start = len(evs) - 40
		fmt.Fprintf(&b, " (last 40)")
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

func (p *fbprocProc) dump() { p.t.Log("\n" + p.describe()) }

// noEvents fails the test for every event of the given kinds.
func (p *fbprocProc) noEvents(kinds ...string) {
	p.t.Helper()
	for _, e := range p.snapshot() {
		for _, k := range kinds {
			if e.Kind == k {
				p.t.Errorf("%s (pid %d): unexpected event: %s", p.label, p.pid, e.Line)
			}
		}
	}
}

// fbprocArgs joins the common flags of a bus with more.
func fbprocArgs(dir, name string, more ...string) []string {
	return append([]string{"-dir", dir, "-name", name}, more...)
}

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

// fbprocKilledBy reports whether a Wait error says the process died of sig.
func fbprocKilledBy(err error, sig syscall.Signal) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

func procMS(ns int64) string { return fmt.Sprintf("%.1fms", float64(ns)/1e6) }
