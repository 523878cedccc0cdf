package bench

import (
	"fmt"

	"github.com/framebus/framebus/framebus"
)

// Target statuses.
const (
	Met     = "met"
	Missed  = "missed"
	Skipped = "skipped"
)

// scenarioKey groups the rows of one scenario.
func (r *Result) scenarioKey() string {
	k := fmt.Sprintf("%s %s c%d r%g %s", r.Size, r.Format, r.Consumers, r.Rate, r.Placement)
	if r.Checksum {
		k += " crc"
	}
	if r.Slots != 0 {
		k += fmt.Sprintf(" s%d", r.Slots)
	}
	return k
}

// ScenarioName describes a row's scenario for people.
func (r *Result) ScenarioName() string {
	c := "1 consumer"
	if r.Consumers != 1 {
		c = fmt.Sprintf("%d consumers", r.Consumers)
	}
	return fmt.Sprintf("%s %s, %s, %s, %s%s%s", r.Size, r.Format, c, rateName(r.Rate), r.Placement, checksumName(r.Checksum), slotsName(r.Slots))
}

// sides is the row's languages.
func (r *Result) sides() Pair {
	return Pair{Lang(r.Producer), Lang(r.Consumer)}
}

// is says whether the row is variant v.
func (r *Result) is(v Variant) bool {
	s := v.Sides()
	return r.Transport == string(v.Transport) && r.Mode == string(v.Mode) &&
		(v.Transport == Memcpy || r.sides() == s)
}

// find returns the row of a Go transport and mode in the scenario of key,
// or nil.
func find(rs []Result, key string, t Transport, m Mode) *Result {
	return findV(rs, key, Variant{Transport: t, Mode: m})
}

// findV returns the row of variant v in the scenario of key, or nil.
func findV(rs []Result, key string, v Variant) *Result {
	for i := range rs {
		r := &rs[i]
		if r.scenarioKey() == key && r.is(v) {
			return r
		}
	}
	return nil
}

func measured(r *Result) bool { return r != nil && !r.Skipped }

func status(ok bool) string {
	if ok {
		return Met
	}
	return Missed
}

// evaluateTargets judges the targets on the rows of one run (each
// comparison within one scenario, or between two scenarios that differ only
// in the number of consumers).
func evaluateTargets(rs []Result) []Target {
	ts := []Target{}
	seen := map[string]bool{}
	for i := range rs {
		key := rs[i].scenarioKey()
		if seen[key] {
			continue
		}
		seen[key] = true
		sc := scenarioRows{rs: rs, key: key, name: rs[i].ScenarioName(), r0: &rs[i]}
		ts = append(ts, sc.futexTargets()...)
		ts = append(ts, sc.socketTargets()...)
		ts = append(ts, sc.fanOutTargets()...)
		ts = append(ts, sc.spinTargets()...)
		// Holds (amendment 10): the slow consumer with and without them.
		if hold := find(sc.rs, sc.key, Framebus, Hold); hold != nil {
			ts = append(ts, holdTargets(sc.rs, sc.key, sc.name, hold)...)
		}

		ts = append(ts, sc.cFutexTargets()...)
		ts = append(ts, sc.goFloorTargets()...)
	}
	return ts
}

// scenarioRows are the rows of one scenario (r0 the first of them) among
// all the rows of a run.
type scenarioRows struct {
	rs   []Result
	key  string
	name string
	r0   *Result
}

// futexTargets judges publish-to-wake against the raw futex, same scenario.
func (sc scenarioRows) futexTargets() []Target {
	return floorTarget("publish-to-wake vs raw futex", sc.name, "the futex's",
		find(sc.rs, sc.key, Framebus, Plain), find(sc.rs, sc.key, Futex, ""))
}

// floorTarget judges row's publish-to-wake against floor's (a futex's):
// p50 at most 1.3x, p99 at most 2x; none when either is not measured.
func floorTarget(tname, scenario, floorName string, row, floor *Result) []Target {
	if !measured(row) || !measured(floor) || row.Latency == nil || floor.Latency == nil {
		return nil
	}
	r50, r99 := row.Latency.P50/floor.Latency.P50, row.Latency.P99/floor.Latency.P99
	return []Target{{Name: tname, Scenario: scenario,
		Want: "p50 <= 1.3x and p99 <= 2x " + floorName,
		Got: fmt.Sprintf("p50 %.2fx (%.1f vs %.1f us), p99 %.2fx (%.1f vs %.1f us)", r50, row.Latency.P50, floor.Latency.P50,
			r99, row.Latency.P99, floor.Latency.P99),
		Status: status(r50 <= 1.3 && r99 <= 2)}}
}

// socketTargets judges 1080p RGBA, one consumer, as fast as possible:
// against the socket and GStreamer.
func (sc scenarioRows) socketTargets() []Target {
	rs, key, name, r0 := sc.rs, sc.key, sc.name, sc.r0
	plain := find(rs, key, Framebus, Plain)
	copyRow := find(rs, key, Framebus, Copy)
	uds, gst := find(rs, key, UDS, ""), find(rs, key, GStreamer, "")
	var ts []Target
	if r0.Size == HD1080RGBA.Dims() && r0.Format == "RGBA" && r0.Consumers == 1 && r0.Rate == 0 && measured(uds) && uds.Latency != nil {
		if measured(plain) && plain.Latency != nil {
			x := uds.Latency.P50 / plain.Latency.P50
			ts = append(ts, Target{Name: "hand-off vs Unix socket, zero-copy", Scenario: name,
				Want: "p50 at least 20x lower than the socket's",
				Got:  fmt.Sprintf("%.1fx lower (%.1f vs %.1f us)", x, plain.Latency.P50, uds.Latency.P50), Status: status(x >= 20)})
			f := plain.FPS / uds.FPS
			ts = append(ts, Target{Name: "frames/s vs Unix socket", Scenario: name, Want: "at least 2.5x the socket's",
				Got: fmt.Sprintf("%.2fx (%.0f vs %.0f fps)", f, plain.FPS, uds.FPS), Status: status(f >= 2.5)})
			switch {
			case measured(gst):
				g := plain.FPS / gst.FPS
				ts = append(ts, Target{Name: "frames/s vs GStreamer shmsink->shmsrc", Scenario: name, Want: "at least GStreamer's",
					Got: fmt.Sprintf("%.2fx (%.0f vs %.0f fps)", g, plain.FPS, gst.FPS), Status: status(g >= 1)})
			case gst != nil:
				ts = append(ts, Target{Name: "frames/s vs GStreamer shmsink->shmsrc", Scenario: name, Want: "at least GStreamer's",
					Status: Skipped, Why: gst.Reason})
			}
		}
		if measured(copyRow) && copyRow.Latency != nil {
			ts = append(ts, Target{Name: "hand-off vs Unix socket, copying Publish", Scenario: name, Want: "p50 lower than the socket's",
				Got:    fmt.Sprintf("%.1f vs %.1f us (%.1fx lower)", copyRow.Latency.P50, uds.Latency.P50, uds.Latency.P50/copyRow.Latency.P50),
				Status: status(copyRow.Latency.P50 < uds.Latency.P50)})
		}
	}
	return ts
}

// fanOutTargets judges four consumers against one: the producer's cost.
func (sc scenarioRows) fanOutTargets() []Target {
	rs, key, name, r0 := sc.rs, sc.key, sc.name, sc.r0
	plain := find(rs, key, Framebus, Plain)
	var ts []Target
	if r0.Consumers == 4 && measured(plain) {
		one := fmt.Sprintf("%s %s c1 r%g %s", r0.Size, r0.Format, r0.Rate, r0.Placement)
		if r0.Slots != 0 {
			one += fmt.Sprintf(" s%d", r0.Slots)
		}
		if p1 := find(rs, one, Framebus, Plain); measured(p1) {
			cpu := plain.CPU.ProducerUSPerFrame / p1.CPU.ProducerUSPerFrame
			ts = append(ts, Target{Name: "4 consumers vs 1: producer CPU per frame", Scenario: name, Want: "less than 1.5x",
				Got: fmt.Sprintf("%.2fx (%.1f vs %.1f us of CPU per frame, rendering included)", cpu,
					plain.CPU.ProducerUSPerFrame, p1.CPU.ProducerUSPerFrame), Status: status(cpu < 1.5)})
			if plain.Publish != nil && p1.Publish != nil {
				c := plain.Publish.P50 / p1.Publish.P50
				ts = append(ts, Target{Name: "4 consumers vs 1: Commit call (wake fan-out)", Scenario: name, Want: "less than 1.5x",
					Got: fmt.Sprintf("%.2fx (p50 %.1f vs %.1f us)", c, plain.Publish.P50, p1.Publish.P50), Status: status(c < 1.5)})
			}
		}
	}
	return ts
}

// spinTargets judges the spinning consumer against the plain one, in Go and in C.
func (sc scenarioRows) spinTargets() []Target {
	rs, key, name := sc.rs, sc.key, sc.name
	var ts []Target
	for _, sv := range []Variant{fb(Spin), fbl(Spin, CC)} {
		spin := findV(rs, key, sv)
		if spin == nil {
			continue
		}
		plain := findV(rs, key, Variant{Transport: sv.Transport, Mode: Plain, Lang: sv.Lang})
		n := "spin consumer"
		if sv.Transport == CFramebus {
			n = "spin consumer, c->c"
		}
		t := Target{Name: n, Scenario: name, Want: "publish-to-wake p50 under 2 us and p99 under 50 us, for under 3 points more consumer CPU than plain"}
		switch {
		case spin.Skipped:
			t.Status, t.Why = Skipped, spin.Reason
		case spin.Latency == nil || !measured(plain) || plain.Latency == nil:
			t.Status, t.Why = Skipped, "no plain row to compare with"
		default:
			extra := spin.CPU.ConsumerPct - plain.CPU.ConsumerPct
			t.Got = fmt.Sprintf("p50 %.2f us (plain %.1f us), p99 %.1f us, consumer CPU %+.1f points (%.1f%% vs %.1f%%)",
				spin.Latency.P50, plain.Latency.P50, spin.Latency.P99, extra, spin.CPU.ConsumerPct, plain.CPU.ConsumerPct)
			t.Status = status(spin.Latency.P50 < 2 && spin.Latency.P99 < 50 && extra < 3)
		}
		ts = append(ts, t)
	}
	return ts
}

// cFutexTargets judges the protocol in C against the raw futex in C:
// framebus's own cost, without Go's.
func (sc scenarioRows) cFutexTargets() []Target {
	return floorTarget("c->c publish-to-wake vs raw futex in C", sc.name, "the C futex's",
		findV(sc.rs, sc.key, fbl(Plain, CC)), findV(sc.rs, sc.key, cFutex))
}

// goFloorTargets judges the Go legs against the protocol's own C floor:
// 1080p at 60 fps, checksums off, free and split (docs/BENCHMARKS.md,
// "Targets").
func (sc scenarioRows) goFloorTargets() []Target {
	rs, key, name, r0 := sc.rs, sc.key, sc.name, sc.r0
	var ts []Target
	if r0.Size == "1920x1080" && r0.Rate == 60 && r0.Consumers == 1 && !r0.Checksum {
		cc := findV(rs, key, fbl(Plain, CC))
		for _, c := range []struct {
			v    Variant
			name string
			max  float64
		}{
			{fb(Plain), "go->go vs c->c", 1.3},
			{fbl(Plain, GoC), "go->c vs c->c", 1.2},
		} {
			row := findV(rs, key, c.v)
			if row == nil || cc == nil {
				continue
			}
			t := Target{Name: "publish-to-wake " + c.name, Scenario: name, Want: fmt.Sprintf("p50 <= %.1fx the c->c row's", c.max)}
			switch {
			case cc.Skipped:
				t.Status, t.Why = Skipped, "c->c: "+cc.Reason
			case row.Skipped:
				t.Status, t.Why = Skipped, row.Reason
			case row.Latency == nil || cc.Latency == nil:
				t.Status, t.Why = Skipped, "no latency measured"
			default:
				x := row.Latency.P50 / cc.Latency.P50
				t.Got = fmt.Sprintf("%.2fx (%.1f vs %.1f us; by round %s vs %s)", x, row.Latency.P50, cc.Latency.P50, roundP50s(row), roundP50s(cc))
				t.Status = status(x <= c.max)
			}
			ts = append(ts, t)
		}
	}
	return ts
}

// roundP50s lists a row's p50 of each round: "[40.1 38.2 44.0]".
func roundP50s(r *Result) string {
	s := "["
	for i, rd := range r.Rounds {
		if i > 0 {
			s += " "
		}
		s += num(rd.P50)
	}
	return s + "]"
}

// holdTargets judges the hold row of a scenario against its slow row (the
// same analysis, without holds) and its plain row (a consumer that reads
// every frame as it comes: no holders): what the holders cost the
// producer's Commit, the copies the slow consumer makes, and the frames its
// analysis keeps intact.
func holdTargets(rs []Result, key, name string, hold *Result) []Target {
	slow, plain := find(rs, key, Framebus, Slow), find(rs, key, Framebus, Plain)
	var ts []Target
	skip := func(t Target, why string) Target {
		t.Status, t.Why = Skipped, why
		return t
	}
	d := "the analysis"
	if a := hold.Analysis; a != nil {
		d = fmt.Sprintf("a %s ms analysis", num(a.HoldForMS))
	}

	// (a) The producer's Commit with holders against without, same run.
	t := Target{Name: "producer Commit with holders vs without", Scenario: name,
		Want: "p50 and p99 within 1.1x of the slow row's (the same consumer without holds)"}
	switch {
	case hold.Skipped:
		ts = append(ts, skip(t, hold.Reason))
	case !measured(slow) || slow.Publish == nil || hold.Publish == nil:
		ts = append(ts, skip(t, "no slow row to compare with"))
	default:
		r50, r99 := hold.Publish.P50/slow.Publish.P50, hold.Publish.P99/slow.Publish.P99
		t.Got = fmt.Sprintf("p50 %.2fx (%s vs %s us), p99 %.2fx (%s vs %s us)", r50, num(hold.Publish.P50), num(slow.Publish.P50),
			r99, num(hold.Publish.P99), num(slow.Publish.P99))
		if hold.Begin != nil && slow.Begin != nil {
			t.Got += fmt.Sprintf("; Begin (the slot choice) p50 %s vs %s us, p99 %s vs %s us", num(hold.Begin.P50), num(slow.Begin.P50),
				num(hold.Begin.P99), num(slow.Begin.P99))
		}
		if measured(plain) && plain.Publish != nil {
			t.Got += fmt.Sprintf("; against plain (a consumer woken every frame) p50 %.2fx, p99 %.2fx (%s, %s us)",
				hold.Publish.P50/plain.Publish.P50, hold.Publish.P99/plain.Publish.P99, num(plain.Publish.P50), num(plain.Publish.P99))
		}
		t.Status = status(r50 <= 1.1 && r99 <= 1.1)
		ts = append(ts, t)
	}

	// (b) Copies per frame of the slow consumer, before and after.
	t = Target{Name: "slow consumer: copies per frame, holds vs copies", Scenario: name,
		Want: "0 copies per frame with holds (1 without)"}
	a := hold.Analysis
	switch {
	case hold.Skipped:
		ts = append(ts, skip(t, hold.Reason))
	case a == nil || a.Taken == 0:
		ts = append(ts, skip(t, "the hold row took no frame"))
	default:
		t.Got = fmt.Sprintf("with holds %.2f (%d copies for %d frames, %d refused)", float64(a.Copies)/float64(a.Taken), a.Copies, a.Taken, a.Refused)
		if measured(slow) && slow.Analysis != nil && slow.Analysis.Taken > 0 {
			b := slow.Analysis
			t.Got += fmt.Sprintf("; without %.2f (%d copies for %d frames; not copied, %d of %d would have been overwritten by the end of %s)",
				float64(b.Copies)/float64(b.Taken), b.Copies, b.Taken, b.ViewOverwritten, b.Taken, d)
		}
		t.Status = status(a.Copies == 0)
		ts = append(ts, t)
	}

	// (c) The frames the analysis keeps intact.
	t = Target{Name: "frames kept intact by " + d + ", holds", Scenario: name,
		Want: "every frame taken held and intact at the end (Valid, same CRC-32C)"}
	switch {
	case hold.Skipped:
		ts = append(ts, skip(t, hold.Reason))
	case hold.Slots != 0 && hold.Slots <= framebus.MinSlots:
		ts = append(ts, skip(t, fmt.Sprintf("a %d-slot bus allows no holds (the cap is slots - 2)", hold.Slots)))
	case a == nil || a.Taken == 0:
		ts = append(ts, skip(t, "the hold row took no frame"))
	default:
		t.Got = fmt.Sprintf("%d of %d (held %d, refused %d, taken back %d, changed while held %d)", a.HeldIntact, a.Taken, a.Held, a.Refused,
			a.HeldOverwritten, a.HeldCorrupt)
		if measured(slow) && slow.Analysis != nil && slow.Analysis.Taken > 0 {
			b := slow.Analysis
			t.Got += fmt.Sprintf("; without holds the zero-copy view kept %d of %d", b.Taken-b.ViewOverwritten, b.Taken)
		}
		t.Status = status(a.HeldIntact == a.Taken && a.HeldCorrupt == 0)
		ts = append(ts, t)
	}
	return ts
}
