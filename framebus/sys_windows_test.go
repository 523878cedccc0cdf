package framebus

import (
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/windows"
)

func TestWindowsObjectNames(t *testing.T) {
	for _, c := range []struct{ dir, want string }{
		{"", `Local\framebus.cam0`},
		{`Local\`, `Local\framebus.cam0`},
		{`local`, `Local\framebus.cam0`},
		{`Global\`, `Global\framebus.cam0`},
		{`Global`, `Global\framebus.cam0`},
	} {
		o, kind, err := parsePath(SegmentPath(c.dir, "cam0"))
		if err != nil || kind != pathSegment || o.indexName() != c.want {
			t.Errorf("dir %q: %q, kind %d, %v; want %q", c.dir, o.indexName(), kind, err, c.want)
		}
		if (c.want[0] == 'G') != o.global {
			t.Errorf("dir %q: global %v", c.dir, o.global)
		}
	}
	o, kind, _ := parsePath(LockPath(`Local\`, "cam0"))
	if kind != pathLock || o.ownerName() != `Local\framebus.cam0.owner` {
		t.Errorf("lock path: %q, kind %d", o.ownerName(), kind)
	}
	if got := o.entryName(3, 7); got != `Local\framebus.cam0.g3.c7` {
		t.Errorf("entry mutex %q", got)
	}
	if got := o.semName(3, 7); got != `Local\framebus.cam0.g3.s7` {
		t.Errorf("semaphore %q", got)
	}
	if got := o.genName(12); got != `Local\framebus.cam0.g12` {
		t.Errorf("generation %q", got)
	}
	// Any other directory is a private scope of Local\, the same for the
	// same directory and different for another.
	a, _, _ := parsePath(SegmentPath(`C:\x\y`, "cam0"))
	b, _, _ := parsePath(SegmentPath(`C:\x\y\`, "cam0"))
	c, _, _ := parsePath(SegmentPath(`C:\x\z`, "cam0"))
	if !strings.HasPrefix(a.base, `Local\framebus-`) || !strings.HasSuffix(a.base, ".cam0") || a.base != b.base || a.base == c.base {
		t.Errorf("scopes: %q %q %q", a.base, b.base, c.base)
	}
	if _, _, err := parsePath(`Local\framebus.a\b`); err == nil {
		t.Error("a backslash in a name was accepted")
	}
}

// The objects of a bus are owner-only by default: one ACE, for this user,
// in a protected DACL.
func TestWindowsOwnerOnlyDACL(t *testing.T) {
	dir := portableDir(t)
	p := portableCreate(t, dir, "acl", nil)
	c := portableOpen(t, dir, "acl")
	user, err := windows.GetCurrentProcessToken().GetTokenUser()
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, h windows.Handle) {
		sd, err := windows.GetSecurityInfo(h, windows.SE_KERNEL_OBJECT, windows.DACL_SECURITY_INFORMATION)
		if err != nil {
			t.Fatalf("%s: GetSecurityInfo: %v", what, err)
		}
		s := sd.String()
		want := "(A;;" // one allow ACE ...
		if strings.Count(s, want) != 1 || !strings.Contains(s, user.User.Sid.String()) {
			t.Errorf("%s: DACL %s; want one ACE, for %s", what, s, user.User.Sid)
		}
	}
	check("generation mapping", p.seg.f.sec)
	check("index mapping", p.seg.f.idx.h)
	check("owner mutex", p.lock.mtx)
	c.seg.f.mu.Lock()
	m := c.seg.f.mutexes[c.seg.e.index]
	c.seg.f.mu.Unlock()
	check("entry mutex", m)
}

// Global\ needs SeCreateGlobalPrivilege for the mappings: either the bus is
// created, or the error says which privilege is missing.
func TestWindowsGlobalNamespace(t *testing.T) {
	name := "global-" + itoa(os.Getpid())
	p, err := Create(name, ProducerOptions{Format: portableFormat, Dir: `Global\`})
	var pe *PrivilegeError
	switch {
	case err == nil:
		t.Logf("created %s in Global\\ (privilege held: %v)", name, hasGlobalPrivilege())
		p.Close()
	case errors.As(err, &pe):
		if !errors.Is(err, ErrPermission) || pe.Privilege != "SeCreateGlobalPrivilege" {
			t.Fatalf("%v: not a permission error naming SeCreateGlobalPrivilege", err)
		}
		t.Logf("refused as expected: %v", err)
	default:
		t.Fatalf("Create in Global\\: %v", err)
	}
	// The error itself, as an ordinary session gets it.
	err = winErr("create", `Global\framebus.x.g1`, true, windows.ERROR_ACCESS_DENIED)
	if !hasGlobalPrivilege() {
		if !errors.As(err, &pe) || !errors.Is(err, os.ErrPermission) || !strings.Contains(err.Error(), "SeCreateGlobalPrivilege") {
			t.Errorf("access denied in Global\\ without the privilege: %v", err)
		}
	} else if !errors.Is(err, ErrPermission) {
		t.Errorf("access denied in Global\\: %v", err)
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}
