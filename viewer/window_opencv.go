//go:build framebus_opencv

package viewer

import (
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gocv.io/x/gocv"

	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/framebus/feed"
	"github.com/framebus/framebus/internal/logx"
	"github.com/framebus/framebus/internal/report"
)

// HasOpenCV says whether this build has the OpenCV parts of the package.
const HasOpenCV = true

// windowPoll is the longest the window goes without reading its keys.
const windowPoll = 30 * time.Millisecond

// RunWindow shows bus name in a desktop window (OpenCV highgui) until ctx
// ends or the user presses q or Esc or closes the window. The overlay shows
// the sequence number, fps, commit-to-display and capture-to-display
// latency and drops; space pauses, s saves the frame shown (without the
// overlay) as NAME-SEQ.png in SnapshotDir. While there is no producer the
// window says "waiting for producer"; it waits up to Timeout for the first
// one (then *NoProducerError), for ever after that.
func RunWindow(ctx context.Context, name string, o WindowOptions) error {
	log := logx.Or(o.Log)
	if err := checkDisplay(); err != nil {
		return err
	}
	if o.SnapshotDir == "" {
		o.SnapshotDir = "."
	}
	if fi, err := os.Stat(o.SnapshotDir); err != nil || !fi.IsDir() {
		return &OptionError{Reason: fmt.Sprintf("--snapshot-dir %s: not a directory", o.SnapshotDir)}
	}
	title := "framebus view " + name
	win := gocv.NewWindow(title) // locks this goroutine to its OS thread
	defer win.Close()
	win.SetWindowProperty(gocv.WindowPropertyAutosize, gocv.WindowAutosize)

	in := feed.New(name, feed.Options{Dir: o.Dir, Timeout: o.Timeout, Persist: true, Poll: windowPoll, Copy: true, Spin: o.Spin,
		Log: log})
	defer in.Close()
	w := &window{name: name, o: o, log: log, win: win, in: in, conv: NewConverter(), shown: gocv.NewMat()} // shown: the frame with its overlay
	defer w.conv.Close()
	defer w.shown.Close()
	for {
		if ctx.Err() != nil {
			return nil
		}
		if done, err := w.next(ctx); done {
			return err
		}
		if w.key() {
			return nil
		}
		if win.GetWindowProperty(gocv.WindowPropertyVisible) < 1 {
			return nil // closed by the window manager
		}
	}
}

// window is the state of one RunWindow.
type window struct {
	name  string
	o     WindowOptions
	log   *slog.Logger
	win   *gocv.Window
	in    *feed.Feed
	conv  *Converter
	shown gocv.Mat

	rate      rateMeter
	paused    bool
	have      bool // conv holds a frame shown
	last      framebus.Frame
	dispLat   [2]int64 // commit and capture to display of the last frame shown
	dropped   uint64   // since the window opened
	waitShown time.Time
	waited    bool // the last Next said it waits for a producer
}

// next reads the next frame and shows it, or shows the wait for a
// producer; done (with the error, or nil) ends the window.
func (w *window) next(ctx context.Context) (done bool, err error) {
	fr, err := w.in.Next(ctx)
	var we *feed.WaitingError
	switch {
	case err == nil:
		return w.frame(fr)
	case errors.As(err, &we):
		w.waited = true
		if time.Since(w.waitShown) >= 200*time.Millisecond {
			w.waitShown = time.Now()
			showWaiting(w.win, &w.shown, w.conv, w.have, we)
		}
	case errors.Is(err, feed.ErrIdle):
	case ctx.Err() != nil:
		return true, nil
	default:
		return true, err
	}
	return false, nil
}

// frame shows fr with its overlay (unless paused).
func (w *window) frame(fr *framebus.Frame) (done bool, err error) {
	w.dropped += fr.Dropped
	if fr.GenerationChanged || w.waited || !w.have {
		w.log.Info("showing", "bus", w.name, "generation", fr.Generation, "format", report.FormatString(fr.Format))
		w.waited = false
	}
	if w.paused {
		return false, nil
	}
	m, err := w.conv.Convert(fr.Data, fr.Format)
	if err != nil {
		return true, fmt.Errorf("bus %s: %w", w.name, err)
	}
	w.last = *fr
	w.last.Data, w.last.UserMeta = nil, nil
	w.have = true
	m.CopyTo(&w.shown)
	overlay(&w.shown, &w.last, w.rate.fps(framebus.Now()), w.dispLat, w.dropped, "")
	w.win.IMShow(w.shown)
	now := framebus.Now()
	w.rate.add(now)
	w.dispLat = [2]int64{now - fr.CommitNS, now - fr.CaptureNS}
	return false, nil
}

// key handles a key: q or Esc quits (true), space pauses, s saves the
// frame shown.
func (w *window) key() (quit bool) {
	switch key := w.win.WaitKey(1); key {
	case 'q', 'Q', 27:
		w.log.Info("quit", "bus", w.name, "frames", w.in.Stats().Frames, "dropped", w.dropped)
		return true
	case ' ':
		w.paused = !w.paused
		w.log.Info("pause", "paused", w.paused)
		if w.have {
			w.conv.bgr.CopyTo(&w.shown)
			state := ""
			if w.paused {
				state = "PAUSED"
			}
			overlay(&w.shown, &w.last, 0, w.dispLat, w.dropped, state)
			w.win.IMShow(w.shown)
		}
	case 's', 'S':
		w.snapshot()
	}
	return false
}

// snapshot saves the frame shown (without the overlay) as NAME-SEQ.png.
func (w *window) snapshot() {
	if !w.have {
		w.log.Warn("no frame to save yet")
		return
	}
	path := filepath.Join(w.o.SnapshotDir, w.name+"-"+strconv.FormatUint(w.last.Seq, 10)+".png")
	if err := savePNG(path, w.conv.bgr); err == nil {
		w.log.Info("saved snapshot", "path", path, "seq", w.last.Seq)
	} else {
		w.log.Error("could not save the snapshot", "error", err, "path", path)
	}
}

// checkDisplay makes sure an X display is there: without one, OpenCV's
// highgui (Qt) aborts the process.
func checkDisplay() error {
	d := os.Getenv("DISPLAY")
	if d == "" {
		return &OptionError{Reason: "no display ($DISPLAY is not set): use --http ADDR for a web preview, or run under xvfb-run"}
	}
	host, rest, ok := strings.Cut(d, ":")
	if !ok {
		return &OptionError{Reason: fmt.Sprintf("$DISPLAY %q is not HOST:N", d)}
	}
	num, _, _ := strings.Cut(rest, ".")
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 {
		return &OptionError{Reason: fmt.Sprintf("$DISPLAY %q is not HOST:N", d)}
	}
	var c net.Conn
	if host == "" || host == "unix" {
		c, err = net.DialTimeout("unix", "/tmp/.X11-unix/X"+num, 2*time.Second)
	} else {
		c, err = net.DialTimeout("tcp", net.JoinHostPort(host, strconv.Itoa(6000+n)), 2*time.Second)
	}
	if err != nil {
		return fmt.Errorf("cannot reach the X display %s: %v (use --http ADDR for a web preview, or xvfb-run)", d, err)
	}
	c.Close()
	return nil
}

var (
	textColor = color.RGBA{255, 255, 255, 0}
	warnColor = color.RGBA{255, 160, 0, 0} // orange
	shade     = color.RGBA{0, 0, 0, 0}
)

// overlay draws the status lines at the top left of m.
func overlay(m *gocv.Mat, f *framebus.Frame, fps float64, lat [2]int64, dropped uint64, state string) {
	lines := [3]string{
		fmt.Sprintf("seq %d  gen %d  %dx%d %s", f.Seq, f.Generation, f.Format.Width, f.Format.Height, report.FormatName(f.Format.PixelFormat)),
		fmt.Sprintf("%.1f fps  commit>display %.1f ms  capture>display %.1f ms", fps, float64(lat[0])/1e6, float64(lat[1])/1e6),
		fmt.Sprintf("dropped %d  %s", dropped, state),
	}
	drawLines(m, lines[:], textColor)
}

func drawLines(m *gocv.Mat, lines []string, c color.RGBA) {
	scale := max(0.4, float64(m.Rows())/1080)
	th := max(1, int(scale*2))
	lh := int(22 * scale * 1.4)
	w := 0
	for _, l := range lines {
		w = max(w, gocv.GetTextSize(l, gocv.FontHersheySimplex, scale, th).X)
	}
	gocv.Rectangle(m, image.Rect(0, 0, min(m.Cols(), w+int(16*scale)), min(m.Rows(), lh*len(lines)+int(10*scale))), shade, -1)
	for i, l := range lines {
		gocv.PutText(m, l, image.Pt(int(8*scale), lh*(i+1)), gocv.FontHersheySimplex, scale, c, th)
	}
}

// showWaiting shows "waiting for producer": over the last frame, darkened,
// or on a black 640x360 picture.
func showWaiting(win *gocv.Window, shown *gocv.Mat, conv *Converter, have bool, we *feed.WaitingError) {
	if have {
		conv.bgr.CopyTo(shown)
		shown.MultiplyFloat(0.35)
	} else {
		shown.Close()
		*shown = gocv.NewMatWithSizeFromScalar(gocv.NewScalar(0, 0, 0, 0), 360, 640, gocv.MatTypeCV8UC3)
	}
	lines := []string{
		"waiting for producer",
		fmt.Sprintf("bus %s: %s, %s", we.Name, we.Reason, time.Since(we.Since).Round(time.Second)),
	}
	drawLines(shown, lines, warnColor)
	win.IMShow(*shown)
}

// savePNG writes m to path whole or not at all: OpenCV writes a hidden
// temporary file next to it, renamed into place when complete, so whoever
// watches the directory never reads half a picture.
func savePNG(path string, m gocv.Mat) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp.png")
	if !gocv.IMWrite(tmp, m) {
		os.Remove(tmp)
		return fmt.Errorf("OpenCV could not write %s", tmp)
	}
	return os.Rename(tmp, path)
}
