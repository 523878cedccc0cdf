//go:build linux

package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// cpuSet makes a CPU mask.
func cpuSet(cpus []int) *unix.CPUSet {
	var s unix.CPUSet
	for _, c := range cpus {
		s.Set(c)
	}
	return &s
}

// cpuList lists the CPUs of a mask.
func cpuList(s *unix.CPUSet) []int {
	var l []int
	for i := 0; i < len(s)*64; i++ {
		if s.IsSet(i) {
			l = append(l, i)
		}
	}
	return l
}

// allowedCPUs are the CPUs this process may run on.
func allowedCPUs() ([]int, error) {
	var s unix.CPUSet
	if err := unix.SchedGetaffinity(0, &s); err != nil {
		return nil, err
	}
	return cpuList(&s), nil
}

// startPinned starts cmd with the CPU mask cpus. The mask is set on this
// goroutine's thread, which forks the child, for the time of the fork: the
// child and every thread it ever makes inherit it, so the Go runtime of a
// child pinned to one CPU picks GOMAXPROCS=1 by itself, and an exec'd
// program (gst-launch-1.0) is pinned before its first instruction.
func startPinned(cmd *exec.Cmd, cpus []int) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return fmt.Errorf("sched_getaffinity: %w", err)
	}
	if err := unix.SchedSetaffinity(0, cpuSet(cpus)); err != nil {
		return fmt.Errorf("pin to CPUs %v: %w", cpus, err)
	}
	err := cmd.Start()
	if rerr := unix.SchedSetaffinity(0, &old); rerr != nil && err == nil {
		// The child is running: end it rather than leave this thread pinned
		// without saying so.
		cmd.Process.Kill()
		cmd.Wait()
		err = fmt.Errorf("restore the CPU mask: %w", rerr)
	}
	return err
}

// capBuffer keeps the first 1 MiB written to it (a child's output).
type capBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (c *capBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := 1<<20 - c.b.Len(); room > 0 {
		c.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (c *capBuffer) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.b.String()
}

func (c *capBuffer) Bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.b.Bytes())
}

// proc is a child process of a run.
type proc struct {
	name           string
	cmd            *exec.Cmd
	stdout, stderr capBuffer
	done           chan struct{}
	err            error  // cmd.Wait's, once done is closed
	out            string // a C leg's measurements file ("" for a Go child: JSON on stdout)
}

// group is the children of one run: started one by one, waited for
// together, and killed (by pid) together when one fails, when the run's time
// is up or when the context ends.
type group struct {
	procs  []*proc
	exited chan *proc
}

func newGroup() *group { return &group{exited: make(chan *proc, 64)} }

// start starts cmd as a member of the group, pinned to cpus.
func (g *group) start(name string, cmd *exec.Cmd, cpus []int) (*proc, error) {
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	if cmd.Stdout == nil {
		cmd.Stdout = &p.stdout
	}
	if cmd.Stderr == nil {
		cmd.Stderr = &p.stderr
	}
	// Should this process die, so do its children.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := startPinned(cmd, cpus); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	g.procs = append(g.procs, p)
	go func() {
		p.err = cmd.Wait()
		close(p.done)
		g.exited <- p
	}()
	return p, nil
}

// killAll kills every member still running, by its pid, and waits (bounded)
// for them to be reaped.
func (g *group) killAll() {
	for _, p := range g.procs {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
		}
	}
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	for _, p := range g.procs {
		select {
		case <-p.done:
		case <-t.C:
			return
		}
	}
}

var errKilled = errors.New("killed")

// wait waits until every member has exited, at most d. The first member to
// fail, the time running out, or the context's end kill the rest.
func (g *group) wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	for left := len(g.procs); left > 0; left-- {
		select {
		case p := <-g.exited:
			if p.err != nil {
				g.killAll()
				return p.failure()
			}
		case <-t.C:
			var running []string
			for _, p := range g.procs {
				select {
				case <-p.done:
				default:
					running = append(running, p.name)
				}
			}
			g.killAll()
			return fmt.Errorf("%s still running after %v: %w", strings.Join(running, ", "), d, errKilled)
		case <-ctx.Done():
			g.killAll()
			return ctx.Err()
		}
	}
	return nil
}

// failure explains a member's exit.
func (p *proc) failure() error {
	msg := strings.TrimSpace(p.stderr.String())
	if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
		msg = msg[i+1:] // the last line says why
	}
	if msg == "" {
		return fmt.Errorf("%s: %v", p.name, p.err)
	}
	return fmt.Errorf("%s: %v: %s", p.name, p.err, msg)
}

// cpu is the member's CPU time over its whole life (wait4's rusage).
func (p *proc) cpu() time.Duration {
	if p.cmd.ProcessState == nil {
		return 0
	}
	ru, ok := p.cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// startChild starts this binary as a child playing spec, with the extra
// descriptors from fd 3 on.
func (r *runner) startChild(g *group, name string, spec *childSpec, cpus []int, files []*os.File) (*proc, error) {
	spec.CPUs = cpus
	job, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(r.cfg.Exe, r.cfg.ExeArgs...)
	cmd.Env = append(os.Environ(), ChildEnv+"=1")
	cmd.Stdin = bytes.NewReader(job)
	cmd.ExtraFiles = files
	return g.start(name, cmd, cpus)
}

// result decodes a child's result: a Go child's JSON on stdout, a C leg's
// measurements file.
func (p *proc) result() (*childResult, error) {
	if p.out != "" {
		res, err := readCResult(p.out)
		if err != nil {
			return nil, fmt.Errorf("%s: %w: %s", p.name, err, strings.TrimSpace(p.stderr.String()))
		}
		return res, nil
	}
	var res childResult
	if err := json.Unmarshal(p.stdout.Bytes(), &res); err != nil {
		return nil, fmt.Errorf("%s: no result (%v): %s", p.name, err, strings.TrimSpace(p.stderr.String()))
	}
	return &res, nil
}
