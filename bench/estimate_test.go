package bench

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The full set's length is said in one place, docs/BENCHMARKS.md, and is
// the estimate of its plan (once 11, 30 and 40 minutes in three
// places); the Makefile and framebus bench --help refer to it and to
// --plan instead of giving a figure.
func TestFullSetEstimateInDocs(t *testing.T) {
	runs, d := Config{Scenarios: FullScenarios()}.Estimate(nil)
	doc, err := os.ReadFile("../docs/BENCHMARKS.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`framebus bench +# the full set: about (\d+) minutes on 2 CPUs \((\d+) runs\)`).FindSubmatch(doc)
	if m == nil {
		t.Fatal(`docs/BENCHMARKS.md has no "framebus bench   # the full set: about N minutes on 2 CPUs (N runs)" line`)
	}
	if mins, _ := strconv.Atoi(string(m[1])); mins != Minutes(d) {
		t.Errorf("docs/BENCHMARKS.md says about %d minutes, the plan %d (%v): make them say the same", mins, Minutes(d), d.Round(time.Second))
	}
	if n, _ := strconv.Atoi(string(m[2])); n != runs {
		t.Errorf("docs/BENCHMARKS.md says %d runs, the plan %d", n, runs)
	}
	for _, f := range []string{"../Makefile", "../cmd/framebus/bench.go"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "--plan") || regexp.MustCompile(`(?i)full (set|comparison)[^.]*about \d+ minutes`).Match(b) {
			t.Errorf("%s should refer to --plan and docs/BENCHMARKS.md, not give the full set's length", f)
		}
	}
}

// The estimate adds, per run, the warm-up, the measured time (a paced
// run's fewest frames), a slow consumer's analysis and the overhead; rows
// skipped take nothing.
func TestEstimate(t *testing.T) {
	c := Config{Duration: time.Second, Warmup: 100 * time.Millisecond, Rounds: 2, MinPacedFrames: 60, HoldFor: 50 * time.Millisecond,
		Scenarios: []Scenario{
			{Size: VGAGrey, Consumers: 1, Placement: Split, Variants: []Variant{fb(Plain), {Transport: UDS}}},
			{Size: HD1080RGBA, Consumers: 1, Rate: 30, Placement: Free, Variants: []Variant{fb(Plain), fb(Slow)}},
		}}
	runs, d := c.Estimate(nil)
	want := 2*2*(1100*time.Millisecond+RunOverhead) + 2*2*(2100*time.Millisecond+RunOverhead) + 2*50*time.Millisecond
	if runs != 8 || d != want {
		t.Errorf("estimate: %d runs, %v; want 8, %v", runs, d, want)
	}
	runs, _ = c.Estimate(func(sc Scenario, v Variant) bool { return v.Transport == UDS })
	if runs != 6 {
		t.Errorf("with uds skipped: %d runs, want 6", runs)
	}
}
