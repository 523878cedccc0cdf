/*
 * inspect.c - fb_inspect: a bus's header, read with pread (no mapping, so no SIGBUS), its
 * owner's liveness by F_OFD_GETLK (taking nothing), and its table's active entries.
 */
#include "internal.h"

#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

int fb_inspect(const char *name, const char *dir, fb_snapshot *out)
{
	if (out == NULL)
		return FB_ERR_BAD_OPTIONS;
	memset(out, 0, sizeof *out);
	if (fbi_name_problem(name) != NULL)
		return FB_ERR_BAD_NAME;
	char lock[PATH_MAX + 8];
	if (snprintf(out->path, sizeof out->path, "%s/framebus.%s", fbi_default_dir(dir), name) >=
	    (int)sizeof out->path)
		return FB_ERR_BAD_OPTIONS;
	snprintf(lock, sizeof lock, "%s.lock", out->path);
	int fd = open(out->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? FB_ERR_NOT_FOUND
		       : errno == EACCES ? FB_ERR_PERMISSION
		       : errno == ELOOP ? FB_ERR_UNSAFE_PATH : FB_ERR_SYSTEM;
	struct stat st;
	framebus_header h;
	int r = FB_OK;
	if (fstat(fd, &st) != 0)
		r = FB_ERR_SYSTEM;
	else if (!S_ISREG(st.st_mode))
		r = FB_ERR_UNSAFE_PATH;
	else if (pread(fd, &h, sizeof h, 0) != (ssize_t)sizeof h)
		r = FB_ERR_CORRUPT;
	else if (h.magic != FRAMEBUS_MAGIC)
		r = FB_ERR_BAD_MAGIC;
	else if (h.abi_version != FRAMEBUS_ABI_VERSION)
		r = FB_ERR_VERSION;
	else if (h.header_size != FRAMEBUS_HEADER_SIZE || h.total_size != (uint64_t)st.st_size ||
		 h.consumer_capacity > FRAMEBUS_MAX_CONSUMERS || h.plane_count > FRAMEBUS_MAX_PLANES ||
		 h.consumer_table_offset > h.total_size ||
		 (uint64_t)h.consumer_capacity * FRAMEBUS_CONSUMER_ENTRY_SIZE > h.total_size - h.consumer_table_offset)
		r = FB_ERR_CORRUPT;
	if (r != FB_OK) {
		close(fd);
		return r;
	}
	out->generation = h.generation;
	out->state = h.state;
	out->flags = h.flags;
	out->format.width = h.width;
	out->format.height = h.height;
	out->format.pixel_format = h.pixel_format;
	out->format.plane_count = h.plane_count;
	memcpy(out->format.plane_stride, h.plane_stride, sizeof h.plane_stride);
	memcpy(out->format.plane_offset, h.plane_offset, sizeof h.plane_offset);
	out->format.fps_num = h.fps_num;
	out->format.fps_den = h.fps_den;
	out->format.max_frame_bytes = h.slot_capacity;
	out->slot_count = h.slot_count;
	out->consumer_capacity = h.consumer_capacity;
	out->heartbeat_interval_ms = h.heartbeat_interval_ms;
	out->producer_pid = h.producer_pid;
	out->producer_pidns = h.producer_pidns;
	uint64_t now = fbi_now_ns();
	out->heartbeat_age_ns = now > h.heartbeat_ns ? now - h.heartbeat_ns : 0;
	out->last_seq = h.last_seq;
	out->frames_published = h.frames_published;
	out->source_drops = h.source_drops;
	out->consumers_reclaimed = h.consumers_reclaimed;
	out->version_mismatch_count = h.version_mismatch_count;
	out->hold_max_ns = h.hold_max_ns;
	out->holds_granted = h.holds_granted;
	out->holds_refused = h.holds_refused;
	out->holds_taken_back = h.holds_taken_back;
	out->holds_ignored = h.holds_ignored;
	size_t tlen = (size_t)h.consumer_capacity * FRAMEBUS_CONSUMER_ENTRY_SIZE;
	framebus_consumer_entry *t = malloc(tlen ? tlen : 1);
	if (t != NULL && pread(fd, t, tlen, (off_t)h.consumer_table_offset) == (ssize_t)tlen) {
		for (uint32_t i = 0; i < h.consumer_capacity; i++)
			if (t[i].state == FRAMEBUS_ENTRY_ACTIVE)
				out->consumers_active++;
	}
	free(t);
	close(fd);
	int err = 0;
	out->producer_alive = fbi_lock_held(lock, &err) == 1;
	return FB_OK;
}
