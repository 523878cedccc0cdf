/*
 * common.c - errors, names, formats, locks, clocks and the checksum: what the consumer,
 * the producer and inspect share.
 */
#include "internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "crc32c.h"

const char *fb_version(void) { return FB_VERSION_STRING; }

const char *fb_strerror(int err)
{
	switch (err) {
	case FB_OK: return "success";
	case FB_ERR_SYSTEM: return "system error";
	case FB_ERR_NOT_FOUND: return "no such bus";
	case FB_ERR_BAD_MAGIC: return "not a framebus segment (bad magic)";
	case FB_ERR_VERSION: return "abi version mismatch";
	case FB_ERR_CORRUPT: return "corrupt segment layout";
	case FB_ERR_BUSY: return "bus is owned by a live producer";
	case FB_ERR_PERMISSION: return "permission denied";
	case FB_ERR_NO_SPACE: return "not enough space in the bus directory";
	case FB_ERR_PRODUCER_GONE: return "producer gone";
	case FB_ERR_STALLED: return "producer stalled (heartbeat stale)";
	case FB_ERR_END_OF_STREAM: return "producer closed the stream";
	case FB_ERR_TIMEOUT: return "timed out";
	case FB_ERR_NO_HOLD: return "frame not held";
	case FB_ERR_HOLD_RELEASED: return "hold already released";
	case FB_ERR_CLOSED: return "closed";
	case FB_ERR_OVERWRITTEN: return "frame overwritten while in use";
	case FB_ERR_CHECKSUM: return "frame checksum mismatch";
	case FB_ERR_BAD_NAME: return "bad bus name";
	case FB_ERR_BAD_OPTIONS: return "bad options";
	case FB_ERR_TABLE_FULL: return "consumer table full";
	case FB_ERR_SHORT_BUFFER: return "destination buffer too small";
	case FB_ERR_INTERRUPTED: return "interrupted by a signal";
	case FB_ERR_UNSAFE_PATH: return "unsafe file at bus path";
	case FB_ERR_NAME_LOST: return "lost the bus name to another process";
	case FB_ERR_TRUNCATED: return "bus truncated under the frame (a new generation follows)";
	case FB_ERR_SLOT_HELD: return "a slot is begun already: commit or abort it first";
	case FB_ERR_SLOT_NOT_HELD: return "no slot begun: call begin first";
	case FB_ERR_NO_MEMORY: return "out of memory";
	default: return "unknown error";
	}
}

uint64_t fbi_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void fbi_sleep_ns(uint64_t ns)
{
	struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
	nanosleep(&ts, NULL);
}

/* Amendment 8 (creation and liveness across PID namespaces): the inode number of /proc/self/ns/pid, 0 when unknown. */
uint64_t fbi_pid_namespace(void)
{
	struct stat st;
	return stat("/proc/self/ns/pid", &st) == 0 ? (uint64_t)st.st_ino : 0;
}

int fbi_ofd_lock(int fd, short type, uint64_t start, uint64_t len)
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
short fbi_ofd_conflict(int fd, uint64_t start, uint64_t len)
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

/* 1: someone holds a lock on byte 0 of the lock file; 0: nobody (or no file); -1: error
 * (*err = errno). Takes nothing (F_OFD_GETLK). */
int fbi_lock_held(const char *lock_path, int *err)
{
	int fd = open(lock_path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		*err = errno;
		return -1;
	}
	struct flock fl;
	memset(&fl, 0, sizeof fl);
	fl.l_type = F_WRLCK; /* conflicts with any lock another description holds */
	fl.l_whence = SEEK_SET;
	fl.l_start = 0;
	fl.l_len = 1;
	int r = fcntl(fd, F_OFD_GETLK, &fl);
	*err = errno;
	close(fd);
	if (r != 0)
		return -1;
	return fl.l_type != F_UNLCK;
}

/* Section 1: why n is not a bus name, NULL if it is one. */
const char *fbi_name_problem(const char *n)
{
	if (n == NULL)
		return "NULL";
	size_t len = strnlen(n, 66);
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

const char *fbi_default_dir(const char *dir)
{
	if (dir != NULL && dir[0] != '\0')
		return dir;
	const char *e = getenv("FRAMEBUS_DIR");
	return e != NULL && e[0] != '\0' ? e : "/dev/shm";
}

static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

void fbi_crc_init(void) { pthread_once(&crc_once, crc32c_init); }

uint32_t fbi_crc32c(const void *p, size_t n) { return crc32c((const uint8_t *)p, n); }

uint32_t fb_crc32c(const void *data, size_t n)
{
	fbi_crc_init();
	return crc32c((const uint8_t *)data, n);
}

const char *fbi_state_name(uint32_t s)
{
	switch (s) {
	case FRAMEBUS_STATE_INITIALIZING: return "INITIALIZING";
	case FRAMEBUS_STATE_READY: return "READY";
	case FRAMEBUS_STATE_BROKEN: return "BROKEN";
	case FRAMEBUS_STATE_RETIRED: return "RETIRED";
	default: return "unknown";
	}
}

void fbi_vlog(fb_log_fn fn, void *arg, int level, char *buf, const char *fmt, va_list ap)
{
	vsnprintf(buf, FB_ERRMSG_LEN, fmt, ap);
	if (fn != NULL)
		fn(arg, level, buf);
}

/* ---- formats (section 3.2; framebus's Format) ---------------------------------------- */

struct plane_spec {
	uint32_t num, den, rowdiv; /* row bytes = width * num / den; rows = height / rowdiv */
};

static int plane_specs(uint32_t fourcc, struct plane_spec *s)
{
	switch (fourcc) {
	case FRAMEBUS_FOURCC_AB24: s[0] = (struct plane_spec){4, 1, 1}; return 1;
	case FRAMEBUS_FOURCC_RGB3:
	case FRAMEBUS_FOURCC_BGR3: s[0] = (struct plane_spec){3, 1, 1}; return 1;
	case FRAMEBUS_FOURCC_GREY: s[0] = (struct plane_spec){1, 1, 1}; return 1;
	case FRAMEBUS_FOURCC_YUYV: s[0] = (struct plane_spec){2, 1, 1}; return 1;
	case FRAMEBUS_FOURCC_NV12:
		s[0] = (struct plane_spec){1, 1, 1};
		s[1] = (struct plane_spec){1, 1, 2};
		return 2;
	case FRAMEBUS_FOURCC_YU12:
		s[0] = (struct plane_spec){1, 1, 1};
		s[1] = (struct plane_spec){1, 2, 2};
		s[2] = (struct plane_spec){1, 2, 2};
		return 3;
	default: return 0;
	}
}

int fb_format_complete(fb_format *f)
{
	if (f == NULL)
		return FB_ERR_BAD_OPTIONS;
	if (f->pixel_format == 0)
		f->pixel_format = FRAMEBUS_FOURCC_AB24;
	if (f->width == 0 || f->height == 0 || f->width > 16384 || f->height > 16384)
		return FB_ERR_BAD_OPTIONS;
	if (f->fps_num == 0)
		f->fps_den = 1;
	else if (f->fps_den == 0)
		return FB_ERR_BAD_OPTIONS;
	if (f->pixel_format == FRAMEBUS_FOURCC_MJPG) {
		if (f->max_frame_bytes == 0 || f->max_frame_bytes > (1ull << 32))
			return FB_ERR_BAD_OPTIONS; /* a compressed frame's size is the caller's */
		if (f->plane_count == 0) {
			f->plane_count = 1;
			f->plane_stride[0] = 0;
			f->plane_offset[0] = 0;
		}
		return FB_OK;
	}
	struct plane_spec s[FRAMEBUS_MAX_PLANES];
	int n = plane_specs(f->pixel_format, s);
	if (n == 0 && f->plane_count == 0)
		return FB_ERR_BAD_OPTIONS;
	if (f->plane_count == 0) {
		int sub = f->pixel_format == FRAMEBUS_FOURCC_NV12 || f->pixel_format == FRAMEBUS_FOURCC_YU12;
		if ((sub && (f->width % 2 || f->height % 2)) ||
		    (f->pixel_format == FRAMEBUS_FOURCC_YUYV && f->width % 2))
			return FB_ERR_BAD_OPTIONS;
		uint64_t off = 0;
		f->plane_count = (uint32_t)n;
		for (int i = 0; i < FRAMEBUS_MAX_PLANES; i++) {
			f->plane_stride[i] = f->plane_offset[i] = 0;
			if (i >= n)
				continue;
			uint64_t stride = (uint64_t)f->width * s[i].num / s[i].den;
			f->plane_stride[i] = (uint32_t)stride;
			f->plane_offset[i] = (uint32_t)off;
			off += stride * (f->height / s[i].rowdiv);
		}
		if (f->max_frame_bytes == 0)
			f->max_frame_bytes = off;
		return f->max_frame_bytes >= off ? FB_OK : FB_ERR_BAD_OPTIONS;
	}
	/* A given layout: planes inside max_frame_bytes (required then). */
	if (f->plane_count > FRAMEBUS_MAX_PLANES || f->max_frame_bytes == 0)
		return FB_ERR_BAD_OPTIONS;
	for (uint32_t i = 0; i < f->plane_count; i++)
		if (f->plane_offset[i] > f->max_frame_bytes)
			return FB_ERR_BAD_OPTIONS;
	return FB_OK;
}
