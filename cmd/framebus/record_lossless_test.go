package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/internal/recording"

	"github.com/framebus/framebus/internal/testutil"
)

var recordedLossless = regexp.MustCompile(`^recorded (\d+) frames \((\d+) dropped\) to (.+): lossless (.+), ([\d.]+ [KMG]?i?B)(, (\d) formats)?\n$`)

// published is a frame the test published, by sequence number.
type published struct {
	format    framebus.Format
	data      []byte
	meta      []byte
	captureNS int64
}

// publishFrames publishes n frames of format f on p, each with its own
// bytes, capture time and (for most) user metadata, gap apart.
func publishFrames(t *testing.T, p *framebus.Producer, f framebus.Format, n int, gap time.Duration, into map[uint64]published) {
	t.Helper()
	for i := range n {
		data := make([]byte, f.FrameSize)
		for j := range data {
			data[j] = byte(len(into)*31 + j*7 + j/251)
		}
		var meta []byte
		if i%3 != 2 {
			meta = []byte(strings.Repeat("m", i%framebus.UserMetaMax) + strconv.Itoa(len(into)))
			meta = meta[:min(len(meta), framebus.UserMetaMax)]
		}
		capture := framebus.Now() - int64(2*time.Millisecond)
		seq, err := p.Publish(data, framebus.Meta{CaptureNS: capture, UserMeta: meta})
		if err != nil {
			t.Fatal(err)
		}
		into[seq] = published{f, data, meta, capture}
		time.Sleep(gap)
	}
}

// waitGrown waits until the one file that pattern matches has grown by more
// than n bytes from its size now: the recorder wrote frames.
func waitGrown(t *testing.T, pattern string, n int64) {
	t.Helper()
	size := func() int64 {
		m, _ := filepath.Glob(pattern)
		if len(m) != 1 {
			return -1
		}
		st, err := os.Stat(m[0])
		if err != nil {
			return -1
		}
		return st.Size()
	}
	from := max(size(), 0)
	testutil.WaitFor(t, 15*time.Second, fmt.Sprintf("%s to grow by %d bytes", pattern, n), func() bool { return size() > from+n })
}

// readRecording reads every frame of a recording.
func readRecording(t *testing.T, path string) ([]recording.Frame, *recording.Reader, error) {
	t.Helper()
	r, err := recording.Open(path)
	if err != nil {
		return nil, nil, err
	}
	t.Cleanup(func() { r.Close() })
	var out []recording.Frame
	for {
		var fr recording.Frame
		if err := r.Next(&fr); err != nil {
			if err == io.EOF {
				err = nil
			}
			return out, r, err
		}
		fr.Data = make([]byte, fr.Size)
		if err := r.ReadData(fr.Data); err != nil {
			return out, r, err
		}
		fr.UserMeta = bytes.Clone(fr.UserMeta)
		out = append(out, fr)
	}
}

func waitConsumers(t *testing.T, dir, name string, n int) {
	t.Helper()
	testutil.WaitFor(t, 15*time.Second, fmt.Sprintf("%d consumers on %s", n, name), func() bool {
		s, err := framebus.Inspect(name, dir)
		return err == nil && len(s.Consumers) == n
	})
}

// record --lossless keeps every frame it gets byte for byte with its
// sequence number, capture time and user metadata, across a format change;
// ffprobe reads the file as raw video; replay publishes the same frames
// again, as fast as possible or at the recorded pace.
func TestRecordLosslessAndReplay(t *testing.T) {
	dir, out := t.TempDir(), filepath.Join(t.TempDir(), "rec.mkv")
	rec := start(t, "record", "src", "--out", out, "--lossless", "--dir", dir, "--timeout", "20s")
	a, _ := framebus.Format{Width: 64, Height: 48, PixelFormat: framebus.FormatI420, FPSNum: 50, FPSDen: 1}.Complete()
	b, _ := framebus.Format{Width: 32, Height: 16, PixelFormat: framebus.FormatRGBA, FPSNum: 50, FPSDen: 1}.Complete()
	p, err := framebus.Create("src", framebus.ProducerOptions{Format: a, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	waitConsumers(t, dir, "src", 1)
	sent := map[uint64]published{}
	publishFrames(t, p, a, 30, 20*time.Millisecond, sent)
	if err := p.Reconfigure(b); err != nil {
		t.Fatal(err)
	}
	publishFrames(t, p, b, 15, 20*time.Millisecond, sent)
	p.Close()
	if code := rec.Wait(t, 20*time.Second); code != 0 {
		t.Fatalf("record exit %d:\n%s", code, rec.Stderr.String())
	}
	m := recordedLossless.FindStringSubmatch(rec.Stdout.String())
	if m == nil || m[3] != out || m[4] != "64x48 I420 (YU12) @ 50 fps" || m[7] != "2" {
		t.Fatalf("record printed %q", rec.Stdout.String())
	}
	n, _ := strconv.Atoi(m[1])
	dropped, _ := strconv.Atoi(m[2])
	if n+dropped != 45 || n < 35 {
		t.Errorf("recorded %d and dropped %d of 45", n, dropped)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(out), "*.partial-*")); len(left) != 0 {
		t.Errorf("the temporary file is left: %v", left)
	}

	frames, r, err := readRecording(t, out)
	if err != nil || len(frames) != n {
		t.Fatalf("the file has %d frames (%v), record says %d", len(frames), err, n)
	}
	if end, ok := r.End(); !ok || !end.EndOfStream || end.Why != "end of stream" || end.Frames != uint64(n) || end.Formats != 2 {
		t.Errorf("the recording's end: %+v (%v)", end, ok)
	}
	firstFormat := 0
	var prevSeq uint64
	for i, fr := range frames {
		want, ok := sent[fr.Seq]
		switch {
		case !ok:
			t.Fatalf("frame %d has seq %d, which was never published", i, fr.Seq)
		case fr.Seq <= prevSeq:
			t.Fatalf("frame %d: seq %d after %d", i, fr.Seq, prevSeq)
		case fr.Format != want.format || !bytes.Equal(fr.Data, want.data) || !bytes.Equal(fr.UserMeta, want.meta) || fr.CaptureNS != want.captureNS:
			t.Fatalf("frame %d (seq %d) differs from what was published: format %v / %v, meta %q / %q, capture %d / %d, data equal %v",
				i, fr.Seq, fr.Format, want.format, fr.UserMeta, want.meta, fr.CaptureNS, want.captureNS, bytes.Equal(fr.Data, want.data))
		case fr.CommitNS < fr.CaptureNS || fr.ReadNS < fr.CommitNS:
			t.Fatalf("frame %d: capture %d, commit %d, read %d", i, fr.CaptureNS, fr.CommitNS, fr.ReadNS)
		}
		if fr.Seq > prevSeq+1 && prevSeq != 0 && fr.Dropped != fr.Seq-prevSeq-1 {
			t.Errorf("frame %d: %d dropped before it in the file, the gap is %d", i, fr.Dropped, fr.Seq-prevSeq-1)
		}
		if fr.Format == a {
			firstFormat++
		} else if fr.NewGeneration != (i == firstFormat) {
			t.Errorf("frame %d: new generation %v", i, fr.NewGeneration)
		}
		prevSeq = fr.Seq
	}

	if _, err := exec.LookPath("ffprobe"); err == nil {
		pr := ffprobe(t, out)
		if pr.Codec != "rawvideo" || pr.Width != 64 || pr.Height != 48 || pr.PixFmt != "yuv420p" || pr.Rate != "50/1" || pr.Frames != strconv.Itoa(firstFormat) {
			t.Errorf("ffprobe: %+v; the file's first format has %d frames", pr, firstFormat)
		}
	} else if os.Getenv("FRAMEBUS_REQUIRE_TOOLS") != "" {
		t.Error("ffprobe is not installed")
	}

	// As fast as possible: every frame.
	capt := run(t, "capture", "--name", "again", "--source", "replay:"+out, "--fps", "0", "--dir", dir)
	if mm := closedSeq.FindStringSubmatch(capt.Stderr); capt.Code != 0 || mm == nil || mm[1] != strconv.Itoa(n) || !strings.Contains(capt.Stderr, "the source changed format") {
		t.Errorf("replay --fps 0: exit %d:\n%s", capt.Code, capt.Stderr)
	}

	// At the recorded pace, to a consumer that checks every frame.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type got struct {
		n   int
		err error
	}
	res := make(chan got, 1)
	go func() {
		c, err := framebus.OpenContext(ctx, "paced", framebus.ConsumerOptions{Dir: dir, Wait: 20 * time.Second, Newest: true})
		if err != nil {
			res <- got{0, err}
			return
		}
		defer c.Close()
		buf := make([]byte, a.FrameSize)
		k, count := 0, 0
		for {
			fr, err := c.ReadInto(ctx, buf)
			if errors.Is(err, framebus.ErrEndOfStream) {
				res <- got{count, nil}
				return
			}
			if err != nil {
				res <- got{count, err}
				return
			}
			for k < len(frames) && !bytes.Equal(frames[k].Data, fr.Data) {
				k++
			}
			if k == len(frames) {
				res <- got{count, fmt.Errorf("replayed frame %d (seq %d) is none of the recording's, in order", count, fr.Seq)}
				return
			}
			if !bytes.Equal(frames[k].UserMeta, fr.UserMeta) || fr.Format != frames[k].Format {
				res <- got{count, fmt.Errorf("replayed frame %d: meta %q format %v, recorded %q %v", count, fr.UserMeta, fr.Format, frames[k].UserMeta, frames[k].Format)}
				return
			}
			if lat := fr.CommitNS - fr.CaptureNS; lat < int64(time.Millisecond) {
				res <- got{count, fmt.Errorf("replayed frame %d was captured %v before its commit; the recording says about 2 ms", count, time.Duration(lat))}
				return
			}
			k++
			count++
		}
	}()
	span := time.Duration(frames[len(frames)-1].CommitNS - frames[0].CommitNS)
	began := time.Now()
	capt = run(t, "capture", "--name", "paced", "--source", "replay:"+out, "--dir", dir)
	took := time.Since(began)
	g := <-res
	if capt.Code != 0 || g.err != nil || g.n < n-3 {
		t.Errorf("replay at the recorded pace: exit %d, the consumer got %d of %d frames: %v\n%s", capt.Code, g.n, n, g.err, capt.Stderr)
	}
	if took < span-50*time.Millisecond { // never early; a loaded machine may be late
		t.Errorf("the replay took %v, the recording spans %v", took, span)
	}

	// --loop goes on past the end.
	capt = run(t, "capture", "--name", "loop", "--source", "replay:"+out, "--fps", "0", "--loop", "--duration", "1s", "--dir", dir)
	if mm := closedSeq.FindStringSubmatch(capt.Stderr); capt.Code != 0 || mm == nil {
		t.Errorf("replay --loop: exit %d:\n%s", capt.Code, capt.Stderr)
	} else if k, _ := strconv.Atoi(mm[1]); k <= n {
		t.Errorf("replay --loop published %d frames in 1 s, the recording has %d", k, n)
	}
}

// The recording is written under a temporary name and renamed when it ends
// cleanly (a signal); a killed recorder leaves the temporary file, which
// replays.
func TestRecordTemporaryFile(t *testing.T) {
	dir, outDir := t.TempDir(), t.TempDir()
	out := filepath.Join(outDir, "cam.mkv")
	startCapture(t, dir, "cam")
	partials := func() []string {
		m, _ := filepath.Glob(filepath.Join(outDir, "cam.partial-*.mkv"))
		return m
	}
	rec := start(t, "record", "cam", "--out", out, "--lossless", "--dir", dir)
	testutil.WaitFor(t, 15*time.Second, "the temporary file", func() bool { return len(partials()) == 1 })
	if exists(out) {
		t.Fatalf("%s exists while the recording runs", out)
	}
	waitGrown(t, filepath.Join(outDir, "cam.partial-*.mkv"), 3*64*48*4) // a few frames recorded
	rec.Signal(t, syscall.SIGHUP)
	if code := rec.Wait(t, 15*time.Second); code != 0 || !exists(out) || len(partials()) != 0 {
		t.Fatalf("after SIGHUP: exit %d, %s exists %v, temporary %v\n%s", code, out, exists(out), partials(), rec.Stderr.String())
	}
	if _, r, err := readRecording(t, out); err != nil {
		t.Fatal(err)
	} else if end, ok := r.End(); !ok || end.Why != "interrupted" {
		t.Errorf("the end of a recording stopped by SIGHUP: %+v %v", end, ok)
	}

	os.Remove(out)
	rec = start(t, "record", "cam", "--out", out, "--lossless", "--dir", dir)
	testutil.WaitFor(t, 15*time.Second, "the temporary file", func() bool { return len(partials()) == 1 })
	waitGrown(t, filepath.Join(outDir, "cam.partial-*.mkv"), 3*64*48*4)
	rec.Signal(t, syscall.SIGKILL)
	rec.Wait(t, 10*time.Second)
	if exists(out) || len(partials()) != 1 {
		t.Fatalf("after SIGKILL: %s exists %v, temporary %v", out, exists(out), partials())
	}
	part := partials()[0]
	frames, r, err := readRecording(t, part)
	var te *recording.TruncatedError
	if (err != nil && !errors.As(err, &te)) || len(frames) == 0 {
		t.Fatalf("the killed recording: %d frames, %v", len(frames), err)
	}
	if _, ok := r.End(); ok {
		t.Errorf("the killed recording has an end mark")
	}
	capt := run(t, "capture", "--name", "again", "--source", "replay:"+part, "--fps", "0", "--dir", dir)
	mm := closedSeq.FindStringSubmatch(capt.Stderr)
	switch {
	case mm == nil || mm[1] != strconv.Itoa(len(frames)):
		t.Errorf("replay of the killed recording (%d whole frames):\n%s", len(frames), capt.Stderr)
	case te != nil && (capt.Code != 1 || !strings.Contains(capt.Stderr, "cut short")):
		t.Errorf("replay of a recording cut inside a frame: exit %d\n%s", capt.Code, capt.Stderr)
	case te == nil && (capt.Code != 0 || !strings.Contains(capt.Stderr, "no end mark")):
		t.Errorf("replay of a recording cut between frames: exit %d\n%s", capt.Code, capt.Stderr)
	}
}

// A full disk (a private 8 MiB tmpfs; 4 MiB for MJPEG, whose frames are
// small) ends a recording with a clear error and leaves the temporary
// file, which replays every frame it has.
func TestRecordDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs (mount -t tmpfs -o size=8m)")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("needs unshare (util-linux) for a private mount")
	}
	dir := t.TempDir()
	startCapture(t, dir, "big", "--size", "320x240", "--fps", "100")
	modes := [][]string{{"mkv", "8m", "--lossless"}}
	if hasOpenCV {
		modes = append(modes, []string{"avi", "4m"})
	}
	for _, mode := range modes {
		t.Run(mode[0], func(t *testing.T) {
			small, keep := t.TempDir(), t.TempDir()
			script := `mount -t tmpfs -o size=$2 tmpfs "$1" || exit 99
shift 2; small=$1; keep=$2; shift 2
"$@"; rc=$?
ls -A "$small" > "$keep/ls"; cp "$small"/* "$keep"/ 2>/dev/null; exit $rc`
			args := append([]string{"-m", "sh", "-c", script, "sh", small, mode[1], small, keep, bin, "record", "big", "--out", filepath.Join(small, "rec."+mode[0]), "--dir", dir}, mode[2:]...)
			cmd := exec.Command("unshare", args...)
			var so, se bytes.Buffer
			cmd.Stdout, cmd.Stderr = &so, &se
			done := make(chan error, 1)
			cmd.Start()
			go func() { done <- cmd.Wait() }()
			var err error
			select {
			case err = <-done:
			case <-time.After(60 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("record on a full disk still runs after 60 s:\n%s", se.String())
			}
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			if code == 99 {
				t.Skipf("cannot mount a tmpfs here: %s", se.String())
			}
			checkNoPanic(t, args, se.String())
			lines := strings.Split(strings.TrimSpace(se.String()), "\n")
			last := lines[len(lines)-1]
			ls, _ := os.ReadFile(filepath.Join(keep, "ls"))
			if code != 1 || !strings.Contains(last, "the disk is full") || !strings.Contains(last, "playable up to the last whole frame") {
				t.Fatalf("exit %d, last line %q", code, last)
			}
			names := strings.Fields(string(ls))
			if len(names) != 1 || !strings.HasPrefix(names[0], "rec.partial-") {
				t.Fatalf("the full disk holds %q, want only the temporary file", names)
			}
			m := regexp.MustCompile(`the (\d+) frames recorded are in `).FindStringSubmatch(last)
			if m == nil || m[1] == "0" {
				t.Fatalf("the error does not say how many frames were kept: %q", last)
			}
			part := filepath.Join(keep, names[0])
			if mode[0] == "mkv" {
				frames, _, err := readRecording(t, part)
				if err != nil || strconv.Itoa(len(frames)) != m[1] {
					t.Errorf("the partial recording reads %d frames (%v), the error says %s", len(frames), err, m[1])
				}
				capt := run(t, "capture", "--name", "again", "--source", "replay:"+part, "--fps", "0", "--dir", t.TempDir())
				if mm := closedSeq.FindStringSubmatch(capt.Stderr); capt.Code != 0 || mm == nil || mm[1] != m[1] {
					t.Errorf("replay of the partial recording: exit %d\n%s", capt.Code, capt.Stderr)
				}
			}
			if _, err := exec.LookPath("ffprobe"); err == nil {
				if pr := ffprobe(t, part); pr.Width != 320 || pr.Frames != m[1] {
					t.Errorf("ffprobe of the partial %s: %+v, the error says %s frames", mode[0], pr, m[1])
				}
			}
		})
	}
}

// Replaying what is not a whole recording is a clear error.
func TestReplayBadInput(t *testing.T) {
	tmp := t.TempDir()
	text := filepath.Join(tmp, "notes.txt")
	os.WriteFile(text, []byte("not a video\n"), 0o600)
	for _, c := range []struct {
		file string
		want string
	}{
		{text, "not a framebus recording"},
		{filepath.Join(tmp, "missing.mkv"), "no such file"},
		{tmp, "is a directory"},
		{"", "use replay:FILE"},
	} {
		r := run(t, "capture", "--name", "r", "--source", "replay:"+c.file, "--dir", t.TempDir())
		if r.Code != 2 || !strings.Contains(r.Stderr, c.want) || strings.Count(r.Stderr, "\n") != 1 {
			t.Errorf("replay:%s: exit %d, %q", c.file, r.Code, r.Stderr)
		}
	}

	// A recording cut inside a frame, and one with a corrupt frame: the
	// frames before it are published, then an error.
	dir := t.TempDir()
	rec := filepath.Join(tmp, "rec.mkv")
	startCapture(t, dir, "cam", "--size", "64x48", "--fps", "100")
	if r := run(t, "record", "cam", "--out", rec, "--lossless", "--duration", "1s", "--dir", dir); r.Code != 0 {
		t.Fatalf("record: %d %s", r.Code, r.Stderr)
	}
	frames, _, err := readRecording(t, rec)
	if err != nil || len(frames) < 10 {
		t.Fatalf("%d frames, %v", len(frames), err)
	}
	whole, _ := os.ReadFile(rec)
	cut := filepath.Join(tmp, "cut.mkv")
	os.WriteFile(cut, whole[:len(whole)-64*48*4/2], 0o600) // inside the last frame
	r := run(t, "capture", "--name", "r", "--source", "replay:"+cut, "--fps", "0", "--dir", dir)
	if mm := closedSeq.FindStringSubmatch(r.Stderr); r.Code != 1 || mm == nil || mm[1] != strconv.Itoa(len(frames)-1) || !strings.Contains(r.Stderr, "is cut short") {
		t.Errorf("a cut recording: exit %d:\n%s", r.Code, r.Stderr)
	}
	bad := bytes.Clone(whole)
	i := bytes.LastIndex(bad, frames[5].Data[:64]) // inside frame 5 (the pattern's first row)
	for i >= 0 && i > len(bad)/2 {
		i = bytes.LastIndex(bad[:i], frames[5].Data[:64])
	}
	if i < 0 {
		t.Fatal("frame data not found")
	}
	bad[i+100] ^= 1
	corrupt := filepath.Join(tmp, "corrupt.mkv")
	os.WriteFile(corrupt, bad, 0o600)
	r = run(t, "capture", "--name", "r", "--source", "replay:"+corrupt, "--fps", "0", "--dir", dir)
	if r.Code != 1 || !strings.Contains(r.Stderr, "fails its CRC-32") {
		t.Errorf("a corrupt recording: exit %d:\n%s", r.Code, r.Stderr)
	}
}

var recordedCopies = regexp.MustCompile(`recorded: frames written from a hold \(zero-copy\) or from a copy copied=(\d+) copies_per_frame=([\d.]+) frames=(\d+) held=(\d+) held_lost=(\d+)`)

// record --lossless writes each frame from a hold where the bus allows
// one: on 4 slots no frame is copied and every frame in the file is the
// one published, byte for byte; on 2 slots (no holds) it copies each frame,
// as before holds.
func TestRecordLosslessHolds(t *testing.T) {
	for _, c := range []struct {
		slots   int
		holds   bool // every frame but the first (which adds the file's track) from a hold
		comment string
	}{
		{4, true, "holds: zero-copy"},
		{2, false, "cap 0: copies"},
	} {
		t.Run(strconv.Itoa(c.slots)+"slots", func(t *testing.T) {
			dir, out := t.TempDir(), filepath.Join(t.TempDir(), "rec.mkv")
			name := "h" + strconv.Itoa(c.slots)
			rec := start(t, "record", name, "--out", out, "--lossless", "--dir", dir, "--timeout", "20s")
			fm, _ := framebus.Format{Width: 320, Height: 240, PixelFormat: framebus.FormatRGBA, FPSNum: 30, FPSDen: 1}.Complete()
			p, err := framebus.Create(name, framebus.ProducerOptions{Format: fm, Dir: dir, Slots: c.slots})
			if err != nil {
				t.Fatal(err)
			}
			waitConsumers(t, dir, name, 1)
			sent := map[uint64]published{}
			publishFrames(t, p, fm, 40, 25*time.Millisecond, sent)
			p.Close()
			if code := rec.Wait(t, 20*time.Second); code != 0 {
				t.Fatalf("record exit %d:\n%s", code, rec.Stderr.String())
			}
			m := recordedLossless.FindStringSubmatch(rec.Stdout.String())
			if m == nil {
				t.Fatalf("record printed %q", rec.Stdout.String())
			}
			n, _ := strconv.Atoi(m[1])
			cm := recordedCopies.FindStringSubmatch(rec.Stderr.String())
			if cm == nil {
				t.Fatalf("no copies in the log:\n%s", rec.Stderr.String())
			}
			copied, _ := strconv.Atoi(cm[1])
			frames, _ := strconv.Atoi(cm[3])
			held, _ := strconv.Atoi(cm[4])
			t.Logf("%s: %d frames recorded, %d held, %d copied, %s copies per frame", c.comment, n, held, copied, cm[2])
			wantCopied := n
			if c.holds {
				wantCopied = 1
			}
			if frames != n || held+copied != n || cm[5] != "0" || copied != wantCopied {
				t.Errorf("%d slots: %s (recorded %d)", c.slots, cm[0], n)
			}
			if n < 35 {
				t.Errorf("recorded %d of 40", n)
			}
			got, _, err := readRecording(t, out)
			if err != nil || len(got) != n {
				t.Fatalf("the file has %d frames (%v), record says %d", len(got), err, n)
			}
			for i, fr := range got {
				want, ok := sent[fr.Seq]
				if !ok || !bytes.Equal(fr.Data, want.data) || !bytes.Equal(fr.UserMeta, want.meta) || fr.CaptureNS != want.captureNS {
					t.Fatalf("frame %d (seq %d) is not the frame published (known %v)", i, fr.Seq, ok)
				}
			}
		})
	}
}

// The bus file truncated under record --lossless writing from holds: the
// recorder goes on with the next generation, and the file it leaves reads
// back whole, every record's CRC-32 right (a frame whose bytes vanished
// mid-write is cut off and counted as dropped, never kept corrupt).
func TestRecordLosslessHoldsTruncated(t *testing.T) {
	dir, out := t.TempDir(), filepath.Join(t.TempDir(), "rec.mkv")
	capt := startCapture(t, dir, "ht", "--size", "1280x720", "--fps", "30", "--slots", "4")
	testutil.WaitFor(t, 15*time.Second, "the bus", func() bool { return exists(segment(dir, "ht")) })
	rec := start(t, "record", "ht", "--out", out, "--lossless", "--dir", dir, "--timeout", "30s")
	waitConsumers(t, dir, "ht", 1)
	partial := filepath.Join(filepath.Dir(out), "rec.partial-*.mkv")
	const frame = 1280 * 720 * 4
	waitGrown(t, partial, 2*frame)
	for i, size := range []int64{0, 4096, -2, -1, 4096, -2} {
		path := segment(dir, "ht")
		before := inode(path)
		if st, err := os.Stat(path); err == nil && size < 0 {
			size = st.Size() / -size // half, or all but nothing: the frames' pages
			if size == st.Size() {
				size -= 4096
			}
		}
		if err := os.Truncate(path, size); err != nil {
			t.Fatal(err)
		}
		testutil.WaitFor(t, 10*time.Second, "the new generation", func() bool {
			ino := inode(path)
			return ino != 0 && ino != before
		})
		if !rec.Running() {
			t.Fatalf("round %d: record ended (exit %d):\n%s", i, rec.Code, rec.Stderr.String())
		}
		waitGrown(t, partial, int64(1+i%3)*frame) // frames of the new generation recorded
	}
	waitGrown(t, partial, 2*frame)
	rec.Signal(t, syscall.SIGTERM)
	if code := rec.Wait(t, 20*time.Second); code != 0 {
		t.Fatalf("record exit %d:\n%s", code, rec.Stderr.String())
	}
	capt.Signal(t, syscall.SIGTERM)
	capt.Wait(t, 20*time.Second)
	m := recordedLossless.FindStringSubmatch(rec.Stdout.String())
	cm := recordedCopies.FindStringSubmatch(rec.Stderr.String())
	if m == nil || cm == nil {
		t.Fatalf("record printed %q\n%s", rec.Stdout.String(), rec.Stderr.String())
	}
	n, _ := strconv.Atoi(m[1])
	held, _ := strconv.Atoi(cm[4])
	t.Logf("%d frames recorded (%s dropped): %s", n, m[2], cm[0])
	if held == 0 {
		t.Errorf("no frame written from a hold: %s", cm[0])
	}
	frames, _, err := readRecording(t, out)
	if err != nil || len(frames) != n {
		t.Fatalf("the file has %d frames (%v), record says %d", len(frames), err, n)
	}
}
