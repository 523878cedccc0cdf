package cli

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal: the master (to read what is written)
// and the slave (a terminal to write to).
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	var unlock int32
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, m.Fd(), unix.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		t.Fatal(e)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); m.Close() })
	return m, s
}

// The console log is in colour on a terminal, and not with NO_COLOR set
// or on a file.
func TestLogColours(t *testing.T) {
	master, slave := openPTY(t)
	logLine := func(w *os.File) {
		o := LogOptions{Format: "auto", Level: "info"}
		l, err := o.Logger(w)
		if err != nil {
			t.Fatal(err)
		}
		l.Info().Str("bus", "cam0").Msg("hello")
	}
	read := func() string {
		master.SetReadDeadline(time.Now().Add(2 * time.Second))
		b := make([]byte, 4096)
		n, _ := master.Read(b)
		return string(b[:n])
	}
	if !IsTerminal(slave) {
		t.Fatal("the pty's slave is not a terminal")
	}
	t.Setenv("NO_COLOR", "")
	logLine(slave)
	if out := read(); !strings.Contains(out, "\x1b[") || !strings.Contains(out, "hello") {
		t.Errorf("no colour on a terminal: %q", out)
	}
	t.Setenv("NO_COLOR", "1")
	logLine(slave)
	if out := read(); strings.Contains(out, "\x1b[") || !strings.Contains(out, "hello") {
		t.Errorf("colour with NO_COLOR=1: %q", out)
	}
	os.Unsetenv("NO_COLOR")
	f, err := os.Create(t.TempDir() + "/log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	logLine(f)
	b, _ := os.ReadFile(f.Name())
	if strings.Contains(string(b), "\x1b[") || !strings.Contains(string(b), "hello") {
		t.Errorf("colour in a file: %q", b)
	}
}
