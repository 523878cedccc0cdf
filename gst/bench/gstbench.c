/*
 * gstbench - one side of a GStreamer transport measurement (scripts/bench-gst.sh runs both).
 *
 *   gstbench produce PIPELINE        runs PIPELINE; an element named "stamp" gets a probe
 *                                    that writes CLOCK_MONOTONIC (ns) into the first 8 bytes
 *                                    of every buffer just before the transport's sink
 *   gstbench consume N PIPELINE      runs PIPELINE until N frames, EOS, an error or 5 s
 *                                    without a frame; an element named "meas" reads the
 *                                    stamp of every buffer: latency = now - stamp
 *
 * consume prints one line: frames=N fps=F p50_us=.. p99_us=.. max_us=.. (the first 10
 * frames are left out of the latencies: start-up). Both processes run on this machine, so
 * CLOCK_MONOTONIC is one clock.
 */
#include <gst/gst.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static guint64 now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (guint64)ts.tv_sec * 1000000000u + (guint64)ts.tv_nsec;
}

static GMainLoop *loop;
static guint64 *lat;
static guint want, got, stamped;
static guint64 first_ns, last_ns;

static GstPadProbeReturn stamp_probe(GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
	GstBuffer *b = GST_PAD_PROBE_INFO_BUFFER(info);
	b = gst_buffer_make_writable(b); /* normally ours alone already: no copy */
	GST_PAD_PROBE_INFO_DATA(info) = b;
	guint64 t = now_ns();
	gst_buffer_fill(b, 0, &t, sizeof t);
	stamped++;
	return GST_PAD_PROBE_OK;
}

static GstPadProbeReturn meas_probe(GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
	GstBuffer *b = GST_PAD_PROBE_INFO_BUFFER(info);
	guint64 t = 0, now = now_ns();
	if (gst_buffer_extract(b, 0, &t, sizeof t) == sizeof t && got < want) {
		lat[got] = now > t ? now - t : 0;
		if (got == 0)
			first_ns = now;
		last_ns = now;
		got++;
		if (got == want)
			g_main_loop_quit(loop);
	}
	return GST_PAD_PROBE_OK;
}

static gboolean on_message(GstBus *bus, GstMessage *m, gpointer data)
{
	switch (GST_MESSAGE_TYPE(m)) {
	case GST_MESSAGE_EOS:
		g_main_loop_quit(loop);
		break;
	case GST_MESSAGE_ERROR: {
		GError *e;
		gchar *d;
		gst_message_parse_error(m, &e, &d);
		fprintf(stderr, "gstbench: %s (%s)\n", e->message, d ? d : "");
		g_error_free(e);
		g_free(d);
		g_main_loop_quit(loop);
		break;
	}
	case GST_MESSAGE_ELEMENT: { /* framebussink-stats, framebussrc-stats: to stderr */
		const GstStructure *st = gst_message_get_structure(m);
		if (st != NULL && g_str_has_suffix(gst_structure_get_name(st), "-stats")) {
			gchar *str = gst_structure_to_string(st);
			fprintf(stderr, "gstbench: %s\n", str);
			g_free(str);
		}
		break;
	}
	default:
		break;
	}
	return TRUE;
}

static guint last_seen;
static gboolean idle_check(gpointer data)
{
	if (got > 0 && got == last_seen) { /* 5 s without a frame */
		g_main_loop_quit(loop);
		return FALSE;
	}
	last_seen = got;
	return TRUE;
}

static int cmp(const void *a, const void *b)
{
	guint64 x = *(const guint64 *)a, y = *(const guint64 *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	gst_init(&argc, &argv);
	gboolean produce = argc == 3 && strcmp(argv[1], "produce") == 0;
	if (!produce && !(argc == 4 && strcmp(argv[1], "consume") == 0)) {
		fprintf(stderr, "usage: gstbench produce PIPELINE | gstbench consume N PIPELINE\n");
		return 2;
	}
	GError *err = NULL;
	GstElement *p = gst_parse_launch(argv[produce ? 2 : 3], &err);
	if (p == NULL || err != NULL) {
		fprintf(stderr, "gstbench: %s\n", err ? err->message : "bad pipeline");
		return 2;
	}
	GstElement *el = gst_bin_get_by_name(GST_BIN(p), produce ? "stamp" : "meas");
	if (el == NULL) {
		fprintf(stderr, "gstbench: no element named %s\n", produce ? "stamp" : "meas");
		return 2;
	}
	GstPad *pad = gst_element_get_static_pad(el, "src");
	if (produce)
		gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, stamp_probe, NULL, NULL);
	else {
		want = (guint)atoi(argv[2]);
		lat = g_new0(guint64, want);
		gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, meas_probe, NULL, NULL);
		g_timeout_add_seconds(5, idle_check, NULL);
	}
	gst_object_unref(pad);
	gst_object_unref(el);
	loop = g_main_loop_new(NULL, FALSE);
	GstBus *bus = gst_element_get_bus(p);
	gst_bus_add_watch(bus, on_message, NULL);
	gst_object_unref(bus);
	gst_element_set_state(p, GST_STATE_PLAYING);
	g_main_loop_run(loop);
	gst_element_set_state(p, GST_STATE_NULL);
	gst_object_unref(p);
	if (produce) {
		fprintf(stderr, "gstbench: produced %u frames\n", stamped);
		return 0;
	}
	if (got < 20) {
		printf("frames=%u fps=0 p50_us=0 p99_us=0 max_us=0\n", got);
		return 1;
	}
	double secs = (double)(last_ns - first_ns) / 1e9;
	guint n = got - 10;
	qsort(lat + 10, n, sizeof *lat, cmp);
	printf("frames=%u fps=%.1f p50_us=%.0f p99_us=%.0f max_us=%.0f\n", got, (got - 1) / secs,
	       lat[10 + n / 2] / 1e3, lat[10 + (n * 99) / 100] / 1e3, lat[10 + n - 1] / 1e3);
	return 0;
}
