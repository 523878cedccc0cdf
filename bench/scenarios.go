package bench

// The scenarios of framebus bench: the camera's, --quick's, the full run's and
// the matrix of the list flags, and the rows (variants) of each.

import (
	"slices"
)

func fb(m Mode) Variant { return Variant{Transport: Framebus, Mode: m} }

// fbl is a framebus row with a C side; c->c is the transport c.
func fbl(m Mode, p Pair) Variant {
	if p == CC {
		return Variant{Transport: CFramebus, Mode: m}
	}
	return Variant{Transport: Framebus, Mode: m, Lang: p}
}

// cFutex is the futex baseline in C, the floor of the c->c rows.
var cFutex = Variant{Transport: Futex, Lang: CC}

// cameraVariants are the rows of a camera scenario: the four language
// pairs of the plain mode, the two futex floors, and with spin the spinning
// consumer in Go and in C; with checksums the futex rows are left out (they
// carry no checksum).
func cameraVariants(spin, checksum bool) []Variant {
	var vs []Variant
	for _, p := range Pairs {
		vs = append(vs, fbl(Plain, p))
	}
	if !checksum {
		vs = append(vs, Variant{Transport: Futex}, cFutex)
	}
	if spin {
		vs = append(vs, fb(Spin), fbl(Spin, CC))
	}
	if !checksum {
		// The Go consumer without the held wait.
		vs = append(vs, fb(Park), fbl(Park, CGo))
	}
	return vs
}

// CameraScenarios is the headline: what a user runs, a camera's 1080p
// frames at 30 and 60 fps in RGBA and NV12, nothing pinned (free) and split
// over two CPUs, checksums off and on, each with framebus in Go and C on
// either side against the futex in Go and C; the spinning consumer at
// 60 fps. Checksums on are measured at 60 fps.
func CameraScenarios() []Scenario {
	var s []Scenario
	for _, sz := range []Size{HD1080RGBA, HD1080NV12} {
		for _, r := range []float64{60, 30} {
			for _, p := range []Placement{Free, Split} {
				s = append(s, Scenario{Size: sz, Consumers: 1, Rate: r, Placement: p, Variants: cameraVariants(r == 60, false)})
			}
		}
	}
	for _, sz := range []Size{HD1080RGBA, HD1080NV12} {
		for _, p := range []Placement{Free, Split} {
			s = append(s, Scenario{Size: sz, Consumers: 1, Rate: 60, Placement: p, Checksum: true, Variants: cameraVariants(false, true)})
		}
	}
	return s
}

// QuickCameraScenario is the camera scenario of --quick: 1080p RGBA at
// 60 fps, free placement, checksums off, every row of CameraScenarios.
func QuickCameraScenario() Scenario {
	return Scenario{Size: HD1080RGBA, Consumers: 1, Rate: 60, Placement: Free, Variants: cameraVariants(true, false)}
}

// HoldScenario is the scenario of holds (PROTOCOL.md amendment 10): 1080p
// RGBA at 60 fps, free placement, a bus of DefaultHoldSlots slots, with the
// plain row (a consumer that reads every frame as it comes, no holders), the
// slow row (an analysis of Config.HoldFor on each frame taken, copying it)
// and the hold row (the same analysis holding it). Not in --quick: a
// 150 ms analysis takes under 7 frames a second, and the smoke test's short
// runs would measure one or two.
func HoldScenario() Scenario {
	return Scenario{Size: HD1080RGBA, Consumers: 1, Rate: 60, Placement: Free, Slots: DefaultHoldSlots,
		Variants: []Variant{fb(Plain), fb(Slow), fb(Hold)}}
}

// QuickPacedFrames is --quick's MinPacedFrames: 3 s per run at 60 fps.
const QuickPacedFrames = 180

func baselines(ts ...Transport) []Variant {
	v := make([]Variant, len(ts))
	for i, t := range ts {
		v[i] = Variant{Transport: t}
	}
	return v
}

// QuickScenarios is --quick: the camera scenario (QuickCameraScenario),
// then 1080p RGBA and 640x480 GREY, one consumer, as fast as possible,
// split placement, framebus plain mode against the futex, memcpy, Unix
// socket and pipe baselines.
func QuickScenarios() []Scenario {
	vs := append([]Variant{fb(Plain)}, baselines(Futex, Memcpy, UDS, Pipe)...)
	return []Scenario{
		QuickCameraScenario(),
		{Size: HD1080RGBA, Consumers: 1, Placement: Split, Variants: vs},
		{Size: VGAGrey, Consumers: 1, Placement: Split, Variants: vs},
	}
}

// FullScenarios is the default run: the camera scenarios first, then every
// dimension of the issue, each varied from one reference point (1080p RGBA,
// one consumer, as fast as possible, split) rather than the whole product,
// which Matrix gives.
func FullScenarios() []Scenario {
	all := append([]Variant{fb(Plain), fb(Copy)}, baselines(Futex, Memcpy, UDS, Pipe, GStreamer)...)
	noGst := append([]Variant{fb(Plain), fb(Copy)}, baselines(Futex, Memcpy, UDS, Pipe)...)
	paced := append([]Variant{fb(Plain), fb(Copy)}, baselines(Futex, UDS, Pipe)...)
	s := CameraScenarios()
	// Throughput and hand-off over the frame sizes.
	for _, sz := range []Size{VGAGrey, HD720RGBA, HD1080RGBA, UHD4KI420} {
		s = append(s, Scenario{Size: sz, Consumers: 1, Placement: Split, Variants: all})
	}
	// Fan-out: what four consumers cost the producer.
	s = append(s, Scenario{Size: HD1080RGBA, Consumers: 4, Placement: Split, Variants: noGst})
	// The other placements.
	for _, p := range []Placement{Shared, Free} {
		s = append(s, Scenario{Size: HD1080RGBA, Consumers: 1, Placement: p, Variants: noGst})
	}
	// Other rates and the shared CPU: sleeping consumers woken once a frame,
	// against the copying Publish, the socket and the pipe (30 fps split is
	// a camera scenario above).
	for _, r := range []float64{30, 120} {
		for _, p := range []Placement{Split, Shared} {
			if r == 30 && p == Split {
				continue
			}
			s = append(s, Scenario{Size: HD1080RGBA, Consumers: 1, Rate: r, Placement: p, Variants: paced})
		}
	}
	s = append(s, Scenario{Size: HD1080RGBA, Consumers: 4, Rate: 30, Placement: Split, Variants: []Variant{fb(Plain), {Transport: Futex}}})
	// Holds: a slow analysis at 60 fps on 4 slots, with and without holds.
	s = append(s, HoldScenario())
	// (The spinning consumer against the plain one at 60 fps is in the camera
	// scenarios, free and split.)
	return s
}

// Matrix is the whole product of the lists: one scenario per size,
// consumer count, rate, placement and checksum setting, each with every
// transport, mode and language pair asked for (memcpy and gstreamer only
// where they mean something: memcpy at rate 0, gstreamer at rate 0 with one
// consumer). Pairs apply to framebus (c->c is the transport c) and to the
// futex baseline (go->go and c->c); nil means go->go. Checksums nil means
// off; with both settings, the baselines (which carry no checksum) are in
// the scenarios without.
func Matrix(sizes []Size, consumers []int, rates []float64, placements []Placement, transports []Transport, modes []Mode, pairs []Pair, checksums []bool) []Scenario {
	if len(pairs) == 0 {
		pairs = []Pair{GoGo}
	}
	if len(checksums) == 0 {
		checksums = []bool{false}
	}
	var out []Scenario
	for _, sz := range sizes {
		for _, c := range consumers {
			for _, r := range rates {
				for _, p := range placements {
					for _, crc := range checksums {
						baselines := !crc || !slices.Contains(checksums, false)
						vs := matrixVariants(transports, modes, pairs, r, c, baselines)
						if len(vs) > 0 {
							sc := Scenario{Size: sz, Consumers: c, Rate: r, Placement: p, Checksum: crc, Variants: vs}
							if slices.Contains(vs, fb(Hold)) {
								sc.Slots = DefaultHoldSlots
							}
							out = append(out, sc)
						}
					}
				}
			}
		}
	}
	return out
}

func matrixVariants(transports []Transport, modes []Mode, pairs []Pair, rate float64, consumers int, baselines bool) []Variant {
	var vs []Variant
	add := func(v Variant) {
		if !slices.Contains(vs, v) {
			vs = append(vs, v)
		}
	}
	for _, t := range transports {
		switch {
		case t == Framebus:
			for _, m := range modes {
				if m.analyses() {
					// The slow consumer is Go's, on a Go producer (the C one
					// does not know holds). Hold comes with the rows it is
					// judged against: plain (the producer without holders)
					// and slow (the same analysis without holds).
					if m == Hold {
						add(fb(Plain))
						add(fb(Slow))
					}
					add(fb(m))
					continue
				}
				for _, pr := range pairs {
					if pr.Producer == LangC && m == Copy {
						continue // the C producer renders into the slot only
					}
					if pr.Consumer == LangC && m == Park {
						continue // park is the Go consumer's
					}
					if pr == GoGo {
						add(fb(m))
					} else {
						add(fbl(m, pr))
					}
				}
			}
		case t == CFramebus:
			for _, m := range modes {
				if m != Copy && m != Park && !m.analyses() { // c->c has none of them
					add(fbl(m, CC))
				}
			}
		case !baselines:
		case t == Futex:
			n := 0
			for _, pr := range pairs {
				switch pr {
				case GoGo:
					add(Variant{Transport: Futex})
					n++
				case CC:
					add(cFutex)
					n++
				}
			}
			if n == 0 {
				add(Variant{Transport: Futex})
			}
		case t == Memcpy && rate != 0, t == GStreamer && (rate != 0 || consumers != 1):
		default:
			add(Variant{Transport: t})
		}
	}
	return vs
}
