package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/framebus/framebus/internal/testutil"
)

var metricsURL = regexp.MustCompile(`metrics of the buses in .*: (http://\S+/metrics)`)

// startMetrics starts framebus metrics on a free port of 127.0.0.1 and
// returns its /metrics URL.
func startMetrics(t *testing.T, dir string) (*live, string) {
	t.Helper()
	m := startLive(t, nil, "metrics", "--listen", "127.0.0.1:0", "--dir", dir)
	var u string
	testutil.WaitFor(t, 10*time.Second, "the metrics URL", func() bool {
		if !m.Running() {
			t.Fatalf("metrics ended (exit %d):\n%s", m.Code, m.Stderr.String())
		}
		if mm := metricsURL.FindStringSubmatch(m.Stdout.String()); mm != nil {
			u = mm[1]
			return true
		}
		return false
	})
	return m, u
}

// promQuery asks Prometheus's HTTP API for an instant vector: one value per
// series, keyed by the series' labels.
func promQuery(t *testing.T, api, q string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(api + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil // not up yet
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusServiceUnavailable {
		return nil // starting
	}
	var r struct {
		Status string
		Error  string
		Data   struct {
			Result []struct {
				Metric map[string]string
				Value  [2]any
			}
		}
	}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &r); err != nil || r.Status != "success" {
		t.Fatalf("query %s: %v %s", q, err, b)
	}
	out := map[string]float64{}
	for _, s := range r.Data.Result {
		v, _ := strconv.ParseFloat(fmt.Sprint(s.Value[1]), 64)
		out[fmt.Sprint(s.Metric)] = v
	}
	return out
}

// one is the only value of a query, and whether there is exactly one.
func one(m map[string]float64) (float64, bool) {
	for _, v := range m {
		return v, len(m) == 1
	}
	return 0, false
}

// A real Prometheus server (Debian's) scrapes framebus metrics every
// second and answers queries over its HTTP API with the buses' values: the
// producer up, frames published, the consumer's frames by pid; a consumer
// killed is reclaimed, a producer killed is down.
func TestMetricsScrapedByPrometheus(t *testing.T) {
	needInterop(t, "prometheus")
	dir, tmp := t.TempDir(), t.TempDir()
	capt := startCapture(t, dir, "cam", "--fps", "50")
	tail := start(t, "tail", "cam", "--dir", dir, "--timeout", "60s")
	waitConsumers(t, dir, "cam", 1)
	_, mu := startMetrics(t, dir)
	target := strings.TrimSuffix(strings.TrimPrefix(mu, "http://"), "/metrics")

	cfg := filepath.Join(tmp, "prometheus.yml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: framebus
    static_configs:
      - targets: ['%s']
`, target)), 0o600)
	port := strconv.Itoa(freePort(t))
	api := "http://127.0.0.1:" + port
	prom := exec.Command("prometheus", "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(tmp, "data"),
		"--web.listen-address=127.0.0.1:"+port, "--log.level=warn")
	var pe testutil.Buffer
	prom.Stdout, prom.Stderr = &pe, &pe
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { prom.Wait(); close(done) }()
	t.Cleanup(func() {
		prom.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			prom.Process.Kill()
			<-done
		}
	})
	until := func(what, q string, ok func(float64) bool) float64 {
		t.Helper()
		var v float64
		testutil.WaitFor(t, 40*time.Second, what+" ("+q+")", func() bool {
			select {
			case <-done:
				t.Fatalf("prometheus ended:\n%s", pe.String())
			default:
			}
			var single bool
			v, single = one(promQuery(t, api, q))
			return single && ok(v)
		})
		return v
	}
	until("a scrape of framebus metrics", `up{job="framebus"}`, func(v float64) bool { return v == 1 })
	until("the producer up", `framebus_producer_up{bus="cam"}`, func(v float64) bool { return v == 1 })
	until("frames published", `framebus_frames_published_total{bus="cam"}`, func(v float64) bool { return v >= 10 })
	until("one consumer", `framebus_consumers{bus="cam"}`, func(v float64) bool { return v == 1 })
	pid := strconv.Itoa(tail.Pid())
	until("the tail's frames", `framebus_consumer_frames_delivered_total{bus="cam",pid="`+pid+`",entry="0"}`, func(v float64) bool { return v >= 10 })
	until("the tail's lag", `framebus_consumer_lag_frames{bus="cam",pid="`+pid+`"}`, func(v float64) bool { return v <= 5 })
	until("a fresh heartbeat", `framebus_heartbeat_age_seconds{bus="cam"}`, func(v float64) bool { return v < 1 })
	for _, q := range []string{`framebus_source_drops_total{bus="cam"}`, `framebus_consumers_reclaimed_total{bus="cam"}`,
		`framebus_version_mismatch_total{bus="cam"}`, `framebus_consumer_torn_retries_total{bus="cam",pid="` + pid + `"}`,
		`framebus_consumer_frames_dropped_total{bus="cam",pid="` + pid + `"}`} {
		if v, ok := one(promQuery(t, api, q)); !ok || v > 1e6 {
			t.Errorf("%s: %v (%v)", q, v, ok)
		}
	}
	if v, ok := one(promQuery(t, api, `rate(framebus_frames_published_total{bus="cam"}[5s])`)); ok && (v < 10 || v > 60) {
		t.Errorf("publish rate %v fps, the bus runs at 50", v)
	}

	tail.Signal(t, syscall.SIGKILL)
	until("the killed consumer reclaimed", `framebus_consumers_reclaimed_total{bus="cam"}`, func(v float64) bool { return v == 1 })
	until("no consumer", `framebus_consumers{bus="cam"}`, func(v float64) bool { return v == 0 })
	capt.Signal(t, syscall.SIGKILL)
	until("the producer down", `framebus_producer_up{bus="cam"}`, func(v float64) bool { return v == 0 })
}

// /metrics on the web preview serves the same metrics; bad flags of
// framebus metrics are usage errors.
func TestMetricsEndpoints(t *testing.T) {
	dir := t.TempDir()
	capt := startCapture(t, dir, "cam")
	ns, _ := os.Readlink("/proc/self/ns/pid") // pid:[N]: the test's namespace, the producer's too
	ns = strings.TrimSuffix(strings.TrimPrefix(ns, "pid:["), "]")
	os.WriteFile(segment(dir, "junk"), []byte(strings.Repeat("junk", 256)), 0o600)
	_, mu := startMetrics(t, dir)
	urls := []string{mu}
	if hasOpenCV {
		_, u := startViewHTTP(t, dir, "cam")
		urls = append(urls, strings.TrimSuffix(u, "/")+"/metrics")
	}
	for _, u := range urls {
		resp, body := get(t, u)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
			t.Fatalf("%s: %d %s", u, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		for _, want := range []string{`framebus_producer_up{bus="cam"} 1`, `framebus_bus_valid{bus="junk"} 0`, `framebus_bus_valid{bus="cam"} 1`,
			`framebus_bus_info{bus="cam",format="64x48 RGBA (AB24) @ 100 fps",state="READY"} 1`, "# TYPE framebus_frames_published_total counter",
			fmt.Sprintf(`framebus_producer_info{bus="cam",pid="%d",pidns="%s"} 1`, capt.Pid(), ns),
			"process_resident_memory_bytes"} {
			if !strings.Contains(string(body), want) {
				t.Errorf("%s does not say %q", u, want)
			}
		}
	}
	for _, args := range [][]string{{"metrics", "--listen", "nope"}, {"metrics", "--listen", ":99999"}, {"metrics", "extra"}, {"metrics", "--dir", filepath.Join(dir, "missing")}} {
		if r := run(t, args...); r.Code != 2 || strings.Count(r.Stderr, "\n") != 1 {
			t.Errorf("%q: exit %d %q", args, r.Code, r.Stderr)
		}
	}
}
