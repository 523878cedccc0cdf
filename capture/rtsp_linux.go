package capture

import "syscall"

// childAttr makes a child process die with the producer, however the
// producer dies (kill -9 included): an orphaned ffmpeg would keep the
// camera's stream open.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
