package main

import (
	"bufio"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/framebus/framebus/framebus"

	"github.com/framebus/framebus/internal/testutil"
)

// notifySocket is a service manager's end of $NOTIFY_SOCKET: the datagrams
// a service sends, one message each.
func notifySocket(t *testing.T, name string) (addr string, msgs <-chan string) {
	t.Helper()
	path := name
	if !strings.HasPrefix(name, "@") {
		path = filepath.Join(t.TempDir(), name)
	}
	la := &net.UnixAddr{Name: strings.Replace(path, "@", "\x00", 1), Net: "unixgram"}
	c, err := net.ListenUnixgram("unixgram", la)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ch := make(chan string, 100)
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := c.Read(b)
			if err != nil {
				return
			}
			ch <- string(b[:n])
		}
	}()
	return path, ch
}

func nextMsg(t *testing.T, msgs <-chan string, d time.Duration, what string) string {
	t.Helper()
	select {
	case m := <-msgs:
		return m
	case <-time.After(d):
		t.Fatalf("no %s message within %v", what, d)
		return ""
	}
}

// capture tells a service manager READY=1 once the bus is READY (not
// before), WATCHDOG=1 while frames flow, and STOPPING=1 when it stops.
func TestNotifyReady(t *testing.T) {
	dir := t.TempDir()
	sock, msgs := notifySocket(t, "notify.sock")
	capt := startEnv(t, []string{"NOTIFY_SOCKET=" + sock, "WATCHDOG_USEC=200000"}, "capture", "--name", "svc", "--size", "64x48", "--fps", "50", "--dir", dir)
	ready := nextMsg(t, msgs, 15*time.Second, "READY=1")
	s, err := framebus.Inspect("svc", dir) // at once: the bus is there
	if !strings.HasPrefix(ready, "READY=1\n") || !strings.Contains(ready, "STATUS=publishing bus svc (64x48 RGBA (AB24) @ 50 fps)") ||
		!strings.Contains(ready, "MAINPID="+itoa(capt.Pid())) {
		t.Errorf("the first message: %q", ready)
	}
	if err != nil || s.Header.State != framebus.StateReady || !s.OwnerAlive {
		t.Fatalf("at READY=1 the bus is not ready: %v %+v", err, s)
	}
	for range 3 {
		if m := nextMsg(t, msgs, 5*time.Second, "WATCHDOG=1"); m != "WATCHDOG=1" {
			t.Fatalf("while publishing: %q", m)
		}
	}
	capt.Signal(t, syscall.SIGTERM)
	for {
		m := nextMsg(t, msgs, 10*time.Second, "STOPPING=1")
		if strings.HasPrefix(m, "STOPPING=1\n") {
			if !strings.Contains(m, "STATUS=closing bus svc (interrupted)") {
				t.Errorf("%q", m)
			}
			break
		}
		if m != "WATCHDOG=1" {
			t.Fatalf("before STOPPING=1: %q", m)
		}
	}
	if code := capt.Wait(t, 10*time.Second); code != 0 {
		t.Errorf("exit %d", code)
	}

	// An abstract socket, and framebus metrics.
	sock, msgs = notifySocket(t, "@framebus-test-"+itoa(os.Getpid()))
	m := startEnv(t, []string{"NOTIFY_SOCKET=" + sock}, "metrics", "--listen", "127.0.0.1:0", "--dir", dir)
	if r := nextMsg(t, msgs, 15*time.Second, "READY=1"); !strings.HasPrefix(r, "READY=1\nSTATUS=serving http://127.0.0.1:") {
		t.Errorf("metrics: %q", r)
	}
	m.Signal(t, syscall.SIGTERM)
	if r := nextMsg(t, msgs, 10*time.Second, "STOPPING=1"); r != "STOPPING=1" {
		t.Errorf("metrics at SIGTERM: %q", r)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// unitLines reads KEY=VALUE lines of a systemd unit (comments skipped).
func unitLines(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	kv := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' || l[0] == '[' {
			continue
		}
		k, v, _ := strings.Cut(l, "=")
		kv[k] = append(kv[k], v)
	}
	return kv
}

// The systemd unit of docs/deploy: systemd-analyze verify finds nothing to
// say about it, and its ExecStart, as systemd expands it, tells a service
// manager READY=1.
func TestDeploySystemdUnit(t *testing.T) {
	needInterop(t, "systemd-analyze")
	unit := "../../docs/deploy/framebus-capture@.service"
	b, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	local := strings.ReplaceAll(string(b), "/usr/local/bin/framebus", bin)
	os.WriteFile(filepath.Join(tmp, "framebus-capture@.service"), []byte(local), 0o644)
	cmd := exec.Command("systemd-analyze", "verify", "--man=no", filepath.Join(tmp, "framebus-capture@cam0.service"))
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		if strings.Contains(string(out), "Failed to") && !strings.Contains(string(out), "framebus") {
			t.Skipf("systemd-analyze cannot run in this container: %s", out)
		}
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	kv := unitLines(t, filepath.Join(tmp, "framebus-capture@.service"))
	if kv["Type"][0] != "notify" || kv["RemoveIPC"] == nil {
		t.Errorf("the unit is not Type=notify with RemoveIPC: %v", kv)
	}
	// ExecStart with %i and $FRAMEBUS_CAPTURE expanded as systemd does.
	env := map[string]string{}
	for _, e := range kv["Environment"] {
		k, v, _ := strings.Cut(strings.Trim(e, `"`), "=")
		env[k] = v
	}
	var args []string
	for _, w := range strings.Fields(kv["ExecStart"][0])[1:] {
		switch {
		case w == "$FRAMEBUS_CAPTURE":
			args = append(args, strings.Fields(env["FRAMEBUS_CAPTURE"])...)
		default:
			args = append(args, strings.ReplaceAll(w, "%i", "cam0"))
		}
	}
	dir := t.TempDir()
	sock, msgs := notifySocket(t, "notify.sock")
	capt := startEnv(t, []string{"NOTIFY_SOCKET=" + sock, "FRAMEBUS_DIR=" + dir}, args...)
	if m := nextMsg(t, msgs, 20*time.Second, "READY=1"); !strings.HasPrefix(m, "READY=1\nSTATUS=publishing bus cam0 (1280x720 RGBA (AB24) @ 30 fps)") {
		t.Errorf("the unit's command said %q", m)
	}
	if !exists(segment(dir, "cam0")) {
		t.Errorf("no bus cam0 in FRAMEBUS_DIR")
	}
	capt.Signal(t, syscall.SIGTERM)
	if code := capt.Wait(t, 10*time.Second); code != 0 {
		t.Errorf("exit %d:\n%s", code, capt.Stderr.String())
	}
}

// yamlDocs parses a YAML file with Debian's python3-yaml into JSON values.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	if err := exec.Command("/usr/bin/python3", "-c", "import yaml").Run(); err != nil {
		if os.Getenv("FRAMEBUS_REQUIRE_TOOLS") != "" {
			t.Fatalf("python3-yaml is not installed: %v", err)
		}
		t.Skip("python3-yaml is not installed (make sysdeps installs it)")
	}
	out, err := exec.Command("/usr/bin/python3", "-c", "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))", path).CombinedOutput()
	if err != nil {
		t.Fatalf("%s does not parse: %v\n%s", path, err, out)
	}
	var docs []map[string]any
	if err := json.Unmarshal(out, &docs); err != nil {
		t.Fatal(err)
	}
	return docs
}

func strs(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

// checkArgs runs a container's framebus command line with --help: it
// exits 0 only when every flag is one the command has.
func checkArgs(t *testing.T, where string, args []string) {
	t.Helper()
	if r := run(t, append(args, "--help")...); r.Code != 0 {
		t.Errorf("%s: framebus %q is not a command line framebus takes: %s", where, args, r.Stderr)
	}
}

// The docker-compose file and the Kubernetes pod parse, share one bus
// directory (a tmpfs volume; an emptyDir in memory) mounted at the same
// path in every container, and run framebus command lines that it takes.
func TestDeployComposeAndPod(t *testing.T) {
	docs := yamlDocs(t, "../../docs/deploy/docker-compose.yml")
	if len(docs) != 1 {
		t.Fatalf("compose: %d documents", len(docs))
	}
	c := docs[0]
	bus := c["volumes"].(map[string]any)["bus"].(map[string]any)["driver_opts"].(map[string]any)
	if bus["type"] != "tmpfs" || !strings.Contains(bus["o"].(string), "size=") {
		t.Errorf("compose: the bus volume is not a sized tmpfs: %v", bus)
	}
	services := c["services"].(map[string]any)
	for _, name := range []string{"capture", "record", "metrics"} {
		s, ok := services[name].(map[string]any)
		if !ok {
			t.Fatalf("compose: no service %s", name)
		}
		env := s["environment"].(map[string]any)
		mounts := strs(s["volumes"])
		if env["FRAMEBUS_DIR"] != "/run/framebus" || !contains(mounts, "bus:/run/framebus") || s["user"] != "1000:1000" {
			t.Errorf("compose %s: FRAMEBUS_DIR %v, volumes %v, user %v", name, env["FRAMEBUS_DIR"], mounts, s["user"])
		}
		checkArgs(t, "compose "+name, strs(s["command"]))
	}
	hc := strs(services["capture"].(map[string]any)["healthcheck"].(map[string]any)["test"])
	checkArgs(t, "compose healthcheck", strings.Fields(strings.TrimPrefix(strings.TrimSuffix(hc[1], " > /dev/null"), "framebus ")))

	docs = yamlDocs(t, "../../docs/deploy/pod.yaml")
	p := docs[0]
	spec := p["spec"].(map[string]any)
	if p["kind"] != "Pod" || p["apiVersion"] != "v1" {
		t.Errorf("pod: kind %v apiVersion %v", p["kind"], p["apiVersion"])
	}
	if _, ok := spec["shareProcessNamespace"].(bool); !ok {
		t.Errorf("pod: shareProcessNamespace is not said")
	}
	vol := spec["volumes"].([]any)[0].(map[string]any)
	if vol["name"] != "bus" || vol["emptyDir"].(map[string]any)["medium"] != "Memory" {
		t.Errorf("pod: the bus volume is %v", vol)
	}
	for _, ci := range spec["containers"].([]any) {
		ct := ci.(map[string]any)
		name := ct["name"].(string)
		m := ct["volumeMounts"].([]any)[0].(map[string]any)
		env := ct["env"].([]any)[0].(map[string]any)
		if m["name"] != "bus" || m["mountPath"] != "/run/framebus" || env["name"] != "FRAMEBUS_DIR" || env["value"] != "/run/framebus" {
			t.Errorf("pod %s: mount %v env %v", name, m, env)
		}
		checkArgs(t, "pod "+name, strs(ct["args"]))
		for _, probe := range []string{"readinessProbe", "livenessProbe"} {
			if pr, ok := ct[probe].(map[string]any); ok {
				sh := strs(pr["exec"].(map[string]any)["command"])
				checkArgs(t, "pod "+name+" "+probe, strings.Fields(strings.TrimPrefix(strings.TrimSuffix(sh[2], " > /dev/null"), "framebus ")))
			}
		}
	}
	// The Dockerfile builds what the Makefile builds and runs as the
	// compose file's and the pod's user.
	df, _ := os.ReadFile("../../docs/deploy/Dockerfile")
	for _, want := range []string{"-tags framebus_opencv,framebus_media", "ffmpeg", "USER 1000:1000", `ENTRYPOINT ["/usr/local/bin/framebus"]`} {
		if !strings.Contains(string(df), want) {
			t.Errorf("the Dockerfile does not say %q", want)
		}
	}
	if n := len(regexp.MustCompile(`(?m)^FROM `).FindAllString(string(df), -1)); n != 2 {
		t.Errorf("the Dockerfile has %d stages", n)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// A producer in a PID namespace of its own (as in another container) and a
// consumer outside it: frames flow, stat sees the producer alive through its
// lock (its pid means nothing here), and its death is seen the same way.
func TestBusAcrossPIDNamespaces(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a new PID namespace (unshare --pid)")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("needs unshare (util-linux)")
	}
	dir := t.TempDir()
	ns := exec.Command("unshare", "--pid", "--fork", "--kill-child", bin, "capture", "--name", "ns", "--size", "64x48", "--fps", "50", "--dir", dir)
	var se testutil.Buffer
	ns.Stderr = &se
	if err := ns.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { ns.Wait(); close(done) }()
	t.Cleanup(func() {
		ns.Process.Kill()
		<-done
	})
	testutil.WaitFor(t, 10*time.Second, "the bus", func() bool {
		select {
		case <-done:
			t.Skipf("cannot make a PID namespace here: %s", se.String())
		default:
		}
		return exists(segment(dir, "ns"))
	})
	if !strings.Contains(se.String(), "pid=1 ") {
		t.Errorf("the producer is not pid 1 of its namespace:\n%s", se.String())
	}
	tail := start(t, "tail", "ns", "--dir", dir, "--timeout", "2s")
	testutil.WaitFor(t, 10*time.Second, "frames across the namespaces", func() bool { return strings.Count(tail.Stdout.String(), "\n") >= 10 })
	st := statBus(t, dir, "ns")
	if !st.ProducerAlive {
		t.Errorf("stat from outside the namespace: producer not alive")
	}
	if r := run(t, "stat", "ns", "--dir", dir); !strings.Contains(r.Stdout, "pid 1 in another PID namespace") {
		t.Errorf("stat does not say the pid is another namespace's:\n%s", r.Stdout)
	}
	ns.Process.Signal(syscall.SIGKILL) // unshare --kill-child: the producer dies with it
	<-done
	testutil.WaitFor(t, 10*time.Second, "the producer seen gone", func() bool { return !statBus(t, dir, "ns").ProducerAlive })
	if code := tail.Wait(t, 15*time.Second); code != 1 || !strings.Contains(tail.Stderr.String(), "gone") {
		t.Errorf("tail after the producer died in its namespace: exit %d\n%s", code, tail.Stderr.String())
	}
}
