package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestBenchQuickSmoke runs "framebus bench --quick" with short runs and
// checks that the JSON is complete and sane (not the speed): every row of
// the quick set, the camera scenario's C legs included (skipped with the
// reason where gcc is missing; make test requires gcc), every field,
// latencies positive and ordered, frames moving.
func TestBenchQuickSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("a benchmark")
	}
	if runtime.NumCPU() < 2 {
		t.Skip("the quick set pins to two CPUs")
	}
	dir := t.TempDir()
	jsonFile, pngFile := filepath.Join(dir, "q.json"), filepath.Join(dir, "q.png")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := []string{"bench", "--quick", "--duration", "200ms", "--warmup", "100ms", "--rounds", "1", "--paced-frames", "20",
		"--json", jsonFile, "--plot", pngFile}
	_, gccErr := exec.LookPath("gcc")
	noC := gccErr != nil && os.Getenv("FRAMEBUS_REQUIRE_GCC") != "1"
	cmd := exec.CommandContext(ctx, bin, args...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	start := time.Now()
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("framebus %q did not end within 2 minutes", args)
	}
	checkNoPanic(t, args, se.String())
	if err != nil {
		t.Fatalf("framebus %q: %v\n%s\n%s", args, err, so.String(), se.String())
	}
	t.Logf("framebus bench --quick (short runs) took %v", time.Since(start).Round(time.Millisecond))
	for _, s := range []string{"1920x1080 RGBA, 1 consumer, 60 fps, free", "1920x1080 RGBA, 1 consumer, as fast as possible, split",
		"640x480 GREY, 1 consumer, as fast as possible, split", "framebus/plain", "futex", "memcpy", "uds", "pipe", "Targets", "4 MiB",
		"framebus/plain go->c", "framebus/plain c->go", "c/plain", "c/spin", "futex c->c", "framebus/spin"} {
		if !strings.Contains(so.String(), s) {
			t.Errorf("the table lacks %q:\n%s", s, so.String())
		}
	}
	if se.Len() != 0 {
		t.Errorf("stderr (not a terminal, no --progress) is not empty: %s", se.String())
	}

	raw, err := os.ReadFile(jsonFile)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Machine map[string]any   `json:"machine"`
		Results []map[string]any `json:"results"`
		Targets []map[string]any `json:"targets"`
	}
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"cpu_model", "cpus", "kernel", "go_version", "time"} {
		if _, ok := rep.Machine[k]; !ok {
			t.Errorf("machine.%s missing", k)
		}
	}
	seen := map[string]bool{}
	for _, r := range rep.Results {
		name := func() string { return r["size"].(string) + " " + r["transport"].(string) }
		for _, k := range []string{"transport", "size", "format", "consumers", "rate", "placement", "mode",
			"latency_us", "read_us", "fps", "gbps", "dropped", "cpu_s", "skipped"} {
			if _, ok := r[k]; !ok {
				t.Errorf("row %v: %q missing", r["transport"], k)
			}
		}
		if t.Failed() {
			return
		}
		for _, k := range []string{"producer", "consumer", "checksum"} {
			if _, ok := r[k]; !ok {
				t.Errorf("row %v: %q missing", r["transport"], k)
			}
		}
		camera := r["rate"] == 60.0
		c := r["producer"] == "c" || r["consumer"] == "c"
		seen[name()+" "+r["producer"].(string)+"->"+r["consumer"].(string)+" "+r["mode"].(string)] = true
		if c && noC {
			if r["skipped"] != true || !strings.Contains(r["reason"].(string), "gcc") {
				t.Errorf("%s without gcc: skipped %v, reason %v", name(), r["skipped"], r["reason"])
			}
			continue
		}
		if r["skipped"] != false {
			t.Errorf("%s skipped: %v", name(), r["reason"])
			continue
		}
		if camera {
			if r["consumers"] != 1.0 || r["placement"] != "free" || r["checksum"] != false || r["size"] != "1920x1080" {
				t.Errorf("%s: consumers %v placement %v checksum %v", name(), r["consumers"], r["placement"], r["checksum"])
			}
		} else {
			if r["consumers"] != 1.0 || r["rate"] != 0.0 || r["placement"] != "split" {
				t.Errorf("%s: consumers %v rate %v placement %v", name(), r["consumers"], r["rate"], r["placement"])
			}
			if (r["transport"] == "framebus") != (r["mode"] == "plain") {
				t.Errorf("%s: mode %q", name(), r["mode"])
			}
		}
		if (r["transport"] == "c") != (r["producer"] == "c" && r["consumer"] == "c" && r["mode"] != "") {
			t.Errorf("%s: transport %v, producer %v, consumer %v", name(), r["transport"], r["producer"], r["consumer"])
		}
		for _, k := range []string{"latency_us", "read_us"} {
			p, ok := r[k].(map[string]any)
			if !ok {
				t.Errorf("%s: %s = %v", name(), k, r[k])
				continue
			}
			var prev float64
			for _, q := range []string{"p50", "p90", "p99", "p999", "max"} {
				v, ok := p[q].(float64)
				if !ok || v <= 0 || v < prev {
					t.Errorf("%s: %s.%s = %v (after %v): want positive and ordered", name(), k, q, p[q], prev)
				}
				prev = v
			}
		}
		if fps, _ := r["fps"].(float64); fps <= 0 {
			t.Errorf("%s: fps %v", name(), r["fps"])
		}
		if cpu, _ := r["cpu_s"].(float64); cpu <= 0 {
			t.Errorf("%s: cpu_s %v", name(), r["cpu_s"])
		}
	}
	for _, size := range []string{"1920x1080", "640x480"} {
		for _, tr := range []string{"framebus go->go plain", "futex go->go ", "memcpy go-> ", "uds go->go ", "pipe go->go "} {
			if !seen[size+" "+tr] {
				t.Errorf("no row for %s %s", size, tr)
			}
		}
	}
	for _, row := range []string{"framebus go->c plain", "framebus c->go plain", "c c->c plain", "futex c->c ", "framebus go->go spin", "c c->c spin", "framebus go->go park", "framebus c->go park"} {
		if !seen["1920x1080 "+row] {
			t.Errorf("no camera row %s", row)
		}
	}
	if len(rep.Results) != 20 || len(rep.Targets) == 0 {
		t.Errorf("%d rows, %d targets", len(rep.Results), len(rep.Targets))
	}
	png, err := os.ReadFile(pngFile)
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Errorf("--plot: %v, %d bytes", err, len(png))
	}
}

func TestBenchUsage(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "extra"},
		{"bench", "--quick", "--sizes", "640x480"},
		{"bench", "--sizes", "640"},
		{"bench", "--consumers", "x"},
		{"bench", "--consumers", "99"},
		{"bench", "--placements", "everywhere"},
		{"bench", "--transports", "tcp"},
		{"bench", "--modes", "fast"},
		{"bench", "--rates", "-3"},
		{"bench", "--duration", "-1s"},
		{"bench", "--pairs", "go->rust"},
		{"bench", "--checksums", "maybe"},
		{"bench", "--quick", "--pairs", "c->c"},
	} {
		if r := run(t, args...); r.Code != 2 || !strings.Contains(r.Stderr, "bench") {
			t.Errorf("framebus %q: exit %d, stderr %q; want a usage error", args, r.Code, r.Stderr)
		}
	}
	r := run(t, "bench", "--help")
	if r.Code != 0 || !strings.Contains(r.Stdout, "--quick") || !strings.Contains(r.Stdout, "--plot") {
		t.Errorf("bench --help: exit %d\n%s", r.Code, r.Stdout)
	}
}

// bench --plan prints the plan and its estimated length and runs nothing:
// the figure docs/BENCHMARKS.md gives for the full set (it was once
// given differently in three places: bench/estimate_test.go).
func TestBenchPlan(t *testing.T) {
	r := run(t, "bench", "--plan")
	if r.Code != 0 || !regexp.MustCompile(`(?m)^24 scenarios, \d+ runs: about \d+ minutes \(\S+\) when every row runs`).MatchString(r.Stdout) {
		t.Fatalf("bench --plan: exit %d, %q %q", r.Code, r.Stdout, r.Stderr)
	}
	r = run(t, "bench", "--plan", "--sizes", "640x480:GREY", "--transports", "framebus", "--modes", "plain", "--rates", "0", "--duration", "1s", "--warmup", "100ms", "--rounds", "2")
	if r.Code != 0 || !strings.Contains(r.Stdout, "1 scenarios, 2 runs: under a minute (3s)") {
		t.Errorf("bench --plan of one row: exit %d, %q %q", r.Code, r.Stdout, r.Stderr)
	}
}
