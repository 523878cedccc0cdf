/*
 * ping.c - the raw futex baseline of "framebus bench" in C: framebus with framebus taken
 * out (bench/role_futex_linux.go, the same steps in C), the floor of the C -> C rows.
 *
 *   gcc -O2 -std=gnu11 -Wall -Wextra -Werror -I framebus/include -o ping ping.c
 *   ping waker  --ctl FILE --slots FILE --frame-bytes N --consumers N [--fps R]
 *               --warmup-ns N --measure-ns N --bench FILE
 *   ping waiter --ctl FILE --slots FILE --frame-bytes N --consumers N --index I [--fps R]
 *               --bench FILE
 *
 * The waker renders each frame (a copy of a fixed background) into the next of two
 * slot-sized regions of a shared file, takes the time, stores the sample number in every
 * waiter's futex word and FUTEX_WAKEs those whose waiting flag says they sleep (the
 * handshake framebus uses), paced with absolute deadlines or, with --fps 0, in lockstep.
 * A waiter sleeps on its word until the number changes (the wake), then copies the frame
 * out of its region (the read). The control file is described in benchctl.h; both write
 * their measurements in the format of producer.c and consumer.c's bench modes.
 * Exit codes: 0 done, 1 system error, 2 usage.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "benchctl.h"

#define SEQ_CST __ATOMIC_SEQ_CST

static struct {
	int waker;
	const char *ctl, *slots, *bench;
	uint64_t frame;
	int consumers, index;
	double fps;
	int64_t warmup_ns, measure_ns;
} O = {.index = -1};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "ping: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void usage(void) __attribute__((noreturn));
static void usage(void)
{
	fprintf(stderr, "usage: ping waker|waiter --ctl FILE --slots FILE --frame-bytes N "
			"--consumers N [--index I] [--fps R] [--warmup-ns N --measure-ns N] "
			"--bench FILE\n");
	exit(2);
}

static uint8_t *map_file(const char *path, size_t size, int populate)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		die("open %s: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) != 0 || (size_t)st.st_size != size)
		die("%s: not %zu bytes", path, size);
	void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | (populate ? MAP_POPULATE : 0),
		       fd, 0);
	close(fd);
	if (m == MAP_FAILED)
		die("mmap %s: %s", path, strerror(errno));
	return m;
}

static uint64_t stride(void) { return (O.frame + 65535) / 65536 * 65536; }

static FILE *open_out(void)
{
	FILE *f = fopen(O.bench, "w");
	if (f == NULL)
		die("open %s: %s", O.bench, strerror(errno));
	return f;
}

/* ---- the waker ------------------------------------------------------------------------- */

static int all_asleep(uint8_t *ctl)
{
	for (int i = 0; i < O.consumers; i++)
		if (__atomic_load_n(benchctl_waiter(ctl, i, BENCHCTL_W_WAITING), SEQ_CST) == 0)
			return 0;
	return 1;
}

static int waker(void)
{
	uint8_t *ctl = map_file(O.ctl, BENCHCTL_SIZE, 1);
	uint8_t *slots = map_file(O.slots, 2 * stride(), 1);
	for (uint64_t i = 0; i < 2 * stride(); i += 4096)
		slots[i] = 0; /* pre-fault, as framebus pre-faults its segments */
	uint8_t *bg = malloc(O.frame ? O.frame : 1);
	if (bg == NULL)
		die("out of memory");
	for (uint64_t i = 0; i < O.frame; i++)
		bg[i] = (uint8_t)(((uint32_t)i * 2654435761u) >> 24);
	int64_t deadline = bench_now_ns() + 15 * (int64_t)1000000000;
	for (int i = 0; i < O.consumers; i++)
		while (__atomic_load_n(benchctl_waiter(ctl, i, BENCHCTL_W_READY), SEQ_CST) == 0) {
			if (bench_now_ns() > deadline)
				die("waiter %d not ready within 15 s", i);
			struct timespec ms = {0, 1000000};
			nanosleep(&ms, NULL);
		}
	int lockstep = O.fps == 0;
	struct bench_pacer pace = {.period = O.fps > 0 ? (int64_t)(1e9 / O.fps) : 0};
	if (pace.period)
		prctl(PR_SET_TIMERSLACK, 1000, 0, 0, 0);
	int64_t warm_end = bench_now_ns() + O.warmup_ns, measure_end = 0, cpu0 = 0, asleep_cpu = 0;
	int measuring = 0;
	int64_t frames = 0, first = 0, last = 0, awake = 0;
	size_t npub = 0, cap = 4096;
	int64_t *pub = malloc(cap * sizeof *pub);
	if (pub == NULL)
		die("out of memory");
	uint32_t sent = 0;
	for (uint64_t k = 0;; k++) {
		bench_pacer_wait(&pace);
		int64_t now = bench_now_ns();
		uint32_t phase = BENCH_PHASE_MEASURE;
		if (!measuring) {
			if (now < warm_end || k < 3)
				phase = BENCH_PHASE_WARM;
			else {
				measuring = 1;
				measure_end = now + O.measure_ns;
				cpu0 = bench_cpu_ns();
			}
		} else if (now >= measure_end && frames >= 2)
			break;
		uint32_t next = sent + 1;
		memcpy(slots + (next & 1) * stride(), bg, (size_t)O.frame);
		if (lockstep && k > 0) {
			if (benchctl_wait_acks(ctl, sent * (uint32_t)O.consumers,
					       bench_now_ns() + 10 * (int64_t)1000000000) != 0)
				die("waiting for the waiters' acks: timed out");
			if (!all_asleep(ctl)) {
				int64_t c0 = bench_cpu_ns(), until = bench_now_ns() + 20 * 1000000;
				struct timespec nap = {0, 20000};
				for (int i = 0; !all_asleep(ctl); i++) {
					if (bench_now_ns() > until) {
						if (phase == BENCH_PHASE_MEASURE)
							awake++;
						break;
					}
					if (i < 100)
						sched_yield();
					else
						nanosleep(&nap, NULL);
				}
				if (phase == BENCH_PHASE_MEASURE)
					asleep_cpu += bench_cpu_ns() - c0;
			}
		}
		sent = next;
		__atomic_store_n(benchctl_phase(ctl, sent), phase, SEQ_CST);
		int64_t t0 = bench_now_ns();
		__atomic_store_n(benchctl_start(ctl, sent), t0, SEQ_CST);
		for (int i = 0; i < O.consumers; i++) {
			uint32_t *w = benchctl_waiter(ctl, i, BENCHCTL_W_WORD);
			__atomic_store_n(w, sent, SEQ_CST);
			if (__atomic_load_n(benchctl_waiter(ctl, i, BENCHCTL_W_WAITING), SEQ_CST) != 0)
				bench_futex_wake(w, 1);
		}
		int64_t t1 = bench_now_ns();
		if (phase == BENCH_PHASE_MEASURE) {
			if (npub == cap && (pub = realloc(pub, (cap *= 2) * sizeof *pub)) == NULL)
				die("out of memory");
			pub[npub++] = t1 - t0;
			if (frames == 0)
				first = t0;
			frames++;
			last = t0;
		}
	}
	int64_t cpu = bench_cpu_ns() - cpu0 - asleep_cpu;
	if (lockstep && sent > 0 &&
	    benchctl_wait_acks(ctl, sent * (uint32_t)O.consumers, bench_now_ns() + 10 * (int64_t)1000000000) != 0)
		die("waiting for the waiters' last acks: timed out");
	/* However the run ends, the waiters must not sleep forever. */
	__atomic_store_n(benchctl_u32(ctl, BENCHCTL_STOP), 1, SEQ_CST);
	for (int i = 0; i < O.consumers; i++) {
		uint32_t *w = benchctl_waiter(ctl, i, BENCHCTL_W_WORD);
		__atomic_add_fetch(w, 1u << 31, SEQ_CST);
		bench_futex_wake(w, 1);
	}
	FILE *f = open_out();
	fprintf(f, "framebus-bench-c 1\nrole producer\nframes %" PRId64 "\nwindow_ns %" PRId64
		   "\ncpu_ns %" PRId64 "\nawake %" PRId64 "\n", frames, last - first, cpu, awake);
	for (size_t i = 0; i < npub; i++)
		fprintf(f, "pub %" PRId64 "\n", pub[i]);
	if (fclose(f) != 0)
		die("write %s: %s", O.bench, strerror(errno));
	return 0;
}

/* ---- a waiter ------------------------------------------------------------------------- */

static int waiter(void)
{
	if (O.index < 0 || O.index >= BENCHCTL_MAX_WAITERS)
		die("--index %d: want 0-%d", O.index, BENCHCTL_MAX_WAITERS - 1);
	uint8_t *ctl = map_file(O.ctl, BENCHCTL_SIZE, 1);
	uint8_t *slots = map_file(O.slots, 2 * stride(), 1);
	uint8_t *buf = malloc(O.frame ? O.frame : 1);
	if (buf == NULL)
		die("out of memory");
	char *mem = NULL;
	size_t mem_len = 0;
	FILE *samples = open_memstream(&mem, &mem_len);
	if (samples == NULL)
		die("open_memstream: %s", strerror(errno));
	uint32_t *word = benchctl_waiter(ctl, O.index, BENCHCTL_W_WORD);
	uint32_t *waiting = benchctl_waiter(ctl, O.index, BENCHCTL_W_WAITING);
	uint32_t *stop = benchctl_u32(ctl, BENCHCTL_STOP);
	pid_t ppid = getppid();
	uint32_t seen = __atomic_load_n(word, SEQ_CST);
	int64_t cpu0 = 0;
	int measured = 0;
	__atomic_store_n(benchctl_waiter(ctl, O.index, BENCHCTL_W_READY), 1, SEQ_CST);
	for (;;) {
		int64_t tcall = bench_now_ns();
		uint32_t v = __atomic_load_n(word, SEQ_CST);
		int done = 0;
		while (v == seen) {
			if (__atomic_load_n(stop, SEQ_CST) != 0 || getppid() != ppid) {
				done = 1;
				break;
			}
			__atomic_store_n(waiting, 1, SEQ_CST);
			if ((v = __atomic_load_n(word, SEQ_CST)) == seen) {
				bench_futex_wait(word, seen, 100 * 1000000);
				v = __atomic_load_n(word, SEQ_CST);
			}
			__atomic_store_n(waiting, 0, SEQ_CST);
		}
		if (done)
			break;
		int64_t t1 = bench_now_ns();
		if (__atomic_load_n(stop, SEQ_CST) != 0)
			break;
		int64_t t0 = __atomic_load_n(benchctl_start(ctl, v), SEQ_CST);
		uint32_t phase = __atomic_load_n(benchctl_phase(ctl, v), SEQ_CST);
		memcpy(buf, slots + (v & 1) * stride(), (size_t)O.frame);
		int64_t t2 = bench_now_ns();
		uint32_t missed = v - seen - 1;
		seen = v;
		if (O.fps == 0)
			benchctl_ack(ctl, 1 + missed, O.consumers);
		if (phase != BENCH_PHASE_MEASURE)
			continue;
		fprintf(samples, "s %" PRId64 " %" PRId64 " %" PRId64 " %" PRId64 " 0 %" PRIu32 " %" PRIu64 "\n",
			tcall, t0, t1, t2, missed, O.frame);
		if (!measured) {
			measured = 1;
			cpu0 = bench_cpu_ns();
		}
	}
	int64_t cpu1 = bench_cpu_ns();
	if (fclose(samples) != 0)
		die("samples: %s", strerror(errno));
	FILE *f = open_out();
	fprintf(f, "framebus-bench-c 1\nrole consumer\ncpu0 %" PRId64 "\ncpu1 %" PRId64
		   "\ntorn 0\noverwritten 0\n", cpu0, cpu1);
	if (mem_len > 0)
		fwrite(mem, 1, mem_len, f);
	if (fclose(f) != 0)
		die("write %s: %s", O.bench, strerror(errno));
	return 0;
}

static int64_t num(const char *s)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || *end || end == s || v < 0)
		usage();
	return v;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		usage();
	if (strcmp(argv[1], "waker") == 0)
		O.waker = 1;
	else if (strcmp(argv[1], "waiter") != 0)
		usage();
	for (int i = 2; i < argc; i += 2) {
		if (i + 1 >= argc)
			usage();
		const char *a = argv[i], *v = argv[i + 1];
		if (strcmp(a, "--ctl") == 0)
			O.ctl = v;
		else if (strcmp(a, "--slots") == 0)
			O.slots = v;
		else if (strcmp(a, "--bench") == 0)
			O.bench = v;
		else if (strcmp(a, "--frame-bytes") == 0)
			O.frame = (uint64_t)num(v);
		else if (strcmp(a, "--consumers") == 0)
			O.consumers = (int)num(v);
		else if (strcmp(a, "--index") == 0)
			O.index = (int)num(v);
		else if (strcmp(a, "--fps") == 0) {
			char *end;
			O.fps = strtod(v, &end);
			if (*end || O.fps < 0)
				usage();
		} else if (strcmp(a, "--warmup-ns") == 0)
			O.warmup_ns = num(v);
		else if (strcmp(a, "--measure-ns") == 0)
			O.measure_ns = num(v);
		else
			usage();
	}
	if (O.ctl == NULL || O.slots == NULL || O.bench == NULL || O.frame == 0 ||
	    O.consumers < 1 || O.consumers > BENCHCTL_MAX_WAITERS)
		usage();
	return O.waker ? waker() : waiter();
}
