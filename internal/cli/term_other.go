//go:build !linux

package cli

import "os"

// IsTerminal reports whether f is a terminal (never, off Linux: the commands
// are for Linux).
func IsTerminal(f *os.File) bool { return false }
