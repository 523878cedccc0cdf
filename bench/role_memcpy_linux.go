//go:build linux

package bench

import (
	"context"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/framebus/framebus/framebus"
)

// memcpyRole is the copy limit: copy() of one rendered frame into a
// pre-faulted MAP_SHARED mapping of a file in the run's directory (tmpfs),
// alternating between two regions a slot stride apart, as double-buffered
// Publish writes its two slots. Its latency is the copy of one frame.
func memcpyRole(ctx context.Context, s *childSpec) (*childResult, error) {
	src, err := newSource(s)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	frame := make([]byte, src.Format().FrameSize)
	n, _, err := src.Read(ctx, frame)
	if err != nil {
		return nil, err
	}
	stride := (n + 65535) / 65536 * 65536
	dst, err := mapScratch(filepath.Join(s.Dir, "memcpy"), 2*stride)
	if err != nil {
		return nil, err
	}
	defer unix.Munmap(dst)
	lat := newHist()
	sched := newSchedule(s)
	for k := int64(0); ; k++ {
		phase, more := sched.next(s, k)
		if !more {
			break
		}
		off := int(k&1) * stride
		t0 := framebus.Now()
		copy(dst[off:off+n], frame[:n])
		t1 := framebus.Now()
		if phase == phaseMeasure {
			record(lat, t1-t0)
			sched.measured(t0)
		}
		if k&1023 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	res := &childResult{Frames: sched.frames, WindowNS: sched.last - sched.first, CPUNS: cpuTime() - sched.cpu0,
		Bytes: sched.frames * int64(n), Waiting: -1}
	if res.Latency, err = encodeHist(lat); err != nil {
		return nil, err
	}
	res.Read, res.Publish = res.Latency, res.Latency
	return res, nil
}

// mapScratch maps a new size-byte file at path MAP_SHARED, allocated and
// touched page by page (a first write to fresh shared memory costs a page
// fault per 4 KiB, which is not what a copy costs), and unlinks it.
func mapScratch(path string, size int) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	defer os.Remove(path)
	defer f.Close()
	if err := unix.Fallocate(int(f.Fd()), 0, 0, int64(size)); err != nil {
		return nil, err
	}
	m, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, err
	}
	for i := 0; i < len(m); i += 4096 {
		m[i] = 1
	}
	return m, nil
}
