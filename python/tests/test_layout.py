"""One layout, one truth: the Python offsets against the C header (compiled), the Go
side's golden header bytes, and the formats, names and CRC-32C."""

from __future__ import annotations

import os
import random
import shutil
import subprocess

import numpy as np
import pytest

import framebus
from framebus import _layout as L
from framebus._crc32c import crc32c_numpy, crc32c_reference
from framebus._format import complete
from conftest import REPO

HEADER = REPO / "framebus" / "include" / "framebus.h"


def c_offsets(tmp_path, checks):
    """offsetof() of (struct, field) pairs, from the C header compiled with gcc."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc not found")
    src = tmp_path / "off.c"
    body = "\n".join(f'printf("%zu\\n", offsetof({s}, {f}));' for s, f in checks)
    src.write_text(f'#include <stdio.h>\n#include <stddef.h>\n#include "framebus.h"\nint main(void) {{\n{body}\nreturn 0; }}\n')
    exe = tmp_path / "off"
    subprocess.run([gcc, "-std=gnu11", "-Wall", "-Werror", "-I", str(HEADER.parent), "-o", str(exe), str(src)],
                   check=True)
    return [int(x) for x in subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()]


def test_offsets_match_the_c_header(tmp_path):
    # Amendment 8's fields sit in what the C header of this branch still calls reserved
    # bytes: they are checked by position (right after created_ns, right after
    # torn_retries), so the check holds before and after the header names them.
    # Amendment 10's words likewise (checked against PROTOCOL.md's table below).
    header = [(o, n) for o, _, n in L.HEADER_FIELDS if n != "producer_pidns" and n not in L.AMENDMENT10_FIELDS]
    slot = [(o, n) for n, o in L.SLOT_FIELDS.items()]
    entry = [(o, n) for n, o in L.ENTRY_FIELDS.items() if n != "pidns" and n not in L.AMENDMENT10_FIELDS]
    checks = ([("framebus_header", n) for _, n in header] + [("framebus_slot_desc", n) for _, n in slot]
              + [("framebus_consumer_entry", n) for _, n in entry])
    got = c_offsets(tmp_path, checks)
    want = [o for o, _ in header] + [o for o, _ in slot] + [o for o, _ in entry]
    assert got == want
    assert L.OFF["producer_pidns"] == L.OFF["created_ns"] + 8 == 248
    assert L.ENTRY_FIELDS["pidns"] == L.ENTRY_FIELDS["torn_retries"] + 8 == 64
    assert [L.OFF[n] for n in L.AMENDMENT10_FIELDS[:5]] == [384, 392, 400, 408, 416]
    assert [L.ENTRY_FIELDS[n] for n in ("hold_mask", "holds_granted", "holds_refused", "holds_taken_back")] == \
        [72, 80, 88, 96]
    assert L.FLAG_HOLDS == 4 and L.HOLD_PENDING_SHIFT == 8
    text = HEADER.read_text()
    for const, value in [("FRAMEBUS_MAGIC", "0x53554246u"), ("FRAMEBUS_HEADER_SIZE", "512"),
                         ("FRAMEBUS_SLOT_DESC_SIZE", "128"), ("FRAMEBUS_CONSUMER_ENTRY_SIZE", "128"),
                         ("FRAMEBUS_PAYLOAD_ALIGN", "65536"), ("FRAMEBUS_MAX_SLOTS", "8"),
                         ("FRAMEBUS_MAX_CONSUMERS", "1024"), ("FRAMEBUS_USER_META_MAX", "64")]:
        assert f"#define {const} {value}" in text
    assert L.MAGIC == 0x53554246 and L.HEADER_STRUCT.size == 512


def golden_header() -> L.Header:
    """framebus/layout_test.go's goldenHeader, built with the Python geometry."""
    f = complete(1920, 1080, "RGBA")
    g = L.Geometry(2, 32, f.frame_size)
    return L.Header(state=L.STATE_READY, flags=L.FLAG_CHECKSUM | L.FLAG_HOLDS, total_size=g.total, generation=7,
                    heartbeat_ns=0x0102030405060708, payload_offset=g.payload_offset, payload_size=g.payload_size,
                    version_mismatch_count=3, producer_pid=4242, slot_count=2, slot_stride=g.slot_stride,
                    slot_capacity=g.slot_capacity, consumer_capacity=32, heartbeat_interval_ms=100, width=1920,
                    height=1080, pixel_format=f.fourcc, plane_count=1, plane_stride=(7680, 0, 0, 0),
                    plane_offset=(0, 0, 0, 0), fps_num=30000, fps_den=1001, slot_table_offset=g.slot_table_offset,
                    consumer_table_offset=g.consumer_table_offset, created_ns=0x1112131415161718, active=1,
                    last_seq=0x2122232425262728, frames_published=0x3132333435363738,
                    last_commit_ns=0x4142434445464748, source_drops=5, consumers_reclaimed=6,
                    hold_max_ns=0x5152535455565758, holds_granted=9, holds_refused=10, holds_taken_back=11,
                    holds_ignored=12)


def test_golden_header_bytes():
    golden = (REPO / "framebus" / "testdata" / "header.golden").read_bytes()
    h = golden_header()
    assert h.encode() == golden
    back = L.Header.decode(golden)
    assert back == h
    L.check_identity(golden, h.total_size)
    L.validate_header(back, h.total_size)


def test_every_header_field_has_its_own_bytes():
    """Each field alone set: its bytes, at its offset, and nothing else."""
    import struct

    zero = {n: ((0, 0, 0, 0) if code == "4I" else 0) for _, code, n in L.HEADER_FIELDS}
    for off, code, n in L.HEADER_FIELDS:
        kw = dict(zero)
        kw[n] = (0x11, 0x22, 0x33, 0x44) if code == "4I" else 0x5A
        b = L.Header(**kw).encode()
        width = struct.calcsize("<" + code)
        assert b[:off].count(0) == off and b[off + width:].count(0) == 512 - off - width, n
        assert b[off] in (0x5A, 0x11), n


@pytest.mark.parametrize("fmt,shape,planes", [
    ("RGBA", (480, 640, 4), [(480, 640, 4)]),
    ("RGB24", (480, 640, 3), [(480, 640, 3)]),
    ("BGR24", (480, 640, 3), [(480, 640, 3)]),
    ("GREY", (480, 640), [(480, 640)]),
    ("YUYV", (480, 640, 2), [(480, 640, 2)]),
    ("NV12", (720, 640), [(480, 640), (240, 320, 2)]),
    ("I420", (720, 640), [(480, 640), (240, 320), (240, 320)]),
])
def test_format_shapes_and_sizes(busdir, fmt, shape, planes):
    """The frame sizes are Go's (Format.Complete), the shapes numpy's (h, w, c)."""
    sizes = {"RGBA": 640 * 480 * 4, "RGB24": 640 * 480 * 3, "BGR24": 640 * 480 * 3, "GREY": 640 * 480,
             "YUYV": 640 * 480 * 2, "NV12": 640 * 480 * 3 // 2, "I420": 640 * 480 * 3 // 2}
    f = complete(640, 480, fmt)
    assert f.frame_size == sizes[fmt] and f.shape == shape and f.name == fmt
    with framebus.Producer("shape", 640, 480, fmt, dir=busdir) as p, framebus.Consumer("shape", dir=busdir) as c:
        with p.frame() as buf:
            assert buf.shape == shape and buf.flags.writeable
            buf[...] = 5
        fr = c.next(timeout=5)
        assert fr.array.shape == shape and not fr.array.flags.writeable
        assert [x.shape for x in fr.planes] == planes
        assert all(not x.flags.writeable for x in fr.planes)
        with pytest.raises(ValueError):
            fr.array.flags.writeable = True  # the mapping itself is read-only
        assert int(fr.array.reshape(-1)[0]) == 5 and fr.nbytes == sizes[fmt]


def test_format_errors():
    for args in [(0, 10, "RGBA"), (10, 10, "XXXX"), (17, 16, "NV12"), (20000, 10, "GREY")]:
        with pytest.raises(framebus.BadOptions):
            complete(*args)
    assert framebus.parse_format("AB24") == framebus.parse_format("rgba")
    assert framebus.parse_format("YU12") == framebus.parse_format("I420")


def test_crc32c():
    assert framebus.crc32c(b"123456789") == 0xE3069283
    assert crc32c_numpy(b"") == 0
    rng = random.Random(1)
    for n in [1, 31, 63, 64, 65, 127, 128, 129, 4095, 64 * 4096 + 17]:
        d = bytes(rng.getrandbits(8) for _ in range(n))
        assert crc32c_numpy(d) == crc32c_reference(d), n
    a = np.random.default_rng(2).integers(0, 256, 640 * 480 * 4, dtype=np.uint8)
    assert crc32c_numpy(a) == crc32c_numpy(a.tobytes()) == crc32c_numpy(memoryview(a))


def test_names():
    for ok in ["cam0", "a", "A.b_c-d", "x" * 64]:
        assert framebus.validate_name(ok) == ok
    assert framebus.segment_path("/d", "cam0") == "/d/framebus.cam0"
    assert framebus.lock_path("/d", "cam0") == "/d/framebus.cam0.lock"
    os.environ["FRAMEBUS_DIR"] = "/tmp/elsewhere"
    try:
        assert framebus.bus_dir() == "/tmp/elsewhere" and framebus.bus_dir("/x") == "/x"
    finally:
        del os.environ["FRAMEBUS_DIR"]


def test_exception_hierarchy():
    for cls in [framebus.ProducerGone, framebus.Stalled, framebus.EndOfStream, framebus.VersionMismatch,
                framebus.CorruptSegment, framebus.PermissionDenied, framebus.TableFull, framebus.Timeout,
                framebus.BadName, framebus.NotFound, framebus.Busy, framebus.NoSpace, framebus.ChecksumMismatch,
                framebus.BadMagic, framebus.Retired, framebus.BufferTooSmall, framebus.Closed]:
        assert issubclass(cls, framebus.Error)
    assert issubclass(framebus.Timeout, TimeoutError) and issubclass(framebus.PermissionDenied, PermissionError)
    assert issubclass(framebus.NotFound, FileNotFoundError) and issubclass(framebus.BadName, ValueError)
    e = framebus.CorruptSegment("slot_count", 99, "want 2-8", op="open", name="cam0")
    assert (e.field, e.value) == ("slot_count", 99) and str(e) == "framebus open cam0: corrupt segment layout: slot_count = 99: want 2-8"


def test_optional_native_crc_is_checked_and_wrapped(monkeypatch):
    """A native CRC module is used only if it gives the check value; one that takes only
    bytes gets bytes (the read path passes memoryviews and numpy arrays)."""
    import sys
    import types

    from framebus import _crc32c

    def bytes_only(d):
        if not isinstance(d, bytes):
            raise TypeError("bytes only")
        return crc32c_reference(d)

    monkeypatch.setitem(sys.modules, "google_crc32c", types.SimpleNamespace(value=bytes_only))
    monkeypatch.setitem(sys.modules, "crc32c", None)
    fn = _crc32c._native()
    assert fn is not None and fn.__name__ == "google_crc32c"
    a = np.arange(1000, dtype=np.uint8)
    assert fn(a) == fn(memoryview(a)) == crc32c_reference(a.tobytes())
    monkeypatch.setitem(sys.modules, "google_crc32c", types.SimpleNamespace(value=lambda d: 1))  # wrong
    assert _crc32c._native() is None
