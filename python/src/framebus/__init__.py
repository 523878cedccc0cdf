"""framebus: live video frames between processes through shared memory, as numpy arrays.

Speaks the binary contract of the framebus project (docs/PROTOCOL.md, version 1 with
its amendments), so it joins buses made by the Go producer (``framebus capture``), the
C producer or itself, and its producers feed Go and C consumers::

    import framebus
    with framebus.Consumer("cam0", timeout=10.0) as c:    # waits for a producer, joins
        for f in c:                                       # ends at the end of stream
            img = f.array                                 # read-only view into the slot
            ...
            if not f.valid(): ...                         # overwritten while used

    with framebus.Producer("cam0", width=1280, height=720, format="RGBA") as p:
        p.publish(img)                                    # copies
        with p.frame() as buf:                            # zero-copy: the back slot
            buf[...] = 0

Every exception is a ``framebus.Error``. Linux only (x86-64, arm64); the atomics come
from libatomic.so.1 through ctypes (see the package README). ``GUARDED`` says whether
the native helper's SIGBUS guard is in place (a bus file truncated under a read is then
an error or a new generation, not the death of the interpreter); ``UNGUARDED`` says
what is not guarded without it.
"""

from ._errors import (BadMagic, BadName, BadOptions, BufferTooSmall, Busy, ChecksumMismatch, Closed,
                      CorruptSegment, EndOfStream, Error, NoSpace, NotFound, PermissionDenied, ProducerGone,
                      Retired, Stalled, TableFull, Timeout, UnsafePath, Unsupported, VersionMismatch,
                      HoldRefused, HoldCapReached, HoldOverwritten, HoldUnsupported, HoldReleased)
from ._format import FrameFormat, parse_format
from ._consumer import Consumer, ConsumerStats, Frame, Hold
from ._producer import FrameLoan, Producer, ProducerStats, collect_abandoned
from ._sys import bus_dir, lock_path, segment_path, validate_name
from ._crc32c import crc32c
from ._layout import ABI_VERSION
from ._native import GUARDED, NATIVE_CRC, UNGUARDED

__version__ = "0.1.0"

__all__ = [
    "Consumer", "Frame", "Hold", "ConsumerStats", "Producer", "FrameLoan", "ProducerStats", "FrameFormat",
    "parse_format", "collect_abandoned", "bus_dir", "segment_path", "lock_path", "validate_name", "crc32c",
    "ABI_VERSION", "now_ns", "GUARDED", "NATIVE_CRC", "UNGUARDED",
    "Error", "BadName", "BadOptions", "NotFound", "PermissionDenied", "UnsafePath", "CorruptSegment", "BadMagic",
    "VersionMismatch", "Busy", "NoSpace", "TableFull", "ProducerGone", "Retired", "Stalled", "EndOfStream",
    "ChecksumMismatch", "BufferTooSmall", "Timeout", "Closed", "Unsupported",
    "HoldRefused", "HoldCapReached", "HoldOverwritten", "HoldUnsupported", "HoldReleased",
]


def now_ns() -> int:
    """CLOCK_MONOTONIC in nanoseconds: the clock of capture_ns, commit_ns and wake_ns
    (the same as time.monotonic_ns() and Go's framebus.Now())."""
    import time

    return time.monotonic_ns()
