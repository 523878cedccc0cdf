// Package report turns what framebus.Inspect and framebus.List read into
// what the framebus command prints: the status of a bus (text or JSON), the
// list of buses, and the field-by-field dump of a segment. It reads nothing
// of the bus itself, so what it prints is tested without processes (pids of
// other PID namespaces are looked up in /proc by internal/pidns).
package report

import (
	"fmt"
	"io"
	"reflect"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/internal/cli"
	"github.com/framebus/framebus/internal/pidns"
)

// StateName names a segment state (header.state).
func StateName(s uint32) string {
	switch s {
	case framebus.StateInitializing:
		return "INITIALIZING"
	case framebus.StateReady:
		return "READY"
	case framebus.StateBroken:
		return "BROKEN"
	case framebus.StateRetired:
		return "RETIRED"
	}
	return fmt.Sprintf("UNKNOWN(%d)", s)
}

// EntryStateName names a consumer entry state.
func EntryStateName(s uint32) string {
	switch s {
	case framebus.EntryFree:
		return "free"
	case framebus.EntryClaiming:
		return "claiming"
	case framebus.EntryActive:
		return "active"
	}
	return fmt.Sprintf("unknown(%d)", s)
}

var formatNames = map[framebus.FourCC]string{
	framebus.FormatRGBA: "RGBA", framebus.FormatRGB24: "RGB24", framebus.FormatBGR24: "BGR24",
	framebus.FormatGrey: "GREY", framebus.FormatYUYV: "YUYV", framebus.FormatNV12: "NV12",
	framebus.FormatI420: "I420", framebus.FormatMJPEG: "MJPEG",
}

// FormatName names a pixel format the way the capture command's --format
// does, with the fourcc when it differs: "RGBA (AB24)", "NV12".
func FormatName(f framebus.FourCC) string {
	n, ok := formatNames[f]
	switch {
	case !ok:
		return f.String()
	case n == f.String():
		return n
	}
	return n + " (" + f.String() + ")"
}

// FormatString describes a frame format: "640x480 RGBA (AB24) @ 30 fps".
func FormatString(f framebus.Format) string {
	s := fmt.Sprintf("%dx%d %s", f.Width, f.Height, FormatName(f.PixelFormat))
	if f.FPSNum != 0 && f.FPSDen != 0 {
		s += fmt.Sprintf(" @ %g fps", float64(f.FPSNum)/float64(f.FPSDen))
	}
	return s
}

// Age formats how long ago a CLOCK_MONOTONIC time was: "23ms ago".
func Age(now int64, t uint64) string {
	if t == 0 {
		return "never"
	}
	d := now - int64(t)
	if d < 0 {
		return "in the future"
	}
	return round(time.Duration(d)).String() + " ago"
}

func round(d time.Duration) time.Duration {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond)
	case d < 10*time.Second:
		return d.Round(time.Millisecond)
	}
	return d.Round(100 * time.Millisecond)
}

// Status is what the stat command shows: the header under the protocol's
// field names, a few derived values, and one row per consumer entry.
type Status struct {
	framebus.Header
	Name            string           `json:"name"`
	Path            string           `json:"path"`
	StateName       string           `json:"state_name"`
	PixelFormatName string           `json:"pixel_format_name"`
	ProducerAlive   bool             `json:"producer_alive"`
	HeartbeatAgeNS  int64            `json:"heartbeat_age_ns"`
	PublishFPS      float64          `json:"publish_fps"`
	RateWindowNS    int64            `json:"publish_fps_window_ns"` // what the rate was measured over
	RateInstant     bool             `json:"publish_fps_instant"`   // over the last interval (else since created)
	Producer        pidns.PID        `json:"producer"`              // producer_pid and what it means here
	HoldCap         int              `json:"hold_cap"`              // slots consumers may hold at once (0: none, or a producer without holds)
	Held            int              `json:"held"`                  // distinct slots held now
	Consumers       []ConsumerStatus `json:"consumers"`
}

// ConsumerStatus is one consumer entry and what follows from it.
type ConsumerStatus struct {
	framebus.ConsumerInfo
	StateName      string    `json:"state_name"`
	Lag            uint64    `json:"lag"` // frames behind the bus: last_seq - the entry's last_seq
	HeartbeatAgeNS int64     `json:"heartbeat_age_ns"`
	Process        pidns.PID `json:"process"` // pid and what it means here
}

// NewStatus derives the status from a snapshot. With prev, an earlier
// snapshot of the same generation, the publish rate is measured between the
// two; without, it is the average since the generation was created (until
// the last commit when the producer is gone).
func NewStatus(s, prev *framebus.Snapshot) *Status {
	h := s.Header
	st := &Status{Header: h, Name: s.Name, Path: s.Path, StateName: StateName(h.State),
		PixelFormatName: FormatName(framebus.FourCC(h.PixelFormat)), ProducerAlive: s.OwnerAlive,
		HeartbeatAgeNS: s.NowNS - int64(h.HeartbeatNS), Consumers: []ConsumerStatus{},
		Producer: pidns.Resolve(h.ProducerPID, h.ProducerPIDNS), HoldCap: s.HoldCap, Held: s.Held}
	if prev != nil && prev.Header.Generation == h.Generation && s.NowNS > prev.NowNS && h.FramesPublished >= prev.Header.FramesPublished {
		st.RateWindowNS = s.NowNS - prev.NowNS
		st.PublishFPS = float64(h.FramesPublished-prev.Header.FramesPublished) / time.Duration(st.RateWindowNS).Seconds()
		st.RateInstant = true
	} else {
		end := s.NowNS
		if !s.OwnerAlive {
			end = int64(h.LastCommitNS)
		}
		if d := end - int64(h.CreatedNS); d > 0 && h.FramesPublished > 0 {
			st.RateWindowNS = d
			st.PublishFPS = float64(h.FramesPublished) / time.Duration(d).Seconds()
		}
	}
	for _, c := range s.Consumers {
		cs := ConsumerStatus{ConsumerInfo: c, StateName: EntryStateName(c.State), HeartbeatAgeNS: s.NowNS - int64(c.HeartbeatNS),
			Process: pidns.Resolve(c.PID, c.PIDNS)}
		if h.LastSeq > c.LastSeq {
			cs.Lag = h.LastSeq - c.LastSeq
		}
		st.Consumers = append(st.Consumers, cs)
	}
	return st
}

// WriteStatus prints the status for people.
func WriteStatus(w io.Writer, st *Status, nowNS int64) {
	h := &st.Header
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, a...)) }
	fmt.Fprintf(tw, "bus %s\t%s\n", st.Name, st.Path)
	row("generation", "%d", h.Generation)
	row("state", "%s", st.StateName)
	f := framebus.Format{Width: h.Width, Height: h.Height, PixelFormat: framebus.FourCC(h.PixelFormat), FPSNum: h.FPSNum, FPSDen: h.FPSDen}
	sums := "off"
	if h.Flags&framebus.FlagChecksum != 0 {
		sums = "on"
	}
	row("format", "%s, %s per frame, %d slots, checksums %s", FormatString(f), cli.Bytes(h.SlotCapacity), h.SlotCount, sums)
	if st.ProducerAlive {
		row("producer", "%s, alive, heartbeat %s", st.Producer, Age(nowNS, h.HeartbeatNS))
	} else {
		row("producer", "%s, gone (no process holds the bus lock; 'framebus gc' removes a stale bus), last heartbeat %s", st.Producer, Age(nowNS, h.HeartbeatNS))
	}
	switch {
	case st.RateWindowNS == 0:
		row("publish rate", "-")
	case st.RateInstant:
		row("publish rate", "%.1f fps (last %s)", st.PublishFPS, round(time.Duration(st.RateWindowNS)))
	default:
		row("publish rate", "%.1f fps (average over %s)", st.PublishFPS, round(time.Duration(st.RateWindowNS)))
	}
	row("published", "%d frames, last seq %d, last commit %s", h.FramesPublished, h.LastSeq, Age(nowNS, h.LastCommitNS))
	row("source drops", "%d", h.SourceDrops)
	row("reclaimed", "%d consumers", h.ConsumersReclaimed)
	row("holds", "%s", holdsLine(st))
	row("consumers", "%d of %d entries in use", len(st.Consumers), h.ConsumerCapacity)
	tw.Flush()
	if len(st.Consumers) == 0 {
		return
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "  ENTRY\tPID\tSTATE\tDELIVERED\tDROPPED\tLAG\tTORN\tHOLDS\tHEARTBEAT\t\n")
	for _, c := range st.Consumers {
		state := c.StateName
		if !c.Alive {
			state += " (dead)"
		}
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\t\n", c.Index, c.Process.Short(), state, c.Delivered, c.Dropped, c.Lag, c.TornRetries,
			consumerHolds(&c.ConsumerInfo), Age(nowNS, c.HeartbeatNS))
	}
	tw.Flush()
}

// holdsLine says what the bus allows in holds (PROTOCOL.md amendment 10)
// and what its consumers did with them.
func holdsLine(st *Status) string {
	h := &st.Header
	switch {
	case h.Flags&framebus.FlagHolds == 0:
		return "not offered (the producer predates holds: consumers copy frames they keep)"
	case st.HoldCap <= 0:
		return fmt.Sprintf("none allowed (%d slots: a bus allows slots - 2 held at once; capture --slots 3 or more)", h.SlotCount)
	}
	lease := "no lease"
	if h.HoldMaxNS != 0 {
		lease = "lease " + time.Duration(h.HoldMaxNS).String()
	}
	return fmt.Sprintf("%d of %d slots held, %s; granted %d, refused %d, taken back %d", st.Held, st.HoldCap, lease,
		h.HoldsGranted, h.HoldsRefused, h.HoldsTakenBack)
}

// consumerHolds is a consumer's HOLDS cell: how many slots it holds and the
// age of the oldest frame among them, or "-".
func consumerHolds(c *framebus.ConsumerInfo) string {
	if c.Holds == 0 {
		return "-"
	}
	return fmt.Sprintf("%d (%s)", c.Holds, round(time.Duration(c.OldestHoldNS)))
}

// ListEntry is one bus of the ls command in JSON.
type ListEntry struct {
	framebus.BusInfo
	StateName   string    `json:"state_name"`
	ProducerPID uint32    `json:"producer_pid"`
	Producer    pidns.PID `json:"producer"`
	Error       string    `json:"error,omitempty"`
}

// NewList derives the ls rows.
func NewList(buses []framebus.BusInfo) []ListEntry {
	out := make([]ListEntry, 0, len(buses))
	for _, b := range buses {
		e := ListEntry{BusInfo: b, StateName: StateName(b.State)}
		if b.Snapshot != nil {
			e.ProducerPID = b.Snapshot.Header.ProducerPID
			e.Producer = pidns.Resolve(e.ProducerPID, b.Snapshot.Header.ProducerPIDNS)
		}
		if b.Err != nil {
			e.Error = Cause(b.Err).Error()
		}
		out = append(out, e)
	}
	return out
}

// WriteList prints the buses for people.
func WriteList(w io.Writer, list []ListEntry) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "NAME\tGEN\tSTATE\tFORMAT\tSIZE\tPRODUCER\n")
	for _, e := range list {
		producer := "gone (stale)"
		switch {
		case e.OwnerAlive:
			producer = e.Producer.String()
		case e.OwnerUnknown:
			producer = "no permission to check"
		}
		if e.Error != "" && e.Snapshot == nil {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t%s\terror: %s\n", e.Name, producer, e.Error)
			continue
		}
		format := e.Format
		if e.Snapshot != nil && e.Snapshot.Invalid == nil {
			format = FormatString(e.Snapshot.Format)
		}
		if e.Error != "" {
			format = "error: " + e.Error
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", e.Name, e.Generation, e.StateName, format, cli.Bytes(uint64(e.Size)), producer)
	}
	tw.Flush()
}

// Cause strips the *framebus.Error wrapper (its "framebus OP NAME:" prefix)
// for messages that already say which bus and which command.
func Cause(err error) error {
	if fe, ok := err.(*framebus.Error); ok && fe.Err != nil {
		return fe.Err
	}
	return err
}

// WriteDump prints every field of a segment as it is in the file: the
// header field by field with its offset, then the slot descriptors and the
// consumer entries in use. A corrupt segment gets its raw header and the
// layout error.
func WriteDump(w io.Writer, s *framebus.Snapshot) {
	fmt.Fprintf(w, "segment %s: %d bytes, mode %04o, owner uid %d\n", s.Path, s.FileSize, s.Mode.Perm(), s.UID)
	if s.OwnerAlive {
		fmt.Fprintf(w, "producer lock: held (the producer is alive)\n")
	} else {
		fmt.Fprintf(w, "producer lock: not held (no live producer)\n")
	}
	fmt.Fprintf(w, "\nheader (PROTOCOL.md section 3)\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  OFF\tFIELD\tVALUE\tMEANING\n")
	hv := reflect.ValueOf(s.Header)
	ht := hv.Type()
	for i := 0; i < ht.NumField(); i++ {
		sf := ht.Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if sf.Name == "_" || name == "" || name == "-" {
			continue
		}
		v := hv.Field(i)
		val := fmt.Sprint(v.Interface())
		if v.Kind() == reflect.Array {
			parts := make([]string, v.Len())
			for j := range parts {
				parts[j] = fmt.Sprint(v.Index(j).Interface())
			}
			val = strings.Join(parts, " ")
		}
		if name == "magic" {
			val = fmt.Sprintf("0x%08x", v.Uint())
		}
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\n", sf.Offset, name, val, meaning(s, name))
	}
	tw.Flush()
	if s.Invalid != nil {
		fmt.Fprintf(w, "\nINVALID: %v\n(slots and consumer entries are not read from a corrupt layout)\n", s.Invalid)
		return
	}
	fmt.Fprintf(w, "\nslots (section 3.4)\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "  INDEX\tLOCK\tFRAME_SEQ\tCAPTURE_NS\tCOMMIT_NS\tBYTES\tCHECKSUM\tFLAGS\tUSER_META_LEN\t\n")
	for _, sl := range s.Slots {
		flags := fmt.Sprint(sl.FrameFlags)
		if sl.FrameFlags&framebus.FrameEndOfStream != 0 {
			flags += " (end of stream)"
		}
		lock := fmt.Sprint(sl.Lock)
		if sl.Lock&1 != 0 {
			lock += " (odd: being written)"
		}
		fmt.Fprintf(tw, "  %d\t%s\t%d\t%d\t%d\t%d\t0x%08x\t%s\t%d\t\n", sl.Index, lock, sl.FrameSeq, sl.CaptureNS, sl.CommitNS, sl.Bytes, sl.Checksum, flags, sl.UserMetaLen)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nconsumer entries in use (section 3.5): %d of %d\n", len(s.Consumers), s.Header.ConsumerCapacity)
	if len(s.Consumers) == 0 {
		return
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "  INDEX\tSTATE\tPID\tPIDNS\tSEM\tWAITERS\tTOKEN\tLAST_SEQ\tDELIVERED\tDROPPED\tHEARTBEAT_NS\tTORN_RETRIES\tLOCK\t\n")
	for _, c := range s.Consumers {
		lock := "held"
		if !c.Alive {
			lock = "free (dead)"
		}
		fmt.Fprintf(tw, "  %d\t%d %s\t%d\t%d\t%d\t%d\t0x%016x\t%d\t%d\t%d\t%d\t%d\t%s\t\n", c.Index, c.State, EntryStateName(c.State), c.PID, c.PIDNS, c.Sem, c.Waiters,
			c.Token, c.LastSeq, c.Delivered, c.Dropped, c.HeartbeatNS, c.TornRetries, lock)
	}
	tw.Flush()
}

// meaning decodes a header field for the dump.
func meaning(s *framebus.Snapshot, field string) string {
	h := &s.Header
	switch field {
	case "magic":
		if h.Magic == framebus.Magic {
			return `"FBUS", ok`
		}
		return fmt.Sprintf("bad: want 0x%08x", framebus.Magic)
	case "abi_version":
		if h.ABIVersion == framebus.ABIVersion {
			return "ok"
		}
		return fmt.Sprintf("this reader speaks %d", framebus.ABIVersion)
	case "header_size":
		if h.HeaderSize != framebus.HeaderSize {
			return fmt.Sprintf("bad: want %d", framebus.HeaderSize)
		}
	case "state":
		return StateName(h.State)
	case "flags":
		var names []string
		if h.Flags&framebus.FlagChecksum != 0 {
			names = append(names, "checksums")
		} else {
			names = append(names, "no checksums")
		}
		if h.Flags&framebus.FlagSharedWake != 0 {
			names = append(names, "shared wake word")
		}
		if unknown := h.Flags &^ (framebus.FlagChecksum | framebus.FlagSharedWake); unknown != 0 {
			names = append(names, fmt.Sprintf("unknown bits 0x%x", unknown))
		}
		return strings.Join(names, ", ")
	case "wake_waiters":
		if h.Flags&framebus.FlagSharedWake != 0 {
			return "consumers sleeping on wake_seq"
		}
	case "total_size":
		if uint64(s.FileSize) != h.TotalSize {
			return fmt.Sprintf("bad: the file has %d bytes", s.FileSize)
		}
		return cli.Bytes(h.TotalSize)
	case "heartbeat_ns":
		return Age(s.NowNS, h.HeartbeatNS)
	case "created_ns":
		return Age(s.NowNS, h.CreatedNS)
	case "last_commit_ns":
		return Age(s.NowNS, h.LastCommitNS)
	case "producer_pid":
		if s.OwnerAlive {
			return "alive (holds the lock)"
		}
		return "not running"
	case "slot_stride", "slot_capacity", "payload_size":
		return cli.Bytes(uint64(reflect.ValueOf(*h).FieldByNameFunc(func(n string) bool {
			return strings.EqualFold(n, strings.ReplaceAll(field, "_", ""))
		}).Uint()))
	case "pixel_format":
		return FormatName(framebus.FourCC(h.PixelFormat))
	case "fps_num":
		if h.FPSNum != 0 && h.FPSDen != 0 {
			return fmt.Sprintf("%g fps", float64(h.FPSNum)/float64(h.FPSDen))
		}
		return "unknown rate"
	}
	return ""
}
