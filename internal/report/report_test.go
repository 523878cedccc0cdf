package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/framebus/framebus/framebus"
)

func snapshot(now int64, published, lastSeq uint64, alive bool) *framebus.Snapshot {
	s := &framebus.Snapshot{Name: "cam", Path: "/dev/shm/framebus.cam", NowNS: now, OwnerAlive: alive}
	s.Header = framebus.Header{Magic: framebus.Magic, ABIVersion: framebus.ABIVersion, HeaderSize: framebus.HeaderSize,
		State: framebus.StateReady, Generation: 1, Width: 640, Height: 480, PixelFormat: uint32(framebus.FormatRGBA),
		FPSNum: 30, FPSDen: 1, SlotCount: 2, ConsumerCapacity: 32, CreatedNS: uint64(now - 10e9),
		HeartbeatNS: uint64(now - 50e6), FramesPublished: published, LastSeq: lastSeq, LastCommitNS: uint64(now - 5e9), ProducerPID: 42}
	s.Consumers = []framebus.ConsumerInfo{{Index: 3, State: framebus.EntryActive, PID: 7, LastSeq: lastSeq - 2, Delivered: 10, HeartbeatNS: uint64(now - 1e6), Alive: true}}
	return s
}

func TestStatusRates(t *testing.T) {
	now := int64(1000e9)
	// Alive: frames over the time since created.
	st := NewStatus(snapshot(now, 300, 300, true), nil)
	if st.PublishFPS != 30 || st.RateInstant {
		t.Errorf("average rate %v (instant %v), want 30", st.PublishFPS, st.RateInstant)
	}
	// Gone: until the last commit, not now.
	if st := NewStatus(snapshot(now, 300, 300, false), nil); st.PublishFPS != 60 {
		t.Errorf("rate of a gone producer %v, want 300 frames / 5 s", st.PublishFPS)
	}
	// Two snapshots a second apart.
	prev := snapshot(now-1e9, 270, 270, true)
	if st := NewStatus(snapshot(now, 300, 300, true), prev); st.PublishFPS != 30 || !st.RateInstant {
		t.Errorf("instant rate %v", st.PublishFPS)
	}
	if st.Consumers[0].Lag != 2 || st.HeartbeatAgeNS != 50e6 || st.Consumers[0].HeartbeatAgeNS != 1e6 {
		t.Errorf("lag %d, heartbeat ages %d %d", st.Consumers[0].Lag, st.HeartbeatAgeNS, st.Consumers[0].HeartbeatAgeNS)
	}
}

func TestStatusJSONKeys(t *testing.T) {
	b, err := json.Marshal(NewStatus(snapshot(1000e9, 1, 1, true), nil))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	for _, k := range []string{"magic", "abi_version", "generation", "producer_pid", "last_seq", "frames_published", "source_drops", "consumers_reclaimed", "plane_stride", "consumers", "state_name", "publish_fps"} {
		if _, ok := m[k]; !ok {
			t.Errorf("no %q in %s", k, b)
		}
	}
	c := m["consumers"].([]any)[0].(map[string]any)
	for _, k := range []string{"index", "pid", "delivered", "dropped", "lag", "torn_retries", "heartbeat_ns", "alive"} {
		if _, ok := c[k]; !ok {
			t.Errorf("consumer has no %q", k)
		}
	}
	// No consumers is an empty array, not null.
	s := snapshot(1000e9, 1, 1, true)
	s.Consumers = nil
	b, _ = json.Marshal(NewStatus(s, nil))
	if !strings.Contains(string(b), `"consumers":[]`) {
		t.Errorf("%s", b)
	}
}

func TestWriteStatus(t *testing.T) {
	now := int64(1000e9)
	var b bytes.Buffer
	WriteStatus(&b, NewStatus(snapshot(now, 300, 300, true), nil), now)
	for _, want := range []string{"bus cam", "READY", "640x480 RGBA (AB24) @ 30 fps", "pid 42, alive, heartbeat 50ms ago", "30.0 fps", "last seq 300", "ENTRY"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status does not say %q:\n%s", want, b.String())
		}
	}
}

func TestWriteDumpCorrupt(t *testing.T) {
	s := snapshot(1000e9, 1, 1, false)
	s.Header.Magic = 0x12345678
	s.Invalid = errors.New("not a framebus segment (bad magic)")
	var b bytes.Buffer
	WriteDump(&b, s)
	for _, want := range []string{"0    magic", "0x12345678", "bad: want 0x53554246", "128  producer_pid", "296  consumers_reclaimed", "INVALID: not a framebus segment"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("dump does not say %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "slots (section") {
		t.Errorf("slots of a corrupt segment were printed")
	}
}

func TestNames(t *testing.T) {
	if FormatName(framebus.FormatI420) != "I420 (YU12)" || FormatName(framebus.FormatNV12) != "NV12" || FormatName(framebus.MakeFourCC('Z', 'Z', 'Z', 'Z')) != "ZZZZ" {
		t.Errorf("format names")
	}
	if StateName(9) != "UNKNOWN(9)" || Age(10, 0) != "never" || Age(int64(2*time.Second), uint64(time.Second)) != "1s ago" {
		t.Errorf("names")
	}
}
