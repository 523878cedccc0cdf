package framebus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
)

// wantLayoutError checks that err is ErrCorrupt, a *LayoutError naming field
// with value, and that the message names both.
func wantLayoutError(t *testing.T, err error, field string, value uint64) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want a layout error on %s = %d", field, value)
	}
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("errors.Is(%v, ErrCorrupt) = false", err)
	}
	if errors.Is(err, ErrBadMagic) || errors.Is(err, ErrVersionMismatch) {
		t.Errorf("%v: also matches ErrBadMagic or ErrVersionMismatch", err)
	}
	var le *LayoutError
	if !errors.As(err, &le) {
		t.Fatalf("%v (%T) is not a *LayoutError", err, err)
	}
	if le.Field != field || le.Value != value {
		t.Errorf("LayoutError{Field: %q, Value: %d}, want {%q, %d} (%v)", le.Field, le.Value, field, value, err)
	}
	if msg := err.Error(); !strings.Contains(msg, field) || !strings.Contains(msg, strconv.FormatUint(value, 10)) {
		t.Errorf("message %q does not name %s and %d", msg, field, value)
	}
}

func TestValidateHeaderValid(t *testing.T) {
	for _, tc := range []struct {
		f                Format
		slots, consumers uint32
	}{
		{Format{Width: 64, Height: 48, PixelFormat: FormatGrey}, 2, 4},
		{Format{Width: 1920, Height: 1080}, 2, 32},
		{Format{Width: 1920, Height: 1080, PixelFormat: FormatI420}, 8, 1024},
		{Format{Width: 1280, Height: 720, PixelFormat: FormatNV12}, 3, 1},
		{Format{Width: 640, Height: 480, PixelFormat: FormatMJPEG}, 2, 32},
	} {
		f, err := tc.f.Complete()
		if err != nil {
			t.Fatal(err)
		}
		h := headerFor(f, tc.slots, tc.consumers)
		got, err := validateSegment(encoded(&h), int64(h.TotalSize))
		if err != nil {
			t.Errorf("%v, %d slots, %d consumers: %v", f, tc.slots, tc.consumers, err)
		} else if got != h {
			t.Errorf("%v: validateSegment returned another header: %v", f, headerDiff(got, h))
		}
		for _, st := range []uint32{StateInitializing, StateReady, StateBroken, StateRetired} {
			h.State = st
			if err := validateHeader(&h, int64(h.TotalSize)); err != nil {
				t.Errorf("state %d: %v", st, err)
			}
		}
	}
}

// TestValidateHeaderRules breaks each rule of validateHeader, one field at a
// time, and expects a *LayoutError naming that field and its value.
func TestValidateHeaderRules(t *testing.T) {
	base := validTestHeader(t)
	total := base.TotalSize
	slotEnd := base.SlotTableOffset + uint64(base.SlotCount)*SlotDescSize

	// A 3-slot header whose payload_offset + payload_size wraps around 2^64:
	// slot_stride = 65536 * (2^48-1)/3, payload_size = 2^64 - 65536.
	wrapStride := uint64(PayloadAlign) * ((1<<48 - 1) / 3)

	type tc struct {
		name     string
		mutate   func(h *header)
		fileSize int64 // 0: h.TotalSize after mutate
		field    string
		value    uint64
	}
	cases := []tc{
		{"header_size 0", func(h *header) { h.HeaderSize = 0 }, 0, "header_size", 0},
		{"header_size 511", func(h *header) { h.HeaderSize = 511 }, 0, "header_size", 511},
		{"header_size 1024", func(h *header) { h.HeaderSize = 1024 }, 0, "header_size", 1024},
		{"total_size bigger than the file", func(h *header) {}, int64(total) - 1, "total_size", total},
		{"total_size smaller than the file", func(h *header) {}, int64(total) + 4096, "total_size", total},
		{"total_size near 2^64", func(h *header) { h.TotalSize = math.MaxUint64 }, int64(total), "total_size", math.MaxUint64},
		{"negative file size", func(h *header) {}, -1, "total_size", total},
		{"state 4", func(h *header) { h.State = 4 }, 0, "state", 4},
		{"state 2^32-1", func(h *header) { h.State = math.MaxUint32 }, 0, "state", math.MaxUint32},
		{"slot_count 0", func(h *header) { h.SlotCount = 0 }, 0, "slot_count", 0},
		{"slot_count 1", func(h *header) { h.SlotCount = 1 }, 0, "slot_count", 1},
		{"slot_count 9", func(h *header) { h.SlotCount = 9 }, 0, "slot_count", 9},
		{"slot_count 2^32-1", func(h *header) { h.SlotCount = math.MaxUint32 }, 0, "slot_count", math.MaxUint32},
		{"consumer_capacity 0", func(h *header) { h.ConsumerCapacity = 0 }, 0, "consumer_capacity", 0},
		{"consumer_capacity 1025", func(h *header) { h.ConsumerCapacity = 1025 }, 0, "consumer_capacity", 1025},
		{"consumer_capacity 2^32-1", func(h *header) { h.ConsumerCapacity = math.MaxUint32 }, 0, "consumer_capacity", math.MaxUint32},
		{"slot_desc_size 64", func(h *header) { h.SlotDescSize = 64 }, 0, "slot_desc_size", 64},
		{"slot_desc_size 0", func(h *header) { h.SlotDescSize = 0 }, 0, "slot_desc_size", 0},
		{"consumer_entry_size 256", func(h *header) { h.ConsumerEntrySize = 256 }, 0, "consumer_entry_size", 256},
		{"heartbeat_interval_ms 0", func(h *header) { h.HeartbeatIntervalMS = 0 }, 0, "heartbeat_interval_ms", 0},
		{"heartbeat_interval_ms 60001", func(h *header) { h.HeartbeatIntervalMS = 60001 }, 0, "heartbeat_interval_ms", 60001},
		{"slot_table_offset 0", func(h *header) { h.SlotTableOffset = 0 }, 0, "slot_table_offset", 0},
		{"slot_table_offset 1024", func(h *header) { h.SlotTableOffset = 1024 }, 0, "slot_table_offset", 1024},
		{"slot_table_offset near 2^64", func(h *header) { h.SlotTableOffset = math.MaxUint64 - 127 }, 0, "slot_table_offset", math.MaxUint64 - 127},
		{"consumer_table_offset inside the slot table", func(h *header) { h.ConsumerTableOffset = slotEnd - 8 }, 0, "consumer_table_offset", slotEnd - 8},
		{"consumer_table_offset 0", func(h *header) { h.ConsumerTableOffset = 0 }, 0, "consumer_table_offset", 0},
		{"consumer_table_offset misaligned", func(h *header) { h.ConsumerTableOffset = slotEnd + 4 }, 0, "consumer_table_offset", slotEnd + 4},
		{"consumer_table_offset past total_size", func(h *header) { h.ConsumerTableOffset = total + 8 }, 0, "consumer_table_offset", total + 8},
		{"consumer_table_offset near 2^64", func(h *header) { h.ConsumerTableOffset = math.MaxUint64 - 7 }, 0, "consumer_table_offset", math.MaxUint64 - 7},
		{"payload_offset misaligned", func(h *header) { h.PayloadOffset += 4096 }, 0, "payload_offset", base.PayloadOffset + 4096},
		{"payload_offset 0 (inside the tables)", func(h *header) { h.PayloadOffset = 0 }, 0, "payload_offset", 0},
		{"payload_offset past total_size", func(h *header) { h.PayloadOffset = alignUp(total+1, PayloadAlign) }, 0, "payload_offset", alignUp(total+1, PayloadAlign)},
		{"payload_offset near 2^64", func(h *header) { h.PayloadOffset = math.MaxUint64 - PayloadAlign + 1 }, 0, "payload_offset", math.MaxUint64 - PayloadAlign + 1},
		{"payload_offset 2^64-1", func(h *header) { h.PayloadOffset = math.MaxUint64 }, 0, "payload_offset", math.MaxUint64},
		{"consumer table overlaps payload", func(h *header) { h.ConsumerCapacity = 1024 }, 0, "payload_offset", base.PayloadOffset},
		{"slot_stride 0", func(h *header) { h.SlotStride = 0 }, 0, "slot_stride", 0},
		{"slot_stride misaligned", func(h *header) { h.SlotStride = PayloadAlign + 1 }, 0, "slot_stride", PayloadAlign + 1},
		{"slot_capacity 0", func(h *header) { h.SlotCapacity = 0 }, 0, "slot_capacity", 0},
		{"slot_capacity > slot_stride", func(h *header) { h.SlotCapacity = h.SlotStride + 1 }, 0, "slot_capacity", base.SlotStride + 1},
		{"slot_capacity 2^64-1", func(h *header) { h.SlotCapacity = math.MaxUint64 }, 0, "slot_capacity", math.MaxUint64},
		{"payload_size off by one", func(h *header) { h.PayloadSize-- }, 0, "payload_size", base.PayloadSize - 1},
		{"payload_size 0", func(h *header) { h.PayloadSize = 0 }, 0, "payload_size", 0},
		{"slot_count * slot_stride overflows", func(h *header) {
			h.SlotStride = 1 << 63
			h.PayloadSize = 0
		}, 0, "payload_size", 0},
		{"payload past total_size", func(h *header) {
			h.SlotStride = 1 << 62
			h.PayloadSize = 1 << 63
		}, 0, "payload_size", 1 << 63},
		{"payload_offset + payload_size wraps", func(h *header) {
			h.SlotCount = 3
			h.ConsumerTableOffset = HeaderSize + 3*SlotDescSize
			h.SlotStride = wrapStride
			h.PayloadSize = 3 * wrapStride
		}, 0, "payload_size", 3 * wrapStride},
		{"payload one slot too long for the file", func(h *header) {
			h.SlotCount = 3
			h.ConsumerTableOffset = HeaderSize + 3*SlotDescSize
			h.PayloadSize = 3 * h.SlotStride
		}, 0, "payload_size", 3 * base.SlotStride},
		{"plane_count 0", func(h *header) { h.PlaneCount = 0 }, 0, "plane_count", 0},
		{"plane_count 5", func(h *header) { h.PlaneCount = 5 }, 0, "plane_count", 5},
		{"plane_offset[0] at slot_capacity", func(h *header) { h.PlaneOffset[0] = uint32(h.SlotCapacity) }, 0, "plane_offset[0]", base.SlotCapacity},
		{"plane_offset[2] past slot_capacity", func(h *header) {
			h.PlaneCount = 3
			h.PlaneOffset[2] = math.MaxUint32
		}, 0, "plane_offset[2]", math.MaxUint32},
		{"width 0", func(h *header) { h.Width = 0 }, 0, "width", 0},
		{"height 16385", func(h *header) { h.Height = MaxDimension + 1 }, 0, "height", MaxDimension + 1},
		{"fps_den 0 with fps_num", func(h *header) { h.FPSNum, h.FPSDen = 30, 0 }, 0, "fps_den", 0},
		{"stride shorter than a row", func(h *header) { h.PlaneStride[0] = h.Width - 1 }, 0, "plane_stride[0]", uint64(base.Width) - 1},
		{"plane runs past slot_capacity", func(h *header) { h.PlaneStride[0] *= 2 }, 0, "plane_stride[0]", uint64(base.PlaneStride[0]) * 2},
		{"active = slot_count", func(h *header) { h.Active = h.SlotCount }, 0, "active", uint64(base.SlotCount)},
		{"active 2^32-1", func(h *header) { h.Active = math.MaxUint32 }, 0, "active", math.MaxUint32},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := base
			c.mutate(&h)
			size := c.fileSize
			if size == 0 {
				size = int64(h.TotalSize)
				if h.TotalSize > math.MaxInt64 {
					size = int64(total)
				}
			}
			hh := h
			wantLayoutError(t, validateHeader(&hh, size), c.field, c.value)
			if size < HeaderSize {
				return // validateSegment stops at checkIdentity (TestValidateIdentity)
			}
			got, err := validateSegment(encoded(&h), size)
			wantLayoutError(t, err, c.field, c.value)
			if got != h {
				// The decoded snapshot is returned with the error, for messages.
				t.Errorf("validateSegment did not return the decoded header: %v", headerDiff(got, h))
			}
		})
	}
}

// TestValidateIdentity covers checkIdentity: empty and truncated files,
// magic and version.
func TestValidateIdentity(t *testing.T) {
	h := validTestHeader(t)
	good := encoded(&h)
	size := int64(h.TotalSize)

	t.Run("valid", func(t *testing.T) {
		if err := checkIdentity(good, size); err != nil {
			t.Fatal(err)
		}
	})
	for _, c := range []struct {
		name     string
		b        []byte
		fileSize int64
		value    uint64
	}{
		{"empty", nil, 0, 0},
		{"empty but a length", []byte{}, 0, 0},
		{"4 bytes", good[:4], 4, 4},
		{"truncated 100 bytes", good[:100], 100, 100},
		{"truncated 511 bytes", good[:511], 511, 511},
		{"negative size", good[:100], -5, 0},
		{"short read of a long file", good[:300], size, uint64(size)},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := checkIdentity(c.b, c.fileSize)
			wantLayoutError(t, err, "file size", c.value)
			_, err2 := validateSegment(c.b, c.fileSize)
			wantLayoutError(t, err2, "file size", c.value)
		})
	}

	bad := append([]byte(nil), good...)
	binary.LittleEndian.PutUint32(bad, 0x46425553) // "SUBF": byte-swapped
	magicCases := []struct {
		name string
		b    []byte
		size int64
	}{
		{"byte-swapped magic", bad, size},
		{"all zero", make([]byte, HeaderSize), size},
		{"truncated, wrong magic", bad[:100], 100},
		{"text file", []byte("hello, world, this is not a segment"), 35},
	}
	for _, c := range magicCases {
		t.Run(c.name, func(t *testing.T) {
			for _, err := range []error{checkIdentity(c.b, c.size), func() error { _, err := validateSegment(c.b, c.size); return err }()} {
				if !errors.Is(err, ErrBadMagic) {
					t.Fatalf("%v: want ErrBadMagic", err)
				}
				if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrVersionMismatch) {
					t.Errorf("%v: bad magic also matches another sentinel", err)
				}
				got := binary.LittleEndian.Uint32(c.b)
				msg := err.Error()
				if !strings.Contains(msg, "magic") || !strings.Contains(msg, "0x53554246") ||
					!strings.Contains(msg, fmt.Sprintf("0x%08x", got)) {
					t.Errorf("message %q does not name the field and both values (got 0x%08x)", msg, got)
				}
			}
		})
	}

	for _, v := range []uint16{0, 2, math.MaxUint16} {
		t.Run("abi_version "+strconv.Itoa(int(v)), func(t *testing.T) {
			b := append([]byte(nil), good...)
			binary.LittleEndian.PutUint16(b[offABIVersion:], v)
			for _, err := range []error{checkIdentity(b, size), func() error { _, err := validateSegment(b, size); return err }()} {
				if !errors.Is(err, ErrVersionMismatch) {
					t.Fatalf("%v: want ErrVersionMismatch", err)
				}
				if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrBadMagic) {
					t.Errorf("%v: version error also matches another sentinel", err)
				}
				var ve *VersionError
				if !errors.As(err, &ve) {
					t.Fatalf("%v (%T) is not a *VersionError", err, err)
				}
				if ve.Got != v || ve.Want != 1 {
					t.Errorf("VersionError{Got: %d, Want: %d}, want {%d, 1}", ve.Got, ve.Want, v)
				}
				msg := err.Error()
				if !strings.Contains(msg, "abi_version "+strconv.Itoa(int(v))) || !strings.Contains(msg, "speaks 1") {
					t.Errorf("message %q does not give both versions", msg)
				}
			}
		})
	}
}

func TestValidateName(t *testing.T) {
	long := strings.Repeat("a", MaxNameLen)
	for _, name := range []string{
		"cam0", "a", "A-b_c.d", "front.left-2", long, "x.lockx", "x.lock.y", "a.tmp", "tmp-1",
		"a..b", // a single path component: allowed by the character rule
		"-x", "9", "_", "a.",
	} {
		if err := ValidateName(name); err != nil {
			t.Errorf("ValidateName(%q) = %v, want nil", name, err)
		}
	}
	for _, name := range []string{
		"", ".", "..", "../x", "a/b", "/abs", "a/", "x.lock", ".lock", "a.tmp-1", "a.tmp-", "x.tmp-123.y",
		".hidden", long + "a", "a\x00b", "\x00", "café", "カメラ", "a b", "a\tb", "a\nb", "a\\b",
		"a:b", "a*b", "a%2fb", "$HOME", "a\xffb",
	} {
		err := ValidateName(name)
		if !errors.Is(err, ErrBadName) {
			t.Errorf("ValidateName(%q) = %v, want ErrBadName", name, err)
			continue
		}
		var ne *NameError
		if !errors.As(err, &ne) || ne.Name != name || ne.Reason == "" {
			t.Errorf("ValidateName(%q) = %#v, want a *NameError naming it with a reason", name, err)
		}
		if !strings.Contains(err.Error(), strconv.Quote(name)) {
			t.Errorf("ValidateName(%q): message %q does not quote the name", name, err)
		}
	}
}

func TestFormatComplete(t *testing.T) {
	type want struct {
		planes  uint32
		stride  [MaxPlanes]uint32
		offset  [MaxPlanes]uint32
		size    uint64
		pixfmt  FourCC
		fpsDen  uint32
		checked bool
	}
	ok := []struct {
		name string
		in   Format
		want want
	}{
		{"default RGBA", Format{Width: 1920, Height: 1080},
			want{1, [4]uint32{7680}, [4]uint32{}, 1920 * 1080 * 4, FormatRGBA, 1, true}},
		{"RGB24", Format{Width: 641, Height: 3, PixelFormat: FormatRGB24},
			want{1, [4]uint32{1923}, [4]uint32{}, 1923 * 3, FormatRGB24, 1, true}},
		{"GREY odd", Format{Width: 3, Height: 5, PixelFormat: FormatGrey},
			want{1, [4]uint32{3}, [4]uint32{}, 15, FormatGrey, 1, true}},
		{"YUYV odd height", Format{Width: 640, Height: 481, PixelFormat: FormatYUYV},
			want{1, [4]uint32{1280}, [4]uint32{}, 1280 * 481, FormatYUYV, 1, true}},
		{"NV12", Format{Width: 640, Height: 480, PixelFormat: FormatNV12},
			want{2, [4]uint32{640, 640}, [4]uint32{0, 640 * 480}, 640 * 480 * 3 / 2, FormatNV12, 1, true}},
		{"I420", Format{Width: 1920, Height: 1080, PixelFormat: FormatI420},
			want{3, [4]uint32{1920, 960, 960}, [4]uint32{0, 1920 * 1080, 1920 * 1080 * 5 / 4}, 1920 * 1080 * 3 / 2, FormatI420, 1, true}},
		{"MJPEG default size", Format{Width: 1280, Height: 720, PixelFormat: FormatMJPEG},
			want{1, [4]uint32{}, [4]uint32{}, 1280 * 720 * 2, FormatMJPEG, 1, true}},
		{"MJPEG given size, planes ignored", Format{Width: 1280, Height: 720, PixelFormat: FormatMJPEG, FrameSize: 100000, PlaneCount: 3, PlaneStride: [4]uint32{1, 2, 3}},
			want{1, [4]uint32{}, [4]uint32{}, 100000, FormatMJPEG, 1, true}},
		{"padded stride", Format{Width: 1920, Height: 1080, PlaneCount: 1, PlaneStride: [4]uint32{8192}},
			want{1, [4]uint32{8192}, [4]uint32{}, 8192 * 1080, FormatRGBA, 1, true}},
		{"larger frame size", Format{Width: 16, Height: 16, PixelFormat: FormatGrey, FrameSize: 1000},
			want{1, [4]uint32{16}, [4]uint32{}, 1000, FormatGrey, 1, true}},
		{"given plane offsets", Format{Width: 16, Height: 16, PixelFormat: FormatNV12, PlaneCount: 2, PlaneOffset: [4]uint32{0, 4096}},
			want{2, [4]uint32{16, 16}, [4]uint32{0, 4096}, 4096 + 16*8, FormatNV12, 1, true}},
		{"fps", Format{Width: 16, Height: 16, FPSNum: 30000, FPSDen: 1001},
			want{1, [4]uint32{64}, [4]uint32{}, 1024, FormatRGBA, 1001, true}},
		{"largest", Format{Width: MaxDimension, Height: MaxDimension},
			want{1, [4]uint32{MaxDimension * 4}, [4]uint32{}, MaxDimension * MaxDimension * 4, FormatRGBA, 1, true}},
	}
	for _, c := range ok {
		t.Run(c.name, func(t *testing.T) {
			f, err := c.in.Complete()
			if err != nil {
				t.Fatal(err)
			}
			w := c.want
			if f.PlaneCount != w.planes || f.PlaneStride != w.stride || f.PlaneOffset != w.offset || f.FrameSize != w.size ||
				f.PixelFormat != w.pixfmt || f.FPSDen != w.fpsDen {
				t.Errorf("Complete(%+v) = %+v, want planes %d strides %v offsets %v size %d format %v fps_den %d",
					c.in, f, w.planes, w.stride, w.offset, w.size, w.pixfmt, w.fpsDen)
			}
			// Complete is idempotent: a completed format completes to itself.
			if g, err := f.Complete(); err != nil || g != f {
				t.Errorf("Complete(Complete(f)) = %+v, %v; want %+v", g, err, f)
			}
		})
	}

	bad := []struct {
		name, mention string
		in            Format
	}{
		{"0x0", "0x0", Format{}},
		{"0 width", "0x480", Format{Height: 480}},
		{"0 height", "640x0", Format{Width: 640}},
		{"100000x100000", "100000x100000", Format{Width: 100000, Height: 100000}},
		{"16385 wide", "16385x1", Format{Width: MaxDimension + 1, Height: 1}},
		{"odd NV12 width", "641x480", Format{Width: 641, Height: 480, PixelFormat: FormatNV12}},
		{"odd NV12 height", "640x481", Format{Width: 640, Height: 481, PixelFormat: FormatNV12}},
		{"odd I420", "639x479", Format{Width: 639, Height: 479, PixelFormat: FormatI420}},
		{"odd YUYV width", "641x480", Format{Width: 641, Height: 480, PixelFormat: FormatYUYV}},
		{"stride too short", "stride 100", Format{Width: 640, Height: 480, PlaneCount: 1, PlaneStride: [4]uint32{100}}},
		{"stride one byte short", "stride 2559", Format{Width: 640, Height: 480, PlaneCount: 1, PlaneStride: [4]uint32{2559}}},
		{"chroma stride too short", "plane 1 stride 100", Format{Width: 640, Height: 480, PixelFormat: FormatNV12, PlaneCount: 2, PlaneStride: [4]uint32{640, 100}}},
		{"stride given without a plane count", "stride 100", Format{Width: 640, Height: 480, PlaneStride: [4]uint32{100}}},
		{"wrong plane count", "2 given", Format{Width: 640, Height: 480, PlaneCount: 2}},
		{"overlapping planes", "overlaps", Format{Width: 16, Height: 16, PixelFormat: FormatNV12, PlaneCount: 2, PlaneOffset: [4]uint32{0, 100}}},
		{"frame size below the planes", "smaller than the planes", Format{Width: 16, Height: 16, FrameSize: 1023}},
		{"too large", "too large", Format{Width: MaxDimension, Height: MaxDimension, PlaneCount: 1, PlaneStride: [4]uint32{1 << 20}}},
		{"fps den 0", "denominator", Format{Width: 16, Height: 16, FPSNum: 30}},
		{"unknown pixel format", "XXXX", Format{Width: 16, Height: 16, PixelFormat: MakeFourCC('X', 'X', 'X', 'X')}},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.in.Complete()
			if !errors.Is(err, ErrBadOptions) {
				t.Fatalf("Complete(%+v) = %v, want ErrBadOptions", c.in, err)
			}
			if !strings.Contains(err.Error(), c.mention) {
				t.Errorf("message %q does not mention %q", err, c.mention)
			}
		})
	}
}

func TestParseFourCC(t *testing.T) {
	for in, want := range map[string]FourCC{
		"RGBA": FormatRGBA, "rgba": FormatRGBA, "AB24": FormatRGBA, "RGB24": FormatRGB24, "RGB3": FormatRGB24,
		"BGR24": FormatBGR24, "BGR3": FormatBGR24, "GREY": FormatGrey, "gray": FormatGrey, "YUYV": FormatYUYV,
		"NV12": FormatNV12, "nv12": FormatNV12, "I420": FormatI420, "YU12": FormatI420, "MJPEG": FormatMJPEG,
		"MJPG": FormatMJPEG,
	} {
		got, err := ParseFourCC(in)
		if err != nil || got != want {
			t.Errorf("ParseFourCC(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "XXXX", "AB2", "AB245", "H264", "RGBX", "\x00\x00\x00\x00", "ab24"} {
		got, err := ParseFourCC(in)
		if !errors.Is(err, ErrBadOptions) || got != 0 {
			t.Errorf("ParseFourCC(%q) = %v, %v; want 0 and ErrBadOptions", in, got, err)
		} else if !strings.Contains(err.Error(), strconv.Quote(in)) {
			t.Errorf("ParseFourCC(%q): message %q does not quote the input", in, err)
		}
	}
	// The fourcc values of PROTOCOL.md section 3.2: first character in the low byte.
	for want, f := range map[string]FourCC{"AB24": FormatRGBA, "RGB3": FormatRGB24, "BGR3": FormatBGR24,
		"GREY": FormatGrey, "YUYV": FormatYUYV, "NV12": FormatNV12, "YU12": FormatI420, "MJPG": FormatMJPEG} {
		if f.String() != want || uint32(f) != binary.LittleEndian.Uint32([]byte(want)) {
			t.Errorf("%v (0x%08x): want %q in little-endian order", f, uint32(f), want)
		}
	}
	if s := FourCC(0).String(); s != "0x00000000" {
		t.Errorf("FourCC(0).String() = %q", s)
	}
}
