/*
 * consumer.c - a framebus consumer written from docs/PROTOCOL.md and framebus.h alone.
 *
 * It is an independent cross-check of the Go implementation: Linux only, C11 (gnu11).
 *
 *   gcc -O2 -std=gnu11 -Wall -Werror -I framebus/include \
 *       -o consumer framebus/testdata/c/consumer.c
 *   consumer <segment-path> <lock-path> <count> <timeout_ms>
 *
 * segment-path  the segment file, e.g. /dev/shm/framebus.cam0
 * lock-path     the producer's lock file (framebus.cam0.lock); "-" skips the owner check
 * count         stop after this many data frames (the end-of-stream frame stops it too)
 * timeout_ms    give up when no new frame arrives for this long (idle time, reset by each
 *               delivered frame)
 *
 * stdout, line buffered:
 *   frame <seq> <bytes> <crc_ok 1|0> <first 8 data bytes, 16 hex digits> <user_meta_len>
 *       one line per delivered data frame; crc_ok is 1 when the header does not set the
 *       checksum flag; frames shorter than 8 bytes are padded with 00.
 *   summary delivered=<n> dropped=<n> torn=<n> crc_bad=<n> eos=<0|1>
 *       printed on every exit after joining. delivered counts data frames (the end-of-stream
 *       frame is accounted in the table entry per section 5 step 4, but not printed or
 *       counted here); dropped = sequence gaps; torn = torn reads retried.
 * Diagnostics go to stderr.
 *
 * Exit codes: 0 done (count frames or end of stream), 1 system error, 2 usage,
 *             3 the segment violates the contract (header or descriptor), 4 idle timeout,
 *             5 producer gone, stalled, broken or retired without end of stream, table full.
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
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

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
	uint64_t last_seq; /* newest frame taken, in the current generation's numbering */
	uint64_t delivered;
	uint64_t dropped;
	uint64_t torn;
	uint64_t crc_bad;
	int eos;
};

static struct bus B = {.fd = -1};
static struct stats S;
static const char *lock_path;
static uint8_t *frame_buf;
static size_t frame_buf_len;
static int ever_joined; /* print the summary on every exit after the first join */

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
	       " crc_bad=%" PRIu64 " eos=%d\n",
	       S.delivered, S.dropped, S.torn, S.crc_bad, S.eos);
	fflush(stdout);
}

static void leave_table(void);

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

static void on_sigbus(int sig)
{
	static const char msg[] =
		"consumer: SIGBUS: the segment file was truncated under the mapping\n";
	(void)sig;
	ssize_t r = write(2, msg, sizeof msg - 1);
	(void)r;
	_exit(EXIT_GONE);
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

/* ---- CRC-32C (Castagnoli, reflected 0x82F63B78) --------------------------------------- */

static uint32_t crc_table[256];

static void crc32c_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		crc_table[i] = c;
	}
}

static uint32_t crc32c(const uint8_t *p, size_t n)
{
	uint32_t c = 0xFFFFFFFFu;
	while (n--)
		c = crc_table[(c ^ *p++) & 0xFF] ^ (c >> 8);
	return c ^ 0xFFFFFFFFu;
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

#define INVALID(...) die(EXIT_INVALID, __VA_ARGS__)

/* Opens and validates the segment, maps it. Waits (until deadline) while INITIALIZING. */
static void attach(const char *path, uint64_t deadline)
{
	int fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
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
			INVALID("%s: abi_version %u, want %d", path, hdr.abi_version,
				FRAMEBUS_ABI_VERSION);
		}
		if (hdr.state != FRAMEBUS_STATE_INITIALIZING)
			break;
		if (now_ns() >= deadline)
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
}

static void detach(void)
{
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
	uint32_t expect = FRAMEBUS_ENTRY_ACTIVE;
	__atomic_compare_exchange_n(&B.me->state, &expect, FRAMEBUS_ENTRY_FREE, 0, SEQ_CST,
				    SEQ_CST);
	ofd_lock(B.fd, F_UNLCK, entry_off(B.index), FRAMEBUS_CONSUMER_ENTRY_SIZE);
}

/* Re-joins if the entry is no longer ours (section 2). Keeps the local gap accounting. */
static void check_entry(void)
{
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

/* ---- waiting (section 5) ---------------------------------------------------------------- */

/* Returns 1 when woken (sem was > 0), 0 when the deadline passed without a wake. */
static int wait_wake(uint64_t deadline)
{
	framebus_consumer_entry *e = B.me;
	for (;;) {
		uint32_t n = __atomic_exchange_n(&e->sem, 0, SEQ_CST);
		if (n > 0)
			return 1;
		uint64_t now = now_ns();
		if (now >= deadline)
			return 0;
		uint64_t left = deadline - now;
		struct timespec ts = {(time_t)(left / 1000000000u), (long)(left % 1000000000u)};
		__atomic_fetch_add(&e->waiters, 1, SEQ_CST);
		/* Shared futex (FUTEX_WAIT, not FUTEX_WAIT_PRIVATE): the waker is another process. */
		long r = syscall(SYS_futex, &e->sem, FUTEX_WAIT, 0, &ts, NULL, 0);
		int err = errno;
		__atomic_fetch_sub(&e->waiters, 1, SEQ_CST);
		if (r != 0 && err != ETIMEDOUT && err != EAGAIN && err != EINTR)
			die(EXIT_SYSTEM, "futex wait: %s", strerror(err));
		/* Woken, sem changed, interrupted or timed out: re-check sem, then the deadline. */
	}
}

/* ---- reading (section 5) ---------------------------------------------------------------- */

struct frame {
	uint32_t slot;
	uint64_t seq;
	uint64_t bytes;
	uint32_t checksum;
	uint32_t frame_flags;
	uint32_t user_meta_len;
	uint8_t user_meta[FRAMEBUS_USER_META_MAX];
};

/* Reads the newest committed frame into f and frame_buf. 1 on success, 0 if the deadline
 * passed while the slot stayed odd. A torn read is never returned. */
static int read_newest(struct frame *f, uint64_t deadline)
{
	unsigned spins = 0;
	for (;;) {
		uint32_t s = __atomic_load_n(&B.h->active, SEQ_CST);
		if (s >= B.slot_count)
			INVALID("%s: active %" PRIu32 " >= slot_count %" PRIu32, B.path, s,
				B.slot_count);
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

		/* 2. Descriptor and data, each word loaded once; bounds checked before use. */
		f->slot = s;
		f->seq = __atomic_load_n(&d->frame_seq, RELAXED);
		f->bytes = __atomic_load_n(&d->bytes, RELAXED);
		f->checksum = __atomic_load_n(&d->checksum, RELAXED);
		f->frame_flags = __atomic_load_n(&d->frame_flags, RELAXED);
		f->user_meta_len = __atomic_load_n(&d->user_meta_len, RELAXED);
		memcpy(f->user_meta, d->user_meta, sizeof f->user_meta);
		int bad_bytes = f->bytes > B.slot_capacity;
		if (!bad_bytes && f->bytes > 0)
			memcpy(frame_buf, B.payload + (uint64_t)s * B.slot_stride, (size_t)f->bytes);

		/* 3. Load fence between the data reads and the second lock load. */
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		uint64_t l2 = __atomic_load_n(&d->lock, RELAXED);
		if (l2 != l1) {
			S.torn++;
			__atomic_fetch_add(&B.me->torn_retries, 1, SEQ_CST);
			continue;
		}

		/* A stable descriptor that breaks the contract is the producer's bug. */
		if (bad_bytes)
			INVALID("%s: slot %" PRIu32 " frame %" PRIu64 ": bytes %" PRIu64
				" > slot_capacity %" PRIu64, B.path, s, f->seq, f->bytes,
				B.slot_capacity);
		if (f->user_meta_len > FRAMEBUS_USER_META_MAX)
			INVALID("%s: slot %" PRIu32 " frame %" PRIu64 ": user_meta_len %" PRIu32
				" > %d", B.path, s, f->seq, f->user_meta_len,
				FRAMEBUS_USER_META_MAX);
		return 1;
	}
}

/* Reads the newest frame and applies section 5 step 4. Returns 1 if a new frame was taken. */
static int take_newest(uint64_t deadline)
{
	struct frame f;
	if (!read_newest(&f, deadline))
		return 0;
	if (f.seq <= S.last_seq)
		return 0; /* nothing new (or an older frame seen through a stale active) */
	if (f.seq > S.last_seq + 1) {
		uint64_t gap = f.seq - S.last_seq - 1;
		S.dropped += gap;
		__atomic_fetch_add(&B.me->dropped, gap, SEQ_CST);
	}
	S.last_seq = f.seq;
	__atomic_store_n(&B.me->last_seq, f.seq, SEQ_CST);
	__atomic_fetch_add(&B.me->delivered, 1, SEQ_CST);

	if (f.frame_flags & FRAMEBUS_FRAME_EOS) {
		if (f.bytes != 0)
			fprintf(stderr, "consumer: end-of-stream frame %" PRIu64 " has bytes %" PRIu64
					", want 0\n", f.seq, f.bytes);
		S.eos = 1;
		return 1;
	}

	int crc_ok = 1;
	if (B.flags & FRAMEBUS_FLAG_CHECKSUM) {
		uint32_t c = crc32c(frame_buf, (size_t)f.bytes);
		if (c != f.checksum) {
			crc_ok = 0;
			S.crc_bad++;
			fprintf(stderr, "consumer: frame %" PRIu64 ": crc32c 0x%08" PRIx32
					", descriptor says 0x%08" PRIx32 "\n", f.seq, c, f.checksum);
		}
	}
	uint8_t first[8] = {0};
	memcpy(first, frame_buf, f.bytes < 8 ? (size_t)f.bytes : 8);
	S.delivered++;
	printf("frame %" PRIu64 " %" PRIu64 " %d ", f.seq, f.bytes, crc_ok);
	for (int i = 0; i < 8; i++)
		printf("%02x", first[i]);
	printf(" %" PRIu32 "\n", f.user_meta_len);
	return 1;
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

static void follow_generation(uint64_t deadline)
{
	uint64_t old_gen = B.generation;
	leave_table();
	detach();
	attach(B.path, deadline);
	join_table(); /* restarts the gap accounting at the new generation's last_seq */
	fprintf(stderr, "consumer: joined generation %" PRIu64 " (was %" PRIu64
			"), entry %" PRIu32 ", last_seq %" PRIu64 "\n",
		B.generation, old_gen, B.index, S.last_seq);
}

/* Called after every wait timeout, and whenever the header state is not READY. */
static void check_producer(uint64_t deadline)
{
	uint32_t st = __atomic_load_n(&B.h->state, SEQ_CST);
	if (name_moved()) {
		follow_generation(deadline);
		return;
	}
	switch (st) {
	case FRAMEBUS_STATE_READY:
		break;
	case FRAMEBUS_STATE_RETIRED:
		/* The new file is renamed over the name before the old one is retired, so no
		 * new file here means the producer closed. */
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

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: consumer <segment-path> <lock-path|-> <count> <timeout_ms>\n");
		return EXIT_USAGE;
	}
	const char *path = argv[1];
	lock_path = strcmp(argv[2], "-") == 0 ? NULL : argv[2];
	uint64_t count = parse_u64(argv[3], "count");
	uint64_t timeout_ns = parse_u64(argv[4], "timeout_ms") * 1000000u;

	setvbuf(stdout, NULL, _IOLBF, 0);
	crc32c_init();
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_sigbus;
	sigaction(SIGBUS, &sa, NULL);

	uint64_t idle_deadline = now_ns() + timeout_ns;
	attach(path, idle_deadline);
	join_table();

	/* A frame committed between our last_seq snapshot and state 2 woke nobody: look once
	 * before the first wait. */
	while (S.delivered < count && !S.eos) {
		if (take_newest(idle_deadline))
			idle_deadline = now_ns() + timeout_ns;
		if (S.delivered >= count || S.eos)
			break;
		uint64_t now = now_ns();
		if (now >= idle_deadline)
			die(EXIT_TIMEOUT, "no new frame for %" PRIu64 " ms", timeout_ns / 1000000u);
		uint64_t wake_by = now + (uint64_t)B.interval_ms * 1000000u;
		if (wake_by > idle_deadline)
			wake_by = idle_deadline;
		int woken = wait_wake(wake_by);
		__atomic_store_n(&B.me->heartbeat_ns, now_ns(), SEQ_CST);
		check_entry();
		if (!woken || __atomic_load_n(&B.h->state, SEQ_CST) != FRAMEBUS_STATE_READY) {
			/* Drain first: a closing producer publishes end of stream before RETIRED. */
			if (take_newest(idle_deadline))
				idle_deadline = now_ns() + timeout_ns;
			if (S.delivered >= count || S.eos)
				break;
			check_producer(idle_deadline);
		}
	}

	leave_table();
	print_summary();
	detach();
	return 0;
}
