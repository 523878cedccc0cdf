//go:build !linux

package capture

import "syscall"

// childAttr: other systems have no parent-death signal; the child ends when
// its output pipe closes.
func childAttr() *syscall.SysProcAttr { return nil }
