//go:build windows

package framebus

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"golang.org/x/sys/windows"
	"io/fs"
)

// Security descriptors and errors of the Windows objects.

// winErr maps a Windows error on object name to framebus's typed errors.
func winErr(op, name string, global bool, err error) error {
	var errno windows.Errno
	if !errors.As(err, &errno) {
		return &os.PathError{Op: op, Path: name, Err: err}
	}
	switch errno {
	case windows.ERROR_FILE_NOT_FOUND, windows.ERROR_PATH_NOT_FOUND:
		return fmt.Errorf("%w: %s does not exist", ErrNotFound, name)
	case windows.ERROR_ACCESS_DENIED, windows.ERROR_PRIVILEGE_NOT_HELD:
		if global && op == "create" && !hasGlobalPrivilege() {
			return &PrivilegeError{Privilege: "SeCreateGlobalPrivilege", Object: name, Err: err}
		}
		return &PermissionError{Path: name, Err: err}
	case windows.ERROR_INVALID_HANDLE:
		// The name exists as another kind of object.
		return fmt.Errorf("%w: %s exists and is not a framebus object", ErrUnsafePath, name)
	case windows.ERROR_COMMITMENT_LIMIT, windows.ERROR_NOT_ENOUGH_MEMORY, windows.ERROR_OUTOFMEMORY, windows.ERROR_DISK_FULL:
		return fmt.Errorf("%w: %s: %v", ErrNoSpace, name, err)
	}
	return &os.PathError{Op: op, Path: name, Err: err}
}

// hasGlobalPrivilege reports whether the process token holds
// SeCreateGlobalPrivilege, enabled: creating a file mapping in Global\ from
// an ordinary session needs it.
func hasGlobalPrivilege() bool {
	var luid windows.LUID
	if err := windows.LookupPrivilegeValue(nil, windows.StringToUTF16Ptr("SeCreateGlobalPrivilege"), &luid); err != nil {
		return false
	}
	var tok windows.Token
	if err := windows.OpenProcessToken(windows.CurrentProcess(), windows.TOKEN_QUERY, &tok); err != nil {
		return false
	}
	defer tok.Close()
	ps := privilegeSet{PrivilegeCount: 1, Control: 1 /* PRIVILEGE_SET_ALL_NECESSARY */}
	ps.Privilege[0] = luidAndAttributes{LowPart: luid.LowPart, HighPart: luid.HighPart}
	var ok int32
	if err := privilegeCheck(tok, &ps, &ok); err != nil {
		return false
	}
	return ok != 0
}

var sdCache struct {
	sync.Mutex
	m map[[2]int]*windows.SecurityAttributes
}

var groupSIDs struct {
	sync.Mutex
	list []string // gid n (from groupID) is list[n]
}

// securityFor builds the security descriptor of mode: the owner gets full
// access; group bits grant the group gid (from groupID; -1: the token's
// primary group) full (rw) or read access; an other-read bit grants Everyone
// read. The default 0600 is owner-only. Never world-writable (refused by the
// option check before).
func securityFor(mode fs.FileMode, gid int) (*windows.SecurityAttributes, error) {
	key := [2]int{int(mode.Perm()), gid}
	sdCache.Lock()
	defer sdCache.Unlock()
	if sa := sdCache.m[key]; sa != nil {
		return sa, nil
	}
	tok := windows.GetCurrentProcessToken()
	user, err := tok.GetTokenUser()
	if err != nil {
		return nil, fmt.Errorf("framebus: reading the process token: %w", err)
	}
	sddl := "D:P(A;;GA;;;" + user.User.Sid.String() + ")"
	if g := mode.Perm() & 0o070; g != 0 {
		var gs string
		if gid >= 0 {
			groupSIDs.Lock()
			if gid < len(groupSIDs.list) {
				gs = groupSIDs.list[gid]
			}
			groupSIDs.Unlock()
		}
		if gs == "" {
			pg, err := tok.GetTokenPrimaryGroup()
			if err != nil {
				return nil, fmt.Errorf("framebus: reading the process token: %w", err)
			}
			gs = pg.PrimaryGroup.String()
		}
		access := "GR"
		if g&0o020 != 0 {
			access = "GA"
		}
		sddl += "(A;;" + access + ";;;" + gs + ")"
	}
	if mode.Perm()&0o004 != 0 {
		sddl += "(A;;GR;;;WD)"
	}
	sd, err := windows.SecurityDescriptorFromString(sddl)
	if err != nil {
		return nil, fmt.Errorf("framebus: security descriptor %q: %w", sddl, err)
	}
	sa := &windows.SecurityAttributes{SecurityDescriptor: sd}
	sa.Length = uint32(sizeofSecurityAttributes)
	if sdCache.m == nil {
		sdCache.m = map[[2]int]*windows.SecurityAttributes{}
	}
	sdCache.m[key] = sa
	return sa, nil
}

// groupID resolves a group name or SID string ("S-1-5-...") to a handle for
// securityFor; "" means none (-1).
func groupID(g string) (int, error) {
	if g == "" {
		return -1, nil
	}
	var sid *windows.SID
	var err error
	if strings.HasPrefix(strings.ToUpper(g), "S-") {
		sid, err = windows.StringToSid(g)
	} else {
		sid, _, _, err = windows.LookupSID("", g)
	}
	if err != nil {
		return -1, fmt.Errorf("%w: unknown group %q: %v", ErrBadOptions, g, err)
	}
	groupSIDs.Lock()
	defer groupSIDs.Unlock()
	groupSIDs.list = append(groupSIDs.list, sid.String())
	return len(groupSIDs.list) - 1, nil
}

// inheritedSecurity gives the objects a consumer creates for a generation
// (its entry mutex, its semaphore) the generation mapping's own DACL, so that
// a producer of another user allowed on the bus can open them.
func inheritedSecurity(h windows.Handle) *windows.SecurityAttributes {
	sd, err := windows.GetSecurityInfo(h, windows.SE_KERNEL_OBJECT, windows.DACL_SECURITY_INFORMATION)
	if err != nil {
		sa, _ := securityFor(0o600, -1)
		return sa
	}
	sa := &windows.SecurityAttributes{SecurityDescriptor: sd}
	sa.Length = uint32(sizeofSecurityAttributes)
	return sa
}
