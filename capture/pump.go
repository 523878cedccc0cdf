package capture

import (
	"context"
	"errors"
	"sync"

	"github.com/framebus/framebus/framebus"
)

// framePump reads whole frames in a goroutine of its own into buffers of its own,
// for the sources that read a stream (a pipe, a child process's output): a
// read of a pipe cannot be interrupted, so Read must be able to give up when
// its context ends while the read goes on, and the frame must reach the slot
// through Go code (a copy) rather than a read that may block for ever with
// the slot held. Two buffers: one being filled while Read copies the other.
// It allocates nothing per frame.
type framePump struct {
	free chan []byte
	full chan pumped
	quit chan struct{}
	done chan struct{}
	once sync.Once
}

type pumped struct {
	buf    []byte
	ts     int64            // when the frame was whole (framebus.Now)
	err    error            // the end: io.EOF, or why the stream cannot go on; or ErrFormatChanged
	format *framebus.Format // with ErrFormatChanged: the new format
}

// readFunc reads the next frame into buf and returns it in buf (or in a
// larger buffer it made, when the frames grew). io.EOF is a clean end
// before the frame; ErrFormatChanged (with the new format, and buf given
// back unused) tells Read about new frames; the pump goes on after it, and
// ends after any other error.
type readFunc func(buf []byte) (pumped, error)

// startPump starts reading frames of size bytes with read.
func startPump(size int, read readFunc, now func() int64) *framePump {
	p := &framePump{free: make(chan []byte, 2), full: make(chan pumped, 2), quit: make(chan struct{}), done: make(chan struct{})}
	for range 2 {
		p.free <- make([]byte, size)
	}
	go func() {
		defer close(p.done)
		for {
			var buf []byte
			select {
			case buf = <-p.free:
			case <-p.quit:
				return
			}
			f, err := read(buf)
			if f.buf == nil {
				f.buf = buf
			}
			f.ts, f.err = now(), err
			select {
			case p.full <- f:
			case <-p.quit:
				return
			}
			if err != nil && !errors.Is(err, ErrFormatChanged) {
				return
			}
		}
	}()
	return p
}

// next waits for the next frame (or the end) or for ctx to end. The caller
// gives the buffer back with release (after ErrFormatChanged too).
func (p *framePump) next(ctx context.Context) (pumped, error) {
	select {
	case f := <-p.full:
		return f, nil
	case <-ctx.Done():
		return pumped{}, ctx.Err()
	}
}

func (p *framePump) release(buf []byte) {
	select {
	case p.free <- buf:
	default:
	}
}

// stop ends the goroutine once its read returns (a read blocked on a pipe
// whose writer never writes again stays blocked: the process ends with it).
func (p *framePump) stop() {
	p.once.Do(func() { close(p.quit) })
}
