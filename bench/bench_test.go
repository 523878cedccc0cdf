package bench

import (
	"bytes"
	"context"
	"errors"
	"image/png"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/framebus/framebus/framebus"
)

// TestMain lets this test binary play the benchmark's children: Run
// re-executes it with ChildEnv set.
func TestMain(m *testing.M) {
	if IsChild() {
		if err := Child(context.Background(), os.Stdin, os.Stdout); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(3)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestBenchParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Size
		bad  bool
	}{
		{in: "1920x1080", want: HD1080RGBA},
		{in: "1920x1080:RGBA", want: HD1080RGBA},
		{in: "640x480:grey", want: VGAGrey},
		{in: "640x480:GRAY", want: VGAGrey},
		{in: "3840x2160:I420", want: UHD4KI420},
		{in: "3840x2160:YU12", want: UHD4KI420},
		{in: "1280X720", want: HD720RGBA},
		{in: "1920", bad: true},
		{in: "0x480", bad: true},
		{in: "x", bad: true},
		{in: "99999x10", bad: true},
		{in: "640x480:MJPEG", bad: true}, // the pattern cannot render it
		{in: "640x480:NOPE", bad: true},
		{in: "641x481:I420", bad: true}, // odd sizes for 4:2:0
	} {
		got, err := ParseSize(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("ParseSize(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseSize(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	if s := UHD4KI420.String(); s != "3840x2160 I420" {
		t.Errorf("String() = %q", s)
	}
	if n, _ := HD1080RGBA.FrameBytes(); n != 1920*1080*4 {
		t.Errorf("FrameBytes() = %d", n)
	}
}

// The quick subset is what the issue says: 1080p RGBA and 640x480 GREY, one
// consumer, as fast as possible, split, framebus plain against futex,
// memcpy, uds and pipe.
func TestBenchQuickScenarios(t *testing.T) {
	q := QuickScenarios()
	if len(q) != 2 || q[0].Size != HD1080RGBA || q[1].Size != VGAGrey {
		t.Fatalf("quick scenarios: %v", q)
	}
	want := []Variant{{Framebus, Plain}, {Futex, ""}, {Memcpy, ""}, {UDS, ""}, {Pipe, ""}}
	for _, s := range q {
		if s.Consumers != 1 || s.Rate != 0 || s.Placement != Split {
			t.Errorf("quick scenario %v", s)
		}
		if len(s.Variants) != len(want) {
			t.Fatalf("variants %v, want %v", s.Variants, want)
		}
		for i := range want {
			if s.Variants[i] != want[i] {
				t.Errorf("variant %d = %v, want %v", i, s.Variants[i], want[i])
			}
		}
	}
	if err := (Config{Scenarios: q}).Validate(); err != nil {
		t.Error(err)
	}
}

func TestBenchFullScenarios(t *testing.T) {
	full := FullScenarios()
	if err := (Config{Scenarios: full}).Validate(); err != nil {
		t.Fatal(err)
	}
	// Every dimension of the issue appears somewhere.
	seen := map[string]bool{}
	for _, s := range full {
		seen[s.Size.String()] = true
		seen["c"+string(rune('0'+s.Consumers))] = true
		seen[rateName(s.Rate)] = true
		seen[string(s.Placement)] = true
		for _, v := range s.Variants {
			seen[v.String()] = true
		}
	}
	for _, k := range []string{"640x480 GREY", "1280x720 RGBA", "1920x1080 RGBA", "3840x2160 I420", "c1", "c4",
		"as fast as possible", "30 fps", "120 fps", "60 fps", "split", "shared", "free",
		"framebus/plain", "framebus/copy", "framebus/spin", "futex", "memcpy", "uds", "pipe", "gstreamer"} {
		if !seen[k] {
			t.Errorf("the full run has no %q", k)
		}
	}
}

func TestBenchMatrix(t *testing.T) {
	m := Matrix([]Size{VGAGrey}, []int{1, 4}, []float64{0, 30}, []Placement{Split}, Transports, []Mode{Plain, Copy})
	if len(m) != 4 {
		t.Fatalf("%d scenarios, want 4", len(m))
	}
	for _, s := range m {
		has := map[Transport]bool{}
		for _, v := range s.Variants {
			has[v.Transport] = true
		}
		if has[Memcpy] != (s.Rate == 0) {
			t.Errorf("%v: memcpy %v", s, has[Memcpy])
		}
		if has[GStreamer] != (s.Rate == 0 && s.Consumers == 1) {
			t.Errorf("%v: gstreamer %v", s, has[GStreamer])
		}
		if len(s.Variants) < 5 {
			t.Errorf("%v: variants %v", s, s.Variants)
		}
	}
}

func TestBenchValidate(t *testing.T) {
	ok := Scenario{Size: VGAGrey, Consumers: 1, Placement: Split, Variants: []Variant{{Framebus, Plain}}}
	for name, c := range map[string]Config{
		"no scenarios":  {},
		"consumers":     {Scenarios: []Scenario{{Size: VGAGrey, Consumers: 0, Placement: Split, Variants: ok.Variants}}},
		"many":          {Scenarios: []Scenario{{Size: VGAGrey, Consumers: MaxConsumers + 1, Placement: Split, Variants: ok.Variants}}},
		"rate":          {Scenarios: []Scenario{{Size: VGAGrey, Consumers: 1, Rate: -1, Placement: Split, Variants: ok.Variants}}},
		"placement":     {Scenarios: []Scenario{{Size: VGAGrey, Consumers: 1, Placement: "both", Variants: ok.Variants}}},
		"no variants":   {Scenarios: []Scenario{{Size: VGAGrey, Consumers: 1, Placement: Split}}},
		"mode missing":  {Scenarios: []Scenario{{Size: VGAGrey, Consumers: 1, Placement: Split, Variants: []Variant{{Framebus, ""}}}}},
		"baseline mode": {Scenarios: []Scenario{{Size: VGAGrey, Consumers: 1, Placement: Split, Variants: []Variant{{UDS, Plain}}}}},
		"transport":     {Scenarios: []Scenario{{Size: VGAGrey, Consumers: 1, Placement: Split, Variants: []Variant{{"tcp", ""}}}}},
		"size":          {Scenarios: []Scenario{{Size: Size{0, 1, framebus.FormatGrey}, Consumers: 1, Placement: Split, Variants: ok.Variants}}},
		"duration":      {Scenarios: []Scenario{ok}, Duration: time.Millisecond},
		"rounds":        {Scenarios: []Scenario{ok}, Rounds: -1},
	} {
		if err := c.Validate(); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%s: Validate() = %v, want ErrBadConfig", name, err)
		}
	}
	if err := (Config{Scenarios: []Scenario{ok}}).Validate(); err != nil {
		t.Error(err)
	}
	c := Config{}.withDefaults()
	if c.measureTime(Scenario{Rate: 30}) != 10*time.Second || c.measureTime(Scenario{Rate: 0}) != DefaultDuration {
		t.Errorf("measure times %v %v", c.measureTime(Scenario{Rate: 30}), c.measureTime(Scenario{}))
	}
}

func TestBenchHistograms(t *testing.T) {
	h := newHist()
	for i := int64(1); i <= 1000; i++ {
		record(h, i*1000) // 1 to 1000 us
	}
	record(h, -5) // a clock step cannot make a negative sample
	p := percentiles(h)
	if p == nil {
		t.Fatal("no percentiles")
	}
	near := func(got, want float64) bool { return math.Abs(got-want) <= want*0.002+0.002 }
	if !near(p.P50, 500) || !near(p.P90, 900) || !near(p.P99, 990) || !near(p.P999, 999) || !near(p.Max, 1000) {
		t.Errorf("percentiles %+v", p)
	}
	if !(p.P50 <= p.P90 && p.P90 <= p.P99 && p.P99 <= p.P999 && p.P999 <= p.Max) {
		t.Errorf("not ordered: %+v", p)
	}
	enc, err := encodeHist(h)
	if err != nil {
		t.Fatal(err)
	}
	back, err := decodeHist(enc)
	if err != nil {
		t.Fatal(err)
	}
	if back.TotalCount() != h.TotalCount() || *percentiles(back) != *p {
		t.Errorf("round trip: %d samples %+v, want %d %+v", back.TotalCount(), percentiles(back), h.TotalCount(), p)
	}
	if _, err := decodeHist("not a histogram"); err == nil {
		t.Error("decoded garbage")
	}
	if percentiles(newHist()) != nil || percentiles(nil) != nil {
		t.Error("percentiles of nothing")
	}
	if m := median([]float64{3, 1, 2, 10}); m != 2.5 {
		t.Errorf("median = %v", m)
	}
}

// synthetic is one run with latencies spread around p50 us.
func synthetic(p50 float64, fps float64) *runResult {
	lat, read, pub := newHist(), newHist(), newHist()
	for i := 0; i < 1000; i++ {
		v := int64(p50 * 1000 * (0.5 + float64(i)/1000))
		record(lat, v)
		record(read, v+100000)
		record(pub, 5000)
	}
	return &runResult{lat: lat, read: read, pub: pub, fps: fps, producerFPS: fps, samples: 1000, waiting: 900,
		prodUSPerFrame: 500, prodPct: 50, consUSPerFrame: 400, consPct: 40, windowCPU: time.Second, processCPU: 2 * time.Second}
}

func syntheticReport() *Report {
	sc := Scenario{Size: HD1080RGBA, Consumers: 1, Placement: Split}
	sc4 := Scenario{Size: HD1080RGBA, Consumers: 4, Placement: Split}
	spinSc := Scenario{Size: HD1080RGBA, Consumers: 1, Rate: 60, Placement: Split}
	rep := &Report{Results: []Result{
		aggregate(sc, Variant{Framebus, Plain}, []*runResult{synthetic(20, 1500), synthetic(22, 1700)}),
		aggregate(sc, Variant{Framebus, Copy}, []*runResult{synthetic(300, 1200)}),
		aggregate(sc, Variant{Futex, ""}, []*runResult{synthetic(18, 1600)}),
		aggregate(sc, Variant{UDS, ""}, []*runResult{synthetic(1000, 600)}),
		aggregate(sc, Variant{GStreamer, ""}, []*runResult{{fps: 1000, waiting: -1}}),
		aggregate(sc4, Variant{Framebus, Plain}, []*runResult{synthetic(25, 700)}),
		aggregate(spinSc, Variant{Framebus, Plain}, []*runResult{synthetic(60, 60)}),
		aggregate(spinSc, Variant{Framebus, Spin}, nil),
	}}
	rep.Results[7].Skipped, rep.Results[7].Reason = true, "a reason"
	rep.Results[5].CPU.ProducerUSPerFrame = 600 // 1.2x the one-consumer producer
	rep.Targets = evaluateTargets(rep.Results)
	return rep
}

func TestBenchAggregate(t *testing.T) {
	rep := syntheticReport()
	r := rep.Results[0]
	if r.Samples != 2000 || len(r.Rounds) != 2 || r.FPS != 1600 || r.WaitingFrac != 0.9 {
		t.Errorf("aggregate: samples %d rounds %d fps %v waiting %v", r.Samples, len(r.Rounds), r.FPS, r.WaitingFrac)
	}
	if r.GBps != round3(1600*1920*1080*4/1e9) {
		t.Errorf("GB/s %v", r.GBps)
	}
	if r.Latency == nil || r.Read == nil || r.Publish == nil || r.Latency.P50 < 20 || r.Latency.P50 > 22 {
		t.Errorf("latency %+v", r.Latency)
	}
	if r.CPU.ProcessS != 4 || r.CPUSeconds != 1 {
		t.Errorf("cpu %+v %v", r.CPU, r.CPUSeconds)
	}
	if g := rep.Results[4]; g.Latency != nil || g.FPS != 1000 || g.WaitingFrac != -1 {
		t.Errorf("gstreamer row %+v", g)
	}
}

func TestBenchTargets(t *testing.T) {
	got := map[string]string{}
	for _, tg := range syntheticReport().Targets {
		got[tg.Name] = tg.Status
		if tg.Status != Skipped && tg.Got == "" {
			t.Errorf("%s: no value", tg.Name)
		}
	}
	want := map[string]string{
		"publish-to-wake vs raw futex":                 Met, // ~21 against 18 us
		"hand-off vs Unix socket, zero-copy":           Met, // 1000 against ~21 us
		"frames/s vs Unix socket":                      Met, // 1600 against 600
		"frames/s vs GStreamer shmsink->shmsrc":        Met, // 1600 against 1000
		"hand-off vs Unix socket, copying Publish":     Met, // 300 against 1000 us
		"4 consumers vs 1: producer CPU per frame":     Met, // 600 against 500 us
		"4 consumers vs 1: Commit call (wake fan-out)": Met,
		"spin consumer":                                Skipped,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
}

func TestBenchTableAndJSON(t *testing.T) {
	rep := syntheticReport()
	rep.Notes = []string{"a note"}
	var b bytes.Buffer
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, s := range []string{"1920x1080 RGBA, 1 consumer, as fast as possible, split", "framebus/plain", "futex",
		"framebus/spin skipped: a reason", "MET", "SKIPPED", "a note", "2.67x" /* fps x uds: 1600/600 */} {
		if !strings.Contains(out, s) {
			t.Errorf("table lacks %q:\n%s", s, out)
		}
	}
	b.Reset()
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"latency_us"`, `"read_us"`, `"fps"`, `"gbps"`, `"dropped"`, `"cpu_s"`, `"placement"`, `"mode"`, `"p999"`} {
		if !strings.Contains(b.String(), k) {
			t.Errorf("JSON lacks %s", k)
		}
	}
	back, err := ReadJSON(&b)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Results) != len(rep.Results) || back.Results[0].lat.TotalCount() != 2000 {
		t.Errorf("read back %d rows", len(back.Results))
	}
	var img bytes.Buffer
	if err := back.WritePlot(&img); err != nil {
		t.Fatal(err)
	}
	cfg, err := png.DecodeConfig(&img)
	if err != nil || cfg.Width < 300 || cfg.Height < 200 {
		t.Errorf("plot: %v %+v", err, cfg)
	}
	if err := (&Report{}).WritePlot(&img); err == nil {
		t.Error("plotted nothing")
	}
}
