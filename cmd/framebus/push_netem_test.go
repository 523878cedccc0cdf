package main

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/framebus/framebus/internal/testutil"
)

// push over an impaired link: the far framebus (capture --source whip:)
// runs in a network namespace of the test's own, reached through a veth
// pair with netem on both ends (40 ms each way, 5% of the packets lost).
// Frames keep coming on the far bus and the congestion controller's target
// moves (push's progress lines).
func TestPushOverImpairedLink(t *testing.T) {
	needWebRTC(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	needInterop(t, "ip", "tc")
	ns := fmt.Sprintf("fbpush%d", os.Getpid()%100000)
	sub := fmt.Sprintf("10.%d.%d", 100+os.Getpid()%100, os.Getpid()/100%250)
	sh := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%q: %v\n%s", args, err, out)
		}
	}
	sh("ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	host, peer := "fbh"+ns[6:], "fbp"+ns[6:]
	sh("ip", "link", "add", host, "type", "veth", "peer", "name", peer)
	t.Cleanup(func() { exec.Command("ip", "link", "del", host).Run() })
	sh("ip", "link", "set", peer, "netns", ns)
	sh("ip", "addr", "add", sub+".1/24", "dev", host)
	sh("ip", "link", "set", host, "up")
	sh("ip", "netns", "exec", ns, "ip", "addr", "add", sub+".2/24", "dev", peer)
	sh("ip", "netns", "exec", ns, "ip", "link", "set", peer, "up")
	sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
	if out, err := exec.Command("tc", "qdisc", "add", "dev", host, "root", "netem", "delay", "40ms", "loss", "5%").CombinedOutput(); err != nil {
		// A kernel without sch_netem (and no module loading): push under
		// delay and loss is viewer's TestPushOverImpairedNetwork (pion's
		// vnet, in one process); this is its kernel-level variant.
		t.Skipf("no netem here: %v: %s", err, strings.TrimSpace(string(out)))
	}
	sh("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", peer, "root", "netem", "delay", "40ms", "loss", "5%")

	dir := t.TempDir()
	startLive(t, nil, "capture", "--name", "src", "--source", "pattern", "--size", "640x360", "--fps", "30", "--dir", dir)
	far := startProg(t, nil, "ip", "netns", "exec", ns, bin, "capture", "--name", "far", "--source", "whip:"+sub+".2:8090",
		"--size", "640x360", "--fps", "30", "--format", "I420", "--dir", dir)
	testutil.WaitFor(t, 15*time.Second, "the far bus", func() bool { return exists(segment(dir, "far")) })
	push := startLive(t, nil, "push", "src", "--whip", "http://"+sub+".2:8090/whip", "--dir", dir)
	testutil.WaitFor(t, 30*time.Second, "push connected", func() bool { return strings.Contains(push.Stderr.String(), "push: connected") })
	r := readFar(t, dir, "far", 12*time.Second)
	t.Logf("far bus over 40 ms and 5%% loss: %v", r)
	if fps := r.fps(); fps < 20 {
		t.Errorf("%.1f fps over the impaired link, want most of 30", fps)
	}
	time.Sleep(time.Second)
	targets := map[int]bool{}
	for _, m := range regexp.MustCompile(`push progress .*target_bitrate=(\d+)`).FindAllStringSubmatch(push.Stderr.String(), -1) {
		v, _ := strconv.Atoi(m[1])
		targets[v] = true
	}
	t.Logf("push's progress:\n%s", grepLines(push.Stderr.String(), "push progress"))
	if len(targets) < 2 {
		t.Errorf("the target bitrate did not move: %v", targets)
	}
	if !far.Running() {
		t.Errorf("the far capture ended: %s", far.Stderr.String())
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
