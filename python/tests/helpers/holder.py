"""A Python consumer that holds frames (amendment 10), run as its own process by the tests.

    holder.py NAME DIR [--hold-ms 50] [--duration S] [--forever]

Each frame: next(), f.hold(), sleep --hold-ms (the "model"), then whether the held view is
still intact (h.valid(), its bytes' CRC at the start and the end of the hold, and its first 8
bytes, the frame number of the Python pattern), release.
--forever: holds the first frame granted and sleeps (for kill -9). One JSON line per frame;
an "end" line with the consumer's stats.
"""

import argparse
import json
import sys
import time
import zlib

import framebus


def out(**kw):
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("dir")
    ap.add_argument("--hold-ms", type=float, default=50)
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--forever", action="store_true")
    a = ap.parse_args()
    c = framebus.Consumer(a.name, timeout=30, dir=a.dir, verify_checksum=False)
    out(event="joined", entry=c.entry)
    end = time.monotonic() + a.duration
    while time.monotonic() < end:
        try:
            f = c.next(timeout=5)
        except framebus.EndOfStream:
            break
        t = time.monotonic()
        try:
            h = f.hold()
        except framebus.HoldRefused as e:
            out(event="frame", seq=f.seq, held=False, reason=e.reason, refuse_s=time.monotonic() - t)
            continue
        if a.forever:
            out(event="held", seq=f.seq)
            while True:
                time.sleep(1)
        with h:
            before = zlib.crc32(h.data)
            time.sleep(a.hold_ms / 1000)
            first8 = int.from_bytes(bytes(h.data[:8]), "little")
            same = zlib.crc32(h.data) == before
            out(event="frame", seq=f.seq, held=True, valid=h.valid(), first8=first8, same=same)
    s = c.stats()
    out(event="end", granted=s.holds_granted, refused=s.holds_refused, taken_back=s.holds_taken_back,
        delivered=s.delivered, dropped=s.dropped)
    c.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
