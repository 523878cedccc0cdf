//go:build linux

package framebus_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/framebus/framebus/framebus"
)

// A producer and a consumer in one process: the consumer joins the bus, the
// producer publishes three frames zero-copy, then closes the stream.
func Example() {
	dir, _ := os.MkdirTemp("", "framebus-example")
	defer os.RemoveAll(dir)

	p, err := framebus.Create("cam0", framebus.ProducerOptions{
		Format:   framebus.Format{Width: 64, Height: 48, PixelFormat: framebus.FormatGrey},
		Checksum: true,
		Dir:      dir,
	})
	if err != nil {
		log.Fatal(err)
	}
	c, err := framebus.Open("cam0", framebus.ConsumerOptions{Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ctx := context.Background()
	for i := 0; i < 3; i++ {
		buf, _ := p.Begin() // the back slot, written in place
		for j := range buf {
			buf[j] = byte(i)
		}
		p.Commit(len(buf), framebus.Meta{CaptureNS: framebus.Now(), UserMeta: []byte("hello")})

		f, err := c.Next(ctx)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("frame %d: %d bytes of %d, %s, %q, intact %v\n", f.Seq, len(f.Data), f.Data[0], f.Format, f.UserMeta, f.Valid())
	}
	p.Close()
	_, err = c.Next(ctx)
	fmt.Println(errors.Is(err, framebus.ErrEndOfStream), err)
	// Output:
	// frame 1: 3072 bytes of 0, 64x48 GREY, "hello", intact true
	// frame 2: 3072 bytes of 1, 64x48 GREY, "hello", intact true
	// frame 3: 3072 bytes of 2, 64x48 GREY, "hello", intact true
	// true framebus next cam0: producer closed the stream
}

// A consumer keeps a frame (Frame.Hold) while the producer publishes ten
// more: on 3 slots the producer works around the held slot, and the held
// view stays intact until Release. A second hold is refused at the bus's
// cap (slot_count - 2 = 1 held slot); the caller would copy instead.
func ExampleFrame_Hold() {
	dir, _ := os.MkdirTemp("", "framebus-example")
	defer os.RemoveAll(dir)
	p, err := framebus.Create("cam0", framebus.ProducerOptions{
		Format: framebus.Format{Width: 64, Height: 48, PixelFormat: framebus.FormatGrey},
		Slots:  3,
		Dir:    dir,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	c, err := framebus.Open("cam0", framebus.ConsumerOptions{Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	publish := func(v byte) {
		frame := make([]byte, p.Format().FrameSize)
		frame[0] = v
		p.Publish(frame, framebus.Meta{})
	}

	publish(1)
	f, _ := c.Next(ctx)
	h, err := f.Hold() // keep frame 1, zero-copy
	if err != nil {
		log.Fatal(err)
	}
	for v := byte(2); v <= 11; v++ {
		publish(v)
		f, _ = c.Next(ctx)
	}
	_, err = f.Hold()
	fmt.Println("second hold:", errors.Is(err, framebus.ErrHoldCap), errors.Is(err, framebus.ErrNoHold))
	fmt.Printf("held frame %d: first byte %d, intact %v\n", h.Seq(), h.Data()[0], h.Valid())
	fmt.Println("release:", h.Release())
	// Output:
	// second hold: true true
	// held frame 1: first byte 1, intact true
	// release: <nil>
}
