"""A Python consumer whose bus file the test truncates at random moments: it must never die.

    victim.py NAME DIR --mode next|copy|sum [--no-verify] [--timeout S]

next: Consumer.next(); copy: read_into(); sum: next(), then sums f.array for about 20 ms
(user code reading the zero-copy view), then f.valid(). One JSON line per frame (seq,
generation, first8 as an int, valid) and per error (type, field); at the end (stdin closed:
the test is done) an "end" line with the guard's fault count. Exits 0 unless it dies.
"""

import argparse
import json
import os
import sys
import threading
import time

import numpy as np

import framebus
from framebus import _native


def out(**kw):
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("dir")
    ap.add_argument("--mode", default="next", choices=["next", "copy", "sum"])
    ap.add_argument("--no-verify", action="store_true")
    ap.add_argument("--timeout", type=float, default=30.0)
    a = ap.parse_args()
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    c = framebus.Consumer(a.name, timeout=a.timeout, dir=a.dir, verify_checksum=not a.no_verify)
    out(event="joined", guarded=framebus.GUARDED, checksums=c.checksums, generation=c.generation)
    buf = np.empty(c.format.frame_size, np.uint8)
    frames = errors = 0
    while not done.is_set():
        try:
            if a.mode == "copy":
                if buf.nbytes < c.format.frame_size:
                    buf = np.empty(c.format.frame_size, np.uint8)
                f = c.read_into(buf, timeout=0.5)
            else:
                f = c.next(timeout=0.5)
        except framebus.Timeout:
            continue
        except framebus.EndOfStream:
            break
        except framebus.Error as e:
            errors += 1
            out(event="error", type=type(e).__name__, field=getattr(e, "field", None), message=str(e))
            continue
        frames += 1
        ev = {"event": "frame", "seq": f.seq, "generation": f.generation, "changed": f.generation_changed}
        if a.mode == "sum":
            end = time.monotonic() + 0.02
            total = 0
            while time.monotonic() < end:
                total += int(f.array.sum(dtype=np.uint64))
            ev["summed"] = True
        ev["first8"] = int.from_bytes(bytes(f.data[:8]), "little")
        ev["valid"] = f.valid()
        out(**ev)
    out(event="end", frames=frames, errors=errors, faults=_native.faults(), foreign=_native.foreign())
    c.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
