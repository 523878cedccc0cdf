package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/framebus/framebus/framebus"

	"github.com/framebus/framebus/internal/testutil"
)

// bin is the framebus binary, built once for all the tests.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "framebus-cmd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "framebus")
	args := []string{"build", "-o", bin}
	if tags := buildTags(); tags != "" {
		args = append(args, "-tags", tags)
	}
	if out, err := exec.Command("go", append(args, ".")...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildTags are the tags to build the binary with: $FRAMEBUS_TAGS (the
// Makefile sets it), else this test binary's own -tags, so that the binary has
// what hasOpenCV and its kind say.
func buildTags() string {
	if tags := os.Getenv("FRAMEBUS_TAGS"); tags != "" {
		return tags
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-tags" {
				return s.Value
			}
		}
	}
	return ""
}

type result struct {
	Stdout, Stderr string
	Code           int
}

// run runs the binary to its end, within 30 s.
func run(t *testing.T, args ...string) result {
	t.Helper()
	return runExec(t, bin, args...)
}

// runExec runs prog (the binary, or a program that runs it, such as
// unshare) to its end, within 30 s.
func runExec(t *testing.T, prog string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	r := result{Stdout: so.String(), Stderr: se.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.Code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("framebus %q: %v", args, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("framebus %q did not end within 30 s", args)
	}
	checkNoPanic(t, args, r.Stderr)
	return r
}

func checkNoPanic(t *testing.T, args []string, stderr string) {
	t.Helper()
	testutil.NoPanic(t, args, stderr)
}

// proc is a framebus process running in the background: a testutil.Proc.
type proc = testutil.Proc

// start runs the binary in the background; Cleanup kills it by pid.
func start(t *testing.T, args ...string) *proc {
	t.Helper()
	return startEnv(t, nil, args...)
}

// startEnv is start with env added to the environment.
func startEnv(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	return testutil.Start(t, testutil.Command(env, bin, args...))
}

// startExec is start for a program that runs the binary (unshare, sh).
func startExec(t *testing.T, prog string, args ...string) *proc {
	t.Helper()
	return testutil.Start(t, testutil.Command(nil, prog, args...))
}

// startProg runs prog (another program than framebus: a server the test
// talks to) in the background; Cleanup kills it by pid.
func startProg(t *testing.T, env []string, prog string, args ...string) *proc {
	t.Helper()
	return testutil.Start(t, testutil.Command(env, prog, args...))
}

func segment(dir, name string) string { return filepath.Join(dir, "framebus."+name) }

// startCapture starts a small, fast capture and waits for its bus.
func startCapture(t *testing.T, dir, name string, extra ...string) *proc {
	t.Helper()
	args := append([]string{"capture", "--name", name, "--source", "pattern", "--size", "64x48", "--fps", "100", "--dir", dir}, extra...)
	p := start(t, args...)
	testutil.WaitFor(t, 10*time.Second, "the bus "+name, func() bool {
		select {
		case <-p.Done():
			t.Fatalf("capture ended early (exit %d):\n%s", p.Code, p.Stderr.String())
		default:
		}
		return exists(segment(dir, name))
	})
	return p
}

var seqLine = regexp.MustCompile(`^seq=(\d+) bytes=(\d+) commit_to_wake=([\d.]+)µs capture_to_wake=([\d.]+)µs dropped=(\d+) torn=(\d+)`)

// checkTailFrames checks tail's output: one line per frame, sequence
// numbers increasing, every frame of frameBytes, and "closed" at the end. It
// returns the number of frames.
func checkTailFrames(t *testing.T, out string, frameBytes int) int {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if last := lines[len(lines)-1]; last != "closed" {
		t.Fatalf("tail's last line is %q, want \"closed\"", last)
	}
	var prev uint64
	for _, l := range lines[:len(lines)-1] {
		m := seqLine.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("tail printed %q", l)
		}
		seq, _ := strconv.ParseUint(m[1], 10, 64)
		if seq <= prev {
			t.Fatalf("seq %d after %d", seq, prev)
		}
		prev = seq
		if m[2] != strconv.Itoa(frameBytes) {
			t.Fatalf("frame of %s bytes, want %d", m[2], frameBytes)
		}
	}
	return len(lines) - 1
}

func TestCaptureThenTailUntilClosed(t *testing.T) {
	dir := t.TempDir()
	tail := start(t, "tail", "cam", "--dir", dir, "--timeout", "20s")
	capt := run(t, "capture", "--name", "cam", "--source", "pattern", "--size", "64x48", "--format", "RGBA", "--fps", "100", "--duration", "1500ms", "--dir", dir)
	if capt.Code != 0 {
		t.Fatalf("capture exit %d:\n%s", capt.Code, capt.Stderr)
	}
	if code := tail.Wait(t, 15*time.Second); code != 0 {
		t.Fatalf("tail exit %d:\n%s", code, tail.Stderr.String())
	}
	n := checkTailFrames(t, tail.Stdout.String(), 64*48*4)
	// 1.5 s at 100 fps; the tail may join a little late.
	if n < 50 {
		t.Errorf("tail printed %d frames, want about 150", n)
	}
	if exists(segment(dir, "cam")) || exists(segment(dir, "cam")+".lock") {
		t.Errorf("capture left its files behind")
	}
}

// The keys of PROTOCOL.md section 3 (header) and 3.5 (consumer entries).
var headerKeys = strings.Fields(`magic abi_version header_size state flags total_size generation heartbeat_ns
	payload_offset payload_size version_mismatch_count producer_pid slot_count slot_stride slot_capacity
	consumer_capacity heartbeat_interval_ms width height pixel_format plane_count plane_stride plane_offset
	fps_num fps_den slot_table_offset consumer_table_offset slot_desc_size consumer_entry_size created_ns
	active last_seq frames_published last_commit_ns source_drops consumers_reclaimed wake_seq wake_waiters consumers`)
var consumerKeys = strings.Fields(`index state pid sem waiters token last_seq delivered dropped heartbeat_ns torn_retries lag`)

func TestStatJSONShowsTheConsumer(t *testing.T) {
	dir := t.TempDir()
	capt := startCapture(t, dir, "cam", "--checksum")
	tail := start(t, "tail", "cam", "--duration", "30s", "--dir", dir) // flags after NAME

	var st map[string]any
	testutil.WaitFor(t, 10*time.Second, "stat to show the consumer", func() bool {
		r := run(t, "stat", "cam", "--json", "--dir", dir)
		if r.Code != 0 {
			t.Fatalf("stat exit %d: %s", r.Code, r.Stderr)
		}
		st = nil
		if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil {
			t.Fatalf("stat --json: %v\n%s", err, r.Stdout)
		}
		c, _ := st["consumers"].([]any)
		return len(c) > 0
	})
	for _, k := range headerKeys {
		if _, ok := st[k]; !ok {
			t.Errorf("stat --json has no %q", k)
		}
	}
	if st["magic"] != float64(0x53554246) || st["state"] != float64(1) || st["flags"] != float64(framebus.FlagChecksum|framebus.FlagSharedWake|framebus.FlagHolds) {
		t.Errorf("magic %v, state %v, flags %v", st["magic"], st["state"], st["flags"])
	}
	if st["producer_pid"] != float64(capt.Pid()) || st["producer_alive"] != true {
		t.Errorf("producer_pid %v alive %v, want %d alive", st["producer_pid"], st["producer_alive"], capt.Pid())
	}
	c := st["consumers"].([]any)[0].(map[string]any)
	for _, k := range consumerKeys {
		if _, ok := c[k]; !ok {
			t.Errorf("consumer entry has no %q", k)
		}
	}
	if c["pid"] != float64(tail.Pid()) || c["alive"] != true {
		t.Errorf("consumer pid %v alive %v, want the tail's %d", c["pid"], c["alive"], tail.Pid())
	}

	// The text form names the producer and the consumer.
	r := run(t, "stat", "--dir", dir, "cam")
	for _, want := range []string{fmt.Sprintf("pid %d, alive", capt.Pid()), "64x48 RGBA (AB24) @ 100 fps", "checksums on", strconv.Itoa(tail.Pid())} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("stat does not say %q:\n%s", want, r.Stdout)
		}
	}

	// SIGTERM ends the capture cleanly: the tail sees the end of the stream.
	capt.Signal(t, syscall.SIGTERM)
	if code := capt.Wait(t, 10*time.Second); code != 0 {
		t.Errorf("capture exit %d after SIGTERM:\n%s", code, capt.Stderr.String())
	}
	if code := tail.Wait(t, 10*time.Second); code != 0 {
		t.Errorf("tail exit %d:\n%s", code, tail.Stderr.String())
	}
	if out := strings.TrimSpace(tail.Stdout.String()); !strings.HasSuffix(out, "\nclosed") {
		t.Errorf("tail did not end with closed:\n...%s", out[max(0, len(out)-200):])
	}
}

func TestGCRemovesAKilledCapture(t *testing.T) {
	dir := t.TempDir()
	capt := startCapture(t, dir, "cam")
	capt.Signal(t, syscall.SIGKILL)
	capt.Wait(t, 10*time.Second)
	seg, lock := segment(dir, "cam"), segment(dir, "cam")+".lock"
	if !exists(seg) || !exists(lock) {
		t.Fatalf("a SIGKILLed capture should leave its segment and lock file")
	}
	if r := run(t, "ls", "--dir", dir); r.Code != 0 || !strings.Contains(r.Stdout, "gone (stale)") {
		t.Errorf("ls exit %d:\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := run(t, "stat", "cam", "--dir", dir); r.Code != 0 || !strings.Contains(r.Stdout, "gone") {
		t.Errorf("stat exit %d:\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	r := run(t, "gc", "--dir", dir)
	if r.Code != 0 {
		t.Fatalf("gc exit %d: %s", r.Code, r.Stderr)
	}
	for _, p := range []string{seg, lock} {
		if !strings.Contains(r.Stdout, "removed "+p+"\n") {
			t.Errorf("gc did not report removing %s:\n%s", p, r.Stdout)
		}
		if exists(p) {
			t.Errorf("%s is still there", p)
		}
	}
	if r := run(t, "gc", "--dir", dir); r.Code != 0 || r.Stdout != "" {
		t.Errorf("second gc: exit %d, %q", r.Code, r.Stdout)
	}
}

func TestGCLeavesALiveBus(t *testing.T) {
	dir := t.TempDir()
	startCapture(t, dir, "live")
	if r := run(t, "gc", "--dir", dir); r.Code != 0 || r.Stdout != "" {
		t.Errorf("gc exit %d removed %q", r.Code, r.Stdout)
	}
	if !exists(segment(dir, "live")) {
		t.Errorf("gc removed a live bus")
	}
	r := run(t, "rm", "live", "--dir", dir)
	if r.Code != 1 || !strings.Contains(r.Stderr, "live producer") || !strings.Contains(r.Stderr, "--force") {
		t.Errorf("rm of a live bus: exit %d: %s", r.Code, r.Stderr)
	}
	r = run(t, "capture", "--name", "live", "--size", "64x48", "--dir", dir)
	if r.Code != 1 || !strings.Contains(r.Stderr, "live producer") {
		t.Errorf("a second capture on the bus: exit %d: %s", r.Code, r.Stderr)
	}
	if r := run(t, "rm", "--force", "live", "--dir", dir); r.Code != 0 || !strings.Contains(r.Stdout, "removed bus live") {
		t.Errorf("rm --force: exit %d: %s%s", r.Code, r.Stdout, r.Stderr)
	}
}

// rm --force of a live bus says what happens next (it once left the
// reader to guess): the producer
// is alive and publishes the bus again, as the next generation, within its
// heartbeat interval; stopping the producer ends the bus. And it does.
func TestRmForceSaysTheProducerRepublishes(t *testing.T) {
	dir := t.TempDir()
	p := startCapture(t, dir, "live")
	r := run(t, "rm", "--force", "live", "--dir", dir)
	want := fmt.Sprintf("its producer (pid %d) is alive: it publishes bus live again, as generation 2, within its heartbeat interval", p.Cmd.Process.Pid)
	if r.Code != 0 || !strings.Contains(r.Stdout, "removed bus live\n") || !strings.Contains(r.Stdout, want) ||
		!strings.Contains(r.Stdout, "to end the bus, stop the producer") {
		t.Fatalf("rm --force of a live bus: exit %d, stdout %q, stderr %q; want %q", r.Code, r.Stdout, r.Stderr, want)
	}
	testutil.WaitFor(t, 5*time.Second, "the bus back as generation 2", func() bool {
		s, err := framebus.Inspect("live", dir)
		return err == nil && s.Header.Generation == 2 && s.OwnerAlive
	})
	// Stopping the producer is what ends the bus.
	if code := p.Stop(t); code != 0 {
		t.Fatalf("capture exit %d", code)
	}
	if exists(segment(dir, "live")) {
		t.Errorf("the bus is still there after its producer stopped")
	}
}

func TestBadInputs(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"capture", "--name", "x", "--source", "nope"}, `unknown source "nope"`},
		{[]string{"capture", "--name", "x", "--source", "file:clip.mp4"}, fileMissing},
		{[]string{"capture", "--name", "x", "--format", "NOPE1"}, `--format "NOPE1"`},
		{[]string{"capture", "--name", "x", "--format", "MJPEG"}, "the pattern makes"},
		{[]string{"capture", "--name", "x", "--size", "1920x"}, `--size "1920x"`},
		{[]string{"capture", "--name", "x", "--size", "0x0"}, `--size "0x0"`},
		{[]string{"capture", "--name", "x", "--size", "100000x100000"}, "larger than 16384x16384"},
		{[]string{"capture", "--name", "x", "--size", "641x480", "--format", "NV12"}, "even dimensions"},
		{[]string{"capture", "--name", "x", "--fps", "-5"}, "--fps"},
		{[]string{"capture", "--name", "x", "--slots", "1"}, "--slots"},
		{[]string{"capture", "--name", "x", "--mode", "0666"}, "world-writable"},
		{[]string{"capture", "--name", "x", "--mode", "0666", "--allow-world"}, "world-writable"},
		{[]string{"capture", "--name", "x", "--mode", "0644"}, "--allow-world"},
		{[]string{"capture", "--name", "x", "--mode", "0604"}, "--allow-world"},
		{[]string{"capture", "--name", "x", "--duration", "-1s"}, "--duration"},
		{[]string{"capture", "--name", "../x"}, "bad bus name"},
		{[]string{"capture", "--size", "64x48"}, "--name is required"},
		{[]string{"capture", "--name", "x", "--no-such-flag"}, "--no-such-flag"},
		{[]string{"stat"}, "NAME is required"},
		{[]string{"stat", "a", "b"}, "one bus NAME"},
		{[]string{"tail", "bad/name"}, "bad bus name"},
		{[]string{"ls", "extra"}, "unexpected argument"},
		{[]string{"nosuchcommand"}, "unknown command"},
		{[]string{"stat", "x", "--log-level", "loud"}, "--log-level"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			dir := t.TempDir()
			r := run(t, append(c.args, "--dir", dir)...)
			if r.Code != 2 {
				t.Errorf("exit %d, want 2; stderr: %s", r.Code, r.Stderr)
			}
			msg := strings.TrimRight(r.Stderr, "\n")
			if strings.Contains(msg, "\n") || !strings.Contains(msg, c.want) {
				t.Errorf("stderr %q: want one line saying %q", r.Stderr, c.want)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("a usage error left %d files in the bus directory", len(ents))
			}
		})
	}
}

// A bus directory too small for the frames: a private 1 MiB tmpfs (needs
// root and unshare, as on the CI machines; skipped elsewhere).
func TestCaptureNoSpace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("needs unshare")
	}
	dir, listing := t.TempDir(), filepath.Join(t.TempDir(), "ls")
	script := `mount -t tmpfs -o size=1m tmpfs "$1" || exit 99
"$2" capture --name big --size 640x480 --dir "$1"; rc=$?
ls -A "$1" > "$3"; exit $rc`
	cmd := exec.Command("unshare", "-m", "sh", "-c", script, "sh", dir, bin, listing)
	var se bytes.Buffer
	cmd.Stderr = &se
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	if code == 99 {
		t.Skipf("cannot mount a tmpfs here: %s", se.String())
	}
	msg := strings.TrimRight(se.String(), "\n")
	if code != 2 || strings.Contains(msg, "\n") {
		t.Fatalf("exit %d, stderr %q: want exit 2 and one line", code, se.String())
	}
	for _, want := range []string{"needs 2555904 bytes", "1048576", "--shm-size"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q does not say %q", msg, want)
		}
	}
	if b, _ := os.ReadFile(listing); len(b) != 0 {
		t.Errorf("the failed capture left files: %s", b)
	}
}

func TestMissingBus(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"stat", "nobus"}, {"dump", "nobus"}, {"rm", "nobus"}, {"tail", "nobus", "--timeout", "0"}, {"tail", "nobus", "--timeout", "200ms"},
	} {
		r := run(t, append(args, "--dir", dir)...)
		if r.Code != 1 || !strings.Contains(r.Stderr, `no bus "nobus"`) || strings.Count(r.Stderr, "\n") != 1 {
			t.Errorf("%q: exit %d, stderr %q; want exit 1 and one line", args, r.Code, r.Stderr)
		}
	}
	if r := run(t, "ls", "--dir", filepath.Join(dir, "missing")); r.Code != 1 {
		t.Errorf("ls of a missing directory: exit %d", r.Code)
	}
	if r := run(t, "ls", "--dir", dir, "--json"); r.Code != 0 || strings.TrimSpace(r.Stdout) != "[]" {
		t.Errorf("ls --json of an empty directory: exit %d %q", r.Code, r.Stdout)
	}
}

func TestCorruptSegment(t *testing.T) {
	dir := t.TempDir()
	// Not a framebus segment at all.
	if err := os.WriteFile(segment(dir, "junk"), bytes.Repeat([]byte("junk"), 1024), 0o600); err != nil {
		t.Fatal(err)
	}
	// A real segment (left by a killed capture) with slot_count 99.
	capt := startCapture(t, dir, "bad")
	capt.Signal(t, syscall.SIGKILL)
	capt.Wait(t, 10*time.Second)
	b, err := os.ReadFile(segment(dir, "bad"))
	if err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint32(b[132:], 99) // slot_count
	if err := os.WriteFile(segment(dir, "bad"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"junk": "magic", "bad": "slot_count"} {
		for _, args := range [][]string{{"stat", name}, {"tail", name, "--timeout", "0"}, {"stat", name, "--json"}} {
			r := run(t, append(args, "--dir", dir)...)
			if r.Code != 1 || !strings.Contains(r.Stderr, want) || strings.Count(r.Stderr, "\n") != 1 {
				t.Errorf("%q: exit %d, stderr %q; want exit 1 and one line about %s", args, r.Code, r.Stderr, want)
			}
		}
		r := run(t, "dump", name, "--dir", dir)
		if r.Code != 1 || !strings.Contains(r.Stderr, want) {
			t.Errorf("dump %s: exit %d, stderr %q", name, r.Code, r.Stderr)
		}
		for _, field := range []string{"magic", "slot_count", "consumers_reclaimed", "INVALID"} {
			if !strings.Contains(r.Stdout, field) {
				t.Errorf("dump %s does not print %s:\n%s", name, field, r.Stdout)
			}
		}
	}
	if r := run(t, "dump", "bad", "--dir", dir); !strings.Contains(r.Stdout, "132  slot_count              99") {
		t.Errorf("dump does not show the raw slot_count:\n%s", r.Stdout)
	}
	r := run(t, "ls", "--dir", dir)
	if r.Code != 0 || !strings.Contains(r.Stdout, "junk") || !strings.Contains(r.Stdout, "error:") {
		t.Errorf("ls: exit %d:\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
}

func TestDumpOfALiveBus(t *testing.T) {
	dir := t.TempDir()
	startCapture(t, dir, "cam", "--format", "I420")
	r := run(t, "dump", "cam", "--dir", dir)
	if r.Code != 0 {
		t.Fatalf("dump exit %d: %s", r.Code, r.Stderr)
	}
	for _, want := range []string{"0    magic                   0x53554246", `"FBUS", ok`, "I420 (YU12)", "slots (section 3.4)", "alive (holds the lock)"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("dump does not say %q:\n%s", want, r.Stdout)
		}
	}
}

func TestFlagsAnywhere(t *testing.T) {
	dir := t.TempDir()
	startCapture(t, dir, "cam")
	for _, args := range [][]string{
		{"stat", "cam", "--json", "--dir", dir},
		{"stat", "--json", "cam", "--dir", dir},
		{"stat", "--dir", dir, "--json", "--", "cam"},
		{"--log-level", "warn", "stat", "--dir", dir, "cam", "--json"},
	} {
		r := run(t, args...)
		var st map[string]any
		if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &st) != nil || st["name"] != "cam" {
			t.Errorf("%q: exit %d, %s%s", args, r.Code, r.Stdout, r.Stderr)
		}
	}
	r := run(t, "tail", "cam", "--duration", "300ms", "--json", "--dir", dir)
	if r.Code != 0 {
		t.Fatalf("tail exit %d: %s", r.Code, r.Stderr)
	}
	sc := bufio.NewScanner(strings.NewReader(r.Stdout))
	n := 0
	for sc.Scan() {
		var l map[string]any
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil || l["seq"] == nil || l["commit_to_wake_us"] == nil {
			t.Fatalf("tail --json line %q: %v", sc.Text(), err)
		}
		n++
	}
	if n == 0 {
		t.Errorf("tail --duration 300ms printed no frames")
	}
}

func TestHelp(t *testing.T) {
	r := run(t, "--help")
	if r.Code != 0 {
		t.Fatalf("--help exit %d", r.Code)
	}
	cmds := []string{"capture", "tail", "stat", "ls", "rm", "gc", "dump"}
	for _, c := range cmds {
		if !strings.Contains(r.Stdout, "\n  "+c+" ") {
			t.Errorf("--help does not list %s:\n%s", c, r.Stdout)
		}
		h := run(t, c, "--help")
		if h.Code != 0 || !strings.Contains(h.Stdout, "Usage: framebus "+c) || !strings.Contains(h.Stdout, "Examples:\n  framebus "+c) {
			t.Errorf("%s --help: exit %d:\n%s", c, h.Code, h.Stdout)
		}
	}
	if r := run(t, "help", "stat"); r.Code != 0 || !strings.Contains(r.Stdout, "Usage: framebus stat") {
		t.Errorf("help stat: exit %d", r.Code)
	}
	if r := run(t); r.Code != 2 || !strings.Contains(r.Stderr, "Commands:") {
		t.Errorf("no arguments: exit %d", r.Code)
	}
}

func TestJSONLogs(t *testing.T) {
	dir := t.TempDir()
	r := run(t, "capture", "--name", "j", "--size", "64x48", "--duration", "300ms", "--log-format", "json", "--dir", dir)
	if r.Code != 0 {
		t.Fatalf("exit %d: %s", r.Code, r.Stderr)
	}
	sc := bufio.NewScanner(strings.NewReader(r.Stderr))
	msgs := map[string]bool{}
	for sc.Scan() {
		var l map[string]any
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("log line %q is not JSON: %v", sc.Text(), err)
		}
		msgs[fmt.Sprint(l["message"])] = true
	}
	if !msgs["publishing"] || !msgs["closed the bus"] {
		t.Errorf("log messages %v", msgs)
	}
	// An error is a JSON line too.
	r = run(t, "stat", "nobus", "--log-format", "json", "--dir", dir)
	var l map[string]any
	if r.Code != 1 || json.Unmarshal([]byte(r.Stderr), &l) != nil || l["level"] != "error" {
		t.Errorf("stat error with JSON logs: exit %d, %q", r.Code, r.Stderr)
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
