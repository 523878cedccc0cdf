package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/framebus/framebus/framebus"
)

// producerFlags are the producer's flags.
type producerFlags struct {
	name, dir, format, group        string
	frames, consumers, waitFor      int
	slots                           int
	width, height, mode             uint
	tolerate, checksum, zeroCopy    bool
	closeAtEnd, catchup, perEntry   bool
	interval, hb, memEvery, holdMax time.Duration
}

func parseProducer(args []string) *producerFlags {
	o := &producerFlags{}
	fs := flag.NewFlagSet("producer", flag.ExitOnError)
	fs.StringVar(&o.name, "name", "t", "bus name")
	fs.StringVar(&o.dir, "dir", "", "bus directory")
	fs.IntVar(&o.frames, "frames", 100, "frames to publish (0: until SIGTERM)")
	fs.UintVar(&o.width, "width", 256, "frame width")
	fs.UintVar(&o.height, "height", 256, "frame height")
	fs.StringVar(&o.format, "format", "grey", "pixel format: grey or rgba")
	fs.BoolVar(&o.tolerate, "tolerate-corrupt", false, "report a segment truncated under the producer (ErrCorrupt) and carry on")
	fs.DurationVar(&o.interval, "interval", 0, "time between frames (0: as fast as possible)")
	fs.BoolVar(&o.checksum, "checksum", false, "CRC-32C on")
	fs.DurationVar(&o.hb, "heartbeat", 20*time.Millisecond, "heartbeat interval")
	fs.IntVar(&o.consumers, "consumers", 0, "consumer table capacity (0: default)")
	fs.IntVar(&o.waitFor, "wait-consumers", 0, "publish only once this many consumers are active")
	fs.BoolVar(&o.zeroCopy, "zerocopy", true, "write with Begin/Commit (else Publish)")
	fs.BoolVar(&o.closeAtEnd, "close", true, "close the stream cleanly at the end (else keep the bus and sleep)")
	fs.UintVar(&o.mode, "mode", 0, "file mode (octal, e.g. 0660 -> 432)")
	fs.StringVar(&o.group, "group", "", "group of the files")
	fs.BoolVar(&o.catchup, "catchup", true, "after falling behind the -interval schedule, publish back to back until caught up (else, like a camera, carry on one interval after the late frame)")
	fs.DurationVar(&o.memEvery, "memstats", 0, "emit the Go runtime's memory statistics this often (0: never)")
	fs.IntVar(&o.slots, "slots", 0, "frame slots (0: default)")
	fs.DurationVar(&o.holdMax, "hold-max", 0, "the lease of consumers' holds (0: none)")
	fs.BoolVar(&o.perEntry, "per-entry-wake", false, "no shared wake word (ProducerOptions.PerEntryWake)")
	fs.Parse(args)
	return o
}

// create creates the bus the flags ask for.
func (o *producerFlags) create() *framebus.Producer {
	pf := framebus.FormatGrey
	switch o.format {
	case "grey":
	case "rgba":
		pf = framebus.FormatRGBA
	default:
		fatal(fmt.Errorf("unknown -format %q", o.format))
	}
	p, err := framebus.Create(o.name, framebus.ProducerOptions{
		Format:    framebus.Format{Width: uint32(o.width), Height: uint32(o.height), PixelFormat: pf},
		Checksum:  o.checksum,
		Heartbeat: o.hb,
		Consumers: o.consumers,
		Slots:     o.slots,
		HoldMax:   o.holdMax,
		Mode:      os.FileMode(o.mode),
		Group:     o.group,
		Dir:       o.dir,

		PerEntryWake: o.perEntry,
	})
	if err != nil {
		fatal(err)
	}
	return p
}

func producer(args []string) {
	o := parseProducer(args)
	if o.memEvery > 0 {
		go memStats(o.memEvery)
	}
	p := o.create()
	emit("ready", map[string]any{"generation": p.Generation(), "path": p.Path()})
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	for o.waitFor > 0 && p.Stats().ActiveConsumers < o.waitFor {
		time.Sleep(2 * time.Millisecond)
	}
	if o.waitFor > 0 {
		emit("consumers", map[string]any{"active": p.Stats().ActiveConsumers})
	}
	w := newWriter(o, p)
loop:
	for o.frames == 0 || w.published < o.frames {
		select {
		case <-sig:
			break loop
		default:
		}
		if w.one() {
			w.pace()
		}
	}
	st := p.Stats()
	emit("done", map[string]any{"published": w.published, "last_seq": st.LastSeq, "frames_published": st.FramesPublished,
		"consumers_reclaimed": st.ConsumersReclaimed, "generation": st.Generation, "corrupt": w.corrupt,
		"holds_granted": st.HoldsGranted, "holds_refused": st.HoldsRefused, "holds_taken_back": st.HoldsTakenBack, "holds_ignored": st.HoldsIgnored})
	if o.closeAtEnd {
		if err := p.Close(); err != nil {
			fatal(err)
		}
		emit("closed", nil)
		return
	}
	<-sig
	p.Close()
}

// writer publishes the numbered frames.
type writer struct {
	o       *producerFlags
	p       *framebus.Producer
	size    int
	scratch []byte // the copying path's source frame; none when writing in place
	next    time.Time
	// seq is the next frame's number, counted here (the producer's own
	// numbering continues across generations); not read back from a
	// segment that may be truncated.
	seq                uint64
	gen                uint64
	published, corrupt int
}

func newWriter(o *producerFlags, p *framebus.Producer) *writer {
	w := &writer{o: o, p: p, size: int(p.Format().FrameSize), seq: p.Stats().LastSeq + 1, gen: p.Generation()}
	if !o.zeroCopy {
		w.scratch = make([]byte, w.size)
	}
	return w
}

// one publishes the next frame; false when it failed (and is to be given
// again).
func (w *writer) one() bool {
	var got uint64
	var err error
	if w.o.zeroCopy {
		// Fill guards our own writes to the slot: a truncation between
		// Begin and Commit faults there.
		got, err = w.p.Fill(func(buf []byte) (int, framebus.Meta, error) {
			Fill(buf[:w.size], w.seq)
			return w.size, framebus.Meta{CaptureNS: framebus.Now()}, nil
		})
	} else {
		Fill(w.scratch, w.seq)
		got, err = w.p.Publish(w.scratch, framebus.Meta{CaptureNS: framebus.Now()})
	}
	if err != nil {
		w.failed(err)
		return false
	}
	if got != w.seq {
		verb := "published"
		if w.o.zeroCopy {
			verb = "committed"
		}
		fatal(fmt.Errorf("%s frame %d, filled as frame %d", verb, got, w.seq))
	}
	w.published++
	w.seq++
	if g := w.p.Generation(); g != w.gen {
		w.gen = g
		emit("generation", map[string]any{"generation": g, "seq": w.seq})
	}
	return true
}

// failed reports a publishing error: fatal, or with -tolerate-corrupt a
// segment truncated under us is reported and the frame given again.
func (w *writer) failed(err error) {
	if w.o.tolerate && errors.Is(err, framebus.ErrCorrupt) {
		w.corrupt++
		emit("corrupt", map[string]any{"error": err.Error()})
		time.Sleep(time.Millisecond)
		return
	}
	fatal(err)
}

// pace waits for the next frame's time on the -interval schedule.
func (w *writer) pace() {
	if w.o.interval <= 0 {
		return
	}
	if w.next.IsZero() {
		w.next = time.Now()
	}
	w.next = w.next.Add(w.o.interval)
	if d := time.Until(w.next); d > 0 {
		time.Sleep(d)
	} else if !w.o.catchup {
		w.next = time.Now()
	}
}
