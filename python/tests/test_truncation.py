"""A bus file truncated under a Python reader or writer at random moments: never the death
of the interpreter (the native helper's SIGBUS guard, src/framebus/_native.c), a typed
error or the producer's new generation each time, and never a frame read from the
guard's zero pages delivered as good.

The bus is 1920x1080 RGBA with checksums (8 MB frames), published by
``python -m framebus pattern`` (frame number in the first 8 bytes of each frame)."""

from __future__ import annotations

import os
import random
import signal
import struct
import subprocess
import sys
import time

import pytest

import framebus
from framebus import _native
from conftest import HELPERS, PY, child_env, wait_for

W, H = 1920, 1080
FPS = 30
TRUNCATIONS = 20  # of each size

pytestmark = pytest.mark.skipif(not framebus.GUARDED, reason=f"no SIGBUS guard: {_native.REASON}")

DEATH = ("Fatal Python error", "Bus error", "Segmentation fault", "Traceback")


def pattern(procs, name, d, fps=FPS, *extra):
    return procs([PY, "-X", "faulthandler", "-m", "framebus", "pattern", name, "--size", f"{W}x{H}", "--fps",
                  str(fps), "--checksum", "--dir", d, *extra])


def victim(procs, name, d, mode, verify):
    args = [PY, "-X", "faulthandler", str(HELPERS / "victim.py"), name, d, "--mode", mode]
    if not verify:
        args.append("--no-verify")
    return procs(args, stdin=subprocess.PIPE)


def header_generation(path):
    try:
        with open(path, "rb") as f:
            b = f.read(32)
        return struct.unpack_from("<Q", b, 24)[0] if len(b) == 32 else 0
    except OSError:
        return 0


def check_frame(ev, mode):
    """Never a frame from the guard's zero pages: frame_seq is never 0, and the frame's
    first 8 bytes are its number whenever it was still intact after use."""
    assert ev["seq"] > 0, ev
    if mode == "copy" or ev["valid"]:
        assert ev["first8"] == ev["seq"], ev


@pytest.mark.parametrize("verify", [True, False], ids=["checksums", "no-checksums"])
def test_truncation_never_kills_a_python_consumer(procs, busdir, verify):
    """20 truncations to 0 and 20 to half the file, at random moments within a frame
    period, under three Python consumers at once: next(), read_into(), and next() with
    user code summing f.array for 20 ms. After each: a typed error (CorruptSegment, field
    'file size') or a frame of a new generation, from every consumer; none dies."""
    name = "trc" + ("v" if verify else "n")
    path = framebus.segment_path(busdir, name)
    prod = pattern(procs, name, busdir)
    wait_for(lambda: os.path.exists(path), 30, "the bus")
    vics = {m: victim(procs, name, busdir, m, verify) for m in ("next", "copy", "sum")}
    for v in vics.values():
        ev = v.wait_event(lambda e: e["event"] == "joined", timeout=30)
        assert ev["guarded"] and ev["checksums"]
    size = os.path.getsize(path)
    sizes = [0] * TRUNCATIONS + [size // 2] * TRUNCATIONS
    random.shuffle(sizes)
    outcomes = {m: {"error": 0, "new generation": 0} for m in vics}
    last_cut = 0
    for k, cut in enumerate(sizes):
        gens = []
        for m, v in vics.items():  # every consumer is reading the generation about to be cut
            ev = v.wait_event(lambda e: e["event"] == "frame" and e["generation"] > last_cut, timeout=60)
            check_frame(ev, m)
            gens.append(ev["generation"])
        gen = max(gens)
        wait_for(lambda: header_generation(path) >= gen, 10, "the producer's generation")
        time.sleep(random.uniform(0, 1 / FPS))
        gen = header_generation(path)
        os.truncate(path, cut)
        for m, v in vics.items():
            def outcome(e, m=m):
                if e["event"] == "frame":
                    check_frame(e, m)
                    return e["generation"] > gen
                return e["event"] == "error"
            ev = v.wait_event(outcome, timeout=60)
            if ev["event"] == "error":
                # A typed error: the truncation itself, or a producer that a loaded machine
                # kept from its heartbeat while it rebuilt a 1080p generation (seen at a
                # load average of 14: 1.06 s) -- never a death.
                assert (ev["type"] == "CorruptSegment" and ev["field"] == "file size") or ev["type"] == "Stalled", ev
                outcomes[m]["error"] += 1
            else:
                outcomes[m]["new generation"] += 1
        last_cut = gen
    faults = {}
    for m, v in vics.items():
        v.p.stdin.close()
        rest = v.drain(timeout=60)
        assert v.wait(60) == 0, f"{m}: {v.stderr}"
        assert not any(s in v.stderr for s in DEATH), f"{m}: {v.stderr}"
        for e in rest:
            if e["event"] == "frame":
                check_frame(e, m)
            elif e["event"] == "error":
                assert e["type"] == "CorruptSegment", e
        end = rest[-1]
        assert end["event"] == "end" and end["foreign"] == 0, end
        faults[m] = end["faults"]
    print(f"\n{2 * TRUNCATIONS} truncations, checksums {'verified' if verify else 'not verified'}: "
          f"outcomes {outcomes}; faults survived in the read {faults}")
    # Summing 20 ms of each 33 ms frame period, the user code is hit most of the times.
    assert faults["sum"] > 0, faults
    prod.signal(signal.SIGTERM)
    assert prod.wait(30) == 0, prod.stderr
    assert not any(s in prod.stderr for s in DEATH), prod.stderr


def test_truncation_never_kills_a_python_producer(procs, busdir):
    """20 truncations to 0 and 20 to half under the Python producer publishing 1080p with
    checksums as fast as it can (it is copying or summing most of the time): it survives
    each (its frame is lost with a CorruptSegment it catches) and publishes a new
    generation, which a Python consumer follows; SIGTERM then ends it cleanly."""
    name = "trp"
    path = framebus.segment_path(busdir, name)
    prod = pattern(procs, name, busdir, 0)
    wait_for(lambda: os.path.exists(path), 30, "the bus")
    cons = victim(procs, name, busdir, "next", True)
    cons.wait_event(lambda e: e["event"] == "joined", timeout=30)
    size = os.path.getsize(path)
    sizes = [0] * TRUNCATIONS + [size // 2] * TRUNCATIONS
    random.shuffle(sizes)
    for cut in sizes:
        gen = header_generation(path)
        wait_for(lambda: os.path.getsize(path) == size, 10, "a whole bus file")
        time.sleep(random.uniform(0.005, 0.03))
        os.truncate(path, cut)
        wait_for(lambda: header_generation(path) > gen, 10, f"the producer's generation after {gen}")
    ev = cons.wait_event(lambda e: e["event"] == "frame" and e["generation"] > 2 * TRUNCATIONS, timeout=60)
    check_frame(ev, "next")
    prod.signal(signal.SIGTERM)
    assert prod.wait(30) == 0, prod.stderr
    assert not any(s in prod.stderr for s in DEATH), prod.stderr
    lost = prod.stderr.count("frame lost")
    print(f"\nproducer: {2 * TRUNCATIONS} truncations, {lost} frames lost under a write, "
          f"{prod.stderr.strip().splitlines()[-1]}")
    assert not os.path.exists(path) and not os.path.exists(framebus.lock_path(busdir, name))
    cons.p.stdin.close()
    rest = cons.drain(timeout=60)
    assert cons.wait(60) == 0, cons.stderr
    for e in rest:
        if e["event"] == "frame":
            check_frame(e, "next")


def run_child(code, **env):
    return subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=120,
                          env=child_env(**env))


FOREIGN = """
import mmap, os, sys, tempfile, faulthandler
import framebus
if sys.argv[-1] == "after":
    faulthandler.enable()
fd, p = tempfile.mkstemp(dir=%r)
os.ftruncate(fd, 65536)
m = mmap.mmap(fd, 65536)
os.ftruncate(fd, 0)
print("reading", flush=True)
m[40000]
print("survived", flush=True)
"""


@pytest.mark.parametrize("order", ["before", "after"])
def test_foreign_sigbus_still_kills(busdir, order):
    """A SIGBUS outside the bus mappings is not ours: faulthandler (enabled before or after
    framebus was imported) prints its traceback and the process dies of SIGBUS, as it
    would without framebus."""
    code = FOREIGN % busdir
    args = [PY, "-X", "faulthandler", "-c", code] if order == "before" else [PY, "-c", code, "after"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=60, env=child_env())
    assert r.returncode == -signal.SIGBUS, (r.returncode, r.stdout, r.stderr)
    assert "reading" in r.stdout and "survived" not in r.stdout
    assert "Fatal Python error: Bus error" in r.stderr, r.stderr


REPLACED = """
import os, faulthandler, numpy as np, framebus
p = framebus.Producer("rep", 640, 480, dir=%r, checksum=True)
c = framebus.Consumer("rep", dir=%r)
p.publish(np.full((480, 640, 4), 7, np.uint8))
faulthandler.enable()  # replaces our SIGBUS handler; next() puts ours back on top
f = c.next(timeout=5)
os.truncate(p.path, 0)
s = int(f.array.sum())  # reads the guard's zero pages
print("sum", s, "valid", f.valid(), flush=True)
try:
    c.next(timeout=0.5)
except framebus.Error as e:
    print("next", type(e).__name__, flush=True)
"""


def test_guard_put_back_over_faulthandler(busdir):
    """faulthandler.enable() after the import replaces the guard; the next read puts it
    back on top (faulthandler stays behind it for foreign faults): a truncation under
    user code then reads zeros, valid() is False, no traceback is printed."""
    r = run_child(REPLACED % (busdir, busdir))
    assert r.returncode == 0, r.stderr
    assert "sum 0 valid False" in r.stdout, r.stdout
    assert "Fatal Python error" not in r.stderr, r.stderr


def test_fallback_says_what_it_cannot_guard(busdir):
    """Without the helper (FRAMEBUS_NO_NATIVE=1): GUARDED is False, CRC-32C is numpy's,
    and the first bus opened warns once (RuntimeWarning) naming what is not guarded."""
    code = ("import warnings, numpy as np, framebus, framebus._crc32c as c\n"
            "warnings.simplefilter('always')\n"
            f"p = framebus.Producer('fb', 64, 48, dir={busdir!r})\n"
            f"c1 = framebus.Consumer('fb', dir={busdir!r}); c2 = framebus.Consumer('fb', dir={busdir!r})\n"
            "print(framebus.GUARDED, framebus.NATIVE_CRC, c.IMPLEMENTATION)\n")
    r = run_child(code, FRAMEBUS_NO_NATIVE="1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "False", "numpy"], r.stdout
    assert r.stderr.count("RuntimeWarning") == 1, r.stderr
    assert "no SIGBUS guard (FRAMEBUS_NO_NATIVE is set)" in r.stderr and "kills the interpreter" in r.stderr
    r = run_child("import framebus; print(framebus.GUARDED, framebus.NATIVE_CRC)")
    assert r.stdout.split() == ["True", "True"], (r.stdout, r.stderr)


def test_native_crc_matches():
    import numpy as np
    from framebus import _crc32c as C

    assert C.IMPLEMENTATION == "native"
    rng = np.random.default_rng(1)
    for n in (0, 1, 7, 8, 9, 63, 64, 65, 4095, 24575, 24576, 24577, 100_003):
        b = rng.integers(0, 256, n, dtype=np.uint8)
        assert C.crc32c(b) == C.crc32c_numpy(b) == (C.crc32c_reference(b.tobytes()) if n < 5000 else C.crc32c_numpy(b))
        assert C.crc32c(b[1:]) == C.crc32c_numpy(b[1:].copy())  # unaligned start
    assert C.crc32c(b"123456789") == 0xE3069283


def test_native_crc_header_is_the_c_programs():
    """_crc32c_impl.h is libframebus/src/crc32c.h with a two-line note in front."""
    from conftest import REPO

    ours = (REPO / "python" / "src" / "framebus" / "_crc32c_impl.h").read_text().splitlines()
    theirs = (REPO / "libframebus" / "src" / "crc32c.h").read_text().splitlines()
    assert ours[2:] == theirs
