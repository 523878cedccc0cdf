/*
 * gstframebus.h - the framebus GStreamer plugin: framebussink publishes raw video on a
 * framebus bus, framebussrc reads one into a pipeline (docs/GSTREAMER.md). Both are thin
 * over libframebus (docs/LIBFRAMEBUS.md); this header holds what they share: the element
 * types, the caps <-> bus format mapping and the clock conversion.
 */
#ifndef GST_FRAMEBUS_H
#define GST_FRAMEBUS_H

#include <gst/gst.h>
#include <gst/base/gstbasesink.h>
#include <gst/base/gstpushsrc.h>
#include <gst/video/video.h>
#include <framebus/libframebus.h>

G_BEGIN_DECLS

#define GST_TYPE_FRAMEBUS_SINK (gst_framebus_sink_get_type())
G_DECLARE_FINAL_TYPE(GstFramebusSink, gst_framebus_sink, GST, FRAMEBUS_SINK, GstBaseSink)

#define GST_TYPE_FRAMEBUS_SRC (gst_framebus_src_get_type())
G_DECLARE_FINAL_TYPE(GstFramebusSrc, gst_framebus_src, GST, FRAMEBUS_SRC, GstPushSrc)

GST_ELEMENT_REGISTER_DECLARE(framebussink);
GST_ELEMENT_REGISTER_DECLARE(framebussrc);

/* The formats both elements carry, as caps (the pad templates). */
#define FRAMEBUS_GST_CAPS                                                                   \
	"video/x-raw, format = (string) { RGBA, RGB, BGR, GRAY8, YUY2, NV12, I420 }, "          \
	"width = (int) [ 1, 16384 ], height = (int) [ 1, 16384 ], "                            \
	"framerate = (fraction) [ 0/1, MAX ]; "                                                 \
	"image/jpeg, width = (int) [ 1, 16384 ], height = (int) [ 1, 16384 ], "               \
	"framerate = (fraction) [ 0/1, MAX ]"

/* Caps -> a bus format (the tight layout of fb_format_complete). FALSE when the caps are
 * not one of FRAMEBUS_GST_CAPS or not fixed. */
gboolean gst_framebus_format_from_caps(const GstCaps *caps, fb_format *fmt);
/* A bus format -> caps; NULL for a pixel format GStreamer has no name for here. With a
 * raw format, *info (may be NULL) gets the video info with the bus's plane layout. */
GstCaps *gst_framebus_caps_from_format(const fb_format *fmt, GstVideoInfo *info);
/* The pixel format's name for messages ("RGBA", "MJPG", ...). */
const char *gst_framebus_fourcc_name(uint32_t fourcc, char buf[5]);

/* CLOCK_MONOTONIC now, in ns. */
guint64 gst_framebus_monotonic_ns(void);
/* A time of `clock` -> CLOCK_MONOTONIC ns and back. GStreamer's system clock (the
 * default pipeline clock) is CLOCK_MONOTONIC unless its clock-type says otherwise: then
 * the two are the same number; any other clock is mapped through the offset between the
 * two clocks read now (accurate to the clocks' drift since). */
guint64 gst_framebus_clock_to_monotonic(GstClock *clock, GstClockTime t);
GstClockTime gst_framebus_monotonic_to_clock(GstClock *clock, guint64 mono_ns);

G_END_DECLS

#endif
