package framebus_test

import (
	"os/exec"
)

// childRoles are the roles this test binary runs as a child (TestMain).
var childRoles = map[string]func(args []string) error{
	"portable-producer": portableProducer, // portable_test.go
	"portable-consumer": portableConsumer,
}

// setChildAttrs: a child on Windows runs as this user, and the tests end
// their children themselves.
func setChildAttrs(cmd *exec.Cmd, u *childUser) {
	if u != nil {
		panic("childOpts.user is for Linux")
	}
}

// processGone is never asked on Windows: fbproc is built on Linux only.
func processGone(pid int) bool { return false }
