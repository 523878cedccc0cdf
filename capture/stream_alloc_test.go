package capture

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/internal/recording"
)

// The stream sources allocate nothing per frame: a pipe of raw frames and
// a replayed recording, read as fast as they go.
func TestStreamSourcesAllocNothingPerFrame(t *testing.T) {
	f, _ := framebus.Format{Width: 64, Height: 48, PixelFormat: framebus.FormatI420}.Complete()
	ctx := context.Background()
	dst := make([]byte, f.FrameSize)

	// replay:
	path := filepath.Join(t.TempDir(), "rec.mkv")
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := recording.NewWriter(out, "cam", "test")
	data := make([]byte, f.FrameSize)
	for i := range 400 {
		if err := w.WriteFrame(&recording.Frame{Format: f, Seq: uint64(i + 1), CaptureNS: int64(i) * 1e6, CommitNS: int64(i)*1e6 + 1000, UserMeta: []byte("meta"), Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	w.Close(recording.End{EndOfStream: true})
	out.Close()
	src, err := NewReplay(Config{Arg: path, FPS: 0, Loop: true})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	for range 5 { // the first frame sizes the buffer
		if _, _, err := src.Read(ctx, dst); err != nil {
			t.Fatal(err)
		}
	}
	if a := testing.AllocsPerRun(200, func() {
		if _, _, err := src.Read(ctx, dst); err != nil {
			t.Fatal(err)
		}
		if string(src.UserMeta()) != "meta" {
			t.Fatal("user metadata")
		}
	}); a != 0 {
		t.Errorf("replay: %v allocations per frame", a)
	}

	// fd:N, raw frames from a pipe.
	r, wp, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	go func() {
		for {
			if _, err := wp.Write(data); err != nil {
				return
			}
		}
	}()
	defer wp.Close()
	pipe, err := openPipe("fd", int(r.Fd()), Config{Width: 64, Height: 48, PixelFormat: framebus.FormatI420, FPS: 0})
	if err != nil {
		t.Fatal(err)
	}
	defer pipe.Close()
	for range 5 {
		if _, _, err := pipe.Read(ctx, dst); err != nil {
			t.Fatal(err)
		}
	}
	if a := testing.AllocsPerRun(200, func() {
		if _, _, err := pipe.Read(ctx, dst); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("pipe: %v allocations per frame", a)
	}
}
