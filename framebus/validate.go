package framebus

import (
	"encoding/binary"
	"fmt"
	"math/bits"
)

func layoutErr(field string, v uint64, format string, args ...any) error {
	return &LayoutError{Field: field, Value: v, Reason: fmt.Sprintf(format, args...)}
}

// checkIdentity checks the stable prefix's magic and version. It is split out
// so that a refused version can be counted before the rest is looked at.
func checkIdentity(b []byte, fileSize int64) error {
	if fileSize < HeaderSize || len(b) < HeaderSize {
		if fileSize >= 8 && len(b) >= 8 && binary.LittleEndian.Uint32(b) != Magic {
			return fmt.Errorf("%w: magic = 0x%08x, want 0x%08x", ErrBadMagic, binary.LittleEndian.Uint32(b), uint32(Magic))
		}
		return layoutErr("file size", uint64(max(fileSize, 0)), "shorter than the %d-byte header (truncated or empty file)", HeaderSize)
	}
	if m := binary.LittleEndian.Uint32(b[offMagic:]); m != Magic {
		return fmt.Errorf("%w: magic = 0x%08x, want 0x%08x", ErrBadMagic, m, uint32(Magic))
	}
	if v := binary.LittleEndian.Uint16(b[offABIVersion:]); v != ABIVersion {
		return &VersionError{Got: v, Want: ABIVersion}
	}
	return nil
}

// validateHeader checks every layout field of a header snapshot against the
// file size, so that every offset derived from it stays inside the file.
// It never panics, whatever the bytes.
func validateHeader(h *header, fileSize int64) error {
	if h.HeaderSize != HeaderSize {
		return layoutErr("header_size", uint64(h.HeaderSize), "want %d", HeaderSize)
	}
	if fileSize < 0 || h.TotalSize != uint64(fileSize) {
		return layoutErr("total_size", h.TotalSize, "file size is %d", fileSize)
	}
	if h.State > StateRetired {
		return layoutErr("state", uint64(h.State), "want 0-3")
	}
	if h.SlotCount < MinSlots || h.SlotCount > MaxSlots {
		return layoutErr("slot_count", uint64(h.SlotCount), "want %d-%d", MinSlots, MaxSlots)
	}
	if h.ConsumerCapacity < 1 || h.ConsumerCapacity > MaxConsumers {
		return layoutErr("consumer_capacity", uint64(h.ConsumerCapacity), "want 1-%d", MaxConsumers)
	}
	if h.SlotDescSize != SlotDescSize {
		return layoutErr("slot_desc_size", uint64(h.SlotDescSize), "want %d", SlotDescSize)
	}
	if h.ConsumerEntrySize != ConsumerEntrySize {
		return layoutErr("consumer_entry_size", uint64(h.ConsumerEntrySize), "want %d", ConsumerEntrySize)
	}
	if h.HeartbeatIntervalMS < 1 || h.HeartbeatIntervalMS > 60000 {
		return layoutErr("heartbeat_interval_ms", uint64(h.HeartbeatIntervalMS), "want 1-60000")
	}
	if err := validateTables(h); err != nil {
		return err
	}
	if err := validateFormat(h); err != nil {
		return err
	}
	if h.Active >= h.SlotCount {
		return layoutErr("active", uint64(h.Active), "want < slot_count (%d)", h.SlotCount)
	}
	return nil
}

// validateTables checks where the tables and the payload are: inside the
// file, in order, without overflow.
func validateTables(h *header) error {
	if h.SlotTableOffset != HeaderSize {
		return layoutErr("slot_table_offset", h.SlotTableOffset, "want %d", HeaderSize)
	}
	slotEnd := h.SlotTableOffset + uint64(h.SlotCount)*SlotDescSize
	if h.ConsumerTableOffset < slotEnd || h.ConsumerTableOffset%8 != 0 || h.ConsumerTableOffset > h.TotalSize {
		return layoutErr("consumer_table_offset", h.ConsumerTableOffset, "want a multiple of 8 between %d and total_size", slotEnd)
	}
	tableEnd := h.ConsumerTableOffset + uint64(h.ConsumerCapacity)*ConsumerEntrySize // no overflow: both bounded above
	if h.PayloadOffset%PayloadAlign != 0 || h.PayloadOffset < tableEnd || h.PayloadOffset > h.TotalSize {
		return layoutErr("payload_offset", h.PayloadOffset, "want a multiple of %d between the consumer table end (%d) and total_size", PayloadAlign, tableEnd)
	}
	if h.SlotStride == 0 || h.SlotStride%PayloadAlign != 0 {
		return layoutErr("slot_stride", h.SlotStride, "want a positive multiple of %d", PayloadAlign)
	}
	if h.SlotCapacity == 0 || h.SlotCapacity > h.SlotStride {
		return layoutErr("slot_capacity", h.SlotCapacity, "want 1..slot_stride (%d)", h.SlotStride)
	}
	hi, lo := bits.Mul64(uint64(h.SlotCount), h.SlotStride)
	if hi != 0 || h.PayloadSize != lo {
		return layoutErr("payload_size", h.PayloadSize, "want slot_count * slot_stride")
	}
	end, carry := bits.Add64(h.PayloadOffset, h.PayloadSize, 0)
	if carry != 0 || end > h.TotalSize {
		return layoutErr("payload_size", h.PayloadSize, "payload ends past total_size (%d)", h.TotalSize)
	}
	return nil
}

// validateFormat checks the frame format: sizes, rate, and planes that fit
// in a slot.
func validateFormat(h *header) error {
	if h.Width < 1 || h.Width > MaxDimension {
		return layoutErr("width", uint64(h.Width), "want 1-%d", MaxDimension)
	}
	if h.Height < 1 || h.Height > MaxDimension {
		return layoutErr("height", uint64(h.Height), "want 1-%d", MaxDimension)
	}
	if h.FPSNum != 0 && h.FPSDen == 0 {
		return layoutErr("fps_den", 0, "zero with fps_num %d", h.FPSNum)
	}
	if h.PlaneCount < 1 || h.PlaneCount > MaxPlanes {
		return layoutErr("plane_count", uint64(h.PlaneCount), "want 1-%d", MaxPlanes)
	}
	for i := uint32(0); i < h.PlaneCount; i++ {
		if uint64(h.PlaneOffset[i]) >= h.SlotCapacity {
			return layoutErr(fmt.Sprintf("plane_offset[%d]", i), uint64(h.PlaneOffset[i]), "outside the slot capacity %d", h.SlotCapacity)
		}
	}
	// For the raw formats this reader knows, every plane must fit in the
	// slot, so that a consumer can slice rows out of a frame without checks
	// of its own.
	if specs, ok := planeLayout(FourCC(h.PixelFormat)); ok && len(specs) > 0 {
		if int(h.PlaneCount) != len(specs) {
			return layoutErr("plane_count", uint64(h.PlaneCount), "%v has %d planes", FourCC(h.PixelFormat), len(specs))
		}
		for i, sp := range specs {
			row := uint64(h.Width) * uint64(sp.bppNum) / uint64(sp.bppDen)
			if uint64(h.PlaneStride[i]) < row {
				return layoutErr(fmt.Sprintf("plane_stride[%d]", i), uint64(h.PlaneStride[i]), "shorter than a row of %d bytes", row)
			}
			end := uint64(h.PlaneOffset[i]) + uint64(h.PlaneStride[i])*uint64(h.Height/sp.rowDiv)
			if end > h.SlotCapacity {
				return layoutErr(fmt.Sprintf("plane_stride[%d]", i), uint64(h.PlaneStride[i]), "plane %d ends at %d, past the slot capacity %d", i, end, h.SlotCapacity)
			}
		}
	}
	return nil
}

// validateSegment checks the bytes of a header against the file size:
// identity first, then layout. b holds at least the first HeaderSize bytes of
// the file when the file is that long.
func validateSegment(b []byte, fileSize int64) (header, error) {
	if err := checkIdentity(b, fileSize); err != nil {
		return header{}, err
	}
	h := decodeHeader(b)
	return h, validateHeader(&h, fileSize)
}

func (h *header) format() Format {
	f := Format{
		Width: h.Width, Height: h.Height, PixelFormat: FourCC(h.PixelFormat),
		PlaneCount: h.PlaneCount, PlaneStride: h.PlaneStride, PlaneOffset: h.PlaneOffset,
		FrameSize: h.SlotCapacity, FPSNum: h.FPSNum, FPSDen: h.FPSDen,
	}
	return f
}
