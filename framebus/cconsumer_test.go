//go:build linux

package framebus_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/framebus/framebus/framebus"
)

// TestCConsumer checks the Go producer against a consumer written in C from
// docs/PROTOCOL.md and include/framebus.h alone (testdata/c/consumer.c): it
// must join the table, be woken by the producer's futex semaphore (it never
// polls), read every frame it is given correctly with a matching CRC-32C,
// and see the end of stream.
func TestCConsumer(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		if os.Getenv("FRAMEBUS_REQUIRE_GCC") == "1" {
			t.Fatal("gcc not found")
		}
		t.Skip("gcc not found")
	}
	bin := filepath.Join(t.TempDir(), "consumer")
	args := append([]string{"-O2", "-std=gnu11", "-Wall", "-Werror", "-o", bin}, cLibArgs(t)...)
	build := exec.Command(gcc, append(args, "testdata/c/consumer.c")...)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the C consumer: %v\n%s", err, out)
	}

	dir := t.TempDir()
	const frames = 300
	p, err := framebus.Create("ctest", framebus.ProducerOptions{
		Format:    framebus.Format{Width: 320, Height: 240, PixelFormat: framebus.FormatRGBA},
		Checksum:  true,
		Heartbeat: 10 * time.Second,
		Dir:       dir,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, p.Path(), framebus.LockPath(dir, "ctest"), "100000", "10000")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	deadline := time.Now().Add(10 * time.Second)
	for p.Stats().ActiveConsumers < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the C consumer never joined\n%s", stderr.String())
		}
		time.Sleep(time.Millisecond)
	}

	size := int(p.Format().FrameSize)
	want := map[uint64]string{}
	woken := 0
	for i := 0; i < frames; i++ {
		buf, err := p.Begin()
		if err != nil {
			t.Fatal(err)
		}
		seq := p.Stats().LastSeq + 1
		for w := 0; w < size/8; w++ {
			binary.LittleEndian.PutUint64(buf[8*w:], seq<<32|uint64(w))
		}
		want[seq] = hex.EncodeToString(buf[:8])
		if _, err := p.Commit(size, framebus.Meta{UserMeta: []byte("c-test")}); err != nil {
			t.Fatal(err)
		}
		// Lockstep: the next frame once the consumer took this one, so
		// that it sleeps on its semaphore before every frame and the wake
		// path is what delivers it. The heartbeat (its wait's timeout) is
		// 10 s: a consumer that is not woken waits out the 2 s allowed.
		if waitTaken(dir, seq, 2*time.Second) {
			woken++
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("C consumer: %v\nstderr:\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("C consumer did not end after Close\nstderr:\n%s", stderr.String())
	}

	delivered, crcOK := 0, 0
	var last uint64
	var summary string
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "summary") {
			summary = line
			continue
		}
		var seq, n uint64
		var ok, ml int
		var first string
		if _, err := fmt.Sscanf(line, "frame %d %d %d %s %d", &seq, &n, &ok, &first, &ml); err != nil {
			t.Fatalf("bad line %q: %v", line, err)
		}
		if seq <= last {
			t.Errorf("frame %d after %d: not increasing", seq, last)
		}
		last = seq
		if n != uint64(size) || ml != len("c-test") {
			t.Errorf("frame %d: %d bytes, %d bytes of user metadata; want %d, 6", seq, n, ml, size)
		}
		if first != want[seq] {
			t.Errorf("frame %d: first bytes %s, want %s", seq, first, want[seq])
		}
		if ok == 1 {
			crcOK++
		}
		delivered++
	}
	var d, dropped, torn, crcBad, eos int
	if _, err := fmt.Sscanf(summary, "summary delivered=%d dropped=%d torn=%d crc_bad=%d eos=%d", &d, &dropped, &torn, &crcBad, &eos); err != nil {
		t.Fatalf("bad summary %q: %v", summary, err)
	}
	t.Logf("C consumer: %s", summary)
	if d != delivered || crcOK != delivered || crcBad != 0 {
		t.Errorf("delivered %d (summary %d), crc ok %d, crc bad %d", delivered, d, crcOK, crcBad)
	}
	if delivered+dropped != frames || eos != 1 {
		t.Errorf("delivered %d + dropped %d != %d frames, or no end of stream (eos=%d)", delivered, dropped, frames, eos)
	}
	if woken < frames*9/10 {
		t.Errorf("the C consumer took only %d of %d frames within 2 s of their commit: is it being woken?", woken, frames)
	}
}

// waitTaken waits, at most d, until the one consumer of bus ctest in dir has
// taken frame seq (its entry's last_seq).
func waitTaken(dir string, seq uint64, d time.Duration) bool {
	for start := time.Now(); time.Since(start) < d; time.Sleep(100 * time.Microsecond) {
		if s, err := framebus.Inspect("ctest", dir); err == nil && len(s.Consumers) == 1 && s.Consumers[0].LastSeq >= seq {
			return true
		}
	}
	return false
}
