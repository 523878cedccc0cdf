//go:build linux

package bench

import (
	"context"
	"fmt"
)

// planRow is one variant of one scenario: its reason to be skipped, or its
// runs.
type planRow struct {
	sc   Scenario
	v    Variant
	skip string
	runs []*runResult
	errs []error
}

// plan is every scenario's rows, and how many runs they make.
func (r *runner) plan() (plan [][]*planRow, total int) {
	for _, sc := range r.cfg.Scenarios {
		var rows []*planRow
		for _, v := range sc.Variants {
			rw := &planRow{sc: sc, v: v, skip: r.skipReason(sc, v)}
			if rw.skip == "" {
				total += r.cfg.Rounds
			}
			rows = append(rows, rw)
		}
		plan = append(plan, rows)
	}
	return plan, total
}

// execute runs the plan; the context's error if it ended first.
func (r *runner) execute(ctx context.Context, plan [][]*planRow) error {
	cfg := r.cfg
	for si, rows := range plan {
		sc := cfg.Scenarios[si]
		// Rounds: every variant once, the order rotated each round, so that
		// a burst of load from a neighbour falls on all of them alike.
		for round := 0; round < cfg.Rounds; round++ {
			for i := range rows {
				rw := rows[(i+round)%len(rows)]
				if rw.skip != "" {
					continue
				}
				if cfg.Progress != nil {
					cfg.Progress.Step(fmt.Sprintf("%s %s x%d %s %s: %v #%d", sc.Size.Dims(), sc.Size.FormatName(),
						sc.Consumers, shortRate(sc.Rate), sc.Placement, rw.v, round+1))
				}
				rr, err := r.runOnce(ctx, sc, rw.v)
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if err != nil {
					cfg.Log.Warn("run failed", "scenario", sc.String(), "transport", rw.v.String(), "error", err)
					rw.errs = append(rw.errs, err)
					continue
				}
				rw.runs = append(rw.runs, rr)
			}
		}
	}
	return nil
}

// result is the row's result, and how many of its runs failed.
func (rw *planRow) result(rounds int) (Result, int) {
	var res Result
	switch {
	case rw.skip != "":
		res = aggregate(rw.sc, rw.v, nil)
		res.Skipped, res.Reason = true, rw.skip
	case len(rw.runs) == 0:
		res = aggregate(rw.sc, rw.v, nil)
		res.Skipped, res.Reason = true, "not measured"
		if len(rw.errs) > 0 {
			res.Reason = "failed: " + rw.errs[0].Error()
		}
	default:
		res = aggregate(rw.sc, rw.v, rw.runs)
		if len(rw.errs) > 0 {
			res.Note = joinNote(res.Note, fmt.Sprintf("%d of %d rounds failed: %v", len(rw.errs), rounds, rw.errs[0]))
		}
	}
	return res, len(rw.errs)
}

func joinNote(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// skipReason says why a variant cannot run here ("" if it can).
func (r *runner) skipReason(sc Scenario, v Variant) string {
	switch {
	case sc.Placement == Split && len(r.allowed) < 2:
		return "the split placement needs two CPUs; this process may use one"
	case v.Transport == GStreamer && r.gst == "":
		return r.gstWhy
	case v.Transport == GStreamer && (sc.Rate != 0 || sc.Consumers != 1):
		return "GStreamer is measured for throughput only: as fast as possible, one consumer"
	case v.Transport == Memcpy && sc.Rate != 0:
		return "memcpy is the copy limit: measured as fast as possible only"
	case v.Mode.analyses() && sc.Rate == 0:
		return fmt.Sprintf("the %s mode needs a fixed rate (e.g. --rates 60): in lockstep a slow consumer only slows the producer down", v.Mode)
	case v.usesC() && r.cbins == nil:
		return r.cWhy
	case v.usesC() && sc.Consumers > ctlMaxWaiters:
		return fmt.Sprintf("the C legs take at most %d consumers", ctlMaxWaiters)
	}
	return ""
}

// needsC says whether a scenario has a row with a C side.
func needsC(scs []Scenario) bool {
	for _, sc := range scs {
		for _, v := range sc.Variants {
			if v.usesC() {
				return true
			}
		}
	}
	return false
}
