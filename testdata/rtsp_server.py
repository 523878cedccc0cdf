#!/usr/bin/python3
"""A small RTSP camera for the tests: GStreamer's gst-rtsp-server (Debian's
gir1.2-gst-rtsp-server-1.0 and python3-gi) serving a live videotestsrc as
RTP/JPEG on 127.0.0.1.

usage: rtsp_server.py PORT WIDTH HEIGHT FPS [PATH]

PORT 0 picks a free port. It prints "ready PORT PATH" on stdout once it
listens, and serves until it is killed.
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main():
    port, width, height, fps = sys.argv[1:5]
    path = sys.argv[5] if len(sys.argv) > 5 else "/cam"
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        "( videotestsrc is-live=true pattern=ball "
        f"! video/x-raw,format=I420,width={width},height={height},framerate={fps}/1 "
        "! jpegenc quality=80 ! rtpjpegpay name=pay0 pt=26 )"
    )
    factory.set_shared(True)
    server.get_mount_points().add_factory(path, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{port}", file=sys.stderr, flush=True)
        sys.exit(1)
    print(f"ready {server.get_bound_port()} {path}", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
