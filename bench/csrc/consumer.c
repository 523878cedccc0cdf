/*
 * consumer.c - a framebus consumer written from docs/PROTOCOL.md and framebus.h alone.
 *
 * It is an independent cross-check of the Go implementation, the C leg of
 * "framebus bench", and the reference of the predictive spin (framebus.h, "Spinning
 * consumer") for other languages: Linux only, C11 (gnu11), libc only.
 *
 *   gcc -O2 -std=gnu11 -Wall -Wextra -Werror -I framebus/include \
 *       -o consumer framebus/testdata/c/consumer.c
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
 *       amendment 9, counted, never an error of the stream) and re-synchronisations of a
 *       last_seq moved ahead by a forged word;
 *       then " holds=<n> hold_refused=<n> overwritten_while_held=<n>" (--hold: holds granted,
 *       refused, and granted holds whose data or lock changed while held: always 0 with an
 *       honest producer), " truncations=<n> generations=<n>" (the segment found truncated
 *       under our mapping, by a memory fault or its file size, and generations joined after
 *       the first), " retired_ignored=<n>" (RETIRED seen on the very file behind the name while
 *       its producer is alive: a forged word, ignored) and " wake_repairs=<n>" (amendment 11:
 *       wake_waiters counted again after a missed wake); with --spin,
 *       " spin_hits=<n> spin_misses=<n>".
 * Diagnostics go to stderr.
 *
 * A segment file truncated under our mappings does not kill us (fbguard.h): the fault maps
 * zero pages over the mapping, the frame being read is discarded, and we join the next
 * generation the producer publishes under the name, as for a replaced file.
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
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "benchctl.h"
#include "crc32c.h"
#include "fbguard.h"
#include "framebus.h"

#ifndef F_OFD_GETLK
#define F_OFD_GETLK 36
#endif
#ifndef F_OFD_SETLK
#define F_OFD_SETLK 37
#endif

enum {
	EXIT_SYSTEM = 1,
	EXIT_USAGE = 2,
	EXIT_INVALID = 3,
	EXIT_TIMEOUT = 4,
	EXIT_GONE = 5,
};

#define SEQ_CST __ATOMIC_SEQ_CST
#define RELAXED __ATOMIC_RELAXED

/* ---- state -------------------------------------------------------------------------- */

struct bus {
	const char *path;
	int fd;
	dev_t dev;
	ino_t ino;

	uint8_t *ctl; /* [0, payload_offset), read-write */
	size_t ctl_len;
	const uint8_t *payload; /* [payload_offset, total_size), read-only */
	size_t payload_len;

	framebus_header *h;
	framebus_slot_desc *slots;
	framebus_consumer_entry *table;

	/* Validated copies, loaded once (the peer is not trusted). */
	uint32_t flags;
	uint32_t slot_count;
	uint32_t consumer_capacity;
	uint32_t interval_ms;
	uint64_t generation;
	uint64_t total_size;
	uint64_t payload_offset;
	uint64_t slot_stride;
	uint64_t slot_capacity;
	uint64_t consumer_table_offset;

	/* Our table entry. */
	int joined;
	uint32_t index;
	uint64_t token;
	framebus_consumer_entry *me;
};

struct stats {
	uint64_t refused;  /* reads refused for words no honest producer writes (amendment 9) */
	uint64_t resyncs;  /* times our last_seq was found ahead of the bus's and reset */
	uint64_t last_seq; /* newest frame taken, in the current generation's numbering */
	uint64_t delivered;
	uint64_t dropped;
	uint64_t torn;
	uint64_t crc_bad;
	int eos;
	uint64_t gap; /* frames missed just before the last one taken */
	uint64_t holds, hold_refused, overwritten_held; /* --hold */
	uint64_t truncations, generations, retired_ignored, wake_repairs;
};

static struct bus B = {.fd = -1};
static struct stats S;
static const char *lock_path;
static uint8_t *frame_buf;
static size_t frame_buf_len;
static int ever_joined; /* print the summary on every exit after the first join */
static int wait_bus;    /* --wait-bus: a missing segment is waited for (the timeout) */
static int64_t spin_limit; /* --spin, ns; 0: no spin */
static uint64_t spin_hits, spin_misses;
static uint64_t hold_ns;   /* --hold, ns; 0: no holds */
static int guard_ctl = -1, guard_payload = -1; /* our mappings in fbguard's registry */
static volatile sig_atomic_t stop_sig; /* SIGINT or SIGTERM received */
static int retired_noted; /* a forged RETIRED was reported (until READY again) */
static int fault_outside_test; /* --fault-outside */

/* ---- helpers ------------------------------------------------------------------------ */

/* The identity of our PID namespace (PROTOCOL.md amendment 8): the inode
 * number of /proc/self/ns/pid, 0 when unknown. */
static uint64_t pid_namespace(void)
{
	struct stat st;
	return stat("/proc/self/ns/pid", &st) == 0 ? (uint64_t)st.st_ino : 0;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void print_summary(void)
{
	printf("summary delivered=%" PRIu64 " dropped=%" PRIu64 " torn=%" PRIu64
	       " crc_bad=%" PRIu64 " eos=%d",
	       S.delivered, S.dropped, S.torn, S.crc_bad, S.eos);
	printf(" refused=%" PRIu64 " resyncs=%" PRIu64, S.refused, S.resyncs);
	printf(" holds=%" PRIu64 " hold_refused=%" PRIu64 " overwritten_while_held=%" PRIu64,
	       S.holds, S.hold_refused, S.overwritten_held);
	printf(" truncations=%" PRIu64 " generations=%" PRIu64 " retired_ignored=%" PRIu64
	       " wake_repairs=%" PRIu64, S.truncations, S.generations, S.retired_ignored,
	       S.wake_repairs);
	if (spin_limit > 0)
		printf(" spin_hits=%" PRIu64 " spin_misses=%" PRIu64, spin_hits, spin_misses);
	printf("\n");
	fflush(stdout);
}

static void leave_table(void);

/* --hold: how many holds of each slot we keep (one bit per slot in hold_mask). */
static uint32_t held_count[FRAMEBUS_MAX_SLOTS];

static void die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void die(int code, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "consumer: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (B.joined)
		leave_table();
	if (ever_joined)
		print_summary();
	exit(code);
}

static void on_stop(int sig)
{
	stop_sig = sig;
}

/* 1 when a memory fault found our mapping of the segment truncated (fbguard.h): what was
 * read since is zeros and must not be used. */
static int bus_truncated(void)
{
	return fbguard_truncated(guard_ctl) || fbguard_truncated(guard_payload);
}

static const char *state_name(uint32_t s)
{
	switch (s) {
	case FRAMEBUS_STATE_INITIALIZING: return "INITIALIZING";
	case FRAMEBUS_STATE_READY: return "READY";
	case FRAMEBUS_STATE_BROKEN: return "BROKEN";
	case FRAMEBUS_STATE_RETIRED: return "RETIRED";
	default: return "unknown";
	}
}

/* ---- OFD locks ------------------------------------------------------------------------ */

static int ofd_lock(int fd, short type, uint64_t start, uint64_t len)
{
	struct flock fl;
	memset(&fl, 0, sizeof fl); /* l_pid must be 0 for OFD locks */
	fl.l_type = type;
	fl.l_whence = SEEK_SET;
	fl.l_start = (off_t)start;
	fl.l_len = (off_t)len;
	return fcntl(fd, F_OFD_SETLK, &fl);
}

/* 1: someone holds a lock on byte 0 of the lock file; 0: nobody (or no file). */
static int owner_alive(void)
{
	if (lock_path == NULL)
		return 1;
	int fd = open(lock_path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		die(EXIT_SYSTEM, "open %s: %s", lock_path, strerror(errno));
	}
	struct flock fl;
	memset(&fl, 0, sizeof fl);
	fl.l_type = F_WRLCK; /* conflicts with any lock another description holds */
	fl.l_whence = SEEK_SET;
	fl.l_start = 0;
	fl.l_len = 1;
	if (fcntl(fd, F_OFD_GETLK, &fl) != 0)
		die(EXIT_SYSTEM, "F_OFD_GETLK %s: %s", lock_path, strerror(errno));
	close(fd);
	return fl.l_type != F_UNLCK;
}

/* ---- attach: open, validate, map ------------------------------------------------------ */

static void bump_version_mismatch(int fd)
{
	long page = sysconf(_SC_PAGESIZE);
	void *p = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return;
	/* version_mismatch_count is in the stable prefix (offset 56). */
	__atomic_fetch_add((uint64_t *)((uint8_t *)p + 56), 1, SEQ_CST);
	munmap(p, (size_t)page);
}

/* Why the last soft attach failed (printed when the rejoin gives up). */
static char attach_why[256];

/* In attach: the file is not a usable segment. Fatal (exit 3), or with soft (a rejoin after
 * a truncation, while the producer may be replacing the file) a failure to retry. */
#define INVALID(...)                                                                       \
	do {                                                                               \
		if (soft) {                                                                \
			snprintf(attach_why, sizeof attach_why, __VA_ARGS__);              \
			close(fd);                                                         \
			return -1;                                                         \
		}                                                                          \
		die(EXIT_INVALID, __VA_ARGS__);                                            \
	} while (0)

/* Opens and validates the segment, maps it. Waits (until deadline) while INITIALIZING.
 * 0 when attached; -1 (soft only) when the file is missing or not a usable segment. */
static int attach(const char *path, uint64_t deadline, int soft)
{
	int fd;
	for (;;) {
		fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
		if (fd >= 0 || errno != ENOENT || !wait_bus || soft || now_ns() >= deadline)
			break;
		struct timespec ts = {0, 2 * 1000 * 1000}; /* --wait-bus: not there yet */
		nanosleep(&ts, NULL);
	}
	if (fd < 0 && soft && errno == ENOENT) {
		snprintf(attach_why, sizeof attach_why, "%s: no such file", path);
		return -1;
	}
	if (fd < 0)
		die(errno == ENOENT ? EXIT_GONE : EXIT_SYSTEM, "open %s: %s", path,
		    strerror(errno));

	struct stat st;
	framebus_header hdr;
	for (;;) {
		if (fstat(fd, &st) != 0)
			die(EXIT_SYSTEM, "fstat %s: %s", path, strerror(errno));
		if (!S_ISREG(st.st_mode))
			INVALID("%s: not a regular file", path);
		if ((uint64_t)st.st_size < sizeof hdr)
			INVALID("%s: file size %lld is smaller than the %d-byte header", path,
				(long long)st.st_size, FRAMEBUS_HEADER_SIZE);
		ssize_t n = pread(fd, &hdr, sizeof hdr, 0);
		if (n < 0)
			die(EXIT_SYSTEM, "pread %s: %s", path, strerror(errno));
		if ((size_t)n != sizeof hdr)
			INVALID("%s: short header read (%zd of %zu bytes)", path, n, sizeof hdr);
		if (hdr.magic != FRAMEBUS_MAGIC)
			INVALID("%s: magic 0x%08" PRIx32 ", want 0x%08x", path, hdr.magic,
				FRAMEBUS_MAGIC);
		if (hdr.abi_version != FRAMEBUS_ABI_VERSION) {
			bump_version_mismatch(fd);
			soft = 0; /* a refusal, not a file in the making */
			INVALID("%s: abi_version %u, want %d", path, hdr.abi_version,
				FRAMEBUS_ABI_VERSION);
		}
		if (hdr.state != FRAMEBUS_STATE_INITIALIZING)
			break;
		if (soft || now_ns() >= deadline)
			INVALID("%s: state still INITIALIZING at the deadline", path);
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}

	if (hdr.header_size != FRAMEBUS_HEADER_SIZE)
		INVALID("%s: header_size %u, want %d", path, hdr.header_size, FRAMEBUS_HEADER_SIZE);
	if (hdr.state != FRAMEBUS_STATE_READY)
		INVALID("%s: state %" PRIu32 " (%s), want READY", path, hdr.state,
			state_name(hdr.state));
	if (hdr.total_size != (uint64_t)st.st_size)
		INVALID("%s: total_size %" PRIu64 " != file size %lld", path, hdr.total_size,
			(long long)st.st_size);
	if (hdr.total_size > SIZE_MAX)
		INVALID("%s: total_size %" PRIu64 " does not fit in memory", path, hdr.total_size);
	if (hdr.slot_count < FRAMEBUS_MIN_SLOTS || hdr.slot_count > FRAMEBUS_MAX_SLOTS)
		INVALID("%s: slot_count %" PRIu32 ", want %d..%d", path, hdr.slot_count,
			FRAMEBUS_MIN_SLOTS, FRAMEBUS_MAX_SLOTS);
	if (hdr.consumer_capacity < 1 || hdr.consumer_capacity > FRAMEBUS_MAX_CONSUMERS)
		INVALID("%s: consumer_capacity %" PRIu32 ", want 1..%d", path,
			hdr.consumer_capacity, FRAMEBUS_MAX_CONSUMERS);
	if (hdr.slot_desc_size != FRAMEBUS_SLOT_DESC_SIZE)
		INVALID("%s: slot_desc_size %" PRIu32 ", want %d", path, hdr.slot_desc_size,
			FRAMEBUS_SLOT_DESC_SIZE);
	if (hdr.consumer_entry_size != FRAMEBUS_CONSUMER_ENTRY_SIZE)
		INVALID("%s: consumer_entry_size %" PRIu32 ", want %d", path,
			hdr.consumer_entry_size, FRAMEBUS_CONSUMER_ENTRY_SIZE);
	if (hdr.plane_count < 1 || hdr.plane_count > FRAMEBUS_MAX_PLANES)
		INVALID("%s: plane_count %" PRIu32 ", want 1..%d", path, hdr.plane_count,
			FRAMEBUS_MAX_PLANES);
	if (hdr.payload_offset % FRAMEBUS_PAYLOAD_ALIGN != 0)
		INVALID("%s: payload_offset %" PRIu64 " is not a multiple of %d", path,
			hdr.payload_offset, FRAMEBUS_PAYLOAD_ALIGN);
	if (hdr.payload_offset < FRAMEBUS_HEADER_SIZE || hdr.payload_offset > hdr.total_size)
		INVALID("%s: payload_offset %" PRIu64 " outside [%d, total_size %" PRIu64 "]",
			path, hdr.payload_offset, FRAMEBUS_HEADER_SIZE, hdr.total_size);
	if (hdr.slot_stride == 0 || hdr.slot_stride % FRAMEBUS_PAYLOAD_ALIGN != 0)
		INVALID("%s: slot_stride %" PRIu64 " is not a non-zero multiple of %d", path,
			hdr.slot_stride, FRAMEBUS_PAYLOAD_ALIGN);
	if (hdr.slot_stride > UINT64_MAX / FRAMEBUS_MAX_SLOTS ||
	    hdr.payload_size != hdr.slot_count * hdr.slot_stride)
		INVALID("%s: payload_size %" PRIu64 " != slot_count %" PRIu32
			" * slot_stride %" PRIu64, path, hdr.payload_size, hdr.slot_count,
			hdr.slot_stride);
	if (hdr.payload_size > hdr.total_size - hdr.payload_offset)
		INVALID("%s: payload [%" PRIu64 ", +%" PRIu64 ") exceeds total_size %" PRIu64,
			path, hdr.payload_offset, hdr.payload_size, hdr.total_size);
	if (hdr.slot_capacity > hdr.slot_stride)
		INVALID("%s: slot_capacity %" PRIu64 " > slot_stride %" PRIu64, path,
			hdr.slot_capacity, hdr.slot_stride);
	if (hdr.slot_table_offset != FRAMEBUS_HEADER_SIZE)
		INVALID("%s: slot_table_offset %" PRIu64 ", want %d", path, hdr.slot_table_offset,
			FRAMEBUS_HEADER_SIZE);
	uint64_t slot_end = hdr.slot_table_offset +
			    (uint64_t)hdr.slot_count * FRAMEBUS_SLOT_DESC_SIZE;
	if (slot_end > hdr.payload_offset)
		INVALID("%s: slot table [%" PRIu64 ", %" PRIu64 ") overlaps the payload at %" PRIu64,
			path, hdr.slot_table_offset, slot_end, hdr.payload_offset);
	uint64_t cto = hdr.consumer_table_offset;
	uint64_t ctl_len = (uint64_t)hdr.consumer_capacity * FRAMEBUS_CONSUMER_ENTRY_SIZE;
	if (cto % 8 != 0 || cto < slot_end || cto > hdr.payload_offset ||
	    ctl_len > hdr.payload_offset - cto)
		INVALID("%s: consumer table [%" PRIu64 ", +%" PRIu64
			") not 8-aligned or outside [slot table end %" PRIu64
			", payload_offset %" PRIu64 ")",
			path, cto, ctl_len, slot_end, hdr.payload_offset);
	for (uint32_t i = 0; i < hdr.plane_count; i++)
		if (hdr.plane_offset[i] > hdr.slot_capacity)
			INVALID("%s: plane_offset[%" PRIu32 "] %" PRIu32 " > slot_capacity %" PRIu64,
				path, i, hdr.plane_offset[i], hdr.slot_capacity);

	void *ctl = mmap(NULL, (size_t)hdr.payload_offset, PROT_READ | PROT_WRITE, MAP_SHARED,
			 fd, 0);
	if (ctl == MAP_FAILED)
		die(EXIT_SYSTEM, "mmap control block of %s: %s", path, strerror(errno));
	size_t payload_len = (size_t)(hdr.total_size - hdr.payload_offset);
	void *payload = mmap(NULL, payload_len, PROT_READ, MAP_SHARED, fd,
			     (off_t)hdr.payload_offset);
	if (payload == MAP_FAILED)
		die(EXIT_SYSTEM, "mmap payload of %s: %s", path, strerror(errno));
	/* From here on a truncation of the file reads zeros instead of killing us. */
	guard_ctl = fbguard_add(ctl, (size_t)hdr.payload_offset, PROT_READ | PROT_WRITE);
	guard_payload = fbguard_add(payload, payload_len, PROT_READ);

	B.path = path;
	B.fd = fd;
	B.dev = st.st_dev;
	B.ino = st.st_ino;
	B.ctl = ctl;
	B.ctl_len = (size_t)hdr.payload_offset;
	B.payload = payload;
	B.payload_len = payload_len;
	B.h = (framebus_header *)ctl;
	B.slots = (framebus_slot_desc *)(B.ctl + hdr.slot_table_offset);
	B.table = (framebus_consumer_entry *)(B.ctl + cto);
	B.flags = hdr.flags;
	B.slot_count = hdr.slot_count;
	B.consumer_capacity = hdr.consumer_capacity;
	B.interval_ms = hdr.heartbeat_interval_ms ? hdr.heartbeat_interval_ms : 1;
	B.generation = hdr.generation;
	B.total_size = hdr.total_size;
	B.payload_offset = hdr.payload_offset;
	B.slot_stride = hdr.slot_stride;
	B.slot_capacity = hdr.slot_capacity;
	B.consumer_table_offset = cto;

	if (frame_buf_len < hdr.slot_capacity || frame_buf == NULL) {
		free(frame_buf);
		frame_buf_len = hdr.slot_capacity;
		frame_buf = malloc(frame_buf_len ? frame_buf_len : 1);
		if (frame_buf == NULL)
			die(EXIT_SYSTEM, "malloc %zu bytes: out of memory", frame_buf_len);
	}
	return 0;
}

static void detach(void)
{
	fbguard_remove(guard_ctl); /* before the munmap, always */
	fbguard_remove(guard_payload);
	guard_ctl = guard_payload = -1;
	if (B.ctl)
		munmap(B.ctl, B.ctl_len);
	if (B.payload)
		munmap((void *)B.payload, B.payload_len);
	if (B.fd >= 0)
		close(B.fd); /* drops every OFD lock of this description */
	B.ctl = NULL;
	B.payload = NULL;
	B.fd = -1;
}

/* ---- consumer table (section 2) --------------------------------------------------------- */

static uint64_t entry_off(uint32_t i)
{
	return B.consumer_table_offset + (uint64_t)i * FRAMEBUS_CONSUMER_ENTRY_SIZE;
}

static uint64_t random_token(void)
{
	uint64_t t = 0;
	while (t == 0) {
		if (getrandom(&t, sizeof t, 0) != (ssize_t)sizeof t)
			t = now_ns() ^ ((uint64_t)getpid() << 32);
	}
	return t;
}

/* Joins the table; the entry's last_seq is the header's last_seq at join time. */
static void join_table(void)
{
	for (uint32_t i = 0; i < B.consumer_capacity; i++) {
		if (ofd_lock(B.fd, F_RDLCK, entry_off(i), FRAMEBUS_CONSUMER_ENTRY_SIZE) != 0) {
			if (errno == EAGAIN || errno == EACCES)
				continue; /* being reclaimed (exclusive lock): try another */
			die(EXIT_SYSTEM, "F_OFD_SETLK F_RDLCK on entry %" PRIu32 ": %s", i,
			    strerror(errno));
		}
		framebus_consumer_entry *e = &B.table[i];
		uint32_t expect = FRAMEBUS_ENTRY_FREE;
		if (!__atomic_compare_exchange_n(&e->state, &expect, FRAMEBUS_ENTRY_CLAIMING, 0,
						 SEQ_CST, SEQ_CST)) {
			ofd_lock(B.fd, F_UNLCK, entry_off(i), FRAMEBUS_CONSUMER_ENTRY_SIZE);
			continue;
		}
		uint64_t token = random_token();
		__atomic_store_n(&e->token, token, SEQ_CST);
		__atomic_store_n(&e->pid, (uint32_t)getpid(), SEQ_CST);
		__atomic_store_n(&e->pidns, pid_namespace(), SEQ_CST); /* amendment 8 */
		__atomic_store_n(&e->heartbeat_ns, now_ns(), SEQ_CST);
		uint64_t last = __atomic_load_n(&B.h->last_seq, SEQ_CST);
		__atomic_store_n(&e->last_seq, last, SEQ_CST);
		__atomic_store_n(&e->delivered, 0, SEQ_CST);
		__atomic_store_n(&e->dropped, 0, SEQ_CST);
		__atomic_store_n(&e->torn_retries, 0, SEQ_CST);
		__atomic_store_n(&e->sem, 0, SEQ_CST);
		__atomic_store_n(&e->waiters, 0, SEQ_CST);
		/* Amendment 10: a joiner stores 0 in hold_mask (a dead holder's bits may be left
		 * by a producer that does not know holds) and zeroes its hold counters. */
		__atomic_store_n(&e->hold_mask, 0, SEQ_CST);
		__atomic_store_n(&e->holds_granted, 0, SEQ_CST);
		__atomic_store_n(&e->holds_refused, 0, SEQ_CST);
		__atomic_store_n(&e->holds_taken_back, 0, SEQ_CST);
		expect = FRAMEBUS_ENTRY_CLAIMING;
		if (!__atomic_compare_exchange_n(&e->state, &expect, FRAMEBUS_ENTRY_ACTIVE, 0,
						 SEQ_CST, SEQ_CST)) {
			/* Impossible while we hold the lock, unless a peer breaks the rules. */
			fprintf(stderr, "consumer: entry %" PRIu32 " changed to state %" PRIu32
					" while claiming; trying another\n", i, expect);
			ofd_lock(B.fd, F_UNLCK, entry_off(i), FRAMEBUS_CONSUMER_ENTRY_SIZE);
			continue;
		}
		B.joined = 1;
		ever_joined = 1;
		B.index = i;
		B.token = token;
		B.me = e;
		S.last_seq = last;
		return;
	}
	die(EXIT_GONE, "%s: no free consumer entry (consumer_capacity %" PRIu32 ")", B.path,
	    B.consumer_capacity);
}

static void leave_table(void)
{
	if (!B.joined)
		return;
	B.joined = 0;
	/* Amendment 10: every hold released before the CAS 2 -> 0. */
	__atomic_exchange_n(&B.me->hold_mask, 0, SEQ_CST);
	memset(held_count, 0, sizeof held_count);
	__atomic_store_n(&B.me->pidns, 0, SEQ_CST); /* amendment 8: before the CAS 2 -> 0 */
	uint32_t expect = FRAMEBUS_ENTRY_ACTIVE;
	__atomic_compare_exchange_n(&B.me->state, &expect, FRAMEBUS_ENTRY_FREE, 0, SEQ_CST,
				    SEQ_CST);
	ofd_lock(B.fd, F_UNLCK, entry_off(B.index), FRAMEBUS_CONSUMER_ENTRY_SIZE);
}

/* Re-joins if the entry is no longer ours (section 2). Keeps the local gap accounting. */
static void check_entry(void)
{
	if (bus_truncated())
		return; /* zeros: the main loop rejoins */
	uint32_t st = __atomic_load_n(&B.me->state, SEQ_CST);
	uint64_t tok = __atomic_load_n(&B.me->token, SEQ_CST);
	if (st == FRAMEBUS_ENTRY_ACTIVE && tok == B.token)
		return;
	fprintf(stderr, "consumer: entry %" PRIu32 " is no longer ours (state %" PRIu32
			"), re-joining\n", B.index, st);
	ofd_lock(B.fd, F_UNLCK, entry_off(B.index), FRAMEBUS_CONSUMER_ENTRY_SIZE);
	B.joined = 0;
	uint64_t keep = S.last_seq;
	join_table();
	S.last_seq = keep;
	__atomic_store_n(&B.me->last_seq, keep, SEQ_CST);
}

/* ---- the predictive spin (framebus.h, "Spinning consumer"; framebus/spin.go) ------------ */

/* What a spinning consumer learns of the stream. The period is the mean interval since an
 * anchor frame, which a burst of late frames caught up at once does not throw. The
 * predicted commit time of the next frame is corrected by a sixteenth of each error, like
 * a phase-locked loop. Three predictions in a row off by more than half a period start the
 * learning again. All times are CLOCK_MONOTONIC nanoseconds. */
struct spin {
	uint64_t anchor_seq;
	int64_t anchor_commit;
	int64_t period;    /* mean commit-to-commit interval */
	uint64_t next_seq; /* the frame predicted */
	int64_t next;      /* its predicted commit_ns; 0: none yet */
	int64_t jitter;    /* mean absolute prediction error */
	int64_t lo, hi;    /* running 10th and 90th percentiles of the prediction error */
	int64_t late;      /* mean lateness of a timed sleep's end */
	int bad;           /* predictions in a row off by more than half a period */
	uint64_t missed;   /* last_seq + 1 when a spin for that frame ended with no frame */
	int samples;
};

#define SPIN_MIN_WINDOW 20000LL    /* the window closes this long after the 90th percentile */
#define SPIN_LEAD 100000LL         /* and opens this long before the 10th: a vCPU back from a
				    * sleep reads slowly for a while */
#define SPIN_MAX_PERIOD 1000000000LL /* slower streams are not worth a spin */
#define SPIN_LEARN 8               /* frames predicted before the first spin */

static struct spin SP;

static void spin_restart(uint64_t seq, int64_t commit, int64_t keep_period)
{
	int64_t late = SP.late;
	memset(&SP, 0, sizeof SP);
	SP.anchor_seq = seq;
	SP.anchor_commit = commit;
	SP.period = keep_period;
	SP.late = late;
}

/* Moves est, an estimate of the pct-th percentile of a stream, one step towards x. */
static int64_t quantile_step(int64_t est, int64_t x, int64_t step, int64_t pct)
{
	if (x < est)
		return est - step * (100 - pct) / 100;
	return est + step * pct / 100;
}

/* Takes the sequence number and commit time of a data frame just delivered. */
static void spin_learn(uint64_t seq, int64_t commit)
{
	if (SP.anchor_seq == 0 || seq <= SP.anchor_seq || commit <= SP.anchor_commit) {
		spin_restart(seq, commit, 0);
		return;
	}
	SP.period = (commit - SP.anchor_commit) / (int64_t)(seq - SP.anchor_seq);
	if (SP.period <= 0 || SP.period > SPIN_MAX_PERIOD) {
		spin_restart(seq, commit, 0);
		return;
	}
	if (SP.next == 0 || seq < SP.next_seq) {
		SP.next = commit + SP.period;
		SP.next_seq = seq + 1;
		return;
	}
	int64_t want = SP.next + (int64_t)(seq - SP.next_seq) * SP.period;
	int64_t err = commit - want;
	if (err > SP.period / 2 || err < -SP.period / 2) {
		if (++SP.bad >= 3) {
			/* Learn again from here; the old period stays as a rough figure. */
			spin_restart(seq, commit, SP.period);
			return;
		}
		SP.next = want + SP.period; /* keep the phase */
		SP.next_seq = seq + 1;
		return;
	}
	SP.bad = 0;
	SP.next = want + err / 16 + SP.period;
	SP.next_seq = seq + 1;
	/* Arrivals are skewed (a producer is late now and then, never much early): the window
	 * follows percentiles of the error, in steps of a quarter of the mean error. */
	int64_t step = SP.jitter / 4 > 2000 ? SP.jitter / 4 : 2000;
	SP.lo = quantile_step(SP.lo, err, step, 10);
	SP.hi = quantile_step(SP.hi, err, step, 90);
	if (err < 0)
		err = -err;
	SP.jitter += (err - SP.jitter) / 8;
	SP.samples++;
}

/* Takes how late a timed sleep that should have ended at a window's start ended. */
static void spin_overslept(int64_t d)
{
	if (d < 0)
		d = 0;
	SP.late += (d - SP.late) / 8;
}

/* The spin window for the frame after last_seq: *start (when to be awake, the timer's
 * lateness allowed for) and *end. 0 while the loop is not locked, or once a spin for this
 * frame missed. */
static int spin_window(uint64_t last_seq, int64_t *start, int64_t *end)
{
	if (SP.samples < SPIN_LEARN || SP.missed == last_seq + 1 || SP.period <= 0 ||
	    last_seq + 1 < SP.next_seq)
		return 0;
	int64_t due = SP.next + (int64_t)(last_seq + 1 - SP.next_seq) * SP.period;
	int64_t lo = SP.lo - SPIN_LEAD, hi = SP.hi + SPIN_MIN_WINDOW;
	if (hi - lo > spin_limit)
		hi = lo + spin_limit;
	int64_t now = (int64_t)now_ns();
	if (due + hi < now) /* past the window: aim at the next period */
		due += ((now - due - hi) / SP.period + 1) * SP.period;
	*start = due + lo - SP.late;
	*end = due + hi;
	return 1;
}

/* ---- waiting (section 5, amendment 7) ---------------------------------------------------- */

enum { WAKE_SEM, WAKE_SHARED, WAKE_AUTO };
static int wake_mode = WAKE_SEM;
static int use_shared; /* this generation: sleep on the header's wake_seq */

/* The active slot holds a committed frame newer than the last one taken. */
static int refused_here(uint32_t slot, uint64_t lock);

static int frame_pending(void)
{
	uint32_t a = __atomic_load_n(&B.h->active, SEQ_CST);
	return a < B.slot_count && __atomic_load_n(&B.slots[a].frame_seq, SEQ_CST) > S.last_seq &&
	       !refused_here(a, __atomic_load_n(&B.slots[a].lock, SEQ_CST));
}

/* Watches for a new frame until one is there (1) or end passes (0: no more spinning for
 * this frame). With the shared wake word it watches that word, which the producer writes
 * once per commit right after the flip, and looks at the slot only when it changes: polling
 * the header and slot lines would pull them back from the producer between its stores to
 * them and slow the very commit it waits for. No pause instruction, as Go's loop: on a
 * virtual machine a pause loop can make the host deschedule the vCPU. */
static int spin_for(int64_t end)
{
	uint32_t *w = use_shared ? &B.h->wake_seq : NULL;
	uint32_t seen = w ? __atomic_load_n(w, SEQ_CST) : 0;
	for (unsigned i = 0;; i++) {
		if (w == NULL || i == 0 || __atomic_load_n(w, SEQ_CST) != seen) {
			if (w != NULL)
				seen = __atomic_load_n(w, SEQ_CST);
			if (frame_pending()) {
				spin_hits++;
				return 1;
			}
		}
		if ((i & 255) == 255 && (int64_t)now_ns() > end) {
			SP.missed = S.last_seq + 1;
			spin_misses++;
			return 0;
		}
	}
}

/* Sleeps until a wake. Returns 1 when woken (a wake, or a spin caught a frame; also when
 * the mapping was found truncated or a stop signal came, for the caller to see), 0 when the
 * deadline (the next heartbeat check) passed. The word and its expected value are read
 * before the pending check, and the waiters word written before the sleep, all seq_cst: the
 * handshakes of section 5 and amendment 7. Amendment 11: the entry's waiters is stored 1
 * before the sleep and 0 after it (one owner: a forged value lasts one sleep at most); on
 * the shared word, a wait that timed out while wake_seq moved (a commit that woke nobody:
 * wake_waiters was forged low) counts us in wake_waiters once more, for good. */
static int wait_wake(uint64_t deadline)
{
	framebus_consumer_entry *e = B.me;
	for (;;) {
		if (stop_sig || bus_truncated())
			return 1;
		uint32_t *word, *waiters, val = 0;
		if (use_shared) {
			word = &B.h->wake_seq;
			waiters = &B.h->wake_waiters;
			val = __atomic_load_n(word, SEQ_CST);
		} else {
			if (__atomic_exchange_n(&e->sem, 0, SEQ_CST) > 0)
				return 1;
			word = &e->sem;
			waiters = &e->waiters;
		}
		uint64_t now = now_ns();
		if (now >= deadline)
			return 0;
		uint64_t timeout = deadline - now;
		int64_t early = 0, start, end;
		if (spin_limit > 0 && spin_window(S.last_seq, &start, &end)) {
			if ((int64_t)now >= start) {
				if (spin_for(end))
					return 1;
				continue; /* missed: sleep for it as usual */
			}
			if ((uint64_t)(start - (int64_t)now) < timeout) {
				timeout = (uint64_t)(start - (int64_t)now);
				early = start;
			}
		}
		struct timespec ts = {(time_t)(timeout / 1000000000u), (long)(timeout % 1000000000u)};
		if (use_shared)
			__atomic_fetch_add(waiters, 1, SEQ_CST);
		else
			__atomic_store_n(waiters, 1, SEQ_CST); /* amendment 11 */
		if (use_shared && frame_pending()) {
			__atomic_fetch_sub(waiters, 1, SEQ_CST);
			return 1;
		}
		if (bus_truncated()) { /* a word above read zeros: no futex on them */
			if (use_shared)
				__atomic_fetch_sub(waiters, 1, SEQ_CST);
			return 1;
		}
		/* Shared futex (FUTEX_WAIT, not FUTEX_WAIT_PRIVATE): the waker is another process. */
		long r = syscall(SYS_futex, word, FUTEX_WAIT, val, &ts, NULL, 0);
		int err = errno;
		if (use_shared)
			__atomic_fetch_sub(waiters, 1, SEQ_CST);
		else
			__atomic_store_n(waiters, 0, SEQ_CST); /* amendment 11 */
		if (r != 0 && err != ETIMEDOUT && err != EAGAIN && err != EINTR)
			die(EXIT_SYSTEM, "futex wait: %s", strerror(err));
		if (use_shared && __atomic_load_n(word, SEQ_CST) != val) {
			if (r != 0 && err == ETIMEDOUT && !bus_truncated()) {
				/* Amendment 11: the producer committed and nothing woke us: we
				 * were not counted (wake_waiters forged low). Count us again. */
				__atomic_fetch_add(waiters, 1, SEQ_CST);
				S.wake_repairs++;
			}
			return 1;
		}
		if (r != 0 && err == ETIMEDOUT && early != 0)
			spin_overslept((int64_t)now_ns() - early); /* the window opens */
		/* Woken, changed, interrupted or timed out: look again, then the deadline. */
	}
}

/* ---- reading (section 5) ---------------------------------------------------------------- */

struct frame {
	uint32_t slot;
	uint64_t lock; /* the even lock value the frame was read under */
	uint64_t seq;
	uint64_t bytes;
	uint64_t commit_ns;
	uint32_t checksum;
	uint32_t frame_flags;
	uint32_t user_meta_len;
	uint8_t user_meta[FRAMEBUS_USER_META_MAX];
	uint64_t torn; /* reads of this frame that lost the race with the producer */
	int crc_bad;
	int held; /* --hold: a hold on the slot was granted (released by hold_keep) */
	const uint8_t *view; /* the data in the read-only mapping */
};

/* Amendment 9: a read refused for a word no honest producer writes is counted, and the
 * frame in that slot under that lock is not looked at again. */
static uint32_t refused_slot = UINT32_MAX;
static uint64_t refused_lock;

static void refuse(uint32_t slot, uint64_t lock, const char *why)
{
	if (slot == refused_slot && lock == refused_lock)
		return;
	S.refused++;
	refused_slot = slot;
	refused_lock = lock;
	fprintf(stderr, "consumer: refused a read of slot %" PRIu32 ": %s\n", slot, why);
}

static int refused_here(uint32_t slot, uint64_t lock)
{
	return S.refused != 0 && slot == refused_slot && lock == refused_lock;
}

/* Reads the newest committed frame into f: with copy, the data into frame_buf inside the
 * sequence lock (checked against the checksum afterwards); without, a validated zero-copy
 * view, checksummed inside the lock as framebus's Next does. 1 on success (also when the
 * frame is not new), 0 if the deadline passed while the slot stayed odd. A torn read is
 * never returned. */
static int read_newest(struct frame *f, uint64_t deadline, int copy)
{
	unsigned spins = 0;
	f->torn = 0;
	for (;;) {
		uint32_t s = __atomic_load_n(&B.h->active, SEQ_CST);
		f->seq = 0;
		if (s >= B.slot_count) {
			refuse(s, 0, "active out of range");
			return 1; /* forged or torn: the producer's next flip mends it */
		}
		framebus_slot_desc *d = &B.slots[s];

		/* 1. First lock load: seq_cst, so at least acquire for the reads below. */
		uint64_t l1 = __atomic_load_n(&d->lock, SEQ_CST);
		if (l1 & 1) {
			if (++spins % 1024 == 0) {
				if (now_ns() >= deadline)
					return 0;
				sched_yield();
			}
			continue;
		}

		/* 2. Descriptor and data, each word loaded once; bounds checked before use. Only
		 * user_meta_len bytes of metadata: a bus without metadata never makes us touch
		 * the descriptor's second cache line. */
		f->slot = s;
		f->lock = l1;
		f->seq = __atomic_load_n(&d->frame_seq, RELAXED);
		if (f->seq <= S.last_seq || refused_here(s, l1)) {
			f->seq = 0;
			return 1; /* nothing new (a stale active, or a frame refused already) */
		}
		f->bytes = __atomic_load_n(&d->bytes, RELAXED);
		f->checksum = __atomic_load_n(&d->checksum, RELAXED);
		f->frame_flags = __atomic_load_n(&d->frame_flags, RELAXED);
		f->user_meta_len = __atomic_load_n(&d->user_meta_len, RELAXED);
		f->commit_ns = __atomic_load_n(&d->commit_ns, RELAXED);
		uint32_t ml = f->user_meta_len <= FRAMEBUS_USER_META_MAX ? f->user_meta_len
									 : FRAMEBUS_USER_META_MAX;
		memcpy(f->user_meta, d->user_meta, ml);
		int bad_bytes = f->bytes > B.slot_capacity;
		f->view = B.payload + (uint64_t)s * B.slot_stride;
		f->crc_bad = 0;
		if (!bad_bytes && f->bytes > 0) {
			if (copy)
				memcpy(frame_buf, f->view, (size_t)f->bytes);
			else if (B.flags & FRAMEBUS_FLAG_CHECKSUM)
				f->crc_bad = crc32c(f->view, (size_t)f->bytes) != f->checksum;
		}

		/* 3. Load fence between the data reads and the second lock load. */
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		uint64_t l2 = __atomic_load_n(&d->lock, RELAXED);
		if (l2 != l1) {
			S.torn++;
			f->torn++;
			__atomic_fetch_add(&B.me->torn_retries, 1, SEQ_CST);
			continue;
		}

		/* Amendment 9: a frame newer than the header's last_seq is not taken: one
		 * ahead is committed and not yet flipped (its flip and wake follow), more is a
		 * forged word. Impossible sizes are refused for this read too, never an error
		 * of the stream. */
		uint64_t last = __atomic_load_n(&B.h->last_seq, SEQ_CST);
		if (f->seq > last) {
			if (f->seq > last + 1)
				refuse(s, l1, "frame_seq newer than last_seq");
			f->seq = 0;
			return 1;
		}
		if (bad_bytes || f->user_meta_len > FRAMEBUS_USER_META_MAX) {
			refuse(s, l1, bad_bytes ? "bytes > slot_capacity" : "user_meta_len > 64");
			f->seq = 0;
			return 1;
		}
		if (copy && (B.flags & FRAMEBUS_FLAG_CHECKSUM) && f->bytes > 0)
			f->crc_bad = crc32c(frame_buf, (size_t)f->bytes) != f->checksum;
		return 1;
	}
}

/* ---- holds (amendment 10; framebus.h, "Holds") ------------------------------------------ */

enum { HOLD_GRANTED, HOLD_OVERWRITTEN, HOLD_CAP, HOLD_UNSUPPORTED };

/* Takes back what G1 set: the slot's pending bit, and the slot's bit unless an earlier hold
 * of the same slot still keeps it (one bit per slot). */
static void hold_withdraw(uint32_t s)
{
	uint32_t clear = FRAMEBUS_HOLD_PENDING(s) | (held_count[s] == 0 ? 1u << s : 0);
	__atomic_fetch_and(&B.me->hold_mask, ~clear, SEQ_CST);
}

static int hold_refuse(int why)
{
	S.hold_refused++;
	if (why != HOLD_UNSUPPORTED) { /* on a bus without holds these are reserved bytes */
		__atomic_fetch_add(&B.me->holds_refused, 1, SEQ_CST);
		__atomic_fetch_add(&B.h->holds_refused, 1, SEQ_CST);
	}
	return why;
}

/* The grant, G1-G5, right after a read of slot s under even lock value l1. Never waits. */
static int hold_grant(uint32_t s, uint64_t l1)
{
	if (!(B.flags & FRAMEBUS_FLAG_HOLDS))
		return hold_refuse(HOLD_UNSUPPORTED);
	framebus_consumer_entry *me = B.me;
	uint64_t *lock = &B.slots[s].lock;
	uint32_t n = B.slot_count, bits = (1u << n) - 1;
	__atomic_fetch_or(&me->hold_mask, (1u << s) | FRAMEBUS_HOLD_PENDING(s), SEQ_CST); /* G1 */
	if (__atomic_load_n(lock, SEQ_CST) != l1) {                                    /* G2 */
		hold_withdraw(s);
		return hold_refuse(HOLD_OVERWRITTEN);
	}
	uint32_t u = 0; /* G3: the slots held or being granted, ours included */
	for (uint32_t i = 0; i < B.consumer_capacity; i++) {
		framebus_consumer_entry *e = &B.table[i];
		if (__atomic_load_n(&e->state, SEQ_CST) == FRAMEBUS_ENTRY_ACTIVE)
			u |= __atomic_load_n(&e->hold_mask, SEQ_CST) & bits;
	}
	if ((uint32_t)__builtin_popcount(u) > n - 2) {
		hold_withdraw(s);
		return hold_refuse(HOLD_CAP);
	}
	__atomic_fetch_and(&me->hold_mask, ~FRAMEBUS_HOLD_PENDING(s), SEQ_CST); /* G4 */
	if (__atomic_load_n(lock, SEQ_CST) != l1) {                          /* G5 */
		hold_withdraw(s);
		return hold_refuse(HOLD_OVERWRITTEN);
	}
	held_count[s]++;
	S.holds++;
	__atomic_fetch_add(&me->holds_granted, 1, SEQ_CST);
	__atomic_fetch_add(&B.h->holds_granted, 1, SEQ_CST);
	return HOLD_GRANTED;
}

/* Ends one hold of slot s: the bit is cleared with the last of them. */
static void hold_release(uint32_t s)
{
	if (held_count[s] == 0)
		return;
	if (--held_count[s] == 0)
		__atomic_fetch_and(&B.me->hold_mask, ~(1u << s), SEQ_CST);
}

/* A refused hold: the frame copied out of the view under its sequence lock. 0: torn. */
static int copy_checked(struct frame *f)
{
	memcpy(frame_buf, f->view, (size_t)f->bytes);
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	if (__atomic_load_n(&B.slots[f->slot].lock, RELAXED) != f->lock)
		return 0;
	if (B.flags & FRAMEBUS_FLAG_CHECKSUM)
		f->crc_bad = crc32c(frame_buf, (size_t)f->bytes) != f->checksum;
	return 1;
}

/* Keeps a granted hold hold_ns long, checking every 10 ms that neither the bytes (their
 * CRC-32C at the start of the hold) nor the slot's lock changed, then releases it. The first
 * bytes go to frame_buf for the frame's line. */
static void hold_keep(struct frame *f)
{
	const uint8_t *v = f->view;
	size_t n = (size_t)f->bytes;
	uint64_t *lock = &B.slots[f->slot].lock;
	memcpy(frame_buf, v, n < 8 ? n : 8);
	uint32_t c0 = crc32c(v, n);
	if (B.flags & FRAMEBUS_FLAG_CHECKSUM)
		f->crc_bad |= c0 != f->checksum;
	uint64_t end = now_ns() + hold_ns;
	int changed = 0;
	for (;;) {
		uint64_t now = now_ns();
		if (now >= end || stop_sig || bus_truncated())
			break;
		uint64_t d = end - now < 10000000u ? end - now : 10000000u;
		struct timespec ts = {0, (long)d};
		nanosleep(&ts, NULL);
		if (crc32c(v, n) != c0 || __atomic_load_n(lock, SEQ_CST) != f->lock) {
			changed = 1;
			break;
		}
	}
	if (!changed)
		changed = crc32c(v, n) != c0 || __atomic_load_n(lock, SEQ_CST) != f->lock;
	if (changed && !bus_truncated()) {
		S.overwritten_held++;
		fprintf(stderr, "consumer: frame %" PRIu64 " in slot %" PRIu32 " changed while held "
				"(lock %" PRIu64 " -> %" PRIu64 ", taken back %" PRIu64 ")\n",
			f->seq, f->slot, f->lock, __atomic_load_n(lock, SEQ_CST),
			__atomic_load_n(&B.me->holds_taken_back, SEQ_CST));
	}
	hold_release(f->slot);
	f->held = 0;
}

/* Reads the newest frame and applies section 5 step 4. Returns 1 if a new frame was taken
 * (f says which; the end of stream sets S.eos), 0 if there was nothing new, or if the mapping
 * was found truncated (the frame read is then zeros, or part zeros: never delivered). With
 * --hold a data frame is taken only with a hold granted, or copied out under its lock. */
static int take_newest(struct frame *f, uint64_t deadline, int copy)
{
	for (;;) {
		f->held = 0;
		if (!read_newest(f, deadline, copy) || bus_truncated() || f->seq == 0 ||
		    f->seq <= S.last_seq)
			return 0;
		if (hold_ns == 0 || (f->frame_flags & FRAMEBUS_FRAME_EOS) || f->bytes == 0)
			break;
		int r = hold_grant(f->slot, f->lock);
		if (bus_truncated()) {
			if (r == HOLD_GRANTED)
				hold_release(f->slot);
			return 0;
		}
		if (r == HOLD_GRANTED) {
			f->held = 1;
			break;
		}
		if (r != HOLD_OVERWRITTEN && copy_checked(f) && !bus_truncated())
			break;
		if (bus_truncated())
			return 0;
		/* Overwritten before the grant finished, or while being copied: a torn read. */
		S.torn++;
		__atomic_fetch_add(&B.me->torn_retries, 1, SEQ_CST);
	}
	uint64_t gap = f->seq > S.last_seq + 1 ? f->seq - S.last_seq - 1 : 0;
	if (gap > 0) {
		S.dropped += gap;
		__atomic_fetch_add(&B.me->dropped, gap, SEQ_CST);
	}
	S.last_seq = f->seq;
	__atomic_store_n(&B.me->last_seq, f->seq, SEQ_CST);
	__atomic_fetch_add(&B.me->delivered, 1, SEQ_CST);
	S.gap = gap;

	if (f->frame_flags & FRAMEBUS_FRAME_EOS) {
		if (f->bytes != 0)
			fprintf(stderr, "consumer: end-of-stream frame %" PRIu64 " has bytes %" PRIu64
					", want 0\n", f->seq, f->bytes);
		S.eos = 1;
		return 1;
	}
	if (spin_limit > 0)
		spin_learn(f->seq, (int64_t)f->commit_ns); /* the end of stream keeps no rhythm */
	if (f->crc_bad) {
		S.crc_bad++;
		fprintf(stderr, "consumer: frame %" PRIu64 ": crc32c mismatch (descriptor says 0x%08"
				PRIx32 ")\n", f->seq, f->checksum);
	}
	S.delivered++;
	return 1;
}

/* The line of a delivered data frame (the test mode): its first bytes are in frame_buf. */
static void print_frame(const struct frame *f)
{
	uint8_t first[8] = {0};
	memcpy(first, frame_buf, f->bytes < 8 ? (size_t)f->bytes : 8);
	printf("frame %" PRIu64 " %" PRIu64 " %d ", f->seq, f->bytes, !f->crc_bad);
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

/* One delivered frame in bench mode: the copy out of the slot and its re-validation (the
 * read), the lockstep ack, and the sample of a measured frame: tcall when the consumer
 * started waiting, t0 the producer's clock before the hand-off (from the metadata), t1 the
 * wake (the frame read and validated), t2 the end of the copy. */
static void bench_frame(const struct frame *f, int64_t tcall, int64_t t1)
{
	if (f->frame_flags & FRAMEBUS_FRAME_EOS)
		return;
	if (f->user_meta_len != BENCH_META_LEN)
		die(EXIT_INVALID, "frame %" PRIu64 ": %" PRIu32 " bytes of metadata, want %d", f->seq,
		    f->user_meta_len, BENCH_META_LEN);
	uint32_t phase = f->user_meta[0];
	int64_t t0;
	memcpy(&t0, f->user_meta + 1, 8);
	memcpy(frame_buf, f->view, (size_t)f->bytes);
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	int valid = __atomic_load_n(&B.slots[f->slot].lock, RELAXED) == f->lock;
	int64_t t2 = (int64_t)now_ns();
	if (BM.ctl != NULL)
		benchctl_ack(BM.ctl, (uint32_t)(1 + S.gap), BM.consumers);
	if (phase != BENCH_PHASE_MEASURE)
		return;
	fprintf(BM.samples, "s %" PRId64 " %" PRId64 " %" PRId64 " %" PRId64 " %" PRIu64 " %" PRIu64
			    " %" PRIu64 "\n", tcall, t0, t1, t2, f->commit_ns, S.gap, f->bytes);
	if (!BM.measured) {
		BM.measured = 1;
		BM.cpu0 = bench_cpu_ns(); /* as the Go sampler: at the first measured frame */
	}
	BM.torn += f->torn;
	if (!valid)
		BM.overwritten++;
}

static void bench_write(void)
{
	int64_t cpu1 = bench_cpu_ns();
	if (fclose(BM.samples) != 0)
		die(EXIT_SYSTEM, "samples: %s", strerror(errno));
	FILE *out = fopen(BM.out, "w");
	if (out == NULL)
		die(EXIT_SYSTEM, "open %s: %s", BM.out, strerror(errno));
	fprintf(out, "framebus-bench-c 1\nrole consumer\ncpu0 %" PRId64 "\ncpu1 %" PRId64
		     "\ntorn %" PRIu64 "\noverwritten %" PRIu64 "\n",
		BM.cpu0, cpu1, BM.torn, BM.overwritten);
	if (spin_limit > 0)
		fprintf(out, "spin %" PRIu64 " %" PRIu64 "\n", spin_hits, spin_misses);
	if (BM.buf_len > 0)
		fwrite(BM.buf, 1, BM.buf_len, out);
	if (fclose(out) != 0)
		die(EXIT_SYSTEM, "write %s: %s", BM.out, strerror(errno));
}

/* ---- liveness and generations (sections 2 and 5) ---------------------------------------- */

/* 1 if the file behind the name is not the one we have mapped (a new generation). */
static int name_moved(void)
{
	struct stat st;
	if (stat(B.path, &st) != 0)
		return 0;
	return st.st_dev != B.dev || st.st_ino != B.ino;
}

/* 1 if the name still names the file we have mapped. */
static int name_is_ours(void)
{
	struct stat st;
	return stat(B.path, &st) == 0 && st.st_dev == B.dev && st.st_ino == B.ino;
}

static void choose_wake(void);
static void finish_on_signal(void) __attribute__((noreturn));

/* Leaves this generation and joins the segment behind the name, waiting (until deadline)
 * while it is missing or not usable yet: the producer may be replacing a truncated file,
 * and a file just renamed over the name may itself be truncated before we map it. */
static void rejoin(uint64_t deadline)
{
	uint64_t old_gen = B.generation;
	leave_table();
	detach();
	for (;;) {
		if (stop_sig)
			finish_on_signal();
		if (attach(B.path, deadline, 1) == 0)
			break;
		if (now_ns() >= deadline)
			die(EXIT_GONE, "no usable segment at %s after generation %" PRIu64 ": %s", B.path,
			    old_gen, attach_why);
		if (!owner_alive())
			die(EXIT_GONE, "%s: producer gone (no lock on %s); last try: %s", B.path,
			    lock_path, attach_why);
		struct timespec ts = {0, 2 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	uint64_t keep = S.last_seq;
	join_table();
	/* Amendment 1: when the new generation continued the numbering, keep our last_seq
	 * (frames committed before we joined, or lost to a truncation, count as dropped);
	 * when it restarted, restart the gap accounting at its last_seq. */
	if (S.last_seq >= keep) {
		S.last_seq = keep;
		__atomic_store_n(&B.me->last_seq, keep, SEQ_CST);
	}
	choose_wake();
	S.generations++;
	fprintf(stderr, "consumer: joined generation %" PRIu64 " (was %" PRIu64
			"), entry %" PRIu32 ", last_seq %" PRIu64 "\n",
		B.generation, old_gen, B.index, S.last_seq);
}

static void follow_generation(uint64_t deadline)
{
	rejoin(deadline);
}

/* The segment was found truncated under our mapping (a fault replaced it with zeros, or its
 * file is shorter than total_size): what was being read is dropped, and we rejoin by name. */
static void on_truncated(uint64_t deadline)
{
	S.truncations++;
	fprintf(stderr, "consumer: the segment %s (generation %" PRIu64 ") was truncated under "
			"our mapping (%s): rejoining\n", B.path, B.generation,
		bus_truncated() ? "a memory fault read zeros" : "its file is short");
	rejoin(deadline);
}

/* SIGINT or SIGTERM: holds released and the entry left, the summary, then the signal. */
static void finish_on_signal(void)
{
	int sig = stop_sig;
	fprintf(stderr, "consumer: signal %d: leaving\n", sig);
	leave_table(); /* clears hold_mask before the CAS 2 -> 0 */
	if (ever_joined)
		print_summary();
	detach();
	signal(sig, SIG_DFL);
	raise(sig);
	_exit(128 + sig);
}

/* Amendment 9: our last_seq ahead of the bus's while the active slot holds an intact frame
 * of exactly the bus's number means a forged word moved us ahead: take the bus's number,
 * or every real frame would be "nothing new" for good. */
static void resync(void)
{
	uint64_t last = __atomic_load_n(&B.h->last_seq, SEQ_CST);
	if (last >= S.last_seq)
		return;
	uint32_t a = __atomic_load_n(&B.h->active, SEQ_CST);
	if (a >= B.slot_count)
		return;
	framebus_slot_desc *d = &B.slots[a];
	uint64_t l1 = __atomic_load_n(&d->lock, SEQ_CST);
	uint64_t seq = __atomic_load_n(&d->frame_seq, RELAXED);
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	if ((l1 & 1) || __atomic_load_n(&d->lock, RELAXED) != l1 || seq != last)
		return;
	fprintf(stderr, "consumer: our last frame %" PRIu64 " is ahead of the bus's last_seq %" PRIu64
			": re-synchronised\n", S.last_seq, last);
	S.resyncs++;
	S.last_seq = last;
	__atomic_store_n(&B.me->last_seq, last, SEQ_CST);
	memset(&SP, 0, sizeof SP);
}

/* Called after every wait timeout, and whenever the header state is not READY. */
static void check_producer(uint64_t deadline)
{
	struct stat fst;
	if (bus_truncated() ||
	    (fstat(B.fd, &fst) == 0 && (uint64_t)fst.st_size < B.total_size)) {
		on_truncated(deadline);
		return;
	}
	uint32_t st = __atomic_load_n(&B.h->state, SEQ_CST);
	if (name_moved()) {
		follow_generation(deadline);
		return;
	}
	if (st == FRAMEBUS_STATE_READY)
		retired_noted = 0;
	switch (st) {
	case FRAMEBUS_STATE_READY:
		break;
	case FRAMEBUS_STATE_RETIRED:
		/* The new file is renamed over the name before the old one is retired, so no
		 * new file here means the producer closed; but RETIRED on the very file behind
		 * the name while its producer holds the lock is a word forged by somebody else
		 * (a closing producer removes the name before it lets go of the lock): ignore
		 * it, counted, and go on with the checks of a READY segment. */
		if (name_is_ours() && owner_alive()) {
			if (!retired_noted) {
				retired_noted = 1;
				S.retired_ignored++;
				fprintf(stderr, "consumer: %s: state RETIRED, but the name still names "
						"this file and its producer is alive: ignored\n", B.path);
			}
			break;
		}
		die(EXIT_GONE, "%s: segment RETIRED without an end-of-stream frame", B.path);
	case FRAMEBUS_STATE_BROKEN:
		/* The producer may still publish a new generation: wait for it (idle timeout). */
		if (!owner_alive())
			die(EXIT_GONE, "%s: segment BROKEN and producer gone", B.path);
		return;
	default:
		die(EXIT_GONE, "%s: segment state %" PRIu32 " (%s)", B.path, st, state_name(st));
	}
	if (!owner_alive())
		die(EXIT_GONE, "%s: producer gone (no lock on %s)", B.path, lock_path);
	resync();
	uint64_t hb = __atomic_load_n(&B.h->heartbeat_ns, SEQ_CST);
	uint64_t now = now_ns();
	uint64_t stale = 3ull * B.interval_ms * 1000000u;
	if (now > hb && now - hb > stale)
		die(EXIT_GONE, "%s: producer stalled: heartbeat %.1f ms old (interval %" PRIu32
			       " ms)", B.path, (double)(now - hb) / 1e6, B.interval_ms);
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

/* The wait mode of the generation just attached. */
static void choose_wake(void)
{
	int flagged = (B.flags & FRAMEBUS_FLAG_SHARED_WAKE) != 0;
	if (wake_mode == WAKE_SHARED && !flagged)
		die(EXIT_INVALID, "%s: --wake shared, but the producer keeps no shared wake word "
				  "(flags 0x%" PRIx32 ")", B.path, B.flags);
	use_shared = wake_mode == WAKE_SHARED || (wake_mode == WAKE_AUTO && flagged);
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
				wake_mode = WAKE_SEM;
			else if (strcmp(v, "shared") == 0)
				wake_mode = WAKE_SHARED;
			else if (strcmp(v, "auto") == 0)
				wake_mode = WAKE_AUTO;
			else
				usage();
		} else if (strcmp(a, "--spin") == 0) {
			uint64_t us = parse_u64(v, "--spin");
			if (us > 1000000)
				die(EXIT_USAGE, "--spin %" PRIu64 ": at most 1000000 us", us);
			spin_limit = (int64_t)us * 1000;
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
	lock_path = strcmp(argv[i + 1], "-") == 0 ? NULL : argv[i + 1];
	uint64_t count = parse_u64(argv[i + 2], "count");
	uint64_t timeout_ns = parse_u64(argv[i + 3], "timeout_ms") * 1000000u;
	int bench = BM.out != NULL;

	setvbuf(stdout, NULL, _IOLBF, 0);
	crc32c_init();
	if (fbguard_install() != 0) /* a truncated segment reads zeros, never SIGBUS */
		die(EXIT_SYSTEM, "sigaction SIGBUS: %s", strerror(errno));
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_stop; /* no SA_RESTART: a futex wait or a hold's sleep ends early */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (bench)
		bench_open();

	uint64_t idle_deadline = now_ns() + timeout_ns;
	attach(path, idle_deadline, 0);
	if (fault_outside_test)
		fault_outside(); /* with the bus's regions registered */
	choose_wake();
	join_table();
	if (BM.ctl != NULL)
		__atomic_store_n(benchctl_waiter(BM.ctl, BM.index, BENCHCTL_W_ENTRY), B.index + 1, SEQ_CST);

	/* The loop of framebus's Next: a read first (a frame committed between our last_seq
	 * snapshot and state 2 woke nobody, amendment 2), then, with nothing new, the wait; the
	 * wake's heartbeat is stored after the read (the entry's line is the one the producer's
	 * step 6 just wrote: fetching it back first would add its transfer to the latency). */
	int64_t tcall = (int64_t)now_ns();
	int woke = 0, timed_out = 0;
	while (S.delivered < count && !S.eos) {
		struct frame f;
		if (stop_sig)
			finish_on_signal();
		if (bus_truncated()) {
			on_truncated(idle_deadline);
			continue;
		}
		int got = take_newest(&f, idle_deadline, !bench && hold_ns == 0);
		if (!got && bus_truncated())
			continue; /* the frame read was zeros: dropped, rejoin above */
		if (woke) {
			__atomic_store_n(&B.me->heartbeat_ns, now_ns(), SEQ_CST);
			woke = 0;
		}
		if (got) {
			int64_t t1 = (int64_t)now_ns();
			idle_deadline = (uint64_t)t1 + timeout_ns;
			timed_out = 0;
			if (f.held)
				hold_keep(&f); /* the analysis that keeps the frame, then the release */
			if (bench)
				bench_frame(&f, tcall, t1);
			else if (!S.eos)
				print_frame(&f);
			tcall = (int64_t)now_ns();
			continue;
		}
		uint64_t now = now_ns();
		if (now >= idle_deadline)
			die(EXIT_TIMEOUT, "no new frame for %" PRIu64 " ms", timeout_ns / 1000000u);
		/* Nothing new after a timeout, or RETIRED/BROKEN seen (amendment 4): look at the
		 * producer and the name now. */
		uint32_t st = __atomic_load_n(&B.h->state, SEQ_CST);
		if (timed_out || st != FRAMEBUS_STATE_READY) {
			uint64_t gen = B.generation;
			check_producer(idle_deadline);
			timed_out = 0;
			if (B.generation != gen) {
				choose_wake();
				continue;
			}
		}
		uint64_t wake_by = now + (uint64_t)B.interval_ms * 1000000u;
		if (wake_by > idle_deadline)
			wake_by = idle_deadline;
		if (wait_wake(wake_by)) {
			woke = 1;
			continue;
		}
		/* A heartbeat interval without a wake: refresh, check the entry, read, then look
		 * at the producer. */
		__atomic_store_n(&B.me->heartbeat_ns, now_ns(), SEQ_CST);
		check_entry();
		timed_out = 1;
	}

	leave_table();
	if (bench)
		bench_write();
	print_summary();
	detach();
	return 0;
}
