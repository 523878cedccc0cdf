package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/framebus/framebus/internal/testutil"
)

// listDir is what is left in a bus directory.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// SIGHUP (the terminal or the session going away) ends every command
// through its clean path, as SIGINT and SIGTERM do: capture closes the bus
// (its consumers see the end of the stream, nothing is left in the
// directory), the consumers and stat --watch exit 0.
func TestSIGHUPEndsEveryCommandCleanly(t *testing.T) {
	dir := t.TempDir()
	capt := startCapture(t, dir, "hup")
	tail := start(t, "tail", "hup", "--dir", dir)
	testutil.WaitFor(t, 10*time.Second, "tail's frames", func() bool { return strings.Contains(tail.Stdout.String(), "seq=") })
	watch := start(t, "stat", "hup", "--watch", "--dir", dir)
	testutil.WaitFor(t, 10*time.Second, "stat --watch's output", func() bool { return strings.Contains(watch.Stdout.String(), "generation") })
	procs := map[string]*proc{"stat --watch": watch}
	if hasOpenCV {
		v, _ := startViewHTTP(t, dir, "hup")
		procs["view --http"] = v
		an := start(t, "analyze", "hup", "--detect", "motion", "--dir", dir)
		testutil.WaitFor(t, 20*time.Second, "analyze's results", func() bool { return strings.Contains(an.Stdout.String(), `"seq"`) })
		procs["analyze"] = an
	}
	for what, p := range procs {
		p.Signal(t, syscall.SIGHUP)
		if code := p.Wait(t, 15*time.Second); code != 0 {
			t.Errorf("%s after SIGHUP: exit %d:\n%s", what, code, p.Stderr.String())
		}
	}
	capt.Signal(t, syscall.SIGHUP)
	if code := capt.Wait(t, 15*time.Second); code != 0 {
		t.Fatalf("capture after SIGHUP: exit %d:\n%s", code, capt.Stderr.String())
	}
	if code := tail.Wait(t, 15*time.Second); code != 0 || !strings.HasSuffix(tail.Stdout.String(), "closed\n") {
		t.Errorf("tail after the capture's SIGHUP: exit %d, output ends %q: want the end of the stream", code, lastLine(tail.Stdout.String()))
	}
	if left := listDir(t, dir); len(left) != 0 {
		t.Errorf("left in the bus directory after SIGHUP: %q", left)
	}
	t2 := start(t, "tail", "hup", "--dir", dir, "--timeout", "10s")
	// Its handlers are in place once it says it waits (before that the Go
	// runtime would die of the SIGHUP as any program does).
	testutil.WaitFor(t, 10*time.Second, "tail to wait for a producer", func() bool {
		return strings.Contains(t2.Stderr.String(), "waiting for producer")
	})
	t2.Signal(t, syscall.SIGHUP)
	if code := t2.Wait(t, 15*time.Second); code != 0 {
		t.Errorf("tail waiting for a producer, after SIGHUP: exit %d:\n%s", code, t2.Stderr.String())
	}
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	return s[strings.LastIndex(s, "\n")+1:]
}

// A signal while a large bus is being created (3840x2160 RGBA in 8 slots,
// 265 MB pre-faulted page by page) removes what the creation made: no
// temporary file, no lock file, no segment; the command exits 0.
func TestSignalDuringCreation(t *testing.T) {
	hit := 0
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP} {
		dir, err := os.MkdirTemp("/dev/shm", "framebus-sigcreate-")
		if err != nil {
			t.Skip("no /dev/shm:", err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		p := start(t, "capture", "--name", "big", "--size", "3840x2160", "--format", "RGBA", "--slots", "8", "--dir", dir)
		testutil.WaitFor(t, 20*time.Second, "the temporary file", func() bool {
			for _, n := range listDir(t, dir) {
				if strings.Contains(n, ".tmp-") {
					return true
				}
			}
			return !p.Running()
		})
		p.Signal(t, sig)
		if code := p.Wait(t, 20*time.Second); code != 0 {
			t.Errorf("%v during creation: exit %d:\n%s", sig, code, p.Stderr.String())
		}
		if strings.Contains(p.Stderr.String(), "interrupted while creating") {
			hit++
		}
		if left := listDir(t, dir); len(left) != 0 {
			t.Errorf("%v during creation left %q", sig, left)
		}
	}
	t.Logf("%d of 3 signals came while the bus was being created (the others once it was)", hit)
}

// The bus directory is full when the name is removed from outside (as
// systemd's RemoveIPC does): capture cannot make the new generation, so it
// goes on publishing into the segment it has mapped (its consumer keeps
// getting frames), says why, and makes the new generation as soon as there
// is room, which the consumer follows.
func TestFullDirectoryCarriesOn(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=24m,mode=0700"); err != nil {
		t.Skip("cannot mount a tmpfs:", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	// 1280x720 RGBA: 3.7 MB a frame, two slots in a 7.5 MB segment (and 64 KiB of control block).
	capt := start(t, "capture", "--name", "full", "--size", "1280x720", "--fps", "50", "--dir", dir)
	testutil.WaitFor(t, 10*time.Second, "the bus", func() bool { return exists(segment(dir, "full")) })
	tail := start(t, "tail", "full", "--json", "--dir", dir)
	testutil.WaitFor(t, 10*time.Second, "tail's frames", func() bool { return strings.Count(tail.Stdout.String(), "\n") >= 5 })
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 10<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(segment(dir, "full")); err != nil { // 24 - 10 - 7.6 MB: no room for another
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "capture to say it cannot make the new generation", func() bool {
		return strings.Contains(capt.Stderr.String(), "not enough space")
	})
	before := strings.Count(tail.Stdout.String(), "\n")
	testutil.WaitFor(t, 10*time.Second, "frames in the old segment meanwhile", func() bool {
		return strings.Count(tail.Stdout.String(), "\n") >= before+10
	})
	if !capt.Running() {
		t.Fatalf("capture ended:\n%s", capt.Stderr.String())
	}
	os.Remove(filler)
	testutil.WaitFor(t, 10*time.Second, "the new generation, followed by tail", func() bool {
		return exists(segment(dir, "full")) && strings.Contains(tail.Stdout.String(), `"new_generation":true`)
	})
	capt.Signal(t, syscall.SIGTERM)
	if code := capt.Wait(t, 15*time.Second); code != 0 {
		t.Fatalf("capture: exit %d:\n%s", code, capt.Stderr.String())
	}
	if code := tail.Wait(t, 15*time.Second); code != 0 {
		t.Fatalf("tail: exit %d:\n%s", code, tail.Stderr.String())
	}
}
