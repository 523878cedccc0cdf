package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/framebus/framebus/internal/testutil"
)

// Containers sharing a bus directory have PID namespaces of their own
// (PROTOCOL.md amendment 8, creation and liveness across PID namespaces). These tests run the command as pid 1 of new PID
// namespaces with unshare (root).

// needUnshare skips without root or unshare.
func needUnshare(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for unshare --pid")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("needs unshare (util-linux)")
	}
	if out, err := exec.Command("unshare", "--pid", "--fork", "--mount-proc", "true").CombinedOutput(); err != nil {
		t.Skipf("unshare --pid does not work here: %v %s", err, out)
	}
}

// inNS starts the binary as pid 1 of a new PID namespace (with its own
// /proc); a kill of the returned process kills it too (--kill-child).
func inNS(t *testing.T, args ...string) *proc {
	t.Helper()
	return startExec(t, "unshare", append([]string{"--pid", "--fork", "--mount-proc", "--kill-child", bin}, args...)...)
}

// signalChild sends sig to the namespaced process unshare runs (unshare
// forwards no signal but the SIGKILL of --kill-child).
func signalChild(t *testing.T, p *proc, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(childOf(t, p.Pid()), sig); err != nil {
		t.Fatal(err)
	}
}

// childOf is the pid of the (one) child of process pid.
func childOf(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	if len(f) != 1 {
		t.Fatalf("process %d has children %q", pid, f)
	}
	n, _ := strconv.Atoi(f[0])
	return n
}

func tempFiles(t *testing.T, dir string) []string {
	var tmps []string
	for _, n := range listDir(t, dir) {
		if strings.Contains(n, ".tmp-") {
			tmps = append(tmps, n)
		}
	}
	return tmps
}

// Creations of a 265 MB bus in one PID namespace while framebus gc runs in a
// loop in another: every creation succeeds (gc once took their temporary
// files for a dead pid's).
func TestCreationUnderGCInAnotherNamespace(t *testing.T) {
	needUnshare(t)
	dir := shmDir(t)
	gc := startExec(t, "unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "sh", "-c",
		`while :; do "$0" gc --dir "$1" >/dev/null 2>&1; done`, bin, dir)
	defer gc.Signal(t, syscall.SIGKILL)
	for i := 0; i < 6; i++ { // before amendment 8, 7 to 10 of 12 failed
		r := runExec(t, "unshare", "--pid", "--fork", "--mount-proc", "--kill-child", bin, "capture", "--name", "big",
			"--size", "3840x2160", "--format", "RGBA", "--slots", "8", "--fps", "30", "--duration", "50ms", "--dir", dir)
		if r.Code != 0 {
			t.Fatalf("creation %d under a gc loop in another namespace: exit %d:\n%s", i, r.Code, r.Stderr)
		}
	}
}

// A pid-1 creator killed in the middle of a creation leaves its temporary
// file; gc on the host removes it, gc in a fresh namespace too, and a
// producer restarted as pid 1 of another namespace removes its own
// abandoned one and starts.
func TestKilledPID1Creator(t *testing.T) {
	needUnshare(t)
	dir := shmDir(t)
	killMidCreation := func() {
		t.Helper()
		p := inNS(t, "capture", "--name", "k", "--size", "3840x2160", "--format", "RGBA", "--slots", "8", "--dir", dir)
		testutil.WaitFor(t, 20*time.Second, "the temporary file", func() bool { return len(tempFiles(t, dir)) > 0 || !p.Running() })
		p.Signal(t, syscall.SIGKILL)
		p.Wait(t, 10*time.Second)
		if tmps := tempFiles(t, dir); len(tmps) != 1 || tmps[0] != "framebus.k.tmp-1" {
			t.Fatalf("after the kill: temporary files %q, want framebus.k.tmp-1 (the creation finished first?)", tmps)
		}
	}
	killMidCreation()
	if r := run(t, "gc", "--dir", dir); r.Code != 0 || len(tempFiles(t, dir)) != 0 {
		t.Fatalf("gc on the host: exit %d, left %q:\n%s", r.Code, tempFiles(t, dir), r.Stderr)
	}
	killMidCreation()
	if r := runExec(t, "unshare", "--pid", "--fork", "--mount-proc", bin, "gc", "--dir", dir); r.Code != 0 || len(tempFiles(t, dir)) != 0 {
		t.Fatalf("gc in a fresh namespace: exit %d, left %q:\n%s", r.Code, tempFiles(t, dir), r.Stderr)
	}
	killMidCreation()
	p := inNS(t, "capture", "--name", "k", "--size", "3840x2160", "--format", "RGBA", "--slots", "8", "--dir", dir)
	testutil.WaitFor(t, 30*time.Second, "the restarted producer's bus", func() bool { return exists(segment(dir, "k")) || !p.Running() })
	if !p.Running() {
		t.Fatalf("the restarted producer ended (exit %d):\n%s", p.Code, p.Stderr.String())
	}
	if tmps := tempFiles(t, dir); len(tmps) != 0 {
		t.Errorf("the restarted producer left %q", tmps)
	}
	signalChild(t, p, syscall.SIGTERM)
	if code := p.Wait(t, 15*time.Second); code != 0 {
		t.Errorf("the restarted producer: exit %d:\n%s", code, p.Stderr.String())
	}
}

// A consumer in namespace B follows a producer of namespace A through a
// kill -9 and a restart (liveness by locks works across namespaces), and
// stat names the producer's pid for what it is: from B a pid of another
// namespace, from the host that and its pid here.
func TestConsumerInAnotherNamespace(t *testing.T) {
	needUnshare(t)
	dir := shmDir(t)
	prod := inNS(t, "capture", "--name", "ns", "--size", "320x240", "--fps", "50", "--dir", dir)
	testutil.WaitFor(t, 10*time.Second, "the bus", func() bool { return exists(segment(dir, "ns")) })
	tail := inNS(t, "tail", "ns", "--json", "--dir", dir, "--timeout", "30s")
	testutil.WaitFor(t, 10*time.Second, "tail's frames", func() bool { return strings.Contains(tail.Stdout.String(), `"seq"`) })

	var st struct {
		Producer struct {
			PID     uint32 `json:"pid"`
			Foreign bool   `json:"foreign"`
			Here    uint32 `json:"pid_here"`
		} `json:"producer"`
		Consumers []struct {
			Process struct {
				PID     uint32 `json:"pid"`
				Foreign bool   `json:"foreign"`
			} `json:"process"`
		} `json:"consumers"`
	}
	fromB := runExec(t, "unshare", "--pid", "--fork", "--mount-proc", bin, "stat", "ns", "--json", "--dir", dir)
	if err := json.Unmarshal([]byte(fromB.Stdout), &st); err != nil {
		t.Fatalf("stat from another namespace: %v\n%s%s", err, fromB.Stdout, fromB.Stderr)
	}
	if st.Producer.PID != 1 || !st.Producer.Foreign || st.Producer.Here != 0 {
		t.Errorf("stat from another namespace says the producer is %+v, want pid 1 of another namespace", st.Producer)
	}
	text := runExec(t, "unshare", "--pid", "--fork", "--mount-proc", bin, "stat", "ns", "--dir", dir)
	if !strings.Contains(text.Stdout, "pid 1 in another PID namespace") {
		t.Errorf("stat from another namespace:\n%s", text.Stdout)
	}
	host := run(t, "stat", "ns", "--json", "--dir", dir)
	if err := json.Unmarshal([]byte(host.Stdout), &st); err != nil {
		t.Fatal(err)
	}
	if want := uint32(childOf(t, prod.Pid())); !st.Producer.Foreign || st.Producer.Here != want {
		t.Errorf("stat on the host says the producer is %+v, want pid 1 of another namespace, %d here", st.Producer, want)
	}
	if len(st.Consumers) != 1 || !st.Consumers[0].Process.Foreign || st.Consumers[0].Process.PID != 1 {
		t.Errorf("stat on the host: consumers %+v, want tail as pid 1 of another namespace", st.Consumers)
	}

	prod.Signal(t, syscall.SIGKILL)
	prod.Wait(t, 10*time.Second)
	time.Sleep(300 * time.Millisecond) // gone, for a while
	prod2 := inNS(t, "capture", "--name", "ns", "--size", "320x240", "--fps", "50", "--dir", dir)
	testutil.WaitFor(t, 20*time.Second, "tail to follow the restarted producer", func() bool {
		return strings.Contains(tail.Stdout.String(), `"new_generation":true`)
	})
	signalChild(t, prod2, syscall.SIGTERM)
	if code := prod2.Wait(t, 15*time.Second); code != 0 {
		t.Errorf("the restarted producer: exit %d:\n%s", code, prod2.Stderr.String())
	}
	if code := tail.Wait(t, 15*time.Second); code != 0 || !strings.Contains(tail.Stdout.String(), `"event":"closed"`) {
		t.Errorf("tail: exit %d:\n%s", code, tail.Stderr.String())
	}
}

// shmDir is a private bus directory in /dev/shm (tmpfs, shared with the
// namespaces the tests make: they have their own /proc, not their own
// mounts otherwise).
func shmDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "framebus-pidns-")
	if err != nil {
		t.Skip("no /dev/shm:", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
