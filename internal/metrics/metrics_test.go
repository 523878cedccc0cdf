package metrics

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/framebus/framebus/framebus"
)

// The collector reports a live bus and its consumer with the values the
// segment holds, and its metrics pass Prometheus's naming lint.
func TestCollector(t *testing.T) {
	dir := t.TempDir()
	f, _ := framebus.Format{Width: 16, Height: 16, FPSNum: 25, FPSDen: 1}.Complete()
	p, err := framebus.Create("cam", framebus.ProducerOptions{Format: f, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := framebus.Open("cam", framebus.ConsumerOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	frame := make([]byte, f.FrameSize)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for range 3 {
		if _, err := p.Publish(frame, framebus.Meta{}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Next(ctx); err != nil {
			t.Fatal(err)
		}
	}
	p.Publish(frame, framebus.Meta{}) // one the consumer has not read: lag 1
	col := Collector{Dir: dir}
	if problems, err := testutil.CollectAndLint(col); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
	want := `
# HELP framebus_frames_published_total Frames published in the bus's current generation.
# TYPE framebus_frames_published_total counter
framebus_frames_published_total{bus="cam"} 4
# HELP framebus_consumers Consumer entries held by a live consumer.
# TYPE framebus_consumers gauge
framebus_consumers{bus="cam"} 1
# HELP framebus_producer_up 1 while the bus's producer is alive (holds its lock).
# TYPE framebus_producer_up gauge
framebus_producer_up{bus="cam"} 1
`
	if err := testutil.CollectAndCompare(col, strings.NewReader(want), "framebus_frames_published_total", "framebus_consumers", "framebus_producer_up"); err != nil {
		t.Error(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(col)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "framebus_consumer_lag_frames" {
			if v := mf.GetMetric()[0].GetGauge().GetValue(); v != 1 {
				t.Errorf("lag %v, want 1", v)
			}
			return
		}
	}
	t.Error("no framebus_consumer_lag_frames")
}

// BenchmarkScrape is the cost of one scrape of a directory with 8 buses of
// 2 consumers each: it is paid by the exporter, at scrape time only.
func BenchmarkScrape(b *testing.B) {
	dir := b.TempDir()
	f, _ := framebus.Format{Width: 64, Height: 48}.Complete()
	for i := range 8 {
		name := "cam" + string(rune('0'+i))
		p, err := framebus.Create(name, framebus.ProducerOptions{Format: f, Dir: dir})
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close()
		for range 2 {
			c, err := framebus.Open(name, framebus.ConsumerOptions{Dir: dir})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(Collector{Dir: dir})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/8/1e3, "us/bus")
}
