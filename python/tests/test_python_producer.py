"""The Python producer feeding the Go consumer (framebus tail), the C consumer written
from the header alone, and Python consumers."""

from __future__ import annotations

import json
import logging
import os
import struct
import time

import numpy as np
import pytest

import framebus
from conftest import check_accounting, consume_args, go_stat, wait_for

FRAMES = 300


def stamped(p: framebus.Producer, size: int) -> np.ndarray:
    """A frame whose 8-byte words are (seq << 32 | word index), as cconsumer_test.go makes them."""
    seq = p.last_seq + 1
    w = np.arange(size // 8, dtype=np.uint64) | np.uint64(seq << 32)
    return w.view(np.uint8)


def entry_last_seq(path: str, index: int = 0) -> int:
    """The consumer entry's last_seq, read with pread (the test's own view of the table)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        b = os.pread(fd, 65536, 0)
    finally:
        os.close(fd)
    cto = struct.unpack_from("<Q", b, 224)[0]
    return struct.unpack_from("<Q", b, cto + 128 * index + 24)[0]


def lock_step(p: framebus.Producer, n: int) -> dict:
    """Frames published one at a time, each only once the consumer (entry 0) has taken the
    previous one. The bus's heartbeat is 5 s: a consumer that was not woken would take each
    frame at its next timeout, seconds later, so a 2 s bound per frame proves the wake."""
    want = {}
    size = p.format.frame_size
    for _ in range(n):
        frame = stamped(p, size)
        seq = p.publish(frame, user_meta=b"py-test")
        want[seq] = bytes(frame[:8]).hex()
        wait_for(lambda: entry_last_seq(p.path) >= seq, 2.0, f"frame {seq} taken (woken)", interval=0.001)
    return want


def publish_stamped(p: framebus.Producer, n: int, zero_copy: bool) -> dict:
    want = {}
    size = p.format.frame_size
    for i in range(n):
        frame = stamped(p, size)
        if zero_copy:
            with p.frame(user_meta=b"py-test") as buf:
                np.copyto(buf, frame.reshape(buf.shape))
            seq = p.last_seq
        else:
            seq = p.publish(frame, user_meta=b"py-test")
        want[seq] = bytes(frame[:8]).hex()
        if i % 2 == 0:
            time.sleep(0.002)  # let consumers fall asleep on the futex, so the wake path runs too
    return want


@pytest.mark.parametrize("shared_wake", [True, False])
def test_go_tail_reads_python_producer(procs, go_bin, busdir, shared_wake):
    with framebus.Producer("pytail", 320, 240, "RGBA", checksum=True, dir=busdir, heartbeat=5.0,
                           shared_wake=shared_wake) as p:
        tail = procs([go_bin, "tail", "pytail", "--dir", busdir, "--json", "--timeout", "20s"])
        wait_for(lambda: p.stats().active_consumers == 1, 20, "the Go consumer joining")
        publish_stamped(p, FRAMES - 20, zero_copy=False)
        lock_step(p, 20)
    assert tail.wait() == 0, tail.stderr  # a checksum mismatch would be an error (exit 1)
    lines = [json.loads(x) for x in tail.lines if x.startswith("{")]
    frames = [x for x in lines if "seq" in x]
    closed = lines[-1]
    assert closed["event"] == "closed"
    assert closed["frames"] == len(frames) and closed["frames"] + closed["dropped"] == FRAMES
    check_accounting(frames, 0)
    assert all(x["bytes"] == 320 * 240 * 4 and x["generation"] == 1 for x in frames)
    assert [x["seq"] for x in frames[-20:]] == list(range(FRAMES - 19, FRAMES + 1))  # the lock-step ones


@pytest.mark.parametrize("zero_copy", [False, True])
def test_c_consumer_reads_python_producer(procs, c_consumer, busdir, zero_copy):
    """consumer.c knows only section 5's per-entry semaphore: the Python producer must
    wake it through its entry as well as through the shared word."""
    with framebus.Producer("pyc", 320, 240, "RGBA", checksum=True, dir=busdir, heartbeat=5.0) as p:
        c = procs([c_consumer, p.path, p.lock_path, "100000", "20000"])
        wait_for(lambda: p.stats().active_consumers == 1, 20, "the C consumer joining")
        want = publish_stamped(p, FRAMES - 20, zero_copy)
        want.update(lock_step(p, 20))
    assert c.wait(30) == 0, c.stderr
    summary = [x for x in c.lines if x.startswith("summary")][0]
    kv = dict(f.split("=") for f in summary.split()[1:])
    delivered = 0
    last = 0
    for line in c.lines:
        if not line.startswith("frame "):
            continue
        _, seq, n, ok, first, ml = line.split()
        seq = int(seq)
        assert seq > last
        last = seq
        assert int(n) == 320 * 240 * 4 and ok == "1" and int(ml) == len("py-test")
        assert first == want[seq], f"frame {seq}: first bytes {first}, want {want[seq]}"
        delivered += 1
    assert int(kv["delivered"]) == delivered and kv["crc_bad"] == "0" and kv["eos"] == "1"
    assert delivered + int(kv["dropped"]) == FRAMES
    assert last == FRAMES and delivered >= 20  # the lock-step frames, each taken after a wake


def test_python_to_python(procs, busdir):
    with framebus.Producer("pypy", 64, 48, "GREY", checksum=True, dir=busdir) as p:
        cons = procs(consume_args("pypy", busdir, "--timeout", "20"))
        joined = cons.wait_event(lambda e: e["event"] == "joined")
        assert joined["format"] == "GREY" and joined["shape"] == [48, 64]
        for i in range(200):
            with p.frame(user_meta=b"m%d" % i) as buf:
                buf[...] = i % 256
            if i % 3 == 0:
                time.sleep(0.001)
        # Then in lock-step: the next frame only once the consumer has reported this one, so
        # these views cannot have been overwritten while it used them.
        for i in range(200, 205):
            with p.frame(user_meta=b"m%d" % i) as buf:
                buf[...] = i % 256
            wait_for(lambda: any('"seq": %d,' % (i + 1) in x for x in cons.lines), 30, "the frame reported")
    assert cons.wait() == 0, cons.stderr
    evs = [json.loads(x) for x in cons.lines]
    frames = [e for e in evs if e["event"] == "frame"]
    check_accounting(frames, joined["last_seq"])
    end = evs[-1]
    assert end["event"] == "end" and end["eos"]
    assert len(frames) + sum(f["dropped"] for f in frames) == 205
    for f in frames:
        assert f["meta"] == "m%d" % (f["seq"] - 1)  # copied under the sequence lock: always right
        if f["valid"]:  # the zero-copy view: right while valid() says so
            assert f["first8"] == bytes([(f["seq"] - 1) % 256] * 8).hex()
    assert [f["seq"] for f in frames[-5:]] == [201, 202, 203, 204, 205]
    assert all(f["valid"] for f in frames[-5:])


def test_python_consumer_on_per_entry_semaphore(procs, busdir):
    """A bus without amendment 7's word: the consumer sleeps on its entry's semaphore."""
    with framebus.Producer("pysem", 32, 32, "RGBA", dir=busdir, shared_wake=False) as p:
        cons = procs(consume_args("pysem", busdir, "--timeout", "20"))
        joined = cons.wait_event(lambda e: e["event"] == "joined")
        assert not joined["shared_wake"]
        for i in range(100):
            p.publish(np.full((32, 32, 4), i, np.uint8))
            time.sleep(0.002)
    evs = cons.drain()
    assert cons.wait() == 0
    frames = [e for e in evs if e["event"] == "frame"]
    check_accounting(frames, joined["last_seq"])
    assert len(frames) >= 25 and evs[-1]["eos"]


def test_frame_loan_aborts_on_exception(busdir):
    with framebus.Producer("loan", 16, 16, "GREY", dir=busdir) as p, \
            framebus.Consumer("loan", dir=busdir) as c:
        p.publish(np.full((16, 16), 7, np.uint8))
        with pytest.raises(RuntimeError):
            with p.frame() as buf:
                buf[...] = 9
                raise RuntimeError("camera failed")
        f = c.next(timeout=5)
        assert f.seq == 1 and int(f.array[0, 0]) == 7  # the aborted frame was never published
        with p.frame() as buf:
            buf[...] = 11
        f = c.next(timeout=5)
        assert f.seq == 2 and int(f.array[0, 0]) == 11 and f.dropped == 0


def test_generation_change_followed(busdir):
    with framebus.Producer("regen", 32, 24, "RGBA", dir=busdir) as p, \
            framebus.Consumer("regen", dir=busdir) as c:
        p.publish(np.zeros((24, 32, 4), np.uint8))
        f = c.next(timeout=5)
        assert f.generation == 1 and not f.generation_changed
        p.reconfigure(64, 48, "NV12")
        p.publish(np.zeros(64 * 48 * 3 // 2, np.uint8))
        f = c.next(timeout=5)
        assert f.generation == 2 and f.generation_changed and f.seq == 2 and f.dropped == 0
        assert f.array.shape == (72, 64) and [x.shape for x in f.planes] == [(48, 64), (24, 32, 2)]
        assert c.format.name == "NV12"


def test_second_producer_is_busy(busdir):
    with framebus.Producer("busy", 16, 16, "GREY", dir=busdir):
        with pytest.raises(framebus.Busy) as ei:
            framebus.Producer("busy", 16, 16, "GREY", dir=busdir)
        assert ei.value.pid == os.getpid()


def test_table_full_timeout_short_buffer(busdir):
    with framebus.Producer("full", 16, 16, "GREY", dir=busdir, consumers=1) as p:
        with framebus.Consumer("full", dir=busdir) as c:
            with pytest.raises(framebus.TableFull) as ei:
                framebus.Consumer("full", dir=busdir)
            assert ei.value.capacity == 1
            with pytest.raises(framebus.Timeout):
                c.next(timeout=0.15)
            with pytest.raises(TimeoutError):  # also the built-in
                c.next(timeout=0.05)
            p.publish(bytes(range(256)))
            with pytest.raises(framebus.BufferTooSmall):
                c.read_into(bytearray(100), timeout=5)
            buf = np.empty((16, 16), np.uint8)
            f = c.read_into(buf, timeout=5)  # the frame was not consumed by the refusal
            assert f.seq == 1 and f.valid() and f.array.flags.writeable
            assert np.shares_memory(f.array, buf) and bytes(buf.reshape(-1)) == bytes(range(256))


def test_not_found_and_bad_names(busdir):
    t0 = time.monotonic()
    with pytest.raises(framebus.NotFound):
        framebus.Consumer("nobody-here", timeout=0.2, dir=busdir)
    assert time.monotonic() - t0 >= 0.2
    for bad in ["", "a/b", "..", ".hidden", "x.lock", "a.tmp-1", "n\0ul", "é", "x" * 65]:
        with pytest.raises(framebus.BadName):
            framebus.Consumer(bad, dir=busdir)
        with pytest.raises(ValueError):
            framebus.Producer(bad, 16, 16, dir=busdir)
    assert os.listdir(busdir) == []


def test_checksum_mismatch_is_typed_and_counted(busdir, monkeypatch):
    import framebus._commit as prod

    with framebus.Producer("crc", 32, 32, "GREY", checksum=True, dir=busdir) as p, \
            framebus.Consumer("crc", dir=busdir) as c:
        real = prod.crc32c
        monkeypatch.setattr(prod, "crc32c", lambda b: real(b) ^ 1)  # a frame corrupted in memory
        p.publish(np.full((32, 32), 3, np.uint8))
        monkeypatch.setattr(prod, "crc32c", real)
        with pytest.raises(framebus.ChecksumMismatch) as ei:
            c.next(timeout=5)
        assert ei.value.seq == 1
        p.publish(np.full((32, 32), 4, np.uint8))
        f = c.next(timeout=5)
        assert f.seq == 2 and f.dropped == 0
        s = c.stats()
        assert (s.delivered, s.dropped) == (1, 1)  # the bad frame is consumed and counted as dropped


def test_rename_enoent_starts_the_creation_again(busdir, monkeypatch, caplog):
    """Amendment 8: a temporary file that vanished before its rename is said and retried."""
    import framebus._generation as prod

    real = os.rename
    calls = []

    def vanishing(src, dst):
        calls.append(src)
        if len(calls) == 1:
            os.unlink(src)  # removed from outside between the creation and the rename
        return real(src, dst)

    monkeypatch.setattr(prod.os, "rename", vanishing)
    with caplog.at_level(logging.WARNING, logger="framebus"):
        with framebus.Producer("vanish", 16, 16, "GREY", dir=busdir) as p:
            assert len(calls) == 2 and p.generation == 1
            with framebus.Consumer("vanish", dir=busdir) as c:
                p.publish(np.zeros((16, 16), np.uint8))
                assert c.next(timeout=5).seq == 1
    assert any("vanished before its rename" in r.getMessage() for r in caplog.records)
    assert os.listdir(busdir) == []


def test_stat_sees_python_producer(go_bin, busdir):
    with framebus.Producer("pystat", 320, 240, "NV12", fps=30, checksum=True, dir=busdir) as p:
        p.publish(np.zeros(320 * 240 * 3 // 2, np.uint8))
        st = go_stat(go_bin, "pystat", busdir)
        h = st.get("header", st)
        assert st["producer_alive"] is True
        assert h["producer_pid"] == os.getpid() and h["generation"] == 1 and h["last_seq"] == 1
        assert h["width"] == 320 and h["height"] == 240
