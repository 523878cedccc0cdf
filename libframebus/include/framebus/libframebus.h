/*
 * libframebus.h - the C API of framebus: live video frames between processes through a
 * shared-memory bus (docs/PROTOCOL.md, the wire contract; docs/LIBFRAMEBUS.md, this API).
 *
 *   #include <framebus/libframebus.h>        cc ... $(pkg-config --cflags --libs framebus)
 *
 * It mirrors framebus's Go API: a consumer (fb_consumer_open, _next, _read_into,
 * fb_frame_valid, fb_frame_hold, fb_hold_release, _close), a producer (fb_producer_create,
 * _begin, _commit, _abort, _publish, _reconfigure, _close) and fb_inspect for tools.
 *
 * Conventions
 *   - One prefix, fb_. The ABI is libframebus.so.1: structs end in zeroed _reserved words, so
 *     that a later 1.x adds fields without breaking programs built against this header. Handles are opaque (fb_consumer, fb_producer); frames, holds,
 *     formats, options and statistics are structs of plain fields owned by the caller.
 *   - Every function that can fail returns an int: FB_OK (0) or a negative fb_err.
 *     fb_strerror(code) names the code; fb_consumer_errmsg / fb_producer_errmsg give the
 *     last failure's full message (which file, which field, both values). An open or a
 *     create that fails has no handle: its message goes to the options' log callback.
 *   - Options structs are zero-initialised by the caller ({0} or memset); the zero value
 *     of every field is the default. Pass NULL for all defaults.
 *   - No global state but one: the SIGBUS guard (below), a process-wide signal handler by
 *     nature, installed at the first open or create unless the options say not to.
 *   - Thread safety: a handle is used by one thread at a time (as a FILE* without locks);
 *     different handles are independent. A producer's heartbeat thread is internal and
 *     synchronised. fb_strerror, fb_inspect, fb_crc32c and fb_format_complete are safe
 *     from any thread.
 *
 * The SIGBUS guard
 *   A bus file truncated under a live mapping (a full tmpfs, a hostile peer, systemd's
 *   RemoveIPC) makes every access to the lost pages raise SIGBUS. The library maps zero
 *   pages over a truncated mapping of its own instead (fbguard), so its reads and writes,
 *   and the caller's reads of a zero-copy view, read zeros rather than kill the process;
 *   fb_frame_valid / fb_hold_valid then return 0, and the consumer joins the producer's
 *   next generation by itself. A SIGBUS elsewhere in the process is passed to the handler
 *   that was installed before (the default ends the process). Set no_sigbus_guard to
 *   leave SIGBUS alone (a program that manages it itself); fb_guard_install() installs it
 *   explicitly.
 */
#ifndef FRAMEBUS_LIBFRAMEBUS_H
#define FRAMEBUS_LIBFRAMEBUS_H

#include <stddef.h>
#include <stdint.h>

#include "framebus.h" /* the wire contract: layout, constants, FRAMEBUS_FOURCC_* */

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && defined(FB_BUILDING_LIBRARY)
#define FB_API __attribute__((visibility("default")))
#else
#define FB_API
#endif

#define FB_VERSION_MAJOR 1
#define FB_VERSION_MINOR 0
#define FB_VERSION_PATCH 0
#define FB_VERSION_STRING "1.0.0"

/* The library's version, e.g. "1.0.0" (may differ from FB_VERSION_STRING with a newer .so). */
FB_API const char *fb_version(void);

/* ---- errors -------------------------------------------------------------------------- */

typedef enum fb_err {
	FB_OK = 0,
	FB_ERR_SYSTEM = -1,          /* a system call failed (the message has errno's text) */
	FB_ERR_NOT_FOUND = -2,       /* no such bus */
	FB_ERR_BAD_MAGIC = -3,       /* not a framebus segment */
	FB_ERR_VERSION = -4,         /* abi_version is not FRAMEBUS_ABI_VERSION */
	FB_ERR_CORRUPT = -5,         /* a layout field violates the contract */
	FB_ERR_BUSY = -6,            /* the name is owned by a live producer */
	FB_ERR_PERMISSION = -7,      /* the file's mode or owner refuses us */
	FB_ERR_NO_SPACE = -8,        /* the bus directory is too small */
	FB_ERR_PRODUCER_GONE = -9,   /* no owner, or retired/broken without end of stream */
	FB_ERR_STALLED = -10,        /* the owner is alive but its heartbeat is stale */
	FB_ERR_END_OF_STREAM = -11,  /* the producer closed the stream (sticky) */
	FB_ERR_TIMEOUT = -12,        /* nothing new within the timeout */
	FB_ERR_NO_HOLD = -13,        /* a hold was refused: fb_hold.refused says why */
	FB_ERR_HOLD_RELEASED = -14,  /* the hold was released already */
	FB_ERR_CLOSED = -15,         /* the handle was closed */
	FB_ERR_OVERWRITTEN = -16,    /* the frame was overwritten while in use */
	FB_ERR_CHECKSUM = -17,       /* the frame's CRC-32C does not match (frame delivered) */
	FB_ERR_BAD_NAME = -18,       /* a bus name outside [A-Za-z0-9._-]{1,64} and its rules */
	FB_ERR_BAD_OPTIONS = -19,    /* an option out of range */
	FB_ERR_TABLE_FULL = -20,     /* every consumer entry is taken */
	FB_ERR_SHORT_BUFFER = -21,   /* read_into: the buffer is smaller than the frame */
	FB_ERR_INTERRUPTED = -22,    /* a signal interrupted a wait (EINTR): call again */
	FB_ERR_UNSAFE_PATH = -23,    /* a symlink or a non-regular file at the bus path */
	FB_ERR_NAME_LOST = -24,      /* producer: another process took the lock file */
	FB_ERR_TRUNCATED = -25,      /* producer: the bus was truncated under the frame; it was
				      * lost and a new generation started: publish again */
	FB_ERR_SLOT_HELD = -26,      /* producer: begin twice without commit or abort */
	FB_ERR_SLOT_NOT_HELD = -27,  /* producer: commit or abort without begin */
	FB_ERR_NO_MEMORY = -28,
} fb_err;

/* A static, never NULL, description of an fb_err ("no such bus"). */
FB_API const char *fb_strerror(int err);

/* Log levels of the options' log callback. */
enum { FB_LOG_ERROR = 0, FB_LOG_WARN = 1, FB_LOG_INFO = 2 };
typedef void (*fb_log_fn)(void *arg, int level, const char *msg);

/* ---- formats ----------------------------------------------------------------------- */

typedef struct fb_format {
	uint32_t width, height;
	uint32_t pixel_format;   /* FRAMEBUS_FOURCC_*; 0 = RGBA (AB24) */
	uint32_t plane_count;    /* 0: derived from width, height and pixel_format */
	uint32_t plane_stride[FRAMEBUS_MAX_PLANES];
	uint32_t plane_offset[FRAMEBUS_MAX_PLANES];
	uint32_t fps_num, fps_den;  /* 0/0: unknown */
	uint64_t max_frame_bytes;   /* 0: derived (required for MJPG); the slot capacity */
	uint64_t _reserved[2];       /* zero: room for fields of later 1.x versions */
} fb_format;

/* Fills the planes and max_frame_bytes of a format from width, height and pixel_format
 * (and checks a given plane layout). FB_OK or FB_ERR_BAD_OPTIONS. */
FB_API int fb_format_complete(fb_format *f);

/* CRC-32C (Castagnoli) of n bytes, the checksum of framebus slots. */
FB_API uint32_t fb_crc32c(const void *data, size_t n);

/* Installs the SIGBUS guard now (it is installed at the first open or create otherwise).
 * FB_OK or FB_ERR_SYSTEM. */
FB_API int fb_guard_install(void);

/* ---- consumer ---------------------------------------------------------------------- */

typedef struct fb_consumer fb_consumer;

enum {
	FB_WAKE_AUTO = 0,   /* the shared wake word when the producer keeps one, else the entry's */
	FB_WAKE_SEM = 1,    /* the entry's semaphore (section 5) */
	FB_WAKE_SHARED = 2, /* the shared word (amendment 7); FB_ERR_BAD_OPTIONS without it */
};

typedef struct fb_consumer_opts {
	const char *dir;          /* bus directory; NULL: $FRAMEBUS_DIR, else /dev/shm */
	uint32_t wait_ms;         /* how long open waits for a bus not created yet (0: not) */
	int wake;                 /* FB_WAKE_* */
	uint32_t spin_us;         /* the predictive spin (framebus.h): at most this long per
				   * frame; 0: never spin */
	int skip_checksum;        /* do not check CRC-32C checksums */
	int hold_frames;          /* next() holds every data frame (frame.held, frame.hold), or
				   * copies it when the hold is refused (frame.copied) */
	int no_sigbus_guard;      /* leave SIGBUS alone (see "The SIGBUS guard") */
	fb_log_fn log;            /* diagnostics (generation changes, refusals); NULL: none */
	void *log_arg;
	/* Advanced (tools, tests): the segment file itself instead of dir and name, and its
	 * lock file (NULL: path + ".lock"); no_owner_check skips the liveness lock test. */
	const char *path;
	const char *lock_path;
	int no_owner_check;
	uint64_t _reserved[8];       /* zero: room for fields of later 1.x versions */
} fb_consumer_opts;

/* Why a hold was refused (fb_hold.refused, with FB_ERR_NO_HOLD). */
typedef enum fb_hold_refusal {
	FB_HOLD_OK = 0,
	FB_HOLD_CAP = 1,          /* slot_count - 2 slots are held on the bus already */
	FB_HOLD_OVERWRITTEN = 2,  /* the producer came back to the slot before the grant */
	FB_HOLD_UNSUPPORTED = 3,  /* the producer does not honour holds */
	FB_HOLD_COPY = 4,         /* the frame is a copy (read_into): nothing to hold */
} fb_hold_refusal;

/* A held frame: zero-copy, intact until fb_hold_release (unless a producer's lease takes it
 * back: fb_hold_valid then returns 0). A value: copy it freely, release it once. */
typedef struct fb_hold {
	const uint8_t *data;
	size_t bytes;
	uint64_t seq, capture_ns, commit_ns, generation;
	int refused;           /* fb_hold_refusal, when fb_frame_hold returned FB_ERR_NO_HOLD */
	uint32_t _rec;         /* private */
	uint64_t _serial;      /* private; 0: no hold */
	uint64_t _reserved[2];       /* zero: room for fields of later 1.x versions */
} fb_hold;

/* A delivered frame. Its data is a zero-copy read-only view into the bus (next), the
 * caller's buffer (read_into), or with hold_frames either the held view or the consumer's
 * copy. A view stays readable until the next call on the consumer (or until released, when
 * held); check fb_frame_valid after using it: a producer may have come back to the slot. */
typedef struct fb_frame {
	const uint8_t *data;
	size_t bytes;
	uint64_t seq;
	uint64_t capture_ns, commit_ns; /* CLOCK_MONOTONIC */
	uint32_t frame_flags;           /* FRAMEBUS_FRAME_* */
	uint32_t checksum;
	int checksum_ok;                /* 1: verified, or the bus carries no checksums */
	uint32_t user_meta_len;
	uint8_t user_meta[FRAMEBUS_USER_META_MAX];
	uint64_t dropped;               /* frames missed just before this one */
	uint64_t torn;                  /* torn reads retried for this frame */
	uint64_t generation;
	int generation_changed;         /* a new generation was joined since the last frame:
					 * read the format again (fb_consumer_format) */
	int copied;                     /* data is a copy */
	int held;                       /* hold_frames: hold below was granted; release it with
					 * fb_hold_release(c, &frame.hold) */
	fb_hold hold;
	/* private */
	void *_seg;
	uint32_t _slot;
	uint64_t _lock;
	uint64_t _reserved[4];       /* zero: room for fields of later 1.x versions */
} fb_frame;

/* Statistics (a struct tag, as POSIX's struct stat: the function has its name). */
struct fb_consumer_stats {
	uint64_t generation;
	int entry;                       /* our index in the consumer table */
	int shared_wake;                 /* sleeping on the shared wake word */
	int eos;                         /* the end of stream was taken */
	uint64_t last_seq;
	uint64_t delivered;              /* data frames delivered (this process) */
	uint64_t dropped, torn_retries, crc_bad;
	uint64_t refused, resyncs;       /* amendment 9 (forged words refused): reads refused, re-synchronisations */
	uint64_t truncations, generations, retired_ignored, wake_repairs;
	uint64_t spin_hits, spin_misses;
	uint64_t holds_granted, holds_refused; /* this process */
	uint64_t holds_taken_back;       /* by the producer's lease, this generation's entry */
	int holds;                       /* holds out now */
	uint64_t _reserved[8];       /* zero: room for fields of later 1.x versions */
};

/* Opens bus `name` (or opts->path), validates it, maps it and joins its consumer table. */
FB_API int fb_consumer_open(const char *name, const fb_consumer_opts *opts, fb_consumer **out);

/* Waits up to timeout_ms (negative: for ever; 0: a look) for the next frame newer than the
 * last one delivered, and fills *frame with a zero-copy view. FB_OK; FB_ERR_CHECKSUM (the
 * frame is delivered, checksum_ok 0); FB_ERR_TIMEOUT; FB_ERR_END_OF_STREAM (the producer
 * closed; sticky); FB_ERR_PRODUCER_GONE / FB_ERR_STALLED; FB_ERR_INTERRUPTED (a signal). A
 * new generation is joined by itself (frame->generation_changed). */
FB_API int fb_consumer_next(fb_consumer *c, int timeout_ms, fb_frame *frame);

/* As next, but the frame is copied into buf under the sequence lock (never torn):
 * frame->data == buf. FB_ERR_SHORT_BUFFER (frame->bytes says how much) takes nothing. */
FB_API int fb_consumer_read_into(fb_consumer *c, void *buf, size_t len, int timeout_ms,
				 fb_frame *frame);

/* 1 while the frame's data is intact (a copy always is; a view until the producer comes
 * back to its slot; a held frame until released or taken back), else 0. */
FB_API int fb_frame_valid(fb_consumer *c, const fb_frame *frame);

/* Holds the frame of the last next() (amendment 10), zero-copy, until fb_hold_release.
 * Never waits. FB_OK, or FB_ERR_NO_HOLD with hold->refused saying why (copy instead). */
FB_API int fb_frame_hold(fb_consumer *c, const fb_frame *frame, fb_hold *hold);
FB_API int fb_hold_release(fb_consumer *c, fb_hold *hold);
FB_API int fb_hold_valid(fb_consumer *c, const fb_hold *hold);

FB_API int fb_consumer_format(fb_consumer *c, fb_format *format);
FB_API int fb_consumer_stats(fb_consumer *c, struct fb_consumer_stats *stats);
/* The last failure's message ("" if none); valid until the next call on c. */
FB_API const char *fb_consumer_errmsg(fb_consumer *c);
/* Releases every hold, leaves the table, unmaps. NULL is ignored. */
FB_API int fb_consumer_close(fb_consumer *c);

/* ---- producer ------------------------------------------------------------------------ */

typedef struct fb_producer fb_producer;

typedef struct fb_producer_opts {
	const char *dir;           /* bus directory; NULL: $FRAMEBUS_DIR, else /dev/shm */
	fb_format format;          /* width and height required; pixel_format 0 = RGBA */
	uint32_t slots;            /* 2 (default) .. 8 */
	uint32_t consumers;        /* table entries, default 32, at most 1024 */
	uint32_t heartbeat_ms;     /* default 100, 1 .. 60000 */
	uint32_t mode;             /* file mode, default 0600; must have 0600, never o+w */
	const char *group;         /* group (name or numeric id) of the files, with mode 0660;
				    * NULL: the creator's */
	int checksum;              /* carry a CRC-32C of every frame */
	int no_shared_wake;        /* no shared wake word (amendment 7) */
	int no_holds;              /* do not honour holds (amendment 10) */
	uint32_t hold_max_ms;      /* the lease; 0: holds are never taken back */
	int manual_heartbeat;      /* no heartbeat thread: call fb_producer_tick at least once a
				    * heartbeat interval (an event loop that owns its thread) */
	int no_sigbus_guard;
	fb_log_fn log;
	void *log_arg;
	int ignore_holds_for_tests; /* tests only: flag bit 2 set, yet section 4's back slot */
	uint64_t _reserved[8];       /* zero: room for fields of later 1.x versions */
} fb_producer_opts;

typedef struct fb_meta {
	uint64_t capture_ns;       /* when the source produced the frame; 0 = commit time */
	const void *user_meta;     /* carried with the frame, at most FRAMEBUS_USER_META_MAX */
	uint32_t user_meta_len;
	uint64_t _reserved[2];       /* zero: room for fields of later 1.x versions */
} fb_meta;

struct fb_producer_stats {
	uint64_t generation, last_seq, frames_published;
	uint32_t consumers_active;
	uint64_t consumers_reclaimed;
	uint64_t holds_granted, holds_refused, holds_taken_back;
	uint64_t _reserved[8];       /* zero: room for fields of later 1.x versions */
};

/* Takes ownership of `name`, builds generation 1 (continuing a dead producer's numbering)
 * and publishes it. FB_ERR_BUSY when a live producer owns it. */
FB_API int fb_producer_create(const char *name, const fb_producer_opts *opts, fb_producer **out);
/* Begins a frame: *data is the back slot (*capacity bytes), write the frame there. */
FB_API int fb_producer_begin(fb_producer *p, void **data, size_t *capacity);
/* Commits n bytes of the begun slot; *seq (may be NULL) is the frame's number. */
FB_API int fb_producer_commit(fb_producer *p, size_t n, const fb_meta *meta, uint64_t *seq);
FB_API int fb_producer_abort(fb_producer *p);
/* begin, copy n bytes of data, commit. */
FB_API int fb_producer_publish(fb_producer *p, const void *data, size_t n, const fb_meta *meta,
			       uint64_t *seq);
/* A new generation with another format (consumers follow it by themselves). */
FB_API int fb_producer_reconfigure(fb_producer *p, const fb_format *format);
/* manual_heartbeat: the heartbeat (reclaim, liveness of the file and name); else no-op. */
FB_API int fb_producer_tick(fb_producer *p);
FB_API int fb_producer_stats(fb_producer *p, struct fb_producer_stats *stats);
FB_API int fb_producer_format(fb_producer *p, fb_format *format);
FB_API const char *fb_producer_errmsg(fb_producer *p);
/* Advanced (benchmarks, tools): the current generation's mapping, framebus_header first;
 * valid until the next call on p, and with the heartbeat thread until a heartbeat replaces
 * a broken generation (use it with manual_heartbeat). */
FB_API void *fb_producer_mapping(fb_producer *p, size_t *len);
/* End of stream: the end-of-stream frame, RETIRED, consumers woken, the name removed. */
FB_API int fb_producer_close(fb_producer *p);

/* ---- inspect ----------------------------------------------------------------------- */

typedef struct fb_snapshot {
	char path[4096];
	uint64_t generation;
	uint32_t state;             /* FRAMEBUS_STATE_* */
	uint32_t flags;
	fb_format format;
	uint32_t slot_count, consumer_capacity, heartbeat_interval_ms;
	uint32_t producer_pid;
	uint64_t producer_pidns;
	int producer_alive;         /* the owner's lock is held */
	uint64_t heartbeat_age_ns;  /* 0 when the heartbeat is in the future */
	uint64_t last_seq, frames_published, source_drops, consumers_reclaimed;
	uint64_t version_mismatch_count;
	uint32_t consumers_active;
	uint64_t hold_max_ns, holds_granted, holds_refused, holds_taken_back, holds_ignored;
	uint64_t _reserved[8];       /* zero: room for fields of later 1.x versions */
} fb_snapshot;

/* Reads bus `name` in dir (NULL: the default) without joining it or mapping it. */
FB_API int fb_inspect(const char *name, const char *dir, fb_snapshot *out);

#ifdef __cplusplus
}
#endif

#endif /* FRAMEBUS_LIBFRAMEBUS_H */
