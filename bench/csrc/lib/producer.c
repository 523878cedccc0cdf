/*
 * producer.c - the producer side of docs/PROTOCOL.md:
 *   - ownership (section 2): the lock file framebus.<name>.lock, an OFD write lock on its
 *     byte 0 for the producer's whole life, its inode checked against the path after
 *     locking; a second producer gets FB_ERR_BUSY naming the owner's pid;
 *   - abandoned temporary files of its own name removed first, each only once its byte-0
 *     lock could be taken (amendment 8, creation and liveness across PID namespaces);
 *   - a generation (section 2, amendment 8): built under framebus.<name>.tmp-<pid>
 *     (O_CREAT|O_EXCL|O_NOFOLLOW), byte 0 of it write-locked at once and its path
 *     re-checked, the free space checked first (statfs), the pages pre-faulted, the header
 *     filled, state READY, renamed over the name (ENOENT starts over, three times at most),
 *     then the lock released; the previous generation's last_seq continued and that
 *     generation RETIRED and woken;
 *   - every frame: section 4's commit, the shared wake word of amendment 7 before the
 *     per-entry wakes, holds (amendment 10): the back slot chosen by C1-C4, a hold past the
 *     lease, or one that cannot be avoided (forged words), taken back and counted;
 *   - every heartbeat interval (a thread, or fb_producer_tick): heartbeat_ns, reclaim of
 *     dead consumers' entries under an exclusive lock (the hold_mask cleared after the CAS),
 *     hold bits nobody may set counted in holds_ignored, the segment checked (truncated or
 *     its name removed from outside: BROKEN and a new generation, section 6), the lock
 *     file kept;
 *   - close: the end-of-stream frame, RETIRED, every consumer woken, the name unlinked,
 *     the lock file unlinked while byte 0 is held.
 * The mapping is registered with the SIGBUS guard: a file truncated from outside reads and
 * writes zero pages instead of killing the process, and is then replaced.
 *
 * This was framebus/testdata/c/producer.c's protocol; that program is now a thin command
 * over this file.
 */
#include "internal.h"

#include <dirent.h>
#include <grp.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

/* One generation: the whole segment file mapped read-write (an old generation's control
 * block only). */
struct pseg {
	int fd;
	dev_t dev;
	ino_t ino;
	uint8_t *mem;
	size_t len;
	int guard;
	framebus_header *h;
	framebus_slot_desc *slots;
	framebus_consumer_entry *table;
	uint32_t slot_count, consumer_capacity, flags;
	uint64_t generation, total, payload_off, stride, capacity, cto;
	uint64_t last_seq; /* an old generation's, read when it is taken over */
};

struct fb_producer {
	fb_producer_opts o;
	fb_format fmt;
	char name[80];
	char dir[PATH_MAX];
	char seg_path[PATH_MAX], lock_path[PATH_MAX], tmp_path[PATH_MAX];
	int lock_fd;
	int lock_created;
	gid_t gid; /* opts.group, or (gid_t)-1 */
	dev_t lock_dev;
	ino_t lock_ino;

	pthread_mutex_t mu; /* everything below; the heartbeat thread takes it too */
	pthread_cond_t cv;
	pthread_t thread;
	int has_thread, stopping;

	struct pseg *cur;
	uint64_t seq;    /* the last frame number published */
	int need_regen;  /* the segment is unusable: replace it before the next frame */
	int begun;       /* a slot is begun (the caller writes into it) */
	uint32_t begun_slot;
	uint64_t begun_lock; /* the slot's even lock value before begin */
	int sticky;      /* an error every later call returns (FB_ERR_NAME_LOST, ...) */
	int closed;

	char errmsg[FB_ERRMSG_LEN];
	char logbuf[FB_ERRMSG_LEN];
};

static int pfail(fb_producer *p, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int pfail(fb_producer *p, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->errmsg, sizeof p->errmsg, fmt, ap);
	va_end(ap);
	return code;
}

static void warnf(fb_producer *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warnf(fb_producer *p, const char *fmt, ...)
{
	if (p->o.log == NULL)
		return;
	va_list ap;
	va_start(ap, fmt);
	fbi_vlog(p->o.log, p->o.log_arg, FB_LOG_WARN, p->logbuf, fmt, ap);
	va_end(ap);
}

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

/* 1 if path names the file open on fd (same device and inode), without following links. */
static int is_at(int fd, const char *path)
{
	struct stat a, b;
	if (fstat(fd, &a) != 0 || lstat(path, &b) != 0)
		return 0;
	return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

static void futex_wake_all(uint32_t *w)
{
	syscall(SYS_futex, w, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

static int seg_truncated(const struct pseg *s)
{
	return fbi_guard_truncated(s->guard);
}

/* The mode and group of a file this producer created (the umask does not decide). */
static int set_mode(fb_producer *p, int fd)
{
	if (fchmod(fd, (mode_t)p->o.mode) != 0)
		return -1;
	if (p->gid != (gid_t)-1 && fchown(fd, (uid_t)-1, p->gid) != 0)
		return -1;
	return 0;
}

/* ---- ownership (section 2) ----------------------------------------------------------- */

/* The owner's pid from the segment at the name, 0 if it cannot be read. */
static uint32_t owner_pid(fb_producer *p)
{
	int fd = open(p->seg_path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return 0;
	framebus_header h;
	ssize_t n = pread(fd, &h, sizeof h, 0);
	close(fd);
	if (n != (ssize_t)sizeof h || h.magic != FRAMEBUS_MAGIC)
		return 0;
	return h.producer_pid;
}

/* Opens the lock file and takes its byte 0. */
static int take_ownership(fb_producer *p)
{
	mode_t mode = (mode_t)p->o.mode;
	for (int try = 0; try < 10; try++) {
		int created = 1;
		int fd = open(p->lock_path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
		if (fd < 0 && errno == EEXIST) {
			created = 0;
			fd = open(p->lock_path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
		}
		if (fd < 0) {
			int e = errno;
			return pfail(p, e == EACCES || e == EPERM ? FB_ERR_PERMISSION : e == ELOOP ? FB_ERR_UNSAFE_PATH
				     : e == ENOENT ? FB_ERR_NOT_FOUND : FB_ERR_SYSTEM, "open %s: %s", p->lock_path, strerror(e));
		}
		if (created && set_mode(p, fd) != 0) {
			int e = errno;
			close(fd);
			return pfail(p, e == EPERM ? FB_ERR_PERMISSION : FB_ERR_SYSTEM, "chmod/chown %s: %s", p->lock_path,
				     strerror(e));
		}
		if (fbi_ofd_lock(fd, F_WRLCK, 0, 1) != 0) {
			int e = errno;
			if (e != EAGAIN && e != EACCES) {
				close(fd);
				return pfail(p, FB_ERR_SYSTEM, "F_OFD_SETLK %s: %s", p->lock_path, strerror(e));
			}
			/* A read lock on byte 0 is not a producer but somebody blocking the name:
			 * this lock file is given up and a new one made. */
			if (fbi_ofd_conflict(fd, 0, 1) == F_RDLCK && try < 9) {
				if (is_at(fd, p->lock_path))
					unlink(p->lock_path);
				close(fd);
				continue;
			}
			close(fd);
			return pfail(p, FB_ERR_BUSY, "busy: bus %s is owned by a live producer (pid %" PRIu32 ")",
				     p->name, owner_pid(p));
		}
		/* The lock must be on the file at the path now: a closing producer or gc may
		 * have unlinked it between our open and our lock. */
		struct stat st;
		if (is_at(fd, p->lock_path) && fstat(fd, &st) == 0) {
			p->lock_fd = fd;
			p->lock_dev = st.st_dev;
			p->lock_ino = st.st_ino;
			p->lock_created = created;
			return 0;
		}
		close(fd);
	}
	return pfail(p, FB_ERR_BUSY, "busy: lock file %s keeps changing", p->lock_path);
}

/* Removes the lock file if it is still ours (byte 0 held), then releases it. */
static void disown(fb_producer *p)
{
	if (p->lock_fd < 0)
		return;
	if (is_at(p->lock_fd, p->lock_path))
		unlink(p->lock_path);
	fbi_ofd_lock(p->lock_fd, F_UNLCK, 0, 1);
	close(p->lock_fd);
	p->lock_fd = -1;
}

/* Re-creates and re-takes the lock file when it was removed from outside (systemd's
 * RemoveIPC removes every file of the user in /dev/shm). */
static int keep_lock(fb_producer *p)
{
	struct stat st;
	if (lstat(p->lock_path, &st) == 0 && st.st_dev == p->lock_dev && st.st_ino == p->lock_ino)
		return 0;
	int old = p->lock_fd;
	mode_t mode = (mode_t)p->o.mode;
	int fd = open(p->lock_path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0 || set_mode(p, fd) != 0 || fbi_ofd_lock(fd, F_WRLCK, 0, 1) != 0 ||
	    !is_at(fd, p->lock_path) || fstat(fd, &st) != 0) {
		if (fd >= 0)
			close(fd);
		/* Another process holds the lock file now at our path: the name is not ours. */
		return pfail(p, FB_ERR_NAME_LOST, "lost the name %s: the lock file %s was replaced by another "
			     "process", p->name, p->lock_path);
	}
	warnf(p, "the lock file %s was removed from outside; made it again", p->lock_path);
	p->lock_fd = fd;
	p->lock_dev = st.st_dev;
	p->lock_ino = st.st_ino;
	fbi_ofd_lock(old, F_UNLCK, 0, 1);
	close(old);
	return 0;
}

/* Amendment 8: removes the abandoned temporary files of our name, each only when its byte-0
 * lock can be taken (its creator is gone) and the path still names it. */
static int remove_abandoned_tmps(fb_producer *p)
{
	char prefix[128];
	snprintf(prefix, sizeof prefix, "framebus.%s.tmp-", p->name);
	DIR *d = opendir(p->dir);
	if (d == NULL)
		return pfail(p, errno == ENOENT ? FB_ERR_NOT_FOUND : FB_ERR_SYSTEM, "opendir %s: %s", p->dir,
			     strerror(errno));
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, prefix, strlen(prefix)) != 0)
			continue;
		char path[PATH_MAX];
		if (snprintf(path, sizeof path, "%s/%s", p->dir, e->d_name) >= (int)sizeof path)
			continue;
		int fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
		if (fd < 0)
			continue;
		struct stat st;
		if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && fbi_ofd_lock(fd, F_WRLCK, 0, 1) == 0 &&
		    is_at(fd, path)) {
			if (unlink(path) == 0)
				warnf(p, "removed the abandoned temporary file %s", path);
		}
		close(fd); /* drops the lock */
	}
	closedir(d);
	return 0;
}

/* ---- generations (section 2) --------------------------------------------------------- */

static void release(struct pseg *s)
{
	if (s == NULL)
		return;
	fbi_guard_remove(s->guard);
	if (s->mem != NULL)
		munmap(s->mem, s->len);
	if (s->fd >= 0)
		close(s->fd);
	free(s);
}

static void view(struct pseg *s)
{
	s->h = (framebus_header *)s->mem;
	s->slots = (framebus_slot_desc *)(s->mem + FRAMEBUS_HEADER_SIZE);
	s->table = (framebus_consumer_entry *)(s->mem + s->cto);
}

/* The segment a previous producer left at the name, if any, with its control block mapped
 * (to continue its numbering, retire it and wake its consumers). Anything there that is not
 * a regular file of ours is refused; a corrupt leftover is replaced. */
static int previous(fb_producer *p, struct pseg **out)
{
	*out = NULL;
	struct stat st;
	if (lstat(p->seg_path, &st) != 0) {
		if (errno == ENOENT)
			return 0;
		return pfail(p, FB_ERR_SYSTEM, "lstat %s: %s", p->seg_path, strerror(errno));
	}
	if (!S_ISREG(st.st_mode))
		return pfail(p, FB_ERR_UNSAFE_PATH, "%s is not a regular file (refusing to replace it)", p->seg_path);
	if (st.st_uid != geteuid())
		return pfail(p, FB_ERR_PERMISSION, "%s belongs to uid %u, not to us (mode %04o)", p->seg_path,
			     (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
	int fd = open(p->seg_path, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return 0;
	framebus_header h;
	if (fstat(fd, &st) != 0 || pread(fd, &h, sizeof h, 0) != (ssize_t)sizeof h)
		goto corrupt;
	/* Loaded once, checked before use: this file was written by someone else. */
	uint64_t cto = h.consumer_table_offset;
	if (h.magic != FRAMEBUS_MAGIC || h.abi_version != FRAMEBUS_ABI_VERSION ||
	    h.header_size != FRAMEBUS_HEADER_SIZE || h.total_size != (uint64_t)st.st_size ||
	    h.payload_offset % FRAMEBUS_PAYLOAD_ALIGN != 0 || h.payload_offset < FRAMEBUS_HEADER_SIZE ||
	    h.payload_offset > h.total_size || h.slot_count < FRAMEBUS_MIN_SLOTS ||
	    h.slot_count > FRAMEBUS_MAX_SLOTS || h.consumer_capacity < 1 ||
	    h.consumer_capacity > FRAMEBUS_MAX_CONSUMERS || h.slot_table_offset != FRAMEBUS_HEADER_SIZE ||
	    cto % 8 != 0 || cto < FRAMEBUS_HEADER_SIZE + (uint64_t)h.slot_count * FRAMEBUS_SLOT_DESC_SIZE ||
	    cto > h.payload_offset ||
	    (uint64_t)h.consumer_capacity * FRAMEBUS_CONSUMER_ENTRY_SIZE > h.payload_offset - cto)
		goto corrupt;
	void *m = mmap(NULL, (size_t)h.payload_offset, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		goto corrupt;
	struct pseg *s = calloc(1, sizeof *s);
	if (s == NULL) {
		munmap(m, (size_t)h.payload_offset);
		close(fd);
		return pfail(p, FB_ERR_NO_MEMORY, "out of memory");
	}
	s->fd = fd;
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	s->mem = m;
	s->len = (size_t)h.payload_offset;
	s->guard = fbi_guard_add(m, s->len, PROT_READ | PROT_WRITE);
	s->slot_count = h.slot_count;
	s->consumer_capacity = h.consumer_capacity;
	s->flags = h.flags;
	s->generation = h.generation;
	s->total = h.total_size;
	s->payload_off = h.payload_offset;
	s->cto = cto;
	view(s);
	*out = s;
	return 0;
corrupt:
	close(fd);
	warnf(p, "%s is not a usable segment: replacing it with generation 1", p->seg_path);
	return 0;
}

/* Step 6: the shared wake word of amendment 7 first (the word a spinning consumer watches,
 * right after the flip), then every active entry's semaphore. sem += 1 and the load of
 * waiters are seq_cst: the store-buffering handshake of section 5. */
static void wake_all(struct pseg *s)
{
	framebus_header *h = s->h;
	if (s->flags & FRAMEBUS_FLAG_SHARED_WAKE) {
		__atomic_fetch_add(&h->wake_seq, 1, SEQ_CST);
		if (__atomic_load_n(&h->wake_waiters, SEQ_CST) != 0)
			futex_wake_all(&h->wake_seq);
	}
	for (uint32_t i = 0; i < s->consumer_capacity; i++) {
		framebus_consumer_entry *e = &s->table[i];
		if (__atomic_load_n(&e->state, SEQ_CST) != FRAMEBUS_ENTRY_ACTIVE)
			continue;
		__atomic_fetch_add(&e->sem, 1, SEQ_CST);
		if (__atomic_load_n(&e->waiters, SEQ_CST) != 0)
			futex_wake_all(&e->sem);
	}
}

/* Retires an old generation (unless BROKEN) and wakes its consumers (section 2). */
static void retire(fb_producer *p, struct pseg *s)
{
	if (__atomic_load_n(&s->h->state, SEQ_CST) != FRAMEBUS_STATE_BROKEN)
		__atomic_store_n(&s->h->state, FRAMEBUS_STATE_RETIRED, SEQ_CST);
	wake_all(s);
	if (seg_truncated(s))
		warnf(p, "the old generation faulted while being retired (truncated from outside)");
}

/* Builds a complete generation under the temporary name and renames it over the name. */
static int new_generation(fb_producer *p, uint64_t gen, uint64_t last_seq, struct pseg **out)
{
	const fb_format *F = &p->fmt;
	uint32_t slots = p->o.slots, consumers = p->o.consumers;
	mode_t mode = (mode_t)p->o.mode;
	uint64_t stride = align_up(F->max_frame_bytes, FRAMEBUS_PAYLOAD_ALIGN);
	if (stride == 0)
		stride = FRAMEBUS_PAYLOAD_ALIGN;
	uint64_t cto = FRAMEBUS_HEADER_SIZE + (uint64_t)slots * FRAMEBUS_SLOT_DESC_SIZE;
	uint64_t payload_off = align_up(cto + (uint64_t)consumers * FRAMEBUS_CONSUMER_ENTRY_SIZE,
					FRAMEBUS_PAYLOAD_ALIGN);
	uint64_t total = payload_off + (uint64_t)slots * stride;

	for (int attempt = 0; attempt < 3; attempt++) {
		struct statfs sf;
		if (statfs(p->dir, &sf) != 0)
			return pfail(p, errno == ENOENT ? FB_ERR_NOT_FOUND : FB_ERR_SYSTEM, "statfs %s: %s", p->dir,
				     strerror(errno));
		uint64_t avail = (uint64_t)sf.f_bavail * (uint64_t)sf.f_bsize;
		if (total > avail)
			return pfail(p, FB_ERR_NO_SPACE, "%s: not enough space for the bus: %" PRIu64
				     " bytes needed, %" PRIu64 " available", p->dir, total, avail);

		int fd = open(p->tmp_path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
		if (fd < 0 && errno == EEXIST) {
			/* A dead process that had our pid left it: the lock rule decides. */
			remove_abandoned_tmps(p);
			fd = open(p->tmp_path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
		}
		if (fd < 0) {
			int e = errno;
			return pfail(p, e == EACCES ? FB_ERR_PERMISSION : FB_ERR_SYSTEM, "create %s: %s", p->tmp_path,
				     strerror(e));
		}
		/* Amendment 8: hold byte 0 of the temporary file until it is renamed, so that gc
		 * (and other producers' clean-up) can tell a creation in progress from a leftover;
		 * and check that the path still names the file we hold. */
		if (fbi_ofd_lock(fd, F_WRLCK, 0, 1) != 0 || !is_at(fd, p->tmp_path)) {
			warnf(p, "%s changed under us while being created; starting over", p->tmp_path);
			close(fd);
			continue;
		}
		struct stat st;
		if (set_mode(p, fd) != 0 || fstat(fd, &st) != 0) {
			int e = errno;
			unlink(p->tmp_path);
			close(fd);
			return pfail(p, e == EPERM ? FB_ERR_PERMISSION : FB_ERR_SYSTEM, "chmod/chown %s: %s", p->tmp_path,
				     strerror(e));
		}
		int err = posix_fallocate(fd, 0, (off_t)total);
		if (err == EOPNOTSUPP || err == EINVAL)
			err = ftruncate(fd, (off_t)total) == 0 ? 0 : errno;
		if (err != 0) {
			unlink(p->tmp_path);
			close(fd);
			if (err == ENOSPC)
				return pfail(p, FB_ERR_NO_SPACE, "%s: not enough space for the bus: %" PRIu64
					     " bytes needed", p->dir, total);
			return pfail(p, FB_ERR_SYSTEM, "allocate %s: %s", p->tmp_path, strerror(err));
		}
		uint8_t *mem = mmap(NULL, (size_t)total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (mem == MAP_FAILED) {
			int e = errno;
			unlink(p->tmp_path);
			close(fd);
			return pfail(p, FB_ERR_SYSTEM, "mmap %s: %s", p->tmp_path, strerror(e));
		}
		/* Pre-fault every page: a first write to fresh shared memory costs a fault per
		 * 4 KiB, which would land on the first frames. Nobody else maps this file yet, so
		 * a fault here is our own bug, not a truncation. */
		for (uint64_t i = 0; i < total; i += 4096)
			((volatile uint8_t *)mem)[i] = 0;

		struct pseg *s = calloc(1, sizeof *s);
		if (s == NULL) {
			munmap(mem, (size_t)total);
			unlink(p->tmp_path);
			close(fd);
			return pfail(p, FB_ERR_NO_MEMORY, "out of memory");
		}
		s->fd = fd;
		s->dev = st.st_dev;
		s->ino = st.st_ino;
		s->mem = mem;
		s->len = (size_t)total;
		s->guard = -1;
		s->slot_count = slots;
		s->consumer_capacity = consumers;
		s->flags = (p->o.checksum ? FRAMEBUS_FLAG_CHECKSUM : 0) |
			   (p->o.no_shared_wake ? 0 : FRAMEBUS_FLAG_SHARED_WAKE) |
			   (p->o.no_holds ? 0 : FRAMEBUS_FLAG_HOLDS);
		s->generation = gen;
		s->total = total;
		s->payload_off = payload_off;
		s->stride = stride;
		s->capacity = F->max_frame_bytes;
		s->cto = cto;
		view(s);

		framebus_header *h = s->h;
		uint64_t now = fbi_now_ns();
		h->magic = FRAMEBUS_MAGIC;
		h->abi_version = FRAMEBUS_ABI_VERSION;
		h->header_size = FRAMEBUS_HEADER_SIZE;
		h->state = FRAMEBUS_STATE_INITIALIZING;
		h->flags = s->flags;
		h->total_size = total;
		h->generation = gen;
		h->heartbeat_ns = now;
		h->payload_offset = payload_off;
		h->payload_size = (uint64_t)slots * stride;
		h->producer_pid = (uint32_t)getpid();
		h->producer_pidns = fbi_pid_namespace();
		h->slot_count = slots;
		h->slot_stride = stride;
		h->slot_capacity = F->max_frame_bytes;
		h->consumer_capacity = consumers;
		h->heartbeat_interval_ms = p->o.heartbeat_ms;
		h->width = F->width;
		h->height = F->height;
		h->pixel_format = F->pixel_format;
		h->plane_count = F->plane_count;
		for (uint32_t i = 0; i < FRAMEBUS_MAX_PLANES; i++) {
			h->plane_stride[i] = i < F->plane_count ? F->plane_stride[i] : 0;
			h->plane_offset[i] = i < F->plane_count ? F->plane_offset[i] : 0;
		}
		h->fps_num = F->fps_num;
		h->fps_den = F->fps_num ? F->fps_den : 1;
		h->slot_table_offset = FRAMEBUS_HEADER_SIZE;
		h->consumer_table_offset = cto;
		h->slot_desc_size = FRAMEBUS_SLOT_DESC_SIZE;
		h->consumer_entry_size = FRAMEBUS_CONSUMER_ENTRY_SIZE;
		h->created_ns = now;
		h->hold_max_ns = p->o.no_holds ? 0 : (uint64_t)p->o.hold_max_ms * 1000000u; /* amendment 10 */
		h->last_seq = last_seq;
		/* Everything else (active, the counters, the slots, the table) is the zero of a
		 * fresh file. READY, then the name. */
		__atomic_store_n(&h->state, FRAMEBUS_STATE_READY, SEQ_CST);
		if (rename(p->tmp_path, p->seg_path) == 0) {
			fbi_ofd_lock(fd, F_UNLCK, 0, 1); /* renamed: no longer a creation in progress */
			/* Published: from here on a truncation from outside reads zeros. */
			s->guard = fbi_guard_add(mem, s->len, PROT_READ | PROT_WRITE);
			*out = s;
			return 0;
		}
		int e = errno;
		munmap(mem, (size_t)total);
		close(fd);
		free(s);
		if (e == ENOENT) {
			warnf(p, "rename %s: the temporary file was removed from outside; starting over", p->tmp_path);
			continue;
		}
		unlink(p->tmp_path);
		return pfail(p, FB_ERR_SYSTEM, "rename %s -> %s: %s", p->tmp_path, p->seg_path, strerror(e));
	}
	return pfail(p, FB_ERR_SYSTEM, "creating a generation of %s failed three times (its temporary file "
		     "kept disappearing)", p->name);
}

/* Replaces the current generation by a new one (section 6), retiring the old. */
static int regenerate(fb_producer *p)
{
	struct pseg *old = p->cur, *s;
	int r = new_generation(p, old->generation + 1, p->seq, &s);
	if (r < 0) {
		p->sticky = r;
		return r;
	}
	p->cur = s;
	retire(p, old);
	release(old);
	p->need_regen = 0;
	if (p->o.log != NULL) {
		snprintf(p->logbuf, sizeof p->logbuf, "generation %" PRIu64, s->generation);
		p->o.log(p->o.log_arg, FB_LOG_INFO, p->logbuf);
	}
	return 0;
}

/* ---- holds (amendment 10; framebus.h, "Holds") -------------------------------------- */

/* C1: the slots held by finished grants (returned) and by grants in progress (*pending). */
static uint32_t hold_sets(struct pseg *s, uint32_t *pending)
{
	uint32_t bits = (1u << s->slot_count) - 1, held = 0, pend = 0;
	for (uint32_t i = 0; i < s->consumer_capacity; i++) {
		framebus_consumer_entry *e = &s->table[i];
		if (__atomic_load_n(&e->state, SEQ_CST) != FRAMEBUS_ENTRY_ACTIVE)
			continue;
		uint32_t m = __atomic_load_n(&e->hold_mask, SEQ_CST);
		uint32_t pb = m >> FRAMEBUS_HOLD_PENDING_SHIFT;
		pend |= m & bits & pb;
		held |= m & bits & ~pb;
	}
	*pending = pend;
	return held;
}

/* The slots whose frame is older than the lease (hold_max_ns, 0 = never). */
static uint32_t lease_expired(struct pseg *s)
{
	uint64_t lease = __atomic_load_n(&s->h->hold_max_ns, RELAXED);
	if (lease == 0)
		return 0;
	uint64_t now = fbi_now_ns();
	uint32_t out = 0;
	for (uint32_t i = 0; i < s->slot_count; i++) {
		uint64_t c = __atomic_load_n(&s->slots[i].commit_ns, RELAXED);
		if (c != 0 && now > c && now - c > lease)
			out |= 1u << i;
	}
	return out;
}

/* Takes back every hold of slot b before it is written. */
static void take_back(struct pseg *s, uint32_t b)
{
	uint32_t bit = 1u << b;
	for (uint32_t i = 0; i < s->consumer_capacity; i++) {
		framebus_consumer_entry *e = &s->table[i];
		if (__atomic_load_n(&e->state, SEQ_CST) != FRAMEBUS_ENTRY_ACTIVE)
			continue;
		if (__atomic_fetch_and(&e->hold_mask, ~bit, SEQ_CST) & bit) {
			__atomic_fetch_add(&e->holds_taken_back, 1, SEQ_CST);
			__atomic_fetch_add(&s->h->holds_taken_back, 1, SEQ_CST);
		}
	}
}

/* C2: the first of active+1, active+2, ... (mod N, never active) not in avoid; N if none. */
static uint32_t first_free(uint32_t active, uint32_t n, uint32_t avoid)
{
	for (uint32_t k = 1; k < n; k++) {
		uint32_t b = (active + k) % n;
		if (!(avoid & (1u << b)))
			return b;
	}
	return n;
}

/* Step 2 on slot b: odd, then a store fence before the data. Returns the lock's value
 * before (even, unless a writer died in the slot). */
static uint64_t mark_odd(struct pseg *s, uint32_t b)
{
	framebus_slot_desc *d = &s->slots[b];
	uint64_t l = __atomic_load_n(&d->lock, SEQ_CST);
	__atomic_store_n(&d->lock, l | 1, SEQ_CST);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	return l;
}

/* Steps 1 and 2: the back slot, marked odd. With holds (flag bit 2), step 1 is C1-C4: a
 * slot held by a finished grant is never written; one only being granted may be (its grant
 * fails at G5); C3 -> C4 and the consumer's G4 -> G5 are a store-buffering pair. */
static uint32_t begin_slot(fb_producer *p, struct pseg *s, uint64_t *before)
{
	uint32_t n = s->slot_count;
	uint32_t a = __atomic_load_n(&s->h->active, SEQ_CST);
	if (a >= n)
		a = 0; /* forged: our own flip mends it */
	if (!(s->flags & FRAMEBUS_FLAG_HOLDS) || p->o.ignore_holds_for_tests) {
		uint32_t b = (a + 1) % n;
		*before = mark_odd(s, b);
		return b;
	}
	uint32_t tried = 0; /* slots a grant finished on between our C3 and C4 */
	for (uint32_t round = 0; round < 2 * n; round++) {
		uint32_t pending, held = hold_sets(s, &pending); /* C1 */
		uint32_t old = lease_expired(s);
		uint32_t keep = (held & ~old) | tried;
		uint32_t b = first_free(a, n, keep | pending); /* C2 */
		if (b == n)
			b = first_free(a, n, keep);
		if (b == n) {
			/* The slots C4 left out may be free again (their grants withdrew at G5), and
			 * C1 reads the entries one by one: start afresh. */
			tried = 0;
			continue;
		}
		uint64_t l = mark_odd(s, b);                     /* C3 */
		uint32_t pending2, held2 = hold_sets(s, &pending2); /* C4 */
		(void)pending2;
		if (!(held2 & (1u << b))) {
			*before = l;
			return b;
		}
		if (old & (1u << b)) {
			/* Past the lease: taken back, its lock odd (C3) before the bits are cleared. */
			take_back(s, b);
			*before = l;
			return b;
		}
		/* A grant finished meanwhile: no data was written, the lock goes back to even. */
		__atomic_store_n(&s->slots[b].lock, l, SEQ_CST);
		tried |= 1u << b;
	}
	/* No scan found a slot: forged words, or holds changing during every scan. Never
	 * wait: take one back. */
	uint32_t b = (a + 1) % n;
	*before = mark_odd(s, b); /* C3 before the bits are cleared (amendment 10) */
	take_back(s, b);
	return b;
}

/* The heartbeat's look at the hold bits nobody may set, counted in holds_ignored. */
static void count_ignored_holds(struct pseg *s)
{
	uint32_t bits = (1u << s->slot_count) - 1;
	uint32_t valid = bits | bits << FRAMEBUS_HOLD_PENDING_SHIFT;
	uint64_t ignored = 0;
	for (uint32_t i = 0; i < s->consumer_capacity; i++) {
		framebus_consumer_entry *e = &s->table[i];
		uint32_t m = __atomic_load_n(&e->hold_mask, SEQ_CST);
		if (__atomic_load_n(&e->state, SEQ_CST) != FRAMEBUS_ENTRY_ACTIVE)
			ignored += (uint64_t)__builtin_popcount(m);
		else
			ignored += (uint64_t)__builtin_popcount(m & ~valid);
	}
	if (ignored > 0)
		__atomic_fetch_add(&s->h->holds_ignored, ignored, SEQ_CST);
}

static uint8_t *slot_data(struct pseg *s, uint32_t b)
{
	return s->mem + s->payload_off + (uint64_t)b * s->stride;
}

/* Steps 3-6 for begun slot b: the descriptor (commit_ns last), the even lock, last_seq and
 * the flip, the counters, the wake. */
static void commit_slot(fb_producer *p, struct pseg *s, uint32_t b, uint64_t n, const uint8_t *meta,
			uint32_t meta_len, uint64_t capture_ns, uint32_t frame_flags)
{
	framebus_slot_desc *d = &s->slots[b];
	uint32_t sum = 0;
	if ((s->flags & FRAMEBUS_FLAG_CHECKSUM) && n > 0)
		sum = fbi_crc32c(slot_data(s, b), (size_t)n);
	uint64_t next = p->seq + 1;
	__atomic_store_n(&d->frame_seq, next, RELAXED);
	__atomic_store_n(&d->bytes, n, RELAXED);
	__atomic_store_n(&d->checksum, sum, RELAXED);
	__atomic_store_n(&d->frame_flags, frame_flags, RELAXED);
	/* Only the metadata bytes the slot's last frame used need clearing: a bus without
	 * metadata never writes the descriptor's second cache line. */
	uint32_t used = __atomic_load_n(&d->user_meta_len, RELAXED);
	if (used > FRAMEBUS_USER_META_MAX)
		used = FRAMEBUS_USER_META_MAX;
	__atomic_store_n(&d->user_meta_len, meta_len, RELAXED);
	if (meta_len > 0)
		memcpy(d->user_meta, meta, meta_len);
	if (used > meta_len)
		memset(d->user_meta + meta_len, 0, used - meta_len);
	uint64_t now = fbi_now_ns();
	__atomic_store_n(&d->capture_ns, capture_ns ? capture_ns : now, RELAXED);
	__atomic_store_n(&d->commit_ns, now, RELAXED);
	uint64_t l = __atomic_load_n(&d->lock, RELAXED);
	__atomic_store_n(&d->lock, l + 1, SEQ_CST);        /* step 4: even (a release, at least) */
	__atomic_store_n(&s->h->last_seq, next, SEQ_CST); /* step 5: last_seq, then the flip */
	__atomic_store_n(&s->h->active, b, SEQ_CST);
	p->seq = next; /* the number is used once the frame is visible */
	__atomic_fetch_add(&s->h->frames_published, 1, SEQ_CST);
	__atomic_store_n(&s->h->last_commit_ns, now, SEQ_CST);
	wake_all(s); /* step 6 */
}

/* ---- heartbeat (sections 2 and 6) ---------------------------------------------------- */

/* Takes back the entries of dead consumers: only an entry whose liveness lock can be taken
 * exclusively is freed. */
static void reclaim(struct pseg *s)
{
	for (uint32_t i = 0; i < s->consumer_capacity; i++) {
		framebus_consumer_entry *e = &s->table[i];
		uint32_t st = __atomic_load_n(&e->state, SEQ_CST);
		if (st != FRAMEBUS_ENTRY_CLAIMING && st != FRAMEBUS_ENTRY_ACTIVE)
			continue;
		uint64_t off = s->cto + (uint64_t)i * FRAMEBUS_CONSUMER_ENTRY_SIZE;
		if (fbi_ofd_lock(s->fd, F_WRLCK, off, FRAMEBUS_CONSUMER_ENTRY_SIZE) != 0)
			continue; /* a live consumer holds it */
		if (__atomic_compare_exchange_n(&e->state, &st, FRAMEBUS_ENTRY_FREE, 0, SEQ_CST, SEQ_CST)) {
			__atomic_store_n(&e->pidns, 0, SEQ_CST);        /* amendment 8: after the CAS */
			__atomic_exchange_n(&e->hold_mask, 0, SEQ_CST); /* amendment 10: after the CAS */
			__atomic_fetch_add(&s->h->consumers_reclaimed, 1, SEQ_CST);
		}
		fbi_ofd_lock(s->fd, F_UNLCK, off, FRAMEBUS_CONSUMER_ENTRY_SIZE);
	}
}

static void set_broken(fb_producer *p, struct pseg *s, const char *why)
{
	warnf(p, "the segment %s %s: state BROKEN, a new generation follows", p->seg_path, why);
	__atomic_store_n(&s->h->state, FRAMEBUS_STATE_BROKEN, SEQ_CST);
	p->need_regen = 1;
}

/* The heartbeat, under p->mu. A generation is replaced here unless a slot is begun (the
 * caller is writing into the old mapping): then by the next begin or commit. */
static int beat(fb_producer *p)
{
	struct pseg *s = p->cur;
	if (s == NULL || p->sticky)
		return p->sticky;
	struct stat st;
	int broken = fstat(s->fd, &st) != 0 || (uint64_t)st.st_size < s->total || seg_truncated(s);
	if (!broken) {
		framebus_header *h = s->h;
		int good = __atomic_load_n(&h->magic, RELAXED) == FRAMEBUS_MAGIC &&
			   __atomic_load_n(&h->total_size, RELAXED) == s->total &&
			   __atomic_load_n(&h->generation, RELAXED) == s->generation;
		if (good) {
			__atomic_store_n(&h->heartbeat_ns, fbi_now_ns(), SEQ_CST);
			reclaim(s);
			if (s->flags & FRAMEBUS_FLAG_HOLDS)
				count_ignored_holds(s);
		}
		/* truncated (a fault) or overwritten from outside */
		broken = !good || seg_truncated(s);
	}
	struct stat at;
	int moved = lstat(p->seg_path, &at) != 0 ? errno == ENOENT : at.st_dev != s->dev || at.st_ino != s->ino;
	int r = keep_lock(p);
	if (r < 0) {
		p->sticky = r;
		if (p->o.log != NULL)
			p->o.log(p->o.log_arg, FB_LOG_ERROR, p->errmsg);
		return r;
	}
	if (broken && !p->need_regen)
		set_broken(p, s, "is unusable (truncated or overwritten from outside)");
	else if (moved && !p->need_regen) {
		warnf(p, "the name %s was removed or replaced from outside: a new generation follows", p->seg_path);
		p->need_regen = 1;
	}
	if (p->need_regen && !p->begun)
		return regenerate(p);
	return 0;
}

static void *heartbeat_thread(void *arg)
{
	fb_producer *p = arg;
	pthread_mutex_lock(&p->mu);
	while (!p->stopping) {
		beat(p);
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t t = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec +
			     (uint64_t)p->o.heartbeat_ms * 1000000u;
		ts.tv_sec = (time_t)(t / 1000000000u);
		ts.tv_nsec = (long)(t % 1000000000u);
		while (!p->stopping && pthread_cond_timedwait(&p->cv, &p->mu, &ts) == 0)
			;
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

/* ---- the API ------------------------------------------------------------------------- */

static int usable(fb_producer *p)
{
	if (p->closed)
		return pfail(p, FB_ERR_CLOSED, "producer closed");
	if (p->sticky)
		return p->sticky;
	return 0;
}

int fb_producer_create(const char *name, const fb_producer_opts *opts, fb_producer **out)
{
	if (out == NULL)
		return FB_ERR_BAD_OPTIONS;
	*out = NULL;
	fb_producer *p = calloc(1, sizeof *p);
	if (p == NULL)
		return FB_ERR_NO_MEMORY;
	if (opts != NULL)
		p->o = *opts;
	p->lock_fd = -1;
	fb_producer_opts *o = &p->o;
	if (o->slots == 0)
		o->slots = 2;
	if (o->consumers == 0)
		o->consumers = 32;
	if (o->heartbeat_ms == 0)
		o->heartbeat_ms = 100;
	if (o->mode == 0)
		o->mode = 0600;
	p->fmt = o->format;
	int r = 0;
	const char *why = fbi_name_problem(name);
	if (why != NULL)
		r = pfail(p, FB_ERR_BAD_NAME, "bad bus name %s: %s", name ? name : "(null)", why);
	else if (o->slots < FRAMEBUS_MIN_SLOTS || o->slots > FRAMEBUS_MAX_SLOTS || o->consumers > FRAMEBUS_MAX_CONSUMERS ||
		 o->heartbeat_ms > 60000 || o->hold_max_ms > 3600000)
		r = pfail(p, FB_ERR_BAD_OPTIONS, "bad options: slots %" PRIu32 " (2-8), consumers %" PRIu32
			  " (1-1024), heartbeat_ms %" PRIu32 " (1-60000), hold_max_ms %" PRIu32 " (at most 3600000)",
			  o->slots, o->consumers, o->heartbeat_ms, o->hold_max_ms);
	else if (o->mode > 0777 || (o->mode & 0002) || (o->mode & 0600) != 0600)
		r = pfail(p, FB_ERR_BAD_OPTIONS, "bad mode %04" PRIo32 ": owner read and write, never world-writable",
			  o->mode);
	else if (fb_format_complete(&p->fmt) != FB_OK)
		r = pfail(p, FB_ERR_BAD_OPTIONS, "bad format %" PRIu32 "x%" PRIu32 " fourcc 0x%08" PRIx32
			  ": want 1x1 to 16384x16384, a known pixel format (even dimensions for YUYV, NV12, I420)",
			  o->format.width, o->format.height, o->format.pixel_format);
	p->gid = (gid_t)-1;
	if (r == 0 && o->group != NULL && o->group[0] != '\0') {
		char *end;
		unsigned long id = strtoul(o->group, &end, 10);
		if (*end == '\0' && end != o->group)
			p->gid = (gid_t)id;
		else {
			struct group g, *res = NULL;
			char buf[4096];
			if (getgrnam_r(o->group, &g, buf, sizeof buf, &res) == 0 && res != NULL)
				p->gid = res->gr_gid;
			else
				r = pfail(p, FB_ERR_BAD_OPTIONS, "group %s: no such group", o->group);
		}
	}
	if (r == 0) {
		snprintf(p->name, sizeof p->name, "%s", name);
		snprintf(p->dir, sizeof p->dir, "%s", fbi_default_dir(o->dir));
		if (snprintf(p->seg_path, sizeof p->seg_path, "%s/framebus.%s", p->dir, name) >= (int)sizeof p->seg_path ||
		    snprintf(p->lock_path, sizeof p->lock_path, "%s.lock", p->seg_path) >= (int)sizeof p->lock_path ||
		    snprintf(p->tmp_path, sizeof p->tmp_path, "%s.tmp-%d", p->seg_path, (int)getpid()) >= (int)sizeof p->tmp_path)
			r = pfail(p, FB_ERR_BAD_OPTIONS, "bus directory %s: path too long", p->dir);
	}
	fbi_crc_init();
	if (r == 0 && !o->no_sigbus_guard && fbi_guard_install() != 0)
		r = pfail(p, FB_ERR_SYSTEM, "sigaction SIGBUS: %s", strerror(errno));
	if (r == 0)
		r = take_ownership(p);
	if (r == 0)
		r = remove_abandoned_tmps(p);
	struct pseg *old = NULL;
	if (r == 0)
		r = previous(p, &old);
	if (r == 0) {
		uint64_t gen = old ? old->generation + 1 : 1;
		uint64_t last = old ? __atomic_load_n(&old->h->last_seq, SEQ_CST) : 0;
		if (old && seg_truncated(old))
			last = 0;
		r = new_generation(p, gen, last, &p->cur);
		if (r == 0)
			p->seq = last;
		if (old) {
			if (r == 0)
				retire(p, old);
			release(old);
		}
	}
	if (r == 0) {
		pthread_mutex_init(&p->mu, NULL);
		pthread_condattr_t ca;
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&p->cv, &ca);
		pthread_condattr_destroy(&ca);
		if (!o->manual_heartbeat) {
			int e = pthread_create(&p->thread, NULL, heartbeat_thread, p);
			if (e != 0) {
				r = pfail(p, FB_ERR_SYSTEM, "pthread_create: %s", strerror(e));
				/* close as if cleanly: the generation exists */
			} else
				p->has_thread = 1;
		}
		if (r == 0) {
			*out = p;
			return FB_OK;
		}
		if (o->log)
			o->log(o->log_arg, FB_LOG_ERROR, p->errmsg);
		fb_producer_close(p);
		return r;
	}
	if (o->log)
		o->log(o->log_arg, FB_LOG_ERROR, p->errmsg);
	/* No generation: remove the lock file this call made (or when no segment is there). */
	if (p->lock_fd >= 0) {
		struct stat st;
		if ((lstat(p->seg_path, &st) != 0 || p->lock_created) && is_at(p->lock_fd, p->lock_path))
			unlink(p->lock_path);
		fbi_ofd_lock(p->lock_fd, F_UNLCK, 0, 1);
		close(p->lock_fd);
	}
	free(p);
	return r;
}

int fb_producer_begin(fb_producer *p, void **data, size_t *capacity)
{
	if (p == NULL || data == NULL)
		return FB_ERR_BAD_OPTIONS;
	pthread_mutex_lock(&p->mu);
	int r = usable(p);
	if (r == 0 && p->begun)
		r = pfail(p, FB_ERR_SLOT_HELD, "a slot is begun already: commit or abort it first");
	if (r == 0 && (p->need_regen || seg_truncated(p->cur))) {
		if (!p->need_regen)
			set_broken(p, p->cur, "faulted (truncated from outside)");
		r = regenerate(p);
	}
	if (r == 0) {
		struct pseg *s = p->cur;
		p->begun_slot = begin_slot(p, s, &p->begun_lock);
		p->begun = 1;
		*data = slot_data(s, p->begun_slot);
		if (capacity != NULL)
			*capacity = (size_t)s->capacity;
	}
	pthread_mutex_unlock(&p->mu);
	return r;
}

int fb_producer_commit(fb_producer *p, size_t n, const fb_meta *meta, uint64_t *seq)
{
	if (p == NULL)
		return FB_ERR_BAD_OPTIONS;
	pthread_mutex_lock(&p->mu);
	int r = usable(p);
	if (r == 0 && !p->begun)
		r = pfail(p, FB_ERR_SLOT_NOT_HELD, "no slot begun: call begin first");
	struct pseg *s = p->cur;
	if (r == 0 && (n > s->capacity || (meta != NULL && meta->user_meta_len > FRAMEBUS_USER_META_MAX) ||
		       (meta != NULL && meta->user_meta_len > 0 && meta->user_meta == NULL))) {
		r = pfail(p, FB_ERR_BAD_OPTIONS, "commit of %zu bytes (capacity %" PRIu64 ") with %" PRIu32
			  " bytes of metadata (at most %d)", n, s->capacity, meta ? meta->user_meta_len : 0,
			  FRAMEBUS_USER_META_MAX);
		/* the slot stays begun: abort it, or commit a size that fits */
		pthread_mutex_unlock(&p->mu);
		return r;
	}
	if (r == 0) {
		p->begun = 0;
		commit_slot(p, s, p->begun_slot, n, meta ? meta->user_meta : NULL, meta ? meta->user_meta_len : 0,
			    meta ? meta->capture_ns : 0, 0);
		if (seq != NULL)
			*seq = p->seq;
		if (seg_truncated(s)) {
			/* The frame went to zero pages: lost. A new generation follows. */
			if (!p->need_regen)
				set_broken(p, s, "faulted under a frame (truncated from outside)");
			r = regenerate(p);
			if (r == 0)
				r = pfail(p, FB_ERR_TRUNCATED, "the bus %s was truncated under frame %" PRIu64
					  ": it was lost, generation %" PRIu64 " follows", p->seg_path, p->seq,
					  p->cur->generation);
		} else if (p->need_regen)
			r = regenerate(p);
	}
	pthread_mutex_unlock(&p->mu);
	return r;
}

int fb_producer_abort(fb_producer *p)
{
	if (p == NULL)
		return FB_ERR_BAD_OPTIONS;
	pthread_mutex_lock(&p->mu);
	int r = p->closed ? FB_ERR_CLOSED : 0;
	if (r == 0 && !p->begun)
		r = pfail(p, FB_ERR_SLOT_NOT_HELD, "no slot begun: call begin first");
	if (r == 0) {
		/* The slot's data is no longer its frame's: even again with a new value (a reader
		 * that read it before sees the change), its frame_seq old (never new to anyone). */
		p->begun = 0;
		__atomic_store_n(&p->cur->slots[p->begun_slot].lock, (p->begun_lock | 1) + 1, SEQ_CST);
		if (p->need_regen)
			r = regenerate(p);
	}
	pthread_mutex_unlock(&p->mu);
	return r;
}

int fb_producer_publish(fb_producer *p, const void *data, size_t n, const fb_meta *meta, uint64_t *seq)
{
	void *slot;
	size_t cap;
	int r = fb_producer_begin(p, &slot, &cap);
	if (r != 0)
		return r;
	if (n > cap) {
		fb_producer_abort(p);
		return pfail(p, FB_ERR_BAD_OPTIONS, "publish of %zu bytes: the slots hold %zu", n, cap);
	}
	if (n > 0)
		memcpy(slot, data, n);
	return fb_producer_commit(p, n, meta, seq);
}

int fb_producer_reconfigure(fb_producer *p, const fb_format *format)
{
	if (p == NULL || format == NULL)
		return FB_ERR_BAD_OPTIONS;
	fb_format f = *format;
	if (fb_format_complete(&f) != FB_OK)
		return pfail(p, FB_ERR_BAD_OPTIONS, "bad format %" PRIu32 "x%" PRIu32 " fourcc 0x%08" PRIx32,
			     format->width, format->height, format->pixel_format);
	pthread_mutex_lock(&p->mu);
	int r = usable(p);
	if (r == 0 && p->begun)
		r = pfail(p, FB_ERR_SLOT_HELD, "a slot is begun: commit or abort it first");
	if (r == 0) {
		fb_format was = p->fmt;
		p->fmt = f;
		r = regenerate(p);
		if (r < 0) {
			p->fmt = was;
			p->sticky = 0; /* the old generation is still there */
		}
	}
	pthread_mutex_unlock(&p->mu);
	return r;
}

int fb_producer_tick(fb_producer *p)
{
	if (p == NULL)
		return FB_ERR_BAD_OPTIONS;
	if (p->has_thread)
		return usable(p);
	pthread_mutex_lock(&p->mu);
	int r = usable(p);
	if (r == 0)
		r = beat(p);
	pthread_mutex_unlock(&p->mu);
	return r;
}

int fb_producer_stats(fb_producer *p, struct fb_producer_stats *st)
{
	if (p == NULL || st == NULL)
		return FB_ERR_BAD_OPTIONS;
	memset(st, 0, sizeof *st);
	pthread_mutex_lock(&p->mu);
	struct pseg *s = p->cur;
	if (s != NULL) {
		st->generation = s->generation;
		st->last_seq = p->seq;
		if (!seg_truncated(s)) {
			framebus_header *h = s->h;
			st->frames_published = __atomic_load_n(&h->frames_published, SEQ_CST);
			st->consumers_reclaimed = __atomic_load_n(&h->consumers_reclaimed, SEQ_CST);
			st->holds_granted = __atomic_load_n(&h->holds_granted, SEQ_CST);
			st->holds_refused = __atomic_load_n(&h->holds_refused, SEQ_CST);
			st->holds_taken_back = __atomic_load_n(&h->holds_taken_back, SEQ_CST);
			for (uint32_t i = 0; i < s->consumer_capacity; i++)
				if (__atomic_load_n(&s->table[i].state, SEQ_CST) == FRAMEBUS_ENTRY_ACTIVE)
					st->consumers_active++;
		}
	}
	pthread_mutex_unlock(&p->mu);
	return FB_OK;
}

int fb_producer_format(fb_producer *p, fb_format *format)
{
	if (p == NULL || format == NULL)
		return FB_ERR_BAD_OPTIONS;
	*format = p->fmt;
	return FB_OK;
}

const char *fb_producer_errmsg(fb_producer *p)
{
	return p == NULL ? "" : p->errmsg;
}

void *fb_producer_mapping(fb_producer *p, size_t *len)
{
	if (p == NULL || p->cur == NULL)
		return NULL;
	if (len != NULL)
		*len = p->cur->len;
	return p->cur->mem;
}

int fb_producer_close(fb_producer *p)
{
	if (p == NULL)
		return FB_OK;
	if (p->has_thread) {
		pthread_mutex_lock(&p->mu);
		p->stopping = 1;
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
		pthread_join(p->thread, NULL);
		p->has_thread = 0;
	}
	struct pseg *s = p->cur;
	if (s != NULL) {
		if (p->begun) {
			p->begun = 0;
			__atomic_store_n(&s->slots[p->begun_slot].lock, (p->begun_lock | 1) + 1, SEQ_CST);
		}
		/* The end-of-stream frame, RETIRED, the wake. */
		uint64_t before;
		commit_slot(p, s, begin_slot(p, s, &before), 0, NULL, 0, 0, FRAMEBUS_FRAME_EOS);
		__atomic_store_n(&s->h->state, FRAMEBUS_STATE_RETIRED, SEQ_CST);
		wake_all(s);
		if (seg_truncated(s))
			warnf(p, "the segment faulted while closing (truncated from outside)");
		if (is_at(s->fd, p->seg_path) && unlink(p->seg_path) != 0)
			warnf(p, "unlink %s: %s", p->seg_path, strerror(errno));
		release(s);
		p->cur = NULL;
	}
	disown(p);
	p->closed = 1;
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p);
	return FB_OK;
}
