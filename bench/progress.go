package bench

import (
	"io"
	"time"

	// progressbar: a well-kept terminal progress bar (throttled redraws,
	// ETA, clean finish), better than one of our own.
	"github.com/schollz/progressbar/v3"
)

// NewProgressBar is a Progress that draws a bar on w (a terminal): runs
// done of all, the current run, the time left.
func NewProgressBar(w io.Writer) Progress { return &bar{w: w} }

type bar struct {
	w       io.Writer
	b       *progressbar.ProgressBar
	started bool
}

func (p *bar) Start(total int) {
	p.b = progressbar.NewOptions(total,
		progressbar.OptionSetWriter(p.w),
		progressbar.OptionSetWidth(20),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetDescription("framebus bench"),
	)
}

func (p *bar) Step(label string) {
	if p.b == nil {
		return
	}
	if p.started {
		p.b.Add(1)
	}
	p.started = true
	p.b.Describe(label)
}

func (p *bar) Finish() {
	if p.b == nil {
		return
	}
	p.b.Finish()
	p.b.Clear()
}
