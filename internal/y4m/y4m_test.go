package y4m

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/framebus/framebus/framebus"
)

func TestParseHeader(t *testing.T) {
	for _, c := range []struct {
		line string
		want framebus.Format
		err  error
	}{
		{"YUV4MPEG2 W320 H240 F30000:1001 Ip A1:1 C420jpeg XYSCSS=420JPEG", framebus.Format{Width: 320, Height: 240, PixelFormat: framebus.FormatI420, FPSNum: 30000, FPSDen: 1001}, nil},
		{"YUV4MPEG2 W320 H240", framebus.Format{Width: 320, Height: 240, PixelFormat: framebus.FormatI420, FPSDen: 1}, nil},
		{"YUV4MPEG2 W64 H48 F25:1 C420mpeg2", framebus.Format{Width: 64, Height: 48, PixelFormat: framebus.FormatI420, FPSNum: 25, FPSDen: 1}, nil},
		{"YUV4MPEG2 W65 H47 F0:0 Cmono", framebus.Format{Width: 65, Height: 47, PixelFormat: framebus.FormatGrey, FPSDen: 1}, nil},
		{"YUV4MPEG2 W64 H48 C422", framebus.Format{}, ErrUnsupported},
		{"YUV4MPEG2 W64 H48 C444alpha", framebus.Format{}, ErrUnsupported},
		{"YUV4MPEG2 W64 H48 Cmono16", framebus.Format{}, ErrUnsupported},
		{"YUV4MPEG2 W0 H48", framebus.Format{}, ErrBadStream},
		{"YUV4MPEG2 W64 H48 Q1", framebus.Format{}, ErrBadStream},
		{"YUV4MPEG2 W64 H48 Iz", framebus.Format{}, ErrBadStream},
		{"YUV4MPEG W64 H48", framebus.Format{}, ErrBadStream},
		{"YUV4MPEG2 W99999 H48", framebus.Format{}, ErrBadStream},
	} {
		h, err := ParseHeader(c.line)
		var f framebus.Format
		if err == nil {
			f, err = h.Format()
		}
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Errorf("%q: %v, want %v", c.line, err, c.err)
			}
			continue
		}
		want, _ := c.want.Complete()
		if err != nil || f != want {
			t.Errorf("%q: %v %v, want %v", c.line, f, err, want)
		}
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	for _, pf := range []framebus.FourCC{framebus.FormatI420, framebus.FormatNV12, framebus.FormatGrey} {
		f, _ := framebus.Format{Width: 64, Height: 48, PixelFormat: pf, FPSNum: 25, FPSDen: 1}.Complete()
		h, err := ForFormat(f)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ReadHeader(bufio.NewReader(strings.NewReader(h.String() + "\n")))
		if err != nil {
			t.Fatal(err)
		}
		g, err := back.Format()
		want := f
		if pf == framebus.FormatNV12 {
			want, _ = framebus.Format{Width: 64, Height: 48, PixelFormat: framebus.FormatI420, FPSNum: 25, FPSDen: 1}.Complete()
		}
		if err != nil || g != want {
			t.Errorf("%v: %q reads back as %v (%v)", pf, h.String(), g, err)
		}
	}
	rgb, _ := framebus.Format{Width: 64, Height: 48, PixelFormat: framebus.FormatRGBA}.Complete()
	if _, err := ForFormat(rgb); !errors.Is(err, ErrUnsupported) {
		t.Errorf("RGBA: %v", err)
	}
}

func TestFrameHeader(t *testing.T) {
	r := bufio.NewReader(strings.NewReader("FRAME\nFRAME Ixyz\nFRAMEX\nFRA"))
	if err := ReadFrameHeader(r); err != nil {
		t.Fatal(err)
	}
	if err := ReadFrameHeader(r); err != nil {
		t.Fatal(err)
	}
	if err := ReadFrameHeader(r); !errors.Is(err, ErrBadStream) {
		t.Errorf("FRAMEX: %v", err)
	}
	if err := ReadFrameHeader(r); !errors.Is(err, ErrBadStream) {
		t.Errorf("FRA at the end: %v", err)
	}
	if err := ReadFrameHeader(bufio.NewReader(strings.NewReader(""))); err != io.EOF {
		t.Errorf("the end: %v", err)
	}
	long := bufio.NewReader(strings.NewReader("YUV4MPEG2 W1 H1 X" + strings.Repeat("a", 10000) + "\n"))
	if _, err := ReadHeader(long); !errors.Is(err, ErrBadStream) {
		t.Errorf("a header without an end: %v", err)
	}
}

// Planar takes NV12's interleaved chroma and YUYV's packed samples apart,
// and drops stride padding, byte for byte.
func TestPlanar(t *testing.T) {
	nv12, _ := framebus.Format{Width: 4, Height: 2, PixelFormat: framebus.FormatNV12}.Complete()
	data := []byte{1, 2, 3, 4, 5, 6, 7, 8, 'u', 'v', 'U', 'V'}
	got, err := Planar(make([]byte, FrameSize(nv12)), data, nv12)
	if err != nil || !bytes.Equal(got, []byte{1, 2, 3, 4, 5, 6, 7, 8, 'u', 'U', 'v', 'V'}) {
		t.Errorf("NV12: %q %v", got, err)
	}
	yuyv, _ := framebus.Format{Width: 4, Height: 1, PixelFormat: framebus.FormatYUYV}.Complete()
	got, err = Planar(make([]byte, FrameSize(yuyv)), []byte{'a', 'u', 'b', 'v', 'c', 'U', 'd', 'V'}, yuyv)
	if err != nil || string(got) != "abcduUvV" {
		t.Errorf("YUYV: %q %v", got, err)
	}
	padded, err := framebus.Format{Width: 2, Height: 2, PixelFormat: framebus.FormatGrey, PlaneCount: 1, PlaneStride: [4]uint32{4}}.Complete()
	if err != nil {
		t.Fatal(err)
	}
	got, err = Planar(make([]byte, FrameSize(padded)), []byte{1, 2, 0, 0, 3, 4, 0, 0}, padded)
	if err != nil || !bytes.Equal(got, []byte{1, 2, 3, 4}) {
		t.Errorf("padded GREY: %v %v", got, err)
	}
	if testing.AllocsPerRun(100, func() { Planar(got[:cap(got)], []byte{1, 2, 0, 0, 3, 4, 0, 0}, padded) }) != 0 {
		t.Errorf("Planar allocates")
	}
}
