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
	"syscall"
	"time"

	"github.com/framebus/framebus/framebus"
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
	width := fs.Uint("width", 256, "frame width (GREY)")
	height := fs.Uint("height", 256, "frame height (GREY)")
	interval := fs.Duration("interval", 0, "time between frames (0: as fast as possible)")
	checksum := fs.Bool("checksum", false, "CRC-32C on")
	hb := fs.Duration("heartbeat", 20*time.Millisecond, "heartbeat interval")
	consumers := fs.Int("consumers", 0, "consumer table capacity (0: default)")
	waitFor := fs.Int("wait-consumers", 0, "publish only once this many consumers are active")
	zeroCopy := fs.Bool("zerocopy", true, "write with Begin/Commit (else Publish)")
	closeAtEnd := fs.Bool("close", true, "close the stream cleanly at the end (else keep the bus and sleep)")
	mode := fs.Uint("mode", 0, "file mode (octal, e.g. 0660 -> 432)")
	group := fs.String("group", "", "group of the files")
	fs.Parse(args)

	p, err := framebus.Create(*name, framebus.ProducerOptions{
		Format:    framebus.Format{Width: uint32(*width), Height: uint32(*height), PixelFormat: framebus.FormatGrey},
		Checksum:  *checksum,
		Heartbeat: *hb,
		Consumers: *consumers,
		Mode:      os.FileMode(*mode),
		Group:     *group,
		Dir:       *dir,
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
	scratch := make([]byte, size)
	var next time.Time
	published := 0
loop:
	for *frames == 0 || published < *frames {
		select {
		case <-sig:
			break loop
		default:
		}
		seq := p.Stats().LastSeq + 1
		if *zeroCopy {
			buf, err := p.Begin()
			if err != nil {
				fatal(err)
			}
			Fill(buf[:size], seq)
			if _, err := p.Commit(size, framebus.Meta{CaptureNS: framebus.Now()}); err != nil {
				fatal(err)
			}
		} else {
			Fill(scratch, seq)
			if _, err := p.Publish(scratch, framebus.Meta{CaptureNS: framebus.Now()}); err != nil {
				fatal(err)
			}
		}
		published++
		if *interval > 0 {
			if next.IsZero() {
				next = time.Now()
			}
			next = next.Add(*interval)
			time.Sleep(time.Until(next))
		}
	}
	st := p.Stats()
	emit("done", map[string]any{"published": published, "last_seq": st.LastSeq, "frames_published": st.FramesPublished,
		"consumers_reclaimed": st.ConsumersReclaimed, "generation": st.Generation})
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
	fs.Parse(args)

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
		first, last                   uint64
		gens                          = []uint64{c.Generation()}
		dst                           []byte
		result                        = "count"
	)
	if *copyOut {
		dst = make([]byte, c.Format().FrameSize)
	}
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
		switch {
		case err == nil:
		case errors.Is(err, framebus.ErrProducerGone):
			emit("gone", map[string]any{"last_seq": last})
			if *exitOnGone {
				result = "gone"
				goto end
			}
			continue
		case errors.Is(err, framebus.ErrStalled):
			emit("stalled", map[string]any{"last_seq": last})
			continue
		case errors.Is(err, framebus.ErrClosed):
			var eos *framebus.EndOfStreamError
			if errors.As(err, &eos) {
				dropped += eos.Dropped
			}
			result = "closed"
			goto end
		case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.Canceled):
			result = "timeout"
			goto end
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
			ok = Check(f.Data, f.Seq)
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
	}
end:
	st := c.Stats()
	emit("summary", map[string]any{"result": result, "delivered": delivered, "dropped": dropped, "torn_retries": torn,
		"bad": bad, "first_seq": first, "last_seq": last, "generations": gens,
		"entry_delivered": st.Delivered, "entry_dropped": st.Dropped, "entry_last_seq": st.LastSeq})
	c.Close()
}
