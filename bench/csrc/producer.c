/*
 * producer.c - a framebus producer written from docs/PROTOCOL.md and framebus.h alone.
 *
 * The whole producer side of the contract, Linux only, C11 (gnu11) with the GCC __atomic
 * builtins, libc only: it is the reference for other languages, the C leg of
 * "framebus bench", and a cross-check of the Go consumer.
 *
 *   gcc -O2 -std=gnu11 -Wall -Wextra -Werror -I framebus/include \
 *       -o producer framebus/testdata/c/producer.c
 *   producer [options] <name>
 *
 * What it does (section and amendment numbers of PROTOCOL.md):
 *   - ownership (2): the lock file framebus.<name>.lock, an OFD write lock on its byte 0
 *     for the producer's whole life, the inode checked against the path after locking; a
 *     second producer gets "busy" naming the owner's pid (exit 3);
 *   - abandoned temporary files of its own name are removed first, each only once its
 *     byte-0 lock could be taken (amendment 8);
 *   - a generation (2, amendment 8): built under framebus.<name>.tmp-<pid> (O_CREAT|O_EXCL|
 *     O_NOFOLLOW), byte 0 of it write-locked at once and its path re-checked, the free space
 *     checked first (statfs), the pages pre-faulted, the header filled (producer_pid and
 *     producer_pidns), state READY, renamed over the name (a rename that fails with ENOENT
 *     starts the creation again, three times at most), then the lock released; the previous
 *     generation's last_seq is continued and that generation RETIRED and woken;
 *   - every frame: the commit of section 4, steps 1-6, with the shared wake word of
 *     amendment 7 (flag bit 1; --per-entry-wake leaves it out) before the per-entry wakes;
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
 * A memory fault on the mapping (the file truncated from outside) is caught around every
 * access to it and turned into a new generation, never a crash.
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
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "benchctl.h"
#include "crc32c.h"
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
	EXIT_BUSY = 3,
	EXIT_LOST = 4,
};

#define SEQ_CST __ATOMIC_SEQ_CST
#define RELAXED __ATOMIC_RELAXED


/* ---- options and state ------------------------------------------------------------ */

static struct {
	const char *dir, *name;
	uint32_t width, height, fourcc;
	double fps;
	uint64_t frames;
	int checksum, per_entry_wake, counter, no_holds, ignore_holds;
	uint64_t hold_max_ns;
	uint32_t slots, consumers, heartbeat_ms;
	mode_t mode;
	const char *meta;
	int wait_consumers;
	const char *bench, *ctl;
	int64_t warmup_ns, measure_ns;
} O = {.width = 640, .height = 480, .fps = 30, .slots = 2, .consumers = 32,
       .heartbeat_ms = 100, .mode = 0600};

/* One generation: the whole segment file mapped read-write. */
struct seg {
	int fd;
	dev_t dev;
	ino_t ino;
	uint8_t *mem;
	size_t len; /* bytes mapped: the whole file, or an old generation's control block */
	framebus_header *h;
	framebus_slot_desc *slots;
	framebus_consumer_entry *table;
	uint32_t slot_count, consumer_capacity, flags;
	uint64_t generation, total, payload_off, stride, capacity, cto;
	uint64_t last_seq; /* an old generation's, read when it is taken over */
};

/* The frame format: planes as docs/PROTOCOL.md 3.2 and framebus's Format derive them. */
static struct {
	uint32_t plane_count;
	uint32_t stride[FRAMEBUS_MAX_PLANES], offset[FRAMEBUS_MAX_PLANES];
	uint64_t frame_size;
} F;

static char seg_path[PATH_MAX], lock_path[PATH_MAX], tmp_path[PATH_MAX];
static int lock_fd = -1;
static int lock_created; /* take_ownership made the lock file */
static dev_t lock_dev;
static ino_t lock_ino;
static struct seg *cur;
static uint64_t seq;        /* the last frame number published (ours) */
static int need_regen;      /* the segment is unusable: replace it before the next frame */
static int64_t next_beat;
static uint8_t *background; /* --render copy: the frame's fixed content */
static volatile sig_atomic_t stop_requested;

/* ---- errors and memory faults ------------------------------------------------------ */

static void cleanup(void);

/* Reports, leaves the bus as a clean close would (or removes the lock file this process
 * made when no generation exists yet), and exits. */
static void die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void die(int code, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "producer: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	cleanup();
	exit(code);
}

static void warnf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void warnf(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "producer: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* A segment file truncated from outside makes any access to its mapping fault. Every
 * access is made inside GUARD, which turns the fault into a jump back and a new
 * generation; a fault anywhere else is a bug and ends the process with a message. */
static sigjmp_buf guard_jmp;
static volatile sig_atomic_t in_guard;

static void on_sigbus(int sig)
{
	(void)sig;
	if (in_guard) {
		in_guard = 0;
		siglongjmp(guard_jmp, 1);
	}
	static const char msg[] = "producer: SIGBUS outside a guarded access\n";
	ssize_t r = write(2, msg, sizeof msg - 1);
	(void)r;
	_exit(EXIT_SYSTEM);
}

/* guarded(fn, arg): runs fn(arg) with a memory fault turned into a jump back here; 1 when
 * fn ran to the end, 0 when a fault cut it short. The handler runs with SA_NODEFER and
 * sigsetjmp saves no signal mask, so a guard costs no system call and SIGBUS is never left
 * blocked. fn's work is in its own frame, so nothing of the caller's is clobbered. */
static __attribute__((noinline)) int guarded(void (*fn)(void *), void *arg)
{
	if (sigsetjmp(guard_jmp, 0) != 0)
		return 0;
	in_guard = 1;
	fn(arg);
	in_guard = 0;
	return 1;
}

static void on_stop(int sig)
{
	(void)sig;
	stop_requested = 1;
}

/* ---- small helpers ------------------------------------------------------------------- */

static int64_t now_ns(void) { return bench_now_ns(); }

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

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

/* The type of a lock another description holds on [start, start+len), F_UNLCK if none. */
static short ofd_conflict(int fd, uint64_t start, uint64_t len)
{
	struct flock fl;
	memset(&fl, 0, sizeof fl);
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	fl.l_start = (off_t)start;
	fl.l_len = (off_t)len;
	if (fcntl(fd, F_OFD_GETLK, &fl) != 0)
		return F_UNLCK;
	return fl.l_type;
}

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

/* Amendment 8: st_ino of /proc/self/ns/pid, 0 when unknown. */
static uint64_t pid_namespace(void)
{
	struct stat st;
	if (stat("/proc/self/ns/pid", &st) != 0)
		return 0;
	return (uint64_t)st.st_ino;
}

/* ---- names and formats (sections 1 and 3.2) ----------------------------------------- */

static const char *name_problem(const char *n)
{
	size_t len = strlen(n);
	if (len == 0)
		return "empty";
	if (len > 64)
		return "longer than 64 characters";
	if (n[0] == '.')
		return "starts with '.'";
	if (len >= 5 && strcmp(n + len - 5, ".lock") == 0)
		return "ends in .lock";
	if (strstr(n, ".tmp-") != NULL)
		return "contains .tmp-";
	for (size_t i = 0; i < len; i++) {
		char c = n[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return "only [A-Za-z0-9._-] are allowed";
	}
	return NULL;
}

struct plane_spec {
	uint32_t num, den, rowdiv; /* row bytes = width * num / den; rows = height / rowdiv */
};

static int plane_specs(uint32_t fourcc, struct plane_spec *s)
{
	if (fourcc == FRAMEBUS_FOURCC_AB24) {
		s[0] = (struct plane_spec){4, 1, 1};
		return 1;
	}
	if (fourcc == FRAMEBUS_FOURCC_RGB3 || fourcc == FRAMEBUS_FOURCC_BGR3) {
		s[0] = (struct plane_spec){3, 1, 1};
		return 1;
	}
	if (fourcc == FRAMEBUS_FOURCC_GREY) {
		s[0] = (struct plane_spec){1, 1, 1};
		return 1;
	}
	if (fourcc == FRAMEBUS_FOURCC_YUYV) {
		s[0] = (struct plane_spec){2, 1, 1};
		return 1;
	}
	if (fourcc == FRAMEBUS_FOURCC_NV12) {
		s[0] = (struct plane_spec){1, 1, 1};
		s[1] = (struct plane_spec){1, 1, 2};
		return 2;
	}
	if (fourcc == FRAMEBUS_FOURCC_YU12) {
		s[0] = (struct plane_spec){1, 1, 1};
		s[1] = (struct plane_spec){1, 2, 2};
		s[2] = (struct plane_spec){1, 2, 2};
		return 3;
	}
	return 0;
}

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

static void complete_format(void)
{
	struct plane_spec s[FRAMEBUS_MAX_PLANES];
	int n = plane_specs(O.fourcc, s);
	if (n == 0)
		die(EXIT_USAGE, "unsupported pixel format");
	if (O.width == 0 || O.height == 0 || O.width > 16384 || O.height > 16384)
		die(EXIT_USAGE, "frame size %" PRIu32 "x%" PRIu32 ": want 1x1 to 16384x16384",
		    O.width, O.height);
	int sub = O.fourcc == FRAMEBUS_FOURCC_NV12 || O.fourcc == FRAMEBUS_FOURCC_YU12;
	if ((sub && (O.width % 2 || O.height % 2)) || (O.fourcc == FRAMEBUS_FOURCC_YUYV && O.width % 2))
		die(EXIT_USAGE, "this pixel format needs even dimensions, got %" PRIu32 "x%" PRIu32,
		    O.width, O.height);
	uint64_t off = 0;
	F.plane_count = (uint32_t)n;
	for (int i = 0; i < n; i++) {
		uint64_t stride = (uint64_t)O.width * s[i].num / s[i].den;
		uint64_t rows = O.height / s[i].rowdiv;
		F.stride[i] = (uint32_t)stride;
		F.offset[i] = (uint32_t)off;
		off += stride * rows;
	}
	F.frame_size = off;
}

/* ---- ownership (section 2) ------------------------------------------------------------ */

/* The owner's pid from the segment at the name, 0 if it cannot be read. */
static uint32_t owner_pid(void)
{
	int fd = open(seg_path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return 0;
	framebus_header h;
	ssize_t n = pread(fd, &h, sizeof h, 0);
	close(fd);
	if (n != (ssize_t)sizeof h || h.magic != FRAMEBUS_MAGIC)
		return 0;
	return h.producer_pid;
}

/* Opens the lock file and takes its byte 0; returns 1 if this call created the file. */
static int take_ownership(void)
{
	for (int try = 0; try < 10; try++) {
		int created = 1;
		int fd = open(lock_path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, O.mode);
		if (fd < 0 && errno == EEXIST) {
			created = 0;
			fd = open(lock_path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
		}
		if (fd < 0)
			die(EXIT_SYSTEM, "open %s: %s", lock_path, strerror(errno));
		if (created && fchmod(fd, O.mode) != 0) /* the umask does not decide */
			die(EXIT_SYSTEM, "chmod %s: %s", lock_path, strerror(errno));
		if (ofd_lock(fd, F_WRLCK, 0, 1) != 0) {
			if (errno != EAGAIN && errno != EACCES)
				die(EXIT_SYSTEM, "F_OFD_SETLK %s: %s", lock_path, strerror(errno));
			/* A read lock on byte 0 is not a producer but somebody blocking the name:
			 * this lock file is given up and a new one made. */
			if (ofd_conflict(fd, 0, 1) == F_RDLCK && try < 9) {
				if (is_at(fd, lock_path))
					unlink(lock_path);
				close(fd);
				continue;
			}
			close(fd);
			die(EXIT_BUSY, "busy: bus %s is owned by a live producer (pid %" PRIu32 ")",
			    O.name, owner_pid());
		}
		/* The lock must be on the file at the path now: a closing producer or gc may
		 * have unlinked it between our open and our lock. */
		struct stat st;
		if (is_at(fd, lock_path) && fstat(fd, &st) == 0) {
			lock_fd = fd;
			lock_dev = st.st_dev;
			lock_ino = st.st_ino;
			return created;
		}
		close(fd);
	}
	die(EXIT_BUSY, "busy: lock file %s keeps changing", lock_path);
}

/* Removes the lock file if it is still ours (byte 0 held), then releases it. */
static void disown(void)
{
	if (lock_fd < 0)
		return;
	if (is_at(lock_fd, lock_path))
		unlink(lock_path);
	ofd_lock(lock_fd, F_UNLCK, 0, 1);
	close(lock_fd);
	lock_fd = -1;
}

/* Re-creates and re-takes the lock file when it was removed from outside (systemd's
 * RemoveIPC removes every file of the user in /dev/shm). */
static void keep_lock(void)
{
	struct stat st;
	if (lstat(lock_path, &st) == 0 && st.st_dev == lock_dev && st.st_ino == lock_ino)
		return;
	int old = lock_fd;
	lock_fd = -1;
	int fd = open(lock_path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, O.mode);
	if (fd < 0 || fchmod(fd, O.mode) != 0 || ofd_lock(fd, F_WRLCK, 0, 1) != 0 ||
	    !is_at(fd, lock_path) || fstat(fd, &st) != 0) {
		/* Another process holds the lock file now at our path: the name is not ours. */
		die(EXIT_LOST, "lost the name %s: the lock file %s was replaced by another process",
		    O.name, lock_path);
	}
	warnf("the lock file %s was removed from outside; made it again", lock_path);
	lock_fd = fd;
	lock_dev = st.st_dev;
	lock_ino = st.st_ino;
	ofd_lock(old, F_UNLCK, 0, 1);
	close(old);
}

/* Amendment 8: removes the abandoned temporary files of our name, each only when its
 * byte-0 lock can be taken (its creator is gone) and the path still names it. */
static void remove_abandoned_tmps(void)
{
	char prefix[128];
	snprintf(prefix, sizeof prefix, "framebus.%s.tmp-", O.name);
	DIR *d = opendir(O.dir);
	if (d == NULL)
		die(EXIT_SYSTEM, "opendir %s: %s", O.dir, strerror(errno));
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, prefix, strlen(prefix)) != 0)
			continue;
		char p[PATH_MAX];
		if (snprintf(p, sizeof p, "%s/%s", O.dir, e->d_name) >= (int)sizeof p)
			continue;
		int fd = open(p, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
		if (fd < 0)
			continue;
		struct stat st;
		if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && ofd_lock(fd, F_WRLCK, 0, 1) == 0 &&
		    is_at(fd, p)) {
			if (unlink(p) == 0)
				warnf("removed the abandoned temporary file %s", p);
		}
		close(fd); /* drops the lock */
	}
	closedir(d);
}

/* ---- generations (section 2) ---------------------------------------------------------- */

static void release(struct seg *s)
{
	if (s == NULL)
		return;
	if (s->mem != NULL)
		munmap(s->mem, s->len);
	if (s->fd >= 0)
		close(s->fd);
	free(s);
}

static void view(struct seg *s)
{
	framebus_header *h = (framebus_header *)s->mem;
	s->h = h;
	s->slots = (framebus_slot_desc *)(s->mem + FRAMEBUS_HEADER_SIZE);
	s->table = (framebus_consumer_entry *)(s->mem + s->cto);
}

/* The segment a previous producer left at the name, if any, with its control block
 * mapped (to continue its numbering, retire it and wake its consumers). Anything there
 * that is not a regular file of ours is refused; a corrupt leftover is replaced. */
static struct seg *previous(void)
{
	struct stat st;
	if (lstat(seg_path, &st) != 0) {
		if (errno == ENOENT)
			return NULL;
		die(EXIT_SYSTEM, "lstat %s: %s", seg_path, strerror(errno));
	}
	if (!S_ISREG(st.st_mode))
		die(EXIT_SYSTEM, "%s is not a regular file (refusing to replace it)", seg_path);
	if (st.st_uid != geteuid())
		die(EXIT_SYSTEM, "%s belongs to uid %u, not to us (mode %04o)", seg_path,
		    (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
	int fd = open(seg_path, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return NULL;
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
	struct seg *s = calloc(1, sizeof *s);
	if (s == NULL)
		die(EXIT_SYSTEM, "out of memory");
	s->fd = fd;
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	s->mem = m;
	s->len = (size_t)h.payload_offset;
	s->slot_count = h.slot_count;
	s->consumer_capacity = h.consumer_capacity;
	s->flags = h.flags;
	s->generation = h.generation;
	s->total = h.total_size;
	s->payload_off = h.payload_offset;
	s->cto = cto;
	view(s);
	return s;
corrupt:
	close(fd);
	warnf("%s is not a usable segment: replacing it with generation 1", seg_path);
	return NULL;
}

/* Retires an old generation (unless BROKEN) and wakes its consumers (section 2). */
static void wake_all(struct seg *s);
static void retire_words(void *arg)
{
	struct seg *s = arg;
	if (__atomic_load_n(&s->h->state, SEQ_CST) != FRAMEBUS_STATE_BROKEN)
		__atomic_store_n(&s->h->state, FRAMEBUS_STATE_RETIRED, SEQ_CST);
	wake_all(s);
}

static void retire(struct seg *s)
{
	if (!guarded(retire_words, s))
		warnf("the old generation faulted while being retired (truncated from outside)");
}

/* Builds a complete generation under the temporary name and renames it over the name. */
static struct seg *new_generation(uint64_t gen, uint64_t last_seq)
{
	uint64_t stride = align_up(F.frame_size, FRAMEBUS_PAYLOAD_ALIGN);
	if (stride == 0)
		stride = FRAMEBUS_PAYLOAD_ALIGN;
	uint64_t cto = FRAMEBUS_HEADER_SIZE + (uint64_t)O.slots * FRAMEBUS_SLOT_DESC_SIZE;
	uint64_t payload_off = align_up(cto + (uint64_t)O.consumers * FRAMEBUS_CONSUMER_ENTRY_SIZE,
					FRAMEBUS_PAYLOAD_ALIGN);
	uint64_t total = payload_off + (uint64_t)O.slots * stride;

	for (int attempt = 0; attempt < 3; attempt++) {
		struct statfs sf;
		if (statfs(O.dir, &sf) != 0)
			die(EXIT_SYSTEM, "statfs %s: %s", O.dir, strerror(errno));
		uint64_t avail = (uint64_t)sf.f_bavail * (uint64_t)sf.f_bsize;
		if (total > avail)
			die(EXIT_SYSTEM, "%s: not enough space for the bus: %" PRIu64
					 " bytes needed, %" PRIu64 " available", O.dir, total, avail);

		int fd = open(tmp_path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, O.mode);
		if (fd < 0 && errno == EEXIST) {
			/* A dead process that had our pid left it: the lock rule decides. */
			remove_abandoned_tmps();
			fd = open(tmp_path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, O.mode);
		}
		if (fd < 0)
			die(EXIT_SYSTEM, "create %s: %s", tmp_path, strerror(errno));
		/* Amendment 8: hold byte 0 of the temporary file until it is renamed, so that gc
		 * (and other producers' clean-up) can tell a creation in progress from a leftover;
		 * and check that the path still names the file we hold. */
		if (ofd_lock(fd, F_WRLCK, 0, 1) != 0 || !is_at(fd, tmp_path)) {
			warnf("%s changed under us while being created; starting over", tmp_path);
			close(fd);
			continue;
		}
		struct stat st;
		if (fchmod(fd, O.mode) != 0 || fstat(fd, &st) != 0)
			die(EXIT_SYSTEM, "chmod %s: %s", tmp_path, strerror(errno));
		int err = posix_fallocate(fd, 0, (off_t)total);
		if (err == EOPNOTSUPP || err == EINVAL)
			err = ftruncate(fd, (off_t)total) == 0 ? 0 : errno;
		if (err != 0) {
			unlink(tmp_path);
			close(fd);
			if (err == ENOSPC)
				die(EXIT_SYSTEM, "%s: not enough space for the bus: %" PRIu64
						 " bytes needed", O.dir, total);
			die(EXIT_SYSTEM, "allocate %s: %s", tmp_path, strerror(err));
		}
		uint8_t *mem = mmap(NULL, (size_t)total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (mem == MAP_FAILED) {
			int e = errno;
			unlink(tmp_path);
			close(fd);
			die(EXIT_SYSTEM, "mmap %s: %s", tmp_path, strerror(e));
		}
		/* Pre-fault every page: a first write to fresh shared memory costs a fault per
		 * 4 KiB, which would land on the first frames. Nobody else maps this file yet, so
		 * a fault here is our own bug, not a truncation. */
		for (uint64_t i = 0; i < total; i += 4096)
			((volatile uint8_t *)mem)[i] = 0;

		struct seg *s = calloc(1, sizeof *s);
		if (s == NULL)
			die(EXIT_SYSTEM, "out of memory");
		s->fd = fd;
		s->dev = st.st_dev;
		s->ino = st.st_ino;
		s->mem = mem;
		s->len = (size_t)total;
		s->slot_count = O.slots;
		s->consumer_capacity = O.consumers;
		s->flags = (O.checksum ? FRAMEBUS_FLAG_CHECKSUM : 0) |
			   (O.per_entry_wake ? 0 : FRAMEBUS_FLAG_SHARED_WAKE) |
			   (O.no_holds ? 0 : FRAMEBUS_FLAG_HOLDS);
		s->generation = gen;
		s->total = total;
		s->payload_off = payload_off;
		s->stride = stride;
		s->capacity = F.frame_size;
		s->cto = cto;
		view(s);

		framebus_header *h = s->h;
		uint64_t now = (uint64_t)now_ns();
		h->magic = FRAMEBUS_MAGIC;
		h->abi_version = FRAMEBUS_ABI_VERSION;
		h->header_size = FRAMEBUS_HEADER_SIZE;
		h->state = FRAMEBUS_STATE_INITIALIZING;
		h->flags = s->flags;
		h->total_size = total;
		h->generation = gen;
		h->heartbeat_ns = now;
		h->payload_offset = payload_off;
		h->payload_size = (uint64_t)O.slots * stride;
		h->producer_pid = (uint32_t)getpid();
		uint64_t pidns = pid_namespace();
		h->producer_pidns = pidns;
		h->slot_count = O.slots;
		h->slot_stride = stride;
		h->slot_capacity = F.frame_size;
		h->consumer_capacity = O.consumers;
		h->heartbeat_interval_ms = O.heartbeat_ms;
		h->width = O.width;
		h->height = O.height;
		h->pixel_format = O.fourcc;
		h->plane_count = F.plane_count;
		for (uint32_t i = 0; i < FRAMEBUS_MAX_PLANES; i++) {
			h->plane_stride[i] = i < F.plane_count ? F.stride[i] : 0;
			h->plane_offset[i] = i < F.plane_count ? F.offset[i] : 0;
		}
		if (O.fps > 0 && O.fps <= 1e6 && O.fps == (double)(uint32_t)O.fps) {
			h->fps_num = (uint32_t)O.fps;
			h->fps_den = 1;
		} else if (O.fps > 0 && O.fps <= 1e6) {
			h->fps_num = (uint32_t)(O.fps * 1000 + 0.5);
			h->fps_den = 1000;
		} else {
			h->fps_num = 0;
			h->fps_den = 1;
		}
		h->slot_table_offset = FRAMEBUS_HEADER_SIZE;
		h->consumer_table_offset = cto;
		h->slot_desc_size = FRAMEBUS_SLOT_DESC_SIZE;
		h->consumer_entry_size = FRAMEBUS_CONSUMER_ENTRY_SIZE;
		h->created_ns = now;
		h->hold_max_ns = O.no_holds ? 0 : O.hold_max_ns; /* amendment 10: per generation */
		h->last_seq = last_seq;
		/* Everything else (active, the counters, the slots, the table) is the zero of a
		 * fresh file. READY, then the name. */
		__atomic_store_n(&h->state, FRAMEBUS_STATE_READY, SEQ_CST);
		if (rename(tmp_path, seg_path) == 0) {
			ofd_lock(fd, F_UNLCK, 0, 1); /* renamed: no longer a creation in progress */
			return s;
		}
		int e = errno;
		munmap(mem, (size_t)total);
		close(fd);
		free(s);
		if (e == ENOENT) {
			warnf("rename %s: the temporary file was removed from outside; starting over",
			      tmp_path);
			continue;
		}
		unlink(tmp_path);
		die(EXIT_SYSTEM, "rename %s -> %s: %s", tmp_path, seg_path, strerror(e));
	}
	die(EXIT_SYSTEM, "creating a generation of %s failed three times (its temporary file kept "
			 "disappearing)", O.name);
}

/* Replaces the current generation by a new one (section 6), retiring the old. */
static void regenerate(void)
{
	struct seg *old = cur;
	cur = new_generation(old->generation + 1, seq);
	retire(old);
	release(old);
	need_regen = 0;
	printf("generation %" PRIu64 "\n", cur->generation);
}

/* ---- commit (section 4) and wake ------------------------------------------------------ */

/* Step 6: the shared wake word of amendment 7 first (the word a spinning consumer
 * watches, right after the flip), then every active entry's semaphore. sem += 1 and the
 * load of waiters are seq_cst: the store-buffering handshake of section 5. */
static void wake_all(struct seg *s)
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

/* ---- holds (amendment 10; framebus.h, "Holds") ----------------------------------------- */

/* C1: the slots held by finished grants (returned) and by grants in progress (*pending):
 * the union over the entries in state 2 of the bits i < N, by whether the entry's
 * FRAMEBUS_HOLD_PENDING(i) is set. */
static uint32_t hold_sets(struct seg *s, uint32_t *pending)
{
	uint32_t bits = (1u << s->slot_count) - 1, held = 0, pend = 0;
	for (uint32_t i = 0; i < s->consumer_capacity; i++) {
		framebus_consumer_entry *e = &s->table[i];
		if (__atomic_load_n(&e->state, SEQ_CST) != FRAMEBUS_ENTRY_ACTIVE)
			continue;
		uint32_t m = __atomic_load_n(&e->hold_mask, SEQ_CST);
		uint32_t p = m >> FRAMEBUS_HOLD_PENDING_SHIFT;
		pend |= m & bits & p;
		held |= m & bits & ~p;
	}
	*pending = pend;
	return held;
}

/* The slots whose frame is older than the lease (hold_max_ns, 0 = never): their holds may be
 * taken back. */
static uint32_t lease_expired(struct seg *s)
{
	uint64_t lease = __atomic_load_n(&s->h->hold_max_ns, RELAXED);
	if (lease == 0)
		return 0;
	uint64_t now = (uint64_t)now_ns();
	uint32_t out = 0;
	for (uint32_t i = 0; i < s->slot_count; i++) {
		uint64_t c = __atomic_load_n(&s->slots[i].commit_ns, RELAXED);
		if (c != 0 && now > c && now - c > lease)
			out |= 1u << i;
	}
	return out;
}

/* Takes back every hold of slot b before it is written: the bit cleared in each entry in
 * state 2 that has it, holds_taken_back += 1 there and in the header. */
static void take_back(struct seg *s, uint32_t b)
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
static uint64_t mark_odd(struct seg *s, uint32_t b)
{
	framebus_slot_desc *d = &s->slots[b];
	uint64_t l = __atomic_load_n(&d->lock, SEQ_CST);
	__atomic_store_n(&d->lock, l | 1, SEQ_CST);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	return l;
}

/* Steps 1 and 2: the back slot, marked odd, then a store fence before the data. With holds
 * (flag bit 2), step 1 is C1-C4: a slot held by a finished grant is never written; one only
 * being granted may be (its grant fails at G5); C3 -> C4 and the consumer's G4 -> G5 are a
 * store-buffering pair, all seq_cst. */
static uint32_t begin_slot(struct seg *s)
{
	uint32_t n = s->slot_count;
	uint32_t a = __atomic_load_n(&s->h->active, SEQ_CST);
	if (a >= n)
		a = 0; /* forged: our own flip mends it */
	if (!(s->flags & FRAMEBUS_FLAG_HOLDS) || O.ignore_holds) {
		uint32_t b = (a + 1) % n;
		mark_odd(s, b);
		return b;
	}
	uint32_t tried = 0; /* slots a grant finished on between our C3 and C4 */
	for (uint32_t round = 0; round < n; round++) {
		uint32_t pending, held = hold_sets(s, &pending);         /* C1 */
		uint32_t old = lease_expired(s);
		uint32_t keep = (held & ~old) | tried;
		uint32_t b = first_free(a, n, keep | pending);             /* C2 */
		if (b == n)
			b = first_free(a, n, keep);
		if (b == n)
			break; /* nothing avoidable: only forged words do this */
		if (held & (1u << b))
			take_back(s, b); /* past the lease */
		uint64_t l = mark_odd(s, b);                                /* C3 */
		uint32_t pending2, held2 = hold_sets(s, &pending2);       /* C4 */
		if (!(held2 & (1u << b)))
			return b;
		if (old & (1u << b)) {
			take_back(s, b); /* a grant on a frame past the lease: taken back too */
			return b;
		}
		/* A grant finished meanwhile: no data was written, the lock goes back to even. */
		__atomic_store_n(&s->slots[b].lock, l, SEQ_CST);
		tried |= 1u << b;
	}
	/* Every slot but the active one held (more than the cap: forged words): take back. */
	uint32_t b = (a + 1) % n;
	take_back(s, b);
	mark_odd(s, b);
	return b;
}

/* The heartbeat's look at the hold bits: those of entries not in state 2, and those at or
 * past slot_count, mean nothing to either side; they are counted in holds_ignored. */
static void count_ignored_holds(struct seg *s)
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

static uint8_t *slot_data(struct seg *s, uint32_t b)
{
	return s->mem + s->payload_off + (uint64_t)b * s->stride;
}

/* Steps 3-6 for begun slot b: the descriptor (commit_ns last), the even lock, last_seq
 * and the flip, the counters, the wake. */
static void commit_slot(struct seg *s, uint32_t b, uint64_t n, const uint8_t *meta,
			uint32_t meta_len, uint64_t capture_ns, uint32_t frame_flags)
{
	framebus_slot_desc *d = &s->slots[b];
	uint32_t sum = 0;
	if ((s->flags & FRAMEBUS_FLAG_CHECKSUM) && n > 0)
		sum = crc32c(slot_data(s, b), (size_t)n);
	uint64_t next = seq + 1;
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
	uint64_t now = (uint64_t)now_ns();
	__atomic_store_n(&d->capture_ns, capture_ns ? capture_ns : now, RELAXED);
	__atomic_store_n(&d->commit_ns, now, RELAXED);
	uint64_t l = __atomic_load_n(&d->lock, RELAXED);
	__atomic_store_n(&d->lock, l + 1, SEQ_CST); /* step 4: even (a release, at least) */
	__atomic_store_n(&s->h->last_seq, next, SEQ_CST); /* step 5: last_seq, then the flip */
	__atomic_store_n(&s->h->active, b, SEQ_CST);
	seq = next; /* the number is used once the frame is visible */
	__atomic_fetch_add(&s->h->frames_published, 1, SEQ_CST);
	__atomic_store_n(&s->h->last_commit_ns, now, SEQ_CST);
	wake_all(s); /* step 6 */
}

/* ---- rendering ------------------------------------------------------------------------ */

static void make_background(void)
{
	background = malloc(F.frame_size ? F.frame_size : 1);
	if (background == NULL)
		die(EXIT_SYSTEM, "malloc %" PRIu64 " bytes: out of memory", F.frame_size);
	/* Byte i = (i * 2654435761) >> 24: fixed, cheap, not all one value (bench tests
	 * recompute it). */
	for (uint64_t i = 0; i < F.frame_size; i++)
		background[i] = (uint8_t)(((uint32_t)i * 2654435761u) >> 24);
}

/* Writes frame number s into dst (the slot): the background and the number, or counter
 * words. */
static void render(uint8_t *dst, uint64_t s)
{
	if (O.counter) {
		uint64_t words = F.frame_size / 8;
		for (uint64_t w = 0; w < words; w++) {
			uint64_t v = s << 32 | w;
			memcpy(dst + 8 * w, &v, 8);
		}
		return;
	}
	memcpy(dst, background, (size_t)F.frame_size);
	if (F.frame_size >= 8)
		memcpy(dst, &s, 8);
}

/* ---- heartbeat (sections 2 and 6) --------------------------------------------------- */

/* Takes back the entries of dead consumers: only an entry whose liveness lock can be
 * taken exclusively is freed. */
static void reclaim(struct seg *s)
{
	for (uint32_t i = 0; i < s->consumer_capacity; i++) {
		framebus_consumer_entry *e = &s->table[i];
		uint32_t st = __atomic_load_n(&e->state, SEQ_CST);
		if (st != FRAMEBUS_ENTRY_CLAIMING && st != FRAMEBUS_ENTRY_ACTIVE)
			continue;
		uint64_t off = s->cto + (uint64_t)i * FRAMEBUS_CONSUMER_ENTRY_SIZE;
		if (ofd_lock(s->fd, F_WRLCK, off, FRAMEBUS_CONSUMER_ENTRY_SIZE) != 0)
			continue; /* a live consumer holds it */
		if (__atomic_compare_exchange_n(&e->state, &st, FRAMEBUS_ENTRY_FREE, 0, SEQ_CST, SEQ_CST)) {
			__atomic_store_n(&e->pidns, 0, SEQ_CST); /* amendment 8: after the CAS */
			__atomic_exchange_n(&e->hold_mask, 0, SEQ_CST); /* amendment 10: after the CAS */
			__atomic_fetch_add(&s->h->consumers_reclaimed, 1, SEQ_CST);
		}
		ofd_lock(s->fd, F_UNLCK, off, FRAMEBUS_CONSUMER_ENTRY_SIZE);
	}
}

struct beat_job {
	struct seg *s;
	int good;
};

/* The heartbeat's accesses to the mapping: the stable prefix still ours, then
 * heartbeat_ns and the reclaim. */
static void beat_words(void *arg)
{
	struct beat_job *j = arg;
	framebus_header *h = j->s->h;
	j->good = __atomic_load_n(&h->magic, RELAXED) == FRAMEBUS_MAGIC &&
		  __atomic_load_n(&h->total_size, RELAXED) == j->s->total &&
		  __atomic_load_n(&h->generation, RELAXED) == j->s->generation;
	if (j->good) {
		__atomic_store_n(&h->heartbeat_ns, (uint64_t)now_ns(), SEQ_CST);
		reclaim(j->s);
		if (j->s->flags & FRAMEBUS_FLAG_HOLDS)
			count_ignored_holds(j->s);
	}
}

static void set_broken(void *arg)
{
	struct seg *s = arg;
	__atomic_store_n(&s->h->state, FRAMEBUS_STATE_BROKEN, SEQ_CST);
}

static void beat(void)
{
	struct seg *s = cur;
	struct stat st;
	int broken = fstat(s->fd, &st) != 0 || (uint64_t)st.st_size < s->total;
	if (!broken) {
		struct beat_job j = {.s = s};
		/* truncated (a fault) or overwritten from outside */
		broken = !guarded(beat_words, &j) || !j.good;
	}
	struct stat at;
	int moved = lstat(seg_path, &at) != 0 ? errno == ENOENT
					     : at.st_dev != s->dev || at.st_ino != s->ino;
	keep_lock();
	if (broken) {
		warnf("the segment %s is unusable (truncated or overwritten from outside): state "
		      "BROKEN, a new generation follows", seg_path);
		(void)guarded(set_broken, s);
		need_regen = 1;
	} else if (moved) {
		warnf("the name %s was removed or replaced from outside: a new generation follows",
		      seg_path);
		need_regen = 1;
	}
	if (need_regen)
		regenerate();
}

static void maybe_beat(void)
{
	int64_t now = now_ns();
	if (now < next_beat)
		return;
	beat();
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

static int active_consumers(struct seg *s)
{
	int n = 0;
	for (uint32_t i = 0; i < s->consumer_capacity; i++)
		if (__atomic_load_n(&s->table[i].state, SEQ_CST) == FRAMEBUS_ENTRY_ACTIVE)
			n++;
	return n;
}

/* ---- close (section 2) ----------------------------------------------------------------- */

/* The end-of-stream frame, RETIRED, the wake. */
static void close_words(void *arg)
{
	struct seg *s = arg;
	commit_slot(s, begin_slot(s), 0, NULL, 0, 0, FRAMEBUS_FRAME_EOS);
	__atomic_store_n(&s->h->state, FRAMEBUS_STATE_RETIRED, SEQ_CST);
	wake_all(s);
}

static void close_producer(void)
{
	struct seg *s = cur;
	if (!guarded(close_words, s))
		warnf("the segment faulted while closing (truncated from outside)");
	if (is_at(s->fd, seg_path) && unlink(seg_path) != 0)
		warnf("unlink %s: %s", seg_path, strerror(errno));
	disown();
	release(s);
	cur = NULL;
}

static void cleanup(void)
{
	static int done;
	if (done)
		return;
	done = 1;
	if (cur != NULL) {
		close_producer();
		return;
	}
	if (lock_fd >= 0) {
		struct stat st;
		if ((lstat(seg_path, &st) != 0 || lock_created) && is_at(lock_fd, lock_path))
			unlink(lock_path);
		ofd_lock(lock_fd, F_UNLCK, 0, 1);
		close(lock_fd);
		lock_fd = -1;
	}
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

/* Lockstep: every consumer sleeps on its futex, so that the next hand-off times the
 * wake of a sleeping process (bench/child_linux.go's asleepWaiter). The CPU it burns is
 * the benchmark's and is taken out of the producer's. */
static int all_asleep(int n)
{
	if (cur->flags & FRAMEBUS_FLAG_SHARED_WAKE)
		return __atomic_load_n(&cur->h->wake_waiters, SEQ_CST) >= (uint32_t)n;
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

/* ---- the frame loop's guarded steps --------------------------------------------------- */

static void read_last_seq(void *arg)
{
	struct seg *s = arg;
	s->last_seq = __atomic_load_n(&s->h->last_seq, SEQ_CST);
}

struct frame_job {
	struct seg *s;
	uint32_t b;
	uint64_t captured;
	const uint8_t *meta;
	uint32_t meta_len;
};

/* Steps 1-2 and the source's work: the frame rendered straight into the back slot. */
static void begin_and_render(void *arg)
{
	struct frame_job *j = arg;
	j->b = begin_slot(j->s);
	j->captured = (uint64_t)now_ns();
	render(slot_data(j->s, j->b), seq + 1);
}

static void commit_frame(void *arg)
{
	struct frame_job *j = arg;
	commit_slot(j->s, j->b, F.frame_size, j->meta, j->meta_len, j->captured, 0);
}

/* A frame's access to the mapping faulted: the file was truncated from outside. */
static void broken_by_fault(struct seg *s)
{
	warnf("the segment %s faulted under a frame (truncated from outside): state BROKEN, a new "
	      "generation follows", seg_path);
	(void)guarded(set_broken, s);
	need_regen = 1;
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
			O.hold_max_ns = parse_u64(ARG(), "--hold-max", 0, 3600000) * 1000000u;
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
			O.mode = (mode_t)m;
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
	if (O.dir == NULL)
		O.dir = getenv("FRAMEBUS_DIR");
	if (O.dir == NULL || O.dir[0] == '\0')
		O.dir = "/dev/shm";
	if (O.ctl != NULL && O.bench == NULL)
		die(EXIT_USAGE, "--ctl is for the bench mode (--bench)");
	if ((size_t)O.wait_consumers > O.consumers)
		die(EXIT_USAGE, "--wait-consumers %d: more than the table's %" PRIu32 " entries",
		    O.wait_consumers, O.consumers);
	if (O.bench && O.meta)
		die(EXIT_USAGE, "--meta: the bench mode carries its own metadata");
}

int main(int argc, char **argv)
{
	parse_args(argc, argv);
	const char *why = name_problem(O.name);
	if (why != NULL)
		die(EXIT_USAGE, "bad bus name %s: %s", O.name, why);
	complete_format();
	if (snprintf(seg_path, sizeof seg_path, "%s/framebus.%s", O.dir, O.name) >= (int)sizeof seg_path ||
	    snprintf(lock_path, sizeof lock_path, "%s.lock", seg_path) >= (int)sizeof lock_path ||
	    snprintf(tmp_path, sizeof tmp_path, "%s.tmp-%d", seg_path, (int)getpid()) >= (int)sizeof tmp_path)
		die(EXIT_USAGE, "bus directory %s: path too long", O.dir);
	setvbuf(stdout, NULL, _IOLBF, 0);
	crc32c_init();
	if (!O.counter)
		make_background();

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_sigbus;
	sa.sa_flags = SA_NODEFER; /* GUARD jumps out of the handler without restoring a mask */
	sigaction(SIGBUS, &sa, NULL);
	sa.sa_flags = 0;
	sa.sa_handler = on_stop;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);

	lock_created = take_ownership();
	remove_abandoned_tmps();
	struct seg *old = previous();
	uint64_t gen = old ? old->generation + 1 : 1;
	uint64_t last = 0;
	if (old && !guarded(read_last_seq, old))
		old->last_seq = 0;
	if (old)
		last = old->last_seq;
	cur = new_generation(gen, last);
	seq = last;
	if (old) {
		retire(old);
		release(old);
	}
	next_beat = now_ns() + (int64_t)O.heartbeat_ms * 1000000;
	printf("ready %s generation %" PRIu64 " last_seq %" PRIu64 "\n", seg_path, cur->generation, seq);

	int want = O.wait_consumers;
	if (O.bench) {
		BM.ctl = O.ctl ? map_ctl(O.ctl) : NULL;
		BM.warm_end = now_ns() + O.warmup_ns;
		if (O.fps > 0)
			prctl(PR_SET_TIMERSLACK, 1000, 0, 0, 0); /* a precise sleeper */
	}
	if (want > 0) {
		int64_t deadline = now_ns() + 15 * (int64_t)1000000000;
		while (active_consumers(cur) < want) {
			if (now_ns() > deadline || stop_requested) {
				int got = active_consumers(cur);
				close_producer();
				die(EXIT_LOST, "%d of %d consumers joined within 15 s", got, want);
			}
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
			if (e - 1 >= cur->consumer_capacity)
				die(EXIT_SYSTEM, "consumer %d says entry %" PRIu32 ", outside the table", i, e - 1);
			BM.waiters[i] = &cur->table[e - 1].waiters;
		}
	}

	uint8_t meta[FRAMEBUS_USER_META_MAX];
	uint32_t meta_len = 0;
	if (O.meta) {
		meta_len = (uint32_t)strlen(O.meta);
		memcpy(meta, O.meta, meta_len);
	}
	struct bench_pacer pace = {.period = O.fps > 0 ? (int64_t)(1e9 / O.fps) : 0};
	uint64_t published = 0;
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
		if (need_regen)
			regenerate();
		uint32_t phase = 0;
		if (O.bench && (phase = bench_phase(k)) == 0)
			break;
		struct seg *s = cur;
		int64_t t0 = 0, t1 = 0;
		struct frame_job j = {.s = s};
		if (!guarded(begin_and_render, &j)) {
			broken_by_fault(s);
			continue;
		}
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
			meta_len = BENCH_META_LEN;
		}
		j.meta = meta;
		j.meta_len = meta_len;
		if (!guarded(commit_frame, &j)) {
			broken_by_fault(s);
			continue;
		}
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
	uint64_t last_seq = seq;
	close_producer();
	if (O.bench)
		bench_write(cpu);
	printf("done frames=%" PRIu64 " last_seq=%" PRIu64 "\n", published, last_seq);
	return 0;
}
