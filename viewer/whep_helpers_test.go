//go:build framebus_webrtc && framebus_opencv && cgo

package viewer

import (
	"context"
	"sync"
	"testing"

	"github.com/framebus/framebus/capture"
	"github.com/framebus/framebus/framebus"
)

// playPattern plays the moving pattern at w x h and 30 fps on a new bus
// name in dir, until ctx ends (wg waits for it).
func playPattern(ctx context.Context, t *testing.T, wg *sync.WaitGroup, name, dir string, w, h uint32) {
	t.Helper()
	src, err := capture.NewPattern(capture.Config{Width: w, Height: h, FPS: 30})
	if err != nil {
		t.Fatal(err)
	}
	p, err := framebus.Create(name, framebus.ProducerOptions{Format: src.Format(), Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer p.Close()
		for ctx.Err() == nil {
			p.Fill(func(slot []byte) (int, framebus.Meta, error) {
				n, ns, err := src.Read(ctx, slot)
				return n, framebus.Meta{CaptureNS: ns}, err
			})
		}
	}()
}
