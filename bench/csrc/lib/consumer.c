/*
 * consumer.c - the consumer side of docs/PROTOCOL.md: open, validate and map a segment,
 * join its table (section 2), wait (section 5, amendments 7 and 11, the predictive spin of
 * framebus.h), read under the sequence lock (section 5, amendment 9, forged words refused), hold (amendment 10),
 * follow generations (section 2, amendments 1 and 4) and survive a truncated file (fbguard).
 *
 * This was framebus/testdata/c/consumer.c's protocol (the reference C consumer, an
 * independent cross-check of the Go transport written from the contract alone); that
 * program is now a thin command over this file.
 */
#include "internal.h"

#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>

#define FB_MAX_HOLDS 64 /* hold values out at once, per consumer */

/* One mapped generation. */
struct cseg {
	int fd;
	dev_t dev;
	ino_t ino;
	uint8_t *ctl; /* [0, payload_offset), read-write */
	size_t ctl_len;
	const uint8_t *payload; /* [payload_offset, total_size), read-only */
	size_t payload_len;
	int guard_ctl, guard_payload; /* our mappings in fbguard's registry */

	framebus_header *h;
	framebus_slot_desc *slots;
	framebus_consumer_entry *table;

	/* Validated copies, loaded once (the peer is not trusted). */
	uint32_t flags, slot_count, consumer_capacity, interval_ms;
	uint64_t generation, total_size, payload_offset, slot_stride, slot_capacity, cto;
	fb_format fmt;

	uint32_t held_count[FRAMEBUS_MAX_SLOTS]; /* our holds of each slot (one bit per slot) */
	int holds;        /* hold records on this generation */
	struct cseg *next; /* the list of generations left but kept for their holds */
};

/* What a spinning consumer learns of the stream (framebus.h, "Spinning consumer"). */
struct spin {
	uint64_t anchor_seq;
	int64_t anchor_commit;
	int64_t period;
	uint64_t next_seq;
	int64_t next;
	int64_t jitter;
	int64_t lo, hi;
	int64_t late;
	int bad;
	uint64_t missed;
	int samples;
};

struct hold_rec {
	struct cseg *seg;
	uint32_t slot;
	uint64_t lock;
	uint64_t serial; /* 0: free */
};

/* A frame as read (the internal form of fb_frame). */
struct rframe {
	uint32_t slot;
	uint64_t lock;
	uint64_t seq, bytes, commit_ns, capture_ns;
	uint32_t checksum, frame_flags, user_meta_len;
	uint8_t user_meta[FRAMEBUS_USER_META_MAX];
	uint64_t torn;
	int crc_bad;
	int short_buf;
	int held;
	int copied;
	const uint8_t *view;
	const uint8_t *data;
	fb_hold hold;
};

struct fb_consumer {
	char path[PATH_MAX], lock_path[PATH_MAX];
	int check_owner;
	fb_consumer_opts o;
	int closed;

	struct cseg *seg;  /* the current generation; NULL while between generations */
	struct cseg *kept; /* generations left with holds still out on them */

	int joined;
	uint32_t index;
	uint64_t token;
	framebus_consumer_entry *me;

	/* counters (fb_consumer_stats) and the gap accounting */
	uint64_t last_seq, delivered, dropped, torn, crc_bad, refused, resyncs;
	uint64_t holds_granted, holds_refused, truncations, generations, retired_ignored;
	uint64_t wake_repairs, spin_hits, spin_misses, gap;
	int eos;

	int use_shared;
	struct spin sp;
	int64_t spin_limit;
	uint32_t refused_slot;
	uint64_t refused_lock;
	int retired_noted;
	int sticky; /* the error that left us without a generation or an entry */
	int timed_out, woke, gen_changed;
	uint64_t last_check;

	uint8_t *copy_buf; /* hold_frames: refused holds are copied here */
	size_t copy_len;

	struct hold_rec holds[FB_MAX_HOLDS];
	uint64_t hold_serial;
	int nholds;

	char attach_why[256];
	char errmsg[FB_ERRMSG_LEN];
	char logbuf[FB_ERRMSG_LEN];
};

/* ---- messages ------------------------------------------------------------------------ */

static int fail(fb_consumer *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(fb_consumer *c, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->errmsg, sizeof c->errmsg, fmt, ap);
	va_end(ap);
	return code;
}

static void set_why(fb_consumer *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_why(fb_consumer *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->attach_why, sizeof c->attach_why, fmt, ap);
	va_end(ap);
}

static void logf_(fb_consumer *c, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void logf_(fb_consumer *c, int level, const char *fmt, ...)
{
	if (c->o.log == NULL)
		return;
	va_list ap;
	va_start(ap, fmt);
	fbi_vlog(c->o.log, c->o.log_arg, level, c->logbuf, fmt, ap);
	va_end(ap);
}

static int sys_code(int err)
{
	if (err == EACCES || err == EPERM)
		return FB_ERR_PERMISSION;
	if (err == ELOOP)
		return FB_ERR_UNSAFE_PATH;
	if (err == ENOMEM)
		return FB_ERR_NO_MEMORY;
	return FB_ERR_SYSTEM;
}

/* ---- mappings ------------------------------------------------------------------------ */

/* 1 when a memory fault found the current mapping truncated: what was read since is zeros
 * and must not be used. */
static int seg_truncated(const struct cseg *s)
{
	return s != NULL && (fbi_guard_truncated(s->guard_ctl) || fbi_guard_truncated(s->guard_payload));
}

static int bus_truncated(fb_consumer *c)
{
	return seg_truncated(c->seg);
}

static void seg_free(struct cseg *s)
{
	if (s == NULL)
		return;
	fbi_guard_remove(s->guard_ctl); /* before the munmap, always */
	fbi_guard_remove(s->guard_payload);
	if (s->ctl)
		munmap(s->ctl, s->ctl_len);
	if (s->payload)
		munmap((void *)s->payload, s->payload_len);
	if (s->fd >= 0)
		close(s->fd); /* drops every OFD lock of this description */
	free(s);
}

/* Leaves the current generation's mapping: freed, or kept while holds are out on it. */
static void detach(fb_consumer *c)
{
	struct cseg *s = c->seg;
	c->seg = NULL;
	if (s == NULL)
		return;
	if (s->holds > 0) {
		s->next = c->kept;
		c->kept = s;
		return;
	}
	seg_free(s);
}

/* 1: the owner's lock is held; 0: not; negative: error. */
static int owner_alive(fb_consumer *c)
{
	if (!c->check_owner)
		return 1;
	int err = 0;
	int r = fbi_lock_held(c->lock_path, &err);
	if (r < 0)
		return fail(c, sys_code(err), "F_OFD_GETLK %s: %s", c->lock_path, strerror(err));
	return r;
}

static void bump_version_mismatch(int fd)
{
	long page = sysconf(_SC_PAGESIZE);
	void *p = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return;
	/* version_mismatch_count is in the stable prefix (offset 56). A truncation between
	 * the pread and here would fault: the file is at least a header long, checked. */
	__atomic_fetch_add((uint64_t *)((uint8_t *)p + 56), 1, SEQ_CST);
	munmap(p, (size_t)page);
}

/* In attach: the file is not a usable segment. A failure (code), or with soft (a rejoin
 * after a truncation, while the producer may be replacing the file) 1, to retry. */
#define INVALID(code, ...)                                                                 \
	do {                                                                               \
		close(fd);                                                                 \
		if (soft) {                                                                \
			set_why(c, __VA_ARGS__);                                           \
			return 1;                                                          \
		}                                                                          \
		return fail(c, code, __VA_ARGS__);                                         \
	} while (0)

/* Opens and validates the segment, maps it. Waits (until deadline) while INITIALIZING, and
 * with wait while it is missing. 0 attached; 1 (soft only) missing or not usable; <0. */
static int attach(fb_consumer *c, uint64_t deadline, int soft, int wait)
{
	const char *path = c->path;
	int fd;
	for (;;) {
		fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
		if (fd >= 0 || errno != ENOENT || !wait || soft || fbi_now_ns() >= deadline)
			break;
		fbi_sleep_ns(2 * 1000 * 1000); /* wait_ms: not there yet */
	}
	if (fd < 0 && soft && errno == ENOENT) {
		set_why(c, "%s: no such file", path);
		return 1;
	}
	if (fd < 0) {
		int e = errno;
		if (e == ENOENT)
			return fail(c, FB_ERR_NOT_FOUND, "open %s: %s", path, strerror(e));
		return fail(c, sys_code(e), "open %s: %s", path, strerror(e));
	}

	struct stat st;
	framebus_header hdr;
	for (;;) {
		if (fstat(fd, &st) != 0) {
			int e = errno;
			close(fd);
			return fail(c, FB_ERR_SYSTEM, "fstat %s: %s", path, strerror(e));
		}
		if (!S_ISREG(st.st_mode))
			INVALID(FB_ERR_UNSAFE_PATH, "%s: not a regular file", path);
		if ((uint64_t)st.st_size < sizeof hdr)
			INVALID(FB_ERR_CORRUPT, "%s: file size %lld is smaller than the %d-byte header", path,
				(long long)st.st_size, FRAMEBUS_HEADER_SIZE);
		ssize_t n = pread(fd, &hdr, sizeof hdr, 0);
		if (n < 0) {
			int e = errno;
			close(fd);
			return fail(c, FB_ERR_SYSTEM, "pread %s: %s", path, strerror(e));
		}
		if ((size_t)n != sizeof hdr)
			INVALID(FB_ERR_CORRUPT, "%s: short header read (%zd of %zu bytes)", path, n, sizeof hdr);
		if (hdr.magic != FRAMEBUS_MAGIC)
			INVALID(FB_ERR_BAD_MAGIC, "%s: magic 0x%08" PRIx32 ", want 0x%08x", path, hdr.magic,
				FRAMEBUS_MAGIC);
		if (hdr.abi_version != FRAMEBUS_ABI_VERSION) {
			bump_version_mismatch(fd);
			soft = 0; /* a refusal, not a file in the making */
			INVALID(FB_ERR_VERSION, "%s: abi_version %u, want %d", path, hdr.abi_version,
				FRAMEBUS_ABI_VERSION);
		}
		if (hdr.state != FRAMEBUS_STATE_INITIALIZING)
			break;
		if (soft || fbi_now_ns() >= deadline)
			INVALID(FB_ERR_CORRUPT, "%s: state still INITIALIZING at the deadline", path);
		fbi_sleep_ns(10 * 1000 * 1000);
	}

	if (hdr.header_size != FRAMEBUS_HEADER_SIZE)
		INVALID(FB_ERR_CORRUPT, "%s: header_size %u, want %d", path, hdr.header_size, FRAMEBUS_HEADER_SIZE);
	if (hdr.state != FRAMEBUS_STATE_READY)
		INVALID(FB_ERR_CORRUPT, "%s: state %" PRIu32 " (%s), want READY", path, hdr.state,
			fbi_state_name(hdr.state));
	if (hdr.total_size != (uint64_t)st.st_size)
		INVALID(FB_ERR_CORRUPT, "%s: total_size %" PRIu64 " != file size %lld", path, hdr.total_size,
			(long long)st.st_size);
	if (hdr.total_size > SIZE_MAX)
		INVALID(FB_ERR_CORRUPT, "%s: total_size %" PRIu64 " does not fit in memory", path, hdr.total_size);
	if (hdr.slot_count < FRAMEBUS_MIN_SLOTS || hdr.slot_count > FRAMEBUS_MAX_SLOTS)
		INVALID(FB_ERR_CORRUPT, "%s: slot_count %" PRIu32 ", want %d..%d", path, hdr.slot_count,
			FRAMEBUS_MIN_SLOTS, FRAMEBUS_MAX_SLOTS);
	if (hdr.consumer_capacity < 1 || hdr.consumer_capacity > FRAMEBUS_MAX_CONSUMERS)
		INVALID(FB_ERR_CORRUPT, "%s: consumer_capacity %" PRIu32 ", want 1..%d", path,
			hdr.consumer_capacity, FRAMEBUS_MAX_CONSUMERS);
	if (hdr.slot_desc_size != FRAMEBUS_SLOT_DESC_SIZE)
		INVALID(FB_ERR_CORRUPT, "%s: slot_desc_size %" PRIu32 ", want %d", path, hdr.slot_desc_size,
			FRAMEBUS_SLOT_DESC_SIZE);
	if (hdr.consumer_entry_size != FRAMEBUS_CONSUMER_ENTRY_SIZE)
		INVALID(FB_ERR_CORRUPT, "%s: consumer_entry_size %" PRIu32 ", want %d", path,
			hdr.consumer_entry_size, FRAMEBUS_CONSUMER_ENTRY_SIZE);
	if (hdr.plane_count < 1 || hdr.plane_count > FRAMEBUS_MAX_PLANES)
		INVALID(FB_ERR_CORRUPT, "%s: plane_count %" PRIu32 ", want 1..%d", path, hdr.plane_count,
			FRAMEBUS_MAX_PLANES);
	if (hdr.payload_offset % FRAMEBUS_PAYLOAD_ALIGN != 0)
		INVALID(FB_ERR_CORRUPT, "%s: payload_offset %" PRIu64 " is not a multiple of %d", path,
			hdr.payload_offset, FRAMEBUS_PAYLOAD_ALIGN);
	if (hdr.payload_offset < FRAMEBUS_HEADER_SIZE || hdr.payload_offset > hdr.total_size)
		INVALID(FB_ERR_CORRUPT, "%s: payload_offset %" PRIu64 " outside [%d, total_size %" PRIu64 "]",
			path, hdr.payload_offset, FRAMEBUS_HEADER_SIZE, hdr.total_size);
	if (hdr.slot_stride == 0 || hdr.slot_stride % FRAMEBUS_PAYLOAD_ALIGN != 0)
		INVALID(FB_ERR_CORRUPT, "%s: slot_stride %" PRIu64 " is not a non-zero multiple of %d", path,
			hdr.slot_stride, FRAMEBUS_PAYLOAD_ALIGN);
	if (hdr.slot_stride > UINT64_MAX / FRAMEBUS_MAX_SLOTS ||
	    hdr.payload_size != hdr.slot_count * hdr.slot_stride)
		INVALID(FB_ERR_CORRUPT, "%s: payload_size %" PRIu64 " != slot_count %" PRIu32
			" * slot_stride %" PRIu64, path, hdr.payload_size, hdr.slot_count, hdr.slot_stride);
	if (hdr.payload_size > hdr.total_size - hdr.payload_offset)
		INVALID(FB_ERR_CORRUPT, "%s: payload [%" PRIu64 ", +%" PRIu64 ") exceeds total_size %" PRIu64,
			path, hdr.payload_offset, hdr.payload_size, hdr.total_size);
	if (hdr.slot_capacity > hdr.slot_stride)
		INVALID(FB_ERR_CORRUPT, "%s: slot_capacity %" PRIu64 " > slot_stride %" PRIu64, path,
			hdr.slot_capacity, hdr.slot_stride);
	if (hdr.slot_table_offset != FRAMEBUS_HEADER_SIZE)
		INVALID(FB_ERR_CORRUPT, "%s: slot_table_offset %" PRIu64 ", want %d", path, hdr.slot_table_offset,
			FRAMEBUS_HEADER_SIZE);
	uint64_t slot_end = hdr.slot_table_offset + (uint64_t)hdr.slot_count * FRAMEBUS_SLOT_DESC_SIZE;
	if (slot_end > hdr.payload_offset)
		INVALID(FB_ERR_CORRUPT, "%s: slot table [%" PRIu64 ", %" PRIu64 ") overlaps the payload at %" PRIu64,
			path, hdr.slot_table_offset, slot_end, hdr.payload_offset);
	uint64_t cto = hdr.consumer_table_offset;
	uint64_t tab_len = (uint64_t)hdr.consumer_capacity * FRAMEBUS_CONSUMER_ENTRY_SIZE;
	if (cto % 8 != 0 || cto < slot_end || cto > hdr.payload_offset || tab_len > hdr.payload_offset - cto)
		INVALID(FB_ERR_CORRUPT, "%s: consumer table [%" PRIu64 ", +%" PRIu64
			") not 8-aligned or outside [slot table end %" PRIu64 ", payload_offset %" PRIu64 ")",
			path, cto, tab_len, slot_end, hdr.payload_offset);
	for (uint32_t i = 0; i < hdr.plane_count; i++)
		if (hdr.plane_offset[i] > hdr.slot_capacity)
			INVALID(FB_ERR_CORRUPT, "%s: plane_offset[%" PRIu32 "] %" PRIu32 " > slot_capacity %" PRIu64,
				path, i, hdr.plane_offset[i], hdr.slot_capacity);

	struct cseg *s = calloc(1, sizeof *s);
	if (s == NULL) {
		close(fd);
		return fail(c, FB_ERR_NO_MEMORY, "out of memory");
	}
	s->fd = fd;
	s->guard_ctl = s->guard_payload = -1;
	void *ctl = mmap(NULL, (size_t)hdr.payload_offset, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (ctl == MAP_FAILED) {
		int e = errno;
		seg_free(s);
		return fail(c, FB_ERR_SYSTEM, "mmap control block of %s: %s", path, strerror(e));
	}
	s->ctl = ctl;
	s->ctl_len = (size_t)hdr.payload_offset;
	size_t payload_len = (size_t)(hdr.total_size - hdr.payload_offset);
	void *payload = mmap(NULL, payload_len ? payload_len : 1, PROT_READ, MAP_SHARED, fd,
			     (off_t)hdr.payload_offset);
	if (payload == MAP_FAILED) {
		int e = errno;
		seg_free(s);
		return fail(c, FB_ERR_SYSTEM, "mmap payload of %s: %s", path, strerror(e));
	}
	s->payload = payload;
	s->payload_len = payload_len ? payload_len : 1;
	/* From here on a truncation of the file reads zeros instead of killing us. */
	s->guard_ctl = fbi_guard_add(ctl, s->ctl_len, PROT_READ | PROT_WRITE);
	s->guard_payload = fbi_guard_add(payload, s->payload_len, PROT_READ);

	s->dev = st.st_dev;
	s->ino = st.st_ino;
	s->h = (framebus_header *)ctl;
	s->slots = (framebus_slot_desc *)(s->ctl + hdr.slot_table_offset);
	s->table = (framebus_consumer_entry *)(s->ctl + cto);
	s->flags = hdr.flags;
	s->slot_count = hdr.slot_count;
	s->consumer_capacity = hdr.consumer_capacity;
	s->interval_ms = hdr.heartbeat_interval_ms ? hdr.heartbeat_interval_ms : 1;
	if (s->interval_ms > 60000)
		s->interval_ms = 60000;
	s->generation = hdr.generation;
	s->total_size = hdr.total_size;
	s->payload_offset = hdr.payload_offset;
	s->slot_stride = hdr.slot_stride;
	s->slot_capacity = hdr.slot_capacity;
	s->cto = cto;
	s->fmt.width = hdr.width;
	s->fmt.height = hdr.height;
	s->fmt.pixel_format = hdr.pixel_format;
	s->fmt.plane_count = hdr.plane_count;
	memcpy(s->fmt.plane_stride, hdr.plane_stride, sizeof hdr.plane_stride);
	memcpy(s->fmt.plane_offset, hdr.plane_offset, sizeof hdr.plane_offset);
	s->fmt.fps_num = hdr.fps_num;
	s->fmt.fps_den = hdr.fps_den;
	s->fmt.max_frame_bytes = hdr.slot_capacity;
	c->seg = s;

	if (c->o.hold_frames && c->copy_len < hdr.slot_capacity) {
		free(c->copy_buf);
		c->copy_len = hdr.slot_capacity;
		c->copy_buf = malloc(c->copy_len ? c->copy_len : 1);
		if (c->copy_buf == NULL) {
			c->copy_len = 0;
			return fail(c, FB_ERR_NO_MEMORY, "malloc %zu bytes: out of memory", (size_t)hdr.slot_capacity);
		}
	}
	return 0;
}
#undef INVALID

/* ---- consumer table (section 2) ------------------------------------------------------ */

static uint64_t entry_off(const struct cseg *s, uint32_t i)
{
	return s->cto + (uint64_t)i * FRAMEBUS_CONSUMER_ENTRY_SIZE;
}

static uint64_t random_token(void)
{
	uint64_t t = 0;
	while (t == 0) {
		if (getrandom(&t, sizeof t, 0) != (ssize_t)sizeof t)
			t = fbi_now_ns() ^ ((uint64_t)getpid() << 32);
	}
	return t;
}

/* Joins the table; the entry's last_seq is the header's last_seq at join time. */
static int join_table(fb_consumer *c)
{
	struct cseg *B = c->seg;
	for (uint32_t i = 0; i < B->consumer_capacity; i++) {
		if (fbi_ofd_lock(B->fd, F_RDLCK, entry_off(B, i), FRAMEBUS_CONSUMER_ENTRY_SIZE) != 0) {
			if (errno == EAGAIN || errno == EACCES)
				continue; /* being reclaimed (exclusive lock): try another */
			return fail(c, FB_ERR_SYSTEM, "F_OFD_SETLK F_RDLCK on entry %" PRIu32 ": %s", i,
				    strerror(errno));
		}
		framebus_consumer_entry *e = &B->table[i];
		uint32_t expect = FRAMEBUS_ENTRY_FREE;
		if (!__atomic_compare_exchange_n(&e->state, &expect, FRAMEBUS_ENTRY_CLAIMING, 0, SEQ_CST, SEQ_CST)) {
			fbi_ofd_lock(B->fd, F_UNLCK, entry_off(B, i), FRAMEBUS_CONSUMER_ENTRY_SIZE);
			continue;
		}
		uint64_t token = random_token();
		__atomic_store_n(&e->token, token, SEQ_CST);
		__atomic_store_n(&e->pid, (uint32_t)getpid(), SEQ_CST);
		__atomic_store_n(&e->pidns, fbi_pid_namespace(), SEQ_CST); /* amendment 8 (creation and liveness across PID namespaces) */
		__atomic_store_n(&e->heartbeat_ns, fbi_now_ns(), SEQ_CST);
		uint64_t last = __atomic_load_n(&B->h->last_seq, SEQ_CST);
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
		if (!__atomic_compare_exchange_n(&e->state, &expect, FRAMEBUS_ENTRY_ACTIVE, 0, SEQ_CST, SEQ_CST)) {
			/* Impossible while we hold the lock, unless a peer breaks the rules. */
			logf_(c, FB_LOG_WARN, "entry %" PRIu32 " changed to state %" PRIu32
			      " while claiming; trying another", i, expect);
			fbi_ofd_lock(B->fd, F_UNLCK, entry_off(B, i), FRAMEBUS_CONSUMER_ENTRY_SIZE);
			continue;
		}
		c->joined = 1;
		c->index = i;
		c->token = token;
		c->me = e;
		c->last_seq = last;
		return 0;
	}
	return fail(c, FB_ERR_TABLE_FULL, "%s: no free consumer entry (consumer_capacity %" PRIu32 ")",
		    c->path, B->consumer_capacity);
}

static void leave_table(fb_consumer *c)
{
	if (!c->joined)
		return;
	c->joined = 0;
	struct cseg *B = c->seg;
	/* Amendment 10: every hold released before the CAS 2 -> 0. */
	__atomic_exchange_n(&c->me->hold_mask, 0, SEQ_CST);
	__atomic_store_n(&c->me->pidns, 0, SEQ_CST); /* amendment 8: before the CAS 2 -> 0 */
	uint32_t expect = FRAMEBUS_ENTRY_ACTIVE;
	__atomic_compare_exchange_n(&c->me->state, &expect, FRAMEBUS_ENTRY_FREE, 0, SEQ_CST, SEQ_CST);
	fbi_ofd_lock(B->fd, F_UNLCK, entry_off(B, c->index), FRAMEBUS_CONSUMER_ENTRY_SIZE);
}

/* Re-joins if the entry is no longer ours (section 2). Keeps the local gap accounting. */
static int check_entry(fb_consumer *c)
{
	if (bus_truncated(c))
		return 0; /* zeros: the loop rejoins */
	uint32_t st = __atomic_load_n(&c->me->state, SEQ_CST);
	uint64_t tok = __atomic_load_n(&c->me->token, SEQ_CST);
	if (st == FRAMEBUS_ENTRY_ACTIVE && tok == c->token)
		return 0;
	logf_(c, FB_LOG_WARN, "entry %" PRIu32 " is no longer ours (state %" PRIu32 "), re-joining",
	      c->index, st);
	fbi_ofd_lock(c->seg->fd, F_UNLCK, entry_off(c->seg, c->index), FRAMEBUS_CONSUMER_ENTRY_SIZE);
	c->joined = 0;
	uint64_t keep = c->last_seq;
	int r = join_table(c);
	if (r < 0)
		return r;
	c->last_seq = keep;
	__atomic_store_n(&c->me->last_seq, keep, SEQ_CST);
	return 0;
}

/* The wait mode of the generation just attached. */
static int choose_wake(fb_consumer *c)
{
	int flagged = (c->seg->flags & FRAMEBUS_FLAG_SHARED_WAKE) != 0;
	if (c->o.wake == FB_WAKE_SHARED && !flagged)
		return fail(c, FB_ERR_BAD_OPTIONS, "%s: --wake shared, but the producer keeps no shared wake "
			    "word (flags 0x%" PRIx32 ")", c->path, c->seg->flags);
	c->use_shared = c->o.wake == FB_WAKE_SHARED || (c->o.wake == FB_WAKE_AUTO && flagged);
	return 0;
}

/* ---- the predictive spin (framebus.h, "Spinning consumer"; framebus/spin.go) --------- */

#define SPIN_MIN_WINDOW 20000LL      /* the window closes this long after the 90th percentile */
#define SPIN_LEAD 100000LL           /* and opens this long before the 10th */
#define SPIN_MAX_PERIOD 1000000000LL /* slower streams are not worth a spin */
#define SPIN_LEARN 8                 /* frames predicted before the first spin */

static void spin_restart(struct spin *sp, uint64_t seq, int64_t commit, int64_t keep_period)
{
	int64_t late = sp->late;
	memset(sp, 0, sizeof *sp);
	sp->anchor_seq = seq;
	sp->anchor_commit = commit;
	sp->period = keep_period;
	sp->late = late;
}

/* Moves est, an estimate of the pct-th percentile of a stream, one step towards x. */
static int64_t quantile_step(int64_t est, int64_t x, int64_t step, int64_t pct)
{
	if (x < est)
		return est - step * (100 - pct) / 100;
	return est + step * pct / 100;
}

/* Takes the sequence number and commit time of a data frame just delivered. */
static void spin_learn(struct spin *sp, uint64_t seq, int64_t commit)
{
	if (sp->anchor_seq == 0 || seq <= sp->anchor_seq || commit <= sp->anchor_commit) {
		spin_restart(sp, seq, commit, 0);
		return;
	}
	sp->period = (commit - sp->anchor_commit) / (int64_t)(seq - sp->anchor_seq);
	if (sp->period <= 0 || sp->period > SPIN_MAX_PERIOD) {
		spin_restart(sp, seq, commit, 0);
		return;
	}
	if (sp->next == 0 || seq < sp->next_seq) {
		sp->next = commit + sp->period;
		sp->next_seq = seq + 1;
		return;
	}
	int64_t want = sp->next + (int64_t)(seq - sp->next_seq) * sp->period;
	int64_t err = commit - want;
	if (err > sp->period / 2 || err < -sp->period / 2) {
		if (++sp->bad >= 3) {
			spin_restart(sp, seq, commit, sp->period); /* the old period as a rough figure */
			return;
		}
		sp->next = want + sp->period; /* keep the phase */
		sp->next_seq = seq + 1;
		return;
	}
	sp->bad = 0;
	sp->next = want + err / 16 + sp->period;
	sp->next_seq = seq + 1;
	/* Arrivals are skewed (a producer is late now and then, never much early): the window
	 * follows percentiles of the error, in steps of a quarter of the mean error. */
	int64_t step = sp->jitter / 4 > 2000 ? sp->jitter / 4 : 2000;
	sp->lo = quantile_step(sp->lo, err, step, 10);
	sp->hi = quantile_step(sp->hi, err, step, 90);
	if (err < 0)
		err = -err;
	sp->jitter += (err - sp->jitter) / 8;
	sp->samples++;
}

static void spin_overslept(struct spin *sp, int64_t d)
{
	if (d < 0)
		d = 0;
	sp->late += (d - sp->late) / 8;
}

/* The spin window for the frame after last_seq: 0 while not locked, or once a spin for this
 * frame missed. */
static int spin_window(fb_consumer *c, int64_t *start, int64_t *end)
{
	struct spin *sp = &c->sp;
	uint64_t last_seq = c->last_seq;
	if (sp->samples < SPIN_LEARN || sp->missed == last_seq + 1 || sp->period <= 0 ||
	    last_seq + 1 < sp->next_seq)
		return 0;
	int64_t due = sp->next + (int64_t)(last_seq + 1 - sp->next_seq) * sp->period;
	int64_t lo = sp->lo - SPIN_LEAD, hi = sp->hi + SPIN_MIN_WINDOW;
	if (hi - lo > c->spin_limit)
		hi = lo + c->spin_limit;
	int64_t now = (int64_t)fbi_now_ns();
	if (due + hi < now) /* past the window: aim at the next period */
		due += ((now - due - hi) / sp->period + 1) * sp->period;
	*start = due + lo - sp->late;
	*end = due + hi;
	return 1;
}

/* ---- reading (section 5) ------------------------------------------------------------- */

/* Amendment 9: a read refused for a word no honest producer writes is counted, and the frame
 * in that slot under that lock is not looked at again. */
static void refuse(fb_consumer *c, uint32_t slot, uint64_t lock, const char *why)
{
	if (slot == c->refused_slot && lock == c->refused_lock)
		return;
	c->refused++;
	c->refused_slot = slot;
	c->refused_lock = lock;
	logf_(c, FB_LOG_WARN, "refused a read of slot %" PRIu32 ": %s", slot, why);
}

static int refused_here(fb_consumer *c, uint32_t slot, uint64_t lock)
{
	return c->refused != 0 && slot == c->refused_slot && lock == c->refused_lock;
}

/* The active slot holds a committed frame newer than the last one taken. */
static int frame_pending(fb_consumer *c)
{
	struct cseg *B = c->seg;
	uint32_t a = __atomic_load_n(&B->h->active, SEQ_CST);
	return a < B->slot_count && __atomic_load_n(&B->slots[a].frame_seq, SEQ_CST) > c->last_seq &&
	       !refused_here(c, a, __atomic_load_n(&B->slots[a].lock, SEQ_CST));
}

/* Reads the newest committed frame into f: with buf, the data copied into it inside the
 * sequence lock (checked against the checksum afterwards); without, a validated zero-copy
 * view, checksummed inside the lock. 1 on success (also when the frame is not new:
 * f->seq 0), 0 if the deadline passed while the slot stayed odd. Never a torn read. */
static int read_newest(fb_consumer *c, struct rframe *f, uint64_t deadline, uint8_t *buf, size_t buflen)
{
	struct cseg *B = c->seg;
	unsigned spins = 0;
	int check = (B->flags & FRAMEBUS_FLAG_CHECKSUM) && !c->o.skip_checksum;
	f->torn = 0;
	for (;;) {
		uint32_t s = __atomic_load_n(&B->h->active, SEQ_CST);
		f->seq = 0;
		if (s >= B->slot_count) {
			refuse(c, s, 0, "active out of range");
			return 1; /* forged or torn: the producer's next flip mends it */
		}
		framebus_slot_desc *d = &B->slots[s];

		/* 1. First lock load: seq_cst, so at least acquire for the reads below. */
		uint64_t l1 = __atomic_load_n(&d->lock, SEQ_CST);
		if (l1 & 1) {
			if (++spins % 1024 == 0) {
				if (fbi_now_ns() >= deadline)
					return 0;
				sched_yield();
			}
			continue;
		}

		/* 2. Descriptor and data, each word loaded once; bounds checked before use. */
		f->slot = s;
		f->lock = l1;
		f->seq = __atomic_load_n(&d->frame_seq, RELAXED);
		if (f->seq <= c->last_seq || refused_here(c, s, l1)) {
			f->seq = 0;
			return 1; /* nothing new (a stale active, or a frame refused already) */
		}
		f->bytes = __atomic_load_n(&d->bytes, RELAXED);
		f->checksum = __atomic_load_n(&d->checksum, RELAXED);
		f->frame_flags = __atomic_load_n(&d->frame_flags, RELAXED);
		f->user_meta_len = __atomic_load_n(&d->user_meta_len, RELAXED);
		f->commit_ns = __atomic_load_n(&d->commit_ns, RELAXED);
		f->capture_ns = __atomic_load_n(&d->capture_ns, RELAXED);
		uint32_t ml = f->user_meta_len <= FRAMEBUS_USER_META_MAX ? f->user_meta_len : FRAMEBUS_USER_META_MAX;
		memcpy(f->user_meta, d->user_meta, ml);
		int bad_bytes = f->bytes > B->slot_capacity;
		f->view = B->payload + (uint64_t)s * B->slot_stride;
		f->crc_bad = 0;
		f->short_buf = 0;
		if (!bad_bytes && f->bytes > 0) {
			if (buf != NULL) {
				if (f->bytes <= buflen)
					memcpy(buf, f->view, (size_t)f->bytes);
				else
					f->short_buf = 1;
			} else if (check)
				f->crc_bad = fbi_crc32c(f->view, (size_t)f->bytes) != f->checksum;
		}

		/* 3. Load fence between the data reads and the second lock load. */
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		uint64_t l2 = __atomic_load_n(&d->lock, RELAXED);
		if (l2 != l1) {
			c->torn++;
			f->torn++;
			__atomic_fetch_add(&c->me->torn_retries, 1, SEQ_CST);
			continue;
		}

		/* Amendment 9: a frame newer than the header's last_seq is not taken: one ahead
		 * is committed and not yet flipped (its flip and wake follow), more is a forged
		 * word. Impossible sizes are refused for this read too. */
		uint64_t last = __atomic_load_n(&B->h->last_seq, SEQ_CST);
		if (f->seq > last) {
			if (f->seq > last + 1)
				refuse(c, s, l1, "frame_seq newer than last_seq");
			f->seq = 0;
			return 1;
		}
		if (bad_bytes || f->user_meta_len > FRAMEBUS_USER_META_MAX) {
			refuse(c, s, l1, bad_bytes ? "bytes > slot_capacity" : "user_meta_len > 64");
			f->seq = 0;
			return 1;
		}
		if (buf != NULL && !f->short_buf && check && f->bytes > 0)
			f->crc_bad = fbi_crc32c(buf, (size_t)f->bytes) != f->checksum;
		return 1;
	}
}

/* ---- holds (amendment 10; framebus.h, "Holds") -------------------------------------- */

/* Takes back what G1 set: the slot's pending bit, and the slot's bit unless an earlier hold
 * of the same slot still keeps it (one bit per slot). */
static void hold_withdraw(fb_consumer *c, uint32_t s)
{
	uint32_t clear = FRAMEBUS_HOLD_PENDING(s) | (c->seg->held_count[s] == 0 ? 1u << s : 0);
	__atomic_fetch_and(&c->me->hold_mask, ~clear, SEQ_CST);
}

static int hold_refuse(fb_consumer *c, int why)
{
	c->holds_refused++;
	if (why != FB_HOLD_UNSUPPORTED && why != FB_HOLD_COPY && c->joined) {
		/* on a bus without holds these are reserved bytes */
		__atomic_fetch_add(&c->me->holds_refused, 1, SEQ_CST);
		__atomic_fetch_add(&c->seg->h->holds_refused, 1, SEQ_CST);
	}
	return why;
}

/* Whether a slot's lock is l1, read again a bounded number of times while it is l1 + 1: a
 * producer backing off at C4 (amendment 10) made the slot odd without writing it and stores
 * l1 back at once. Still odd after that, or any other value: the slot is being rewritten. */
static int lock_settles(const uint64_t *lock, uint64_t l1)
{
	uint64_t v = __atomic_load_n(lock, SEQ_CST);
	for (int i = 0; v == l1 + 1 && i < 4096; i++)
		v = __atomic_load_n(lock, SEQ_CST);
	return v == l1;
}

/* The grant, G1-G5, right after a read of slot s under even lock value l1. Never waits. */
static int hold_grant(fb_consumer *c, uint32_t s, uint64_t l1)
{
	struct cseg *B = c->seg;
	if (!(B->flags & FRAMEBUS_FLAG_HOLDS))
		return hold_refuse(c, FB_HOLD_UNSUPPORTED);
	if (c->nholds >= FB_MAX_HOLDS)
		return hold_refuse(c, FB_HOLD_CAP);
	framebus_consumer_entry *me = c->me;
	uint64_t *lock = &B->slots[s].lock;
	uint32_t n = B->slot_count, bits = (1u << n) - 1;
	__atomic_fetch_or(&me->hold_mask, (1u << s) | FRAMEBUS_HOLD_PENDING(s), SEQ_CST); /* G1 */
	if (!lock_settles(lock, l1)) {                                                 /* G2 */
		hold_withdraw(c, s);
		return hold_refuse(c, FB_HOLD_OVERWRITTEN);
	}
	uint32_t u = 0; /* G3: the slots held or being granted, ours included */
	for (uint32_t i = 0; i < B->consumer_capacity; i++) {
		framebus_consumer_entry *e = &B->table[i];
		if (__atomic_load_n(&e->state, SEQ_CST) == FRAMEBUS_ENTRY_ACTIVE)
			u |= __atomic_load_n(&e->hold_mask, SEQ_CST) & bits;
	}
	if ((uint32_t)__builtin_popcount(u) > n - 2) {
		hold_withdraw(c, s);
		return hold_refuse(c, FB_HOLD_CAP);
	}
	__atomic_fetch_and(&me->hold_mask, ~FRAMEBUS_HOLD_PENDING(s), SEQ_CST); /* G4 */
	if (!lock_settles(lock, l1)) {                                       /* G5 */
		hold_withdraw(c, s);
		return hold_refuse(c, FB_HOLD_OVERWRITTEN);
	}
	B->held_count[s]++;
	c->holds_granted++;
	__atomic_fetch_add(&me->holds_granted, 1, SEQ_CST);
	__atomic_fetch_add(&B->h->holds_granted, 1, SEQ_CST);
	return FB_HOLD_OK;
}

/* Records a granted hold of f's slot as a value for the caller. */
static void hold_record(fb_consumer *c, const struct rframe *f, fb_hold *h)
{
	int i = 0;
	while (c->holds[i].serial != 0)
		i++; /* a free record exists: nholds < FB_MAX_HOLDS was checked */
	struct hold_rec *r = &c->holds[i];
	r->seg = c->seg;
	r->slot = f->slot;
	r->lock = f->lock;
	r->serial = ++c->hold_serial;
	c->seg->holds++;
	c->nholds++;
	memset(h, 0, sizeof *h);
	h->data = f->view;
	h->bytes = (size_t)f->bytes;
	h->seq = f->seq;
	h->capture_ns = f->capture_ns;
	h->commit_ns = f->commit_ns;
	h->generation = c->seg->generation;
	h->_rec = (uint32_t)i;
	h->_serial = r->serial;
}

/* Ends one hold: the slot's bit cleared with the last hold of it; a generation left behind
 * is unmapped with its last hold. */
static void release_rec(fb_consumer *c, struct hold_rec *r)
{
	struct cseg *s = r->seg;
	if (s->held_count[r->slot] > 0 && --s->held_count[r->slot] == 0 && s == c->seg && c->joined &&
	    !seg_truncated(s))
		__atomic_fetch_and(&c->me->hold_mask, ~(1u << r->slot), SEQ_CST);
	s->holds--;
	c->nholds--;
	memset(r, 0, sizeof *r);
	if (s != c->seg && s->holds == 0) {
		for (struct cseg **p = &c->kept; *p != NULL; p = &(*p)->next)
			if (*p == s) {
				*p = s->next;
				seg_free(s);
				break;
			}
	}
}

/* A refused hold: the frame copied out of the view under its sequence lock. 0: torn. */
static int copy_checked(fb_consumer *c, struct rframe *f)
{
	struct cseg *B = c->seg;
	memcpy(c->copy_buf, f->view, (size_t)f->bytes);
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	if (__atomic_load_n(&B->slots[f->slot].lock, RELAXED) != f->lock)
		return 0;
	if ((B->flags & FRAMEBUS_FLAG_CHECKSUM) && !c->o.skip_checksum)
		f->crc_bad = fbi_crc32c(c->copy_buf, (size_t)f->bytes) != f->checksum;
	return 1;
}

/* Reads the newest frame and applies section 5 step 4. 1 if a new frame was taken (the end
 * of stream sets c->eos), 0 if there was nothing new or the mapping was found truncated,
 * FB_ERR_SHORT_BUFFER. With hold_frames a data frame is taken only with a hold granted, or
 * copied out under its lock. */
static int take_newest(fb_consumer *c, struct rframe *f, uint64_t deadline, uint8_t *buf, size_t buflen)
{
	int hold = c->o.hold_frames && buf == NULL;
	for (;;) {
		f->held = 0;
		f->copied = 0;
		if (!read_newest(c, f, deadline, buf, buflen) || bus_truncated(c) || f->seq == 0 ||
		    f->seq <= c->last_seq)
			return 0;
		if (f->short_buf && !(f->frame_flags & FRAMEBUS_FRAME_EOS))
			return FB_ERR_SHORT_BUFFER;
		f->data = buf != NULL ? buf : f->view;
		f->copied = buf != NULL;
		if (!hold || (f->frame_flags & FRAMEBUS_FRAME_EOS) || f->bytes == 0)
			break;
		int r = hold_grant(c, f->slot, f->lock);
		if (bus_truncated(c)) {
			if (r == FB_HOLD_OK && c->seg->held_count[f->slot] > 0)
				c->seg->held_count[f->slot]--;
			return 0;
		}
		if (r == FB_HOLD_OK) {
			f->held = 1;
			hold_record(c, f, &f->hold);
			break;
		}
		if (r != FB_HOLD_OVERWRITTEN && copy_checked(c, f) && !bus_truncated(c)) {
			f->data = c->copy_buf;
			f->copied = 1;
			break;
		}
		if (bus_truncated(c))
			return 0;
		/* Overwritten before the grant finished, or while being copied: a torn read. */
		c->torn++;
		__atomic_fetch_add(&c->me->torn_retries, 1, SEQ_CST);
	}
	uint64_t gap = f->seq > c->last_seq + 1 ? f->seq - c->last_seq - 1 : 0;
	if (gap > 0) {
		c->dropped += gap;
		__atomic_fetch_add(&c->me->dropped, gap, SEQ_CST);
	}
	c->last_seq = f->seq;
	__atomic_store_n(&c->me->last_seq, f->seq, SEQ_CST);
	__atomic_fetch_add(&c->me->delivered, 1, SEQ_CST);
	c->gap = gap;

	if (f->frame_flags & FRAMEBUS_FRAME_EOS) {
		if (f->bytes != 0)
			logf_(c, FB_LOG_WARN, "end-of-stream frame %" PRIu64 " has bytes %" PRIu64 ", want 0",
			      f->seq, f->bytes);
		c->eos = 1;
		return 1;
	}
	if (c->spin_limit > 0)
		spin_learn(&c->sp, f->seq, (int64_t)f->commit_ns); /* the end of stream keeps no rhythm */
	if (f->crc_bad) {
		c->crc_bad++;
		logf_(c, FB_LOG_WARN, "frame %" PRIu64 ": crc32c mismatch (descriptor says 0x%08" PRIx32 ")",
		      f->seq, f->checksum);
	}
	c->delivered++;
	return 1;
}

/* ---- waiting (section 5, amendments 7 and 11) ---------------------------------------- */

/* Watches for a new frame until one is there (1) or end passes (0). With the shared wake
 * word it watches that word and looks at the slot only when it changes. No pause
 * instruction: on a virtual machine a pause loop can make the host deschedule the vCPU. */
static int spin_for(fb_consumer *c, int64_t end)
{
	uint32_t *w = c->use_shared ? &c->seg->h->wake_seq : NULL;
	uint32_t seen = w ? __atomic_load_n(w, SEQ_CST) : 0;
	for (unsigned i = 0;; i++) {
		if (w == NULL || i == 0 || __atomic_load_n(w, SEQ_CST) != seen) {
			if (w != NULL)
				seen = __atomic_load_n(w, SEQ_CST);
			if (frame_pending(c)) {
				c->spin_hits++;
				return 1;
			}
		}
		if ((i & 255) == 255 && ((int64_t)fbi_now_ns() > end || bus_truncated(c))) {
			c->sp.missed = c->last_seq + 1;
			c->spin_misses++;
			return 0;
		}
	}
}

/* Sleeps until a wake. 1 when woken (a wake, a spin caught a frame, the mapping found
 * truncated), 0 when the deadline passed, FB_ERR_INTERRUPTED on a signal, <0 on an error.
 * The word and its expected value are read before the pending check, and the waiters word
 * written before the sleep, all seq_cst: the handshakes of section 5 and amendment 7 (the shared wake word).
 * Amendment 11 (wake words heal): the entry's waiters is stored 1 before the sleep and 0 after it; on the
 * shared word, a wait that timed out while wake_seq moved counts us in wake_waiters once
 * more, for good. */
static int wait_wake(fb_consumer *c, uint64_t deadline)
{
	framebus_consumer_entry *e = c->me;
	framebus_header *h = c->seg->h;
	for (;;) {
		if (bus_truncated(c))
			return 1;
		uint32_t *word, *waiters, val = 0;
		if (c->use_shared) {
			word = &h->wake_seq;
			waiters = &h->wake_waiters;
			val = __atomic_load_n(word, SEQ_CST);
		} else {
			if (__atomic_exchange_n(&e->sem, 0, SEQ_CST) > 0)
				return 1;
			word = &e->sem;
			waiters = &e->waiters;
		}
		uint64_t now = fbi_now_ns();
		if (now >= deadline)
			return 0;
		uint64_t timeout = deadline - now;
		int64_t early = 0, start, end;
		if (c->spin_limit > 0 && spin_window(c, &start, &end)) {
			if ((int64_t)now >= start) {
				if (spin_for(c, end))
					return 1;
				continue; /* missed: sleep for it as usual */
			}
			if ((uint64_t)(start - (int64_t)now) < timeout) {
				timeout = (uint64_t)(start - (int64_t)now);
				early = start;
			}
		}
		struct timespec ts = {(time_t)(timeout / 1000000000u), (long)(timeout % 1000000000u)};
		if (c->use_shared)
			__atomic_fetch_add(waiters, 1, SEQ_CST);
		else
			__atomic_store_n(waiters, 1, SEQ_CST); /* amendment 11 */
		if (c->use_shared && frame_pending(c)) {
			__atomic_fetch_sub(waiters, 1, SEQ_CST);
			return 1;
		}
		if (bus_truncated(c)) { /* a word above read zeros: no futex on them */
			if (c->use_shared)
				__atomic_fetch_sub(waiters, 1, SEQ_CST);
			return 1;
		}
		/* Shared futex (FUTEX_WAIT, not FUTEX_WAIT_PRIVATE): the waker is another process. */
		long r = syscall(SYS_futex, word, FUTEX_WAIT, val, &ts, NULL, 0);
		int err = errno;
		if (c->use_shared)
			__atomic_fetch_sub(waiters, 1, SEQ_CST);
		else
			__atomic_store_n(waiters, 0, SEQ_CST); /* amendment 11 */
		if (r != 0 && err != ETIMEDOUT && err != EAGAIN && err != EINTR)
			return fail(c, FB_ERR_SYSTEM, "futex wait: %s", strerror(err));
		if (c->use_shared && __atomic_load_n(word, SEQ_CST) != val) {
			if (r != 0 && err == ETIMEDOUT && !bus_truncated(c)) {
				/* Amendment 11: the producer committed and nothing woke us: we were
				 * not counted (wake_waiters forged low). Count us again. */
				__atomic_fetch_add(waiters, 1, SEQ_CST);
				c->wake_repairs++;
			}
			return 1;
		}
		if (r != 0 && err == EINTR)
			return fail(c, FB_ERR_INTERRUPTED, "interrupted by a signal");
		if (r != 0 && err == ETIMEDOUT && early != 0)
			spin_overslept(&c->sp, (int64_t)fbi_now_ns() - early); /* the window opens */
	}
}

/* ---- liveness and generations (sections 2 and 5) ------------------------------------- */

/* 1 if the file behind the name is not the one we have mapped (a new generation). */
static int name_moved(fb_consumer *c)
{
	struct stat st;
	if (stat(c->path, &st) != 0)
		return 0;
	return st.st_dev != c->seg->dev || st.st_ino != c->seg->ino;
}

static int name_is_ours(fb_consumer *c)
{
	struct stat st;
	return stat(c->path, &st) == 0 && st.st_dev == c->seg->dev && st.st_ino == c->seg->ino;
}

/* Leaves this generation and joins the segment behind the name, waiting (until deadline)
 * while it is missing or not usable yet: the producer may be replacing a truncated file,
 * and a file just renamed over the name may itself be truncated before we map it. */
static int rejoin(fb_consumer *c, uint64_t deadline)
{
	uint64_t old_gen = c->seg->generation;
	leave_table(c);
	detach(c);
	for (;;) {
		int r = attach(c, deadline, 1, 0);
		if (r < 0)
			return r;
		if (r == 0)
			break;
		if (fbi_now_ns() >= deadline)
			return fail(c, FB_ERR_PRODUCER_GONE, "no usable segment at %s after generation %" PRIu64
				    ": %s", c->path, old_gen, c->attach_why);
		int alive = owner_alive(c);
		if (alive < 0)
			return alive;
		if (!alive)
			return fail(c, FB_ERR_PRODUCER_GONE, "%s: producer gone (no lock on %s); last try: %s",
				    c->path, c->lock_path, c->attach_why);
		fbi_sleep_ns(2 * 1000 * 1000);
	}
	uint64_t keep = c->last_seq;
	int r = join_table(c);
	if (r < 0)
		return r;
	/* Amendment 1 (gap accounting across a generation change): when the new generation continued the numbering, keep our last_seq
	 * (frames committed before we joined, or lost to a truncation, count as dropped);
	 * when it restarted, restart the gap accounting at its last_seq. */
	if (c->last_seq >= keep) {
		c->last_seq = keep;
		__atomic_store_n(&c->me->last_seq, keep, SEQ_CST);
	}
	r = choose_wake(c);
	if (r < 0)
		return r;
	c->generations++;
	c->gen_changed = 1;
	c->retired_noted = 0;
	c->refused_slot = UINT32_MAX;
	logf_(c, FB_LOG_INFO, "joined generation %" PRIu64 " (was %" PRIu64 "), entry %" PRIu32
	      ", last_seq %" PRIu64, c->seg->generation, old_gen, c->index, c->last_seq);
	return 0;
}

/* The segment was found truncated under our mapping: what was being read is dropped, and
 * we rejoin by name. */
static int on_truncated(fb_consumer *c, uint64_t deadline)
{
	c->truncations++;
	logf_(c, FB_LOG_WARN, "the segment %s (generation %" PRIu64 ") was truncated under our mapping "
	      "(%s): rejoining", c->path, c->seg->generation,
	      bus_truncated(c) ? "a memory fault read zeros" : "its file is short");
	return rejoin(c, deadline);
}

/* Amendment 9: our last_seq ahead of the bus's while the active slot holds an intact frame of
 * exactly the bus's number means a forged word moved us ahead: take the bus's number. */
static void resync(fb_consumer *c)
{
	struct cseg *B = c->seg;
	uint64_t last = __atomic_load_n(&B->h->last_seq, SEQ_CST);
	if (last >= c->last_seq)
		return;
	uint32_t a = __atomic_load_n(&B->h->active, SEQ_CST);
	if (a >= B->slot_count)
		return;
	framebus_slot_desc *d = &B->slots[a];
	uint64_t l1 = __atomic_load_n(&d->lock, SEQ_CST);
	uint64_t seq = __atomic_load_n(&d->frame_seq, RELAXED);
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	if ((l1 & 1) || __atomic_load_n(&d->lock, RELAXED) != l1 || seq != last || bus_truncated(c))
		return;
	logf_(c, FB_LOG_WARN, "our last frame %" PRIu64 " is ahead of the bus's last_seq %" PRIu64
	      ": re-synchronised", c->last_seq, last);
	c->resyncs++;
	c->last_seq = last;
	__atomic_store_n(&c->me->last_seq, last, SEQ_CST);
	memset(&c->sp, 0, sizeof c->sp);
}

/* After a wait timeout, and whenever the header state is not READY. */
static int check_producer(fb_consumer *c, uint64_t deadline)
{
	struct cseg *B = c->seg;
	struct stat fst;
	if (bus_truncated(c) || (fstat(B->fd, &fst) == 0 && (uint64_t)fst.st_size < B->total_size))
		return on_truncated(c, deadline);
	uint32_t st = __atomic_load_n(&B->h->state, SEQ_CST);
	if (name_moved(c))
		return rejoin(c, deadline);
	if (st == FRAMEBUS_STATE_READY)
		c->retired_noted = 0;
	int alive;
	switch (st) {
	case FRAMEBUS_STATE_READY:
		break;
	case FRAMEBUS_STATE_RETIRED:
		/* The new file is renamed over the name before the old one is retired, so no new
		 * file here means the producer closed; but RETIRED on the very file behind the
		 * name while its producer holds the lock is a word forged by somebody else (a
		 * closing producer removes the name before it lets go of the lock): ignore it,
		 * counted, and go on with the checks of a READY segment. */
		alive = owner_alive(c);
		if (alive < 0)
			return alive;
		if (name_is_ours(c) && alive) {
			if (!c->retired_noted) {
				c->retired_noted = 1;
				c->retired_ignored++;
				logf_(c, FB_LOG_WARN, "%s: state RETIRED, but the name still names this file "
				      "and its producer is alive: ignored", c->path);
			}
			break;
		}
		return fail(c, FB_ERR_PRODUCER_GONE, "%s: segment RETIRED without an end-of-stream frame", c->path);
	case FRAMEBUS_STATE_BROKEN:
		/* The producer may still publish a new generation: wait for it. */
		alive = owner_alive(c);
		if (alive < 0)
			return alive;
		if (!alive)
			return fail(c, FB_ERR_PRODUCER_GONE, "%s: segment BROKEN and producer gone", c->path);
		return 0;
	default:
		if (bus_truncated(c)) /* the state read zeros: truncated since the look above */
			return on_truncated(c, deadline);
		return fail(c, FB_ERR_PRODUCER_GONE, "%s: segment state %" PRIu32 " (%s)", c->path, st,
			    fbi_state_name(st));
	}
	alive = owner_alive(c);
	if (alive < 0)
		return alive;
	if (!alive)
		return fail(c, FB_ERR_PRODUCER_GONE, "%s: producer gone (no lock on %s)", c->path, c->lock_path);
	resync(c);
	uint64_t hb = __atomic_load_n(&B->h->heartbeat_ns, SEQ_CST);
	uint64_t now = fbi_now_ns();
	uint64_t stale = 3ull * B->interval_ms * 1000000u;
	if (now > hb && now - hb > stale && !bus_truncated(c))
		return fail(c, FB_ERR_STALLED, "%s: producer stalled: heartbeat %.1f ms old (interval %" PRIu32
			    " ms)", c->path, (double)(now - hb) / 1e6, B->interval_ms);
	return 0;
}

/* ---- the API ------------------------------------------------------------------------- */

int fb_consumer_open(const char *name, const fb_consumer_opts *opts, fb_consumer **out)
{
	fb_consumer_opts o;
	if (opts != NULL)
		o = *opts;
	else
		memset(&o, 0, sizeof o);
	if (out == NULL)
		return FB_ERR_BAD_OPTIONS;
	*out = NULL;
	char msg[FB_ERRMSG_LEN];
	if (o.wake < FB_WAKE_AUTO || o.wake > FB_WAKE_SHARED || o.spin_us > 1000000) {
		snprintf(msg, sizeof msg, "bad options: wake %d (0-2), spin_us %" PRIu32 " (at most 1000000)",
			 o.wake, o.spin_us);
		if (o.log)
			o.log(o.log_arg, FB_LOG_ERROR, msg);
		return FB_ERR_BAD_OPTIONS;
	}
	if (o.path == NULL) {
		const char *why = fbi_name_problem(name);
		if (why != NULL) {
			snprintf(msg, sizeof msg, "bad bus name %s: %s", name ? name : "(null)", why);
			if (o.log)
				o.log(o.log_arg, FB_LOG_ERROR, msg);
			return FB_ERR_BAD_NAME;
		}
	}
	fb_consumer *c = calloc(1, sizeof *c);
	if (c == NULL)
		return FB_ERR_NO_MEMORY;
	c->o = o;
	c->refused_slot = UINT32_MAX;
	c->spin_limit = (int64_t)o.spin_us * 1000;
	int r = 0;
	int n;
	if (o.path != NULL)
		n = snprintf(c->path, sizeof c->path, "%s", o.path);
	else
		n = snprintf(c->path, sizeof c->path, "%s/framebus.%s", fbi_default_dir(o.dir), name);
	if (n < 0 || (size_t)n >= sizeof c->path)
		r = fail(c, FB_ERR_BAD_OPTIONS, "bus path too long");
	if (r == 0) {
		c->check_owner = !o.no_owner_check;
		n = snprintf(c->lock_path, sizeof c->lock_path, "%s%s", o.lock_path ? o.lock_path : c->path,
			     o.lock_path ? "" : ".lock");
		if (n < 0 || (size_t)n >= sizeof c->lock_path)
			r = fail(c, FB_ERR_BAD_OPTIONS, "lock path too long");
	}
	fbi_crc_init();
	if (r == 0 && !o.no_sigbus_guard && fbi_guard_install() != 0)
		r = fail(c, FB_ERR_SYSTEM, "sigaction SIGBUS: %s", strerror(errno));
	if (r == 0) {
		uint64_t now = fbi_now_ns();
		uint64_t wait = o.wait_ms ? o.wait_ms : 1000; /* INITIALIZING: bounded */
		r = attach(c, now + wait * 1000000u, 0, o.wait_ms != 0);
	}
	if (r == 0)
		r = choose_wake(c);
	if (r == 0)
		r = join_table(c);
	if (r != 0) {
		if (o.log)
			o.log(o.log_arg, FB_LOG_ERROR, c->errmsg);
		fb_consumer_close(c);
		return r < 0 ? r : FB_ERR_SYSTEM;
	}
	c->last_check = fbi_now_ns();
	*out = c;
	return FB_OK;
}

static void fill_frame(fb_consumer *c, const struct rframe *f, fb_frame *out)
{
	memset(out, 0, sizeof *out);
	out->data = f->data;
	out->bytes = (size_t)f->bytes;
	out->seq = f->seq;
	out->capture_ns = f->capture_ns;
	out->commit_ns = f->commit_ns;
	out->frame_flags = f->frame_flags;
	out->checksum = f->checksum;
	out->checksum_ok = !f->crc_bad;
	out->user_meta_len = f->user_meta_len;
	memcpy(out->user_meta, f->user_meta, f->user_meta_len <= FRAMEBUS_USER_META_MAX ? f->user_meta_len : 0);
	out->dropped = c->gap;
	out->torn = f->torn;
	out->generation = c->seg->generation;
	out->generation_changed = c->gen_changed;
	c->gen_changed = 0;
	out->copied = f->copied;
	out->held = f->held;
	if (f->held)
		out->hold = f->hold;
	out->_seg = f->copied ? NULL : c->seg;
	out->_slot = f->slot;
	out->_lock = f->lock;
}

/* The loop of framebus's Next: a read first (a frame committed between our last_seq
 * snapshot and state 2 woke nobody, amendment 2, read before the first wait), then, with nothing new, the wait; the
 * wake's heartbeat is stored after the read (the entry's line is the one the producer's
 * step 6 just wrote: fetching it back first would add its transfer to the latency). */
static int next_loop(fb_consumer *c, uint8_t *buf, size_t len, int timeout_ms, fb_frame *out);

static int next_impl(fb_consumer *c, uint8_t *buf, size_t len, int timeout_ms, fb_frame *out)
{
	if (c == NULL || out == NULL)
		return FB_ERR_BAD_OPTIONS;
	if (c->closed)
		return fail(c, FB_ERR_CLOSED, "consumer closed");
	if (c->eos)
		return fail(c, FB_ERR_END_OF_STREAM, "%s: the producer closed the stream", c->path);
	if (c->sticky)
		return c->sticky; /* its message is still in errmsg */
	if (c->seg == NULL || !c->joined)
		return fail(c, FB_ERR_PRODUCER_GONE, "%s: no generation joined", c->path);
	c->errmsg[0] = '\0';
	int r = next_loop(c, buf, len, timeout_ms, out);
	if (r < 0 && (c->seg == NULL || !c->joined))
		c->sticky = r; /* a rejoin failed: nothing to read from any more */
	return r;
}

static int next_loop(fb_consumer *c, uint8_t *buf, size_t len, int timeout_ms, fb_frame *out)
{
	uint64_t start = fbi_now_ns();
	uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : start + (uint64_t)timeout_ms * 1000000u;
	/* A rejoin waits for a new generation for at least three heartbeats. */
	for (;;) {
		struct rframe f;
		uint64_t interval = (uint64_t)c->seg->interval_ms * 1000000u;
		uint64_t join_by = deadline;
		if (join_by < start + 3 * interval)
			join_by = start + 3 * interval;
		int r;
		if (bus_truncated(c)) {
			if ((r = on_truncated(c, join_by)) < 0)
				return r;
			c->last_check = fbi_now_ns();
			continue;
		}
		int got = take_newest(c, &f, deadline, buf, len);
		if (got < 0) {
			out->bytes = (size_t)f.bytes;
			return fail(c, got, "frame %" PRIu64 ": %" PRIu64 " bytes, the buffer has %zu", f.seq,
				    f.bytes, len);
		}
		if (!got && bus_truncated(c))
			continue; /* the frame read was zeros: dropped, rejoin above */
		if (c->woke) {
			c->last_check = fbi_now_ns(); /* a wake: the interval without one starts again */
			__atomic_store_n(&c->me->heartbeat_ns, c->last_check, SEQ_CST);
			c->woke = 0;
		}
		if (got) {
			c->timed_out = 0;
			c->last_check = fbi_now_ns();
			if (c->eos)
				return fail(c, FB_ERR_END_OF_STREAM, "%s: the producer closed the stream", c->path);
			fill_frame(c, &f, out);
			if (f.crc_bad)
				return fail(c, FB_ERR_CHECKSUM, "frame %" PRIu64 ": crc32c mismatch (descriptor says "
					    "0x%08" PRIx32 ")", f.seq, f.checksum);
			return FB_OK;
		}
		uint64_t now = fbi_now_ns();
		if (now >= c->last_check + interval) {
			/* A heartbeat interval without a wake or a frame, over one call or several
			 * (the caller's timeouts may be shorter): the timeout of section 5. Refresh,
			 * check the entry, then look at the producer. While frames come, liveness
			 * is not looked at (a producer that commits is alive). */
			c->last_check = now;
			__atomic_store_n(&c->me->heartbeat_ns, now, SEQ_CST);
			if ((r = check_entry(c)) < 0)
				return r;
			c->timed_out = 1;
		}
		/* Nothing new after a timeout, or RETIRED/BROKEN seen (amendment 4): look at the
		 * producer and the name now. */
		uint32_t st = __atomic_load_n(&c->seg->h->state, SEQ_CST);
		if (c->timed_out || st != FRAMEBUS_STATE_READY) {
			uint64_t gen = c->seg->generation;
			struct cseg *was = c->seg;
			if ((r = check_producer(c, join_by)) < 0)
				return r;
			c->timed_out = 0;
			if (c->seg != was || c->seg->generation != gen) {
				c->last_check = fbi_now_ns(); /* a new generation: its own interval */
				continue;
			}
		}
		if (now >= deadline)
			return fail(c, FB_ERR_TIMEOUT, "no new frame for %d ms", timeout_ms);
		uint64_t wake_by = c->last_check + interval;
		if (wake_by > deadline)
			wake_by = deadline;
		r = wait_wake(c, wake_by);
		if (r < 0)
			return r;
		if (r > 0)
			c->woke = 1;
	}
}

int fb_consumer_next(fb_consumer *c, int timeout_ms, fb_frame *frame)
{
	return next_impl(c, NULL, 0, timeout_ms, frame);
}

int fb_consumer_read_into(fb_consumer *c, void *buf, size_t len, int timeout_ms, fb_frame *frame)
{
	if (buf == NULL && len > 0)
		return FB_ERR_BAD_OPTIONS;
	static uint8_t none[1];
	return next_impl(c, buf ? buf : none, len, timeout_ms, frame);
}

static struct cseg *known_seg(fb_consumer *c, const void *s)
{
	if (s == NULL)
		return NULL;
	if (s == c->seg)
		return c->seg;
	for (struct cseg *k = c->kept; k != NULL; k = k->next)
		if (k == s)
			return k;
	return NULL;
}

int fb_frame_valid(fb_consumer *c, const fb_frame *frame)
{
	if (c == NULL || frame == NULL || c->closed)
		return 0;
	if (frame->held)
		return fb_hold_valid(c, &frame->hold);
	if (frame->copied)
		return 1;
	struct cseg *s = known_seg(c, frame->_seg);
	if (s == NULL || frame->_slot >= s->slot_count)
		return 0;
	__atomic_thread_fence(__ATOMIC_ACQUIRE); /* the caller's reads before the lock load */
	int ok = __atomic_load_n(&s->slots[frame->_slot].lock, RELAXED) == frame->_lock;
	return ok && !seg_truncated(s);
}

int fb_frame_hold(fb_consumer *c, const fb_frame *frame, fb_hold *hold)
{
	if (c == NULL || frame == NULL || hold == NULL)
		return FB_ERR_BAD_OPTIONS;
	memset(hold, 0, sizeof *hold);
	if (c->closed)
		return fail(c, FB_ERR_CLOSED, "consumer closed");
	if (frame->copied || frame->_seg == NULL) {
		hold->refused = FB_HOLD_COPY;
		c->holds_refused++;
		return fail(c, FB_ERR_NO_HOLD, "hold refused: the frame is a copy");
	}
	struct cseg *s = c->seg;
	if (frame->_seg != s || !c->joined || frame->_slot >= s->slot_count || bus_truncated(c)) {
		hold->refused = hold_refuse(c, s != NULL && (s->flags & FRAMEBUS_FLAG_HOLDS) ? FB_HOLD_OVERWRITTEN
											: FB_HOLD_UNSUPPORTED);
		return fail(c, FB_ERR_NO_HOLD, "hold refused: a generation left behind");
	}
	int why = hold_grant(c, frame->_slot, frame->_lock);
	if (why == FB_HOLD_OK && bus_truncated(c)) {
		s->held_count[frame->_slot]--;
		why = FB_HOLD_OVERWRITTEN;
	}
	if (why != FB_HOLD_OK) {
		hold->refused = why;
		return fail(c, FB_ERR_NO_HOLD, "hold refused: %s",
			    why == FB_HOLD_CAP ? "the cap (slot_count - 2 slots held on the bus)"
			    : why == FB_HOLD_OVERWRITTEN ? "the slot was overwritten"
							 : "the producer does not honour holds");
	}
	struct rframe f;
	memset(&f, 0, sizeof f);
	f.slot = frame->_slot;
	f.lock = frame->_lock;
	f.view = frame->data;
	f.bytes = frame->bytes;
	f.seq = frame->seq;
	f.capture_ns = frame->capture_ns;
	f.commit_ns = frame->commit_ns;
	hold_record(c, &f, hold);
	return FB_OK;
}

static struct hold_rec *hold_of(fb_consumer *c, const fb_hold *h)
{
	if (h == NULL || h->_serial == 0 || h->_rec >= FB_MAX_HOLDS)
		return NULL;
	struct hold_rec *r = &c->holds[h->_rec];
	return r->serial == h->_serial ? r : NULL;
}

int fb_hold_valid(fb_consumer *c, const fb_hold *hold)
{
	if (c == NULL || c->closed)
		return 0;
	struct hold_rec *r = hold_of(c, hold);
	if (r == NULL)
		return 0;
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	int ok = lock_settles(&r->seg->slots[r->slot].lock, r->lock);
	return ok && !seg_truncated(r->seg);
}

int fb_hold_release(fb_consumer *c, fb_hold *hold)
{
	if (c == NULL || hold == NULL)
		return FB_ERR_BAD_OPTIONS;
	if (c->closed)
		return FB_ERR_CLOSED;
	struct hold_rec *r = hold_of(c, hold);
	if (r == NULL)
		return fail(c, FB_ERR_HOLD_RELEASED, "hold already released");
	release_rec(c, r);
	hold->_serial = 0;
	return FB_OK;
}

int fb_consumer_format(fb_consumer *c, fb_format *format)
{
	if (c == NULL || format == NULL)
		return FB_ERR_BAD_OPTIONS;
	if (c->closed || c->seg == NULL)
		return FB_ERR_CLOSED;
	*format = c->seg->fmt;
	return FB_OK;
}

int fb_consumer_stats(fb_consumer *c, struct fb_consumer_stats *st)
{
	if (c == NULL || st == NULL)
		return FB_ERR_BAD_OPTIONS;
	memset(st, 0, sizeof *st);
	if (c->seg != NULL) {
		st->generation = c->seg->generation;
		if (c->joined && !bus_truncated(c))
			st->holds_taken_back = __atomic_load_n(&c->me->holds_taken_back, SEQ_CST);
	}
	st->entry = c->joined ? (int)c->index : -1;
	st->shared_wake = c->use_shared;
	st->eos = c->eos;
	st->last_seq = c->last_seq;
	st->delivered = c->delivered;
	st->dropped = c->dropped;
	st->torn_retries = c->torn;
	st->crc_bad = c->crc_bad;
	st->refused = c->refused;
	st->resyncs = c->resyncs;
	st->truncations = c->truncations;
	st->generations = c->generations;
	st->retired_ignored = c->retired_ignored;
	st->wake_repairs = c->wake_repairs;
	st->spin_hits = c->spin_hits;
	st->spin_misses = c->spin_misses;
	st->holds_granted = c->holds_granted;
	st->holds_refused = c->holds_refused;
	st->holds = c->nholds;
	return FB_OK;
}

const char *fb_consumer_errmsg(fb_consumer *c)
{
	return c == NULL ? "" : c->errmsg;
}

int fb_consumer_close(fb_consumer *c)
{
	if (c == NULL)
		return FB_OK;
	if (c->seg != NULL)
		leave_table(c); /* clears hold_mask before the CAS 2 -> 0 */
	c->joined = 0;
	for (int i = 0; i < FB_MAX_HOLDS; i++)
		c->holds[i].serial = 0;
	if (c->seg != NULL)
		c->seg->holds = 0;
	detach(c);
	while (c->kept != NULL) {
		struct cseg *k = c->kept;
		c->kept = k->next;
		seg_free(k);
	}
	c->closed = 1;
	free(c->copy_buf);
	free(c);
	return FB_OK;
}
