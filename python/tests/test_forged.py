"""Amendment 9 (docs/PROTOCOL.md section 7, item 9): forged or torn control words never stop
a Python consumer. A frame is taken only when it is not newer than the header's last_seq;
a frame more than one ahead of it, an ``active`` out of range and impossible ``bytes`` or
``user_meta_len`` are refused and counted, never raised; and a consumer whose last_seq was
moved ahead of the header's re-synchronises at a wait timeout.

test_forged_words_never_stop_a_consumer mirrors the Go test TestForgedWordsNeverStopAConsumer
(framebus/forged_test.go) across processes; test_forged_words_step_by_step checks each rule
on its own, with exact frame numbers and counters."""

from __future__ import annotations

import mmap
import os
import signal
import threading
import time
from typing import List, Optional

import numpy as np
import pytest

import framebus
from framebus import _layout as L
from conftest import PY, wait_for

FAR = 1 << 62  # the forged sequence number of the Go test
REAL = 1 << 40  # any frame number below this is one the producer made


class Forger:
    """A hostile writer: a writable shared mapping of a live segment's control block."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR)
        self.h = L.Header.decode(os.pread(self.fd, L.HEADER_SIZE, 0))
        self.mm = mmap.mmap(self.fd, self.h.payload_offset, flags=mmap.MAP_SHARED,
                            prot=mmap.PROT_READ | mmap.PROT_WRITE)

    def put(self, off: int, v: int, size: int = 8) -> None:
        self.mm[off:off + size] = v.to_bytes(size, "little")

    def get(self, off: int, size: int = 8) -> int:
        return int.from_bytes(self.mm[off:off + size], "little")

    def slot(self, i: int, field: int) -> int:
        return self.h.slot_table_offset + i * L.SLOT_DESC_SIZE + field

    @property
    def active(self) -> int:
        return self.get(L.OFF["active"], 4)

    def close(self) -> None:
        self.mm.close()
        os.close(self.fd)


# The Python producer of the cross-process test, in its own process: a frame every 4 ms on
# the entries' semaphores only (no shared wake word), ended by SIGTERM with a clean close.
PY_PRODUCER = r'''
import signal, sys, time
import numpy as np
import framebus
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
p = framebus.Producer(sys.argv[1], 64, 48, "GREY", dir=sys.argv[2], heartbeat=0.1, shared_wake=False)
print("ready", flush=True)
frame = np.zeros((48, 64), np.uint8)
end = time.monotonic() + 120
while not stop and time.monotonic() < end:
    p.publish(frame)
    time.sleep(0.004)
p.close()
'''


class Reader:
    """A Python consumer reading on a thread of the test's process, as the Go test's
    goroutines do: the time of its last real frame, and what ended it."""

    def __init__(self, name: str, busdir: str) -> None:
        self.c = framebus.Consumer(name, dir=busdir)
        self.frames = 0
        self.forged = 0  # frames delivered with a forged number (frame_seq and last_seq together)
        self.last_real_ns = 0
        self.err: Optional[BaseException] = None
        self.eos = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self) -> None:
        try:
            while True:
                try:
                    f = self.c.next(timeout=10)  # only against a hang: frames come every 4 ms
                except framebus.EndOfStream:
                    self.eos = True
                    return
                self.frames += 1
                if f.seq < REAL:
                    self.last_real_ns = time.monotonic_ns()
                else:
                    self.forged += 1
        except BaseException as e:  # any exception ends the stream for this consumer: a failure
            self.err = e


@pytest.mark.parametrize("producer", ["go", "python"])
def test_forged_words_never_stop_a_consumer(procs, go_bin, busdir, producer):
    """While a hostile writer forges, for bursts of 100 ms, a slot's frame_seq far ahead, the
    header's last_seq (while a consumer joins), the active index, a slot's bytes, and a
    slot's frame_seq and last_seq together, every consumer delivers real frames again
    within 3 heartbeat intervals of the end of each burst, never raises, and the refusals
    and re-synchronisations are counted. The Go producer (framebus capture) has the shared
    wake word of amendment 7; the Python one is run without it, so the per-entry semaphore
    path is covered too: on both, wakes keep coming during a burst, and the liveness look
    (where the re-synchronisation is) must still come once a heartbeat interval."""
    name = "forge"
    hb_ns = 100_000_000  # framebus capture's heartbeat interval (the default), and PY_PRODUCER's
    if producer == "go":
        prod = procs([go_bin, "capture", "--name", name, "--dir", busdir, "--source", "pattern",
                      "--size", "64x48", "--format", "GREY", "--fps", "250", "--duration", "120s"])
    else:
        prod = procs([PY, "-c", PY_PRODUCER, name, busdir])
        assert prod.next_line() == "ready", prod.stderr
    path = framebus.segment_path(busdir, name)
    wait_for(lambda: os.path.exists(path), 30, "the bus")
    forger = Forger(path)
    readers: List[Reader] = []
    try:
        assert forger.h.slot_count == 2 and forger.h.heartbeat_interval_ms * 1_000_000 == hb_ns
        wait_for(lambda: forger.get(L.OFF["last_seq"]) >= 1, 30, "the first frame")
        readers.append(Reader(name, busdir))

        def resumed(what: str, since: int) -> None:
            deadline = since + 3 * hb_ns
            for r in readers:
                while r.last_real_ns <= since:
                    assert r.err is None, f"{what}: the consumer stopped: {r.err!r}"
                    if time.monotonic_ns() > deadline:
                        pytest.fail(f"{what}: no real frame within 3 heartbeat intervals of the end of the "
                                    f"burst (refusals: {r.c.refusals()}; producer: {prod.stderr})")
                    time.sleep(0.001)

        def burst(what: str, forge, during=None) -> None:
            end = time.monotonic() + 0.1
            while time.monotonic() < end:
                forge()
                if during is not None:
                    during()
                    during = None
                time.sleep(0.0005)
            resumed(what, time.monotonic_ns())

        resumed("start", time.monotonic_ns())

        def slots_seq() -> None:
            for i in range(2):
                forger.put(forger.slot(i, L.SLOT_FRAME_SEQ), FAR)

        def slots_bytes() -> None:
            for i in range(2):
                forger.put(forger.slot(i, L.SLOT_BYTES), 1 << 40)

        def both() -> None:
            forger.put(L.OFF["last_seq"], FAR)
            slots_seq()

        burst("slot frame_seq far ahead", slots_seq)
        burst("header last_seq far ahead while a consumer joins", lambda: forger.put(L.OFF["last_seq"], FAR),
              lambda: readers.append(Reader(name, busdir)))
        burst("active out of range", lambda: forger.put(L.OFF["active"], 7, 4))
        burst("bytes past the slot's capacity", slots_bytes)
        burst("frame_seq and last_seq far ahead together", both)
        resumed("after the bursts", time.monotonic_ns())
    finally:
        forger.close()
        prod.signal(signal.SIGTERM)  # a clean close: every consumer ends at the end of stream
    assert prod.wait(30) == 0, prod.stderr
    refused = resyncs = 0
    for r in readers:
        r.t.join(15)
        assert not r.t.is_alive(), "a consumer did not see the end of stream"
        assert r.err is None, f"a consumer ended with {r.err!r}"
        assert r.eos
        n, rs, why = r.c.refusals()
        st = r.c.stats()
        assert (st.refused, st.resyncs) == (n, rs)
        refused += n
        resyncs += rs
        print(f"consumer: {r.frames} frames ({r.forged} forged), {n} reads refused, {rs} re-synchronisations, "
              f"last: {why}")
        r.c.close()
    print(f"{producer} producer, {len(readers)} consumers: {refused} reads refused, {resyncs} re-synchronisations")
    assert refused > 0 and resyncs > 0, "the forgeries were not seen"


def test_forged_words_step_by_step(busdir):
    """Each rule of amendment 9 on its own, with an in-process producer that publishes only
    when told: the frame numbers delivered, `dropped`, and the counters are exact."""
    frame = np.zeros((16, 16), np.uint8)
    with framebus.Producer("step", 16, 16, "GREY", dir=busdir, heartbeat=0.05) as p:
        f = Forger(p.path)
        try:
            p.publish(frame)
            c = framebus.Consumer("step", dir=busdir)
            assert c.stats().last_seq == 1 and c.refusals() == (0, 0, None)
            assert p.publish(frame) == 2 and c.next(timeout=5).seq == 2

            def refused_once(field: str, before: int) -> None:
                """No frame (a Timeout, the caller's deadline: nothing else is raised), one
                read refused for field, and none more while the slot's lock stays."""
                for _ in range(2):
                    with pytest.raises(framebus.Timeout):
                        c.next(timeout=0.03)
                    n, rs, why = c.refusals()
                    assert (n, rs) == (before + 1, 0) and isinstance(why, framebus.CorruptSegment), why
                    assert why.field == field, why

            # The delivered frame's slot, its frame_seq forged far ahead: refused, not taken.
            f.put(f.slot(f.active, L.SLOT_FRAME_SEQ), FAR)
            refused_once("frame_seq", 0)
            assert c.stats().last_seq == 2 and c.stats().refused == 1
            assert p.publish(frame) == 3
            fr = c.next(timeout=5)
            assert (fr.seq, fr.dropped) == (3, 0)

            # A frame that is committed but not yet flipped (one ahead of last_seq), seen through
            # an active index ahead of the header: not taken, not refused either (its flip and
            # wake follow). The slot is the one refused above: its lock is moved on as a
            # commit moves it, so that it is the one-ahead rule that holds the frame back.
            other = 1 - f.active
            lk = f.slot(other, L.SLOT_LOCK)
            f.put(lk, f.get(lk) + 2)
            f.put(f.slot(other, L.SLOT_FRAME_SEQ), 4)
            f.put(L.OFF["active"], other, 4)
            with pytest.raises(framebus.Timeout):
                c.next(timeout=0.03)
            assert c.refusals()[:2] == (1, 0) and c.stats().last_seq == 3

            # active out of range: refused on every read; the producer's next flip mends it.
            f.put(L.OFF["active"], 7, 4)
            with pytest.raises(framebus.Timeout):
                c.next(timeout=0.03)
            n, _, why = c.refusals()
            assert n >= 2 and why.field == "active" and why.value == 7
            assert p.publish(frame) == 4
            fr = c.next(timeout=5)
            assert (fr.seq, fr.dropped) == (4, 0)

            # Impossible bytes, then user_meta_len, on a new frame: refused (never raised);
            # the next frame is delivered and the refused one counts as dropped.
            for field, off, value, size in (("bytes", L.SLOT_BYTES, 1 << 40, 8),
                                            ("user_meta_len", L.SLOT_USER_META_LEN, L.USER_META_MAX + 1, 4)):
                seq = p.publish(frame)
                f.put(f.slot(f.active, off), value, size)
                before = c.refusals()[0]
                refused_once(field, before)
                assert p.publish(frame) == seq + 1
                fr = c.next(timeout=5)
                assert (fr.seq, fr.dropped) == (seq + 1, 1)
            delivered = c.stats().delivered

            # The header's last_seq forged while a consumer joins: it starts far ahead, finds
            # every real frame "nothing new", and re-synchronises at a wait timeout.
            f.put(L.OFF["last_seq"], FAR)
            c2 = framebus.Consumer("step", dir=busdir)
            assert c2.stats().last_seq == FAR
            seq = p.publish(frame)  # the honest producer stores the real last_seq again
            fr = c.next(timeout=5)  # the first consumer takes it as usual
            assert (fr.seq, fr.dropped) == (seq, 0)
            with pytest.raises(framebus.Timeout):
                c2.next(timeout=0.3)  # six heartbeat intervals: the check comes at each
            n2, rs2, why2 = c2.refusals()
            assert (n2, rs2) == (0, 1) and why2.field == "last_seq" and why2.value == seq
            st2 = c2.stats()
            assert (st2.last_seq, st2.resyncs, st2.delivered) == (seq, 1, 0)
            assert p.publish(frame) == seq + 1
            fr = c2.next(timeout=5)
            assert (fr.seq, fr.dropped) == (seq + 1, 0)
            c2.close()
            fr = c.next(timeout=5)
            assert (fr.seq, fr.dropped) == (seq + 1, 0)
            assert c.stats().delivered == delivered + 2 and c.refusals()[1] == 0

            # frame_seq and last_seq forged together look like an honest frame: taken. The
            # consumer is then ahead of the bus, and re-synchronises at a wait timeout.
            p.publish(frame)
            f.put(L.OFF["last_seq"], FAR)
            f.put(f.slot(f.active, L.SLOT_FRAME_SEQ), FAR)
            assert c.next(timeout=5).seq == FAR
            seq = p.publish(frame)
            with pytest.raises(framebus.Timeout):
                c.next(timeout=0.3)
            n, rs, why = c.refusals()
            assert rs == 1 and why.field == "last_seq" and c.stats().last_seq == seq
            assert p.publish(frame) == seq + 1
            fr = c.next(timeout=5)
            assert (fr.seq, fr.dropped) == (seq + 1, 0)
            c.close()
        finally:
            f.close()
