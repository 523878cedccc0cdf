/*
 * producer.c - a framebus producer: a thin command over libframebus (libframebus/, the C
 * library that holds the whole producer side of the contract, written from
 * docs/PROTOCOL.md and framebus.h alone): the reference for other languages, the C leg of
 * "framebus bench", and a cross-check of the Go consumer.
 *
 *   gcc -O2 -std=gnu11 -Wall -Wextra -Werror -pthread -I libframebus/include \
 *       -I framebus/include -o producer libframebus/src/[a-z]*.c framebus/testdata/c/producer.c
 *   producer [options] <name>
 *
 * What the library does for it (section and amendment numbers of PROTOCOL.md), with its
 * heartbeat driven from this program's loop (manual_heartbeat, fb_producer_tick):
 *   - ownership (2): the lock file framebus.<name>.lock, an OFD write lock on its byte 0
 *     for the producer's whole life, the inode checked against the path after locking; a
 *     second producer gets "busy" naming the owner's pid (exit 3);
 *   - abandoned temporary files of its own name are removed first, each only once its
 *     byte-0 lock could be taken (amendment 8, creation and liveness across PID namespaces);
 *   - a generation (2, amendment 8): built under framebus.<name>.tmp-<pid> (O_CREAT|O_EXCL|
 *     O_NOFOLLOW), byte 0 of it write-locked at once and its path re-checked, the free space
 *     checked first (statfs), the pages pre-faulted, the header filled (producer_pid and
 *     producer_pidns), state READY, renamed over the name (a rename that fails with ENOENT
 *     starts the creation again, three times at most), then the lock released; the previous
 *     generation's last_seq is continued and that generation RETIRED and woken;
 *   - every frame: the commit of section 4, steps 1-6, with the shared wake word of
 *     amendment 7, the shared wake word (flag bit 1; --per-entry-wake leaves it out) before the per-entry wakes;
 *     holds (amendment 10, flag bit 2; --no-holds leaves them out): the back slot chosen by
 *     C1-C4 of framebus.h, never a held one, a hold past the lease (--hold-max) or one that
 *     cannot be avoided (forged words) taken back and counted;
 *   - every heartbeat interval: heartbeat_ns, reclaim of dead consumers' entries under an
 *     exclusive lock on the entry (2; the entry's hold_mask cleared after the CAS), hold bits
 *     of entries not in state 2 or past slot_count counted in holds_ignored, the segment
 *     checked (truncated or its name removed from outside: state BROKEN and a new
 *     generation, 6), the lock file kept;
 *   - a clean close (SIGINT, SIGTERM, --frames reached): the end-of-stream frame, RETIRED,
 *     every consumer woken, the name unlinked, the lock file unlinked while byte 0 is held.
 * A memory fault on the mapping (the file truncated from outside) reads and writes zero
 * pages (the library's SIGBUS guard) and is turned into a new generation, never a crash.
 *
 * Options:
 *   --dir DIR            bus directory (default $FRAMEBUS_DIR, else /dev/shm)
 *   --size WxH           frame size (default 640x480)
 *   --format F           RGBA (AB24), RGB24 (RGB3), BGR24 (BGR3), GREY, YUYV, NV12, I420 (YU12)
 *   --fps R              frames per second, absolute deadlines (default 30; 0: as fast as
 *                        possible, or in lockstep with --ctl)
 *   --frames N           close after N frames (default 0: until SIGINT/SIGTERM)
 *   --checksum           CRC-32C of every frame (flag bit 0)
 *   --slots N            2-8 (default 2)      --consumers N   table entries (default 32)
 *   --heartbeat-ms N     1-60000 (default 100)
 *   --mode OCTAL         file mode of the segment and lock file (default 0600; never o+w)
 *   --per-entry-wake     no shared wake word (amendment 7): one FUTEX_WAKE per sleeper
 *   --no-holds           no holds (amendment 10): flag bit 2 clear, the back slot of section 4
 *   --hold-max MS        the lease (hold_max_ns): a hold on a frame older than MS ms may be
 *                        taken back; 0 (the default): never
 *   --ignore-holds       for tests only: flag bit 2 set, yet the back slot of section 4 (a
 *                        producer that breaks amendment 10, to show what a hold protects)
 *   --render copy|counter  copy (default): each frame is a copy of a fixed background with
 *                        the frame number in its first 8 bytes (little-endian u64), the
 *                        work a camera source does; counter: 64-bit word w of frame s is
 *                        s << 32 | w
 *   --meta TEXT          user metadata carried with every frame (at most 64 bytes)
 *   --wait-consumers N   before the first frame, wait until N consumers are active
 *                        (15 s at most)
 * Bench mode (framebus bench; the control file is described in benchctl.h):
 *   --bench FILE         write the measurements to FILE at the end; frames carry the phase
 *                        and the hand-off time in their user metadata (benchctl.h)
 *   --ctl FILE           the run's control file: with --fps 0, lockstep (the next frame once
 *                        every consumer acknowledged the previous one and sleeps again)
 *   --warmup-ns N, --measure-ns N   the discarded start and the measured window
 *
 * stdout, line buffered: "ready <segment path> generation <g> last_seq <n>" when the first
 * generation is live; "generation <g>" for each later one; "done frames=<n> last_seq=<n>"
 * at a clean close. Diagnostics go to stderr.
 * Exit codes: 0 closed cleanly, 1 system error, 2 usage, 3 busy (another producer owns the
 * name), 4 the name was lost (another process took the lock file) or the consumers did
 * not come.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <framebus/libframebus.h>

#include "benchctl.h"

enum {
	EXIT_SYSTEM = 1,
	EXIT_USAGE = 2,
	EXIT_BUSY = 3,
	EXIT_LOST = 4,
};

#define SEQ_CST __ATOMIC_SEQ_CST

/* ---- options and state ------------------------------------------------------------ */

static struct {
	const char *dir, *name;
	uint32_t width, height, fourcc;
	double fps;
	uint64_t frames;
	int checksum, per_entry_wake, counter, no_holds, ignore_holds;
	uint32_t hold_max_ms;
	uint32_t slots, consumers, heartbeat_ms;
	uint32_t mode;
	const char *meta;
	int wait_consumers;
	const char *bench, *ctl;
	int64_t warmup_ns, measure_ns;
} O = {.width = 640, .height = 480, .fps = 30, .slots = 2, .consumers = 32,
       .heartbeat_ms = 100, .mode = 0600};

static fb_producer *P;
static uint64_t frame_size;  /* bytes of every frame */
static uint64_t generation;  /* the last one reported on stdout */
static int64_t next_beat;
static uint8_t *background;  /* --render copy: the frame's fixed content */
static volatile sig_atomic_t stop_requested;

/* Reports, closes the bus as a clean close would, and exits. */
static void die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void die(int code, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "producer: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fb_producer_close(P);
	P = NULL;
	exit(code);
}

static int exit_code(int err)
{
	switch (err) {
	case FB_ERR_BUSY: return EXIT_BUSY;
	case FB_ERR_NAME_LOST: return EXIT_LOST;
	case FB_ERR_BAD_NAME:
	case FB_ERR_BAD_OPTIONS: return EXIT_USAGE;
	default: return EXIT_SYSTEM;
	}
}

/* The library's warnings and errors, on stderr as before ("generation" lines are ours). */
static void log_line(void *arg, int level, const char *msg)
{
	(void)arg;
	if (level <= FB_LOG_WARN)
		fprintf(stderr, "producer: %s\n", msg);
}

static void on_stop(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static int64_t now_ns(void) { return bench_now_ns(); }

/* "generation <g>" for each generation after the first. */
static void report_generation(void)
{
	struct fb_producer_stats st;
	fb_producer_stats(P, &st);
	if (st.generation != generation) {
		generation = st.generation;
		printf("generation %" PRIu64 "\n", generation);
	}
}

/* ---- heartbeat (sections 2 and 6, in the library) --------------------------------------- */

static void maybe_beat(void)
{
	int64_t now = now_ns();
	if (now < next_beat)
		return;
	int r = fb_producer_tick(P);
	if (r != FB_OK)
		die(exit_code(r), "%s", fb_producer_errmsg(P));
	report_generation();
	next_beat = now + (int64_t)O.heartbeat_ms * 1000000;
}

/* Sleeps until the absolute time t (CLOCK_MONOTONIC), beating on the way. */
static void sleep_until(int64_t t)
{
	for (;;) {
		maybe_beat();
		if (stop_requested || now_ns() >= t)
			return;
		int64_t until = t < next_beat ? t : next_beat;
		struct timespec ts = {(time_t)(until / 1000000000), (long)(until % 1000000000)};
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
	}
}

/* ---- rendering ------------------------------------------------------------------------ */

static uint32_t parse_format(const char *s)
{
	static const struct {
		const char *name;
		uint32_t fourcc;
	} names[] = {
		{"RGBA", FRAMEBUS_FOURCC_AB24}, {"AB24", FRAMEBUS_FOURCC_AB24},
		{"RGB24", FRAMEBUS_FOURCC_RGB3}, {"RGB3", FRAMEBUS_FOURCC_RGB3},
		{"BGR24", FRAMEBUS_FOURCC_BGR3}, {"BGR3", FRAMEBUS_FOURCC_BGR3},
		{"GREY", FRAMEBUS_FOURCC_GREY}, {"GRAY", FRAMEBUS_FOURCC_GREY},
		{"YUYV", FRAMEBUS_FOURCC_YUYV}, {"NV12", FRAMEBUS_FOURCC_NV12},
		{"I420", FRAMEBUS_FOURCC_YU12}, {"YU12", FRAMEBUS_FOURCC_YU12},
	};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (strcasecmp(s, names[i].name) == 0)
			return names[i].fourcc;
	return 0;
}

static void make_background(void)
{
	background = malloc(frame_size ? frame_size : 1);
	if (background == NULL)
		die(EXIT_SYSTEM, "malloc %" PRIu64 " bytes: out of memory", frame_size);
	/* Byte i = (i * 2654435761) >> 24: fixed, cheap, not all one value (bench tests
	 * recompute it). */
	for (uint64_t i = 0; i < frame_size; i++)
		background[i] = (uint8_t)(((uint32_t)i * 2654435761u) >> 24);
}

/* Writes frame number s into dst (the slot): the background and the number, or counter
 * words. */
static void render(uint8_t *dst, uint64_t s)
{
	if (O.counter) {
		uint64_t words = frame_size / 8;
		for (uint64_t w = 0; w < words; w++) {
			uint64_t v = s << 32 | w;
			memcpy(dst + 8 * w, &v, 8);
		}
		return;
	}
	memcpy(dst, background, (size_t)frame_size);
	if (frame_size >= 8)
		memcpy(dst, &s, 8);
}

/* ---- bench mode -------------------------------------------------------------------- */

static struct {
	uint8_t *ctl;
	int64_t *pub; /* publish durations of the measured frames */
	size_t npub, cap;
	int64_t warm_end, measure_end, first, last, cpu0, asleep_cpu;
	int measuring;
	int64_t frames, awake;
	uint32_t *waiters[BENCHCTL_MAX_WAITERS]; /* per-entry waiters words, lockstep */
} BM;

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

/* The phase of the frame about to go out: warm-up, then the measured window; 0: done. */
static uint32_t bench_phase(uint64_t k)
{
	int64_t now = now_ns();
	if (!BM.measuring) {
		if (now < BM.warm_end || k < 3)
			return BENCH_PHASE_WARM;
		BM.measuring = 1;
		BM.measure_end = now + O.measure_ns;
		BM.cpu0 = bench_cpu_ns();
		return BENCH_PHASE_MEASURE;
	}
	if (now >= BM.measure_end && BM.frames >= 2)
		return 0;
	return BENCH_PHASE_MEASURE;
}

/* Lockstep: every consumer sleeps on its futex, so that the next hand-off times the wake
 * of a sleeping process (bench/child_linux.go's asleepWaiter). The CPU it burns is the
 * benchmark's and is taken out of the producer's. The words are the bus's own (the
 * library's mapping, fb_producer_mapping). */
static int all_asleep(int n)
{
	framebus_header *h = fb_producer_mapping(P, NULL);
	if (h->flags & FRAMEBUS_FLAG_SHARED_WAKE)
		return __atomic_load_n(&h->wake_waiters, SEQ_CST) >= (uint32_t)n;
	for (int i = 0; i < n; i++)
		if (__atomic_load_n(BM.waiters[i], SEQ_CST) == 0)
			return 0;
	return 1;
}

static void wait_asleep(int n, uint32_t phase)
{
	if (all_asleep(n))
		return;
	int64_t c0 = bench_cpu_ns();
	int64_t deadline = now_ns() + 20 * 1000000;
	struct timespec nap = {0, 20000};
	for (int i = 0; !all_asleep(n); i++) {
		if (now_ns() > deadline) {
			if (phase == BENCH_PHASE_MEASURE)
				BM.awake++;
			break;
		}
		if (i < 100)
			sched_yield();
		else
			nanosleep(&nap, NULL);
	}
	if (phase == BENCH_PHASE_MEASURE)
		BM.asleep_cpu += bench_cpu_ns() - c0;
}

static void bench_record(int64_t d, int64_t t0)
{
	if (BM.npub == BM.cap) {
		BM.cap = BM.cap ? 2 * BM.cap : 4096;
		BM.pub = realloc(BM.pub, BM.cap * sizeof *BM.pub);
		if (BM.pub == NULL)
			die(EXIT_SYSTEM, "out of memory");
	}
	BM.pub[BM.npub++] = d;
	if (BM.frames == 0)
		BM.first = t0;
	BM.frames++;
	BM.last = t0;
}

static void bench_write(int64_t cpu)
{
	FILE *f = fopen(O.bench, "w");
	if (f == NULL)
		die(EXIT_SYSTEM, "open %s: %s", O.bench, strerror(errno));
	fprintf(f, "framebus-bench-c 1\nrole producer\nframes %" PRId64 "\nwindow_ns %" PRId64
		   "\ncpu_ns %" PRId64 "\nawake %" PRId64 "\n",
		BM.frames, BM.last - BM.first, cpu, BM.awake);
	for (size_t i = 0; i < BM.npub; i++)
		fprintf(f, "pub %" PRId64 "\n", BM.pub[i]);
	if (fclose(f) != 0)
		die(EXIT_SYSTEM, "write %s: %s", O.bench, strerror(errno));
}

/* ---- main --------------------------------------------------------------------------- */

static void usage(void) __attribute__((noreturn));
static void usage(void)
{
	fprintf(stderr,
		"usage: producer [--dir DIR] [--size WxH] [--format F] [--fps R] [--frames N]\n"
		"                [--checksum] [--slots N] [--consumers N] [--heartbeat-ms N]\n"
		"                [--mode OCTAL] [--per-entry-wake] [--no-holds] [--hold-max MS]\n"
		"                [--ignore-holds] [--render copy|counter]\n"
		"                [--meta TEXT] [--wait-consumers N]\n"
		"                [--bench FILE [--ctl FILE] --warmup-ns N --measure-ns N] <name>\n");
	exit(EXIT_USAGE);
}

static uint64_t parse_u64(const char *s, const char *what, uint64_t lo, uint64_t hi)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi) {
		fprintf(stderr, "producer: bad %s %s (want %" PRIu64 "-%" PRIu64 ")\n", what, s, lo, hi);
		exit(EXIT_USAGE);
	}
	return v;
}

static void parse_args(int argc, char **argv)
{
	int i;
	for (i = 1; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG() (v != NULL ? (i++, v) : (usage(), ""))
		if (strcmp(a, "--dir") == 0)
			O.dir = ARG();
		else if (strcmp(a, "--size") == 0) {
			const char *s = ARG();
			unsigned w, h;
			char x;
			if (sscanf(s, "%u%c%u", &w, &x, &h) != 3 || (x != 'x' && x != 'X'))
				die(EXIT_USAGE, "bad --size %s: want WxH", s);
			O.width = w;
			O.height = h;
		} else if (strcmp(a, "--format") == 0) {
			const char *s = ARG();
			if ((O.fourcc = parse_format(s)) == 0)
				die(EXIT_USAGE, "bad --format %s: want RGBA, RGB24, BGR24, GREY, YUYV, NV12 or I420", s);
		} else if (strcmp(a, "--fps") == 0) {
			const char *s = ARG();
			char *end;
			O.fps = strtod(s, &end);
			if (*end || end == s || O.fps < 0 || O.fps > 10000)
				die(EXIT_USAGE, "bad --fps %s: want 0-10000", s);
		} else if (strcmp(a, "--frames") == 0)
			O.frames = parse_u64(ARG(), "--frames", 0, UINT64_MAX / 2);
		else if (strcmp(a, "--checksum") == 0)
			O.checksum = 1;
		else if (strcmp(a, "--per-entry-wake") == 0)
			O.per_entry_wake = 1;
		else if (strcmp(a, "--no-holds") == 0)
			O.no_holds = 1;
		else if (strcmp(a, "--ignore-holds") == 0)
			O.ignore_holds = 1;
		else if (strcmp(a, "--hold-max") == 0)
			O.hold_max_ms = (uint32_t)parse_u64(ARG(), "--hold-max", 0, 3600000);
		else if (strcmp(a, "--slots") == 0)
			O.slots = (uint32_t)parse_u64(ARG(), "--slots", FRAMEBUS_MIN_SLOTS, FRAMEBUS_MAX_SLOTS);
		else if (strcmp(a, "--consumers") == 0)
			O.consumers = (uint32_t)parse_u64(ARG(), "--consumers", 1, FRAMEBUS_MAX_CONSUMERS);
		else if (strcmp(a, "--heartbeat-ms") == 0)
			O.heartbeat_ms = (uint32_t)parse_u64(ARG(), "--heartbeat-ms", 1, 60000);
		else if (strcmp(a, "--mode") == 0) {
			const char *s = ARG();
			char *end;
			long m = strtol(s, &end, 8);
			if (*end || end == s || m < 0 || m > 0777 || (m & 0002) || (m & 0600) != 0600)
				die(EXIT_USAGE, "bad --mode %s: an octal mode with owner read and write, never world-writable", s);
			O.mode = (uint32_t)m;
		} else if (strcmp(a, "--render") == 0) {
			const char *s = ARG();
			if (strcmp(s, "counter") == 0)
				O.counter = 1;
			else if (strcmp(s, "copy") != 0)
				die(EXIT_USAGE, "bad --render %s: want copy or counter", s);
		} else if (strcmp(a, "--meta") == 0) {
			O.meta = ARG();
			if (strlen(O.meta) > FRAMEBUS_USER_META_MAX)
				die(EXIT_USAGE, "--meta: at most %d bytes", FRAMEBUS_USER_META_MAX);
		} else if (strcmp(a, "--wait-consumers") == 0)
			O.wait_consumers = (int)parse_u64(ARG(), "--wait-consumers", 0, FRAMEBUS_MAX_CONSUMERS);
		else if (strcmp(a, "--bench") == 0)
			O.bench = ARG();
		else if (strcmp(a, "--ctl") == 0)
			O.ctl = ARG();
		else if (strcmp(a, "--warmup-ns") == 0)
			O.warmup_ns = (int64_t)parse_u64(ARG(), "--warmup-ns", 0, INT64_MAX / 4);
		else if (strcmp(a, "--measure-ns") == 0)
			O.measure_ns = (int64_t)parse_u64(ARG(), "--measure-ns", 0, INT64_MAX / 4);
		else
			usage();
#undef ARG
	}
	if (i != argc - 1)
		usage();
	O.name = argv[i];
	if (O.fourcc == 0)
		O.fourcc = FRAMEBUS_FOURCC_AB24;
	if (O.ctl != NULL && O.bench == NULL)
		die(EXIT_USAGE, "--ctl is for the bench mode (--bench)");
	if ((size_t)O.wait_consumers > O.consumers)
		die(EXIT_USAGE, "--wait-consumers %d: more than the table's %" PRIu32 " entries",
		    O.wait_consumers, O.consumers);
	if (O.bench && O.meta)
		die(EXIT_USAGE, "--meta: the bench mode carries its own metadata");
}

static int active_consumers(void)
{
	struct fb_producer_stats st;
	fb_producer_stats(P, &st);
	return (int)st.consumers_active;
}

int main(int argc, char **argv)
{
	parse_args(argc, argv);
	setvbuf(stdout, NULL, _IOLBF, 0);

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_stop;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);

	/* The library installs the SIGBUS guard at the create: a segment truncated from
	 * outside reads and writes zero pages, and a new generation replaces it. */
	fb_producer_opts po;
	memset(&po, 0, sizeof po);
	po.dir = O.dir;
	po.format.width = O.width;
	po.format.height = O.height;
	po.format.pixel_format = O.fourcc;
	if (O.fps > 0 && O.fps <= 1e6 && O.fps == (double)(uint32_t)O.fps) {
		po.format.fps_num = (uint32_t)O.fps;
		po.format.fps_den = 1;
	} else if (O.fps > 0 && O.fps <= 1e6) {
		po.format.fps_num = (uint32_t)(O.fps * 1000 + 0.5);
		po.format.fps_den = 1000;
	}
	po.slots = O.slots;
	po.consumers = O.consumers;
	po.heartbeat_ms = O.heartbeat_ms;
	po.mode = O.mode;
	po.checksum = O.checksum;
	po.no_shared_wake = O.per_entry_wake;
	po.no_holds = O.no_holds;
	po.hold_max_ms = O.hold_max_ms;
	po.ignore_holds_for_tests = O.ignore_holds;
	po.manual_heartbeat = 1; /* beaten from this loop, between frames and in sleeps */
	po.log = log_line;
	int r = fb_producer_create(O.name, &po, &P);
	if (r != FB_OK)
		exit(exit_code(r)); /* the log said why */
	fb_format fmt;
	fb_producer_format(P, &fmt);
	frame_size = fmt.max_frame_bytes;
	if (!O.counter)
		make_background();
	struct fb_producer_stats st;
	fb_producer_stats(P, &st);
	generation = st.generation;
	next_beat = now_ns() + (int64_t)O.heartbeat_ms * 1000000;
	char seg_path[4200];
	const char *dir = O.dir;
	if (dir == NULL || dir[0] == '\0')
		dir = getenv("FRAMEBUS_DIR");
	if (dir == NULL || dir[0] == '\0')
		dir = "/dev/shm";
	snprintf(seg_path, sizeof seg_path, "%s/framebus.%s", dir, O.name);
	printf("ready %s generation %" PRIu64 " last_seq %" PRIu64 "\n", seg_path, st.generation, st.last_seq);

	int want = O.wait_consumers;
	if (O.bench) {
		BM.ctl = O.ctl ? map_ctl(O.ctl) : NULL;
		BM.warm_end = now_ns() + O.warmup_ns;
		if (O.fps > 0)
			prctl(PR_SET_TIMERSLACK, 1000, 0, 0, 0); /* a precise sleeper */
	}
	if (want > 0) {
		int64_t deadline = now_ns() + 15 * (int64_t)1000000000;
		while (active_consumers() < want) {
			if (now_ns() > deadline || stop_requested)
				die(EXIT_LOST, "%d of %d consumers joined within 15 s", active_consumers(), want);
			sleep_until(now_ns() + 1000000);
		}
	}
	int lockstep = BM.ctl != NULL && O.fps == 0;
	if (lockstep) {
		int64_t deadline = now_ns() + 15 * (int64_t)1000000000;
		for (int i = 0; i < want && i < BENCHCTL_MAX_WAITERS; i++) {
			uint32_t *ew = benchctl_waiter(BM.ctl, i, BENCHCTL_W_ENTRY);
			uint32_t e;
			while ((e = __atomic_load_n(ew, SEQ_CST)) == 0) {
				if (now_ns() > deadline)
					die(EXIT_LOST, "consumer %d did not say its entry within 15 s", i);
				sleep_until(now_ns() + 1000000);
			}
			framebus_header *h = fb_producer_mapping(P, NULL);
			if (e - 1 >= h->consumer_capacity)
				die(EXIT_SYSTEM, "consumer %d says entry %" PRIu32 ", outside the table", i, e - 1);
			framebus_consumer_entry *table =
				(framebus_consumer_entry *)((uint8_t *)h + h->consumer_table_offset);
			BM.waiters[i] = &table[e - 1].waiters;
		}
	}

	uint8_t meta[FRAMEBUS_USER_META_MAX];
	fb_meta m = {0};
	m.user_meta = meta;
	if (O.meta) {
		m.user_meta_len = (uint32_t)strlen(O.meta);
		memcpy(meta, O.meta, m.user_meta_len);
	}
	struct bench_pacer pace = {.period = O.fps > 0 ? (int64_t)(1e9 / O.fps) : 0};
	uint64_t published = 0, last_seq = st.last_seq;
	for (uint64_t k = 0; !stop_requested && (O.frames == 0 || k < O.frames); k++) {
		if (pace.period) {
			/* bench_pacer_wait's deadline, reached through sleep_until (heartbeats). */
			int64_t now = now_ns();
			if (pace.next == 0)
				pace.next = now;
			while (pace.next + pace.period <= now)
				pace.next += pace.period;
			sleep_until(pace.next);
			pace.next += pace.period;
			if (stop_requested)
				break;
		} else {
			maybe_beat();
		}
		uint32_t phase = 0;
		if (O.bench && (phase = bench_phase(k)) == 0)
			break;
		int64_t t0 = 0, t1 = 0;
		void *slot;
		/* Steps 1-2 and the source's work: the frame rendered straight into the back slot. */
		if ((r = fb_producer_begin(P, &slot, NULL)) != FB_OK)
			die(exit_code(r), "%s", fb_producer_errmsg(P));
		m.capture_ns = (uint64_t)now_ns();
		render(slot, last_seq + 1);
		if (lockstep && k > 0) {
			if (benchctl_wait_acks(BM.ctl, (uint32_t)k * (uint32_t)want,
					       now_ns() + 10 * (int64_t)1000000000) != 0)
				die(EXIT_SYSTEM, "waiting for the consumers' acks: timed out");
			wait_asleep(want, phase);
		}
		if (O.bench) {
			meta[0] = (uint8_t)phase;
			t0 = now_ns();
			memcpy(meta + 1, &t0, 8);
			m.user_meta_len = BENCH_META_LEN;
		}
		r = fb_producer_commit(P, (size_t)frame_size, &m, &last_seq);
		if (r == FB_ERR_TRUNCATED) { /* the frame was lost; a new generation follows */
			report_generation();
			continue;
		}
		if (r != FB_OK)
			die(exit_code(r), "%s", fb_producer_errmsg(P));
		t1 = now_ns();
		published++;
		if (phase == BENCH_PHASE_MEASURE)
			bench_record(t1 - t0, t0);
	}
	int64_t cpu = O.bench ? bench_cpu_ns() - BM.cpu0 - BM.asleep_cpu : 0;
	if (lockstep && published > 0 &&
	    benchctl_wait_acks(BM.ctl, (uint32_t)published * (uint32_t)want,
			       now_ns() + 10 * (int64_t)1000000000) != 0)
		die(EXIT_SYSTEM, "waiting for the consumers' last acks: timed out");
	fb_producer_stats(P, &st);
	fb_producer_close(P);
	P = NULL;
	if (O.bench)
		bench_write(cpu);
	printf("done frames=%" PRIu64 " last_seq=%" PRIu64 "\n", published, st.last_seq);
	return 0;
}
