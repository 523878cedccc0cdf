//go:build linux

package framebus_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/framebus/framebus/framebus"
)

// Guard turns a memory fault into a *FaultError (ErrCorrupt), and only
// that: any other panic, a nil dereference included, goes on as a panic.
func TestGuardRecoversOnlyFaults(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mapped")
	if err := os.WriteFile(path, make([]byte, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mem, err := unix.Mmap(int(f.Fd()), 0, 8192, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	if err := f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	err = framebus.Guard(func() { mem[4096] = 1 })
	var fe *framebus.FaultError
	if !errors.As(err, &fe) || !errors.Is(err, framebus.ErrCorrupt) || fe.Addr == 0 {
		t.Fatalf("a write past the end of a truncated mapping: %v, want a *FaultError", err)
	}
	for _, c := range []struct {
		what string
		fn   func()
	}{
		{"a panic", func() { panic("not a fault") }},
		{"a nil dereference", func() { var p *int; _ = *p }},
		{"an index out of range", func() { _ = mem[len(mem)+1:] }},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s inside Guard did not go on as a panic", c.what)
				}
			}()
			err := framebus.Guard(c.fn)
			t.Errorf("%s inside Guard returned %v", c.what, err)
		}()
	}
}
