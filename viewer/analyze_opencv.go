//go:build framebus_opencv

package viewer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"io"
	"os"
	"time"

	"gocv.io/x/gocv"

	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/framebus/feed"
	"github.com/framebus/framebus/internal/logx"
	"github.com/framebus/framebus/internal/report"
)

// Detector finds regions in BGR frames.
type Detector interface {
	// Detect appends what it finds in m to boxes and returns them.
	Detect(m *gocv.Mat, boxes []Box) []Box
	// Reset forgets the previous frames (a new generation).
	Reset()
	Close()
}

// workWidth is the width the detectors work at: frames wider than this are
// scaled down first (boxes are given in the frame's own pixels).
const workWidth = 640

// scaler shrinks frames to workWidth into a reused Mat.
type scaler struct {
	small gocv.Mat
	f     float64 // frame pixels per work pixel
}

func (s *scaler) scale(m *gocv.Mat) *gocv.Mat {
	if m.Cols() <= workWidth {
		s.f = 1
		return m
	}
	s.f = float64(m.Cols()) / workWidth
	h := int(float64(m.Rows())/s.f + 0.5)
	gocv.Resize(*m, &s.small, image.Pt(workWidth, h), 0, 0, gocv.InterpolationArea)
	return &s.small
}

func (s *scaler) box(r image.Rectangle) Box {
	return Box{X: int(float64(r.Min.X) * s.f), Y: int(float64(r.Min.Y) * s.f),
		W: int(float64(r.Dx())*s.f + 0.5), H: int(float64(r.Dy())*s.f + 0.5)}
}

// Motion finds what moved between two analysed frames: both are scaled to
// workWidth and blurred; the grey level of their per-channel absolute
// difference (so that two colours of the same brightness still differ) over
// the threshold marks the pixels that changed, which are dilated into
// regions, and each region of at least the minimum area (in frame pixels)
// is a box. All Mats are reused.
type Motion struct {
	threshold float32
	minArea   int
	sc        scaler
	cur       gocv.Mat // blurred BGR
	prev      gocv.Mat
	diff3     gocv.Mat
	diff      gocv.Mat
	kernel    gocv.Mat
	have      bool
}

// NewMotion makes a motion detector (threshold 1-254; minArea 0: 1/2000 of
// the frame).
func NewMotion(threshold, minArea int) *Motion {
	if threshold == 0 {
		threshold = 25
	}
	return &Motion{threshold: float32(threshold), minArea: minArea, sc: scaler{small: gocv.NewMat()},
		cur: gocv.NewMat(), prev: gocv.NewMat(), diff3: gocv.NewMat(), diff: gocv.NewMat(),
		kernel: gocv.GetStructuringElement(gocv.MorphRect, image.Pt(5, 5))}
}

func (d *Motion) Detect(m *gocv.Mat, boxes []Box) []Box {
	src := d.sc.scale(m)
	gocv.GaussianBlur(*src, &d.cur, image.Pt(5, 5), 0, 0, gocv.BorderDefault)
	if !d.have || d.prev.Cols() != d.cur.Cols() || d.prev.Rows() != d.cur.Rows() {
		d.cur.CopyTo(&d.prev)
		d.have = true
		return boxes
	}
	gocv.AbsDiff(d.cur, d.prev, &d.diff3)
	d.cur, d.prev = d.prev, d.cur // the current frame is the next one's reference
	gocv.CvtColor(d.diff3, &d.diff, gocv.ColorBGRToGray)
	gocv.Threshold(d.diff, &d.diff, d.threshold, 255, gocv.ThresholdBinary)
	gocv.DilateWithParams(d.diff, &d.diff, d.kernel, image.Pt(-1, -1), 2, gocv.BorderConstant, color.RGBA{})
	minArea := d.minArea
	if minArea == 0 {
		minArea = max(1, m.Cols()*m.Rows()/2000)
	}
	contours := gocv.FindContours(d.diff, gocv.RetrievalExternal, gocv.ChainApproxSimple)
	defer contours.Close()
	for i := range contours.Size() {
		b := d.sc.box(gocv.BoundingRect(contours.At(i)))
		if b.W*b.H >= minArea {
			boxes = append(boxes, b)
		}
	}
	return boxes
}

func (d *Motion) Reset() { d.have = false }

func (d *Motion) Close() {
	for _, m := range []*gocv.Mat{&d.sc.small, &d.cur, &d.prev, &d.diff3, &d.diff, &d.kernel} {
		m.Close()
	}
}

// Faces finds frontal faces with a Haar cascade, on the grey, equalised
// frame scaled to workWidth.
type Faces struct {
	cc   gocv.CascadeClassifier
	sc   scaler
	grey gocv.Mat
}

// NewFaces loads the cascade file (DefaultCascade when empty). A missing or
// unreadable file is an *OptionError: OpenCV would abort the process on it.
func NewFaces(cascade string) (*Faces, error) {
	if cascade == "" {
		cascade = DefaultCascade
	}
	fi, err := os.Stat(cascade)
	if err != nil {
		hint := ""
		if cascade == DefaultCascade {
			hint = " (Debian's opencv-data has it: apt-get install opencv-data, or make sysdeps)"
		}
		return nil, &OptionError{Reason: fmt.Sprintf("face cascade %s: %v%s", cascade, errors.Unwrap(err), hint)}
	}
	if !fi.Mode().IsRegular() {
		return nil, &OptionError{Reason: fmt.Sprintf("face cascade %s: not a file", cascade)}
	}
	// OpenCV's XML parser aborts the process on some malformed files: look
	// at the start of the file first.
	f, err := os.Open(cascade)
	if err != nil {
		return nil, &OptionError{Reason: fmt.Sprintf("face cascade %s: %v", cascade, err)}
	}
	head := make([]byte, 64<<10)
	n, _ := io.ReadFull(f, head)
	f.Close()
	if !bytes.HasPrefix(bytes.TrimSpace(head[:n]), []byte("<?xml")) || !bytes.Contains(head[:n], []byte("<opencv_storage>")) {
		return nil, &OptionError{Reason: fmt.Sprintf("face cascade %s: not an OpenCV XML file", cascade)}
	}
	d := &Faces{cc: gocv.NewCascadeClassifier(), sc: scaler{small: gocv.NewMat()}, grey: gocv.NewMat()}
	if !d.cc.Load(cascade) {
		d.Close()
		return nil, &OptionError{Reason: fmt.Sprintf("face cascade %s: OpenCV cannot load it as a cascade classifier", cascade)}
	}
	return d, nil
}

func (d *Faces) Detect(m *gocv.Mat, boxes []Box) []Box {
	src := d.sc.scale(m)
	gocv.CvtColor(*src, &d.grey, gocv.ColorBGRToGray)
	gocv.EqualizeHist(d.grey, &d.grey)
	minSide := max(24, d.grey.Cols()/12) // a face a twelfth of the width or more
	for _, r := range d.cc.DetectMultiScaleWithParams(d.grey, 1.15, 5, 0, image.Pt(minSide, minSide), image.Pt(0, 0)) {
		boxes = append(boxes, d.sc.box(r))
	}
	return boxes
}

func (d *Faces) Reset() {}

func (d *Faces) Close() {
	d.cc.Close()
	d.sc.small.Close()
	d.grey.Close()
}

// NewDetector makes the detector named by o.Detect.
func NewDetector(o AnalyzeOptions) (Detector, error) {
	switch o.Detect {
	case DetectMotion:
		if o.Threshold < 0 || o.Threshold > 254 {
			return nil, &OptionError{Reason: fmt.Sprintf("--threshold %d: want 1 to 254", o.Threshold)}
		}
		if o.MinArea < 0 {
			return nil, &OptionError{Reason: "--min-area must not be negative"}
		}
		return NewMotion(o.Threshold, o.MinArea), nil
	case DetectFaces:
		return NewFaces(o.Cascade)
	}
	return nil, &OptionError{Reason: fmt.Sprintf("--detect %q: want motion or faces", o.Detect)}
}

// Analyze runs a detector on the newest frame of bus name, one frame after
// the other, until ctx ends or the producer closes the stream: when
// analysing is slower than the camera it skips to the newest frame and
// counts the frames skipped; it never queues. It writes one JSON object per
// analysed frame to o.Out: seq, generation, capture_ns, commit_ns,
// result_ns, width, height, detect, boxes [{x,y,w,h}], latency_capture_us
// and latency_commit_us (to the result), dropped (frames skipped since the
// previous one). It waits up to o.Timeout for a producer that has not
// started or is gone, and follows new generations. It ends when the stream
// ends, when ctx is done or after o.Frames analysed frames.
func Analyze(ctx context.Context, name string, o AnalyzeOptions) (AnalyzeSummary, error) {
	var sum AnalyzeSummary
	log := logx.Or(o.Log)
	det, err := NewDetector(o)
	if err != nil {
		return sum, err
	}
	defer det.Close()
	out := o.Out
	if out == nil {
		out = io.Discard
	}
	// A copy (Copy: ReadInto), not a hold (Frame.Hold), although the
	// analysis may be slower than the camera: OpenCV reads the frame in C,
	// where no framebus.Guard turns a memory fault into an error, so a bus
	// file truncated under it would kill the process with SIGBUS. A hold
	// keeps a frame from being overwritten, not from being truncated; the
	// copy, made in Go under Guard, is private memory OpenCV may read for
	// as long as it likes (docs/RECORDING.md, "Holds").
	in := feed.New(name, feed.Options{Dir: o.Dir, Timeout: o.Timeout, Copy: true, Spin: o.Spin, Log: log})
	defer in.Close()
	conv := NewConverter()
	defer conv.Close()

	r := result{detect: o.Detect}
	var line []byte
	var first int64
	var latSum int64
	end, err := in.Run(ctx, func(fr *framebus.Frame) error {
		if sum.Frames == 0 || fr.GenerationChanged {
			log.Info("analysing", "bus", name, "generation", fr.Generation, "format", report.FormatString(fr.Format), "detect", o.Detect)
		}
		if fr.GenerationChanged {
			det.Reset()
		}
		m, err := conv.Convert(fr.Data, fr.Format)
		if err != nil {
			if errors.Is(err, ErrFormat) {
				return fmt.Errorf("bus %s: %w", name, err)
			}
			log.Warn("frame skipped", "error", err, "seq", fr.Seq)
			return nil
		}
		r.boxes = det.Detect(m, r.boxes[:0])
		r.doneNS = framebus.Now()
		r.seq, r.generation, r.captureNS, r.commitNS, r.dropped = fr.Seq, fr.Generation, fr.CaptureNS, fr.CommitNS, fr.Dropped
		r.width, r.height = m.Cols(), m.Rows()
		line = appendResult(line[:0], &r)
		if _, err := out.Write(line); err != nil {
			return feed.ErrStop // stdout closed (analyze | head): done
		}
		if sum.Frames == 0 {
			first = r.doneNS
		}
		sum.Frames++
		sum.Dropped += fr.Dropped
		if len(r.boxes) > 0 {
			sum.WithBoxes++
		}
		lat := r.doneNS - r.captureNS
		latSum += lat
		sum.LatencyMax = max(sum.LatencyMax, time.Duration(lat))
		sum.LatencyMean = time.Duration(latSum / int64(sum.Frames))
		sum.Elapsed = time.Duration(r.doneNS - first)
		if o.Frames > 0 && sum.Frames >= o.Frames {
			return feed.ErrStop
		}
		return nil
	})
	sum.StreamClosed = end.EndOfStream
	sum.Dropped += end.Dropped
	return sum, err
}
