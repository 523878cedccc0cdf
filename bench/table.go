package bench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteTable prints the report for people: one block per scenario, one row
// per transport with the ratios to the baselines of the same scenario, then
// the targets and the notes.
func (rep *Report) WriteTable(w io.Writer) error {
	var order []string
	rows := map[string][]*Result{}
	for i := range rep.Results {
		r := &rep.Results[i]
		k := r.scenarioKey()
		if _, ok := rows[k]; !ok {
			order = append(order, k)
		}
		rows[k] = append(rows[k], r)
	}
	m := rep.Machine
	fmt.Fprintf(w, "framebus bench: %s, %d CPUs", m.CPUModel, m.CPUs)
	if m.Hypervisor {
		fmt.Fprint(w, " (virtual machine)")
	}
	fmt.Fprintf(w, ", Linux %s, %s; %d rounds, %gs measured per run\n", m.Kernel, m.GoVersion, rep.Config.Rounds, rep.Config.DurationS)
	for _, k := range order {
		writeScenario(w, rows[k])
	}
	if len(rep.Targets) > 0 {
		fmt.Fprintf(w, "\nTargets (this run):\n")
		for _, t := range rep.Targets {
			got := t.Got
			if t.Status == Skipped {
				got = t.Why
			}
			fmt.Fprintf(w, "  %-7s %s, %s: want %s; %s\n", strings.ToUpper(t.Status), t.Name, t.Scenario, t.Want, got)
		}
	}
	if len(rep.Notes) > 0 {
		fmt.Fprintf(w, "\nNotes:\n")
		for _, n := range rep.Notes {
			fmt.Fprintf(w, "  - %s\n", n)
		}
	}
	if rep.Failed > 0 {
		fmt.Fprintf(w, "\n%d runs failed; their rows say why.\n", rep.Failed)
	}
	return nil
}

// writeScenario prints one scenario's block: its rows with the ratios to
// the baselines of the scenario, then their notes.
func writeScenario(w io.Writer, rs []*Result) {
	fmt.Fprintf(w, "\n%s\n", rs[0].ScenarioName())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "transport\t wake p50\tp90\tp99\tp99.9\tmax\tread p50\tcommit p50\tpub p50\tfps\tGB/s\tdrop\ttorn\tprod CPU\tcons CPU\tp50 xfutex\tp99 xfutex\tp50 xc->c\tuds p50 /\tfps xuds\t")
	fmt.Fprintln(tw, "\t us\tus\tus\tus\tus\tus\tus\tus\t\t\t\t\tus/frame\t%\t\t\t\tthis\t\t")
	futex, cfutex, uds := pickV(rs, Variant{Transport: Futex}), pickV(rs, cFutex), pickV(rs, Variant{Transport: UDS})
	for _, r := range rs {
		name := rowName(r)
		if r.Skipped {
			// Every cell, so that the columns stay aligned below.
			fmt.Fprintf(tw, "%s\t skipped%s\t\n", name, strings.Repeat("\t-", 18))
			continue
		}
		fx := futex // the futex of the row's own language: C rows against C's
		if r.Transport == string(CFramebus) {
			fx = cfutex
		}
		cells := []string{name}
		cells = append(cells, pcts(r.Latency)...)
		cells = append(cells, p50(r.Read), p50(r.Commit), p50(r.Publish), num(r.FPS), fmt.Sprintf("%.2f", r.GBps),
			fmt.Sprint(r.Dropped), fmt.Sprint(r.TornRetries), num(r.CPU.ProducerUSPerFrame), pct(r.CPU.ConsumerPct))
		cells = append(cells,
			ratio(r, fx, func(x *Result) float64 { return lat(x, 50) }, false),
			ratio(r, fx, func(x *Result) float64 { return lat(x, 99) }, false),
			ratio(r, cFloor(rs, r), func(x *Result) float64 { return lat(x, 50) }, false),
			ratio(r, uds, func(x *Result) float64 { return lat(x, 50) }, true),
			ratio(r, uds, func(x *Result) float64 { return x.FPS }, false))
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	tw.Flush()
	for _, r := range rs {
		switch {
		case r.Skipped:
			fmt.Fprintf(w, "  %s skipped: %s\n", rowName(r), strings.TrimSpace(r.Reason))
		case r.Note != "":
			fmt.Fprintf(w, "  %s: %s\n", rowName(r), r.Note)
		}
	}
	writeSpinLines(w, rs)
	writeAnalysisLines(w, rs)
}

// pickV is the measured row of variant v, or nil.
func pickV(rs []*Result, v Variant) *Result {
	for _, r := range rs {
		if r.is(v) && !r.Skipped {
			return r
		}
	}
	return nil
}

// cFloor is the C row a row is compared with in the "p50 xc->c" column: the
// c row of the same mode (plain for copy) for framebus rows, the C futex
// for the Go futex; nil for the others and the C rows themselves.
func cFloor(rs []*Result, r *Result) *Result {
	switch r.Transport {
	case string(Framebus):
		m := Mode(r.Mode)
		if m == Copy {
			m = Plain
		}
		return pickV(rs, fbl(m, CC))
	case string(Futex):
		if r.sides() == GoGo {
			return pickV(rs, cFutex)
		}
	}
	return nil
}

// writeSpinLines puts the spinning consumer's gain next to its cost: each
// measured spin row against the plain row of the same languages.
func writeSpinLines(w io.Writer, rs []*Result) {
	for _, r := range rs {
		if r.Mode != string(Spin) || r.Skipped || r.Latency == nil {
			continue
		}
		var plain *Result
		for _, p := range rs {
			if p.Transport == r.Transport && p.Mode == string(Plain) && p.sides() == r.sides() && !p.Skipped {
				plain = p
			}
		}
		if plain == nil || plain.Latency == nil {
			continue
		}
		fmt.Fprintf(w, "  %s against %s: p50 %s vs %s us (%.1fx lower), p99 %s vs %s us, for %+.1f points of consumer CPU (%.1f%% vs %.1f%%, %s vs %s us per frame)\n",
			rowName(r), rowName(plain), num(r.Latency.P50), num(plain.Latency.P50), plain.Latency.P50/r.Latency.P50,
			num(r.Latency.P99), num(plain.Latency.P99), r.CPU.ConsumerPct-plain.CPU.ConsumerPct, r.CPU.ConsumerPct, plain.CPU.ConsumerPct,
			num(r.CPU.ConsumerUSPerFrame), num(plain.CPU.ConsumerUSPerFrame))
	}
}

// writeAnalysisLines says what the slow consumer of the slow and hold rows
// did, and what the producer's Begin and Commit cost in each framebus row
// of the scenario (the holders' cost is there).
func writeAnalysisLines(w io.Writer, rs []*Result) {
	any := false
	for _, r := range rs {
		if a := r.Analysis; a != nil && !r.Skipped && a.Taken > 0 {
			any = true
			fmt.Fprintf(w, "  %s analysis (%s ms a frame): %d frames taken, %.2f copies per frame, held %d (intact %d, taken back %d, changed %d), refused %d, zero-copy views overwritten %d\n",
				rowName(r), num(a.HoldForMS), a.Taken, float64(a.Copies)/float64(a.Taken), a.Held, a.HeldIntact, a.HeldOverwritten,
				a.HeldCorrupt, a.Refused, a.ViewOverwritten)
		}
	}
	if !any {
		return
	}
	for _, r := range rs {
		if r.Skipped || r.Transport != string(Framebus) || r.Publish == nil {
			continue
		}
		fmt.Fprintf(w, "  %s producer: Commit p50 %s p99 %s us", rowName(r), num(r.Publish.P50), num(r.Publish.P99))
		if r.Begin != nil {
			fmt.Fprintf(w, ", Begin p50 %s p99 %s us", num(r.Begin.P50), num(r.Begin.P99))
		}
		fmt.Fprintln(w)
	}
}

func lat(r *Result, p int) float64 {
	if r.Latency == nil {
		return 0
	}
	if p == 99 {
		return r.Latency.P99
	}
	return r.Latency.P50
}

// ratio is f(r)/f(base), or f(base)/f(r) when inverse: "-" for the baseline
// itself and where either is missing.
func ratio(r, base *Result, f func(*Result) float64, inverse bool) string {
	if base == nil || r == base {
		return "-"
	}
	a, b := f(r), f(base)
	if inverse {
		a, b = b, a
	}
	if a <= 0 || b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

func pcts(p *Percentiles) []string {
	if p == nil {
		return []string{"-", "-", "-", "-", "-"}
	}
	return []string{num(p.P50), num(p.P90), num(p.P99), num(p.P999), num(p.Max)}
}

func p50(p *Percentiles) string {
	if p == nil {
		return "-"
	}
	return num(p.P50)
}

// num prints with 3 significant digits or more: 1.23, 12.3, 123, 12345.
func num(x float64) string {
	switch {
	case x == 0:
		return "0"
	case x < 10:
		return fmt.Sprintf("%.2f", x)
	case x < 100:
		return fmt.Sprintf("%.1f", x)
	}
	return fmt.Sprintf("%.0f", x)
}

func pct(x float64) string {
	if x == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", x)
}

// rowName is "framebus/plain", "framebus/plain go->c", "c/spin", "futex",
// "futex c->c".
func rowName(r *Result) string {
	n := r.Transport
	if r.Mode != "" {
		n += "/" + r.Mode
	}
	switch r.Transport {
	case string(Framebus), string(Futex):
		if s := r.sides(); s != GoGo && s.Producer != "" {
			n += " " + s.String()
		}
	}
	return n
}
