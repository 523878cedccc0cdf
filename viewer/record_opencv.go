//go:build framebus_opencv

package viewer

import (
	"context"
	"errors"
	"fmt"
	"image"
	"os"
	"path/filepath"

	"github.com/rs/zerolog"
	"gocv.io/x/gocv"

	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/framebus/feed"
	"github.com/framebus/framebus/internal/cli"
	"github.com/framebus/framebus/internal/report"
)

// defaultRecordFPS is the file's rate when neither the options nor the bus
// say one.
const defaultRecordFPS = 30

// Record writes the frames of bus name to o.Out, an MJPEG video (gocv's
// VideoWriter, FFmpeg underneath; .avi), until ctx ends or the producer
// closes the stream. The file's size is the first frame's; frames of a
// later generation of another size are scaled to it. Its rate is o.FPS, else
// the bus's, else 30. Frames the bus had that were not written (the writer
// was slower, or the frame was overwritten while converted) are counted as
// dropped; the file does not repeat frames for them, so it plays faster
// than real time by that much.
func Record(ctx context.Context, name string, o RecordOptions) (RecordSummary, error) {
	sum := RecordSummary{Path: o.Out}
	log := logOrNop(o.Log)
	if o.Out == "" {
		return sum, &OptionError{Reason: "--out FILE is required"}
	}
	if o.FPS < 0 {
		return sum, &OptionError{Reason: "--fps must not be negative"}
	}
	if fi, err := os.Stat(filepath.Dir(o.Out)); err != nil || !fi.IsDir() {
		return sum, &OptionError{Reason: fmt.Sprintf("--out %s: no directory %s", o.Out, filepath.Dir(o.Out))}
	}
	if fi, err := os.Stat(o.Out); err == nil && fi.IsDir() {
		return sum, &OptionError{Reason: fmt.Sprintf("--out %s is a directory", o.Out)}
	}
	in := feed.New(name, feed.Options{Dir: o.Dir, Timeout: o.Timeout, Copy: true, Spin: o.Spin, Logf: cli.Logf(log, zerolog.WarnLevel)})
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
	end, err := in.Run(ctx, func(fr *framebus.Frame) error {
		if vw == nil || fr.GenerationChanged {
			log.Info().Str("bus", name).Uint64("generation", fr.Generation).Str("format", report.FormatString(fr.Format)).
				Str("out", o.Out).Msg("recording")
		}
		m, err := conv.Convert(fr.Data, fr.Format)
		if err != nil {
			if errors.Is(err, ErrFormat) {
				return fmt.Errorf("bus %s: %w", name, err)
			}
			log.Warn().Err(err).Uint64("seq", fr.Seq).Msg("frame skipped")
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
			vw, err = gocv.VideoWriterFile(o.Out, "MJPG", sum.FPS, sum.Width, sum.Height, true)
			if err != nil || !vw.IsOpened() {
				return &OptionError{Reason: fmt.Sprintf("--out %s: OpenCV cannot write an MJPEG video there (use a .avi name)", o.Out)}
			}
		} else {
			sum.Dropped += fr.Dropped
		}
		if m.Cols() != sum.Width || m.Rows() != sum.Height {
			gocv.Resize(*m, &sized, image.Pt(sum.Width, sum.Height), 0, 0, gocv.InterpolationArea)
			m = &sized
		}
		if err := vw.Write(*m); err != nil {
			return fmt.Errorf("--out %s: %v", o.Out, err)
		}
		sum.Frames++
		return nil
	})
	sum.StreamClosed = end.EndOfStream
	if vw != nil {
		sum.Dropped += end.Dropped
	}
	return sum, err
}
