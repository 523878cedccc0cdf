package recording

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/framebus/framebus/framebus"
)

func mustFormat(t testing.TB, w, h uint32, pf framebus.FourCC, fps uint32) framebus.Format {
	t.Helper()
	f, err := framebus.Format{Width: w, Height: h, PixelFormat: pf, FPSNum: fps, FPSDen: 1}.Complete()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// testFrames are 10 I420 64x48 frames, then 5 RGBA 32x16 frames (a format
// change), each with distinct bytes, metadata and times.
func testFrames(t testing.TB) []Frame {
	a, b := mustFormat(t, 64, 48, framebus.FormatI420, 25), mustFormat(t, 32, 16, framebus.FormatRGBA, 0)
	var frames []Frame
	for i := range 15 {
		f := a
		if i >= 10 {
			f = b
		}
		data := make([]byte, f.FrameSize)
		for j := range data {
			data[j] = byte(i*7 + j*13)
		}
		fr := Frame{Format: f, Seq: uint64(100 + 2*i), CaptureNS: int64(1e9 + i*40e6), CommitNS: int64(1e9 + i*40e6 + 3e6), ReadNS: int64(1e9 + i*40e6 + 4e6),
			Generation: 1, Dropped: 1, TornRetries: uint64(i % 3), Data: data}
		if i%2 == 0 {
			fr.UserMeta = []byte(fmt.Sprintf("meta %d", i))
		}
		if i == 10 {
			fr.Generation, fr.NewGeneration = 2, true
		}
		frames = append(frames, fr)
	}
	return frames
}

func writeFile(t testing.TB, path string, frames []Frame, end *End) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := NewWriter(f, "cam0", "test")
	for i := range frames {
		if err := w.WriteFrame(&frames[i]); err != nil {
			t.Fatal(err)
		}
	}
	if end != nil {
		if err := w.Close(*end); err != nil {
			t.Fatal(err)
		}
	}
}

// readAll reads every frame; it returns them and the error that ended it
// (io.EOF at a clean end).
func readAll(t testing.TB, path string) ([]Frame, *Reader, error) {
	t.Helper()
	r, err := Open(path)
	if err != nil {
		return nil, nil, err
	}
	t.Cleanup(func() { r.Close() })
	var out []Frame
	for {
		var fr Frame
		if err := r.Next(&fr); err != nil {
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

func sameFrame(t *testing.T, i int, got, want Frame) {
	t.Helper()
	if got.Format != want.Format || got.Seq != want.Seq || got.CaptureNS != want.CaptureNS || got.CommitNS != want.CommitNS ||
		got.ReadNS != want.ReadNS || got.Generation != want.Generation || got.NewGeneration != want.NewGeneration ||
		got.Dropped != want.Dropped || got.TornRetries != want.TornRetries || !bytes.Equal(got.UserMeta, want.UserMeta) ||
		!bytes.Equal(got.Data, want.Data) {
		t.Fatalf("frame %d read back differs:\n got  %+v\n want %+v", i, summary(got), summary(want))
	}
}

func summary(f Frame) string {
	return fmt.Sprintf("%v seq=%d capt=%d commit=%d read=%d gen=%d new=%v drop=%d torn=%d meta=%q data=%d B", f.Format, f.Seq, f.CaptureNS,
		f.CommitNS, f.ReadNS, f.Generation, f.NewGeneration, f.Dropped, f.TornRetries, f.UserMeta, len(f.Data))
}

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rec.mkv")
	frames := testFrames(t)
	writeFile(t, path, frames, &End{EndOfStream: true, Why: "end of stream", Dropped: 2})
	got, r, err := readAll(t, path)
	if err != io.EOF {
		t.Fatalf("read: %v", err)
	}
	if len(got) != len(frames) {
		t.Fatalf("read %d frames, wrote %d", len(got), len(frames))
	}
	for i := range frames {
		sameFrame(t, i, got[i], frames[i])
	}
	end, ok := r.End()
	if !ok || end.Frames != 15 || end.Dropped != 17 || !end.EndOfStream || end.Formats != 2 || end.Segments != 1 || end.FirstSeq != 100 || end.LastSeq != 128 {
		t.Errorf("end %+v (%v)", end, ok)
	}
	if r.Bus() != "cam0" {
		t.Errorf("bus %q", r.Bus())
	}
	// Rewind reads the same frames again.
	if err := r.Rewind(); err != nil {
		t.Fatal(err)
	}
	var fr Frame
	if err := r.Next(&fr); err != nil || fr.Seq != 100 || r.Format() != frames[0].Format {
		t.Fatalf("after Rewind: %v, seq %d", err, fr.Seq)
	}
}

// Every cut of the file reads the frames before the cut and says where it
// is; a cut at a frame boundary is a clean end without FRAMEBUS_END.
func TestTruncated(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rec.mkv")
	frames := testFrames(t)[:10]
	writeFile(t, path, frames, nil)
	whole, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, r, err := readAll(t, path)
	if err != io.EOF {
		t.Fatalf("an interrupted (unmarked) recording: %v", err)
	}
	if _, ok := r.End(); ok {
		t.Errorf("an interrupted recording says it has an end")
	}
	cut := filepath.Join(dir, "cut.mkv")
	for _, n := range []int{len(whole) - 1, len(whole) - 5000, len(whole) / 2, 600, 200, 30, 3} {
		if err := os.WriteFile(cut, whole[:n], 0o600); err != nil {
			t.Fatal(err)
		}
		got, _, err := readAll(t, cut)
		var te *TruncatedError
		switch {
		case errors.As(err, &te):
			if te.Frames != uint64(len(got)) {
				t.Errorf("cut at %d: the error says %d whole frames, %d were read", n, te.Frames, len(got))
			}
		case errors.Is(err, ErrNotRecording) && len(got) == 0 && n < 300:
			// cut before the first format
		case err == io.EOF:
			t.Errorf("cut at %d: a clean end after %d frames", n, len(got))
		default:
			t.Errorf("cut at %d: %v", n, err)
		}
		for i := range got {
			sameFrame(t, i, got[i], frames[i])
		}
	}
}

func TestCorruptFrame(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rec.mkv")
	frames := testFrames(t)[:4]
	writeFile(t, path, frames, &End{})
	b, _ := os.ReadFile(path)
	// Flip a byte inside the third frame's data, which follows its
	// record (and user metadata, "meta 2") and block header.
	i := bytes.Index(b, []byte("meta 2"))
	if i < 0 {
		t.Fatal("frame record not found")
	}
	b[i+100] ^= 0x40
	os.WriteFile(path, b, 0o600)
	got, _, err := readAll(t, path)
	if !errors.Is(err, ErrCorrupt) || len(got) != 2 || !strings.Contains(err.Error(), "CRC-32") {
		t.Fatalf("read %d frames, %v", len(got), err)
	}
}

func TestNotARecording(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string][]byte{"empty": nil, "text": []byte("hello, this is not a video at all\n")} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, content, 0o600)
		if _, err := Open(p); !errors.Is(err, ErrNotRecording) && !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := Open(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
}

// fullFile fails writes past limit bytes with ENOSPC, as a full disk does
// (after writing what fits).
type fullFile struct {
	*os.File
	limit int64
}

func (f *fullFile) Write(p []byte) (int, error) {
	off, _ := f.File.Seek(0, io.SeekCurrent)
	if room := f.limit - off; int64(len(p)) > room {
		n, _ := f.File.Write(p[:max(room, 0)])
		return n, syscall.ENOSPC
	}
	return f.File.Write(p)
}

func TestDiskFull(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rec.mkv")
	frames := testFrames(t)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	const limit = regionSize + 20000
	w := NewWriter(&fullFile{File: f, limit: limit}, "cam0", "test")
	var werr error
	n := 0
	for i := range frames {
		if werr = w.WriteFrame(&frames[i]); werr != nil {
			break
		}
		n++
	}
	f.Close()
	var we *WriteError
	if !errors.As(werr, &we) || !errors.Is(werr, syscall.ENOSPC) || we.Frames != uint64(n) || n == 0 {
		t.Fatalf("after %d frames: %v", n, werr)
	}
	fi, _ := os.Stat(path)
	if fi.Size() != we.Size || fi.Size() > limit {
		t.Errorf("file of %d bytes, the error says %d", fi.Size(), we.Size)
	}
	got, _, err := readAll(t, path)
	if err != io.EOF || len(got) != n {
		t.Fatalf("the full disk's file reads %d frames (%v), %d were written", len(got), err, n)
	}
}

// ffprobe reads the recording as raw video: the frames, size, pixel format
// and rate of each format (its first segment), and the framebus tags.
func TestFFprobeReadsIt(t *testing.T) {
	if _, err := exec.LookPath("ffprobe"); err != nil {
		if os.Getenv("FRAMEBUS_REQUIRE_TOOLS") != "" {
			t.Fatal("ffprobe is not installed (Debian: ffmpeg)")
		}
		t.Skip("ffprobe is not installed (Debian: ffmpeg)")
	}
	dir := t.TempDir()
	for _, c := range []struct {
		pf      framebus.FourCC
		pixFmt  string
		w, h    uint32
		fps     uint32
		rate    string
		frames  int
		withEnd bool
	}{
		{framebus.FormatI420, "yuv420p", 64, 48, 25, "25/1", 7, true},
		{framebus.FormatRGBA, "rgba", 32, 16, 30, "30/1", 3, false},
		{framebus.FormatRGB24, "rgb24", 32, 16, 30, "30/1", 2, true},
		{framebus.FormatBGR24, "bgr24", 32, 16, 30, "30/1", 2, true},
		{framebus.FormatGrey, "gray", 32, 16, 60, "60/1", 2, true},
		{framebus.FormatYUYV, "yuyv422", 32, 16, 30, "30/1", 2, true},
		{framebus.FormatNV12, "nv12", 32, 16, 30, "30/1", 2, true},
	} {
		f := mustFormat(t, c.w, c.h, c.pf, c.fps)
		var frames []Frame
		for i := range c.frames {
			frames = append(frames, Frame{Format: f, Seq: uint64(i + 1), CaptureNS: int64(i) * int64(1e9) / int64(c.fps), Data: make([]byte, f.FrameSize)})
		}
		path := filepath.Join(dir, c.pixFmt+".mkv")
		var end *End
		if c.withEnd {
			end = &End{EndOfStream: true}
		}
		writeFile(t, path, frames, end)
		out, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
			"-show_entries", "stream=codec_name,width,height,pix_fmt,r_frame_rate,nb_read_frames:stream_tags:format_tags", "-of", "json", path).Output()
		if err != nil {
			t.Errorf("ffprobe %s: %v\n%s", c.pixFmt, err, out)
			continue
		}
		var res struct {
			Streams []struct {
				Codec  string            `json:"codec_name"`
				Width  uint32            `json:"width"`
				Height uint32            `json:"height"`
				PixFmt string            `json:"pix_fmt"`
				Rate   string            `json:"r_frame_rate"`
				Frames string            `json:"nb_read_frames"`
				Tags   map[string]string `json:"tags"`
			} `json:"streams"`
			Format struct {
				Tags map[string]string `json:"tags"`
			} `json:"format"`
		}
		if err := json.Unmarshal(out, &res); err != nil || len(res.Streams) != 1 {
			t.Errorf("ffprobe %s: %v\n%s", c.pixFmt, err, out)
			continue
		}
		s := res.Streams[0]
		if s.Codec != "rawvideo" || s.Width != c.w || s.Height != c.h || s.PixFmt != c.pixFmt || s.Rate != c.rate || s.Frames != strconv.Itoa(c.frames) {
			t.Errorf("ffprobe %s: %+v", c.pixFmt, s)
		}
		if res.Format.Tags["FRAMEBUS_BUS"] != "cam0" || !strings.Contains(s.Tags["FRAMEBUS_FORMAT"], `"pixel_format":"`+c.pf.String()+`"`) ||
			strings.Contains(res.Format.Tags["FRAMEBUS_END"], `"frames":`+strconv.Itoa(c.frames)) != c.withEnd {
			t.Errorf("ffprobe %s: tags %v, stream tags %v", c.pixFmt, res.Format.Tags, s.Tags)
		}
	}
}

// Writing and reading a frame allocate nothing.
func TestNoAllocationPerFrame(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rec.mkv")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := NewWriter(f, "cam0", "test")
	frames := testFrames(t)[:10]
	w.WriteFrame(&frames[0])
	i := 0
	if a := testing.AllocsPerRun(200, func() {
		i++
		fr := frames[i%10]
		fr.Seq, fr.CaptureNS = uint64(1000+i), int64(2e9+i*1e6)
		if err := w.WriteFrame(&fr); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("WriteFrame: %v allocations per frame", a)
	}
	w.Close(End{})
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]byte, frames[0].Format.FrameSize)
	var fr Frame
	r.Next(&fr)
	r.ReadData(buf)
	if a := testing.AllocsPerRun(150, func() {
		if err := r.Next(&fr); err != nil {
			t.Fatal(err)
		}
		if err := r.ReadData(buf[:fr.Size]); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("Next and ReadData: %v allocations per frame", a)
	}
}

// A frame undone after it was written (its bytes went bad under the
// writer: record --lossless writing from a hold) leaves no trace: the
// file reads back as if it had never been written, and the writer goes
// on, even after the write error it caused.
func TestUndo(t *testing.T) {
	frames := testFrames(t)[:6]
	path := filepath.Join(t.TempDir(), "undo.mkv")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := NewWriter(f, "cam0", "test")
	for i := range 3 {
		if err := w.WriteFrame(&frames[i]); err != nil {
			t.Fatal(err)
		}
	}
	if !w.Continues(frames[3].Format) {
		t.Fatal("frame 3 should continue the track")
	}
	m := w.Mark()
	bad := frames[3]
	if err := w.WriteFrame(&bad); err != nil { // written whole, then found bad
		t.Fatal(err)
	}
	if err := w.Undo(m); err != nil {
		t.Fatal(err)
	}
	m = w.Mark()
	w.err = &WriteError{Err: syscall.EFAULT} // a write that faulted mid-frame
	if err := w.Undo(m); err != nil {
		t.Fatal(err)
	}
	for i := 4; i < 6; i++ {
		if err := w.WriteFrame(&frames[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(End{Why: "test"}); err != nil {
		t.Fatal(err)
	}
	got, r, err := readAll(t, path)
	if err != io.EOF {
		t.Fatalf("read: %v", err)
	}
	want := append(append([]Frame{}, frames[:3]...), frames[4:6]...)
	if len(got) != len(want) {
		t.Fatalf("%d frames read back, want %d", len(got), len(want))
	}
	for i := range want {
		sameFrame(t, i, got[i], want[i])
	}
	if e, ok := r.End(); !ok || e.Frames != 5 {
		t.Fatalf("end %+v (%v), want 5 frames", e, ok)
	}
}
