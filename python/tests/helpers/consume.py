"""A Python consumer run as its own process by the tests: one JSON line per event.

    consume.py NAME DIR [--mode next|copy] [--until-seq N] [--count N] [--timeout S]
               [--keep-going] [--check-view] [--exit-after-join] [--hold S]

Events: joined (entry, last_seq at join, pid, pidns, shape, format, shared_wake),
frame (seq, dropped, torn, generation, generation_changed, shape, planes, first8, crc
checks), error (type, message, t_ns, liveness checks, attributes), end (the entry's
counters, eos, amendment 9's refused and resyncs). It never exits on ProducerGone/Stalled
with --keep-going.
"""

import argparse
import json
import os
import signal
import sys
import time

import numpy as np

import framebus

# A shell that starts a job in the background without job control (`make test &`, nohup)
# hands its children SIGINT ignored, and CPython then keeps it ignored: the Ctrl-C tests
# would wait for nothing. A user's terminal gives the default, which this restores.
signal.signal(signal.SIGINT, signal.default_int_handler)


def out(**kw):
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


def error_event(e, c):
    d = {"event": "error", "type": type(e).__name__, "message": str(e), "t_ns": time.monotonic_ns(),
         "isinstance_error": isinstance(e, framebus.Error)}
    for k in ("field", "value", "got", "want", "path", "mode", "uid", "capacity", "seq", "dropped", "pid"):
        if hasattr(e, k):
            d[k] = getattr(e, k)
    if c is not None:
        try:
            d["checks"] = c.stats().liveness_checks
        except framebus.Error:
            pass
    out(**d)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("dir")
    ap.add_argument("--mode", default="next", choices=["next", "copy"])
    ap.add_argument("--until-seq", type=int, default=0)
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--keep-going", action="store_true")
    ap.add_argument("--check-view", action="store_true", help="CRC the zero-copy view, then valid()")
    ap.add_argument("--exit-after-join", action="store_true", help="exit without close (interpreter exit)")
    ap.add_argument("--hold", type=float, default=0, help="sleep S after joining, before reading")
    ap.add_argument("--no-verify", action="store_true")
    a = ap.parse_args()

    c = None
    try:
        c = framebus.Consumer(a.name, timeout=a.timeout, dir=a.dir, verify_checksum=not a.no_verify)
    except framebus.Error as e:
        error_event(e, None)
        return 3
    st = c.stats()
    out(event="joined", pid=os.getpid(), entry=c.entry, last_seq=st.last_seq, generation=c.generation,
        shape=list(c.format.shape), format=c.format.name, shared_wake=st.shared_wake, checksums=c.checksums,
        pidns=os.stat("/proc/self/ns/pid").st_ino)
    if a.exit_after_join:
        sys.exit(0)  # no close(): the interpreter's exit must leave the table
    if a.hold:
        time.sleep(a.hold)
    buf = np.empty(c.format.frame_size, np.uint8) if a.mode == "copy" else None
    frames = 0
    eos = False
    deadline_gone = None
    while True:
        try:
            if a.mode == "copy":
                if buf.nbytes < c.format.frame_size:
                    buf = np.empty(c.format.frame_size, np.uint8)
                f = c.read_into(buf, timeout=a.timeout)
            else:
                f = c.next(timeout=a.timeout)
        except framebus.EndOfStream as e:
            error_event(e, c)
            eos = True
            break
        except (framebus.ProducerGone, framebus.Stalled, framebus.CorruptSegment) as e:
            error_event(e, c)
            if not a.keep_going:
                return 5
            now = time.monotonic()
            deadline_gone = deadline_gone or now + a.timeout
            if now > deadline_gone:
                return 5
            continue
        except framebus.ChecksumMismatch as e:
            error_event(e, c)
            continue
        except framebus.Error as e:
            error_event(e, c)
            return 4
        deadline_gone = None
        frames += 1
        ev = {"event": "frame", "seq": f.seq, "dropped": f.dropped, "torn": f.torn_retries,
              "generation": f.generation, "generation_changed": f.generation_changed, "nbytes": f.nbytes,
              "meta": f.user_meta.decode("latin-1"), "checksum": f.checksum,
              "capture_ns": f.capture_ns, "commit_ns": f.commit_ns, "wake_ns": f.wake_ns}
        try:
            ev["shape"] = list(f.array.shape)
            ev["writeable"] = bool(f.array.flags.writeable)
        except framebus.Error:
            ev["shape"] = None
        ev["planes"] = [list(p.shape) for p in f.planes]
        ev["first8"] = bytes(f.data[:8]).hex()
        ev["valid"] = f.valid()  # after the use: first8 is the committed frame's only if True
        if a.mode == "next" and a.check_view and c.checksums:
            # The zero-copy contract: what was read from a view that is still valid() after
            # the use is the frame that was committed, so its CRC must be the descriptor's.
            used = f.data.copy()  # the "use" (the CRC of the copy comes after valid())
            ev["view_valid"] = f.valid()
            ev["view_crc_ok"] = framebus.crc32c(used) == f.checksum
        elif a.mode == "copy" and c.checksums:
            ev["copy_crc_ok"] = framebus.crc32c(buf[:f.nbytes]) == f.checksum
        out(**ev)
        if (a.until_seq and f.seq >= a.until_seq) or (a.count and frames >= a.count):
            break
    s = c.stats()
    out(event="end", delivered=s.delivered, dropped=s.dropped, last_seq=s.last_seq, torn=s.torn_retries,
        generation=s.generation, eos=eos, checks=s.liveness_checks, refused=s.refused, resyncs=s.resyncs)
    c.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
