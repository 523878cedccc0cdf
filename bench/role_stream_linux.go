//go:build linux

package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"

	"golang.org/x/sys/unix"

	"github.com/framebus/framebus/framebus"
)

// The stream baselines (Unix socket, pipe) send each frame whole, its first
// bytes overwritten by a header: sequence number, the sender's clock just
// before the first byte, phase. The descriptors are inherited from fd 3 on
// and used blocking, with plain read(2) and write(2), as a C program would.
const streamHeader = 24

// streamSender renders each frame into private memory, as the framebus copy
// mode does, and writes it to every receiver in turn.
func streamSender(ctx context.Context, s *childSpec) (*childResult, error) {
	if s.FDs < 1 {
		return nil, fmt.Errorf("no stream descriptors")
	}
	fds := make([]int, s.FDs)
	for i := range fds {
		fds[i] = 3 + i
		if err := unix.SetNonblock(fds[i], false); err != nil {
			return nil, fmt.Errorf("fd %d: %w", fds[i], err)
		}
	}
	defer func() {
		for _, fd := range fds {
			unix.Close(fd) // the receivers see the end of the stream
		}
	}()
	src, err := newSource(s)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	frame := make([]byte, src.Format().FrameSize)
	if len(frame) < streamHeader {
		return nil, fmt.Errorf("frame of %d bytes is smaller than the %d-byte header", len(frame), streamHeader)
	}
	pub := newHist()
	pace := newPacer(s.Rate)
	sched := newSchedule(s)
	for k := int64(0); ; k++ {
		if err := pace.wait(ctx); err != nil {
			return nil, err
		}
		phase, more := sched.next(s, k)
		if !more {
			break
		}
		n, _, err := src.Read(ctx, frame)
		if err != nil {
			return nil, err
		}
		t0 := framebus.Now()
		binary.LittleEndian.PutUint64(frame[0:], uint64(k))
		binary.LittleEndian.PutUint64(frame[8:], uint64(t0))
		binary.LittleEndian.PutUint64(frame[16:], uint64(phase))
		for _, fd := range fds {
			if err := writeAll(fd, frame[:n]); err != nil {
				return nil, err
			}
		}
		t1 := framebus.Now()
		if phase == phaseMeasure {
			record(pub, t1-t0)
			sched.measured(t0)
		}
	}
	res := &childResult{Frames: sched.frames, WindowNS: sched.last - sched.first, CPUNS: cpuTime() - sched.cpu0, Waiting: -1}
	res.Publish, err = encodeHist(pub)
	return res, err
}

// streamReceiver reads whole frames from fd 3 until the end of the stream.
// Its latency is from the sender's clock before the first byte to the last
// byte received: the read is the wake.
func streamReceiver(ctx context.Context, s *childSpec) (*childResult, error) {
	const fd = 3
	if err := unix.SetNonblock(fd, false); err != nil {
		return nil, fmt.Errorf("fd %d: %w", fd, err)
	}
	defer unix.Close(fd)
	f, err := (framebus.Format{Width: s.Width, Height: s.Height, PixelFormat: s.Format}).Complete()
	if err != nil {
		return nil, err
	}
	buf := make([]byte, f.FrameSize)
	sm := newSampler(true)
	next := uint64(0)
	for {
		err := readFull(fd, buf)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		t1 := framebus.Now()
		seq := binary.LittleEndian.Uint64(buf[0:])
		t0 := int64(binary.LittleEndian.Uint64(buf[8:]))
		phase := binary.LittleEndian.Uint64(buf[16:])
		if seq != next {
			return nil, fmt.Errorf("frame %d arrived, want %d: the stream lost its framing", seq, next)
		}
		next++
		if phase != phaseMeasure {
			continue
		}
		sm.add(0, t0, t1, t1, 0, 0, len(buf))
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	return sm.finish()
}

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		b = b[n:]
	}
	return nil
}

// readFull fills b; io.EOF if the stream ended before its first byte.
func readFull(fd int, b []byte) error {
	got := 0
	for got < len(b) {
		n, err := unix.Read(fd, b[got:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if n == 0 {
			if got == 0 {
				return io.EOF
			}
			return io.ErrUnexpectedEOF
		}
		got += n
	}
	return nil
}
