package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Report is the outcome of Run, as written by --json.
type Report struct {
	Machine Machine   `json:"machine"`
	Config  RunConfig `json:"config"`
	Results []Result  `json:"results"`
	Targets []Target  `json:"targets"`
	Notes   []string  `json:"notes"`
	Failed  int       `json:"failed"` // runs that failed (their rows say why)
	Elapsed float64   `json:"elapsed_s"`
}

// Machine describes where the numbers come from.
type Machine struct {
	CPUModel    string `json:"cpu_model"`
	CPUs        int    `json:"cpus"`
	AllowedCPUs []int  `json:"allowed_cpus"`
	Hypervisor  bool   `json:"hypervisor"`
	MemoryBytes uint64 `json:"memory_bytes"`
	Kernel      string `json:"kernel"`
	OS          string `json:"os"`
	Arch        string `json:"arch"`
	GoVersion   string `json:"go_version"`
	Revision    string `json:"revision,omitempty"`
	GStreamer   string `json:"gstreamer"` // gst-launch-1.0's version, or why there is none
	Time        string `json:"time"`
}

// RunConfig is the configuration a report was made with.
type RunConfig struct {
	Command        string  `json:"command"`
	DurationS      float64 `json:"duration_s"`
	WarmupS        float64 `json:"warmup_s"`
	Rounds         int     `json:"rounds"`
	MinPacedFrames int     `json:"min_paced_frames"`
	SpinUS         float64 `json:"spin_us"`
	SplitCPUs      [2]int  `json:"split_cpus"` // producer CPU, consumer CPU
}

// Result is one row: a transport (and mode) in one scenario, over all rounds.
type Result struct {
	Transport string  `json:"transport"`
	Size      string  `json:"size"`
	Format    string  `json:"format"`
	Consumers int     `json:"consumers"`
	Rate      float64 `json:"rate"`
	Placement string  `json:"placement"`
	Mode      string  `json:"mode"`            // plain, copy, spin, park, slow, hold; "" for the baselines
	Checksum  bool    `json:"checksum"`        // the bus carried CRC-32C checksums
	Slots     int     `json:"slots,omitempty"` // the bus's slots (0: the default, 2)
	// Producer and Consumer name each side's language: "go", or "c" for the
	// C reference of framebus/testdata/c (the transport c is c on both
	// sides; gstreamer is gst-launch-1.0, c; memcpy has no consumer).
	Producer   string `json:"producer"`
	Consumer   string `json:"consumer"`
	FrameBytes uint64 `json:"frame_bytes"`

	// Latency is publish-to-wake, Read publish-to-read-complete, Publish
	// the producer's call (Commit, Publish, the futex wake loop, the
	// writes; memcpy: the copy). nil where not measured.
	Latency *Percentiles `json:"latency_us"`
	Read    *Percentiles `json:"read_us"`
	Publish *Percentiles `json:"publish_us"`
	// Begin is the producer's Begin call (framebus rows with a Go
	// producer): the back slot chosen (around held slots, amendment 10, holds)
	// and made odd. Publish is the Commit (plain) or the copy and Commit.
	Begin *Percentiles `json:"begin_us,omitempty"`
	// Commit is commit-to-wake: from the commit_ns the producer stamped in
	// the slot (after the data and checksum, just before the even lock
	// store) to the wake; framebus and c rows only. With checksums it leaves
	// out the producer's CRC, which latency_us includes.
	Commit *Percentiles `json:"commit_us,omitempty"`

	FPS         float64 `json:"fps"`          // frames/s each consumer received (median of rounds)
	GBps        float64 `json:"gbps"`         // fps x frame bytes, 1e9 bytes/s
	ProducerFPS float64 `json:"producer_fps"` // frames/s published
	Dropped     uint64  `json:"dropped"`      // frames consumers never saw, all rounds
	TornRetries uint64  `json:"torn_retries"` // reads retried because the producer overwrote the slot
	Overwritten uint64  `json:"overwritten"`  // zero-copy views no longer Valid after the copy out
	WaitingFrac float64 `json:"waiting_frac"` // share of frames the consumer was already waiting for (-1: unknown)
	Samples     int64   `json:"samples"`      // latency samples, all consumers and rounds
	CPUSeconds  float64 `json:"cpu_s"`        // CPU time of all the run's processes in the measured window (median of rounds)
	CPU         CPUUse  `json:"cpu"`

	// Analysis is what the slow consumer of the slow and hold modes found,
	// all rounds and consumers.
	Analysis *Analysis `json:"analysis,omitempty"`

	Rounds []Round `json:"rounds"`

	Skipped bool   `json:"skipped"`
	Reason  string `json:"reason,omitempty"`
	Note    string `json:"note,omitempty"`

	LatencyHDR string `json:"latency_hdr,omitempty"` // base64 HdrHistogram V2 of latency_us, in ns
	ReadHDR    string `json:"read_hdr,omitempty"`

	lat, read, commit *hdrhistogram.Histogram
}

// CPUUse is the CPU time of the processes of a row (medians of rounds).
type CPUUse struct {
	ProducerUSPerFrame float64 `json:"producer_us_per_frame"` // producer CPU per frame published
	ProducerPct        float64 `json:"producer_pct"`          // of one CPU, over the measured window
	ConsumerUSPerFrame float64 `json:"consumer_us_per_frame"` // mean over consumers, per frame received
	ConsumerPct        float64 `json:"consumer_pct"`
	ProcessS           float64 `json:"process_s"` // whole lives of every process (wait4 rusage), start-up included
}

// Analysis is what a slow consumer (modes slow and hold) did with the
// frames it took: each analysed for HoldForMS, read at the start and at the
// end of the analysis. Without holds it copies each frame to keep it, and
// checks whether the zero-copy view it did not use stayed intact; with
// holds it holds the frame (copying it only when the hold is refused) and
// checks the held view at the end: Valid, and the same bytes (CRC-32C) as
// at the start.
type Analysis struct {
	HoldForMS float64 `json:"hold_for_ms"`
	Taken     int64   `json:"taken"`   // measured frames taken for analysis
	Copies    int64   `json:"copies"`  // of which copied out of the slot to be kept
	Held      int64   `json:"held"`    // of which held (mode hold)
	Refused   int64   `json:"refused"` // holds refused (cap, overwritten, unsupported): copied instead
	// HeldIntact are held frames still Valid with the same bytes at the end
	// of the analysis; HeldOverwritten held frames no longer Valid (taken
	// back by a lease); HeldCorrupt held frames still Valid whose bytes
	// changed (a broken protocol: must be 0).
	HeldIntact      int64 `json:"held_intact"`
	HeldOverwritten int64 `json:"held_overwritten"`
	HeldCorrupt     int64 `json:"held_corrupt"`
	// ViewOverwritten are frames not held whose zero-copy view was no
	// longer intact at the end of the analysis: what the consumer would
	// have analysed had it not copied.
	ViewOverwritten int64 `json:"view_overwritten"`
	// CopyTorn are copies found overwritten before the copy ended (lost).
	CopyTorn       int64   `json:"copy_torn"`
	Faults         int64   `json:"faults"`           // frames lost to a truncated bus file
	CopiesPerFrame float64 `json:"copies_per_frame"` // Copies / Taken
}

// add adds b's counts to a.
func (a *Analysis) add(b *Analysis) {
	a.HoldForMS = b.HoldForMS
	a.Taken += b.Taken
	a.Copies += b.Copies
	a.Held += b.Held
	a.Refused += b.Refused
	a.HeldIntact += b.HeldIntact
	a.HeldOverwritten += b.HeldOverwritten
	a.HeldCorrupt += b.HeldCorrupt
	a.ViewOverwritten += b.ViewOverwritten
	a.CopyTorn += b.CopyTorn
	a.Faults += b.Faults
	if a.Taken > 0 {
		a.CopiesPerFrame = round3(float64(a.Copies) / float64(a.Taken))
	}
}

// Round is one run's headline numbers, to show the spread.
type Round struct {
	P50 float64 `json:"p50_us"`
	P99 float64 `json:"p99_us"`
	FPS float64 `json:"fps"`
}

// Target is one of the targets, judged on this run.
type Target struct {
	Name     string `json:"name"`
	Scenario string `json:"scenario"`
	Want     string `json:"want"`
	Got      string `json:"got"`
	Status   string `json:"status"` // met, missed, skipped
	Why      string `json:"why,omitempty"`
}

// WriteJSON writes the report, indented.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteJSONFile writes the report to a file.
func (r *Report) WriteJSONFile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := r.WriteJSON(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ReadJSON reads a report written by WriteJSON (histograms included, so a
// plot can be drawn from it again).
func ReadJSON(rd io.Reader) (*Report, error) {
	var r Report
	if err := json.NewDecoder(rd).Decode(&r); err != nil {
		return nil, err
	}
	for i := range r.Results {
		res := &r.Results[i]
		var err error
		if res.lat, err = decodeHist(res.LatencyHDR); err != nil {
			return nil, fmt.Errorf("row %d: %w", i, err)
		}
		if res.read, err = decodeHist(res.ReadHDR); err != nil {
			return nil, fmt.Errorf("row %d: %w", i, err)
		}
	}
	return &r, nil
}

// runResult is what one run of one variant measured.
type runResult struct {
	lat, read, pub, begin, commit *hdrhistogram.Histogram
	analysis                      *Analysis

	fps, producerFPS         float64 // fps: mean over consumers
	dropped, torn, overwrite uint64
	waiting, samples         int64 // waiting < 0: unknown
	prodUSPerFrame, prodPct  float64
	consUSPerFrame, consPct  float64
	windowCPU, processCPU    time.Duration
	note                     string
}

// aggregate makes a row of a variant's runs.
func aggregate(sc Scenario, v Variant, runs []*runResult) Result {
	fb, _ := sc.Size.FrameBytes()
	sides := v.Sides()
	r := Result{
		Transport: string(v.Transport), Size: sc.Size.Dims(), Format: sc.Size.FormatName(), Consumers: sc.Consumers,
		Rate: sc.Rate, Placement: string(sc.Placement), Mode: string(v.Mode), FrameBytes: fb,
		Checksum: sc.Checksum, Slots: sc.Slots,
		Producer: string(sides.Producer), Consumer: string(sides.Consumer),
		Rounds: []Round{}, WaitingFrac: -1,
	}
	if v.Transport == Memcpy {
		r.Consumer = ""
	}
	var pub, begin *hdrhistogram.Histogram
	var fps, pfps, pus, ppct, cus, cpct, wcpu []float64
	var waiting int64
	waitKnown := true
	for _, rr := range runs {
		r.lat = merge(r.lat, rr.lat)
		r.read = merge(r.read, rr.read)
		r.commit = merge(r.commit, rr.commit)
		pub = merge(pub, rr.pub)
		begin = merge(begin, rr.begin)
		if rr.analysis != nil {
			if r.Analysis == nil {
				r.Analysis = &Analysis{}
			}
			r.Analysis.add(rr.analysis)
		}
		fps = append(fps, rr.fps)
		pfps = append(pfps, rr.producerFPS)
		pus = append(pus, rr.prodUSPerFrame)
		ppct = append(ppct, rr.prodPct)
		cus = append(cus, rr.consUSPerFrame)
		cpct = append(cpct, rr.consPct)
		wcpu = append(wcpu, rr.windowCPU.Seconds())
		r.CPU.ProcessS += rr.processCPU.Seconds()
		r.Dropped += rr.dropped
		r.TornRetries += rr.torn
		r.Overwritten += rr.overwrite
		r.Samples += rr.samples
		if rr.waiting < 0 {
			waitKnown = false
		}
		waiting += rr.waiting
		round := Round{FPS: round3(rr.fps)}
		if p := percentiles(rr.lat); p != nil {
			round.P50, round.P99 = p.P50, p.P99
		}
		r.Rounds = append(r.Rounds, round)
		if rr.note != "" {
			r.Note = rr.note
		}
	}
	r.Latency, r.Read, r.Publish, r.Commit = percentiles(r.lat), percentiles(r.read), percentiles(pub), percentiles(r.commit)
	r.Begin = percentiles(begin)
	r.FPS = round3(median(fps))
	r.GBps = round3(r.FPS * float64(fb) / 1e9)
	r.ProducerFPS = round3(median(pfps))
	r.CPU.ProducerUSPerFrame, r.CPU.ProducerPct = round3(median(pus)), round3(median(ppct))
	r.CPU.ConsumerUSPerFrame, r.CPU.ConsumerPct = round3(median(cus)), round3(median(cpct))
	r.CPU.ProcessS = round3(r.CPU.ProcessS)
	r.CPUSeconds = round3(median(wcpu))
	if waitKnown && r.Samples > 0 {
		r.WaitingFrac = round3(float64(waiting) / float64(r.Samples))
	}
	r.LatencyHDR, _ = encodeHist(r.lat)
	r.ReadHDR, _ = encodeHist(r.read)
	return r
}

func round3(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return 0
	}
	return math.Round(x*1000) / 1000
}
