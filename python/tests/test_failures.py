"""Failures across processes: kill -9 of either side, hostile and truncated segments,
another user's bus, and amendment 8's temporary files and PID-namespace fields."""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import time

import numpy as np
import pytest

import framebus
from conftest import PY, check_accounting, child_env, consume_args, go_stat, wait_for

HB_MS = 100  # framebus capture's heartbeat interval (the default)


def test_kill9_go_producer_then_follow_a_new_one(procs, go_bin, busdir):
    name = "k9"
    cons = procs(consume_args(name, busdir, "--keep-going", "--timeout", "30"))
    cap = procs([go_bin, "capture", "--name", name, "--dir", busdir, "--size", "320x240", "--fps", "100"])
    joined = cons.wait_event(lambda e: e["event"] == "joined")
    frames = []
    for ev in cons.events():
        if ev["event"] == "frame":
            frames.append(ev)
            if len(frames) == 20:
                break
    checks_before = 0
    killed_ns = time.monotonic_ns()
    os.kill(cap.pid, signal.SIGKILL)
    cap.wait()
    gone = None
    for ev in cons.events():
        if ev["event"] == "frame":
            frames.append(ev)  # committed before the kill
        elif ev["event"] == "error":
            gone = ev
            break
    assert gone is not None and gone["type"] == "ProducerGone", gone
    # Within 3 heartbeat intervals, counted in the consumer's own heartbeat timeouts since the
    # frames stopped (each is one liveness check); the clock only bounds it loosely, so that
    # a loaded machine's scheduling delays cannot fail the test.
    assert gone["checks"] - checks_before <= 3, gone
    elapsed_ms = (gone["t_ns"] - killed_ns) / 1e6
    print(f"ProducerGone {elapsed_ms:.0f} ms after kill -9, at liveness check {gone['checks']}")
    assert elapsed_ms < 50 * HB_MS  # only against a hang: the count above is the invariant

    # A new producer takes the name over (generation 2, numbering continued): the same
    # consumer follows it by itself.
    cap2 = procs([go_bin, "capture", "--name", name, "--dir", busdir, "--size", "320x240", "--fps", "100"])
    first_new = None
    for ev in cons.events():
        if ev["event"] == "frame":
            frames.append(ev)
            if ev["generation_changed"]:
                first_new = ev
            if first_new and len(frames) >= 40:
                break
    assert first_new is not None and first_new["generation"] == 2
    cap2.signal(signal.SIGTERM)
    rest = cons.drain()
    assert cons.wait() == 0, cons.stderr
    assert cap2.wait() == 0
    frames += [e for e in rest if e["event"] == "frame"]
    assert rest[-1]["event"] == "end" and rest[-1]["eos"] and rest[-1]["generation"] == 2
    # Amendment 1: across the restart, delivered + dropped still accounts for every frame.
    check_accounting(frames, joined["last_seq"])
    assert sum(1 for f in frames if f["generation_changed"]) == 1


def test_kill9_python_consumer_is_reclaimed_by_python_producer(procs, busdir):
    with framebus.Producer("recl", 16, 16, "GREY", dir=busdir, heartbeat=0.05) as p:
        cons = procs(consume_args("recl", busdir, "--timeout", "30"))
        joined = cons.wait_event(lambda e: e["event"] == "joined")
        assert p.stats().active_consumers == 1
        os.kill(cons.pid, signal.SIGKILL)
        cons.wait()
        wait_for(lambda: p.stats().consumers_reclaimed == 1, 10, "the entry reclaimed")
        assert p.stats().active_consumers == 0
        assert entry_word(p.path, joined["entry"], 64) == 0  # the dead consumer's pidns cleared
        # The entry is free again: a new consumer gets it.
        with framebus.Consumer("recl", dir=busdir) as c:
            assert c.entry == joined["entry"]


def test_kill9_python_consumer_is_reclaimed_by_go_producer(procs, go_bin, busdir):
    cap = procs([go_bin, "capture", "--name", "reclgo", "--dir", busdir, "--size", "64x48", "--fps", "30"])
    cons = procs(consume_args("reclgo", busdir, "--timeout", "30"))
    joined = cons.wait_event(lambda e: e["event"] == "joined")
    cons.wait_event(lambda e: e["event"] == "frame")
    # framebus stat shows the Python consumer like any other.
    st = go_stat(go_bin, "reclgo", busdir)
    mine = [e for e in st["consumers"] if e["pid"] == cons.pid]
    assert len(mine) == 1 and mine[0]["state"] == 2 and mine[0]["alive"] is True, st["consumers"]
    assert mine[0]["index"] == joined["entry"] and mine[0]["delivered"] >= 1
    os.kill(cons.pid, signal.SIGKILL)
    cons.wait()

    def reclaimed():
        s = go_stat(go_bin, "reclgo", busdir)
        return s["consumers_reclaimed"] >= 1 and not [e for e in s["consumers"] if e["pid"] == cons.pid]

    wait_for(reclaimed, 10, "the Go producer reclaiming the entry", interval=0.05)
    cap.signal(signal.SIGTERM)
    assert cap.wait() == 0


def test_interpreter_exit_leaves_the_table(procs, busdir):
    # A long heartbeat: a reclaim cannot happen before we look, so a free entry means the
    # consumer left by itself.
    with framebus.Producer("atexit", 16, 16, "GREY", dir=busdir, heartbeat=30) as p:
        cons = procs(consume_args("atexit", busdir, "--exit-after-join"))
        cons.wait_event(lambda e: e["event"] == "joined")
        assert cons.wait() == 0
        st = p.stats()
        assert st.active_consumers == 0 and st.consumers_reclaimed == 0
        assert entry_word(p.path, 0, 64) == 0 and entry_word(p.path, 0, 0, 4) == 0  # pidns, state


def entry_word(path: str, index: int, off: int, size: int = 8) -> int:
    with open(path, "rb") as f:
        b = f.read(65536)
    cto = struct.unpack_from("<Q", b, 224)[0]
    return int.from_bytes(b[cto + 128 * index + off:cto + 128 * index + off + size], "little")


def test_stat_shows_python_consumer_fields(procs, go_bin, busdir):
    with framebus.Producer("pyst", 16, 16, "GREY", dir=busdir) as p:
        cons = procs(consume_args("pyst", busdir, "--timeout", "30"))
        joined = cons.wait_event(lambda e: e["event"] == "joined")
        for i in range(5):
            p.publish(np.full((16, 16), i, np.uint8))
            cons.wait_event(lambda e: e["event"] == "frame")
        st = go_stat(go_bin, "pyst", busdir)
        (e,) = st["consumers"]
        assert (e["pid"], e["index"], e["state"], e["alive"]) == (cons.pid, joined["entry"], 2, True)
        assert e["delivered"] + e["dropped"] == 5 and e["last_seq"] == 5 and e["heartbeat_ns"] > 0
        # Amendment 8: the entry's pidns (offset 64) and the header's producer_pidns (248).
        with open(p.path, "rb") as f:
            b = f.read(65536)
        cto = struct.unpack_from("<Q", b, 224)[0]
        assert struct.unpack_from("<Q", b, 248)[0] == os.stat("/proc/self/ns/pid").st_ino
        assert struct.unpack_from("<Q", b, cto + 128 * e["index"] + 64)[0] == joined["pidns"]


# ---- hostile segments ------------------------------------------------------------------

def make_bus_file(busdir: str, name: str) -> bytes:
    """The bytes of a real segment (a closed producer's file, kept)."""
    with framebus.Producer(name, 64, 48, "RGBA", dir=busdir) as p:
        p.publish(np.zeros((48, 64, 4), np.uint8))
        with open(p.path, "rb") as f:
            data = f.read()
    return data


def write_bus(busdir: str, name: str, data: bytes) -> str:
    path = os.path.join(busdir, "framebus." + name)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)
    return path


def test_version_2_header(busdir):
    data = bytearray(make_bus_file(busdir, "tmpl"))
    struct.pack_into("<H", data, 4, 2)
    path = write_bus(busdir, "v2", bytes(data))
    for i in range(2):
        with pytest.raises(framebus.VersionMismatch) as ei:
            framebus.Consumer("v2", dir=busdir)
        assert (ei.value.got, ei.value.want) == (2, 1)
        with open(path, "rb") as f:
            assert struct.unpack_from("<Q", f.read(64), 56)[0] == i + 1  # version_mismatch_count


@pytest.mark.parametrize("size,field", [(0, "file size"), (300, "file size"), (100_000, "total_size")])
def test_truncated_file(busdir, size, field):
    data = make_bus_file(busdir, "tmpl")
    write_bus(busdir, "trunc", data[:size])
    with pytest.raises(framebus.CorruptSegment) as ei:
        framebus.Consumer("trunc", dir=busdir)
    assert ei.value.field == field and ei.value.value == (size if field == "file size" else len(data))


def test_wrong_magic(busdir):
    data = bytearray(make_bus_file(busdir, "tmpl"))
    data[0:4] = b"JUNK"
    write_bus(busdir, "magic", bytes(data))
    with pytest.raises(framebus.BadMagic) as ei:
        framebus.Consumer("magic", dir=busdir)
    assert isinstance(ei.value, framebus.CorruptSegment)
    assert ei.value.field == "magic" and ei.value.value == struct.unpack("<I", b"JUNK")[0]


def test_unsafe_paths(busdir):
    target = write_bus(busdir, "real", make_bus_file(busdir, "tmpl"))
    os.symlink(target, os.path.join(busdir, "framebus.link"))
    os.mkdir(os.path.join(busdir, "framebus.adir"))
    for name in ("link", "adir"):
        with pytest.raises(framebus.UnsafePath):
            framebus.Consumer(name, dir=busdir)
        with pytest.raises(framebus.UnsafePath):
            framebus.Producer(name, 16, 16, dir=busdir)
    assert os.path.islink(os.path.join(busdir, "framebus.link"))


def test_hostile_headers_never_crash(busdir):
    """Random scribbles over a valid header, in a child process (a crash would show as a
    signal): every open is a success or a framebus.Error."""
    data = make_bus_file(busdir, "tmpl")
    write_bus(busdir, "template", data)
    script = r'''
import os, random, struct, sys, framebus
d = sys.argv[1]
data = open(os.path.join(d, "framebus.template"), "rb").read()
rng = random.Random(14)
kinds = {}
for i in range(400):
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        off = rng.choice([rng.randrange(0, 512), rng.randrange(0, 330) & ~7])
        width = rng.choice([1, 4, 8])
        val = rng.choice([0, 1, 2, 3, 0xFF, 0xFFFFFFFF, rng.getrandbits(64), len(b), len(b) * 2, 65536])
        b[off:off + width] = (val & ((1 << (8 * width)) - 1)).to_bytes(width, "little")
    if rng.random() < 0.2:
        b = b[:rng.randrange(0, len(b))]
    with open(os.path.join(d, "framebus.fz"), "wb") as f:
        f.write(b)
    try:
        with framebus.Consumer("fz", dir=d) as c:
            try:
                c.next(timeout=0.001)
            except framebus.Error as e:
                kinds[type(e).__name__] = kinds.get(type(e).__name__, 0) + 1
        kinds["opened"] = kinds.get("opened", 0) + 1
    except framebus.Error as e:
        kinds[type(e).__name__] = kinds.get(type(e).__name__, 0) + 1
print(sorted(kinds.items()))
'''
    r = subprocess.run([PY, "-c", script, busdir], capture_output=True, text=True, timeout=120, env=child_env())
    assert r.returncode == 0, (r.returncode, r.stderr[-3000:])
    print(r.stdout)
    assert "CorruptSegment" in r.stdout


def test_another_users_0600_bus(procs, busdir):
    if os.geteuid() != 0:
        pytest.skip("needs root to make a bus of another user")
    try:
        import pwd

        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody")
    os.chmod(busdir, 0o755)  # the directory lets nobody in; the file's mode is what refuses
    with framebus.Producer("mine", 16, 16, "GREY", dir=busdir) as p:
        assert os.stat(p.path).st_mode & 0o777 == 0o600
        cons = procs(consume_args("mine", busdir, "--timeout", "0"), user=nobody.pw_uid, group=nobody.pw_gid)
        ev = cons.wait_event(lambda e: e["event"] == "error")
        assert cons.wait() == 3
        assert ev["type"] == "PermissionDenied" and ev["isinstance_error"], ev
        assert ev["path"] == p.path and ev["mode"] == 0o600 and ev["uid"] == 0
        assert p.stats().active_consumers == 0


def test_truncated_under_live_mapping(procs, busdir):
    """A segment truncated (from outside) while a consumer sleeps on it: the consumer touches
    nothing of the mapping after its wait without first checking the file's size (no
    SIGBUS), the producer publishes a new generation, the consumer follows it.

    The truncation is made while the consumer is known to sleep in the futex (counted in
    wake_waiters, then 0.2 s more) and a heartbeat interval (1 s) before it wakes: a
    truncation during a Python consumer's read itself (microseconds per frame) is the
    SIGBUS that CPython cannot catch (python/README.md, "Truncated files")."""
    with framebus.Producer("cut", 64, 48, "RGBA", dir=busdir, heartbeat=1.0) as p:
        cons = procs(consume_args("cut", busdir, "--keep-going", "--timeout", "30"))
        cons.wait_event(lambda e: e["event"] == "joined")
        for i in range(3):
            p.publish(np.full((48, 64, 4), i, np.uint8))
            cons.wait_event(lambda e: e["event"] == "frame")
        fd = os.open(p.path, os.O_RDONLY)
        try:
            wait_for(lambda: struct.unpack("<I", os.pread(fd, 4, 324))[0] == 1, 10, "the consumer asleep")
        finally:
            os.close(fd)
        time.sleep(0.2)
        os.truncate(p.path, 0)
        wait_for(lambda: p.generation == 2, 10, "the producer's new generation")
        ev = None
        for i in range(300):
            p.publish(np.full((48, 64, 4), 10 + i % 100, np.uint8))
            time.sleep(0.01)
            if any('"generation": 2' in x for x in cons.lines):
                break
        ev = cons.wait_event(lambda e: e["event"] == "frame" and e["generation"] == 2, timeout=30)
        assert ev["generation_changed"] and ev["seq"] >= 4
    rest = cons.drain()
    assert cons.wait() == 0, cons.stderr  # ended by the end of stream, not by a signal
    assert rest[-1]["event"] == "end" and rest[-1]["eos"]


# ---- amendment 8 -----------------------------------------------------------------------

def test_abandoned_temporaries_are_collected_live_ones_kept(procs, busdir):
    name = "tmps"
    dead = os.path.join(busdir, f"framebus.{name}.tmp-999999")
    with open(dead, "wb") as f:
        f.write(b"left by a crashed creator")
    live = os.path.join(busdir, f"framebus.{name}.tmp-{os.getpid()}")
    other = os.path.join(busdir, "framebus.other.tmp-999998")  # another bus's: not ours to touch
    with open(other, "wb") as f:
        f.write(b"x")
    # A creation in progress: another process holds the write lock on byte 0 (maybe with
    # our pid number, from another PID namespace): never removed.
    holder = procs([PY, "-c", f'''
import fcntl, os, struct, sys, time
fd = os.open({live!r}, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("@hhqqi4x", fcntl.F_WRLCK, 0, 0, 1, 0))
print("locked", flush=True)
time.sleep(60)
'''])
    assert holder.next_line() == "locked"
    assert framebus.collect_abandoned(name, busdir) == 1
    assert not os.path.exists(dead) and os.path.exists(live) and os.path.exists(other)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    # Its creator gone, the lock is free: now it is abandoned, and a producer's creation
    # removes it (before its free-space check).
    with framebus.Producer(name, 16, 16, "GREY", dir=busdir) as p:
        assert not os.path.exists(live) and p.generation == 1
    assert os.listdir(busdir) == ["framebus.other.tmp-999998"]


def test_consumer_in_another_pid_namespace(procs, busdir):
    """Amendment 8's pidns fields: a consumer in a new PID namespace (pid 1 there) records its
    namespace's inode; the liveness locks work across namespaces all the same."""
    unshare = shutil.which("unshare")
    if os.geteuid() != 0 or unshare is None:
        pytest.skip("needs root and unshare")
    probe = subprocess.run([unshare, "--pid", "--fork", "--mount-proc", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"unshare --pid not permitted here: {probe.stderr.decode()[:200]}")
    with framebus.Producer("ns", 16, 16, "GREY", dir=busdir, heartbeat=0.05) as p:
        cons = procs([unshare, "--pid", "--fork", "--mount-proc", "--kill-child", *consume_args("ns", busdir, "--timeout", "30")])
        joined = cons.wait_event(lambda e: e["event"] == "joined")
        assert joined["pid"] == 1 and joined["pidns"] != os.stat("/proc/self/ns/pid").st_ino
        with open(p.path, "rb") as f:
            b = f.read(65536)
        cto = struct.unpack_from("<Q", b, 224)[0]
        e = cto + 128 * joined["entry"]
        assert struct.unpack_from("<I", b, e + 4)[0] == 1  # pid, as its namespace numbers it
        assert struct.unpack_from("<Q", b, e + 64)[0] == joined["pidns"]
        p.publish(np.zeros((16, 16), np.uint8))
        cons.wait_event(lambda e: e["event"] == "frame")
        os.kill(cons.pid, signal.SIGKILL)  # --kill-child takes the consumer with it
        cons.wait()
        wait_for(lambda: p.stats().consumers_reclaimed == 1, 10, "the entry reclaimed")


def test_python_producer_takes_over_a_dead_go_producer(procs, go_bin, busdir):
    cap = procs([go_bin, "capture", "--name", "take", "--dir", busdir, "--size", "64x48", "--fps", "100"])
    cons = procs(consume_args("take", busdir, "--keep-going", "--timeout", "30"))
    joined = cons.wait_event(lambda e: e["event"] == "joined")
    cons.wait_event(lambda e: e["event"] == "frame" and e["seq"] >= 10)
    os.kill(cap.pid, signal.SIGKILL)
    cap.wait()
    cons.wait_event(lambda e: e["event"] == "error" and e["type"] == "ProducerGone")
    with framebus.Producer("take", 64, 48, "RGBA", dir=busdir) as p:
        assert p.generation == 2 and p.last_seq >= 10  # the dead producer's numbering, continued
        first = p.last_seq + 1
        for i in range(50):
            p.publish(np.zeros((48, 64, 4), np.uint8))
            time.sleep(0.005)
        ev = cons.wait_event(lambda e: e["event"] == "frame" and e["generation"] == 2)
        assert ev["generation_changed"] and ev["seq"] >= first
    rest = cons.drain()
    assert cons.wait() == 0 and rest[-1]["eos"]
    frames = [e for e in cons.lines if '"frame"' in e]
    import json as _json

    check_accounting([_json.loads(x) for x in frames], joined["last_seq"])


def test_go_producer_takes_over_a_dead_python_producer(procs, go_bin, busdir):
    pub = procs([PY, "-m", "framebus", "pattern", "back", "--dir", busdir, "--size", "64x48", "--fps", "100"])
    cons = procs(consume_args("back", busdir, "--keep-going", "--timeout", "30"))
    cons.wait_event(lambda e: e["event"] == "frame" and e["seq"] >= 10)
    os.kill(pub.pid, signal.SIGKILL)
    pub.wait()
    cons.wait_event(lambda e: e["event"] == "error" and e["type"] == "ProducerGone")
    cap = procs([go_bin, "capture", "--name", "back", "--dir", busdir, "--size", "64x48", "--fps", "100"])
    ev = cons.wait_event(lambda e: e["event"] == "frame" and e["generation"] == 2)
    assert ev["generation_changed"] and ev["seq"] > 10
    st = go_stat(go_bin, "back", busdir)
    assert st["generation"] == 2 and st["producer_pid"] == cap.pid
    cap.signal(signal.SIGTERM)
    assert cap.wait() == 0
    assert cons.drain()[-1]["eos"] and cons.wait() == 0


def test_ctrl_c_while_waiting_leaves_the_table(procs, busdir):
    """SIGINT interrupts the futex wait (KeyboardInterrupt at once, not at the next
    heartbeat), and the interpreter's exit gives the entry back."""
    with framebus.Producer("sigint", 16, 16, "GREY", dir=busdir, heartbeat=30) as p:
        cons = procs(consume_args("sigint", busdir, "--timeout", "60"))
        cons.wait_event(lambda e: e["event"] == "joined")
        fd = os.open(p.path, os.O_RDONLY)
        try:
            wait_for(lambda: struct.unpack("<I", os.pread(fd, 4, 324))[0] == 1, 10, "the consumer asleep")
            t0 = time.monotonic()
            os.kill(cons.pid, signal.SIGINT)
            rc = cons.wait(20)
            took = time.monotonic() - t0
            assert rc != 0 and "KeyboardInterrupt" in cons.stderr
            assert took < 10  # the heartbeat is 30 s: the signal, not a timeout, ended the wait
            st = p.stats()
            assert st.active_consumers == 0 and st.consumers_reclaimed == 0
            assert struct.unpack("<I", os.pread(fd, 4, 324))[0] == 0  # wake_waiters back to 0
        finally:
            os.close(fd)


def test_producer_closes_at_interpreter_exit(procs, busdir):
    """A Python producer whose program ends without close(): the interpreter's exit closes
    the bus cleanly, so its consumers see the end of stream, not a dead producer."""
    cons = procs(consume_args("pyexit", busdir, "--timeout", "30"))
    pub = procs([PY, "-c", f'''
import time, numpy as np, framebus
p = framebus.Producer("pyexit", 16, 16, "GREY", dir={busdir!r})
end = time.monotonic() + 30
while p.stats().active_consumers == 0 and time.monotonic() < end:
    time.sleep(0.01)
for i in range(5):
    p.publish(np.full((16, 16), i, np.uint8))
    time.sleep(0.01)
'''])
    assert pub.wait(30) == 0, pub.stderr
    evs = cons.drain()
    assert cons.wait() == 0
    errors = [e for e in evs if e["event"] == "error"]
    assert [e["type"] for e in errors] == ["EndOfStream"] and evs[-1]["eos"]
    assert os.listdir(busdir) == []
