/*
 * framebussrc - reads a framebus bus into a pipeline, live.
 *
 *   gst-launch-1.0 framebussrc bus=cam0 ! videoconvert ! x264enc tune=zerolatency ! ...
 *
 * A GstPushSrc over libframebus's consumer.
 *
 * Caps come from the bus's header (width, height, pixel format, rate, plane layout); a new
 * generation with another format sends new caps before its first frame.
 *
 * Zero-copy: each frame is held (PROTOCOL.md amendment 10) and its slot's memory wrapped,
 * read-only, in the GstBuffer pushed downstream; the buffer's last unref releases the hold.
 * A bus of N slots lets its consumers hold N-2 frames at once: when the hold is refused (the
 * cap reached, a 2-slot bus, a producer that does not honour holds) the frame is copied
 * once into a buffer of our pool and checked intact afterwards (fb_frame_valid) -- an
 * overwritten copy is dropped, counted in frames-torn. The frames-held and frames-copied
 * properties, and last-copy-reason, say which happened.
 *
 * The consumer handle is used by one thread at a time: a buffer freed on another thread
 * puts its hold on a list that the streaming thread releases before its next wait; the
 * handle (and its mappings) lives until the last buffer that points into it is freed.
 *
 * Time: PTS = the frame's capture_ns (CLOCK_MONOTONIC) on the pipeline clock, minus the
 * base time. GStreamer's system clock (the default) is CLOCK_MONOTONIC: no conversion;
 * another clock is mapped through the offset between the two read now. A frame captured
 * before the pipeline's base time gets PTS 0.
 *
 * The producer: gone (kill -9) or closed and back, stalled (SIGSTOP): the source waits
 * and follows, a warning message on the bus, never an error. A bus that is not there when
 * the source starts is waited for up to `timeout` ms, then a RESOURCE/NOT_FOUND error
 * (timeout=0: for ever). The producer's end of stream is EOS.
 */
#include "gstframebus.h"

#include <string.h>

GST_DEBUG_CATEGORY_STATIC(framebussrc_debug);
#define GST_CAT_DEFAULT framebussrc_debug

#define POLL_MS 20 /* the longest wait in the library; unlock takes at most this long */
#define DEFAULT_TIMEOUT_MS 10000

/* A consumer handle shared by the streaming thread and the buffers that point into it. */
typedef struct conn {
	gint refs;
	fb_consumer *c;
	GMutex lock;       /* protects pending */
	GArray *pending;   /* fb_hold: released by buffers, to give back on the streaming thread */
} conn;

typedef struct held {
	conn *cn;
	fb_hold hold;
} held;

struct _GstFramebusSrc {
	GstPushSrc parent;

	/* properties */
	gchar *bus, *dir;
	guint timeout_ms;
	gboolean zero_copy, checksum;

	/* streaming state */
	conn *cn;
	fb_format fmt;
	GstVideoInfo vinfo;
	gboolean raw, have_caps, seen_bus, need_meta;
	GstClockTime duration;
	GstBufferPool *pool;
	gboolean flushing; /* under the object lock */
	gboolean lost, warned_stalled; /* the producer went away (until a frame comes again) */

	/* statistics, under the object lock */
	guint64 delivered, dropped, held_n, copied, torn, corrupt, generation, lag_ns, restarts;
	const char *copy_reason;
	const char *producer_state;
};

enum {
	PROP_0,
	PROP_BUS,
	PROP_DIR,
	PROP_TIMEOUT,
	PROP_ZERO_COPY,
	PROP_CHECKSUM,
	PROP_DELIVERED,
	PROP_DROPPED,
	PROP_HELD,
	PROP_COPIED,
	PROP_TORN,
	PROP_CORRUPT,
	PROP_GENERATION,
	PROP_LAG,
	PROP_COPY_REASON,
	PROP_PRODUCER,
	PROP_RESTARTS,
};

static GstStaticPadTemplate src_template =
	GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS(FRAMEBUS_GST_CAPS));

G_DEFINE_TYPE(GstFramebusSrc, gst_framebus_src, GST_TYPE_PUSH_SRC);
GST_ELEMENT_REGISTER_DEFINE_WITH_CODE(framebussrc, "framebussrc", GST_RANK_NONE, GST_TYPE_FRAMEBUS_SRC,
				      GST_DEBUG_CATEGORY_INIT(framebussrc_debug, "framebussrc", 0,
							      "framebus bus reader"));

/* ---- the shared handle ---------------------------------------------------------------- */

static conn *conn_new(fb_consumer *c)
{
	conn *cn = g_new0(conn, 1);
	cn->refs = 1;
	cn->c = c;
	g_mutex_init(&cn->lock);
	cn->pending = g_array_new(FALSE, FALSE, sizeof(fb_hold));
	return cn;
}

/* The streaming thread (or the last owner): gives back the holds of freed buffers. */
static void conn_release_pending(conn *cn)
{
	g_mutex_lock(&cn->lock);
	if (cn->pending->len == 0) {
		g_mutex_unlock(&cn->lock);
		return;
	}
	GArray *a = cn->pending;
	cn->pending = g_array_new(FALSE, FALSE, sizeof(fb_hold));
	g_mutex_unlock(&cn->lock);
	for (guint i = 0; i < a->len; i++)
		fb_hold_release(cn->c, &g_array_index(a, fb_hold, i));
	g_array_free(a, TRUE);
}

static void conn_unref(conn *cn)
{
	if (!g_atomic_int_dec_and_test(&cn->refs))
		return;
	/* Nobody else uses the handle now: close it (every hold released, all unmapped). */
	fb_consumer_close(cn->c);
	g_array_free(cn->pending, TRUE);
	g_mutex_clear(&cn->lock);
	g_free(cn);
}

static void held_free(gpointer data)
{
	held *h = data;
	g_mutex_lock(&h->cn->lock);
	g_array_append_val(h->cn->pending, h->hold);
	g_mutex_unlock(&h->cn->lock);
	conn_unref(h->cn);
	g_free(h);
}

/* ---- helpers ------------------------------------------------------------------------- */

static void lib_log(void *arg, int level, const char *msg)
{
	GstFramebusSrc *self = arg;
	if (level == FB_LOG_ERROR)
		GST_ERROR_OBJECT(self, "%s", msg);
	else if (level == FB_LOG_WARN)
		GST_WARNING_OBJECT(self, "%s", msg);
	else
		GST_INFO_OBJECT(self, "%s", msg);
}

static gboolean is_flushing(GstFramebusSrc *self)
{
	GST_OBJECT_LOCK(self);
	gboolean f = self->flushing;
	GST_OBJECT_UNLOCK(self);
	return f;
}

static void set_producer_state(GstFramebusSrc *self, const char *state)
{
	GST_OBJECT_LOCK(self);
	self->producer_state = state;
	GST_OBJECT_UNLOCK(self);
}

static void drop_conn(GstFramebusSrc *self)
{
	if (self->cn == NULL)
		return;
	conn_release_pending(self->cn);
	conn_unref(self->cn);
	self->cn = NULL;
}

/* Opens the bus, waiting for it: up to timeout_ms the first time (then an error), for ever
 * when following a producer that went away. GST_FLOW_OK, FLUSHING or ERROR. */
static GstFlowReturn open_bus(GstFramebusSrc *self)
{
	guint64 start = gst_framebus_monotonic_ns();
	int last = FB_OK;
	set_producer_state(self, "waiting");
	for (;;) {
		if (is_flushing(self))
			return GST_FLOW_FLUSHING;
		fb_consumer_opts o;
		memset(&o, 0, sizeof o);
		o.dir = self->dir;
		o.skip_checksum = !self->checksum;
		o.log = lib_log;
		o.log_arg = self;
		fb_consumer *c = NULL;
		int r = fb_consumer_open(self->bus, &o, &c);
		if (r == FB_OK) {
			self->cn = conn_new(c);
			GST_INFO_OBJECT(self, "joined bus %s", self->bus);
			self->seen_bus = TRUE;
			self->warned_stalled = FALSE;
			if (!self->lost)
				set_producer_state(self, "live");
			return GST_FLOW_OK;
		}
		switch (r) {
		case FB_ERR_NOT_FOUND:
		case FB_ERR_PRODUCER_GONE:
		case FB_ERR_STALLED:
		case FB_ERR_END_OF_STREAM:
		case FB_ERR_TIMEOUT:
		case FB_ERR_INTERRUPTED:
			break; /* not there (yet, or again): wait */
		case FB_ERR_BAD_NAME:
			GST_ELEMENT_ERROR(self, RESOURCE, SETTINGS, ("Invalid bus name \"%s\"", self->bus),
					  ("a bus name is 1-64 characters of [A-Za-z0-9._-]"));
			return GST_FLOW_ERROR;
		case FB_ERR_PERMISSION:
			GST_ELEMENT_ERROR(self, RESOURCE, OPEN_READ, ("No permission to read bus \"%s\"", self->bus),
					  ("fb_consumer_open: %s", fb_strerror(r)));
			return GST_FLOW_ERROR;
		default:
			if (r != last)
				GST_WARNING_OBJECT(self, "open %s: %s", self->bus, fb_strerror(r));
			if (!self->seen_bus && r != FB_ERR_BUSY && r != FB_ERR_TABLE_FULL && r != FB_ERR_CORRUPT) {
				GST_ELEMENT_ERROR(self, RESOURCE, OPEN_READ, ("Could not open bus \"%s\": %s", self->bus,
									 fb_strerror(r)),
						  ("fb_consumer_open: %s", fb_strerror(r)));
				return GST_FLOW_ERROR;
			}
		}
		last = r;
		guint64 waited = gst_framebus_monotonic_ns() - start;
		if (!self->seen_bus && self->timeout_ms > 0 && waited >= (guint64)self->timeout_ms * 1000000u) {
			GST_ELEMENT_ERROR(self, RESOURCE, NOT_FOUND,
					  ("Bus \"%s\" not found in %s after %u ms", self->bus,
					   self->dir ? self->dir : (g_getenv("FRAMEBUS_DIR") ? g_getenv("FRAMEBUS_DIR")
											   : "/dev/shm"),
					   self->timeout_ms),
					  ("no live producer of the bus (last: %s); timeout=0 waits for ever",
					   fb_strerror(last)));
			return GST_FLOW_ERROR;
		}
		g_usleep(POLL_MS * 1000);
	}
}

/* The caps of the bus's current format, set on the pad when they changed. */
static gboolean update_caps(GstFramebusSrc *self)
{
	fb_format f;
	int r = fb_consumer_format(self->cn->c, &f);
	if (r != FB_OK) {
		GST_ELEMENT_ERROR(self, STREAM, FORMAT, ("Could not read the bus's format"), ("%s", fb_strerror(r)));
		return FALSE;
	}
	if (self->have_caps && memcmp(&f, &self->fmt, sizeof f) == 0)
		return TRUE;
	GstVideoInfo vi;
	GstCaps *caps = gst_framebus_caps_from_format(&f, &vi);
	if (caps == NULL) {
		char n[5];
		GST_ELEMENT_ERROR(self, STREAM, FORMAT, ("Bus format %s has no GStreamer caps here",
							 gst_framebus_fourcc_name(f.pixel_format, n)),
				  (NULL));
		return FALSE;
	}
	GST_INFO_OBJECT(self, "caps %" GST_PTR_FORMAT, caps);
	self->fmt = f;
	self->raw = f.pixel_format != FRAMEBUS_FOURCC_MJPG;
	self->vinfo = vi;
	self->duration = f.fps_num ? gst_util_uint64_scale(GST_SECOND, f.fps_den, f.fps_num) : GST_CLOCK_TIME_NONE;
	self->need_meta = FALSE;
	if (self->raw) {
		GstVideoInfo def;
		gst_video_info_set_format(&def, GST_VIDEO_INFO_FORMAT(&vi), f.width, f.height);
		for (guint p = 0; p < GST_VIDEO_INFO_N_PLANES(&vi); p++)
			if (def.stride[p] != vi.stride[p] || def.offset[p] != vi.offset[p])
				self->need_meta = TRUE;
	}
	gboolean ok = gst_base_src_set_caps(GST_BASE_SRC(self), caps);
	gst_caps_unref(caps);
	if (!ok) {
		GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("Downstream refused the bus's format"), (NULL));
		return FALSE;
	}
	self->have_caps = TRUE;
	/* The copy pool: buffers of the bus's largest frame. */
	if (self->pool != NULL) {
		gst_buffer_pool_set_active(self->pool, FALSE);
		gst_object_unref(self->pool);
	}
	self->pool = gst_buffer_pool_new();
	GstStructure *cfg = gst_buffer_pool_get_config(self->pool);
	GstCaps *pc = gst_pad_get_current_caps(GST_BASE_SRC_PAD(self));
	gst_buffer_pool_config_set_params(cfg, pc, (guint)f.max_frame_bytes, 2, 0);
	if (pc != NULL)
		gst_caps_unref(pc);
	if (!gst_buffer_pool_set_config(self->pool, cfg) || !gst_buffer_pool_set_active(self->pool, TRUE)) {
		GST_ELEMENT_ERROR(self, RESOURCE, NO_SPACE_LEFT, ("Could not make the copy pool"), (NULL));
		return FALSE;
	}
	return TRUE;
}

static const char *refusal_name(int refused)
{
	switch (refused) {
	case FB_HOLD_CAP:
		return "cap: slots-2 frames held on the bus already (none on a 2-slot bus)";
	case FB_HOLD_OVERWRITTEN:
		return "overwritten before the hold";
	case FB_HOLD_UNSUPPORTED:
		return "the producer does not honour holds";
	case FB_HOLD_COPY:
		return "a copy";
	default:
		return "refused";
	}
}

/* The frame's buffer: its held slot wrapped, or a copy. NULL: overwritten while copied. */
static GstBuffer *frame_buffer(GstFramebusSrc *self, const fb_frame *f)
{
	int refused = -1;
	if (self->zero_copy) {
		fb_hold h;
		int r = fb_frame_hold(self->cn->c, f, &h);
		if (r == FB_OK) {
			held *hd = g_new0(held, 1);
			hd->cn = self->cn;
			g_atomic_int_inc(&self->cn->refs);
			hd->hold = h;
			GstBuffer *b = gst_buffer_new_wrapped_full(GST_MEMORY_FLAG_READONLY, (gpointer)h.data, h.bytes, 0,
								   h.bytes, hd, held_free);
			GST_OBJECT_LOCK(self);
			self->held_n++;
			GST_OBJECT_UNLOCK(self);
			return b;
		}
		refused = h.refused;
		if (refused == FB_HOLD_OVERWRITTEN) {
			GST_OBJECT_LOCK(self);
			self->torn++;
			GST_OBJECT_UNLOCK(self);
			return NULL;
		}
	}
	GstBuffer *b = NULL;
	if (self->pool == NULL || gst_buffer_pool_acquire_buffer(self->pool, &b, NULL) != GST_FLOW_OK)
		b = gst_buffer_new_allocate(NULL, f->bytes, NULL);
	if (gst_buffer_get_size(b) < f->bytes) {
		gst_buffer_unref(b);
		b = gst_buffer_new_allocate(NULL, f->bytes, NULL);
	}
	gst_buffer_fill(b, 0, f->data, f->bytes);
	gst_buffer_set_size(b, f->bytes);
	if (!fb_frame_valid(self->cn->c, f)) {
		gst_buffer_unref(b);
		GST_OBJECT_LOCK(self);
		self->torn++;
		GST_OBJECT_UNLOCK(self);
		return NULL;
	}
	GST_OBJECT_LOCK(self);
	self->copied++;
	self->copy_reason = refused < 0 ? "zero-copy=false" : refusal_name(refused);
	GST_OBJECT_UNLOCK(self);
	return b;
}

static void stamp(GstFramebusSrc *self, GstBuffer *b, const fb_frame *f, guint64 now)
{
	GstClock *clock = gst_element_get_clock(GST_ELEMENT(self));
	if (clock != NULL) {
		guint64 cap = f->capture_ns ? f->capture_ns : f->commit_ns;
		GstClockTime t = gst_framebus_monotonic_to_clock(clock, cap);
		GstClockTime base = gst_element_get_base_time(GST_ELEMENT(self));
		GST_BUFFER_PTS(b) = t > base ? t - base : 0;
		gst_object_unref(clock);
	}
	GST_BUFFER_DTS(b) = GST_CLOCK_TIME_NONE;
	GST_BUFFER_DURATION(b) = self->duration;
	GST_BUFFER_OFFSET(b) = f->seq;
	GST_BUFFER_OFFSET_END(b) = f->seq + 1;
	if (f->generation_changed || f->dropped)
		GST_BUFFER_FLAG_SET(b, GST_BUFFER_FLAG_DISCONT);
	if (self->raw && self->need_meta)
		gst_buffer_add_video_meta_full(b, GST_VIDEO_FRAME_FLAG_NONE, GST_VIDEO_INFO_FORMAT(&self->vinfo),
					       self->fmt.width, self->fmt.height, GST_VIDEO_INFO_N_PLANES(&self->vinfo),
					       self->vinfo.offset, self->vinfo.stride);
	(void)now;
}

static void post_qos(GstFramebusSrc *self, GstBuffer *b, guint64 lag)
{
	GstClockTime pts = GST_BUFFER_PTS(b);
	GstMessage *m = gst_message_new_qos(GST_OBJECT(self), TRUE, pts, pts, pts, GST_BUFFER_DURATION(b));
	GST_OBJECT_LOCK(self);
	guint64 delivered = self->delivered, dropped = self->dropped;
	GST_OBJECT_UNLOCK(self);
	gst_message_set_qos_values(m, (gint64)lag, 1.0, 1000000);
	gst_message_set_qos_stats(m, GST_FORMAT_BUFFERS, delivered, dropped);
	gst_element_post_message(GST_ELEMENT(self), m);
}

/* The counters as an element message, "framebussrc-stats" (posted at EOS, whatever sent
 * it: the producer's end of stream, num-buffers, gst-launch -e). */
static GstStructure *stats_structure(GstFramebusSrc *self)
{
	GST_OBJECT_LOCK(self);
	GstStructure *s = gst_structure_new(
		"framebussrc-stats", "bus", G_TYPE_STRING, self->bus, "frames-delivered", G_TYPE_UINT64, self->delivered,
		"frames-held", G_TYPE_UINT64, self->held_n, "frames-copied", G_TYPE_UINT64, self->copied,
		"frames-dropped", G_TYPE_UINT64, self->dropped, "frames-torn", G_TYPE_UINT64, self->torn,
		"frames-corrupt", G_TYPE_UINT64, self->corrupt, "producer-restarts", G_TYPE_UINT64, self->restarts,
		"generation", G_TYPE_UINT64, self->generation, "last-copy-reason", G_TYPE_STRING, self->copy_reason,
		NULL);
	GST_OBJECT_UNLOCK(self);
	return s;
}

static GstPadProbeReturn eos_probe(GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
	GstFramebusSrc *self = data;
	GstEvent *ev = GST_PAD_PROBE_INFO_EVENT(info);
	if (ev != NULL && GST_EVENT_TYPE(ev) == GST_EVENT_EOS)
		gst_element_post_message(GST_ELEMENT(self),
					 gst_message_new_element(GST_OBJECT(self), stats_structure(self)));
	return GST_PAD_PROBE_OK;
}

/* ---- GstPushSrc ---------------------------------------------------------------------- */

static GstFlowReturn gst_framebus_src_create(GstPushSrc *psrc, GstBuffer **out)
{
	GstFramebusSrc *self = GST_FRAMEBUS_SRC(psrc);
	for (;;) {
		if (is_flushing(self))
			return GST_FLOW_FLUSHING;
		if (self->cn == NULL) {
			GstFlowReturn fr = open_bus(self);
			if (fr != GST_FLOW_OK)
				return fr;
			if (!update_caps(self))
				return GST_FLOW_NOT_NEGOTIATED;
		}
		conn_release_pending(self->cn);
		fb_frame f;
		int r = fb_consumer_next(self->cn->c, POLL_MS, &f);
		guint64 now = gst_framebus_monotonic_ns();
		switch (r) {
		case FB_OK:
			break;
		case FB_ERR_CHECKSUM:
			GST_WARNING_OBJECT(self, "frame %" G_GUINT64_FORMAT ": checksum mismatch, dropped", f.seq);
			GST_OBJECT_LOCK(self);
			self->corrupt++;
			GST_OBJECT_UNLOCK(self);
			continue;
		case FB_ERR_TIMEOUT:
		case FB_ERR_INTERRUPTED:
			continue;
		case FB_ERR_END_OF_STREAM:
			GST_INFO_OBJECT(self, "bus %s: end of stream", self->bus);
			set_producer_state(self, "ended");
			drop_conn(self);
			return GST_FLOW_EOS;
		case FB_ERR_STALLED:
			if (!self->warned_stalled) {
				self->warned_stalled = TRUE;
				set_producer_state(self, "stalled");
				GST_ELEMENT_WARNING(self, RESOURCE, READ,
						    ("Producer of bus \"%s\" stalled: waiting for it", self->bus),
						    ("%s", fb_consumer_errmsg(self->cn->c)));
			}
			g_usleep(POLL_MS * 1000);
			continue;
		case FB_ERR_PRODUCER_GONE:
			/* Its file may stay behind (kill -9): the reopen may join it and find it gone
			 * again, until a new producer takes the name over. Said once per loss. */
			if (!self->lost) {
				self->lost = TRUE;
				GST_ELEMENT_WARNING(self, RESOURCE, READ,
						    ("Producer of bus \"%s\" gone: waiting for it to come back", self->bus),
						    ("%s", fb_consumer_errmsg(self->cn->c)));
				GST_OBJECT_LOCK(self);
				self->restarts++;
				self->producer_state = "waiting";
				GST_OBJECT_UNLOCK(self);
			}
			drop_conn(self);
			g_usleep(POLL_MS * 1000);
			continue; /* reopen, waiting for ever */
		default:
			GST_ELEMENT_ERROR(self, RESOURCE, READ, ("Could not read bus \"%s\": %s", self->bus, fb_strerror(r)),
					  ("%s", fb_consumer_errmsg(self->cn->c)));
			return GST_FLOW_ERROR;
		}
		if (self->warned_stalled || self->lost) {
			if (self->lost)
				GST_ELEMENT_INFO(self, RESOURCE, OPEN_READ, ("Producer of bus \"%s\" is back", self->bus),
						 ("producer of bus %s is back: generation %" G_GUINT64_FORMAT, self->bus,
						  f.generation));
			self->warned_stalled = self->lost = FALSE;
			set_producer_state(self, "live");
		}
		if (f.generation_changed || !self->have_caps) {
			if (!update_caps(self))
				return GST_FLOW_NOT_NEGOTIATED;
		}
		GstBuffer *b = frame_buffer(self, &f);
		if (b == NULL) {
			GST_DEBUG_OBJECT(self, "frame %" G_GUINT64_FORMAT " overwritten before it was taken", f.seq);
			continue;
		}
		stamp(self, b, &f, now);
		guint64 lag = now > f.commit_ns ? now - f.commit_ns : 0;
		GST_OBJECT_LOCK(self);
		self->delivered++;
		self->dropped += f.dropped;
		self->generation = f.generation;
		self->lag_ns = lag;
		GST_OBJECT_UNLOCK(self);
		if (f.dropped)
			post_qos(self, b, lag);
		GST_LOG_OBJECT(self, "frame %" G_GUINT64_FORMAT " pts %" GST_TIME_FORMAT " lag %" G_GUINT64_FORMAT " ns",
			       f.seq, GST_TIME_ARGS(GST_BUFFER_PTS(b)), lag);
		*out = b;
		return GST_FLOW_OK;
	}
}

static gboolean gst_framebus_src_negotiate(GstBaseSrc *bsrc)
{
	GstFramebusSrc *self = GST_FRAMEBUS_SRC(bsrc);
	/* Caps come from the bus, set in create() before the first frame of each format. */
	if (!self->have_caps)
		return TRUE;
	GstCaps *caps = gst_framebus_caps_from_format(&self->fmt, NULL);
	gboolean ok = caps != NULL && gst_base_src_set_caps(bsrc, caps);
	if (caps != NULL)
		gst_caps_unref(caps);
	return ok;
}

static gboolean gst_framebus_src_query(GstBaseSrc *bsrc, GstQuery *q)
{
	GstFramebusSrc *self = GST_FRAMEBUS_SRC(bsrc);
	if (GST_QUERY_TYPE(q) == GST_QUERY_LATENCY) {
		/* A frame is on the bus one frame interval at most before the next replaces it. */
		GstClockTime min = GST_CLOCK_TIME_IS_VALID(self->duration) ? self->duration : 33 * GST_MSECOND;
		gst_query_set_latency(q, TRUE, min, GST_CLOCK_TIME_NONE);
		return TRUE;
	}
	return GST_BASE_SRC_CLASS(gst_framebus_src_parent_class)->query(bsrc, q);
}

static gboolean gst_framebus_src_start(GstBaseSrc *bsrc)
{
	GstFramebusSrc *self = GST_FRAMEBUS_SRC(bsrc);
	if (self->bus == NULL || self->bus[0] == 0) {
		GST_ELEMENT_ERROR(self, RESOURCE, SETTINGS, ("No bus name: set the bus property"),
				  ("framebussrc needs bus=NAME"));
		return FALSE;
	}
	fb_snapshot snap;
	if (fb_inspect(self->bus, self->dir, &snap) == FB_ERR_BAD_NAME) {
		GST_ELEMENT_ERROR(self, RESOURCE, SETTINGS, ("Invalid bus name \"%s\"", self->bus),
				  ("a bus name is 1-64 characters of [A-Za-z0-9._-] (docs/PROTOCOL.md)"));
		return FALSE;
	}
	GST_OBJECT_LOCK(self);
	self->flushing = FALSE;
	self->delivered = self->dropped = self->held_n = self->copied = self->torn = self->corrupt = 0;
	self->restarts = self->lag_ns = self->generation = 0;
	self->copy_reason = "";
	self->producer_state = "waiting";
	GST_OBJECT_UNLOCK(self);
	self->have_caps = self->seen_bus = self->lost = self->warned_stalled = FALSE;
	return TRUE;
}

static gboolean gst_framebus_src_stop(GstBaseSrc *bsrc)
{
	GstFramebusSrc *self = GST_FRAMEBUS_SRC(bsrc);
	drop_conn(self); /* closed when the last buffer into it is freed */
	if (self->pool != NULL) {
		gst_buffer_pool_set_active(self->pool, FALSE);
		gst_object_unref(self->pool);
		self->pool = NULL;
	}
	self->have_caps = FALSE;
	return TRUE;
}

static gboolean gst_framebus_src_unlock(GstBaseSrc *bsrc)
{
	GstFramebusSrc *self = GST_FRAMEBUS_SRC(bsrc);
	GST_OBJECT_LOCK(self);
	self->flushing = TRUE; /* create() looks at it within POLL_MS */
	GST_OBJECT_UNLOCK(self);
	return TRUE;
}

static gboolean gst_framebus_src_unlock_stop(GstBaseSrc *bsrc)
{
	GstFramebusSrc *self = GST_FRAMEBUS_SRC(bsrc);
	GST_OBJECT_LOCK(self);
	self->flushing = FALSE;
	GST_OBJECT_UNLOCK(self);
	return TRUE;
}

/* ---- properties ---------------------------------------------------------------------- */

static void gst_framebus_src_set_property(GObject *obj, guint id, const GValue *v, GParamSpec *ps)
{
	GstFramebusSrc *self = GST_FRAMEBUS_SRC(obj);
	GST_OBJECT_LOCK(self);
	switch (id) {
	case PROP_BUS:
		g_free(self->bus);
		self->bus = g_value_dup_string(v);
		break;
	case PROP_DIR:
		g_free(self->dir);
		self->dir = g_value_dup_string(v);
		if (self->dir != NULL && self->dir[0] == 0) {
			g_free(self->dir);
			self->dir = NULL;
		}
		break;
	case PROP_TIMEOUT:
		self->timeout_ms = g_value_get_uint(v);
		break;
	case PROP_ZERO_COPY:
		self->zero_copy = g_value_get_boolean(v);
		break;
	case PROP_CHECKSUM:
		self->checksum = g_value_get_boolean(v);
		break;
	default:
		G_OBJECT_WARN_INVALID_PROPERTY_ID(obj, id, ps);
	}
	GST_OBJECT_UNLOCK(self);
}

static void gst_framebus_src_get_property(GObject *obj, guint id, GValue *v, GParamSpec *ps)
{
	GstFramebusSrc *self = GST_FRAMEBUS_SRC(obj);
	GST_OBJECT_LOCK(self);
	switch (id) {
	case PROP_BUS:
		g_value_set_string(v, self->bus);
		break;
	case PROP_DIR:
		g_value_set_string(v, self->dir);
		break;
	case PROP_TIMEOUT:
		g_value_set_uint(v, self->timeout_ms);
		break;
	case PROP_ZERO_COPY:
		g_value_set_boolean(v, self->zero_copy);
		break;
	case PROP_CHECKSUM:
		g_value_set_boolean(v, self->checksum);
		break;
	case PROP_DELIVERED:
		g_value_set_uint64(v, self->delivered);
		break;
	case PROP_DROPPED:
		g_value_set_uint64(v, self->dropped);
		break;
	case PROP_HELD:
		g_value_set_uint64(v, self->held_n);
		break;
	case PROP_COPIED:
		g_value_set_uint64(v, self->copied);
		break;
	case PROP_TORN:
		g_value_set_uint64(v, self->torn);
		break;
	case PROP_CORRUPT:
		g_value_set_uint64(v, self->corrupt);
		break;
	case PROP_GENERATION:
		g_value_set_uint64(v, self->generation);
		break;
	case PROP_LAG:
		g_value_set_uint64(v, self->lag_ns);
		break;
	case PROP_COPY_REASON:
		g_value_set_string(v, self->copy_reason);
		break;
	case PROP_PRODUCER:
		g_value_set_string(v, self->producer_state);
		break;
	case PROP_RESTARTS:
		g_value_set_uint64(v, self->restarts);
		break;
	default:
		G_OBJECT_WARN_INVALID_PROPERTY_ID(obj, id, ps);
	}
	GST_OBJECT_UNLOCK(self);
}

static void gst_framebus_src_finalize(GObject *obj)
{
	GstFramebusSrc *self = GST_FRAMEBUS_SRC(obj);
	drop_conn(self);
	if (self->pool != NULL)
		gst_object_unref(self->pool);
	g_free(self->bus);
	g_free(self->dir);
	G_OBJECT_CLASS(gst_framebus_src_parent_class)->finalize(obj);
}

static void gst_framebus_src_init(GstFramebusSrc *self)
{
	self->timeout_ms = DEFAULT_TIMEOUT_MS;
	self->zero_copy = TRUE;
	self->checksum = TRUE;
	self->copy_reason = "";
	self->producer_state = "waiting";
	gst_base_src_set_live(GST_BASE_SRC(self), TRUE);
	gst_base_src_set_format(GST_BASE_SRC(self), GST_FORMAT_TIME);
	gst_base_src_set_do_timestamp(GST_BASE_SRC(self), FALSE);
	gst_pad_add_probe(GST_BASE_SRC_PAD(self), GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM, eos_probe, self, NULL);
}

static void stat_prop(GObjectClass *oc, guint id, const char *name, const char *nick, const char *blurb)
{
	g_object_class_install_property(
		oc, id, g_param_spec_uint64(name, nick, blurb, 0, G_MAXUINT64, 0, G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));
}

static void gst_framebus_src_class_init(GstFramebusSrcClass *klass)
{
	GObjectClass *oc = G_OBJECT_CLASS(klass);
	GstElementClass *ec = GST_ELEMENT_CLASS(klass);
	GstBaseSrcClass *bc = GST_BASE_SRC_CLASS(klass);
	GstPushSrcClass *pc = GST_PUSH_SRC_CLASS(klass);
	const GParamFlags rw = G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY;
	const GParamFlags ro = G_PARAM_READABLE | G_PARAM_STATIC_STRINGS;

	oc->set_property = gst_framebus_src_set_property;
	oc->get_property = gst_framebus_src_get_property;
	oc->finalize = gst_framebus_src_finalize;

	g_object_class_install_property(
		oc, PROP_BUS,
		g_param_spec_string("bus", "Bus name", "Name of the bus to read (required): 1-64 characters of [A-Za-z0-9._-]",
				    NULL, rw));
	g_object_class_install_property(
		oc, PROP_DIR,
		g_param_spec_string("dir", "Bus directory",
				    "Directory of the bus files; unset: $FRAMEBUS_DIR, else /dev/shm", NULL, rw));
	g_object_class_install_property(
		oc, PROP_TIMEOUT,
		g_param_spec_uint("timeout", "Timeout (ms)",
				  "How long to wait, in milliseconds, for a bus that is not there when the source "
				  "starts before failing with a RESOURCE/NOT_FOUND error (0: wait for ever). A "
				  "producer that goes away later is waited for without limit",
				  0, G_MAXUINT, DEFAULT_TIMEOUT_MS, rw));
	g_object_class_install_property(
		oc, PROP_ZERO_COPY,
		g_param_spec_boolean("zero-copy", "Zero-copy",
				     "Hand frames downstream without a copy, holding their slots until the buffers are "
				     "freed; when a hold is refused (slots-2 held already, a 2-slot bus, a producer "
				     "without holds) the frame is copied once. FALSE: always copy",
				     TRUE, rw));
	g_object_class_install_property(
		oc, PROP_CHECKSUM,
		g_param_spec_boolean("checksum", "Verify checksums",
				     "Verify the CRC-32C of frames on buses that carry them; a mismatch is dropped "
				     "and counted in frames-corrupt",
				     TRUE, rw));
	stat_prop(oc, PROP_DELIVERED, "frames-delivered", "Frames delivered", "Frames pushed downstream");
	stat_prop(oc, PROP_DROPPED, "frames-dropped", "Frames dropped",
		  "Frames the producer published that this source never read (it was behind); each gap also "
		  "posts a QoS message");
	stat_prop(oc, PROP_HELD, "frames-held", "Frames held (zero-copy)",
		  "Frames pushed downstream without a copy: the bus's slot held until the buffer is freed");
	stat_prop(oc, PROP_COPIED, "frames-copied", "Frames copied",
		  "Frames copied once into a buffer of the source's pool (the hold refused: see last-copy-reason)");
	stat_prop(oc, PROP_TORN, "frames-torn", "Frames torn",
		  "Frames overwritten by the producer before they could be held or copied whole: dropped");
	stat_prop(oc, PROP_CORRUPT, "frames-corrupt", "Frames corrupt", "Frames whose checksum did not match: dropped");
	stat_prop(oc, PROP_GENERATION, "generation", "Generation", "The bus generation of the last frame");
	stat_prop(oc, PROP_LAG, "lag", "Lag (ns)",
		  "From the producer's commit to the frame's push downstream, for the last frame, in ns");
	stat_prop(oc, PROP_RESTARTS, "producer-restarts", "Producer losses",
		  "Times the producer went away (killed, crashed) and the source waited for it");
	g_object_class_install_property(
		oc, PROP_COPY_REASON,
		g_param_spec_string("last-copy-reason", "Last copy reason",
				    "Why the last copied frame was copied rather than held (empty: none copied)", "", ro));
	g_object_class_install_property(
		oc, PROP_PRODUCER,
		g_param_spec_string("producer", "Producer state",
				    "waiting (no bus yet, or the producer gone), live, stalled (no heartbeat), ended",
				    "waiting", ro));

	gst_element_class_set_static_metadata(
		ec, "framebus source", "Source/Video",
		"Reads a framebus shared-memory bus into a pipeline, live: frames held zero-copy while "
		"downstream uses them (one copy when the hold is refused), caps from the bus, PTS from the "
		"capture time, follows producer restarts, EOS at the producer's end of stream",
		"framebus");
	gst_element_class_add_static_pad_template(ec, &src_template);

	bc->negotiate = GST_DEBUG_FUNCPTR(gst_framebus_src_negotiate);
	bc->query = GST_DEBUG_FUNCPTR(gst_framebus_src_query);
	bc->start = GST_DEBUG_FUNCPTR(gst_framebus_src_start);
	bc->stop = GST_DEBUG_FUNCPTR(gst_framebus_src_stop);
	bc->unlock = GST_DEBUG_FUNCPTR(gst_framebus_src_unlock);
	bc->unlock_stop = GST_DEBUG_FUNCPTR(gst_framebus_src_unlock_stop);
	pc->create = GST_DEBUG_FUNCPTR(gst_framebus_src_create);
}
