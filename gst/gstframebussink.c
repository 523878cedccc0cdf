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

	/* streaming state */
	fb_producer *p;
	fb_format fmt;
	GstVideoInfo vinfo; /* of the caps, raw formats */
	gboolean have_fmt;
	guint64 published, generation, reconfigures; /* under the object lock */
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
};

#define DEFAULT_SLOTS 4

static GstStaticPadTemplate sink_template =
	GST_STATIC_PAD_TEMPLATE("sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS(FRAMEBUS_GST_CAPS));

G_DEFINE_TYPE(GstFramebusSink, gst_framebus_sink, GST_TYPE_BASE_SINK);
GST_ELEMENT_REGISTER_DEFINE_WITH_CODE(framebussink, "framebussink", GST_RANK_NONE, GST_TYPE_FRAMEBUS_SINK,
				      GST_DEBUG_CATEGORY_INIT(framebussink_debug, "framebussink", 0,
							      "framebus bus publisher"));

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
	if (self->p != NULL && self->have_fmt && same_format(&f, &self->fmt))
		return TRUE;
	if (self->p != NULL)
		return reconfigure(self, &f);
	self->fmt = f;
	self->have_fmt = TRUE;
	return create_producer(self);
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

static GstFlowReturn gst_framebus_sink_render(GstBaseSink *bsink, GstBuffer *buf)
{
	GstFramebusSink *self = GST_FRAMEBUS_SINK(bsink);
	if (!self->have_fmt) {
		GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("No caps before the first buffer"), (NULL));
		return GST_FLOW_NOT_NEGOTIATED;
	}
	if (self->p == NULL && !create_producer(self)) /* after an EOS: a new stream */
		return GST_FLOW_ERROR;
	fb_meta meta;
	memset(&meta, 0, sizeof meta);
	meta.capture_ns = capture_time(self, buf);
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
		r = fb_producer_commit(self->p, n, &meta, &seq);
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
			       seq, n, meta.capture_ns);
		GST_OBJECT_LOCK(self);
		self->published++;
		GST_OBJECT_UNLOCK(self);
		return GST_FLOW_OK;
	}
}

static void close_producer(GstFramebusSink *self)
{
	if (self->p == NULL)
		return;
	int r = fb_producer_close(self->p);
	self->p = NULL;
	if (r != FB_OK)
		GST_WARNING_OBJECT(self, "fb_producer_close: %s", fb_strerror(r));
	else
		GST_INFO_OBJECT(self, "bus %s: end of stream", self->bus);
}

static gboolean gst_framebus_sink_event(GstBaseSink *bsink, GstEvent *event)
{
	GstFramebusSink *self = GST_FRAMEBUS_SINK(bsink);
	if (GST_EVENT_TYPE(event) == GST_EVENT_EOS)
		close_producer(self); /* the end of stream on the bus, after the last frame */
	return GST_BASE_SINK_CLASS(gst_framebus_sink_parent_class)->event(bsink, event);
}

static gboolean gst_framebus_sink_start(GstBaseSink *bsink)
{
	GstFramebusSink *self = GST_FRAMEBUS_SINK(bsink);
	self->have_fmt = FALSE;
	GST_OBJECT_LOCK(self);
	self->published = 0;
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
	default:
		G_OBJECT_WARN_INVALID_PROPERTY_ID(obj, id, ps);
	}
	GST_OBJECT_UNLOCK(self);
}

static void gst_framebus_sink_finalize(GObject *obj)
{
	GstFramebusSink *self = GST_FRAMEBUS_SINK(obj);
	close_producer(self);
	g_free(self->bus);
	g_free(self->dir);
	G_OBJECT_CLASS(gst_framebus_sink_parent_class)->finalize(obj);
}

static void gst_framebus_sink_init(GstFramebusSink *self)
{
	self->slots = DEFAULT_SLOTS;
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
				    "Frames committed on the bus since the element started (each copied once from "
				    "the buffer into the bus's back slot)",
				    0, G_MAXUINT64, 0, ro));
	g_object_class_install_property(
		oc, PROP_GENERATION,
		g_param_spec_uint64("generation", "Generation",
				    "The bus's generation: a new one at every format change (caps) or restart",
				    0, G_MAXUINT64, 0, ro));

	gst_element_class_set_static_metadata(
		ec, "framebus sink", "Sink/Video",
		"Publishes video on a framebus shared-memory bus for other processes (one copy a frame, "
		"from the buffer into the bus's back slot; caps changes are new generations; EOS ends the stream)",
		"framebus");
	gst_element_class_add_static_pad_template(ec, &sink_template);

	bc->set_caps = GST_DEBUG_FUNCPTR(gst_framebus_sink_set_caps);
	bc->render = GST_DEBUG_FUNCPTR(gst_framebus_sink_render);
	bc->event = GST_DEBUG_FUNCPTR(gst_framebus_sink_event);
	bc->start = GST_DEBUG_FUNCPTR(gst_framebus_sink_start);
	bc->stop = GST_DEBUG_FUNCPTR(gst_framebus_sink_stop);
}
