package main

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// make run's job (scripts/run-demo.sh), shortened to 4 s, without a
// display (the web preview): it exits 0, and a normal finish ends on the
// capture closing the bus, with no warning or error on the way (it once
// ended on the preview's "waiting for producer (closed the stream)").
func TestRunDemoEndsCleanly(t *testing.T) {
	needOpenCV(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "../../scripts/run-demo.sh", bin)
	env := []string{"FRAMEBUS_DIR=" + t.TempDir(), "FRAMEBUS_DEMO_HTTP=127.0.0.1:0", "FRAMEBUS_DEMO_DURATION=4s", "NO_COLOR=1"}
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "DISPLAY=") && !strings.HasPrefix(e, "FRAMEBUS_") {
			env = append(env, e)
		}
	}
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	t.Logf("make run's job:\n%s", out)
	if err != nil {
		t.Fatalf("run-demo.sh: %v", err)
	}
	if m := regexp.MustCompile(`(?m)^.*\b(WRN|ERR|FTL)\b.*$`).Find(out); m != nil {
		t.Errorf("a normal finish logged %s", m)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, "INF closed the bus bus=demo") {
		t.Errorf("the last line is %q, want the capture closing the bus", last)
	}
}
