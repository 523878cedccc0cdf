// Package metrics exports the buses of a directory to Prometheus: a
// prometheus.Collector that reads every bus with framebus.List (pread of
// each segment's control block, never mapping or registering) when it is
// scraped, so that publishing and reading frames cost nothing more.
//
// Metrics, per bus (label bus):
//
//	framebus_frames_published_total        frames published in the current generation (a counter: a new generation starts it again, which Prometheus takes as a reset)
//	framebus_last_seq                      the newest frame's sequence number (continues across generations)
//	framebus_source_drops_total            frames the source made that the producer could not publish
//	framebus_producer_up                   1 while the producer holds its lock (alive)
//	framebus_heartbeat_age_seconds         since the producer's last heartbeat
//	framebus_consumers                     consumer entries held by a live consumer
//	framebus_consumers_reclaimed_total     entries taken back from dead consumers
//	framebus_version_mismatch_total        joiners that refused the segment's ABI version
//	framebus_generation                    the segment's generation
//	framebus_frame_bytes                   the slot capacity (the largest frame)
//	framebus_fps                           the rate the producer declares (0: unknown)
//	framebus_bus_info{format,state}        1, with the format and state as labels
//	framebus_bus_valid                     0 for a segment that cannot be read (corrupt, foreign, truncated)
//	framebus_producer_info{pid,pidns}      1, with the producer's pid and PID namespace as the segment says them
//
// and per consumer entry (labels bus, entry, pid; pid as the entry holds
// it, in the consumer's own PID namespace, never resolved to another):
//
//	framebus_consumer_info{pidns}                1, with the consumer's PID namespace (0: not recorded)
//	framebus_consumer_up                         1 while the consumer holds its entry's lock
//	framebus_consumer_frames_delivered_total
//	framebus_consumer_frames_dropped_total
//	framebus_consumer_lag_frames                 frames behind the bus's newest
//	framebus_consumer_torn_retries_total
//	framebus_consumer_heartbeat_age_seconds
//	framebus_consumer_holds                      slots the consumer holds now (amendment 10)
//	framebus_consumer_oldest_hold_seconds        age of the oldest frame it holds (0: none)
//	framebus_consumer_holds_granted_total
//	framebus_consumer_hold_refused_total         holds refused (cap reached, frame overwritten)
//	framebus_consumer_holds_taken_back_total     holds the producer's lease took back
package metrics

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/internal/report"
)

var (
	busLabels      = []string{"bus"}
	consumerLabels = []string{"bus", "entry", "pid"}

	descPublished  = prometheus.NewDesc("framebus_frames_published_total", "Frames published in the bus's current generation.", busLabels, nil)
	descLastSeq    = prometheus.NewDesc("framebus_last_seq", "Sequence number of the newest frame (continues across generations).", busLabels, nil)
	descSrcDrops   = prometheus.NewDesc("framebus_source_drops_total", "Frames the source produced that the producer could not publish.", busLabels, nil)
	descUp         = prometheus.NewDesc("framebus_producer_up", "1 while the bus's producer is alive (holds its lock).", busLabels, nil)
	descHeartbeat  = prometheus.NewDesc("framebus_heartbeat_age_seconds", "Seconds since the producer's last heartbeat.", busLabels, nil)
	descConsumers  = prometheus.NewDesc("framebus_consumers", "Consumer entries held by a live consumer.", busLabels, nil)
	descReclaimed  = prometheus.NewDesc("framebus_consumers_reclaimed_total", "Consumer entries taken back from dead consumers.", busLabels, nil)
	descMismatch   = prometheus.NewDesc("framebus_version_mismatch_total", "Joiners that refused the segment's ABI version.", busLabels, nil)
	descGeneration = prometheus.NewDesc("framebus_generation", "The segment's generation.", busLabels, nil)
	descFrameBytes = prometheus.NewDesc("framebus_frame_bytes", "Slot capacity: the largest frame, in bytes.", busLabels, nil)
	descFPS        = prometheus.NewDesc("framebus_fps", "Frame rate the producer declares (0: unknown).", busLabels, nil)
	descInfo       = prometheus.NewDesc("framebus_bus_info", "The bus's format and state, as labels.", []string{"bus", "format", "state"}, nil)
	descValid      = prometheus.NewDesc("framebus_bus_valid", "1 when the segment reads as a valid bus, 0 when it is corrupt, foreign or truncated.", busLabels, nil)
	descPInfo      = prometheus.NewDesc("framebus_producer_info", "The producer's pid and PID namespace as the segment records them (pidns 0: not recorded).", []string{"bus", "pid", "pidns"}, nil)
	descCInfo      = prometheus.NewDesc("framebus_consumer_info", "A consumer's PID namespace as its entry records it (0: not recorded).", []string{"bus", "entry", "pid", "pidns"}, nil)

	descCUp        = prometheus.NewDesc("framebus_consumer_up", "1 while the consumer holds its entry's lock.", consumerLabels, nil)
	descDelivered  = prometheus.NewDesc("framebus_consumer_frames_delivered_total", "Frames the consumer took.", consumerLabels, nil)
	descDropped    = prometheus.NewDesc("framebus_consumer_frames_dropped_total", "Frames the consumer never saw (it was slower than the bus).", consumerLabels, nil)
	descLag        = prometheus.NewDesc("framebus_consumer_lag_frames", "Frames the consumer is behind the bus's newest.", consumerLabels, nil)
	descTorn       = prometheus.NewDesc("framebus_consumer_torn_retries_total", "Reads that lost the race with the producer and were retried.", consumerLabels, nil)
	descCHeartbeat = prometheus.NewDesc("framebus_consumer_heartbeat_age_seconds", "Seconds since the consumer's last heartbeat.", consumerLabels, nil)
	descCHolds     = prometheus.NewDesc("framebus_consumer_holds", "Slots the consumer holds now (frames kept zero-copy).", consumerLabels, nil)
	descCHoldAge   = prometheus.NewDesc("framebus_consumer_oldest_hold_seconds", "Age of the oldest frame the consumer holds (0: none).", consumerLabels, nil)
	descCGranted   = prometheus.NewDesc("framebus_consumer_holds_granted_total", "Holds granted to the consumer.", consumerLabels, nil)
	descCRefused   = prometheus.NewDesc("framebus_consumer_hold_refused_total", "Holds refused to the consumer (the bus's cap reached, or the frame overwritten first).", consumerLabels, nil)
	descCTakenBack = prometheus.NewDesc("framebus_consumer_holds_taken_back_total", "Holds of the consumer that the producer's lease took back.", consumerLabels, nil)
	descHoldCap    = prometheus.NewDesc("framebus_hold_cap", "Slots consumers may hold at once (slot_count - 2; 0 when the producer offers no holds).", busLabels, nil)
	descHeld       = prometheus.NewDesc("framebus_held_slots", "Slots held by consumers now.", busLabels, nil)
	descHRefused   = prometheus.NewDesc("framebus_hold_refused_total", "Holds refused, all consumers.", busLabels, nil)
	descHTakenBack = prometheus.NewDesc("framebus_holds_taken_back_total", "Holds the producer took back (lease, or forged hold words).", busLabels, nil)

	descScrapeErr = prometheus.NewDesc("framebus_scrape_error", "1 when the bus directory could not be listed.", []string{"dir"}, nil)
)

// Collector reports every bus of one directory at each scrape.
type Collector struct {
	Dir string // "" for $FRAMEBUS_DIR or /dev/shm
}

// Describe sends the descriptions of every metric.
func (c Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPublished, descLastSeq, descSrcDrops, descUp, descHeartbeat, descConsumers, descReclaimed,
		descMismatch, descGeneration, descFrameBytes, descFPS, descInfo, descValid, descPInfo, descCInfo, descCUp, descDelivered, descDropped, descLag, descTorn,
		descCHeartbeat, descCHolds, descCHoldAge, descCGranted, descCRefused, descCTakenBack, descHoldCap, descHeld, descHRefused, descHTakenBack,
		descScrapeErr} {
		ch <- d
	}
}

// Collect reads the buses and sends their metrics.
func (c Collector) Collect(ch chan<- prometheus.Metric) {
	dir := framebus.Dir(c.Dir)
	buses, err := framebus.List(dir)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(descScrapeErr, prometheus.GaugeValue, 1, dir)
		return
	}
	ch <- prometheus.MustNewConstMetric(descScrapeErr, prometheus.GaugeValue, 0, dir)
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for _, b := range buses {
		s := b.Snapshot
		if s == nil || s.Invalid != nil {
			gauge(descValid, 0, b.Name)
			continue
		}
		gauge(descValid, 1, b.Name)
		h := &s.Header
		// Straight from the snapshot: nothing is resolved (report.NewStatus
		// would look foreign pids up in /proc at every scrape).
		counter(descPublished, h.FramesPublished, b.Name)
		gauge(descLastSeq, float64(h.LastSeq), b.Name)
		counter(descSrcDrops, h.SourceDrops, b.Name)
		gauge(descUp, boolValue(s.OwnerAlive), b.Name)
		gauge(descHeartbeat, seconds(s.NowNS-int64(h.HeartbeatNS)), b.Name)
		counter(descReclaimed, h.ConsumersReclaimed, b.Name)
		counter(descMismatch, h.VersionMismatchCount, b.Name)
		gauge(descGeneration, float64(h.Generation), b.Name)
		gauge(descFrameBytes, float64(h.SlotCapacity), b.Name)
		fps := 0.0
		if h.FPSNum != 0 && h.FPSDen != 0 {
			fps = float64(h.FPSNum) / float64(h.FPSDen)
		}
		gauge(descFPS, fps, b.Name)
		gauge(descInfo, 1, b.Name, report.FormatString(s.Format), report.StateName(h.State))
		gauge(descPInfo, 1, b.Name, strconv.FormatUint(uint64(h.ProducerPID), 10), strconv.FormatUint(h.ProducerPIDNS, 10))
		gauge(descHoldCap, float64(s.HoldCap), b.Name)
		gauge(descHeld, float64(s.Held), b.Name)
		counter(descHRefused, h.HoldsRefused, b.Name)
		counter(descHTakenBack, h.HoldsTakenBack, b.Name)
		live := 0
		for _, e := range s.Consumers {
			if e.Alive {
				live++
			}
			labels := []string{b.Name, strconv.Itoa(e.Index), strconv.FormatUint(uint64(e.PID), 10)}
			gauge(descCInfo, 1, append(labels, strconv.FormatUint(e.PIDNS, 10))...)
			gauge(descCUp, boolValue(e.Alive), labels...)
			counter(descDelivered, e.Delivered, labels...)
			counter(descDropped, e.Dropped, labels...)
			lag := uint64(0)
			if h.LastSeq > e.LastSeq {
				lag = h.LastSeq - e.LastSeq
			}
			gauge(descLag, float64(lag), labels...)
			counter(descTorn, e.TornRetries, labels...)
			gauge(descCHeartbeat, seconds(s.NowNS-int64(e.HeartbeatNS)), labels...)
			gauge(descCHolds, float64(e.Holds), labels...)
			gauge(descCHoldAge, seconds(e.OldestHoldNS), labels...)
			counter(descCGranted, e.HoldsGranted, labels...)
			counter(descCRefused, e.HoldsRefused, labels...)
			counter(descCTakenBack, e.HoldsTakenBack, labels...)
		}
		gauge(descConsumers, float64(live), b.Name)
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func seconds(ns int64) float64 { return float64(max(ns, 0)) / 1e9 }

// Registry is a registry with the buses of dir, the exporter process's own
// metrics and the Go runtime's.
func Registry(dir string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(Collector{Dir: dir}, collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector())
	return reg
}

// Handler serves the metrics of dir's buses in the Prometheus exposition
// formats (text, OpenMetrics, protobuf: whatever the scraper asks for).
func Handler(dir string) http.Handler {
	return promhttp.HandlerFor(Registry(dir), promhttp.HandlerOpts{EnableOpenMetrics: true})
}
