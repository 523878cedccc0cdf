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
	"runtime"
	"runtime/debug"
	"strings"
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
	case "write-frame":
		writeFrame(os.Args[2:])
	default:
		fmt.Fprintln(os.Stderr, "fbproc: unknown role", os.Args[1])
		os.Exit(2)
	}
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
