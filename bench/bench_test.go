package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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
	code := m.Run()
	for _, f := range atExit {
		f()
	}
	os.Exit(code)
}

// atExit runs after the tests (what a test helper made for all of them).
var atExit []func()

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

// The quick subset is what the issues say: the camera scenario (1080p RGBA
// at 60 fps, free, every language pair, the futex floors, the spinning
// consumer, the Go consumer without the held wait), then 1080p RGBA and 640x480 GREY, one consumer, as fast as
// possible, split, framebus plain against futex, memcpy, uds and pipe.
func TestBenchQuickScenarios(t *testing.T) {
	q := QuickScenarios()
	if len(q) != 3 || q[0].Size != HD1080RGBA || q[1].Size != HD1080RGBA || q[2].Size != VGAGrey {
		t.Fatalf("quick scenarios: %v", q)
	}
	cam := q[0]
	if cam.Rate != 60 || cam.Placement != Free || cam.Consumers != 1 || cam.Checksum {
		t.Errorf("quick camera scenario %v", cam)
	}
	wantCam := []string{"framebus/plain", "framebus/plain go->c", "framebus/plain c->go", "c/plain", "futex", "futex c->c", "framebus/spin", "c/spin",
		"framebus/park", "framebus/park c->go"}
	if len(cam.Variants) != len(wantCam) {
		t.Fatalf("camera variants %v, want %v", cam.Variants, wantCam)
	}
	for i, v := range cam.Variants {
		if v.String() != wantCam[i] {
			t.Errorf("camera variant %d = %v, want %s", i, v, wantCam[i])
		}
	}
	want := []Variant{{Framebus, Plain, Pair{}}, {Futex, "", Pair{}}, {Memcpy, "", Pair{}}, {UDS, "", Pair{}}, {Pipe, "", Pair{}}}
	for _, s := range q[1:] {
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
	for _, k := range []string{"640x480 GREY", "1280x720 RGBA", "1920x1080 RGBA", "1920x1080 NV12", "3840x2160 I420", "c1", "c4",
		"as fast as possible", "30 fps", "120 fps", "60 fps", "split", "shared", "free",
		"framebus/plain", "framebus/copy", "framebus/spin", "futex", "memcpy", "uds", "pipe", "gstreamer",
		"framebus/plain go->c", "framebus/plain c->go", "c/plain", "c/spin", "futex c->c", "framebus/slow", "framebus/hold"} {
		if !seen[k] {
			t.Errorf("the full run has no %q", k)
		}
	}
	// The camera scenarios come first: 1080p RGBA and NV12, 30 and 60 fps,
	// free and split, checksums off and on.
	cam := map[string]bool{}
	for i, s := range full {
		if s.Rate != 60 && s.Rate != 30 || s.Size.Height != 1080 || s.Consumers != 1 || s.Placement == Shared {
			if i < 12 {
				t.Errorf("scenario %d (%v) before the camera scenarios end", i, s)
			}
			continue
		}
		cam[fmt.Sprintf("%v %g %v %v", s.Size.FormatName(), s.Rate, s.Placement, s.Checksum)] = true
	}
	for _, f := range []string{"RGBA", "NV12"} {
		for _, p := range []Placement{Free, Split} {
			for _, k := range []string{"60 %v false", "30 %v false", "60 %v true"} {
				if key := f + " " + fmt.Sprintf(k, p); !cam[key] {
					t.Errorf("no camera scenario %s", key)
				}
			}
		}
	}
}

// Pairs and checksums multiply the matrix; the baselines carry no checksum
// and appear once.
func TestBenchMatrixPairs(t *testing.T) {
	m := Matrix([]Size{HD1080NV12}, []int{1}, []float64{60}, []Placement{Free}, []Transport{Framebus, Futex, UDS},
		[]Mode{Plain, Copy, Spin}, Pairs, []bool{false, true})
	if len(m) != 2 || m[0].Checksum || !m[1].Checksum {
		t.Fatalf("scenarios %v", m)
	}
	names := func(s Scenario) string {
		var n []string
		for _, v := range s.Variants {
			n = append(n, v.String())
		}
		return strings.Join(n, ", ")
	}
	want := "framebus/plain, framebus/plain go->c, framebus/plain c->go, c/plain, framebus/copy, framebus/copy go->c, " +
		"framebus/spin, framebus/spin go->c, framebus/spin c->go, c/spin, futex, futex c->c, uds"
	if got := names(m[0]); got != want {
		t.Errorf("without checksums: %s\nwant %s", got, want)
	}
	wantCRC := "framebus/plain, framebus/plain go->c, framebus/plain c->go, c/plain, framebus/copy, framebus/copy go->c, " +
		"framebus/spin, framebus/spin go->c, framebus/spin c->go, c/spin"
	if got := names(m[1]); got != wantCRC {
		t.Errorf("with checksums: %s\nwant %s", got, wantCRC)
	}
	if err := (Config{Scenarios: m}).Validate(); err != nil {
		t.Error(err)
	}
	for _, in := range []string{"go->c", "GO-C", "c->c"} {
		if _, err := ParsePair(in); err != nil {
			t.Errorf("ParsePair(%q): %v", in, err)
		}
	}
	if _, err := ParsePair("rust->c"); err == nil {
		t.Error("ParsePair(rust->c) worked")
	}
	if s := (Variant{Transport: CFramebus, Mode: Plain}).Sides(); s != CC {
		t.Errorf("c sides %v", s)
	}
	if s := (Variant{Transport: GStreamer}).Sides(); s != CC {
		t.Errorf("gstreamer sides %v", s)
	}
}

// Hold rows come with their plain and slow rows, go->go whatever the
// pairs, on 4 slots; they are the Go consumer's only.
func TestBenchMatrixHold(t *testing.T) {
	m := Matrix([]Size{HD1080RGBA}, []int{1}, []float64{60}, []Placement{Free}, []Transport{Framebus, CFramebus},
		[]Mode{Hold}, []Pair{GoGo, CGo}, nil)
	if len(m) != 1 || m[0].Slots != DefaultHoldSlots {
		t.Fatalf("scenarios %v", m)
	}
	var names []string
	for _, v := range m[0].Variants {
		names = append(names, v.String())
	}
	if got := strings.Join(names, ", "); got != "framebus/plain, framebus/slow, framebus/hold" {
		t.Errorf("variants %s", got)
	}
	if s := m[0].String(); s != "1920x1080 RGBA, 1 consumer, 60 fps, free, 4 slots" {
		t.Errorf("scenario %q", s)
	}
	if p := Matrix([]Size{HD1080RGBA}, []int{1}, []float64{60}, []Placement{Free}, []Transport{Framebus}, []Mode{Plain}, nil, nil); p[0].Slots != 0 {
		t.Errorf("plain scenario on %d slots", p[0].Slots)
	}
	if err := (Config{Scenarios: m}).Validate(); err != nil {
		t.Error(err)
	}
	if err := (Config{Scenarios: []Scenario{HoldScenario()}}).Validate(); err != nil {
		t.Error(err)
	}
	sc := func(slots int, v Variant) Config {
		return Config{Scenarios: []Scenario{{Size: VGAGrey, Consumers: 1, Rate: 60, Placement: Free, Slots: slots, Variants: []Variant{v}}}}
	}
	for name, c := range map[string]Config{
		"hold c->go": sc(4, Variant{Framebus, Hold, CGo}),
		"slow go->c": sc(4, Variant{Framebus, Slow, GoC}),
		"c/hold":     sc(4, Variant{CFramebus, Hold, Pair{}}),
		"9 slots":    sc(9, fb(Hold)),
		"1 slot":     sc(1, fb(Plain)),
		"hold-for":   {Scenarios: sc(4, fb(Hold)).Scenarios, HoldFor: time.Microsecond},
	} {
		if err := c.Validate(); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%s: Validate() = %v, want ErrBadConfig", name, err)
		}
	}
}

// The hold targets judge the hold row against the slow one, and miss
// loudly: a copy with holds, a frame not intact, a slower Commit.
func TestBenchHoldTargets(t *testing.T) {
	sc := HoldScenario()
	run := func(commitUS float64, a *Analysis) *runResult {
		r := synthetic(9000, 6.6)
		r.pub = newHist()
		for i := 0; i < 100; i++ {
			record(r.pub, int64(commitUS*1000))
		}
		r.analysis = a
		return r
	}
	slowA := &Analysis{HoldForMS: 150, Taken: 30, Copies: 30, ViewOverwritten: 29}
	goodA := &Analysis{HoldForMS: 150, Taken: 30, Held: 30, HeldIntact: 30}
	badA := &Analysis{HoldForMS: 150, Taken: 30, Held: 28, HeldIntact: 27, HeldOverwritten: 1, Refused: 2, Copies: 2}
	for _, c := range []struct {
		name   string
		commit float64
		a      *Analysis
		want   [3]string
	}{
		{"good", 3, goodA, [3]string{Met, Met, Met}},
		{"bad", 4, badA, [3]string{Missed, Missed, Missed}},
	} {
		rs := []Result{
			aggregate(sc, fb(Plain), []*runResult{run(200, nil)}),
			aggregate(sc, fb(Slow), []*runResult{run(3, slowA)}),
			aggregate(sc, fb(Hold), []*runResult{run(c.commit, c.a)}),
		}
		var got [3]string
		n := 0
		for _, tg := range evaluateTargets(rs) {
			switch {
			case strings.HasPrefix(tg.Name, "producer Commit with holders"):
				got[0] = tg.Status
			case strings.HasPrefix(tg.Name, "slow consumer: copies per frame"):
				got[1] = tg.Status
				if !strings.Contains(tg.Got, "without 1.00 (30 copies for 30 frames; not copied, 29 of 30 would have been overwritten") {
					t.Errorf("%s: %s", c.name, tg.Got)
				}
			case tg.Name == "frames kept intact by a 150 ms analysis, holds":
				got[2] = tg.Status
			default:
				continue
			}
			n++
			if tg.Scenario != "1920x1080 RGBA, 1 consumer, 60 fps, free, 4 slots" {
				t.Errorf("%s: scenario %q", tg.Name, tg.Scenario)
			}
		}
		if got != c.want || n != 3 {
			t.Errorf("%s: targets %v (%d), want %v", c.name, got, n, c.want)
		}
	}
}

func TestBenchMatrix(t *testing.T) {
	m := Matrix([]Size{VGAGrey}, []int{1, 4}, []float64{0, 30}, []Placement{Split}, Transports, []Mode{Plain, Copy}, nil, nil)
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
	ok := Scenario{Size: VGAGrey, Consumers: 1, Placement: Split, Variants: []Variant{{Framebus, Plain, Pair{}}}}
	for name, c := range map[string]Config{
		"no scenarios":  {},
		"consumers":     {Scenarios: []Scenario{{Size: VGAGrey, Consumers: 0, Placement: Split, Variants: ok.Variants}}},
		"many":          {Scenarios: []Scenario{{Size: VGAGrey, Consumers: MaxConsumers + 1, Placement: Split, Variants: ok.Variants}}},
		"rate":          {Scenarios: []Scenario{{Size: VGAGrey, Consumers: 1, Rate: -1, Placement: Split, Variants: ok.Variants}}},
		"placement":     {Scenarios: []Scenario{{Size: VGAGrey, Consumers: 1, Placement: "both", Variants: ok.Variants}}},
		"no variants":   {Scenarios: []Scenario{{Size: VGAGrey, Consumers: 1, Placement: Split}}},
		"mode missing":  {Scenarios: []Scenario{{Size: VGAGrey, Consumers: 1, Placement: Split, Variants: []Variant{{Framebus, "", Pair{}}}}}},
		"baseline mode": {Scenarios: []Scenario{{Size: VGAGrey, Consumers: 1, Placement: Split, Variants: []Variant{{UDS, Plain, Pair{}}}}}},
		"transport":     {Scenarios: []Scenario{{Size: VGAGrey, Consumers: 1, Placement: Split, Variants: []Variant{{"tcp", "", Pair{}}}}}},
		"c copy":        {Scenarios: []Scenario{{Size: VGAGrey, Consumers: 1, Placement: Split, Variants: []Variant{{CFramebus, Copy, Pair{}}}}}},
		"c no mode":     {Scenarios: []Scenario{{Size: VGAGrey, Consumers: 1, Placement: Split, Variants: []Variant{{CFramebus, "", Pair{}}}}}},
		"c->go copy":    {Scenarios: []Scenario{{Size: VGAGrey, Consumers: 1, Placement: Split, Variants: []Variant{{Framebus, Copy, CGo}}}}},
		"framebus c->c": {Scenarios: []Scenario{{Size: VGAGrey, Consumers: 1, Placement: Split, Variants: []Variant{{Framebus, Plain, CC}}}}},
		"futex go->c":   {Scenarios: []Scenario{{Size: VGAGrey, Consumers: 1, Placement: Split, Variants: []Variant{{Futex, "", GoC}}}}},
		"uds c->c":      {Scenarios: []Scenario{{Size: VGAGrey, Consumers: 1, Placement: Split, Variants: []Variant{{UDS, "", CC}}}}},
		"bad pair":      {Scenarios: []Scenario{{Size: VGAGrey, Consumers: 1, Placement: Split, Variants: []Variant{{Framebus, Plain, Pair{"rust", "c"}}}}}},
		"size":          {Scenarios: []Scenario{{Size: Size{0, 1, framebus.FormatGrey}, Consumers: 1, Placement: Split, Variants: ok.Variants}}},
		"duration":      {Scenarios: []Scenario{ok}, Duration: time.Millisecond},
		"rounds":        {Scenarios: []Scenario{ok}, Rounds: -1},
		"twice":         {Scenarios: []Scenario{ok, ok}},
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
	camSc := Scenario{Size: HD1080RGBA, Consumers: 1, Rate: 60, Placement: Free}
	rep := &Report{Results: []Result{
		aggregate(sc, Variant{Framebus, Plain, Pair{}}, []*runResult{synthetic(20, 1500), synthetic(22, 1700)}),
		aggregate(sc, Variant{Framebus, Copy, Pair{}}, []*runResult{synthetic(300, 1200)}),
		aggregate(sc, Variant{Futex, "", Pair{}}, []*runResult{synthetic(18, 1600)}),
		aggregate(sc, Variant{UDS, "", Pair{}}, []*runResult{synthetic(1000, 600)}),
		aggregate(sc, Variant{GStreamer, "", Pair{}}, []*runResult{{fps: 1000, waiting: -1}}),
		aggregate(sc4, Variant{Framebus, Plain, Pair{}}, []*runResult{synthetic(25, 700)}),
		aggregate(spinSc, Variant{Framebus, Plain, Pair{}}, []*runResult{synthetic(60, 60)}),
		aggregate(spinSc, Variant{Framebus, Spin, Pair{}}, nil),
		// The camera scenario with its C legs (rows 8-15).
		aggregate(camSc, fb(Plain), []*runResult{synthetic(24, 60)}),
		aggregate(camSc, fbl(Plain, GoC), []*runResult{synthetic(26, 60)}),
		aggregate(camSc, fbl(Plain, CGo), []*runResult{synthetic(22, 60)}),
		aggregate(camSc, fbl(Plain, CC), []*runResult{synthetic(20, 60), synthetic(20, 60), synthetic(20, 60)}),
		aggregate(camSc, Variant{Transport: Futex}, []*runResult{synthetic(19, 60)}),
		aggregate(camSc, cFutex, []*runResult{synthetic(17, 60)}),
		aggregate(camSc, fb(Spin), []*runResult{synthetic(1.5, 60)}),
		aggregate(camSc, fbl(Spin, CC), []*runResult{synthetic(3, 60)}),
	}}
	rep.Results[7].Skipped, rep.Results[7].Reason = true, "a reason"
	rep.Results[5].CPU.ProducerUSPerFrame = 600 // 1.2x the one-consumer producer
	rep.Results[14].CPU.ConsumerPct = 41.5      // go spin: +1.5 points
	rep.Results[15].CPU.ConsumerPct = 45        // c spin: +5 points
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
		got[tg.Name+" | "+tg.Scenario] = tg.Status
		if tg.Status != Skipped && tg.Got == "" {
			t.Errorf("%s: no value", tg.Name)
		}
	}
	const (
		max1  = "1920x1080 RGBA, 1 consumer, as fast as possible, split"
		max4  = "1920x1080 RGBA, 4 consumers, as fast as possible, split"
		spin  = "1920x1080 RGBA, 1 consumer, 60 fps, split"
		cam60 = "1920x1080 RGBA, 1 consumer, 60 fps, free"
	)
	want := map[string]string{
		"publish-to-wake vs raw futex | " + max1:                 Met, // ~21 against 18 us
		"hand-off vs Unix socket, zero-copy | " + max1:           Met, // 1000 against ~21 us
		"frames/s vs Unix socket | " + max1:                      Met, // 1600 against 600
		"frames/s vs GStreamer shmsink->shmsrc | " + max1:        Met, // 1600 against 1000
		"hand-off vs Unix socket, copying Publish | " + max1:     Met, // 300 against 1000 us
		"4 consumers vs 1: producer CPU per frame | " + max4:     Met, // 600 against 500 us
		"4 consumers vs 1: Commit call (wake fan-out) | " + max4: Met,
		"spin consumer | " + spin:                                Skipped,
		"publish-to-wake vs raw futex | " + cam60:                Met,    // 24 against 19 us
		"c->c publish-to-wake vs raw futex in C | " + cam60:      Met,    // 20 against 17 us
		"publish-to-wake go->go vs c->c | " + cam60:              Met,    // 24 against 20: 1.2x
		"publish-to-wake go->c vs c->c | " + cam60:               Missed, // 26 against 20: 1.3x
		"spin consumer | " + cam60:                               Met,    // 1.5 us, p99 2.2 us, +1.5 points
		"spin consumer, c->c | " + cam60:                         Missed, // 3 us, +5 points
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d targets, want %d: %v", len(got), len(want), got)
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
		"framebus/spin skipped: a reason", "MET", "SKIPPED", "a note", "2.67x", /* fps x uds: 1600/600 */
		"framebus/plain go->c", "framebus/plain c->go", "c/plain", "futex c->c", "c/spin", "p50 xc->c", "commit p50",
		"1.20x" /* go->go against c->c */, "1.18x", /* c->c against the C futex */
		"framebus/spin against framebus/plain: p50 1.50 vs 24.0 us (16.0x lower)", "for +1.5 points of consumer CPU"} {
		if !strings.Contains(out, s) {
			t.Errorf("table lacks %q:\n%s", s, out)
		}
	}
	b.Reset()
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"latency_us"`, `"read_us"`, `"fps"`, `"gbps"`, `"dropped"`, `"cpu_s"`, `"placement"`, `"mode"`, `"p999"`,
		`"transport": "c"`, `"producer": "c"`, `"consumer": "go"`, `"checksum": false`} {
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
