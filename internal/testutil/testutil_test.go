//go:build unix

package testutil

import (
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestProc(t *testing.T) {
	p := Start(t, Command([]string{"X=from-env"}, "sh", "-c", `echo "$X"; echo oops >&2; exit 3`))
	if code := p.Wait(t, 10*time.Second); code != 3 || strings.TrimSpace(p.Stdout.String()) != "from-env" || !strings.Contains(p.Stderr.String(), "oops") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, p.Stdout.String(), p.Stderr.String())
	}
	s := Start(t, exec.Command("sleep", "60"))
	if !s.Running() {
		t.Fatal("sleep is not running")
	}
	s.Signal(t, syscall.SIGTERM)
	if code := s.Wait(t, 10*time.Second); code != -int(syscall.SIGTERM) {
		t.Fatalf("killed by SIGTERM: code %d", code)
	}
}

func TestWaitForAndBuffer(t *testing.T) {
	n := 0
	WaitFor(t, time.Second, "three polls", func() bool { n++; return n == 3 })
	if Within(10*time.Millisecond, func() bool { return false }) {
		t.Fatal("Within: a condition that never holds held")
	}
	b := Buffer{Max: 4}
	if n, err := b.Write([]byte("abcdef")); n != 6 || err != nil || b.String() != "abcd" || b.Len() != 4 {
		t.Fatalf("Max 4: wrote %d %v, kept %q", n, err, b.String())
	}
}
