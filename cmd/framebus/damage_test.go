package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/framebus/framebus/framebus"

	"github.com/framebus/framebus/internal/testutil"
)

// startStdin is start with the process's stdin read from the returned
// writer (a pipe the test keeps open: the source stays idle until the test
// writes).
func startStdin(t *testing.T, args ...string) (*proc, io.WriteCloser) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdin = r
	p := testutil.Start(t, cmd)
	r.Close()
	t.Cleanup(func() { w.Close() }) // (before the kill: cleanups run last first)
	return p, w
}

// A capture whose source is idle (stdin with nothing written after the
// stream's header) keeps the back slot lent out while it waits. Its bus
// truncated to 0 bytes, or removed with rm --force, is replaced by a new
// generation at the producer's next heartbeat all the same: before, the file
// stayed 0 bytes (or absent) until the source's next frame, and new
// consumers were told to wait for a producer that was alive. The capture
// logs what happened; a tail that was reading follows, and gets the frame
// written into the slot lent out before the damage.
func TestCaptureIdleReplacesDamagedBus(t *testing.T) {
	dir, name := t.TempDir(), fmt.Sprintf("idle%d", os.Getpid())
	const hb = 100 * time.Millisecond // the producer's default heartbeat
	const w, h = 64, 48
	frameSize := w * h * 3 / 2
	capt, stdin := startStdin(t, "capture", "--name", name, "--source", "stdin", "--dir", dir)
	if _, err := fmt.Fprintf(stdin, "YUV4MPEG2 W%d H%d F30:1 C420jpeg\n", w, h); err != nil {
		t.Fatal(err)
	}
	path := segment(dir, name)
	testutil.WaitFor(t, 10*time.Second, "the bus", func() bool { return exists(path) })
	tail := start(t, "tail", name, "--dir", dir, "--timeout", "60s")
	testutil.WaitFor(t, 10*time.Second, "tail to join", func() bool {
		s, err := framebus.Inspect(name, dir)
		return err == nil && len(s.Consumers) == 1
	})

	frames := 0
	for i, c := range []struct {
		what   string
		damage func()
		logged string
	}{
		{"truncated to 0", func() {
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
		}, "truncated to 0 bytes"},
		{"rm --force", func() {
			if r := run(t, "rm", "--force", name, "--dir", dir); r.Code != 0 {
				t.Fatalf("rm --force: exit %d\n%s", r.Code, r.Stderr)
			}
		}, "name removed"},
	} {
		gen := uint64(i + 1)
		c.damage()
		at := time.Now()
		// Two heartbeat intervals nominally; generous for a loaded machine.
		testutil.WaitFor(t, 20*hb, fmt.Sprintf("generation %d after %s (capture's log:\n%s)", gen+1, c.what, capt.Stderr.String()), func() bool {
			s, err := framebus.Inspect(name, dir)
			return err == nil && s.Header.Generation == gen+1 && s.Header.State == framebus.StateReady
		})
		t.Logf("%s: generation %d published %v later (heartbeat %v)", c.what, gen+1, time.Since(at).Round(time.Millisecond), hb)
		// A new consumer joins it at once.
		if r := run(t, "tail", name, "--dir", dir, "--timeout", "0", "--duration", "300ms"); r.Code != 0 || strings.Contains(r.Stderr, "waiting") {
			t.Errorf("after %s a new consumer could not join (exit %d):\n%s", c.what, r.Code, r.Stderr)
		}
		// The source's next frame goes into the slot lent out before the
		// damage (lost if that was a truncation: the write faults), then
		// into the new generation; the reading tail follows it.
		want := fmt.Sprintf("new_generation=%d", gen+1)
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(tail.Stdout.String(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("tail read no frame of generation %d after %s; tail:\n%s%s\ncapture:\n%s", gen+1, c.what, tail.Stdout.String(), tail.Stderr.String(), capt.Stderr.String())
			}
			if _, err := fmt.Fprintf(stdin, "FRAME\n%s", strings.Repeat("\x80", frameSize)); err != nil {
				t.Fatal(err)
			}
			frames++
			time.Sleep(300 * time.Millisecond)
		}
		if log := capt.Stderr.String(); !strings.Contains(log, "damaged from outside") || !strings.Contains(log, c.logged) {
			t.Errorf("after %s capture did not log the damage (%q):\n%s", c.what, c.logged, log)
		}
	}
	stdin.Close()
	if code := capt.Wait(t, 10*time.Second); code != 0 {
		t.Fatalf("capture exit %d:\n%s", code, capt.Stderr.String())
	}
	tail.Wait(t, 10*time.Second)
	t.Logf("capture:\n%s\ntail:\n%s%s", capt.Stderr.String(), tail.Stdout.String(), tail.Stderr.String())
	if got := checkTailFrames(t, tail.Stdout.String(), frameSize); got < 1 {
		t.Errorf("tail read %d frames, want at least 1 of the %d written", got, frames)
	}
}

// --mode 0644 makes a bus every user can read only with --allow-world, and
// then with a warning (without, TestBadInputs: a usage error).
func TestCaptureAllowWorld(t *testing.T) {
	dir, name := t.TempDir(), fmt.Sprintf("world%d", os.Getpid())
	r := run(t, "capture", "--name", name, "--size", "64x48", "--fps", "100", "--duration", "200ms", "--mode", "0644", "--allow-world", "--dir", dir)
	if r.Code != 0 || !strings.Contains(r.Stderr, "WRN") || !strings.Contains(r.Stderr, "every user of the machine can read") {
		t.Fatalf("capture --mode 0644 --allow-world: exit %d, want 0 and a warning:\n%s", r.Code, r.Stderr)
	}
}

// framebus gc removes only what it proves is framebus's: a stale bus (its
// magic; its empty lock file) and an abandoned temporary file of a creation,
// never a file that merely has a framebus.* name.
func TestGCLeavesForeignFiles(t *testing.T) {
	dir := t.TempDir()
	// A stale bus: a capture killed.
	capt := startCapture(t, dir, "stale")
	capt.Signal(t, syscall.SIGKILL)
	capt.Wait(t, 10*time.Second)
	keep := map[string][]byte{
		"framebus.notabus":         []byte("my notes, not a bus\n"),
		"framebus.notabus2":        nil, // empty, no lock file beside it
		"framebus.notes.lock":      []byte("not a lock file\n"),
		"framebus.x.tmp-1":         []byte("not a temporary file of a creation\n"),
		"framebus.y.tmp-notapid":   make([]byte, 4096),
		"framebus.z.tmp-2":         append([]byte("text"), make([]byte, 4092)...),
		"framebus.stale2.lock.bak": []byte("x"),
	}
	for f, b := range keep {
		if err := os.WriteFile(dir+"/"+f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// An abandoned creation's temporary file (pages of zeros, no lock).
	if err := os.WriteFile(dir+"/framebus.w.tmp-1", make([]byte, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	r := run(t, "gc", "--dir", dir)
	if r.Code != 0 {
		t.Fatalf("gc: exit %d\n%s", r.Code, r.Stderr)
	}
	for _, f := range []string{"framebus.stale", "framebus.stale.lock", "framebus.w.tmp-1"} {
		if exists(dir + "/" + f) {
			t.Errorf("gc left %s:\n%s%s", f, r.Stdout, r.Stderr)
		}
	}
	for f, b := range keep {
		got, err := os.ReadFile(dir + "/" + f)
		if err != nil || string(got) != string(b) {
			t.Errorf("gc removed or changed %s (%v):\n%s%s", f, err, r.Stdout, r.Stderr)
		}
	}
}
