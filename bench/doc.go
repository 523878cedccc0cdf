// Package bench measures what it costs to move a live video frame from one
// process to another through framebus, against the limits of the machine and
// the transports a user would pick instead, all in one run (the command is
// "framebus bench"; docs/BENCHMARKS.md has the numbers of one machine).
//
// Every run is a set of child processes: the running binary re-executed with
// FRAMEBUS_BENCH_CHILD set, its role and parameters as JSON on stdin, its
// measurements as JSON (HDR histograms included) on stdout. The parent only
// plans, starts, waits (every wait bounded; a child that overstays is killed
// by its pid) and adds up. The transports:
//
//	framebus   a producer and N consumers; mode plain (the frame is rendered
//	           straight into the back slot, Begin/Commit), copy (rendered into
//	           private memory, then Publish) or spin (a consumer that spins
//	           before the next frame is due, once framebus has it), park (a
//	           Go consumer without the held wait), slow and hold (a slow
//	           analysis of each frame taken, copying it or holding it,
//	           Frame.Hold; on 4 slots by default)
//	futex      the wake limit: a raw shared-memory FUTEX_WAKE to N sleeping
//	           processes, with the waiters handshake framebus uses
//	memcpy     the copy limit: copy() of the same frame into a pre-faulted
//	           shared mapping, alternating between two slot-sized regions
//	uds, pipe  what a user would write instead: the same frames written whole
//	           to a Unix stream socket (4 MiB buffers) or a pipe (1 MiB)
//	gstreamer  shmsink -> shmsrc through gst-launch-1.0, when it is installed
//
// # What the numbers are
//
// Every timestamp is CLOCK_MONOTONIC (framebus.Now), comparable across
// processes. latency_us is publish-to-wake: from just before the producer
// hands the frame over (before Commit, Publish, the futex store and wake, or
// the first byte written) to just after the consumer returns from its wait
// (Next, FUTEX_WAIT) or has received the whole frame (sockets, pipes).
// read_us runs to the end of the consumer's read: framebus consumers copy
// every byte out of the slot, then check Frame.Valid. For plain mode the frame
// is complete in shared memory before the clock starts, so latency_us is the
// hand-off alone; for copy mode it includes Publish's copy.
//
// Rate 0 means as fast as the consumers take the frames, none lost: framebus
// and the futex baseline go in lockstep (the next frame is committed once
// every consumer has finished the previous one; the ack is outside the
// measured interval), sockets and pipes are held back by their kernel
// buffers, GStreamer by shmsink. A fixed rate paces the producer with
// clock_nanosleep on absolute deadlines.
//
// Placements pin the producer side and the consumer side to different CPUs
// (split), both to one CPU (shared), or leave them to the scheduler (free).
// The CPU mask is set on the starting thread just before the fork, so a
// child and every thread it makes inherit it. Only numbers from the same run
// and placement can be compared: on a virtual machine cross-CPU wakes go
// through the hypervisor.
//
// Each scenario's transports alternate in rounds, so that all see the same
// machine; histograms are merged over the rounds, rates and CPU times are the
// medians of the rounds.
package bench
