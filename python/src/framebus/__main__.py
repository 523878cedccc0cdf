"""``python -m framebus``: a consumer and a producer from the command line.

    python -m framebus tail NAME [--json] [--count N] [--duration S] [--timeout S] [--dir DIR]
    python -m framebus pattern NAME [--size WxH] [--format F] [--fps N] [--count N]
                                    [--duration S] [--checksum] [--dir DIR]

``tail --json`` prints one line per frame with the fields of ``framebus tail --json``
(seq, bytes, commit_to_wake_us, capture_to_wake_us, dropped, torn_retries, generation,
new_generation) and ends with ``{"event": "closed", ...}`` at the end of stream.
``pattern`` publishes a moving test pattern (frame number in the first 8 bytes).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from typing import List, Optional, Tuple

import numpy as np

from . import Consumer, CorruptSegment, EndOfStream, Error, ProducerGone, Producer, Stalled, Timeout


def _size(s: str) -> Tuple[int, int]:
    w, _, h = s.lower().partition("x")
    return int(w), int(h)


def tail(a: argparse.Namespace) -> int:
    out = sys.stdout
    frames = dropped = 0
    end = time.monotonic() + a.duration if a.duration else None
    with Consumer(a.name, timeout=a.timeout, dir=a.dir, verify_checksum=not a.skip_checksum) as c:
        print(f"joined {a.name}: {c.format}, generation {c.generation}, entry {c.entry}", file=sys.stderr)
        gone_since: Optional[float] = None
        while a.count == 0 or frames < a.count:
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                break
            try:
                f = c.next(timeout=left)
            except EndOfStream as e:
                dropped += e.dropped
                if a.json:
                    out.write(json.dumps({"event": "closed", "frames": frames, "dropped": dropped}) + "\n")
                else:
                    out.write("closed\n")
                out.flush()
                return 0
            except Timeout:
                break
            except (ProducerGone, Stalled) as e:
                now = time.monotonic()
                gone_since = gone_since or now
                print(f"waiting for the producer: {e}", file=sys.stderr)
                if now - gone_since > a.timeout:
                    print(f"the producer did not come back within {a.timeout} s", file=sys.stderr)
                    return 1
                continue
            gone_since = None
            frames += 1
            dropped += f.dropped
            line = {"seq": f.seq, "bytes": f.nbytes, "commit_to_wake_us": (f.wake_ns - f.commit_ns) / 1e3,
                    "capture_to_wake_us": (f.wake_ns - f.capture_ns) / 1e3, "dropped": f.dropped,
                    "torn_retries": f.torn_retries, "generation": f.generation}
            if f.generation_changed:
                line["new_generation"] = True
            if a.json:
                out.write(json.dumps(line) + "\n")
            else:
                out.write("seq={seq} bytes={bytes} commit_to_wake={commit_to_wake_us:.1f}us dropped={dropped} "
                          "torn={torn_retries}\n".format(**line))
            out.flush()
    return 0


def pattern(a: argparse.Namespace) -> int:
    w, h = _size(a.size)
    stop = []
    # SIGINT, SIGTERM and SIGHUP (the terminal closed, a supervisor's reload) end the stream
    # cleanly, after the frame being written: end of stream, bus and lock file removed, exit 0
    # (not 130, 143 or 129). SIGINT too, even when the shell started us with it ignored.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.append(1))
    with Producer(a.name, w, h, a.format, fps=a.fps, checksum=a.checksum, dir=a.dir, slots=a.slots,
                  holds=not a.no_holds) as p:
        print(f"publishing {a.name}: {p.format}, generation {p.generation}", file=sys.stderr)
        n = p.format.frame_size
        frame = np.zeros(n, np.uint8)
        ramp = (np.arange(n, dtype=np.uint32) % 251).astype(np.uint8)
        period = 1 / a.fps if a.fps else 0
        t0 = time.monotonic()
        end = t0 + a.duration if a.duration else None
        i = 0
        while not stop and (a.count == 0 or i < a.count) and (end is None or time.monotonic() < end):
            seq = p.last_seq + 1
            np.add(ramp, seq % 256, out=frame, casting="unsafe")
            frame[:8] = np.frombuffer(seq.to_bytes(8, "little"), np.uint8)
            try:
                with p.frame(capture_ns=time.monotonic_ns()) as buf:
                    np.copyto(buf, frame[:buf.size].reshape(buf.shape))
            except CorruptSegment as e:
                # The bus file was truncated under the frame (the guard kept us alive): the
                # producer publishes a new generation with the next one.
                print(f"frame lost: {e}", file=sys.stderr)
                continue
            i += 1
            if period:
                time.sleep(max(0.0, t0 + i * period - time.monotonic()))
        from . import _native

        print(f"published {i} frames, last seq {p.stats().last_seq}, generation {p.generation}, "
              f"{_native.faults()} faults of a truncated file survived", file=sys.stderr)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m framebus", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tail", help="join a bus and print one line per frame")
    t.add_argument("name")
    t.add_argument("--json", action="store_true")
    t.add_argument("--count", type=int, default=0, help="stop after N frames (0: until the stream ends)")
    t.add_argument("--duration", type=float, default=0, help="stop after S seconds")
    t.add_argument("--timeout", type=float, default=10, help="wait S seconds for the producer (also when gone)")
    t.add_argument("--skip-checksum", action="store_true", help="do not verify CRC-32C checksums")
    t.add_argument("--dir", default=None)
    t.set_defaults(fn=tail)
    pt = sub.add_parser("pattern", help="publish a test pattern")
    pt.add_argument("name")
    pt.add_argument("--size", default="640x480")
    pt.add_argument("--format", default="RGBA")
    pt.add_argument("--fps", type=float, default=30)
    pt.add_argument("--count", type=int, default=0)
    pt.add_argument("--duration", type=float, default=0)
    pt.add_argument("--checksum", action="store_true")
    pt.add_argument("--slots", type=int, default=2, help="slots (2-8); with N slots consumers may hold N - 2")
    pt.add_argument("--no-holds", action="store_true", help="do not honour holds (no flag bit 2)")
    pt.add_argument("--dir", default=None)
    pt.set_defaults(fn=pattern)
    a = ap.parse_args(argv)
    try:
        rc: int = a.fn(a)
        return rc
    except KeyboardInterrupt:
        return 0
    except Error as e:
        print(e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
