//go:build framebus_opencv

package viewer

import (
	"context"
	"errors"
	"fmt"
	"image"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"gocv.io/x/gocv"

	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/framebus/feed"
	"github.com/framebus/framebus/internal/cli"
	"github.com/framebus/framebus/internal/report"
)

// defaultRecordFPS is the file's rate when neither the options nor the bus
// say one.
const defaultRecordFPS = 30

// spaceEvery is how many frames the MJPEG recorder writes between two looks
// at its disk's free space.
const spaceEvery = 10

// recordMJPEG writes the frames of bus name to tmp, an MJPEG video (gocv's
// VideoWriter, FFmpeg underneath; the container follows tmp's extension,
// .avi), until ctx ends or the producer closes the stream. The file's size is
// the first frame's; frames of a later generation of another size are
// scaled to it. Its rate is o.FPS, else the bus's, else 30. Frames the bus
// had that were not written (the writer was slower, or the frame was
// overwritten while converted) are counted as dropped; the file does not
// repeat frames for them, so it plays faster than real time by that much.
//
// OpenCV does not report a failed write, so the recorder looks at the free
// space of tmp's disk every spaceEvery frames and stops, with ErrDiskFull,
// while there is still room for the file's index: the file stays playable.
func recordMJPEG(ctx context.Context, name string, o RecordOptions, tmp string, sum *RecordSummary, log *slog.Logger) error {
	// No held wait (record.go's lossless recording says why).
	in := feed.New(name, feed.Options{Dir: o.Dir, Timeout: o.Timeout, Copy: true, Spin: o.Spin, Hold: -1, Log: log})
	defer in.Close()
	conv := NewConverter()
	defer conv.Close()
	sized := gocv.NewMat()
	defer sized.Close()
	var vw *gocv.VideoWriter
	defer func() {
		if vw != nil {
			vw.Close()
		}
	}()
	dir := filepath.Dir(tmp)
	last, lastFrames := time.Now(), uint64(0)
	end, err := in.Run(ctx, func(fr *framebus.Frame) error {
		if vw == nil || fr.GenerationChanged {
			log.Info("recording", "bus", name, "generation", fr.Generation, "format", report.FormatString(fr.Format), "out", o.Out, "writing", tmp)
		}
		m, err := conv.Convert(fr.Data, fr.Format)
		if err != nil {
			if errors.Is(err, ErrFormat) {
				return fmt.Errorf("bus %s: %w", name, err)
			}
			log.Warn("frame skipped", "error", err, "seq", fr.Seq)
			sum.Dropped++
			return nil
		}
		if vw == nil {
			sum.Width, sum.Height = m.Cols(), m.Rows()
			sum.FPS = o.FPS
			if sum.FPS == 0 && fr.Format.FPSNum != 0 && fr.Format.FPSDen != 0 {
				sum.FPS = float64(fr.Format.FPSNum) / float64(fr.Format.FPSDen)
			}
			if sum.FPS == 0 {
				sum.FPS = defaultRecordFPS
			}
			vw, err = gocv.VideoWriterFile(tmp, "MJPG", sum.FPS, sum.Width, sum.Height, true)
			if err != nil || !vw.IsOpened() {
				return &OptionError{Reason: fmt.Sprintf("--out %s: OpenCV cannot write an MJPEG video there (use a .avi name)", o.Out)}
			}
		} else {
			sum.Dropped += fr.Dropped
		}
		if sum.Frames%spaceEvery == 0 {
			// Room for spaceEvery more frames (an MJPEG frame is smaller than
			// the raw one) and the index at the end.
			need := uint64(spaceEvery)*uint64(sum.Width*sum.Height*3) + 16*sum.Frames + 1<<20
			if free, ok := freeSpace(dir); ok && free < need {
				return fmt.Errorf("%w: %s free in %s, the next frames and the file's index need about %s", ErrDiskFull, cli.Bytes(free), dir, cli.Bytes(need))
			}
		}
		if m.Cols() != sum.Width || m.Rows() != sum.Height {
			gocv.Resize(*m, &sized, image.Pt(sum.Width, sum.Height), 0, 0, gocv.InterpolationArea)
			m = &sized
		}
		if err := vw.Write(*m); err != nil {
			return fmt.Errorf("--out %s: %v", o.Out, err)
		}
		sum.Frames++
		if now := time.Now(); now.Sub(last) >= recordProgress {
			var size int64
			if fi, err := os.Stat(tmp); err == nil {
				size = fi.Size()
			}
			log.Info("recording", "frames", sum.Frames, "dropped", sum.Dropped, "size", cli.Bytes(uint64(size)), "fps", fmt.Sprintf("%.1f", float64(sum.Frames-lastFrames)/now.Sub(last).Seconds()))
			last, lastFrames = now, sum.Frames
		}
		return nil
	})
	sum.StreamClosed = end.EndOfStream
	if vw != nil {
		sum.Dropped += end.Dropped
		vw.Close() // writes the index: the file is whole
		vw = nil
	}
	return err
}
