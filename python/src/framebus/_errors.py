"""The exception hierarchy: every error framebus raises is a framebus.Error.

The classes mirror the Go package's sentinels (framebus/errors.go); where a
Python built-in exception means the same thing (TimeoutError, PermissionError,
FileNotFoundError, ValueError), the framebus class derives from it too, so
``except TimeoutError`` works as well as ``except framebus.Timeout``.
"""

from __future__ import annotations

from typing import Optional


class Error(Exception):
    """Base class of every framebus exception.

    ``op`` is the operation ("open", "next", "create", "publish", ...) and
    ``name`` the bus name, when known.
    """

    op: str = ""
    name: str = ""

    def __init__(self, message: str, *, op: str = "", name: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.op = op
        self.name = name

    def __str__(self) -> str:
        where = " ".join(p for p in ("framebus", self.op, self.name) if p)
        return f"{where}: {self.message}"


class BadName(Error, ValueError):
    """The bus name breaks PROTOCOL.md section 1 (refused before any system call)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"bad bus name {name!r}: {reason}", name=name)
        self.reason = reason


class BadOptions(Error, ValueError):
    """An argument is out of range (a size, a format, a frame that does not fit)."""


class NotFound(Error, FileNotFoundError):
    """No bus of that name (after waiting ``timeout`` seconds for a producer)."""

    def __init__(self, message: str, *, path: str = "", op: str = "", name: str = "") -> None:
        super().__init__(message, op=op, name=name)
        self.path = path


class PermissionDenied(Error, PermissionError):
    """The bus file may not be opened: names the file, its mode and owner."""

    def __init__(self, path: str, mode: Optional[int] = None, uid: Optional[int] = None,
                 detail: str = "", *, op: str = "", name: str = "") -> None:
        self.path, self.mode, self.uid = path, mode, uid
        msg = f"permission denied: {path}"
        if mode is not None:
            msg += f" (mode {mode:04o}, owner uid {uid})"
        if detail:
            msg += f": {detail}"
        super().__init__(msg, op=op, name=name)


class UnsafePath(Error):
    """Something other than a regular file of ours is at the bus path (a symlink, a directory)."""


class CorruptSegment(Error):
    """The segment breaks the contract: ``field`` names what is wrong, ``value`` its value.

    A file shorter than its header says (truncated) is ``field == "file size"``.
    """

    def __init__(self, field: str, value: int, reason: str, *, op: str = "", name: str = "") -> None:
        self.field, self.value, self.reason = field, value, reason
        super().__init__(f"corrupt segment layout: {field} = {value}: {reason}", op=op, name=name)


class BadMagic(CorruptSegment):
    """The file is not a framebus segment: its first four bytes are not ``FBUS``."""

    def __init__(self, value: int, *, op: str = "", name: str = "") -> None:
        super().__init__("magic", value, f"not a framebus segment (want 0x53554246), got 0x{value:08x}",
                         op=op, name=name)


class VersionMismatch(Error):
    """The segment's ``abi_version`` is not the one this reader speaks.

    Raising it has bumped the segment's ``version_mismatch_count``.
    """

    def __init__(self, got: int, want: int, *, op: str = "", name: str = "") -> None:
        self.got, self.want = got, want
        super().__init__(f"abi version mismatch: segment has abi_version {got}, this reader speaks {want}",
                         op=op, name=name)


class Busy(Error):
    """Another live producer owns the bus (``pid`` from its segment, 0 if unknown)."""

    def __init__(self, pid: int, *, op: str = "", name: str = "") -> None:
        self.pid = pid
        msg = "bus is owned by a live producer" + (f" (pid {pid})" if pid else "")
        super().__init__(msg, op=op, name=name)


class NoSpace(Error):
    """The bus directory cannot hold the segment: bytes ``needed`` and ``available``."""

    def __init__(self, directory: str, needed: int, available: int, *, op: str = "", name: str = "") -> None:
        self.directory, self.needed, self.available = directory, needed, available
        super().__init__(f"not enough space in {directory}: segment needs {needed} bytes, {available} available "
                         "(in Docker, raise --shm-size)", op=op, name=name)


class TableFull(Error):
    """Every entry of the consumer table is taken (``capacity`` entries)."""

    def __init__(self, capacity: int, *, op: str = "", name: str = "") -> None:
        self.capacity = capacity
        super().__init__(f"consumer table full (capacity {capacity})", op=op, name=name)


class ProducerGone(Error):
    """The producer's lock is not held: it died (``kill -9`` included) or closed without a trace.

    Reported once per episode; calling ``next()`` again keeps waiting for a new
    producer, whose generation the consumer then follows by itself.
    """


class Retired(ProducerGone):
    """The segment is RETIRED, no new generation replaced it and nobody owns the name."""


class Stalled(Error):
    """The producer is alive but its heartbeat is older than 3 intervals (``age_ns``)."""

    def __init__(self, message: str, age_ns: int = 0, *, op: str = "", name: str = "") -> None:
        super().__init__(message, op=op, name=name)
        self.age_ns = age_ns


class EndOfStream(Error):
    """The producer closed the stream (the end-of-stream frame ``seq``).

    ``dropped`` counts the frames missed between the last delivered frame and
    the end of stream (they are in no ``Frame.dropped``). Iterating a
    Consumer ends (StopIteration) instead of raising it.
    """

    def __init__(self, seq: int, dropped: int = 0, *, op: str = "", name: str = "") -> None:
        self.seq, self.dropped = seq, dropped
        msg = "producer closed the stream"
        if dropped:
            msg += f" ({dropped} frames dropped before the end of stream)"
        super().__init__(msg, op=op, name=name)


class ChecksumMismatch(Error):
    """A frame intact by the sequence lock does not match its CRC-32C (memory corruption).

    The frame is consumed and counted as dropped; the next call moves on.
    """

    def __init__(self, seq: int, want: int, got: int, *, op: str = "", name: str = "") -> None:
        self.seq, self.want, self.got = seq, want, got
        super().__init__(f"frame {seq}: CRC-32C 0x{got:08x}, descriptor says 0x{want:08x}", op=op, name=name)


class BufferTooSmall(Error, ValueError):
    """``read_into``'s buffer cannot hold the frame; the frame is not consumed."""

    def __init__(self, needed: int, size: int, *, op: str = "", name: str = "") -> None:
        self.needed, self.size = needed, size
        super().__init__(f"frame of {needed} bytes, buffer of {size}", op=op, name=name)


class Timeout(Error, TimeoutError):
    """No frame within the ``timeout`` given to ``next()`` or ``read_into()``."""


class Closed(Error, ValueError):
    """The Consumer or Producer was closed."""


class Unsupported(Error):
    """This system lacks something framebus needs (not Linux, no libatomic, unknown CPU)."""


class HoldRefused(Error):
    """A hold (amendment 10, holds: ``Frame.hold()``) was refused; never a wait: copy the frame
    instead (``read_into``). ``reason`` is "cap" (the bus's slot_count - 2 held slots are
    taken), "overwritten" (the producer came back to the slot before the grant finished)
    or "unsupported" (the producer does not honour holds: no flag bit 2). ``seq`` is the
    frame's number."""

    reason = ""

    def __init__(self, reason: str, seq: int, detail: str) -> None:
        super().__init__(f"hold of frame {seq} refused ({reason}): {detail}")
        self.reason = reason
        self.seq = seq


class HoldCapReached(HoldRefused):
    """Refused: the consumers of the bus already hold slot_count - 2 slots (the cap)."""


class HoldOverwritten(HoldRefused):
    """Refused: the frame's slot was overwritten before the grant finished."""


class HoldUnsupported(HoldRefused):
    """Refused: the bus's producer does not honour holds (no FLAG_HOLDS)."""


class HoldReleased(Error, ValueError):
    """The hold was released already (a second ``release()``)."""
