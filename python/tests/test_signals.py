"""python -m framebus pattern ends the stream cleanly on SIGINT, SIGTERM and SIGHUP: a
consumer sees the end of stream, the bus and its lock file are removed, exit status 0."""

from __future__ import annotations

import os
import signal

import pytest

import framebus
from conftest import PY, consume_args, wait_for


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_pattern_ends_cleanly_on_signal(procs, busdir, sig):
    name = "sig" + sig.name.lower()
    path, lock = framebus.segment_path(busdir, name), framebus.lock_path(busdir, name)
    prod = procs([PY, "-m", "framebus", "pattern", name, "--size", "64x48", "--fps", "100", "--dir", busdir])
    wait_for(lambda: os.path.exists(path), 30, "the bus")
    cons = procs(consume_args(name, busdir, "--timeout", "30"))
    cons.wait_event(lambda e: e["event"] == "frame", timeout=30)
    prod.signal(sig)
    assert prod.wait(30) == 0, prod.stderr
    ev = cons.wait_event(lambda e: e["event"] == "end", timeout=30)
    assert ev["eos"], ev
    assert cons.wait(30) == 0, cons.stderr
    assert not os.path.exists(path) and not os.path.exists(lock)
    assert "published" in prod.stderr, prod.stderr
