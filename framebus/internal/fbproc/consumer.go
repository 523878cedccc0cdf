package main

import (
	"context"
	"errors"
	"flag"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/framebus/feed"
)

// consumerFlags are the consumer's flags.
type consumerFlags struct {
	name, dir                          string
	count                              int
	wait, timeout, hold, memEvery      time.Duration
	holdFor                            time.Duration
	verify, copyOut, logSeqs, logDrops bool
	exitOnGone, tolerate, guard        bool
	logHolds                           bool
}

func parseConsumer(args []string) *consumerFlags {
	o := &consumerFlags{}
	fs := flag.NewFlagSet("consumer", flag.ExitOnError)
	fs.StringVar(&o.name, "name", "t", "bus name")
	fs.StringVar(&o.dir, "dir", "", "bus directory")
	fs.IntVar(&o.count, "count", 0, "stop after this many frames (0: until closed)")
	fs.DurationVar(&o.wait, "wait", 10*time.Second, "how long to wait for the producer")
	fs.DurationVar(&o.timeout, "timeout", 60*time.Second, "give up after this long in total")
	fs.BoolVar(&o.verify, "verify", true, "check every frame's pattern")
	fs.BoolVar(&o.copyOut, "copy", false, "use ReadInto instead of Next")
	fs.BoolVar(&o.logSeqs, "log-seqs", false, "emit one line per delivered frame")
	fs.BoolVar(&o.exitOnGone, "exit-on-gone", false, "stop at the first producer-gone")
	fs.DurationVar(&o.hold, "hold", 0, "sleep this long after each frame (a slow consumer)")
	fs.BoolVar(&o.tolerate, "tolerate-corrupt", false, "report ErrCorrupt and ErrChecksum results and carry on (else they end the run)")
	fs.DurationVar(&o.memEvery, "memstats", 0, "emit the Go runtime's memory statistics this often (0: never)")
	fs.BoolVar(&o.logDrops, "log-drops", false, "emit one line per delivered frame that follows a gap (with its wake-up lag)")
	fs.BoolVar(&o.guard, "guard", false, "verify zero-copy views under debug.SetPanicOnFault (a view of a truncated file faults)")
	fs.DurationVar(&o.holdFor, "hold-for", 0, "hold every frame (Frame.Hold) and release it this long after, checking it is intact (0: no holds)")
	fs.BoolVar(&o.logHolds, "log-holds", false, "emit one line per hold granted")
	fs.Parse(args)
	return o
}

func consumer(args []string) {
	o := parseConsumer(args)
	if o.memEvery > 0 {
		go memStats(o.memEvery)
	}
	c, err := framebus.Open(o.name, framebus.ConsumerOptions{Dir: o.dir, Wait: o.wait})
	if err != nil {
		fatal(err)
	}
	emit("joined", map[string]any{"generation": c.Generation(), "entry": c.Entry(), "last_seq": c.Stats().LastSeq})
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-sig; cancel() }()

	r := &reader{o: o, c: c, gens: []uint64{c.Generation()}, result: "count", hs: newHolder(o.holdFor)}
	if o.copyOut {
		r.dst = make([]byte, c.Format().FrameSize)
	}
	r.run(ctx)
	r.hs.releaseAll()
	r.summary()
	c.Close()
}

// reader reads and checks the numbered frames.
type reader struct {
	o *consumerFlags
	c *framebus.Consumer

	delivered, dropped, torn, bad uint64
	corrupt, viewFaults           uint64
	first, last                   uint64
	gens                          []uint64
	dst                           []byte
	result                        string
	hs                            *holder
}

// run reads until -count frames, the end of the stream, or an error that
// ends the run (its result).
func (r *reader) run(ctx context.Context) {
	for r.o.count == 0 || int(r.delivered) < r.o.count {
		f, err := r.next(ctx)
		if errors.Is(err, framebus.ErrShortBuffer) && r.o.copyOut {
			r.dst = make([]byte, r.c.Format().FrameSize)
			continue
		}
		if err != nil {
			if r.failed(err) {
				return
			}
			continue
		}
		r.frame(f)
		if r.o.holdFor > 0 && !r.o.copyOut {
			r.hs.hold(f, r.o.logHolds)
		}
		if r.o.hold > 0 {
			time.Sleep(r.o.hold)
		}
	}
}

func (r *reader) next(ctx context.Context) (*framebus.Frame, error) {
	if r.o.copyOut {
		return r.c.ReadInto(ctx, r.dst)
	}
	return r.c.Next(ctx)
}

// failed reports an error of a read; true when it ends the run. The kinds
// are the shared consumer loop's (framebus/feed); this loop reports every
// event of each kind instead of riding them out.
func (r *reader) failed(err error) (end bool) {
	kind := feed.Classify(err)
	switch {
	case kind == feed.Waiting && errors.Is(err, framebus.ErrProducerGone):
		emit("gone", map[string]any{"last_seq": r.last})
		if r.o.exitOnGone {
			r.result = "gone"
			return true
		}
		return false
	case kind == feed.Waiting:
		emit("stalled", map[string]any{"last_seq": r.last})
		return false
	case kind == feed.EndOfStream && errors.Is(err, framebus.ErrEndOfStream):
		var eos *framebus.EndOfStreamError
		if errors.As(err, &eos) {
			r.dropped += eos.Dropped
		}
		r.result = "closed"
	case kind == feed.Deadline:
		r.result = "timeout"
	case r.o.tolerate && kind == feed.Transient:
		r.corrupt++
		emit("corrupt", map[string]any{"error": err.Error(), "last_seq": r.last})
		return false
	default:
		emit("error", map[string]any{"error": err.Error()})
		r.result = "error"
	}
	return true
}

// frame checks and counts a delivered frame.
func (r *reader) frame(f *framebus.Frame) {
	if f.GenerationChanged {
		r.gens = append(r.gens, f.Generation)
		emit("generation", map[string]any{"generation": f.Generation, "seq": f.Seq})
	}
	if !r.intact(f) {
		r.bad++
		emit("bad", map[string]any{"seq": f.Seq})
	}
	if r.first == 0 {
		r.first = f.Seq
	}
	if f.Seq <= r.last {
		emit("order", map[string]any{"seq": f.Seq, "last": r.last})
		r.bad++
	}
	r.last = f.Seq
	r.delivered++
	r.dropped += f.Dropped
	r.torn += f.TornRetries
	if r.o.logSeqs {
		emit("frame", map[string]any{"seq": f.Seq, "dropped": f.Dropped, "wake_ns": f.WakeNS, "commit_ns": f.CommitNS})
	}
	if r.o.logDrops && f.Dropped > 0 && !r.o.logSeqs {
		emit("drop", map[string]any{"seq": f.Seq, "dropped": f.Dropped, "wake_ns": f.WakeNS, "commit_ns": f.CommitNS})
	}
}

// intact checks the frame's pattern (with -verify).
func (r *reader) intact(f *framebus.Frame) bool {
	if !r.o.verify {
		return true
	}
	ok := true
	if r.o.guard && !r.o.copyOut {
		if framebus.Guard(func() { ok = Check(f.Data, f.Seq) }) != nil {
			// The file was truncated under the view: not a torn frame, a
			// view that can no longer be read.
			r.viewFaults++
			emit("viewfault", map[string]any{"seq": f.Seq})
			ok = true
		}
	} else {
		ok = Check(f.Data, f.Seq)
	}
	if !r.o.copyOut && !f.Valid() {
		// The producer lapped us while we verified: a zero-copy view must
		// be re-validated after use; this one is discarded, not counted as
		// torn.
		ok = true
	}
	return ok
}

func (r *reader) summary() {
	st, hs := r.c.Stats(), r.hs
	emit("summary", map[string]any{"result": r.result, "delivered": r.delivered, "dropped": r.dropped, "torn_retries": r.torn,
		"bad": r.bad, "first_seq": r.first, "last_seq": r.last, "generations": r.gens, "corrupt": r.corrupt, "view_faults": r.viewFaults,
		"entry_delivered": st.Delivered, "entry_dropped": st.Dropped, "entry_last_seq": st.LastSeq,
		"holds": hs.granted, "hold_refused_cap": hs.refusedCap, "hold_refused_overwritten": hs.refusedOver,
		"hold_refused_other": hs.refusedOther, "hold_bad": hs.bad, "hold_taken_back": hs.takenBack, "hold_max_ns": hs.maxHeld,
		"entry_holds_granted": st.HoldsGranted, "entry_holds_refused": st.HoldsRefused, "entry_holds_taken_back": st.HoldsTakenBack})
}
