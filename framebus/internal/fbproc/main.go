// Command fbproc is the other process of framebus's multi-process tests: a
// producer or a consumer driven by flags, reporting what it did as JSON lines
// on stdout. Built with -tags framebus_faults, FRAMEBUS_FAULT=STEP:N makes the
// producer kill itself with SIGKILL at that step of its Nth commit.
//
// Frames carry a pattern that depends on every byte's position and on the
// frame's sequence number, so a consumer can prove that no frame it was given
// was torn: word i of frame s is s<<32 | i.
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/framebus/feed"
)

var out = json.NewEncoder(os.Stdout)

func emit(ev string, kv map[string]any) {
	if kv == nil {
		kv = map[string]any{}
	}
	kv["event"] = ev
	kv["ns"] = framebus.Now()
	kv["pid"] = os.Getpid()
	out.Encode(kv)
}

func fatal(err error) {
	emit("error", map[string]any{"error": err.Error()})
	fmt.Fprintln(os.Stderr, "fbproc:", err)
	os.Exit(1)
}

// Fill writes frame seq's pattern into b.
func Fill(b []byte, seq uint64) {
	n := len(b) / 8
	for i := 0; i < n; i++ {
		binary.LittleEndian.PutUint64(b[8*i:], seq<<32|uint64(i))
	}
	for i := 8 * n; i < len(b); i++ {
		b[i] = byte(seq)
	}
}

// Check reports whether b holds frame seq's pattern.
func Check(b []byte, seq uint64) bool {
	n := len(b) / 8
	for i := 0; i < n; i++ {
		if binary.LittleEndian.Uint64(b[8*i:]) != seq<<32|uint64(i) {
			return false
		}
	}
	for i := 8 * n; i < len(b); i++ {
		if b[i] != byte(seq) {
			return false
		}
	}
	return true
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: fbproc producer|consumer [flags]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "producer":
		producer(os.Args[2:])
	case "consumer":
		consumer(os.Args[2:])
	case "write-frame":
		writeFrame(os.Args[2:])
	default:
		fmt.Fprintln(os.Stderr, "fbproc: unknown role", os.Args[1])
		os.Exit(2)
	}
}

func producer(args []string) {
	fs := flag.NewFlagSet("producer", flag.ExitOnError)
	name := fs.String("name", "t", "bus name")
	dir := fs.String("dir", "", "bus directory")
	frames := fs.Int("frames", 100, "frames to publish (0: until SIGTERM)")
	width := fs.Uint("width", 256, "frame width")
	height := fs.Uint("height", 256, "frame height")
	format := fs.String("format", "grey", "pixel format: grey or rgba")
	tolerate := fs.Bool("tolerate-corrupt", false, "report a segment truncated under the producer (ErrCorrupt) and carry on")
	interval := fs.Duration("interval", 0, "time between frames (0: as fast as possible)")
	checksum := fs.Bool("checksum", false, "CRC-32C on")
	hb := fs.Duration("heartbeat", 20*time.Millisecond, "heartbeat interval")
	consumers := fs.Int("consumers", 0, "consumer table capacity (0: default)")
	waitFor := fs.Int("wait-consumers", 0, "publish only once this many consumers are active")
	zeroCopy := fs.Bool("zerocopy", true, "write with Begin/Commit (else Publish)")
	closeAtEnd := fs.Bool("close", true, "close the stream cleanly at the end (else keep the bus and sleep)")
	mode := fs.Uint("mode", 0, "file mode (octal, e.g. 0660 -> 432)")
	group := fs.String("group", "", "group of the files")
	catchup := fs.Bool("catchup", true, "after falling behind the -interval schedule, publish back to back until caught up (else, like a camera, carry on one interval after the late frame)")
	memEvery := fs.Duration("memstats", 0, "emit the Go runtime's memory statistics this often (0: never)")
	slots := fs.Int("slots", 0, "frame slots (0: default)")
	holdMax := fs.Duration("hold-max", 0, "the lease of consumers' holds (0: none)")
	perEntry := fs.Bool("per-entry-wake", false, "no shared wake word (ProducerOptions.PerEntryWake)")
	fs.Parse(args)
	if *memEvery > 0 {
		go memStats(*memEvery)
	}

	pf := framebus.FormatGrey
	switch *format {
	case "grey":
	case "rgba":
		pf = framebus.FormatRGBA
	default:
		fatal(fmt.Errorf("unknown -format %q", *format))
	}
	p, err := framebus.Create(*name, framebus.ProducerOptions{
		Format:    framebus.Format{Width: uint32(*width), Height: uint32(*height), PixelFormat: pf},
		Checksum:  *checksum,
		Heartbeat: *hb,
		Consumers: *consumers,
		Slots:     *slots,
		HoldMax:   *holdMax,
		Mode:      os.FileMode(*mode),
		Group:     *group,
		Dir:       *dir,

		PerEntryWake: *perEntry,
	})
	if err != nil {
		fatal(err)
	}
	emit("ready", map[string]any{"generation": p.Generation(), "path": p.Path()})
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	for *waitFor > 0 && p.Stats().ActiveConsumers < *waitFor {
		time.Sleep(2 * time.Millisecond)
	}
	if *waitFor > 0 {
		emit("consumers", map[string]any{"active": p.Stats().ActiveConsumers})
	}
	size := int(p.Format().FrameSize)
	var scratch []byte // the copying path's source frame; none when writing in place
	if !*zeroCopy {
		scratch = make([]byte, size)
	}
	var next time.Time
	published, corrupt := 0, 0
	// The next frame's number, counted here (the producer's own numbering
	// continues across generations); not read back from a segment that may
	// be truncated.
	seq := p.Stats().LastSeq + 1
	gen := p.Generation()
	// failed reports a publishing error: fatal, or with -tolerate-corrupt a
	// segment truncated under us is reported and the frame given again.
	failed := func(err error) {
		if *tolerate && errors.Is(err, framebus.ErrCorrupt) {
			corrupt++
			emit("corrupt", map[string]any{"error": err.Error()})
			time.Sleep(time.Millisecond)
			return
		}
		fatal(err)
	}
loop:
	for *frames == 0 || published < *frames {
		select {
		case <-sig:
			break loop
		default:
		}
		if *zeroCopy {
			// Fill guards our own writes to the slot: a truncation between
			// Begin and Commit faults there.
			got, err := p.Fill(func(buf []byte) (int, framebus.Meta, error) {
				Fill(buf[:size], seq)
				return size, framebus.Meta{CaptureNS: framebus.Now()}, nil
			})
			if err != nil {
				failed(err)
				continue
			}
			if got != seq {
				fatal(fmt.Errorf("committed frame %d, filled as frame %d", got, seq))
			}
		} else {
			Fill(scratch, seq)
			got, err := p.Publish(scratch, framebus.Meta{CaptureNS: framebus.Now()})
			if err != nil {
				failed(err)
				continue
			}
			if got != seq {
				fatal(fmt.Errorf("published frame %d, filled as frame %d", got, seq))
			}
		}
		published++
		seq++
		if g := p.Generation(); g != gen {
			gen = g
			emit("generation", map[string]any{"generation": g, "seq": seq})
		}
		if *interval > 0 {
			if next.IsZero() {
				next = time.Now()
			}
			next = next.Add(*interval)
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			} else if !*catchup {
				next = time.Now()
			}
		}
	}
	st := p.Stats()
	emit("done", map[string]any{"published": published, "last_seq": st.LastSeq, "frames_published": st.FramesPublished,
		"consumers_reclaimed": st.ConsumersReclaimed, "generation": st.Generation, "corrupt": corrupt,
		"holds_granted": st.HoldsGranted, "holds_refused": st.HoldsRefused, "holds_taken_back": st.HoldsTakenBack, "holds_ignored": st.HoldsIgnored})
	if *closeAtEnd {
		if err := p.Close(); err != nil {
			fatal(err)
		}
		emit("closed", nil)
		return
	}
	<-sig
	p.Close()
}

func consumer(args []string) {
	fs := flag.NewFlagSet("consumer", flag.ExitOnError)
	name := fs.String("name", "t", "bus name")
	dir := fs.String("dir", "", "bus directory")
	count := fs.Int("count", 0, "stop after this many frames (0: until closed)")
	wait := fs.Duration("wait", 10*time.Second, "how long to wait for the producer")
	timeout := fs.Duration("timeout", 60*time.Second, "give up after this long in total")
	verify := fs.Bool("verify", true, "check every frame's pattern")
	copyOut := fs.Bool("copy", false, "use ReadInto instead of Next")
	logSeqs := fs.Bool("log-seqs", false, "emit one line per delivered frame")
	exitOnGone := fs.Bool("exit-on-gone", false, "stop at the first producer-gone")
	hold := fs.Duration("hold", 0, "sleep this long after each frame (a slow consumer)")
	tolerate := fs.Bool("tolerate-corrupt", false, "report ErrCorrupt and ErrChecksum results and carry on (else they end the run)")
	memEveryC := fs.Duration("memstats", 0, "emit the Go runtime's memory statistics this often (0: never)")
	logDrops := fs.Bool("log-drops", false, "emit one line per delivered frame that follows a gap (with its wake-up lag)")
	guard := fs.Bool("guard", false, "verify zero-copy views under debug.SetPanicOnFault (a view of a truncated file faults)")
	holdFor := fs.Duration("hold-for", 0, "hold every frame (Frame.Hold) and release it this long after, checking it is intact (0: no holds)")
	logHolds := fs.Bool("log-holds", false, "emit one line per hold granted")
	fs.Parse(args)

	if *memEveryC > 0 {
		go memStats(*memEveryC)
	}
	c, err := framebus.Open(*name, framebus.ConsumerOptions{Dir: *dir, Wait: *wait})
	if err != nil {
		fatal(err)
	}
	emit("joined", map[string]any{"generation": c.Generation(), "entry": c.Entry(), "last_seq": c.Stats().LastSeq})
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-sig; cancel() }()

	var (
		delivered, dropped, torn, bad uint64
		corrupt, viewFaults           uint64
		first, last                   uint64
		gens                          = []uint64{c.Generation()}
		dst                           []byte
		result                        = "count"
	)
	if *copyOut {
		dst = make([]byte, c.Format().FrameSize)
	}
	hs := newHolder(*holdFor)
	for *count == 0 || int(delivered) < *count {
		var f *framebus.Frame
		if *copyOut {
			f, err = c.ReadInto(ctx, dst)
			if errors.Is(err, framebus.ErrShortBuffer) {
				dst = make([]byte, c.Format().FrameSize)
				continue
			}
		} else {
			f, err = c.Next(ctx)
		}
		// The kinds are the shared consumer loop's (framebus/feed); this
		// loop reports every event of each kind instead of riding them out.
		kind := feed.Classify(err)
		switch {
		case err == nil:
		case kind == feed.Waiting && errors.Is(err, framebus.ErrProducerGone):
			emit("gone", map[string]any{"last_seq": last})
			if *exitOnGone {
				result = "gone"
				goto end
			}
			continue
		case kind == feed.Waiting:
			emit("stalled", map[string]any{"last_seq": last})
			continue
		case kind == feed.EndOfStream && errors.Is(err, framebus.ErrEndOfStream):
			var eos *framebus.EndOfStreamError
			if errors.As(err, &eos) {
				dropped += eos.Dropped
			}
			result = "closed"
			goto end
		case kind == feed.Deadline:
			result = "timeout"
			goto end
		case *tolerate && kind == feed.Transient:
			corrupt++
			emit("corrupt", map[string]any{"error": err.Error(), "last_seq": last})
			continue
		default:
			emit("error", map[string]any{"error": err.Error()})
			result = "error"
			goto end
		}
		if f.GenerationChanged {
			gens = append(gens, f.Generation)
			emit("generation", map[string]any{"generation": f.Generation, "seq": f.Seq})
		}
		ok := true
		if *verify {
			if *guard && !*copyOut {
				if framebus.Guard(func() { ok = Check(f.Data, f.Seq) }) != nil {
					// The file was truncated under the view: not a torn
					// frame, a view that can no longer be read.
					viewFaults++
					emit("viewfault", map[string]any{"seq": f.Seq})
					ok = true
				}
			} else {
				ok = Check(f.Data, f.Seq)
			}
			if !*copyOut && !f.Valid() {
				// The producer lapped us while we verified: a zero-copy view
				// must be re-validated after use; this one is discarded, not
				// counted as torn.
				ok = true
			}
		}
		if !ok {
			bad++
			emit("bad", map[string]any{"seq": f.Seq})
		}
		if first == 0 {
			first = f.Seq
		}
		if f.Seq <= last {
			emit("order", map[string]any{"seq": f.Seq, "last": last})
			bad++
		}
		last = f.Seq
		delivered++
		dropped += f.Dropped
		torn += f.TornRetries
		if *logSeqs {
			emit("frame", map[string]any{"seq": f.Seq, "dropped": f.Dropped, "wake_ns": f.WakeNS, "commit_ns": f.CommitNS})
		}
		if *logDrops && f.Dropped > 0 && !*logSeqs {
			emit("drop", map[string]any{"seq": f.Seq, "dropped": f.Dropped, "wake_ns": f.WakeNS, "commit_ns": f.CommitNS})
		}
		if *holdFor > 0 && !*copyOut {
			hs.hold(f, *logHolds)
		}
		if *hold > 0 {
			time.Sleep(*hold)
		}
	}
end:
	hs.releaseAll()
	st := c.Stats()
	emit("summary", map[string]any{"result": result, "delivered": delivered, "dropped": dropped, "torn_retries": torn,
		"bad": bad, "first_seq": first, "last_seq": last, "generations": gens, "corrupt": corrupt, "view_faults": viewFaults,
		"entry_delivered": st.Delivered, "entry_dropped": st.Dropped, "entry_last_seq": st.LastSeq,
		"holds": hs.granted, "hold_refused_cap": hs.refusedCap, "hold_refused_overwritten": hs.refusedOver,
		"hold_refused_other": hs.refusedOther, "hold_bad": hs.bad, "hold_taken_back": hs.takenBack, "hold_max_ns": hs.maxHeld,
		"entry_holds_granted": st.HoldsGranted, "entry_holds_refused": st.HoldsRefused, "entry_holds_taken_back": st.HoldsTakenBack})
	c.Close()
}

// holder keeps every frame it can (Frame.Hold) for a while, then checks
// that the frame stayed intact (Valid and its pattern) and releases it.
type holder struct {
	keep                             time.Duration
	q                                []held
	granted, refusedCap, refusedOver uint64
	refusedOther, bad, takenBack     uint64
	maxHeld                          int64
}

type held struct {
	h  framebus.Hold
	at int64
}

func newHolder(keep time.Duration) *holder { return &holder{keep: keep, q: make([]held, 0, 64)} }

func (hs *holder) hold(f *framebus.Frame, log bool) {
	now := framebus.Now()
	h, err := f.Hold()
	switch {
	case err == nil:
		hs.granted++
		hs.q = append(hs.q, held{h, now})
		if log {
			emit("hold", map[string]any{"seq": h.Seq()})
		}
	case errors.Is(err, framebus.ErrHoldCap):
		hs.refusedCap++
	case errors.Is(err, framebus.ErrOverwritten):
		hs.refusedOver++
	default:
		hs.refusedOther++
		emit("holderror", map[string]any{"error": err.Error()})
	}
	for len(hs.q) > 0 && now-hs.q[0].at >= int64(hs.keep) {
		hs.release(hs.q[0], now)
		hs.q = hs.q[1:]
	}
}

func (hs *holder) release(x held, now int64) {
	ok := Check(x.h.Data(), x.h.Seq())
	valid := x.h.Valid()
	if !valid {
		hs.takenBack++
		emit("takenback", map[string]any{"seq": x.h.Seq(), "held_ns": now - x.at})
	} else if !ok {
		hs.bad++
		emit("holdbad", map[string]any{"seq": x.h.Seq(), "held_ns": now - x.at})
	}
	hs.maxHeld = max(hs.maxHeld, now-x.at)
	if err := x.h.Release(); err != nil {
		emit("error", map[string]any{"error": err.Error()})
	}
}

func (hs *holder) releaseAll() {
	now := framebus.Now()
	for _, x := range hs.q {
		hs.release(x, now)
	}
	hs.q = hs.q[:0]
}

// writeFrame is the read-only proof: it joins a bus as a consumer, takes a
// frame with Next, reports the permissions of the mapping that holds the
// frame's bytes (from /proc/self/maps), then writes one byte through the
// frame's slice. With -recover the fault is caught (debug.SetPanicOnFault)
// and reported as a "fault" event; without it the process dies of it. A
// "wrote" event means the write went through: the data was writable.
func writeFrame(args []string) {
	fs := flag.NewFlagSet("write-frame", flag.ExitOnError)
	name := fs.String("name", "t", "bus name")
	dir := fs.String("dir", "", "bus directory")
	rec := fs.Bool("recover", true, "catch the fault and report it")
	fs.Parse(args)
	c, err := framebus.Open(*name, framebus.ConsumerOptions{Dir: *dir, Wait: 10 * time.Second})
	if err != nil {
		fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f, err := c.Next(ctx)
	if err != nil {
		fatal(err)
	}
	if len(f.Data) == 0 {
		fatal(errors.New("empty frame"))
	}
	addr, perms, mapping := mappingOf(fmt.Sprintf("%p", &f.Data[0]))
	emit("maps", map[string]any{"seq": f.Seq, "addr": addr, "perms": perms, "mapping": mapping, "byte": f.Data[0]})
	if *rec {
		debug.SetPanicOnFault(true)
		defer func() {
			r := recover()
			if fa, ok := r.(interface{ Addr() uintptr }); ok {
				emit("fault", map[string]any{"addr": fmt.Sprintf("%#x", fa.Addr()), "panic": fmt.Sprint(r)})
				c.Close()
				return
			}
			if r != nil {
				panic(r)
			}
		}()
	}
	f.Data[0] ^= 0xff
	emit("wrote", map[string]any{"seq": f.Seq, "byte": f.Data[0]})
	c.Close()
}

// mappingOf finds the line of /proc/self/maps whose range holds the address
// (a %p string) and returns the address, the permissions and the line.
func mappingOf(p string) (addr uint64, perms, line string) {
	fmt.Sscanf(p, "0x%x", &addr)
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return addr, "", err.Error()
	}
	for _, l := range strings.Split(string(b), "\n") {
		var lo, hi uint64
		var pm string
		if n, _ := fmt.Sscanf(l, "%x-%x %s", &lo, &hi, &pm); n == 3 && lo <= addr && addr < hi {
			return addr, pm, l
		}
	}
	return addr, "", "not found"
}

// memStats emits the Go runtime's memory figures every period, so that a
// soak can tell a leak (live heap growing across collections) from the
// collector's slack (garbage allowed to accumulate up to the next GC goal).
func memStats(period time.Duration) {
	var m runtime.MemStats
	for range time.Tick(period) {
		runtime.ReadMemStats(&m)
		emit("memstats", map[string]any{"heap_alloc": m.HeapAlloc, "heap_inuse": m.HeapInuse, "heap_sys": m.HeapSys,
			"heap_released": m.HeapReleased, "stack_sys": m.StackSys, "sys": m.Sys, "mallocs": m.Mallocs, "num_gc": m.NumGC,
			"next_gc": m.NextGC})
	}
}
