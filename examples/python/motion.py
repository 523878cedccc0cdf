#!/usr/bin/env python3
"""Motion detection on a framebus bus with OpenCV-Python: the Python twin of
``framebus analyze NAME --detect motion``.

    python examples/python/motion.py cam0 [--threshold 25] [--min-area N] [--frames N]
                                          [--timeout S] [--dir DIR]

Frame differencing of the blurred frames (a pixel changed when the grey level of the
per-channel colour difference is over --threshold), dilated into regions; each region of
at least --min-area frame pixels (default 1/2000 of the frame) is a box. Frames wider
than 640 pixels are analysed scaled down to 640; boxes are in the frame's own pixels.
It takes the newest frame each time and counts what it skipped; it never queues.

One JSON line per analysed frame, with the fields of framebus analyze: seq, generation,
capture_ns, commit_ns, result_ns (CLOCK_MONOTONIC), width, height, detect, boxes
[{x, y, w, h}], latency_capture_us, latency_commit_us, dropped.

The frame is read zero-copy: cv2.cvtColor reads the slot itself (f.array is a read-only
view) and writes the BGR image the detector keeps; f.valid() then says whether the
producer came back to the slot meanwhile, in which case the frame is skipped and counted
in the next line's dropped.
"""

import argparse
import json
import sys
import time

import cv2
import numpy as np

import framebus

WORK_WIDTH = 640

TO_BGR = {"RGBA": cv2.COLOR_RGBA2BGR, "RGB24": cv2.COLOR_RGB2BGR, "GREY": cv2.COLOR_GRAY2BGR,
          "YUYV": cv2.COLOR_YUV2BGR_YUYV, "NV12": cv2.COLOR_YUV2BGR_NV12, "I420": cv2.COLOR_YUV2BGR_I420}


def to_bgr(f: framebus.Frame, out):
    """The frame as a BGR image (out reused when it fits)."""
    name = f.format.name
    if name == "BGR24":
        if out is not None and out.shape == f.array.shape:
            np.copyto(out, f.array)
            return out
        return f.array.copy()
    if name == "MJPEG":
        return cv2.imdecode(np.asarray(f.data), cv2.IMREAD_COLOR)
    code = TO_BGR.get(name)
    if code is None:
        raise SystemExit(f"motion.py: format {name} is not supported")
    if out is not None and out.shape == (f.format.height, f.format.width, 3):
        return cv2.cvtColor(f.array, code, dst=out)
    return cv2.cvtColor(f.array, code)


class Motion:
    def __init__(self, threshold: int, min_area: int):
        self.threshold, self.min_area = threshold, min_area
        self.prev = None
        self.kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (5, 5))

    def reset(self):
        self.prev = None

    def detect(self, bgr):
        h, w = bgr.shape[:2]
        scale = 1.0
        src = bgr
        if w > WORK_WIDTH:
            scale = w / WORK_WIDTH
            src = cv2.resize(bgr, (WORK_WIDTH, int(h / scale + 0.5)), interpolation=cv2.INTER_AREA)
        cur = cv2.GaussianBlur(src, (5, 5), 0)
        if self.prev is None or self.prev.shape != cur.shape:
            self.prev = cur
            return []
        diff = cv2.cvtColor(cv2.absdiff(cur, self.prev), cv2.COLOR_BGR2GRAY)
        self.prev = cur
        _, mask = cv2.threshold(diff, self.threshold, 255, cv2.THRESH_BINARY)
        mask = cv2.dilate(mask, self.kernel, iterations=2)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        min_area = self.min_area or max(1, w * h // 2000)
        boxes = []
        for c in contours:
            x, y, bw, bh = cv2.boundingRect(c)
            b = {"x": int(x * scale), "y": int(y * scale), "w": int(bw * scale + 0.5), "h": int(bh * scale + 0.5)}
            if b["w"] * b["h"] >= min_area:
                boxes.append(b)
        return boxes


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("name")
    ap.add_argument("--threshold", type=int, default=25)
    ap.add_argument("--min-area", type=int, default=0)
    ap.add_argument("--frames", type=int, default=0, help="stop after N analysed frames")
    ap.add_argument("--timeout", type=float, default=10, help="wait S for the producer (also when it is gone)")
    ap.add_argument("--dir", default=None)
    a = ap.parse_args(argv)
    if not 1 <= a.threshold <= 254:
        ap.error("--threshold: want 1 to 254")
    det = Motion(a.threshold, a.min_area)
    bgr = None
    carry = 0  # frames skipped (overwritten while converted), for the next line's dropped
    analysed = 0
    gone_since = None
    with framebus.Consumer(a.name, timeout=a.timeout, dir=a.dir) as c:
        while True:
            try:
                f = c.next(timeout=a.timeout)
            except framebus.EndOfStream:
                break
            except framebus.Timeout:
                print("motion.py: no frame within the timeout", file=sys.stderr)
                return 1
            except (framebus.ProducerGone, framebus.Stalled) as e:
                gone_since = gone_since or time.monotonic()
                if time.monotonic() - gone_since > a.timeout:
                    print(f"motion.py: {e}; it did not come back", file=sys.stderr)
                    return 1
                continue
            gone_since = None
            if f.generation_changed:
                det.reset()
            bgr = to_bgr(f, bgr)
            if not f.valid():  # overwritten while we converted it: never analyse a torn frame
                carry += 1 + f.dropped
                continue
            boxes = det.detect(bgr)
            done = time.monotonic_ns()
            h, w = bgr.shape[:2]
            sys.stdout.write(json.dumps({
                "seq": f.seq, "generation": f.generation, "capture_ns": f.capture_ns, "commit_ns": f.commit_ns,
                "result_ns": done, "width": w, "height": h, "detect": "motion", "boxes": boxes,
                "latency_capture_us": round((done - f.capture_ns) / 1e3, 1),
                "latency_commit_us": round((done - f.commit_ns) / 1e3, 1), "dropped": f.dropped + carry},
                separators=(",", ":")) + "\n")
            sys.stdout.flush()
            carry = 0
            analysed += 1
            if a.frames and analysed >= a.frames:
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
