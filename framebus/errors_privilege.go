package framebus

import (
	"fmt"
	"os"
)

// PrivilegeError is a refusal for want of a privilege: on Windows, creating a
// bus in the Global\ namespace needs SeCreateGlobalPrivilege (services and
// elevated administrators have it; ordinary sessions do not). It wraps
// ErrPermission.
type PrivilegeError struct {
	Privilege string // "SeCreateGlobalPrivilege"
	Object    string // the object that could not be created
	Err       error  // the system's error
}

func (e *PrivilegeError) Error() string {
	return fmt.Sprintf("permission denied: creating %s needs %s, which this process does not hold (run as a service or elevated, or use the Local\\ namespace): %v", e.Object, e.Privilege, e.Err)
}
func (e *PrivilegeError) Unwrap() []error { return []error{ErrPermission, os.ErrPermission} }
