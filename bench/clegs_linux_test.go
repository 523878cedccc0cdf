//go:build linux

package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/framebus/framebus/framebus"
)

// The C legs against the Go transport, through the real programs: the C
// producer of framebus/testdata/c read by framebus's Go consumer, the C
// consumer fed by the Go producer, and the protocol's failure paths on the
// C side (a second producer, a dead consumer, a removed or truncated
// segment, abandoned temporary files).

var (
	cOnce    sync.Once
	cBuilt   *cBins
	cErr     error
	cTempDir string
)

// testC builds the C legs once per test binary, or skips (fails with
// FRAMEBUS_REQUIRE_GCC=1, as make test sets it) without gcc.
func testC(t *testing.T) *cBins {
	t.Helper()
	cOnce.Do(func() {
		cTempDir, cErr = os.MkdirTemp("", "framebus-clegs-")
		if cErr == nil {
			atExit = append(atExit, func() { os.RemoveAll(cTempDir) })
			cBuilt, cErr = buildC(context.Background(), "", cTempDir)
		}
	})
	if cErr != nil {
		if _, lerr := exec.LookPath("gcc"); lerr != nil && os.Getenv("FRAMEBUS_REQUIRE_GCC") != "1" {
			t.Skip(cErr)
		}
		t.Fatal(cErr)
	}
	return cBuilt
}

// cProc is a C program run by a test, its output captured.
type cProc struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	done           chan struct{}
	err            error
}

func startCProc(t *testing.T, bin string, args ...string) *cProc {
	t.Helper()
	p := &cProc{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = &syncWriter{w: &p.stdout}, &syncWriter{w: &p.stderr}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// wait waits (bounded) for the program to exit and returns its exit code.
func (p *cProc) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("%s did not end within %v\nstderr: %s", p.cmd.Path, d, p.stderrText())
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		t.Fatal(p.err)
	}
	return 0
}

func (p *cProc) stderrText() string {
	p.cmd.Stderr.(*syncWriter).mu.Lock()
	defer p.cmd.Stderr.(*syncWriter).mu.Unlock()
	return p.stderr.String()
}

func (p *cProc) stdoutText() string {
	p.cmd.Stdout.(*syncWriter).mu.Lock()
	defer p.cmd.Stdout.(*syncWriter).mu.Unlock()
	return p.stdout.String()
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

// waitFor polls cond every millisecond for at most d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(time.Millisecond)
	}
}

// openC joins the bus of a C producer with framebus's Go consumer.
func openC(t *testing.T, dir, name string) *framebus.Consumer {
	t.Helper()
	c, err := framebus.Open(name, framebus.ConsumerOptions{Dir: dir, Wait: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestCProducerGoConsumer: framebus's Go consumer reads the C producer's
// frames intact (every 64-bit word of frame s is s<<32 | w, the CRC-32C
// checked by Next), with its metadata, the format and the informational
// fields of amendment 8 (creation and liveness across PID namespaces), and sees the end of stream at its clean close.
func TestCProducerGoConsumer(t *testing.T) {
	c := testC(t)
	for _, tc := range []struct {
		format   string
		fourcc   framebus.FourCC
		planes   uint32
		checksum bool
		wake     bool // shared wake word
	}{
		{"NV12", framebus.FormatNV12, 2, true, true},
		{"RGBA", framebus.FormatRGBA, 1, false, false},
	} {
		t.Run(tc.format, func(t *testing.T) {
			dir := t.TempDir()
			const frames = 200
			args := []string{"--dir", dir, "--size", "320x240", "--format", tc.format, "--fps", "500", "--frames", strconv.Itoa(frames),
				"--render", "counter", "--meta", "from-c", "--wait-consumers", "1", "--heartbeat-ms", "20"}
			if tc.checksum {
				args = append(args, "--checksum")
			}
			if !tc.wake {
				args = append(args, "--per-entry-wake")
			}
			p := startCProc(t, c.producer, append(args, "cbus")...)
			cons := openC(t, dir, "cbus")
			f := cons.Format()
			if f.Width != 320 || f.Height != 240 || f.PixelFormat != tc.fourcc || f.PlaneCount != tc.planes || f.FPSNum != 500 {
				t.Errorf("format %+v", f)
			}
			want, _ := (framebus.Format{Width: 320, Height: 240, PixelFormat: tc.fourcc}).Complete()
			if f.FrameSize != want.FrameSize || f.PlaneOffset != want.PlaneOffset || f.PlaneStride != want.PlaneStride {
				t.Errorf("planes %+v, Go derives %+v", f, want)
			}
			snap, err := framebus.Inspect("cbus", dir)
			if err != nil {
				t.Fatal(err)
			}
			h := snap.Header
			if h.ProducerPID != uint32(p.cmd.Process.Pid) || (h.Flags&framebus.FlagChecksum != 0) != tc.checksum ||
				(h.Flags&framebus.FlagSharedWake != 0) != tc.wake || !snap.OwnerAlive {
				t.Errorf("header pid %d (want %d) flags %#x owner %v", h.ProducerPID, p.cmd.Process.Pid, h.Flags, snap.OwnerAlive)
			}
			if ns := pidnsAt(t, filepath.Join(dir, "framebus.cbus"), 248); ns != selfPidns(t) {
				t.Errorf("producer_pidns %d, want %d", ns, selfPidns(t))
			}
			var delivered, dropped uint64
			var last uint64
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for {
				fr, err := cons.Next(ctx)
				var eos *framebus.EndOfStreamError
				if errors.As(err, &eos) {
					dropped += eos.Dropped // frames overwritten before the end of stream was read
					break
				}
				if err != nil {
					t.Fatalf("after frame %d: %v", last, err)
				}
				if fr.Seq <= last {
					t.Fatalf("frame %d after %d", fr.Seq, last)
				}
				last = fr.Seq
				delivered++
				dropped += fr.Dropped
				if string(fr.UserMeta) != "from-c" || uint64(len(fr.Data)) != f.FrameSize {
					t.Errorf("frame %d: meta %q, %d bytes", fr.Seq, fr.UserMeta, len(fr.Data))
				}
				for w := 0; w+8 <= len(fr.Data); w += 8 * 97 {
					if got := binary.LittleEndian.Uint64(fr.Data[w:]); got != fr.Seq<<32|uint64(w/8) {
						t.Fatalf("frame %d word %d = %#x", fr.Seq, w/8, got)
					}
				}
				if !fr.Valid() {
					t.Errorf("frame %d overwritten while checked (500 fps, 320x240)", fr.Seq)
				}
			}
			if code := p.wait(t, 20*time.Second); code != 0 {
				t.Fatalf("producer exit %d: %s", code, p.stderrText())
			}
			if !strings.Contains(p.stdoutText(), fmt.Sprintf("done frames=%d last_seq=%d", frames, frames)) {
				t.Errorf("producer said %q", p.stdoutText())
			}
			if delivered+dropped != frames || delivered < frames/4 {
				t.Errorf("delivered %d + dropped %d, want %d", delivered, dropped, frames)
			}
			// A clean close removes both files.
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("left behind: %v", ents)
			}
		})
	}
}

// pidnsAt reads the u64 at off of the segment file.
func pidnsAt(t *testing.T, path string, off int64) uint64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [8]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		t.Fatal(err)
	}
	return binary.LittleEndian.Uint64(b[:])
}

func selfPidns(t *testing.T) uint64 {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/pid", &st); err != nil {
		return 0
	}
	return st.Ino
}

// TestCProducerOwnership: one producer per name, whichever the language:
// a second C producer, and a Go producer, get busy naming the owner; the
// C producer gets busy on a Go producer's name.
func TestCProducerOwnership(t *testing.T) {
	c := testC(t)
	dir := t.TempDir()
	p := startCProc(t, c.producer, "--dir", dir, "--fps", "50", "own")
	waitFor(t, 10*time.Second, "the C producer's ready line", func() bool { return strings.Contains(p.stdoutText(), "ready ") })
	second := startCProc(t, c.producer, "--dir", dir, "own")
	if code := second.wait(t, 10*time.Second); code != 3 || !strings.Contains(second.stderrText(), fmt.Sprintf("pid %d", p.cmd.Process.Pid)) {
		t.Errorf("second C producer: exit %d, %s", code, second.stderrText())
	}
	if _, err := framebus.Create("own", framebus.ProducerOptions{Dir: dir, Format: framebus.Format{Width: 64, Height: 64}}); !errors.Is(err, framebus.ErrBusy) {
		t.Errorf("Go Create on the C producer's name: %v, want ErrBusy", err)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("SIGTERM: exit %d: %s", code, p.stderrText())
	}
	gp, err := framebus.Create("own", framebus.ProducerOptions{Dir: dir, Format: framebus.Format{Width: 64, Height: 64}})
	if err != nil {
		t.Fatal(err)
	}
	defer gp.Close()
	cp := startCProc(t, c.producer, "--dir", dir, "own")
	if code := cp.wait(t, 10*time.Second); code != 3 || !strings.Contains(cp.stderrText(), "busy") {
		t.Errorf("C producer on the Go producer's name: exit %d, %s", code, cp.stderrText())
	}
}

// TestCProducerReclaim: a consumer killed with SIGKILL leaves its entry
// locked by nobody; the C producer takes it back within heartbeats.
func TestCProducerReclaim(t *testing.T) {
	c := testC(t)
	dir := t.TempDir()
	p := startCProc(t, c.producer, "--dir", dir, "--fps", "100", "--heartbeat-ms", "20", "rc")
	waitFor(t, 10*time.Second, "ready", func() bool { return strings.Contains(p.stdoutText(), "ready ") })
	seg := framebus.SegmentPath(dir, "rc")
	cons := startCProc(t, c.consumer, "--wake", "auto", seg, framebus.LockPath(dir, "rc"), "1000000", "10000")
	waitFor(t, 10*time.Second, "the C consumer's first frame", func() bool { return strings.Contains(cons.stdoutText(), "frame ") })
	cons.cmd.Process.Kill()
	cons.wait(t, 10*time.Second)
	waitFor(t, 10*time.Second, "the dead consumer reclaimed", func() bool {
		s, err := framebus.Inspect("rc", dir)
		return err == nil && s.Header.ConsumersReclaimed == 1 && len(s.Consumers) == 0
	})
	p.cmd.Process.Signal(syscall.SIGINT)
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Errorf("exit %d: %s", code, p.stderrText())
	}
}

// TestCProducerGenerations: the C producer replaces a segment truncated or
// removed from outside by a new generation (never a crash), and a C
// producer restarted after kill -9 continues the numbering; framebus's Go
// consumer follows each.
func TestCProducerGenerations(t *testing.T) {
	c := testC(t)
	dir := t.TempDir()
	start := func() *cProc {
		p := startCProc(t, c.producer, "--dir", dir, "--size", "160x120", "--fps", "200", "--heartbeat-ms", "10", "gen")
		waitFor(t, 10*time.Second, "ready", func() bool { return strings.Contains(p.stdoutText(), "ready ") })
		return p
	}
	p := start()
	cons := openC(t, dir, "gen")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	next := func() *framebus.Frame {
		t.Helper()
		for {
			fr, err := cons.Next(ctx)
			if err == nil {
				return fr
			}
			if ctx.Err() != nil {
				t.Fatalf("no frame: %v\nproducer: %s", err, p.stderrText())
			}
			// A truncated segment is an error once; the consumer then waits
			// for the next generation.
			time.Sleep(time.Millisecond)
		}
	}
	readUntilGeneration := func(g uint64) *framebus.Frame {
		t.Helper()
		for {
			fr := next()
			if fr.Generation >= g {
				return fr
			}
		}
	}
	first := next()
	if first.Generation != 1 {
		t.Fatalf("generation %d", first.Generation)
	}
	// Truncated from outside: state BROKEN, generation 2.
	if err := os.Truncate(framebus.SegmentPath(dir, "gen"), 4096); err != nil {
		t.Fatal(err)
	}
	fr := readUntilGeneration(2)
	// Its log line comes through a pipe, which may lag the bus.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(p.stderrText(), "BROKEN"); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("no word of the truncation: %s", p.stderrText())
			break
		}
	}
	// Removed from outside (systemd's RemoveIPC): generation 3.
	if err := os.Remove(framebus.SegmentPath(dir, "gen")); err != nil {
		t.Fatal(err)
	}
	fr = readUntilGeneration(3)
	seq := fr.Seq
	// kill -9 and a new producer: generation 4, numbers continued.
	p.cmd.Process.Kill()
	p.wait(t, 10*time.Second)
	p = start()
	if !strings.Contains(p.stdoutText(), "generation 4") {
		t.Errorf("restarted producer: %s", p.stdoutText())
	}
	fr = readUntilGeneration(4)
	if fr.Seq <= seq {
		t.Errorf("numbering restarted: frame %d after %d", fr.Seq, seq)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Errorf("exit %d: %s", code, p.stderrText())
	}
	t.Logf("the restarted producer said: %s", p.stderrText())
}

// TestCProducerTemporaryFiles (amendment 8): the C producer removes an
// abandoned temporary file of its name, keeps one whose byte 0 a live
// creator holds, and holds its own while it builds.
func TestCProducerTemporaryFiles(t *testing.T) {
	c := testC(t)
	dir := t.TempDir()
	abandoned := filepath.Join(dir, "framebus.tmpb.tmp-999999999")
	held := filepath.Join(dir, "framebus.tmpb.tmp-999999998")
	other := filepath.Join(dir, "framebus.other.tmp-999999997")
	for _, f := range []string{abandoned, held, other} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	hf, err := os.OpenFile(held, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer hf.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 1}
	if err := unix.FcntlFlock(hf.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		t.Fatal(err)
	}
	p := startCProc(t, c.producer, "--dir", dir, "--fps", "10", "--frames", "3", "tmpb")
	if code := p.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("exit %d: %s", code, p.stderrText())
	}
	if _, err := os.Stat(abandoned); !os.IsNotExist(err) {
		t.Errorf("the abandoned temporary file is still there (%v)", err)
	}
	if !strings.Contains(p.stderrText(), "removed the abandoned temporary file "+abandoned) {
		t.Errorf("no word of the removal: %s", p.stderrText())
	}
	for _, f := range []string{held, other} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("%s: %v (a live creation's, or another name's)", f, err)
		}
	}
}

// TestCConsumerModes: the C consumer fed by the Go producer, sleeping on
// the section 5 semaphore, on the shared wake word, and spinning, loses no
// frame from its accounting; --wake shared on a bus without the word is
// refused clearly.
func TestCConsumerModes(t *testing.T) {
	c := testC(t)
	for _, tc := range []struct {
		name     string
		args     []string
		perEntry bool
		fps      int
	}{
		{"sem", []string{"--wake", "sem"}, false, 200},
		{"shared", []string{"--wake", "shared"}, false, 200},
		{"auto-per-entry", []string{"--wake", "auto"}, true, 200},
		{"spin", []string{"--wake", "auto", "--spin", "400"}, false, 100},
		{"spin-sem", []string{"--wake", "sem", "--spin", "400"}, true, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p, err := framebus.Create("cm", framebus.ProducerOptions{Dir: dir, Format: framebus.Format{Width: 160, Height: 120},
				PerEntryWake: tc.perEntry, Checksum: true})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			cons := startCProc(t, c.consumer, append(tc.args, p.Path(), framebus.LockPath(dir, "cm"), "1000000", "10000")...)
			waitFor(t, 10*time.Second, "the C consumer joined", func() bool { return p.Stats().ActiveConsumers == 1 })
			const frames = 150
			period := time.Second / time.Duration(tc.fps)
			next := time.Now()
			for i := 0; i < frames; i++ {
				time.Sleep(time.Until(next))
				next = next.Add(period)
				if _, err := p.Fill(func(b []byte) (int, framebus.Meta, error) {
					b[0] = byte(i)
					return len(b), framebus.Meta{}, nil
				}); err != nil {
					t.Fatal(err)
				}
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			if code := cons.wait(t, 20*time.Second); code != 0 {
				t.Fatalf("exit %d: %s", code, cons.stderrText())
			}
			sum := summary(t, cons.stdoutText())
			if sum["delivered"]+sum["dropped"] != frames || sum["crc_bad"] != 0 || sum["eos"] != 1 || sum["delivered"] < frames/2 {
				t.Errorf("summary %v", sum)
			}
			if strings.Contains(tc.name, "spin") && sum["spin_hits"] == 0 {
				t.Errorf("%s: nothing caught spinning at %d fps: %v", tc.name, tc.fps, sum)
			}
		})
	}
	t.Run("shared-refused", func(t *testing.T) {
		dir := t.TempDir()
		p, err := framebus.Create("cm", framebus.ProducerOptions{Dir: dir, Format: framebus.Format{Width: 64, Height: 64}, PerEntryWake: true})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		cons := startCProc(t, c.consumer, "--wake", "shared", p.Path(), framebus.LockPath(dir, "cm"), "10", "1000")
		if code := cons.wait(t, 10*time.Second); code != 3 || !strings.Contains(cons.stderrText(), "no shared wake word") {
			t.Errorf("exit %d: %s", code, cons.stderrText())
		}
	})
}

var summaryRe = regexp.MustCompile(`(\w+)=(\d+)`)

// summary parses the C consumer's summary line.
func summary(t *testing.T, out string) map[string]uint64 {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "summary ") {
			m := map[string]uint64{}
			for _, kv := range summaryRe.FindAllStringSubmatch(line, -1) {
				m[kv[1]], _ = strconv.ParseUint(kv[2], 10, 64)
			}
			return m
		}
	}
	t.Fatalf("no summary in %q", out)
	return nil
}

// TestBenchCtlLayout: benchctl.h says what ctl_unsafe.go says.
func TestBenchCtlLayout(t *testing.T) {
	b, err := os.ReadFile("../framebus/testdata/c/benchctl.h")
	if err != nil {
		t.Fatal(err)
	}
	defs := map[string]int{}
	re := regexp.MustCompile(`(?m)^#define (BENCHCTL_\w+|BENCH_\w+) (\d+)\b`)
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		defs[m[1]], _ = strconv.Atoi(m[2])
	}
	for name, want := range map[string]int{
		"BENCHCTL_STOP": ctlStop, "BENCHCTL_PROD_WAITING": ctlProdWaiting, "BENCHCTL_ACKS": ctlAcks,
		"BENCHCTL_WAITERS_OFF": ctlWaitersOff, "BENCHCTL_WAITER_SIZE": ctlWaiterSize, "BENCHCTL_MAX_WAITERS": ctlMaxWaiters,
		"BENCHCTL_RING": ctlRing, "BENCHCTL_W_WORD": 0, "BENCHCTL_W_WAITING": 4, "BENCHCTL_W_READY": 8, "BENCHCTL_W_ENTRY": 12,
		"BENCH_PHASE_WARM": phaseWarm, "BENCH_PHASE_MEASURE": phaseMeasure, "BENCH_META_LEN": metaLen,
	} {
		if got, ok := defs[name]; !ok || got != want {
			t.Errorf("%s = %d (defined %v), ctl_unsafe.go says %d", name, got, ok, want)
		}
	}
	// The derived offsets, through the accessors the Go side uses.
	dir := t.TempDir()
	path := filepath.Join(dir, "ctl")
	if err := createCtl(path); err != nil {
		t.Fatal(err)
	}
	ctl, err := mapCtl(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.unmap()
	ctl.start(5).Store(-2)
	ctl.phase(5).Store(7)
	ring := ctlWaitersOff + ctlMaxWaiters*ctlWaiterSize
	if got := int64(binary.LittleEndian.Uint64(ctl.mem[ring+5*8:])); got != -2 {
		t.Errorf("start ring at %d: %d", ring, got)
	}
	if got := binary.LittleEndian.Uint32(ctl.mem[ring+ctlRing*8+5*4:]); got != 7 {
		t.Errorf("phase ring: %d", got)
	}
	if len(ctl.mem) != ctlSize {
		t.Errorf("size %d", len(ctl.mem))
	}
}

// TestBenchReadCResult: the measurements file of a C leg, and what is wrong
// with a bad one.
func TestBenchReadCResult(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "r")
		os.WriteFile(p, []byte(s), 0o600)
		return p
	}
	res, err := readCResult(write("framebus-bench-c 1\nrole consumer\ncpu0 100\ncpu1 1100\ntorn 2\noverwritten 1\nspin 3 4\n" +
		"s 0 1000 6000 9000 3000 0 64\ns 20000 10000 12000 15000 11000 1 64\n"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Frames != 2 || res.CPUNS != 1000 || res.WindowNS != 6000 || res.Torn != 2 || res.Overwritten != 1 ||
		res.Dropped != 1 || res.Waiting != 1 || res.Bytes != 128 || !strings.Contains(res.Note, "3 frames caught spinning, 4 spins missed") {
		t.Errorf("consumer result %+v", res)
	}
	lat, _ := decodeHist(res.Latency)
	commit, _ := decodeHist(res.Commit)
	if lat.Max() < 4990 || lat.Max() > 5010 || commit.Min() < 990 || commit.Min() > 1010 {
		t.Errorf("latency max %d, commit min %d", lat.Max(), commit.Min())
	}
	res, err = readCResult(write("framebus-bench-c 1\nrole producer\nframes 2\nwindow_ns 5\ncpu_ns 7\nawake 1\npub 10\npub 20\n"))
	if err != nil || res.Frames != 2 || res.CPUNS != 7 || res.Waiting != -1 || !strings.Contains(res.Note, "1 frames") {
		t.Errorf("producer result %+v, %v", res, err)
	}
	for _, bad := range []string{"", "something else\n", "framebus-bench-c 1\nrole juggler\n",
		"framebus-bench-c 1\nrole producer\nframes 3\npub 1\n", "framebus-bench-c 1\nrole consumer\ns 1 2 x 4 5 6 7\n",
		"framebus-bench-c 1\nrole consumer\ns 1 2 3 4 5 -6 7\n", "framebus-bench-c 1\nrole consumer\nbogus 1 2\n"} {
		if _, err := readCResult(write(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if _, err := readCResult(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file: no error")
	}
}

// TestCConsumerRefusesForgedFrame (amendment 9): a frame number forged far
// ahead in the active slot is refused and counted by the C consumer, never
// taken (which would make every real frame after it "nothing new"), and the
// stream goes on.
func TestCConsumerRefusesForgedFrame(t *testing.T) {
	c := testC(t)
	dir := t.TempDir()
	p, err := framebus.Create("forge", framebus.ProducerOptions{Dir: dir, Format: framebus.Format{Width: 64, Height: 64}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	cons := startCProc(t, c.consumer, "--wake", "auto", p.Path(), framebus.LockPath(dir, "forge"), "1000000", "10000")
	waitFor(t, 10*time.Second, "the C consumer joined", func() bool { return p.Stats().ActiveConsumers == 1 })
	publish := func(n int) {
		for i := 0; i < n; i++ {
			if _, err := p.Publish(make([]byte, 64*64*4), framebus.Meta{}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	publish(20)
	f, err := os.OpenFile(p.Path(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	active := binary.LittleEndian.Uint32(mem[256:])
	seqOff := 512 + int(active)*128 + 8
	real := binary.LittleEndian.Uint64(mem[seqOff:])
	binary.LittleEndian.PutUint64(mem[seqOff:], 1<<62) // forged, under an even lock
	// Wake the consumer on the shared word so that it reads the forged slot.
	ws := wordAt(mem, 320)
	ws.Add(1)
	futexWake(ws, 1<<30)
	time.Sleep(50 * time.Millisecond)
	binary.LittleEndian.PutUint64(mem[seqOff:], real)
	publish(20)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if code := cons.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("exit %d: %s", code, cons.stderrText())
	}
	sum := summary(t, cons.stdoutText())
	if sum["refused"] < 1 || sum["delivered"]+sum["dropped"] != 40 || sum["eos"] != 1 {
		t.Errorf("summary %v\nstderr: %s", sum, cons.stderrText())
	}
}
