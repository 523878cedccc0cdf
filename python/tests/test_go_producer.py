"""The Go producer (framebus capture) feeding Python consumers in their own processes."""

from __future__ import annotations

import signal

import pytest

from conftest import check_accounting, consume_args

FRAMES = 3000
SHAPES = {
    "RGBA": ([240, 320, 4], [[240, 320, 4]]),
    "NV12": ([360, 320], [[240, 320], [120, 160, 2]]),
    "GREY": ([240, 320], [[240, 320]]),
}


def run_capture_to_python(procs, go_bin, busdir, fmt, mode):
    name = f"go{fmt.lower()}{mode}"
    cons = procs(consume_args(name, busdir, "--mode", mode, "--check-view", "--timeout", "20"))
    # The consumer waits for the bus; the producer publishes as fast as it can.
    cap = procs([go_bin, "capture", "--name", name, "--dir", busdir, "--source", "pattern", "--size", "320x240",
                 "--format", fmt, "--fps", "0", "--checksum", "--duration", "120s"])
    joined = cons.wait_event(lambda e: e["event"] == "joined", timeout=30)
    frames, errors = [], []
    end = None
    stopped = False
    for ev in cons.events(timeout=60):
        if ev["event"] == "frame":
            frames.append(ev)
            if ev["seq"] >= FRAMES and not stopped:
                cap.signal(signal.SIGTERM)  # once: a clean close, the end-of-stream frame follows
                stopped = True
        elif ev["event"] == "error":
            errors.append(ev)
        elif ev["event"] == "end":
            end = ev
    assert cons.wait() == 0, cons.stderr
    assert cap.wait() == 0, cap.stderr
    return joined, frames, errors, end


@pytest.mark.parametrize("fmt", ["RGBA", "NV12", "GREY"])
@pytest.mark.parametrize("mode", ["next", "copy"])
def test_capture_full_speed(procs, go_bin, busdir, fmt, mode):
    joined, frames, errors, end = run_capture_to_python(procs, go_bin, busdir, fmt, mode)
    assert joined["format"] == fmt and joined["checksums"] and joined["shared_wake"]
    # Only the end of stream: no checksum mismatch, no corrupt frame, no producer-gone.
    assert [e["type"] for e in errors] == ["EndOfStream"], errors
    assert end["eos"]
    assert frames and frames[-1]["seq"] >= FRAMES
    check_accounting(frames, joined["last_seq"])
    # The entry's counters say the same; the end-of-stream frame counts as delivered (amendment 3).
    eos = errors[0]
    assert end["delivered"] == len(frames) + 1
    assert end["delivered"] + end["dropped"] == eos["seq"] - joined["last_seq"]
    shape, planes = SHAPES[fmt]
    for ev in frames:
        assert ev["shape"] == shape and ev["planes"] == planes
        assert ev["writeable"] == (mode == "copy")  # read-only views of the slot; the caller's own buffer
        assert ev["nbytes"] == {"RGBA": 320 * 240 * 4, "NV12": 320 * 240 * 3 // 2, "GREY": 320 * 240}[fmt]
        if mode == "next":
            # The zero-copy contract: a view that is still valid() after use is the frame
            # that was committed (every one checked by its CRC).
            assert ev["view_crc_ok"] or not ev["view_valid"], ev
        else:
            assert ev["copy_crc_ok"], ev


def test_paced_zero_copy_views(procs, go_bin, busdir):
    """At a camera's pace the zero-copy view is valid() after use (a frame period to work
    in), and every view that is valid holds exactly the committed bytes."""
    name = "gopaced"
    cons = procs(consume_args(name, busdir, "--check-view", "--count", "60", "--timeout", "20"))
    cap = procs([go_bin, "capture", "--name", name, "--dir", busdir, "--size", "640x480", "--fps", "100",
                 "--checksum", "--duration", "60s"])
    joined = cons.wait_event(lambda e: e["event"] == "joined", timeout=30)
    evs = cons.drain()
    assert cons.wait() == 0, cons.stderr
    cap.signal(signal.SIGTERM)
    assert cap.wait() == 0, cap.stderr
    frames = [e for e in evs if e["event"] == "frame"]
    assert len(frames) == 60
    check_accounting(frames, joined["last_seq"])
    assert all(e["view_crc_ok"] for e in frames if e["view_valid"])
    assert sum(e["view_valid"] for e in frames) >= 1
