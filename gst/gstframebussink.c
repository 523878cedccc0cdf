/*
 * framebussink - publishes raw video (or JPEG) on a framebus bus.
 *
 *   gst-launch-1.0 v4l2src ! videoconvert ! video/x-raw,format=NV12 ! framebussink bus=cam0
 *
 * A GstBaseSink over libframebus's producer: the first caps create the bus (or take it
 * over from a dead producer), new caps make a new generation (fb_producer_reconfigure),
 * every buffer is copied once into the bus's back slot and committed with its capture
 * time, and EOS (or stopping) ends the stream: consumers see the end of stream.
 *
 * One copy a frame: GStreamer's buffers are the upstream element's memory, the bus's back
 * slot is only known between fb_producer_begin and commit, so the frame is copied from the
 * buffer into the slot (per plane when the buffer's strides differ from the bus's tight
 * layout). No buffer pool over the slots is offered (docs/GSTREAMER.md says why).
 *
 * capture_ns: the buffer's PTS as running time plus the element's base time is its time on
 * the pipeline clock; GStreamer's system clock (the default) counts CLOCK_MONOTONIC, the
 * bus's clock, so that is capture_ns as is; any other clock is mapped through the offset
 * between the two read at the commit. A buffer without a PTS gets 0 (the commit time).
 */
#include "gstframebus.h"

#include <string.h>

GST_DEBUG_CATEGORY_STATIC(framebussink_debug);
#define GST_CAT_DEFAULT framebussink_debug

struct _GstFramebusSink {
	GstBaseSink parent;

	/* properties */
	gchar *bus, *dir;
	guint slots, hold_max_ms;
	gboolean checksum;

	gboolean offer_pool;

	/* streaming state. plock guards the producer: the slot pool's acquire and release run
	 * on upstream's threads, render on ours. */
	GMutex plock;
	fb_producer *p;
	GstBuffer *slot_buf; /* the pool's buffer over the begun back slot, if any */
	gboolean tight;      /* the caps' default layout is the bus's: the pool can be offered */
	fb_format fmt;
	GstVideoInfo vinfo; /* of the caps, raw formats */
	gboolean have_fmt;
	guint64 published, generation, reconfigures; /* under the object lock */
	guint64 zero_copy, copied;                    /* under the object lock */
};

enum {
	PROP_0,
	PROP_BUS,
	PROP_DIR,
	PROP_SLOTS,
	PROP_CHECKSUM,
	PROP_HOLD_MAX,
	PROP_FRAMES_PUBLISHED,
	PROP_GENERATION,
	PROP_POOL,
	PROP_ZERO_COPY,
	PROP_COPIED,
};

#define DEFAULT_SLOTS 4

static GstStaticPadTemplate sink_template =
	GST_STATIC_PAD_TEMPLATE("sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS(FRAMEBUS_GST_CAPS));

G_DEFINE_TYPE(GstFramebusSink, gst_framebus_sink, GST_TYPE_BASE_SINK);
GST_ELEMENT_REGISTER_DEFINE_WITH_CODE(framebussink, "framebussink", GST_RANK_NONE, GST_TYPE_FRAMEBUS_SINK,
				      GST_DEBUG_CATEGORY_INIT(framebussink_debug, "framebussink", 0,
							      "framebus bus publisher"));


/* ---- the slot pool ----------------------------------------------------------------------
 * Offered upstream (propose_allocation) when the caps' default layout is the bus's tight
 * one: acquire begins a frame and hands out the back slot itself as the buffer's memory, so
 * an upstream element (videoconvert, videotestsrc, a decoder) writes the frame straight into
 * the bus, and render commits it without a copy. One slot can be begun at a time: a second
 * acquire before the first is rendered or released gets plain memory (then copied). A slot
 * buffer released without being rendered aborts its frame. */

typedef struct {
	GstBufferPool parent;
	GstFramebusSink *sink; /* not a reference: the sink outlives its pools' activity */
	gsize size;
} GstFramebusSlotPool;
typedef struct {
	GstBufferPoolClass parent_class;
} GstFramebusSlotPoolClass;

GType gst_framebus_slot_pool_get_type(void);
G_DEFINE_TYPE(GstFramebusSlotPool, gst_framebus_slot_pool, GST_TYPE_BUFFER_POOL);

static gboolean slot_pool_set_config(GstBufferPool *bp, GstStructure *config)
{
	GstFramebusSlotPool *pool = (GstFramebusSlotPool *)bp;
	GstCaps *caps = NULL;
	guint size = 0, min = 0, max = 0;
	if (!gst_buffer_pool_config_get_params(config, &caps, &size, &min, &max))
		return FALSE;
	pool->size = size;
	return GST_BUFFER_POOL_CLASS(gst_framebus_slot_pool_parent_class)->set_config(bp, config);
}

static GstFlowReturn slot_pool_acquire(GstBufferPool *bp, GstBuffer **out, GstBufferPoolAcquireParams *params)
{
	GstFramebusSlotPool *pool = (GstFramebusSlotPool *)bp;
	GstFramebusSink *self = pool->sink;
	if (self == NULL) { /* the sink is gone */
		*out = gst_buffer_new_allocate(NULL, pool->size, NULL);
		return GST_FLOW_OK;
	}
	g_mutex_lock(&self->plock);
	void *data = NULL;
	size_t cap = 0;
	if (self->p != NULL && self->slot_buf == NULL && self->tight &&
	    fb_producer_begin(self->p, &data, &cap) == FB_OK) {
		if (cap >= pool->size) {
			*out = gst_buffer_new_wrapped_full(0, data, cap, 0, pool->size, NULL, NULL);
			self->slot_buf = *out;
			g_mutex_unlock(&self->plock);
			return GST_FLOW_OK;
		}
		fb_producer_abort(self->p);
	}
	g_mutex_unlock(&self->plock);
	*out = gst_buffer_new_allocate(NULL, pool->size, NULL); /* plain memory: copied at render */
	return *out != NULL ? GST_FLOW_OK : GST_FLOW_ERROR;
}

static void slot_pool_release(GstBufferPool *bp, GstBuffer *buf)
{
	GstFramebusSlotPool *pool = (GstFramebusSlotPool *)bp;
	GstFramebusSink *self = pool->sink;
	if (self == NULL) {
		GST_BUFFER_POOL_CLASS(gst_framebus_slot_pool_parent_class)->free_buffer(bp, buf);
		return;
	}
	g_mutex_lock(&self->plock);
	if (buf == self->slot_buf) { /* never rendered: the frame is dropped */
		if (self->p != NULL)
			fb_producer_abort(self->p);
		self->slot_buf = NULL;
	}
	g_mutex_unlock(&self->plock);
	/* Every buffer is made for one frame: free it, never queue it. */
	GST_BUFFER_POOL_CLASS(gst_framebus_slot_pool_parent_class)->free_buffer(bp, buf);
}

static void gst_framebus_slot_pool_init(GstFramebusSlotPool *pool) {}

static void slot_pool_finalize(GObject *obj)
{
	GstFramebusSlotPool *pool = (GstFramebusSlotPool *)obj;
	if (pool->sink != NULL)
		g_object_remove_weak_pointer(G_OBJECT(pool->sink), (gpointer *)&pool->sink);
	G_OBJECT_CLASS(gst_framebus_slot_pool_parent_class)->finalize(obj);
}

static void gst_framebus_slot_pool_class_init(GstFramebusSlotPoolClass *klass)
{
	GstBufferPoolClass *pc = GST_BUFFER_POOL_CLASS(klass);
	G_OBJECT_CLASS(klass)->finalize = slot_pool_finalize;
	pc->set_config = slot_pool_set_config;
	pc->acquire_buffer = slot_pool_acquire;
	pc->release_buffer = slot_pool_release;
}

/* Drops a begun slot (a caps change or a stop while upstream holds a slot buffer): the
 * buffer stays valid memory of the old mapping until the generation goes, its frame is
 * not published. Called with plock. */
static void abort_slot_locked(GstFramebusSink *self)
{
	if (self->slot_buf != NULL && self->p != NULL)
		fb_producer_abort(self->p);
	self->slot_buf = NULL;
}

static void lib_log(void *arg, int level, const char *msg)
{
	GstFramebusSink *self = arg;
	if (level == FB_LOG_ERROR)
		GST_ERROR_OBJECT(self, "%s", msg);
	else if (level == FB_LOG_WARN)
		GST_WARNING_OBJECT(self, "%s", msg);
	else
		GST_INFO_OBJECT(self, "%s", msg);
}

/* The bus name and directory as the library sees them (dir: the property, else
 * $FRAMEBUS_DIR, else /dev/shm: libframebus's own default when NULL). */
static gboolean check_name(GstFramebusSink *self)
{
	if (self->bus == NULL || self->bus[0] == 0) {
		GST_ELEMENT_ERROR(self, RESOURCE, SETTINGS, ("No bus name: set the bus property"),
				  ("framebussink needs bus=NAME"));
		return FALSE;
	}
	fb_snapshot snap;
	int r = fb_inspect(self->bus, self->dir, &snap);
	if (r == FB_ERR_BAD_NAME) {
		GST_ELEMENT_ERROR(self, RESOURCE, SETTINGS, ("Invalid bus name \"%s\"", self->bus),
				  ("a bus name is 1-64 characters of [A-Za-z0-9._-] (docs/PROTOCOL.md)"));
		return FALSE;
	}
	return TRUE;
}

static gboolean create_producer(GstFramebusSink *self)
{
	fb_producer_opts o;
	memset(&o, 0, sizeof o);
	o.dir = self->dir;
	o.format = self->fmt;
	o.slots = self->slots;
	o.checksum = self->checksum;
	o.hold_max_ms = self->hold_max_ms;
	o.log = lib_log;
	o.log_arg = self;
	int r = fb_producer_create(self->bus, &o, &self->p);
	if (r != FB_OK) {
		self->p = NULL;
		if (r == FB_ERR_BUSY)
			GST_ELEMENT_ERROR(self, RESOURCE, BUSY, ("Bus \"%s\" has a live producer already", self->bus),
					  ("fb_producer_create: %s", fb_strerror(r)));
		else
			GST_ELEMENT_ERROR(self, RESOURCE, OPEN_WRITE, ("Could not create bus \"%s\": %s", self->bus,
									fb_strerror(r)),
					  ("fb_producer_create: %s (dir %s)", fb_strerror(r),
					   self->dir ? self->dir : "$FRAMEBUS_DIR or /dev/shm"));
		return FALSE;
	}
	struct fb_producer_stats st;
	fb_producer_stats(self->p, &st);
	GST_OBJECT_LOCK(self);
	self->generation = st.generation;
	GST_OBJECT_UNLOCK(self);
	GST_INFO_OBJECT(self, "bus %s created: %ux%u, %u slots, generation %" G_GUINT64_FORMAT, self->bus,
			self->fmt.width, self->fmt.height, self->slots, st.generation);
	return TRUE;
}

static gboolean reconfigure(GstFramebusSink *self, const fb_format *f)
{
	int r = fb_producer_reconfigure(self->p, f);
	if (r != FB_OK) {
		GST_ELEMENT_ERROR(self, RESOURCE, WRITE, ("Could not change the format of bus \"%s\"", self->bus),
				  ("fb_producer_reconfigure: %s: %s", fb_strerror(r), fb_producer_errmsg(self->p)));
		return FALSE;
	}
	self->fmt = *f;
	struct fb_producer_stats st;
	fb_producer_stats(self->p, &st);
	GST_OBJECT_LOCK(self);
	self->generation = st.generation;
	self->reconfigures++;
	GST_OBJECT_UNLOCK(self);
	GST_INFO_OBJECT(self, "bus %s: new generation %" G_GUINT64_FORMAT " (%ux%u)", self->bus, st.generation,
			f->width, f->height);
	return TRUE;
}

static gboolean same_format(const fb_format *a, const fb_format *b)
{
	return a->width == b->width && a->height == b->height && a->pixel_format == b->pixel_format &&
	       a->fps_num == b->fps_num && a->fps_den == b->fps_den && a->max_frame_bytes == b->max_frame_bytes;
}

/* The caps' default layout (what an upstream element writes without a video meta) is the
 * bus's tight one: planes at the same offsets with the same strides. */
static gboolean layout_is_tight(const GstVideoInfo *vi, const fb_format *f)
{
	if (GST_VIDEO_INFO_N_PLANES(vi) != f->plane_count || vi->size != f->max_frame_bytes)
		return FALSE;
	for (guint p = 0; p < f->plane_count; p++)
		if ((guint)vi->stride[p] != f->plane_stride[p] || vi->offset[p] != f->plane_offset[p])
			return FALSE;
	return TRUE;
}

static gboolean gst_framebus_sink_set_caps(GstBaseSink *bsink, GstCaps *caps)
{
	GstFramebusSink *self = GST_FRAMEBUS_SINK(bsink);
	fb_format f;
	if (!gst_framebus_format_from_caps(caps, &f)) {
		GST_ELEMENT_ERROR(self, STREAM, FORMAT, ("Caps framebus cannot carry"),
				  ("%" GST_PTR_FORMAT " (4:2:0 and YUY2 need even sizes)", caps));
		return FALSE;
	}
	GST_DEBUG_OBJECT(self, "caps %" GST_PTR_FORMAT, caps);
	if (f.pixel_format != FRAMEBUS_FOURCC_MJPG && !gst_video_info_from_caps(&self->vinfo, caps))
		return FALSE;
	g_mutex_lock(&self->plock);
	abort_slot_locked(self);
	self->tight = f.pixel_format != FRAMEBUS_FOURCC_MJPG && layout_is_tight(&self->vinfo, &f);
	gboolean ok;
	if (self->p != NULL && self->have_fmt && same_format(&f, &self->fmt))
		ok = TRUE;
	else if (self->p != NULL)
		ok = reconfigure(self, &f);
	else {
		self->fmt = f;
		self->have_fmt = TRUE;
		ok = create_producer(self);
	}
	g_mutex_unlock(&self->plock);
	return ok;
}

static gboolean gst_framebus_sink_propose_allocation(GstBaseSink *bsink, GstQuery *query)
{
	GstFramebusSink *self = GST_FRAMEBUS_SINK(bsink);
	GstCaps *caps = NULL;
	gboolean need_pool = FALSE;
	gst_query_parse_allocation(query, &caps, &need_pool);
	GST_OBJECT_LOCK(self);
	gboolean offer = self->offer_pool;
	GST_OBJECT_UNLOCK(self);
	fb_format f;
	GstVideoInfo vi;
	if (!offer || caps == NULL || !gst_framebus_format_from_caps(caps, &f) || f.pixel_format == FRAMEBUS_FOURCC_MJPG ||
	    !gst_video_info_from_caps(&vi, caps) || !layout_is_tight(&vi, &f)) {
		GST_DEBUG_OBJECT(self, "no slot pool for %" GST_PTR_FORMAT, caps);
		return TRUE;
	}
	GstFramebusSlotPool *pool = g_object_new(gst_framebus_slot_pool_get_type(), NULL);
	gst_object_ref_sink(pool);
	pool->sink = self;
	g_object_add_weak_pointer(G_OBJECT(self), (gpointer *)&pool->sink);
	GstStructure *cfg = gst_buffer_pool_get_config(GST_BUFFER_POOL(pool));
	gst_buffer_pool_config_set_params(cfg, caps, (guint)vi.size, 0, 0);
	gst_buffer_pool_set_config(GST_BUFFER_POOL(pool), cfg);
	gst_query_add_allocation_pool(query, GST_BUFFER_POOL(pool), (guint)vi.size, 0, 0);
	gst_object_unref(pool);
	GST_DEBUG_OBJECT(self, "offered the slot pool (%" G_GSIZE_FORMAT " bytes)", vi.size);
	return TRUE;
}

/* Copies the buffer into the begun slot in the bus's layout; the bytes of the frame, or 0
 * when it does not fit (or cannot be mapped). */
static gsize copy_frame(GstFramebusSink *self, GstBuffer *buf, guint8 *slot, gsize cap)
{
	const fb_format *f = &self->fmt;
	if (f->pixel_format == FRAMEBUS_FOURCC_MJPG) {
		gsize n = gst_buffer_get_size(buf);
		if (n > cap)
			return 0;
		return gst_buffer_extract(buf, 0, slot, n);
	}
	GstVideoFrame vf;
	if (!gst_video_frame_map(&vf, &self->vinfo, buf, GST_MAP_READ)) {
		GST_WARNING_OBJECT(self, "could not map the buffer");
		return 0;
	}
	gsize total = 0;
	for (guint p = 0; p < f->plane_count; p++) {
		guint8 *dst = slot + f->plane_offset[p];
		const guint8 *src = GST_VIDEO_FRAME_PLANE_DATA(&vf, p);
		gint sstride = GST_VIDEO_FRAME_PLANE_STRIDE(&vf, p);
		guint dstride = f->plane_stride[p];
		/* rows of this plane: the bus's plane size over its stride (tight layout) */
		guint64 end = p + 1 < f->plane_count ? f->plane_offset[p + 1] : f->max_frame_bytes;
		guint rows = (guint)((end - f->plane_offset[p]) / dstride);
		if ((guint)sstride == dstride)
			memcpy(dst, src, (gsize)dstride * rows);
		else
			for (guint y = 0; y < rows; y++)
				memcpy(dst + (gsize)y * dstride, src + (gsize)y * sstride, MIN(dstride, (guint)sstride));
		total = f->plane_offset[p] + (gsize)dstride * rows;
	}
	gst_video_frame_unmap(&vf);
	return total <= cap ? total : 0;
}

static guint64 capture_time(GstFramebusSink *self, GstBuffer *buf)
{
	GstBaseSink *bsink = GST_BASE_SINK(self);
	GstClockTime pts = GST_BUFFER_PTS(buf);
	if (!GST_CLOCK_TIME_IS_VALID(pts) || bsink->segment.format != GST_FORMAT_TIME)
		return 0;
	GstClockTime rt = gst_segment_to_running_time(&bsink->segment, GST_FORMAT_TIME, pts);
	GstClock *clock = gst_element_get_clock(GST_ELEMENT(self));
	if (!GST_CLOCK_TIME_IS_VALID(rt) || clock == NULL) {
		if (clock != NULL)
			gst_object_unref(clock);
		return 0;
	}
	GstClockTime t = rt + gst_element_get_base_time(GST_ELEMENT(self));
	guint64 mono = gst_framebus_clock_to_monotonic(clock, t);
	gst_object_unref(clock);
	return mono;
}

static GstFlowReturn render_locked(GstFramebusSink *self, GstBuffer *buf, const fb_meta *meta);

static GstFlowReturn gst_framebus_sink_render(GstBaseSink *bsink, GstBuffer *buf)
{
	GstFramebusSink *self = GST_FRAMEBUS_SINK(bsink);
	if (!self->have_fmt) {
		GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("No caps before the first buffer"), (NULL));
		return GST_FLOW_NOT_NEGOTIATED;
	}
	fb_meta meta;
	memset(&meta, 0, sizeof meta);
	meta.capture_ns = capture_time(self, buf);
	g_mutex_lock(&self->plock);
	GstFlowReturn ret = render_locked(self, buf, &meta);
	g_mutex_unlock(&self->plock);
	return ret;
}

static GstFlowReturn render_locked(GstFramebusSink *self, GstBuffer *buf, const fb_meta *meta)
{
	if (self->p == NULL && !create_producer(self)) /* after an EOS: a new stream */
		return GST_FLOW_ERROR;
	if (self->slot_buf != NULL && gst_buffer_n_memory(buf) == 1 &&
	    gst_buffer_peek_memory(buf, 0) == gst_buffer_peek_memory(self->slot_buf, 0)) {
		/* Written by upstream straight into the back slot: commit, no copy. */
		self->slot_buf = NULL;
		uint64_t seq = 0;
		int r = fb_producer_commit(self->p, gst_buffer_get_size(buf), meta, &seq);
		if (r == FB_ERR_TRUNCATED)
			return GST_FLOW_OK;
		if (r != FB_OK) {
			GST_ELEMENT_ERROR(self, RESOURCE, WRITE, ("Could not publish on bus \"%s\"", self->bus),
					  ("fb_producer_commit: %s: %s", fb_strerror(r), fb_producer_errmsg(self->p)));
			return GST_FLOW_ERROR;
		}
		GST_LOG_OBJECT(self, "frame %" G_GUINT64_FORMAT ": zero-copy", seq);
		GST_OBJECT_LOCK(self);
		self->published++;
		self->zero_copy++;
		GST_OBJECT_UNLOCK(self);
		return GST_FLOW_OK;
	}
	/* A slot begun for a buffer that is not this one (upstream pushed another): give it
	 * up, this frame is copied. */
	abort_slot_locked(self);
	for (int attempt = 0;; attempt++) {
		void *slot;
		size_t cap;
		int r = fb_producer_begin(self->p, &slot, &cap);
		if (r != FB_OK) {
			GST_ELEMENT_ERROR(self, RESOURCE, WRITE, ("Could not publish on bus \"%s\"", self->bus),
					  ("fb_producer_begin: %s: %s", fb_strerror(r), fb_producer_errmsg(self->p)));
			return GST_FLOW_ERROR;
		}
		gsize n = copy_frame(self, buf, slot, cap);
		if (n == 0) {
			fb_producer_abort(self->p);
			gsize want = gst_buffer_get_size(buf);
			if (self->fmt.pixel_format == FRAMEBUS_FOURCC_MJPG && want > cap && attempt == 0) {
				/* A JPEG larger than the slot: a new generation with room for it. */
				fb_format f = self->fmt;
				f.max_frame_bytes = (uint64_t)want * 3 / 2;
				if (!reconfigure(self, &f))
					return GST_FLOW_ERROR;
				continue;
			}
			GST_ELEMENT_WARNING(self, STREAM, FAILED, ("Frame dropped"),
					    ("%" G_GSIZE_FORMAT " bytes do not fit the bus's layout (slot of %zu)", want,
					     cap));
			return GST_FLOW_OK;
		}
		uint64_t seq = 0;
		r = fb_producer_commit(self->p, n, meta, &seq);
		if (r == FB_ERR_TRUNCATED) {
			GST_WARNING_OBJECT(self, "bus truncated under the frame: lost, new generation");
			return GST_FLOW_OK;
		}
		if (r != FB_OK) {
			GST_ELEMENT_ERROR(self, RESOURCE, WRITE, ("Could not publish on bus \"%s\"", self->bus),
					  ("fb_producer_commit: %s: %s", fb_strerror(r), fb_producer_errmsg(self->p)));
			return GST_FLOW_ERROR;
		}
		GST_LOG_OBJECT(self, "frame %" G_GUINT64_FORMAT ": %" G_GSIZE_FORMAT " bytes, capture %" G_GUINT64_FORMAT,
			       seq, n, meta->capture_ns);
		GST_OBJECT_LOCK(self);
		self->published++;
		self->copied++;
		GST_OBJECT_UNLOCK(self);
		return GST_FLOW_OK;
	}
}

static void close_producer(GstFramebusSink *self)
{
	g_mutex_lock(&self->plock);
	abort_slot_locked(self);
	if (self->p == NULL) {
		g_mutex_unlock(&self->plock);
		return;
	}
	int r = fb_producer_close(self->p);
	self->p = NULL;
	g_mutex_unlock(&self->plock);
	if (r != FB_OK)
		GST_WARNING_OBJECT(self, "fb_producer_close: %s", fb_strerror(r));
	else
		GST_INFO_OBJECT(self, "bus %s: end of stream", self->bus);
}

static gboolean gst_framebus_sink_event(GstBaseSink *bsink, GstEvent *event)
{
	GstFramebusSink *self = GST_FRAMEBUS_SINK(bsink);
	if (GST_EVENT_TYPE(event) == GST_EVENT_EOS) {
		close_producer(self); /* the end of stream on the bus, after the last frame */
		GST_OBJECT_LOCK(self);
		GstStructure *st = gst_structure_new("framebussink-stats", "bus", G_TYPE_STRING, self->bus,
						     "frames-published", G_TYPE_UINT64, self->published, "frames-zero-copy",
						     G_TYPE_UINT64, self->zero_copy, "frames-copied", G_TYPE_UINT64,
						     self->copied, "generation", G_TYPE_UINT64, self->generation, NULL);
		GST_OBJECT_UNLOCK(self);
		gst_element_post_message(GST_ELEMENT(self), gst_message_new_element(GST_OBJECT(self), st));
	}
	return GST_BASE_SINK_CLASS(gst_framebus_sink_parent_class)->event(bsink, event);
}

static gboolean gst_framebus_sink_start(GstBaseSink *bsink)
{
	GstFramebusSink *self = GST_FRAMEBUS_SINK(bsink);
	self->have_fmt = FALSE;
	GST_OBJECT_LOCK(self);
	self->published = self->zero_copy = self->copied = 0;
	GST_OBJECT_UNLOCK(self);
	return check_name(self);
}

static gboolean gst_framebus_sink_stop(GstBaseSink *bsink)
{
	GstFramebusSink *self = GST_FRAMEBUS_SINK(bsink);
	close_producer(self);
	self->have_fmt = FALSE;
	return TRUE;
}

static void gst_framebus_sink_set_property(GObject *obj, guint id, const GValue *v, GParamSpec *ps)
{
	GstFramebusSink *self = GST_FRAMEBUS_SINK(obj);
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
	case PROP_SLOTS:
		self->slots = g_value_get_uint(v);
		break;
	case PROP_CHECKSUM:
		self->checksum = g_value_get_boolean(v);
		break;
	case PROP_HOLD_MAX:
		self->hold_max_ms = g_value_get_uint(v);
		break;
	case PROP_POOL:
		self->offer_pool = g_value_get_boolean(v);
		break;
	default:
		G_OBJECT_WARN_INVALID_PROPERTY_ID(obj, id, ps);
	}
	GST_OBJECT_UNLOCK(self);
}

static void gst_framebus_sink_get_property(GObject *obj, guint id, GValue *v, GParamSpec *ps)
{
	GstFramebusSink *self = GST_FRAMEBUS_SINK(obj);
	GST_OBJECT_LOCK(self);
	switch (id) {
	case PROP_BUS:
		g_value_set_string(v, self->bus);
		break;
	case PROP_DIR:
		g_value_set_string(v, self->dir);
		break;
	case PROP_SLOTS:
		g_value_set_uint(v, self->slots);
		break;
	case PROP_CHECKSUM:
		g_value_set_boolean(v, self->checksum);
		break;
	case PROP_HOLD_MAX:
		g_value_set_uint(v, self->hold_max_ms);
		break;
	case PROP_FRAMES_PUBLISHED:
		g_value_set_uint64(v, self->published);
		break;
	case PROP_GENERATION:
		g_value_set_uint64(v, self->generation);
		break;
	case PROP_POOL:
		g_value_set_boolean(v, self->offer_pool);
		break;
	case PROP_ZERO_COPY:
		g_value_set_uint64(v, self->zero_copy);
		break;
	case PROP_COPIED:
		g_value_set_uint64(v, self->copied);
		break;
	default:
		G_OBJECT_WARN_INVALID_PROPERTY_ID(obj, id, ps);
	}
	GST_OBJECT_UNLOCK(self);
}

static void gst_framebus_sink_finalize(GObject *obj)
{
	GstFramebusSink *self = GST_FRAMEBUS_SINK(obj);
	close_producer(self);
	g_mutex_clear(&self->plock);
	g_free(self->bus);
	g_free(self->dir);
	G_OBJECT_CLASS(gst_framebus_sink_parent_class)->finalize(obj);
}

static void gst_framebus_sink_init(GstFramebusSink *self)
{
	self->slots = DEFAULT_SLOTS;
	self->offer_pool = TRUE;
	g_mutex_init(&self->plock);
	/* A publisher keeps no reference to the last frame (a pipeline holding it would pin
	 * the upstream pool's buffer for nothing); sync stays on, so a file source plays at
	 * its rate, a live one as it comes. */
	gst_base_sink_set_last_sample_enabled(GST_BASE_SINK(self), FALSE);
	gst_base_sink_set_qos_enabled(GST_BASE_SINK(self), FALSE);
}

static void gst_framebus_sink_class_init(GstFramebusSinkClass *klass)
{
	GObjectClass *oc = G_OBJECT_CLASS(klass);
	GstElementClass *ec = GST_ELEMENT_CLASS(klass);
	GstBaseSinkClass *bc = GST_BASE_SINK_CLASS(klass);
	const GParamFlags rw = G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY;
	const GParamFlags ro = G_PARAM_READABLE | G_PARAM_STATIC_STRINGS;

	oc->set_property = gst_framebus_sink_set_property;
	oc->get_property = gst_framebus_sink_get_property;
	oc->finalize = gst_framebus_sink_finalize;

	g_object_class_install_property(
		oc, PROP_BUS,
		g_param_spec_string("bus", "Bus name",
				    "Name of the bus to publish (required): 1-64 characters of [A-Za-z0-9._-]. "
				    "The bus is created at the first caps, or taken over from a producer that died",
				    NULL, rw));
	g_object_class_install_property(
		oc, PROP_DIR,
		g_param_spec_string("dir", "Bus directory",
				    "Directory of the bus files; unset: $FRAMEBUS_DIR, else /dev/shm", NULL, rw));
	g_object_class_install_property(
		oc, PROP_SLOTS,
		g_param_spec_uint("slots", "Slots",
				  "Frames the bus keeps (2-8). Consumers may hold slots-2 of them zero-copy "
				  "(framebussrc hands held frames downstream without a copy; 2 slots allow no holds)",
				  2, 8, DEFAULT_SLOTS, rw));
	g_object_class_install_property(
		oc, PROP_CHECKSUM,
		g_param_spec_boolean("checksum", "Checksum",
				     "Carry a CRC-32C of every frame, which consumers verify", FALSE, rw));
	g_object_class_install_property(
		oc, PROP_HOLD_MAX,
		g_param_spec_uint("hold-max", "Hold lease (ms)",
				  "A lease on consumers' holds: a frame held longer than this many milliseconds may "
				  "be taken back when its slot is needed (0: holds last until released)",
				  0, G_MAXUINT, 0, rw));
	g_object_class_install_property(
		oc, PROP_FRAMES_PUBLISHED,
		g_param_spec_uint64("frames-published", "Frames published",
				    "Frames committed on the bus since the element started (frames-zero-copy + "
				    "frames-copied)",
				    0, G_MAXUINT64, 0, ro));
	g_object_class_install_property(
		oc, PROP_POOL,
		g_param_spec_boolean("pool", "Offer the slot pool",
				     "Offer upstream a buffer pool whose buffers are the bus's back slot, so that an "
				     "upstream element that takes it writes frames straight into the bus (raw formats "
				     "whose GStreamer layout is the bus's tight one; never JPEG). FALSE: copy every frame",
				     TRUE, rw));
	g_object_class_install_property(
		oc, PROP_ZERO_COPY,
		g_param_spec_uint64("frames-zero-copy", "Frames zero-copy",
				    "Frames upstream wrote into the bus's back slot through the pool: committed without a copy",
				    0, G_MAXUINT64, 0, ro));
	g_object_class_install_property(
		oc, PROP_COPIED,
		g_param_spec_uint64("frames-copied", "Frames copied",
				    "Frames copied once from the buffer into the back slot (upstream did not use the "
				    "pool, or used plain memory)",
				    0, G_MAXUINT64, 0, ro));
	g_object_class_install_property(
		oc, PROP_GENERATION,
		g_param_spec_uint64("generation", "Generation",
				    "The bus's generation: a new one at every format change (caps) or restart",
				    0, G_MAXUINT64, 0, ro));

	gst_element_class_set_static_metadata(
		ec, "framebus sink", "Sink/Video",
		"Publishes video on a framebus shared-memory bus for other processes: zero-copy when upstream "
		"writes into the slot pool it offers (the bus's back slot), else one copy a frame from the buffer "
		"into the back slot; caps changes are new generations; EOS ends the stream",
		"framebus");
	gst_element_class_add_static_pad_template(ec, &sink_template);

	bc->set_caps = GST_DEBUG_FUNCPTR(gst_framebus_sink_set_caps);
	bc->render = GST_DEBUG_FUNCPTR(gst_framebus_sink_render);
	bc->propose_allocation = GST_DEBUG_FUNCPTR(gst_framebus_sink_propose_allocation);
	bc->event = GST_DEBUG_FUNCPTR(gst_framebus_sink_event);
	bc->start = GST_DEBUG_FUNCPTR(gst_framebus_sink_start);
	bc->stop = GST_DEBUG_FUNCPTR(gst_framebus_sink_stop);
}
