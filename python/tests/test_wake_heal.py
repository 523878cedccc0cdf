"""Amendment 11 (wake words heal): a waiters word forged to 0 or to 2^32 - 1 while a Python
consumer sleeps costs it one missed wake at most; it is back at the full rate within two
heartbeat intervals, on the shared wake word (wake_waiters) and on its entry's semaphore
(waiters)."""

from __future__ import annotations

import os
import struct
import threading
import time

import numpy as np
import pytest

import framebus
from framebus import _atomics as A
from conftest import consume_args, wait_for

HB = 0.5  # s: a consumer woken only by its timeouts gets 2 frames a second
RATE = 100  # frames a second published


def entry_offset(path: str, entry: int) -> int:
    with open(path, "rb") as f:
        h = f.read(512)
    return struct.unpack_from("<Q", h, 224)[0] + entry * 128


@pytest.mark.parametrize("forged", [0, 0xFFFFFFFF], ids=["zero", "max"])
@pytest.mark.parametrize("shared", [True, False], ids=["wake_waiters", "entry-waiters"])
def test_forged_wake_word_heals(procs, busdir, shared, forged):
    name = f"heal{int(shared)}{forged & 1}"
    with framebus.Producer(name, 64, 48, "RGBA", dir=busdir, heartbeat=HB, shared_wake=shared) as p:
        stop = threading.Event()

        def publish():
            i = 0
            t0 = time.monotonic()
            while not stop.is_set():
                p.publish(np.full((48, 64, 4), i % 256, np.uint8))
                i += 1
                time.sleep(max(0.0, t0 + i / RATE - time.monotonic()))

        t = threading.Thread(target=publish, daemon=True)
        t.start()
        try:
            cons = procs(consume_args(name, busdir, "--keep-going", "--timeout", "60"))
            joined = cons.wait_event(lambda e: e["event"] == "joined", timeout=30)
            arrivals = []

            def pump():
                for ev in cons.events(60):
                    if ev["event"] == "frame":
                        arrivals.append(time.monotonic())

            threading.Thread(target=pump, daemon=True).start()
            wait_for(lambda: len(arrivals) > 20, 30, "frames before the forgery")
            off = 324 if shared else entry_offset(p.path, joined["entry"]) + 12
            addr = p._seg.base + off  # the producer's own mapping, in this process
            # The damaging forgeries: 0 while the consumer sleeps (counted: 1), 2^32 - 1 while it
            # is awake (0), which its next += 1 wraps to 0. Either way the producer then reads no
            # sleeper while it sleeps. A CAS from the state wanted, tried until it lands.
            expect = 1 if forged == 0 else 0
            end = time.monotonic() + 10
            while not A.cas32(addr, expect, forged):
                assert time.monotonic() < end, "the word never had the value to forge from"
            t_forge = time.monotonic()
            time.sleep(2 * HB + 1.5)
        finally:
            stop.set()
            t.join()

    def count(a, b):
        return sum(1 for x in arrivals if t_forge + a <= x < t_forge + b)

    # From two heartbeat intervals after the forgery on: the full rate (100 a second; at
    # least 40 asked for on a loaded machine), not one frame per timeout (2 a second).
    after = count(2 * HB, 2 * HB + 1.0)
    print(f"\nforged {forged:#x} into {'wake_waiters' if shared else 'the entry waiters'}: "
          f"{count(0, 2 * HB)} frames in the {2 * HB:.1f} s after, {after} in the next second")
    assert after >= 40, (after, count(0, 2 * HB))
