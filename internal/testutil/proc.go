//go:build unix

package testutil

import (
	"errors"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Proc is a child process of a test: started by Start, its output kept
// in buffers the test may read while it runs, its end waited for with a
// bound, killed by pid when the test ends, its stderr shown when the test
// failed.
type Proc struct {
	Cmd            *exec.Cmd
	Stdout, Stderr Buffer // what the process wrote (unless Cmd had writers of its own)
	Code           int    // the exit code once Done is closed; -N for signal N
	Err            error  // Cmd.Wait's error once Done is closed (nil for exit 0)

	done chan struct{}
}

// Command is exec.Command with env added to the environment (nil: the
// test's own).
func Command(env []string, prog string, args ...string) *exec.Cmd {
	c := exec.Command(prog, args...)
	if env != nil {
		c.Env = append(c.Environ(), env...)
	}
	return c
}

// Start starts cmd (configured already: its environment, its stdin,
// pipes between processes). Its stdout and stderr go to the Proc's
// buffers unless set. When the test ends the process is killed by pid
// (SIGKILL) if it still runs, and its stderr is logged if the test failed.
func Start(t testing.TB, cmd *exec.Cmd) *Proc {
	t.Helper()
	p := &Proc{Cmd: cmd, done: make(chan struct{})}
	if cmd.Stdout == nil {
		cmd.Stdout = &p.Stdout
	}
	if cmd.Stderr == nil {
		cmd.Stderr = &p.Stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("%q: %v", cmd.Args, err)
	}
	go func() {
		p.Err = cmd.Wait()
		var ee *exec.ExitError
		if errors.As(p.Err, &ee) {
			p.Code = ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				p.Code = -int(ws.Signal())
			}
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() && p.Stderr.Len() > 0 {
			t.Logf("%q stderr:\n%s", cmd.Args, p.Stderr.String())
		}
	})
	return p
}

// Done is closed when the process has ended.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Pid is the process id.
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

// Running reports whether the process has not ended yet.
func (p *Proc) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Kill kills the process by pid (SIGKILL) if it still runs, and waits
// for its end.
func (p *Proc) Kill() {
	if p.Running() {
		syscall.Kill(p.Pid(), syscall.SIGKILL)
	}
	<-p.done
}

// Signal sends sig to the process.
func (p *Proc) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(p.Pid(), sig); err != nil {
		t.Fatal(err)
	}
}

// Wait waits for the end, at most d, and returns the exit code. The test
// fails if the process still runs after d, or if it panicked (a Go
// program's panic in its stderr).
func (p *Proc) Wait(t testing.TB, d time.Duration) int {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-p.done:
	case <-timer.C:
		t.Fatalf("%q still running after %v; stderr:\n%s", p.Cmd.Args, d, p.Stderr.String())
	}
	NoPanic(t, p.Cmd.Args, p.Stderr.String())
	return p.Code
}

// Stop sends SIGTERM (if the process still runs) and waits 15 s for the
// end, as Wait does.
func (p *Proc) Stop(t testing.TB) int {
	t.Helper()
	if p.Running() {
		syscall.Kill(p.Pid(), syscall.SIGTERM)
	}
	return p.Wait(t, 15*time.Second)
}

// NoPanic fails the test if stderr, the output of the Go program run with
// args, shows a panic.
func NoPanic(t testing.TB, args []string, stderr string) {
	t.Helper()
	if strings.Contains(stderr, "panic:") || strings.Contains(stderr, "goroutine ") {
		t.Fatalf("%q panicked:\n%s", args, stderr)
	}
}
