package capture

import (
	"context"
	"time"
)

// pacer spaces frames at a fixed rate on a nanosecond clock (framebus.Now). A frame that
// comes late is not followed by a burst: when the schedule falls more than a
// period behind, it restarts from now. It allocates nothing per frame.
type pacer struct {
	period int64 // ns; 0 = no pacing
	next   int64 // when the next frame is due
	timer  *time.Timer
	now    func() int64
}

func newPacer(num, den uint32, now func() int64) pacer {
	p := pacer{now: now}
	if num > 0 {
		p.period = int64(float64(den) / float64(num) * 1e9)
	}
	return p
}

// wait returns when the next frame is due, or with the context's error.
func (p *pacer) wait(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if p.period <= 0 {
		return nil
	}
	now := p.now()
	if p.next == 0 || now-p.next > p.period {
		p.next = now // first frame, or more than a frame late: no catch-up burst
	}
	if d := p.next - now; d > 0 {
		if p.timer == nil {
			p.timer = time.NewTimer(time.Duration(d))
		} else {
			p.timer.Reset(time.Duration(d))
		}
		select {
		case <-p.timer.C:
		case <-ctx.Done():
			p.timer.Stop()
			return ctx.Err()
		}
	}
	p.next += p.period
	return nil
}

func (p *pacer) stop() {
	if p.timer != nil {
		p.timer.Stop()
	}
}
