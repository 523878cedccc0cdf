/*
 * consumer.c - a framebus consumer: a thin command over libframebus (libframebus/, the C
 * library that holds the protocol of docs/PROTOCOL.md and framebus.h, written from them
 * alone: an independent cross-check of the Go implementation, the C leg of
 * "framebus bench", and the reference of the predictive spin for other languages).
 *
 *   gcc -O2 -std=gnu11 -Wall -Wextra -Werror -pthread -I libframebus/include \
 *       -I framebus/include -o consumer libframebus/src/[a-z]*.c framebus/testdata/c/consumer.c
 *   consumer [options] <segment-path> <lock-path> <count> <timeout_ms>
 *
 * segment-path  the segment file, e.g. /dev/shm/framebus.cam0
 * lock-path     the producer's lock file (framebus.cam0.lock); "-" skips the owner check
 * count         stop after this many data frames (the end-of-stream frame stops it too)
 * timeout_ms    give up when no new frame arrives for this long (idle time, reset by each
 *               delivered frame)
 *
 * Options:
 *   --wake sem|shared|auto  what to sleep on: the entry's semaphore of section 5 (sem, the
 *               default), the header's shared wake word of amendment 7 (shared; refused if
 *               the producer does not set flag bit 1), or the word when the flag is set and
 *               the semaphore otherwise (auto, what framebus's Go consumer does)
 *   --fault-outside  tests only: once the bus is mapped, read a truncated scratch mapping
 *               (a fault outside the bus must still kill us with SIGBUS)
 *   --wait-bus  a segment that is not there yet is waited for, up to timeout_ms (else
 *               a missing segment is "producer gone", exit 5)
 *   --spin US   the predictive spin (framebus.h): learn the period from commit times,
 *               sleep until just before the next frame is due, then spin on the wake word
 *               (or the active slot) for at most US microseconds; a miss falls back to the
 *               futex sleep. 0 (the default): never spin
 *   --hold MS   amendment 10: read every frame zero-copy and take a hold on it (the grant
 *               G1-G5 of framebus.h), keep it MS milliseconds while checking the data (a
 *               CRC-32C of the bytes, computed at the start of the hold, again every 10 ms and
 *               at its end, and the slot's lock), then release it. A refused hold (the cap, a
 *               slot overwritten before the grant finished, or a bus without flag bit 2) falls
 *               back to copying the frame out under the sequence lock. Holds are released on
 *               every exit, SIGINT and SIGTERM included.
 * Bench mode (framebus bench; the control file is described in benchctl.h):
 *   --bench FILE   time every frame (the producer's hand-off time is in its metadata) and
 *               write the measurements to FILE at the end; frames are read as zero-copy
 *               views, validated (and checksummed) like framebus's Next, then copied out
 *               and re-validated, and not printed
 *   --ctl FILE --index I --consumers N   lockstep: say our entry, acknowledge every frame
 *
 * stdout, line buffered:
 *   frame <seq> <bytes> <crc_ok 1|0> <first 8 data bytes, 16 hex digits> <user_meta_len>
 *       one line per delivered data frame; crc_ok is 1 when the header does not set the
 *       checksum flag; frames shorter than 8 bytes are padded with 00.
 *   summary delivered=<n> dropped=<n> torn=<n> crc_bad=<n> eos=<0|1>
 *       printed on every exit after joining. delivered counts data frames (the end-of-stream
 *       frame is accounted in the table entry per section 5 step 4, but not printed or
 *       counted here); dropped = sequence gaps; torn = torn reads retried.
 *       then " refused=<n> resyncs=<n>": reads refused for words no honest producer writes
 *       (a frame newer than the header's last_seq, active out of range, impossible sizes:
 *       amendment 9, forged words refused; counted, never an error of the stream) and re-synchronisations of a
 *       last_seq moved ahead by a forged word;
 *       then " holds=<n> hold_refused=<n> overwritten_while_held=<n>" (--hold: holds granted,
 *       refused, and granted holds whose data or lock changed while held: always 0 with an
 *       honest producer), " truncations=<n> generations=<n>" (the segment found truncated
 *       under our mapping, by a memory fault or its file size, and generations joined after
 *       the first), " retired_ignored=<n>" (RETIRED seen on the very file behind the name while
 *       its producer is alive: a forged word, ignored) and " wake_repairs=<n>" (amendment 11, wake words heal:
 *       wake_waiters counted again after a missed wake); with --spin,
 *       " spin_hits=<n> spin_misses=<n>".
 * Diagnostics go to stderr.
 *
 * A segment file truncated under our mappings does not kill us (the library's SIGBUS
 * guard, libframebus/src/fbguard.h): the fault maps zero pages over the mapping, the frame
 * being read is discarded, and we join the next generation the producer publishes under
 * the name, as for a replaced file.
 *
 * Exit codes: 0 done (count frames or end of stream), 1 system error, 2 usage,
 *             3 the segment's header violates the contract, 4 idle timeout,
 *             5 producer gone, stalled, broken or retired without end of stream, table full.
 *             SIGINT/SIGTERM: holds released, entry left, summary printed, then the signal's
 *             default action.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <framebus/libframebus.h>

#include "benchctl.h"

enum {
	EXIT_SYSTEM = 1,
	EXIT_USAGE = 2,
	EXIT_INVALID = 3,
	EXIT_TIMEOUT = 4,
	EXIT_GONE = 5,
};

static fb_consumer *C;
static uint8_t *frame_buf; /* the copy of each frame (read_into), and its first bytes */
static size_t frame_buf_len;
static int ever_joined;    /* print the summary on every exit after the first join */
static int wait_bus;       /* --wait-bus: a missing segment is waited for (the timeout) */
static uint32_t spin_us;   /* --spin */
static uint64_t hold_ns;   /* --hold, ns; 0: no holds */
static int wake_mode = FB_WAKE_SEM;
static uint64_t overwritten_held;      /* --hold: granted holds whose data or lock changed */
static volatile sig_atomic_t stop_sig; /* SIGINT or SIGTERM received */
static int fault_outside_test;         /* --fault-outside */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void print_summary(const struct fb_consumer_stats *s)
{
	printf("summary delivered=%" PRIu64 " dropped=%" PRIu64 " torn=%" PRIu64 " crc_bad=%" PRIu64 " eos=%d",
	       s->delivered, s->dropped, s->torn_retries, s->crc_bad, s->eos);
	printf(" refused=%" PRIu64 " resyncs=%" PRIu64, s->refused, s->resyncs);
	printf(" holds=%" PRIu64 " hold_refused=%" PRIu64 " overwritten_while_held=%" PRIu64, s->holds_granted,
	       s->holds_refused, overwritten_held);
	printf(" truncations=%" PRIu64 " generations=%" PRIu64 " retired_ignored=%" PRIu64 " wake_repairs=%" PRIu64,
	       s->truncations, s->generations, s->retired_ignored, s->wake_repairs);
	if (spin_us > 0)
		printf(" spin_hits=%" PRIu64 " spin_misses=%" PRIu64, s->spin_hits, s->spin_misses);
	printf("\n");
	fflush(stdout);
}

/* Leaves the bus (holds released, entry left) and prints the summary. */
static void finish(void)
{
	struct fb_consumer_stats st;
	if (C == NULL)
		return;
	fb_consumer_stats(C, &st);
	fb_consumer_close(C); /* clears hold_mask before the CAS 2 -> 0 */
	C = NULL;
	if (ever_joined)
		print_summary(&st);
}

static void die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void die(int code, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "consumer: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	finish();
	exit(code);
}

/* The exit code of a library error. */
static int exit_code(int err)
{
	switch (err) {
	case FB_ERR_BAD_MAGIC:
	case FB_ERR_VERSION:
	case FB_ERR_CORRUPT:
	case FB_ERR_UNSAFE_PATH:
	case FB_ERR_BAD_OPTIONS: return EXIT_INVALID;
	case FB_ERR_TIMEOUT: return EXIT_TIMEOUT;
	case FB_ERR_NOT_FOUND:
	case FB_ERR_PRODUCER_GONE:
	case FB_ERR_STALLED:
	case FB_ERR_TABLE_FULL: return EXIT_GONE;
	default: return EXIT_SYSTEM;
	}
}

/* The library's diagnostics, on stderr as before. */
static void log_line(void *arg, int level, const char *msg)
{
	(void)arg;
	(void)level;
	fprintf(stderr, "consumer: %s\n", msg);
}

static void on_stop(int sig)
{
	stop_sig = sig;
}

/* SIGINT or SIGTERM: holds released and the entry left, the summary, then the signal. */
static void finish_on_signal(void) __attribute__((noreturn));
static void finish_on_signal(void)
{
	int sig = stop_sig;
	fprintf(stderr, "consumer: signal %d: leaving\n", sig);
	finish();
	signal(sig, SIG_DFL);
	raise(sig);
	_exit(128 + sig);
}

/* ---- holds (--hold) ------------------------------------------------------------------ */

/* Keeps a granted hold hold_ns long, checking every 10 ms that neither the bytes (their
 * CRC-32C at the start of the hold) nor the hold (the slot's lock) changed, then releases
 * it. The first bytes go to first for the frame's line. */
static void hold_keep(fb_frame *f, uint8_t first[8])
{
	const uint8_t *v = f->data;
	size_t n = f->bytes;
	memcpy(first, v, n < 8 ? n : 8);
	uint32_t c0 = fb_crc32c(v, n);
	uint64_t end = now_ns() + hold_ns;
	int changed = 0;
	for (;;) {
		uint64_t now = now_ns();
		if (now >= end || stop_sig)
			break;
		uint64_t d = end - now < 10000000u ? end - now : 10000000u;
		struct timespec ts = {0, (long)d};
		nanosleep(&ts, NULL);
		if (fb_crc32c(v, n) != c0 || !fb_hold_valid(C, &f->hold)) {
			changed = 1;
			break;
		}
	}
	if (!changed)
		changed = fb_crc32c(v, n) != c0 || !fb_hold_valid(C, &f->hold);
	if (changed) {
		struct fb_consumer_stats st;
		fb_consumer_stats(C, &st);
		overwritten_held++;
		fprintf(stderr, "consumer: frame %" PRIu64 " changed while held (taken back %" PRIu64 ")\n", f->seq,
			st.holds_taken_back);
	}
	fb_hold_release(C, &f->hold);
	f->held = 0;
}

/* The line of a delivered data frame (the test mode). */
static void print_frame(const fb_frame *f, const uint8_t *data)
{
	uint8_t first[8] = {0};
	memcpy(first, data, f->bytes < 8 ? f->bytes : 8);
	printf("frame %" PRIu64 " %zu %d ", f->seq, f->bytes, f->checksum_ok);
	for (int i = 0; i < 8; i++)
		printf("%02x", first[i]);
	printf(" %" PRIu32 "\n", f->user_meta_len);
}

/* ---- bench mode ----------------------------------------------------------------------- */

static struct {
	const char *out;
	uint8_t *ctl;
	int index, consumers;
	FILE *samples; /* written as we go, to a buffer: no system call per frame */
	char *buf;
	size_t buf_len;
	int64_t cpu0;
	int measured;
	uint64_t torn, overwritten;
} BM;

static void bench_open(void)
{
	int fd = open(BM.out, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		die(EXIT_SYSTEM, "open %s: %s", BM.out, strerror(errno));
	close(fd);
	BM.samples = open_memstream(&BM.buf, &BM.buf_len);
	if (BM.samples == NULL)
		die(EXIT_SYSTEM, "open_memstream: %s", strerror(errno));
	if (BM.ctl == NULL)
		return;
	if (BM.index < 0 || BM.index >= BENCHCTL_MAX_WAITERS)
		die(EXIT_USAGE, "--index %d: want 0-%d", BM.index, BENCHCTL_MAX_WAITERS - 1);
}

static uint8_t *map_ctl(const char *path)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		die(EXIT_SYSTEM, "open %s: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) != 0 || st.st_size != BENCHCTL_SIZE)
		die(EXIT_SYSTEM, "control file %s: not %d bytes", path, BENCHCTL_SIZE);
	void *m = mmap(NULL, BENCHCTL_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
	close(fd);
	if (m == MAP_FAILED)
		die(EXIT_SYSTEM, "mmap %s: %s", path, strerror(errno));
	return m;
}

/* One delivered frame in bench mode: the copy out of the view and its re-validation (the
 * read), the lockstep ack, and the sample of a measured frame: tcall when the consumer
 * started waiting, t0 the producer's clock before the hand-off (from the metadata), t1 the
 * wake (the frame read and validated), t2 the end of the copy. */
static void bench_frame(const fb_frame *f, int64_t tcall, int64_t t1)
{
	if (f->user_meta_len != BENCH_META_LEN)
		die(EXIT_INVALID, "frame %" PRIu64 ": %" PRIu32 " bytes of metadata, want %d", f->seq,
		    f->user_meta_len, BENCH_META_LEN);
	uint32_t phase = f->user_meta[0];
	int64_t t0;
	memcpy(&t0, f->user_meta + 1, 8);
	if (f->bytes > frame_buf_len)
		die(EXIT_INVALID, "frame %" PRIu64 ": %zu bytes, more than the slot's %zu", f->seq, f->bytes,
		    frame_buf_len);
	memcpy(frame_buf, f->data, f->bytes);
	int valid = fb_frame_valid(C, f); /* a load fence, then the slot's lock again */
	int64_t t2 = (int64_t)now_ns();
	if (BM.ctl != NULL)
		benchctl_ack(BM.ctl, (uint32_t)(1 + f->dropped), BM.consumers);
	if (phase != BENCH_PHASE_MEASURE)
		return;
	fprintf(BM.samples, "s %" PRId64 " %" PRId64 " %" PRId64 " %" PRId64 " %" PRIu64 " %" PRIu64 " %zu\n", tcall,
		t0, t1, t2, f->commit_ns, f->dropped, f->bytes);
	if (!BM.measured) {
		BM.measured = 1;
		BM.cpu0 = bench_cpu_ns(); /* as the Go sampler: at the first measured frame */
	}
	BM.torn += f->torn;
	if (!valid)
		BM.overwritten++;
}

static void bench_write(const struct fb_consumer_stats *s)
{
	int64_t cpu1 = bench_cpu_ns();
	if (fclose(BM.samples) != 0)
		die(EXIT_SYSTEM, "samples: %s", strerror(errno));
	FILE *out = fopen(BM.out, "w");
	if (out == NULL)
		die(EXIT_SYSTEM, "open %s: %s", BM.out, strerror(errno));
	fprintf(out, "framebus-bench-c 1\nrole consumer\ncpu0 %" PRId64 "\ncpu1 %" PRId64 "\ntorn %" PRIu64
		     "\noverwritten %" PRIu64 "\n",
		BM.cpu0, cpu1, BM.torn, BM.overwritten);
	if (spin_us > 0)
		fprintf(out, "spin %" PRIu64 " %" PRIu64 "\n", s->spin_hits, s->spin_misses);
	if (BM.buf_len > 0)
		fwrite(BM.buf, 1, BM.buf_len, out);
	if (fclose(out) != 0)
		die(EXIT_SYSTEM, "write %s: %s", BM.out, strerror(errno));
}

/* ---- main ----------------------------------------------------------------------------- */

static uint64_t parse_u64(const char *s, const char *what)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-') {
		fprintf(stderr, "consumer: bad %s %s\n", what, s);
		exit(EXIT_USAGE);
	}
	return v;
}

static void usage(void) __attribute__((noreturn));
static void usage(void)
{
	fprintf(stderr, "usage: consumer [--wake sem|shared|auto] [--spin US] [--hold MS] [--wait-bus]\n"
			"                [--bench FILE [--ctl FILE --index I --consumers N]]\n"
			"                <segment-path> <lock-path|-> <count> <timeout_ms>\n");
	exit(EXIT_USAGE);
}

/* --fault-outside (tests only): a memory fault on a mapping that is not the bus's must
 * still kill the process with SIGBUS, guard or not: a truncated scratch file, read. */
static void fault_outside(void)
{
	struct rlimit no_core = {0, 0}; /* the death is expected: no core file */
	setrlimit(RLIMIT_CORE, &no_core);
	char tmpl[] = "/tmp/fbguard-XXXXXX";
	int fd = mkstemp(tmpl);
	if (fd < 0 || ftruncate(fd, 4096) != 0)
		die(EXIT_SYSTEM, "scratch file: %s", strerror(errno));
	unlink(tmpl);
	volatile uint8_t *m = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED || ftruncate(fd, 0) != 0)
		die(EXIT_SYSTEM, "scratch mapping: %s", strerror(errno));
	fprintf(stderr, "consumer: reading a truncated mapping outside the bus\n");
	uint8_t v = m[0];
	fprintf(stderr, "consumer: survived a fault outside the bus (read %u): the guard is wrong\n", v);
	exit(EXIT_SYSTEM);
}

int main(int argc, char **argv)
{
	int i;
	for (i = 1; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--wait-bus") == 0) {
			wait_bus = 1;
			continue;
		}
		if (strcmp(a, "--fault-outside") == 0) {
			fault_outside_test = 1;
			continue;
		}
		if (i + 1 >= argc)
			usage();
		const char *v = argv[++i];
		if (strcmp(a, "--wake") == 0) {
			if (strcmp(v, "sem") == 0)
				wake_mode = FB_WAKE_SEM;
			else if (strcmp(v, "shared") == 0)
				wake_mode = FB_WAKE_SHARED;
			else if (strcmp(v, "auto") == 0)
				wake_mode = FB_WAKE_AUTO;
			else
				usage();
		} else if (strcmp(a, "--spin") == 0) {
			uint64_t us = parse_u64(v, "--spin");
			if (us > 1000000)
				die(EXIT_USAGE, "--spin %" PRIu64 ": at most 1000000 us", us);
			spin_us = (uint32_t)us;
		} else if (strcmp(a, "--hold") == 0) {
			uint64_t ms = parse_u64(v, "--hold");
			if (ms > 600000)
				die(EXIT_USAGE, "--hold %" PRIu64 ": at most 600000 ms", ms);
			hold_ns = ms * 1000000u;
		} else if (strcmp(a, "--bench") == 0)
			BM.out = v;
		else if (strcmp(a, "--ctl") == 0)
			BM.ctl = map_ctl(v);
		else if (strcmp(a, "--index") == 0)
			BM.index = (int)parse_u64(v, "--index");
		else if (strcmp(a, "--consumers") == 0)
			BM.consumers = (int)parse_u64(v, "--consumers");
		else
			usage();
	}
	if (argc - i != 4)
		usage();
	if (BM.ctl != NULL && (BM.out == NULL || BM.consumers < 1 || BM.consumers > BENCHCTL_MAX_WAITERS))
		die(EXIT_USAGE, "--ctl needs --bench and --consumers 1-%d", BENCHCTL_MAX_WAITERS);
	const char *path = argv[i];
	const char *lock_path = strcmp(argv[i + 1], "-") == 0 ? NULL : argv[i + 1];
	uint64_t count = parse_u64(argv[i + 2], "count");
	uint64_t timeout_ms = parse_u64(argv[i + 3], "timeout_ms");
	if (timeout_ms > INT32_MAX)
		die(EXIT_USAGE, "timeout_ms %" PRIu64 ": at most %d", timeout_ms, INT32_MAX);
	int bench = BM.out != NULL;

	setvbuf(stdout, NULL, _IOLBF, 0);
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_stop; /* no SA_RESTART: a futex wait or a hold's sleep ends early */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (bench)
		bench_open();

	/* The library installs the SIGBUS guard at the open: a truncated segment reads zeros,
	 * never SIGBUS, and is followed to the producer's next generation. */
	fb_consumer_opts o;
	memset(&o, 0, sizeof o);
	o.path = path;
	o.lock_path = lock_path;
	o.no_owner_check = lock_path == NULL;
	o.wait_ms = wait_bus ? (uint32_t)timeout_ms : 0;
	o.wake = wake_mode;
	o.spin_us = spin_us;
	o.hold_frames = hold_ns > 0;
	o.log = log_line;
	int r = fb_consumer_open(NULL, &o, &C);
	if (r != FB_OK)
		exit(exit_code(r)); /* the log said why */
	ever_joined = 1;
	if (fault_outside_test)
		fault_outside(); /* with the bus's regions registered */
	fb_format fmt;
	fb_consumer_format(C, &fmt);
	frame_buf_len = fmt.max_frame_bytes ? (size_t)fmt.max_frame_bytes : 1;
	frame_buf = malloc(frame_buf_len);
	if (frame_buf == NULL)
		die(EXIT_SYSTEM, "malloc %zu bytes: out of memory", frame_buf_len);
	if (BM.ctl != NULL) {
		struct fb_consumer_stats st;
		fb_consumer_stats(C, &st);
		__atomic_store_n(benchctl_waiter(BM.ctl, BM.index, BENCHCTL_W_ENTRY), (uint32_t)st.entry + 1,
				 __ATOMIC_SEQ_CST);
	}

	/* Zero-copy views (bench: copied out and re-validated; --hold: held, or copied when the
	 * hold is refused), else a copy under the sequence lock into frame_buf. */
	int64_t tcall = (int64_t)now_ns();
	uint64_t delivered = 0;
	while (delivered < count) {
		fb_frame f;
		if (stop_sig)
			finish_on_signal();
		if (bench || hold_ns > 0)
			r = fb_consumer_next(C, (int)timeout_ms, &f);
		else
			r = fb_consumer_read_into(C, frame_buf, frame_buf_len, (int)timeout_ms, &f);
		if (r == FB_ERR_INTERRUPTED)
			continue; /* the signal is looked at above */
		if (r == FB_ERR_END_OF_STREAM)
			break;
		if (r == FB_ERR_SHORT_BUFFER) { /* a new generation with larger frames */
			free(frame_buf);
			frame_buf_len = f.bytes;
			frame_buf = malloc(frame_buf_len ? frame_buf_len : 1);
			if (frame_buf == NULL)
				die(EXIT_SYSTEM, "malloc %zu bytes: out of memory", frame_buf_len);
			continue;
		}
		if (r != FB_OK && r != FB_ERR_CHECKSUM) /* a bad checksum is a frame, crc_ok 0 */
			die(exit_code(r), "%s", fb_consumer_errmsg(C));
		int64_t t1 = (int64_t)now_ns();
		delivered++;
		if (f.generation_changed && bench) {
			fb_consumer_format(C, &fmt);
			if (fmt.max_frame_bytes > frame_buf_len) {
				free(frame_buf);
				frame_buf_len = (size_t)fmt.max_frame_bytes;
				if ((frame_buf = malloc(frame_buf_len)) == NULL)
					die(EXIT_SYSTEM, "malloc %zu bytes: out of memory", frame_buf_len);
			}
		}
		uint8_t first[8] = {0};
		const uint8_t *data = f.data;
		if (f.held) {
			hold_keep(&f, first); /* the analysis that keeps the frame, then the release */
			data = first;
		}
		if (bench)
			bench_frame(&f, tcall, t1);
		else
			print_frame(&f, data);
		tcall = (int64_t)now_ns();
	}

	struct fb_consumer_stats st;
	fb_consumer_stats(C, &st);
	fb_consumer_close(C);
	C = NULL;
	if (bench)
		bench_write(&st);
	print_summary(&st);
	return 0;
}
