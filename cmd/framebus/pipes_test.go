package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/framebus/framebus/framebus"

	"github.com/framebus/framebus/internal/testutil"
)

// needInterop finds the programs a test talks to (ffmpeg, gst-launch-1.0,
// prometheus, ...). A missing one skips the test, unless
// FRAMEBUS_REQUIRE_TOOLS is set (make test sets it and installs them).
func needInterop(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			if os.Getenv("FRAMEBUS_REQUIRE_TOOLS") != "" {
				t.Fatalf("%s is not installed and FRAMEBUS_REQUIRE_TOOLS is set (make sysdeps installs it)", n)
			}
			t.Skipf("%s is not installed (make sysdeps installs it)", n)
		}
	}
}

// tool is a process of a pipeline (ffmpeg, gst-launch, framebus), made
// before it starts (pipe connects two) and then a testutil.Proc.
type tool struct {
	Cmd *exec.Cmd
	*testutil.Proc
}

func newTool(name string, args ...string) *tool {
	return &tool{Cmd: exec.Command(name, args...)}
}

func (p *tool) start(t *testing.T) *tool {
	t.Helper()
	p.Proc = testutil.Start(t, p.Cmd)
	return p
}

// waitOK waits for the end, at most d, and fails the test on a non-zero
// exit.
func (p *tool) waitOK(t *testing.T, d time.Duration) {
	t.Helper()
	if code := p.Wait(t, d); code != 0 {
		t.Fatalf("%q: exit %d:\n%s", p.Cmd.Args, code, p.Stderr.String())
	}
}

// pipe connects a's stdout to b's stdin.
func pipe(t *testing.T, a, b *tool) {
	t.Helper()
	r, err := a.Cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	b.Cmd.Stdin = r
}

var catEnded = regexp.MustCompile(`cat ended .*dropped=(\d+) frames=(\d+)`)
var closedFrames = regexp.MustCompile(`closed the bus .*frames=(\d+)`)

// closedSeq is the last sequence number a capture published: its frames in
// all generations.
var closedSeq = regexp.MustCompile(`closed the bus .*last_seq=(\d+)`)

// catCounts is what cat's last log line says it wrote and dropped.
func catCounts(t *testing.T, stderr string) (frames, dropped int) {
	t.Helper()
	m := catEnded.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("cat did not log its end:\n%s", stderr)
	}
	d, _ := strconv.Atoi(m[1])
	f, _ := strconv.Atoi(m[2])
	return f, d
}

type probed struct {
	Codec  string `json:"codec_name"`
	Width  int    `json:"width"`
	Height int    `json:"height"`
	PixFmt string `json:"pix_fmt"`
	Rate   string `json:"r_frame_rate"`
	Frames string `json:"nb_read_frames"`
}

// ffprobe reads the first video stream of path, counting its frames.
func ffprobe(t *testing.T, path string) probed {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=codec_name,width,height,pix_fmt,r_frame_rate,nb_read_frames", "-of", "json", path).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v\n%s", path, err, out)
	}
	var r struct{ Streams []probed }
	if err := json.Unmarshal(out, &r); err != nil || len(r.Streams) != 1 {
		t.Fatalf("ffprobe %s: %v\n%s", path, err, out)
	}
	return r.Streams[0]
}

// ffmpeg's test source, raw, through capture --source stdin onto a bus;
// framebus cat --y4m off the bus into ffmpeg's x264 encoder; ffprobe finds
// in the MP4 the frames cat wrote, at the bus's size and rate.
func TestPipeFFmpegThroughTheBus(t *testing.T) {
	needInterop(t, "ffmpeg", "ffprobe")
	dir, out := t.TempDir(), filepath.Join(t.TempDir(), "out.mp4")
	cat := newTool(bin, "cat", "ff", "--y4m", "--dir", dir, "--timeout", "30s")
	enc := newTool("ffmpeg", "-nostdin", "-v", "error", "-f", "yuv4mpegpipe", "-i", "-", "-c:v", "libx264", "-preset", "ultrafast", out)
	pipe(t, cat, enc)
	enc.start(t)
	cat.start(t)

	src := newTool("ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-frames:v", "75",
		"-pix_fmt", "yuv420p", "-f", "rawvideo", "-")
	capt := newTool(bin, "capture", "--name", "ff", "--source", "stdin", "--size", "320x240", "--format", "I420", "--fps", "25", "--dir", dir)
	pipe(t, src, capt)
	capt.start(t)
	src.start(t)
	src.waitOK(t, 30*time.Second)
	capt.waitOK(t, 30*time.Second)
	if m := closedFrames.FindStringSubmatch(capt.Stderr.String()); m == nil || m[1] != "75" {
		t.Fatalf("capture did not publish the 75 frames ffmpeg wrote:\n%s", capt.Stderr.String())
	}
	cat.waitOK(t, 20*time.Second)
	enc.waitOK(t, 30*time.Second)
	frames, dropped := catCounts(t, cat.Stderr.String())
	if frames < 40 || frames+dropped > 75 { // it may join a few frames late; a loaded machine drops some
		t.Errorf("cat wrote %d frames and dropped %d of 75", frames, dropped)
	}
	p := ffprobe(t, out)
	if p.Codec != "h264" || p.Width != 320 || p.Height != 240 || p.Rate != "25/1" || p.Frames != strconv.Itoa(frames) {
		t.Errorf("ffprobe of the MP4: %+v; cat wrote %d frames", p, frames)
	}
}

// GStreamer's test source through fdsink and capture --source stdin onto
// a bus; framebus cat --raw off the bus into gst-launch's fdsrc !
// rawvideoparse; every frame GStreamer gets back is byte for byte one that
// it made, in order.
func TestPipeGStreamerThroughTheBus(t *testing.T) {
	needInterop(t, "gst-launch-1.0")
	dir, tmp := t.TempDir(), t.TempDir()
	const w, h, n = 160, 120, 60
	const frameSize = w * h * 3 / 2
	gstSrc := func() *tool {
		return newTool("gst-launch-1.0", "-q", "videotestsrc", "num-buffers="+strconv.Itoa(n), "pattern=ball", "!",
			fmt.Sprintf("video/x-raw,format=I420,width=%d,height=%d,framerate=30/1", w, h), "!", "fdsink", "fd=1")
	}
	// The frames GStreamer makes (the same again in the pipeline).
	ref := gstSrc()
	var refOut bytes.Buffer
	ref.Cmd.Stdout = &refOut
	ref.start(t).waitOK(t, 30*time.Second)
	if refOut.Len() != n*frameSize {
		t.Fatalf("videotestsrc wrote %d bytes, want %d frames of %d", refOut.Len(), n, frameSize)
	}
	index := map[[32]byte]int{}
	for i := range n {
		index[sha256.Sum256(refOut.Bytes()[i*frameSize:(i+1)*frameSize])] = i
	}

	outPath := filepath.Join(tmp, "out.raw")
	cat := newTool(bin, "cat", "gst", "--raw", "--dir", dir, "--timeout", "30s")
	sink := newTool("gst-launch-1.0", "-q", "fdsrc", "fd=0", "!", "rawvideoparse", fmt.Sprintf("width=%d", w), fmt.Sprintf("height=%d", h),
		"format=i420", "framerate=30/1", "!", "filesink", "location="+outPath)
	pipe(t, cat, sink)
	sink.start(t)
	cat.start(t)
	src := gstSrc()
	capt := newTool(bin, "capture", "--name", "gst", "--source", "stdin", "--size", fmt.Sprintf("%dx%d", w, h), "--format", "I420", "--fps", "30", "--dir", dir)
	pipe(t, src, capt)
	capt.start(t)
	src.start(t)
	src.waitOK(t, 30*time.Second)
	capt.waitOK(t, 30*time.Second)
	cat.waitOK(t, 20*time.Second)
	sink.waitOK(t, 20*time.Second)
	if !strings.Contains(cat.Stderr.String(), "rawvideoparse width=160 height=120 format=i420 framerate=30/1") {
		t.Errorf("cat's log does not say how GStreamer reads the stream:\n%s", cat.Stderr.String())
	}
	frames, _ := catCounts(t, cat.Stderr.String())
	got, err := os.ReadFile(outPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != frames*frameSize || frames < 30 {
		t.Fatalf("GStreamer wrote %d bytes; cat says it wrote %d frames of %d", len(got), frames, frameSize)
	}
	prev := -1
	for i := range frames {
		j, ok := index[sha256.Sum256(got[i*frameSize:(i+1)*frameSize])]
		if !ok {
			t.Fatalf("frame %d that GStreamer got back is none of the frames it made", i)
		}
		if j <= prev {
			t.Fatalf("frame %d is GStreamer's frame %d, after its frame %d", i, j, prev)
		}
		prev = j
	}
}

// A YUV4MPEG2 stream on descriptor 3 says its size, format and rate; the
// bus has them.
func TestCaptureY4MOnAnFD(t *testing.T) {
	needInterop(t, "ffmpeg")
	dir, clip := t.TempDir(), filepath.Join(t.TempDir(), "clip.y4m")
	if out, err := exec.Command("ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=96x64:rate=10", "-frames:v", "12",
		"-pix_fmt", "gray", "-f", "yuv4mpegpipe", clip).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	f, err := os.Open(clip)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	capt := newTool(bin, "capture", "--name", "y4m", "--source", "fd:3", "--fps", "0", "--dir", dir)
	capt.Cmd.ExtraFiles = []*os.File{f}
	capt.start(t).waitOK(t, 30*time.Second)
	se := capt.Stderr.String()
	// --fps 0 asks for as fast as possible: the format says no rate.
	if !strings.Contains(se, `format="96x64 GREY"`) {
		t.Errorf("the bus does not have the stream's size and format:\n%s", se)
	}
	if m := closedFrames.FindStringSubmatch(se); m == nil || m[1] != "12" {
		t.Errorf("capture did not publish the 12 frames:\n%s", se)
	}
	// At the stream's own rate when --fps is not given.
	f.Seek(0, io.SeekStart)
	capt = newTool(bin, "capture", "--name", "y4m", "--source", "fd:3", "--dir", dir)
	capt.Cmd.ExtraFiles = []*os.File{f}
	start := time.Now()
	capt.start(t).waitOK(t, 30*time.Second)
	if el := time.Since(start); el < time.Second { // 12 frames at 10 fps: 1.1 s at least
		t.Errorf("12 frames at the stream's 10 fps took %v", el)
	}
	if !strings.Contains(capt.Stderr.String(), `format="96x64 GREY @ 10 fps"`) {
		t.Errorf("capture log:\n%s", capt.Stderr.String())
	}
}

// Streams that are not what they should be get one clear line, and a
// stream refused before the bus exists leaves nothing behind.
func TestCaptureStdinBadInput(t *testing.T) {
	frame := bytes.Repeat([]byte{7}, 16*16*3/2)
	y4mHead := "YUV4MPEG2 W16 H16 F25:1 Ip A1:1 C420jpeg\n"
	cases := []struct {
		name  string
		stdin []byte
		args  []string
		code  int
		want  string
	}{
		{"partial raw frame", bytes.Repeat(frame, 3)[:1000], []string{"--size", "16x16", "--format", "I420"}, 1, "ended 232 bytes into frame 3, which has 384"},
		{"raw without size", frame, nil, 2, "--size WxH"},
		{"raw MJPEG", frame, []string{"--size", "16x16", "--format", "MJPEG"}, 2, "raw MJPEG has no frame boundaries"},
		{"empty", nil, []string{"--size", "16x16"}, 2, "stdin is empty"},
		{"y4m 4:4:4", []byte("YUV4MPEG2 W16 H16 F25:1 C444\nFRAME\n"), nil, 2, "colour space C444"},
		{"y4m 10 bit", []byte("YUV4MPEG2 W16 H16 F25:1 C420p10\n"), nil, 2, "colour space C420p10"},
		{"y4m no size", []byte("YUV4MPEG2 F25:1 C420jpeg\n"), nil, 2, "gives no frame size"},
		{"y4m bad rate", []byte("YUV4MPEG2 W16 H16 F25:0\n"), nil, 2, `header parameter "F25:0"`},
		{"y4m odd size", []byte("YUV4MPEG2 W15 H16 F25:1 C420jpeg\n"), nil, 2, "even dimensions"},
		{"y4m bad frame", []byte(y4mHead + "FRAME\n" + string(frame) + "FRAMX\n" + string(frame)), nil, 1, `expected "FRAME", found "FRAMX"`},
		{"y4m cut short", []byte(y4mHead + "FRAME\n" + string(frame) + "FRAME\n" + string(frame[:100])), nil, 1, "ended 100 bytes into frame 2"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			capt := newTool(bin, append([]string{"capture", "--name", "bad", "--source", "stdin", "--fps", "0", "--dir", dir}, c.args...)...)
			capt.Cmd.Stdin = bytes.NewReader(c.stdin)
			code := capt.start(t).Wait(t, 20*time.Second)
			lines := strings.Split(strings.TrimSpace(capt.Stderr.String()), "\n")
			last := lines[len(lines)-1]
			if code != c.code || !strings.Contains(last, c.want) || !strings.HasPrefix(last, "framebus capture: ") {
				t.Errorf("exit %d (want %d), last line %q, want it to say %q", code, c.code, last, c.want)
			}
			if code == 2 && len(lines) != 1 {
				t.Errorf("a usage error printed more than its line:\n%s", capt.Stderr.String())
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("left %d files in the bus directory", len(ents))
			}
		})
	}
	for _, args := range [][]string{{"--source", "fd:9"}, {"--source", "fd:x"}, {"--source", "fd:1"}, {"--source", "stdin:y4m"}} {
		dir := t.TempDir()
		r := run(t, append([]string{"capture", "--name", "bad", "--dir", dir}, args...)...)
		if r.Code != 2 || strings.Count(r.Stderr, "\n") != 1 {
			t.Errorf("%q: exit %d, %q", args, r.Code, r.Stderr)
		}
	}
}

// cat refuses what it cannot do before writing anything, and ends at a
// format change with an error, after the frames of the old format.
func TestCatBadInput(t *testing.T) {
	dir := t.TempDir()
	startCapture(t, dir, "rgba") // RGBA: not for y4m
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"cat", "rgba"}, 2, "one of --raw and --y4m"},
		{[]string{"cat", "rgba", "--raw", "--y4m"}, 2, "one of --raw and --y4m"},
		{[]string{"cat", "rgba", "--y4m"}, 1, "YUV4MPEG2 carries YUV and grey only"},
		{[]string{"cat", "nobus", "--raw", "--timeout", "0"}, 1, `no bus "nobus"`},
	} {
		r := run(t, append(c.args, "--dir", dir)...)
		if r.Code != c.code || !strings.Contains(r.Stderr, c.want) || r.Stdout != "" {
			t.Errorf("%q: exit %d, stdout %d bytes, stderr %q", c.args, r.Code, len(r.Stdout), r.Stderr)
		}
	}

	// A format change: the frames before it, then an error.
	cat := newTool(bin, "cat", "change", "--raw", "--dir", dir, "--timeout", "20s")
	var out testutil.Buffer
	cat.Cmd.Stdout = &out
	cat.start(t)
	a, _ := framebus.Format{Width: 32, Height: 16, PixelFormat: framebus.FormatI420, FPSNum: 50, FPSDen: 1}.Complete()
	p, err := framebus.Create("change", framebus.ProducerOptions{Format: a, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	testutil.WaitFor(t, 10*time.Second, "cat to join", func() bool {
		s, err := framebus.Inspect("change", dir)
		return err == nil && len(s.Consumers) == 1
	})
	frame := make([]byte, a.FrameSize)
	for range 5 {
		p.Publish(frame, framebus.Meta{})
		time.Sleep(20 * time.Millisecond)
	}
	testutil.WaitFor(t, 10*time.Second, "cat to write the 5 frames", func() bool { return len(out.String()) == 5*int(a.FrameSize) })
	b, _ := framebus.Format{Width: 64, Height: 32, PixelFormat: framebus.FormatI420, FPSNum: 50, FPSDen: 1}.Complete()
	if err := p.Reconfigure(b); err != nil {
		t.Fatal(err)
	}
	p.Publish(make([]byte, b.FrameSize), framebus.Meta{})
	if code := cat.Wait(t, 15*time.Second); code != 1 || !strings.Contains(cat.Stderr.String(), "changed format from 32x16") {
		t.Errorf("cat at a format change: exit %d:\n%s", code, cat.Stderr.String())
	}
	if len(out.String()) != 5*int(a.FrameSize) {
		t.Errorf("cat wrote %d bytes, want the 5 frames of the old format", len(out.String()))
	}
}

// A reader that closes the pipe ends cat at once, cleanly.
func TestCatReaderGoesAway(t *testing.T) {
	dir := t.TempDir()
	startCapture(t, dir, "cam")
	cat := newTool(bin, "cat", "cam", "--raw", "--dir", dir)
	r, err := cat.Cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cat.start(t)
	buf := make([]byte, 3*64*48*4)
	if _, err := io.ReadFull(r, buf); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if code := cat.Wait(t, 10*time.Second); code != 0 || !strings.Contains(cat.Stderr.String(), `why="the reader closed the pipe"`) {
		t.Errorf("exit %d:\n%s", code, cat.Stderr.String())
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// Large frames through stdin: 1080p RGBA, whose buffers make the garbage
// collector run (it once finalized a second *os.File of fd 0 and closed
// stdin after the first 64 KiB).
func TestCaptureStdinLargeFrames(t *testing.T) {
	dir := t.TempDir()
	const frame = 1920 * 1080 * 4
	capt := newTool(bin, "capture", "--name", "big", "--source", "stdin", "--size", "1920x1080", "--fps", "0", "--dir", dir)
	capt.Cmd.Stdin = io.LimitReader(zeros{}, 20*frame)
	capt.start(t).waitOK(t, 60*time.Second)
	if m := closedSeq.FindStringSubmatch(capt.Stderr.String()); m == nil || m[1] != "20" {
		t.Errorf("20 frames of 1080p RGBA on stdin:\n%s", capt.Stderr.String())
	}
}
