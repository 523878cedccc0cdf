/*
 * gstframebus.c - the plugin: registration, and what both elements share (the caps <->
 * bus format mapping, the pipeline clock <-> CLOCK_MONOTONIC conversion).
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#include "gstframebus.h"

#include <string.h>
#include <time.h>

/* The project declares no licence yet; GStreamer wants one of its known names. */
#define FRAMEBUS_GST_LICENSE "Proprietary"

#ifndef PACKAGE
#define PACKAGE "framebus"
#endif
#ifndef VERSION
#define VERSION "1.0.0"
#endif

static const struct {
	GstVideoFormat gst;
	uint32_t fourcc;
} formats[] = {
	{GST_VIDEO_FORMAT_RGBA, FRAMEBUS_FOURCC_AB24}, {GST_VIDEO_FORMAT_RGB, FRAMEBUS_FOURCC_RGB3},
	{GST_VIDEO_FORMAT_BGR, FRAMEBUS_FOURCC_BGR3},  {GST_VIDEO_FORMAT_GRAY8, FRAMEBUS_FOURCC_GREY},
	{GST_VIDEO_FORMAT_YUY2, FRAMEBUS_FOURCC_YUYV}, {GST_VIDEO_FORMAT_NV12, FRAMEBUS_FOURCC_NV12},
	{GST_VIDEO_FORMAT_I420, FRAMEBUS_FOURCC_YU12},
};

const char *gst_framebus_fourcc_name(uint32_t fourcc, char buf[5])
{
	for (int i = 0; i < 4; i++) {
		char ch = (char)((fourcc >> (8 * i)) & 0xff);
		buf[i] = g_ascii_isprint(ch) ? ch : '?';
	}
	buf[4] = 0;
	return buf;
}

gboolean gst_framebus_format_from_caps(const GstCaps *caps, fb_format *fmt)
{
	memset(fmt, 0, sizeof *fmt);
	if (caps == NULL || !gst_caps_is_fixed(caps))
		return FALSE;
	const GstStructure *s = gst_caps_get_structure(caps, 0);
	int w = 0, h = 0, fn = 0, fd = 1;
	if (!gst_structure_get_int(s, "width", &w) || !gst_structure_get_int(s, "height", &h) || w <= 0 ||
	    h <= 0)
		return FALSE;
	if (gst_structure_get_fraction(s, "framerate", &fn, &fd) && fn > 0 && fd > 0) {
		fmt->fps_num = (uint32_t)fn;
		fmt->fps_den = (uint32_t)fd;
	}
	fmt->width = (uint32_t)w;
	fmt->height = (uint32_t)h;
	if (gst_structure_has_name(s, "image/jpeg")) {
		fmt->pixel_format = FRAMEBUS_FOURCC_MJPG;
		/* A compressed frame's size is ours to choose: two bytes a pixel (a JPEG at
		 * quality 100 of noise stays under it), grown by the sink when a frame does not fit. */
		fmt->max_frame_bytes = (uint64_t)w * (uint64_t)h * 2 + 65536;
		return fb_format_complete(fmt) == FB_OK;
	}
	if (!gst_structure_has_name(s, "video/x-raw"))
		return FALSE;
	GstVideoFormat vf = gst_video_format_from_string(gst_structure_get_string(s, "format"));
	for (size_t i = 0; i < G_N_ELEMENTS(formats); i++)
		if (formats[i].gst == vf) {
			fmt->pixel_format = formats[i].fourcc;
			return fb_format_complete(fmt) == FB_OK;
		}
	return FALSE;
}

GstCaps *gst_framebus_caps_from_format(const fb_format *fmt, GstVideoInfo *info)
{
	int fn = (int)fmt->fps_num, fd = fmt->fps_num ? (int)fmt->fps_den : 1;
	if (fmt->fps_num > G_MAXINT || fmt->fps_den > G_MAXINT || fd == 0)
		fn = 0, fd = 1;
	if (fmt->pixel_format == FRAMEBUS_FOURCC_MJPG)
		return gst_caps_new_simple("image/jpeg", "width", G_TYPE_INT, (int)fmt->width, "height",
					   G_TYPE_INT, (int)fmt->height, "framerate", GST_TYPE_FRACTION, fn, fd,
					   "parsed", G_TYPE_BOOLEAN, TRUE, NULL);
	for (size_t i = 0; i < G_N_ELEMENTS(formats); i++) {
		if (formats[i].fourcc != fmt->pixel_format)
			continue;
		GstVideoInfo vi;
		if (!gst_video_info_set_format(&vi, formats[i].gst, fmt->width, fmt->height))
			return NULL;
		vi.fps_n = fn;
		vi.fps_d = fd;
		if (fmt->plane_count == GST_VIDEO_INFO_N_PLANES(&vi)) {
			for (guint p = 0; p < fmt->plane_count; p++) {
				vi.stride[p] = (gint)fmt->plane_stride[p];
				vi.offset[p] = fmt->plane_offset[p];
			}
			vi.size = fmt->max_frame_bytes;
		}
		if (info != NULL)
			*info = vi;
		return gst_video_info_to_caps(&vi);
	}
	return NULL;
}

guint64 gst_framebus_monotonic_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (guint64)ts.tv_sec * 1000000000u + (guint64)ts.tv_nsec;
}

static gboolean clock_is_monotonic(GstClock *clock)
{
	if (!GST_IS_SYSTEM_CLOCK(clock))
		return FALSE;
	GstClockType type = GST_CLOCK_TYPE_REALTIME;
	g_object_get(clock, "clock-type", &type, NULL);
	return type == GST_CLOCK_TYPE_MONOTONIC;
}

guint64 gst_framebus_clock_to_monotonic(GstClock *clock, GstClockTime t)
{
	if (clock_is_monotonic(clock))
		return t;
	GstClockTime now = gst_clock_get_time(clock);
	guint64 mono = gst_framebus_monotonic_ns();
	gint64 d = (gint64)now - (gint64)t; /* how long ago t was */
	return d > 0 && (guint64)d > mono ? 0 : (guint64)((gint64)mono - d);
}

GstClockTime gst_framebus_monotonic_to_clock(GstClock *clock, guint64 mono_ns)
{
	if (clock_is_monotonic(clock))
		return mono_ns;
	GstClockTime now = gst_clock_get_time(clock);
	guint64 mono = gst_framebus_monotonic_ns();
	gint64 d = (gint64)mono - (gint64)mono_ns; /* how long ago mono_ns was */
	return d > 0 && (guint64)d > now ? 0 : (GstClockTime)((gint64)now - d);
}

static gboolean plugin_init(GstPlugin *plugin)
{
	gboolean ok = FALSE;
	ok |= GST_ELEMENT_REGISTER(framebussink, plugin);
	ok |= GST_ELEMENT_REGISTER(framebussrc, plugin);
	return ok;
}

GST_PLUGIN_DEFINE(GST_VERSION_MAJOR, GST_VERSION_MINOR, framebus,
		  "Live video between processes through framebus shared-memory buses",
		  plugin_init, VERSION, FRAMEBUS_GST_LICENSE, "framebus", "https://github.com/framebus/framebus")
