#!/usr/bin/env python3
"""Publishes the frames of an OpenCV VideoCapture (a camera or a video file) on a bus,
for Go, C or Python consumers.

    python examples/python/publish_capture.py testdata/pattern.avi --name cam0
    python examples/python/publish_capture.py 0 --name cam0 --format RGBA   # camera 0

OpenCV decodes straight into the bus's back slot (cap.read(buf) with the slot as buf:
no copy) when the bus is BGR24, OpenCV's own layout; for RGBA, GREY or NV12... it
converts from a BGR image into the slot with cv2.cvtColor(..., dst=slot). A file plays
at its own frame rate (--fps overrides, 0 = as fast as possible) and loops with --loop.
Ctrl-C or SIGTERM closes the bus cleanly (consumers see the end of stream).
"""

import argparse
import signal
import sys
import time

import cv2
import numpy as np

import framebus

FROM_BGR = {"RGBA": cv2.COLOR_BGR2RGBA, "RGB24": cv2.COLOR_BGR2RGB, "GREY": cv2.COLOR_BGR2GRAY,
            "I420": cv2.COLOR_BGR2YUV_I420}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", help="a video file, or a camera index (0, 1, ...)")
    ap.add_argument("--name", required=True)
    ap.add_argument("--format", default="BGR24", choices=["BGR24", "RGBA", "RGB24", "GREY", "I420"])
    ap.add_argument("--fps", type=float, default=None, help="frames per second (default: the source's; 0: as fast as possible)")
    ap.add_argument("--frames", type=int, default=0, help="stop after N frames")
    ap.add_argument("--loop", action="store_true", help="start a file again at its end")
    ap.add_argument("--checksum", action="store_true")
    ap.add_argument("--dir", default=None)
    a = ap.parse_args(argv)

    cap = cv2.VideoCapture(int(a.source) if a.source.isdigit() else a.source)
    if not cap.isOpened():
        print(f"publish_capture.py: cannot open {a.source}", file=sys.stderr)
        return 1
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    src_fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    fps = src_fps if a.fps is None else a.fps
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    published = 0
    bgr = np.empty((h, w, 3), np.uint8)
    with framebus.Producer(a.name, w, h, a.format, fps=fps, checksum=a.checksum, dir=a.dir) as p:
        print(f"publishing {a.source} on {a.name}: {p.format} (source {src_fps:g} fps)", file=sys.stderr)
        due = time.monotonic()
        try:
            while not stop and (a.frames == 0 or published < a.frames):
                try:
                    with p.frame(capture_ns=time.monotonic_ns()) as slot:
                        if a.format == "BGR24":
                            ok, img = cap.read(slot)  # decoded straight into the slot
                            if ok and img is not slot:
                                np.copyto(slot, img)  # OpenCV allocated its own: copy once
                        else:
                            ok, img = cap.read(bgr)
                            if ok:
                                cv2.cvtColor(img, FROM_BGR[a.format], dst=slot)
                        if not ok:
                            raise EOFError  # leaves the block by an exception: nothing published
                except EOFError:
                    if a.loop and published and cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
                        continue
                    break
                published += 1
                if fps:
                    due += 1 / fps
                    time.sleep(max(0.0, due - time.monotonic()))
        except KeyboardInterrupt:
            pass
        print(f"published {published} frames (last seq {p.last_seq})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
