"""examples/python (the motion detector, the VideoCapture publisher) and the numpy/OpenCV/
torch ecosystem on zero-copy frames."""

from __future__ import annotations

import json
import signal
import subprocess

import numpy as np
import pytest

import framebus
from conftest import PY, REPO, check_accounting, consume_args

cv2 = pytest.importorskip("cv2")  # Debian's python3-opencv (make test-python installs it)
EXAMPLES = REPO / "examples" / "python"


def test_motion_detector_on_the_go_pattern(procs, go_bin, busdir):
    det = procs([PY, EXAMPLES / "motion.py", "mot", "--dir", busdir, "--frames", "30", "--timeout", "20"])
    cap = procs([go_bin, "capture", "--name", "mot", "--dir", busdir, "--size", "1280x720", "--fps", "30",
                 "--duration", "60s"])
    assert det.wait(60) == 0, det.stderr
    cap.signal(signal.SIGTERM)
    assert cap.wait() == 0
    lines = [json.loads(x) for x in det.lines]
    assert len(lines) == 30
    last = 0
    for r in lines:
        assert set(r) == {"seq", "generation", "capture_ns", "commit_ns", "result_ns", "width", "height", "detect",
                          "boxes", "latency_capture_us", "latency_commit_us", "dropped"}
        assert r["seq"] > last and r["detect"] == "motion" and (r["width"], r["height"]) == (1280, 720)
        assert r["result_ns"] >= r["commit_ns"] >= r["capture_ns"]
        for b in r["boxes"]:
            assert 0 <= b["x"] < 1280 and 0 <= b["y"] < 720 and b["w"] * b["h"] >= 1280 * 720 // 2000
        last = r["seq"]
    # The pattern has a moving box: after the first (reference) frame, motion is found.
    assert sum(1 for r in lines[1:] if r["boxes"]) >= len(lines) // 2


def test_motion_detector_on_a_still_picture(procs, busdir):
    with framebus.Producer("still", 320, 240, "NV12", dir=busdir) as p:
        det = procs([PY, EXAMPLES / "motion.py", "still", "--dir", busdir, "--frames", "5", "--timeout", "20"])
        frame = np.random.default_rng(3).integers(0, 256, 320 * 240 * 3 // 2, dtype=np.uint8)
        import time

        end = time.monotonic() + 60  # until it has analysed its 5 frames (a loaded machine starts it slowly)
        while det.p.poll() is None and time.monotonic() < end:
            p.publish(frame)
            time.sleep(0.02)
        assert det.wait(30) == 0, det.stderr
    lines = [json.loads(x) for x in det.lines]
    assert len(lines) == 5 and all(r["boxes"] == [] for r in lines)


def test_motion_matches_framebus_analyze(procs, go_bin, busdir):
    """Where the Go command was built with OpenCV, both detectors analyse the same paced
    frames and must find the same boxes."""
    probe = subprocess.run([go_bin, "analyze", "x", "--detect", "motion", "--dir", busdir, "--timeout", "0s"],
                           capture_output=True, text=True)
    if "OpenCV" in probe.stderr and "build" in probe.stderr:
        pytest.skip("framebus was built without OpenCV (make build has it)")
    # 40 frames each (5 s at 8 fps): the Python interpreter may join a second or two after
    # the Go command on a loaded machine (with 12 frames each, none were analysed by both).
    py = procs([PY, EXAMPLES / "motion.py", "twin", "--dir", busdir, "--frames", "40", "--timeout", "20"])
    go = procs([go_bin, "analyze", "twin", "--detect", "motion", "--dir", busdir, "--frames", "40", "--timeout", "20s"])
    cap = procs([go_bin, "capture", "--name", "twin", "--dir", busdir, "--size", "640x480", "--fps", "8",
                 "--duration", "60s"])
    assert py.wait(60) == 0 and go.wait(60) == 0, (py.stderr, go.stderr)
    cap.signal(signal.SIGTERM)
    cap.wait()
    a = {r["seq"]: r for r in map(json.loads, py.lines)}
    b = {r["seq"]: r for r in map(json.loads, (x for x in go.lines if x.startswith("{")))}
    common = [s for s in a if s in b and s - 1 in a and s - 1 in b]  # the same pair of frames differenced
    assert len(common) >= 5, (sorted(a), sorted(b))
    assert any(a[s]["boxes"] for s in common)  # the moving box was found: not a comparison of empties
    for s in common:
        assert sorted(map(str, a[s]["boxes"])) == sorted(map(str, b[s]["boxes"])), s


def test_publisher_from_videocapture(procs, go_bin, busdir):
    """testdata/pattern.avi (60 frames, 320x240) through cv2.VideoCapture, decoded into the
    slot, to the Go consumer and a Python consumer at once."""
    tail = procs([go_bin, "tail", "vc", "--dir", busdir, "--json", "--timeout", "20s"])
    cons = procs(consume_args("vc", busdir, "--timeout", "20"))
    pub = procs([PY, EXAMPLES / "publish_capture.py", REPO / "testdata" / "pattern.avi", "--name", "vc",
                 "--dir", busdir, "--fps", "200", "--checksum"])
    assert pub.wait(60) == 0, pub.stderr
    assert "published 60 frames" in pub.stderr
    assert tail.wait(30) == 0, tail.stderr
    evs = cons.drain()
    assert cons.wait(30) == 0, cons.stderr
    joined = evs[0]
    assert joined["format"] == "BGR24" and joined["shape"] == [240, 320, 3]
    frames = [e for e in evs if e["event"] == "frame"]
    check_accounting(frames, joined["last_seq"])
    assert evs[-1]["eos"] and evs[-1]["last_seq"] == 61  # 60 frames, then the end of stream
    closed = json.loads(tail.lines[-1])
    assert closed["event"] == "closed" and closed["frames"] > 0


def test_opencv_reads_frames_zero_copy(busdir):
    """cv2 functions take the read-only views as they are: RGBA, GREY, and NV12's one-array
    layout for cv2.cvtColor."""
    with framebus.Producer("cvz", 320, 240, "NV12", dir=busdir) as p, framebus.Consumer("cvz", dir=busdir) as c:
        y = np.tile(np.arange(320, dtype=np.uint8), (240, 1))
        with p.frame() as buf:
            buf[:240] = y
            buf[240:] = 128  # neutral chroma: a grey ramp
        f = c.next(timeout=5)
        bgr = cv2.cvtColor(f.array, cv2.COLOR_YUV2BGR_NV12)
        assert bgr.shape == (240, 320, 3) and f.valid()
        assert abs(int(bgr[10, 200, 0]) - int(bgr[10, 200, 2])) <= 2  # grey
        assert np.shares_memory(f.planes[0], f.array) and f.planes[0].base is not None
        blur = cv2.GaussianBlur(f.planes[0], (5, 5), 0)
        assert blur.shape == (240, 320)
        p.reconfigure(320, 240, "RGBA")
        p.publish(np.full((240, 320, 4), 200, np.uint8))
        f = c.next(timeout=5)
        grey = cv2.cvtColor(f.array, cv2.COLOR_RGBA2GRAY)
        assert int(grey[0, 0]) == 200 and f.generation_changed
        ok, png = cv2.imencode(".png", f.array)
        assert ok and f.valid()


def test_torch_and_dlpack_notes(busdir):
    """What README.md says about torch and DLPack, held to numpy's real behaviour: a
    read-only view cannot be exported through DLPack (numpy refuses), so torch gets
    the frame by read_into into a tensor's own memory (one copy, no more)."""
    with framebus.Producer("dl", 64, 48, "RGBA", dir=busdir) as p, framebus.Consumer("dl", dir=busdir) as c:
        p.publish(np.full((48, 64, 4), 9, np.uint8))
        f = c.next(timeout=5)
        if hasattr(f.array, "__dlpack__"):
            with pytest.raises(BufferError):
                f.array.__dlpack__()
        buf = np.empty((48, 64, 4), np.uint8)  # stands for torch.empty(...).numpy()
        p.publish(np.full((48, 64, 4), 10, np.uint8))
        g = c.read_into(buf, timeout=5)
        assert g.array is not None and np.shares_memory(g.array, buf) and int(buf[0, 0, 0]) == 10
        if hasattr(buf, "__dlpack__"):
            assert np.from_dlpack(buf)[0, 0, 0] == 10  # a writable buffer exports fine
        try:
            import torch  # not a dependency: only where it is installed
        except ImportError:
            return
        t = torch.empty((48, 64, 4), dtype=torch.uint8)
        p.publish(np.full((48, 64, 4), 11, np.uint8))
        c.read_into(t.numpy(), timeout=5)
        assert int(t[0, 0, 0]) == 11
