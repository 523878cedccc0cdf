/*
 * benchctl.h - the control file "framebus bench" shares between the processes of one run
 * (bench/ctl_unsafe.go is the authority; bench's TestBenchCtlLayout checks these numbers
 * against it). Used by the bench modes of producer.c, consumer.c and ping.c only.
 *
 * Every word is accessed with __atomic builtins (seq_cst): the lockstep acks of rate 0
 * and the futex baseline's words form the same store-buffering handshake as framebus's
 * waiters and sem.
 */
#ifndef FRAMEBUS_BENCHCTL_H
#define FRAMEBUS_BENCHCTL_H

#include <errno.h>
#include <linux/futex.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define BENCHCTL_STOP 0          /* u32: the run is over (futex baseline) */
#define BENCHCTL_PROD_WAITING 4  /* u32: the producer is about to sleep on acks */
#define BENCHCTL_ACKS 8          /* u32: frames finished by consumers, all added (futex word) */
#define BENCHCTL_WAITERS_OFF 64  /* per consumer i, BENCHCTL_WAITER_SIZE bytes each: */
#define BENCHCTL_WAITER_SIZE 64
#define BENCHCTL_W_WORD 0        /*   u32: futex baseline's sample number (futex word) */
#define BENCHCTL_W_WAITING 4     /*   u32: the waiter is about to sleep */
#define BENCHCTL_W_READY 8       /*   u32: the waiter is set up */
#define BENCHCTL_W_ENTRY 12      /*   u32: a framebus consumer's table entry + 1 */
#define BENCHCTL_MAX_WAITERS 16
#define BENCHCTL_RING 4096       /* samples in the rings below */
#define BENCHCTL_RING_OFF (BENCHCTL_WAITERS_OFF + BENCHCTL_MAX_WAITERS * BENCHCTL_WAITER_SIZE)
#define BENCHCTL_PHASE_OFF (BENCHCTL_RING_OFF + BENCHCTL_RING * 8) /* u32 phase of sample k */
#define BENCHCTL_SIZE (BENCHCTL_PHASE_OFF + BENCHCTL_RING * 4)

/* Frame phases, in user_meta[0] of every bench frame (bytes 1-8: the producer's clock
 * just before the hand-off, little-endian). */
#define BENCH_PHASE_WARM 1
#define BENCH_PHASE_MEASURE 2
#define BENCH_META_LEN 9

static inline uint32_t *benchctl_u32(uint8_t *ctl, uint32_t off)
{
	return (uint32_t *)(void *)(ctl + off);
}

static inline uint32_t *benchctl_waiter(uint8_t *ctl, int i, uint32_t field)
{
	return benchctl_u32(ctl, BENCHCTL_WAITERS_OFF + (uint32_t)i * BENCHCTL_WAITER_SIZE + field);
}

static inline int64_t *benchctl_start(uint8_t *ctl, uint32_t k)
{
	return (int64_t *)(void *)(ctl + BENCHCTL_RING_OFF + (k % BENCHCTL_RING) * 8);
}

static inline uint32_t *benchctl_phase(uint8_t *ctl, uint32_t k)
{
	return benchctl_u32(ctl, BENCHCTL_PHASE_OFF + (k % BENCHCTL_RING) * 4);
}

/* ---- helpers shared by the bench modes --------------------------------------------- */

static inline int64_t bench_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* CPU time of the process so far (user + system, every thread), as getrusage says. */
static inline int64_t bench_cpu_ns(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return 0;
	return ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000 +
	       ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000;
}

/* Shared (not FUTEX_PRIVATE_FLAG) futex operations: the words are in shared files. */
static inline long bench_futex_wait(uint32_t *w, uint32_t val, int64_t ns)
{
	struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
	return syscall(SYS_futex, w, FUTEX_WAIT, val, &ts, NULL, 0);
}

static inline void bench_futex_wake(uint32_t *w, int n)
{
	syscall(SYS_futex, w, FUTEX_WAKE, n, NULL, NULL, 0);
}

/* Lockstep (rate 0): a consumer finished n frames. Only the last consumer of a frame
 * reaches a multiple of the consumer count, so only it wakes the producer. */
static inline void benchctl_ack(uint8_t *ctl, uint32_t n, int consumers)
{
	uint32_t *acks = benchctl_u32(ctl, BENCHCTL_ACKS);
	uint32_t v = __atomic_add_fetch(acks, n, __ATOMIC_SEQ_CST);
	if (v % (uint32_t)consumers == 0 &&
	    __atomic_load_n(benchctl_u32(ctl, BENCHCTL_PROD_WAITING), __ATOMIC_SEQ_CST) != 0)
		bench_futex_wake(acks, 1);
}

/* Lockstep: sleeps until the acks reach target; 0, or -1 after deadline (bench_now_ns). */
static inline int benchctl_wait_acks(uint8_t *ctl, uint32_t target, int64_t deadline)
{
	uint32_t *acks = benchctl_u32(ctl, BENCHCTL_ACKS);
	uint32_t *waiting = benchctl_u32(ctl, BENCHCTL_PROD_WAITING);
	for (;;) {
		uint32_t v = __atomic_load_n(acks, __ATOMIC_SEQ_CST);
		if (v >= target)
			return 0;
		if (bench_now_ns() > deadline)
			return -1;
		__atomic_store_n(waiting, 1, __ATOMIC_SEQ_CST);
		v = __atomic_load_n(acks, __ATOMIC_SEQ_CST);
		if (v < target)
			bench_futex_wait(acks, v, 100 * 1000000);
		__atomic_store_n(waiting, 0, __ATOMIC_SEQ_CST);
	}
}

/* A fixed rate with absolute deadlines; a frame whose time has passed is skipped, as a
 * camera would (bench/child_linux.go's pacer). period 0: as fast as possible. */
struct bench_pacer {
	int64_t period, next;
};

static inline void bench_pacer_wait(struct bench_pacer *p)
{
	if (p->period == 0)
		return;
	int64_t now = bench_now_ns();
	if (p->next == 0)
		p->next = now;
	while (p->next + p->period <= now)
		p->next += p->period;
	struct timespec ts = {(time_t)(p->next / 1000000000), (long)(p->next % 1000000000)};
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
	p->next += p->period;
}

#endif /* FRAMEBUS_BENCHCTL_H */
