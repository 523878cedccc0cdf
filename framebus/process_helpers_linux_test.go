package framebus_test

import (
	"errors"
	"os/exec"
	"syscall"
)

// childRoles are the roles this test binary runs as a child (TestMain).
var childRoles = map[string]func(args []string) error{
	"portable-producer": portableProducer, // portable_test.go
	"portable-consumer": portableConsumer,
	"wake-framebus":     func(args []string) error { return wakeChild("framebus", args) }, // wake_bench_test.go
	"wake-futex":        func(args []string) error { return wakeChild("futex", args) },
}

// setChildAttrs makes the child die with the test binary (a -timeout panic
// must not leave it running: Pdeathsig, which Go sets after the credential
// change) and, with u, run as another user.
func setChildAttrs(cmd *exec.Cmd, u *childUser) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if u != nil {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: u.uid, Gid: u.gid, Groups: []uint32{}}
	}
}

// processGone reports whether no process has the pid.
func processGone(pid int) bool { return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) }
