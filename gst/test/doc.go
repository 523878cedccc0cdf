// Package test holds the tests of the framebus GStreamer plugin (../, docs/GSTREAMER.md):
// real gst-launch-1.0 pipelines with framebussink and framebussrc against framebus tail,
// the C consumer of libframebus, the Go consumer, framebus capture and ffprobe. make test
// (and make test-gst) installs the GStreamer packages they need and builds the plugin.
package test
