//go:build linux

package capture_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/framebus/framebus/capture"
	"github.com/framebus/framebus/framebus"
)

// A producer process whole: a source, a bus of its format, and the
// producer loop, which rides out what a live bus meets (a new format, a
// bus damaged from outside) and ends with the source or the context.
func ExamplePublish() {
	dir, _ := os.MkdirTemp("", "framebus-example")
	defer os.RemoveAll(dir)

	src, err := capture.Open("pattern", capture.Config{Width: 64, Height: 48, PixelFormat: framebus.FormatGrey, FPS: 100})
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	p, err := framebus.Create("cam0", framebus.ProducerOptions{Format: src.Format(), Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	sum, err := capture.Publish(ctx, src, p, capture.PublishOptions{Source: "pattern"}) // Log: a *slog.Logger
	fmt.Println(err, sum.Frames > 0, sum.Ended)
	// Output:
	// <nil> true false
}
