"""The consumer: PROTOCOL.md sections 2 and 5, amendments 1-9, in the order of
operations of the Go consumer (framebus/consumer.go, read.go, wait.go, liveness.go).

Amendment 9 (a frame is taken only when it is not newer than the header says): the read
loads the header's last_seq after the sequence lock validated the slot and takes the frame
only when frame_seq <= last_seq; a frame more than one ahead of it, an ``active`` out of
range, and impossible ``bytes`` or ``user_meta_len`` are refused for that read and counted
(``ConsumerStats.refused``), never an exception of the stream; and on every wait timeout
(at least once a heartbeat interval, even while wakes keep coming) a consumer whose own
last_seq is ahead of the header's re-synchronises on an intact active frame of exactly that
number (``ConsumerStats.resyncs``)."""

from __future__ import annotations

import ctypes
import mmap
import os
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Iterator, List, Optional, Tuple

import numpy as np

from . import _atomics as A
from . import _futex as F
from . import _native as N
from ._crc32c import crc32c
from ._errors import (BufferTooSmall, ChecksumMismatch, Closed, CorruptSegment, EndOfStream, Error, NotFound,
                      ProducerGone, Retired, Stalled, TableFull, Timeout, VersionMismatch, BadOptions,
                      HoldCapReached, HoldOverwritten, HoldReleased, HoldUnsupported)
from ._format import FrameFormat, MJPEG, array_view, is_packed, plane_views
from ._layout import (CONSUMER_ENTRY_SIZE, ENT_DELIVERED, ENT_DROPPED, ENT_HEARTBEAT_NS, ENT_LAST_SEQ,
                      ENT_PID, ENT_PIDNS, ENT_SEM, ENT_STATE, ENT_TOKEN, ENT_TORN_RETRIES, ENT_WAITERS,
                      ENTRY_ACTIVE, ENTRY_CLAIMING, ENTRY_FREE, FLAG_CHECKSUM, FLAG_SHARED_WAKE, FRAME_EOS,
                      FLAG_HOLDS, HOLD_PENDING_SHIFT, ENT_HOLD_MASK, ENT_HOLDS_GRANTED, ENT_HOLDS_REFUSED,
                      ENT_HOLDS_TAKEN_BACK,
                      HEADER_SIZE, OFF, SLOT_DESC_SIZE, SLOT_STRUCT, SLOT_USER_META, STATE_BROKEN,
                      STATE_INITIALIZING, STATE_RETIRED, USER_META_MAX, Header, check_identity, validate_header)
from ._sys import (lock_path, lstat_path, open_existing, owner_held, pidns, segment_path, try_lock, unlock,
                   validate_name, bus_dir)

_now = time.monotonic_ns  # CLOCK_MONOTONIC, the clock of every *_ns field
_load4, _load8, _store4, _store8 = A.raw_load4, A.raw_load8, A.raw_store4, A.raw_store8
_xchg4, _fadd4, _fadd8, _fence = A.raw_xchg4, A.raw_fadd4, A.raw_fadd8, A.raw_fence
_SC = A.SEQ_CST
_TSO = A.TSO

# The longest single futex sleep of the main thread. CPython runs a signal's Python handler
# (KeyboardInterrupt) only between bytecodes: a signal that lands after the last one before
# the FUTEX_WAIT and before the system call starts (a window a loaded machine widens) leaves
# the wait to end by itself. Other threads never run signal handlers and sleep the whole
# heartbeat interval. The slice ends the sleep only: no liveness check, no heartbeat store.
_SIGNAL_SLICE_NS = 250_000_000
_MINUS1 = 0xFFFFFFFF
_fstat = os.fstat
_trunc = N.truncated  # the guard's flag: the segment's mappings were replaced by zero pages



_SETTLE_READS = 64


def _lock_settles(addr: int, l1: int) -> bool:
    """Whether a slot's lock is l1, reading it again a few times while it is l1 + 1: a
    producer backing off at C4 (amendment 10) made the slot odd without writing it and
    stores l1 back at once. Still odd after that, or any other value: rewritten."""
    v = _load8(addr, _SC)
    for _ in range(_SETTLE_READS):
        if v != l1 + 1:
            break
        v = _load8(addr, _SC)
    return v == l1

class _NotReady(Exception):
    """The segment is still INITIALIZING."""


class _Followed(Exception):
    """The consumer joined a new generation: read again."""


class _Segment:
    """One generation as a consumer sees it: the control block mapped read-write, the
    frame data read-only (two MAP_SHARED mappings of one descriptor)."""

    def __init__(self, fd: int, path: str) -> None:
        self.fd = fd
        self.path = path
        self.released = False
        self.entry = -1
        st = _fstat(fd)
        size = st.st_size
        self.ident = (st.st_dev, st.st_ino)
        b = os.pread(fd, HEADER_SIZE, 0)
        try:
            check_identity(b, size)
        except VersionMismatch:
            if size >= 64:
                _count_version_mismatch(fd)
            raise
        h = Header.decode(b)
        validate_header(h, size)  # before anything is mapped: no SIGBUS from a short file
        if h.state == STATE_INITIALIZING:
            raise _NotReady()
        self.h = h
        self.fmt: FrameFormat = h.format()
        self.total_size = h.total_size
        self.hb_ns = h.heartbeat_interval_ms * 1_000_000
        self.checksum = bool(h.flags & FLAG_CHECKSUM)
        self.shared_wake = bool(h.flags & FLAG_SHARED_WAKE)
        self.slot_count = h.slot_count
        self.capacity = h.slot_capacity
        self.holds = bool(h.flags & FLAG_HOLDS)  # amendment 10
        self.hold_cap = max(0, h.slot_count - 2)
        self.hold_refs = [0] * h.slot_count  # this consumer's holds per slot (one bit each)
        populate = getattr(mmap, "MAP_POPULATE", 0)
        N.warn_unguarded()
        self.group = N.new_group()  # the SIGBUS guard's group of both mappings
        try:
            self.ctl = N.GuardedMap(fd, h.payload_offset, flags=mmap.MAP_SHARED | populate,
                                    prot=mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
            self.ctl.guard(self.group, True)
            self.data = N.GuardedMap(fd, h.payload_size, flags=mmap.MAP_SHARED | populate,
                                     prot=mmap.PROT_READ, offset=h.payload_offset)
            self.data.guard(self.group, False)
        except (OSError, ValueError) as e:
            self._unmap()
            raise CorruptSegment("file size", size, f"cannot map the segment: {e}") from None
        self.base = ctypes.addressof(ctypes.c_char.from_buffer(self.ctl))  # the export ends with the temporary
        base = self.base
        self.state_addr = base + OFF["state"]
        self.active_addr = base + OFF["active"]
        self.last_seq_addr = base + OFF["last_seq"]
        self.heartbeat_addr = base + OFF["heartbeat_ns"]
        self.wake_seq_addr = base + OFF["wake_seq"]
        self.wake_waiters_addr = base + OFF["wake_waiters"]
        self.h_granted, self.h_refused = base + OFF["holds_granted"], base + OFF["holds_refused"]
        cto, cap = h.consumer_table_offset, h.consumer_capacity
        # Every entry's state and hold_mask, for the grant's count (G3): one numpy look.
        self.ent_states = np.ndarray((cap,), np.uint32, self.ctl, cto, (CONSUMER_ENTRY_SIZE,))
        self.ent_masks = np.ndarray((cap,), np.uint32, self.ctl, cto + ENT_HOLD_MASK, (CONSUMER_ENTRY_SIZE,))
        self.data_np = np.frombuffer(self.data, np.uint8)
        self.data_addr = int(self.data_np.ctypes.data)
        self.data_mv = memoryview(self.data)
        # Per slot: lock address, descriptor offset in the control block, data offset.
        self.slots: List[Tuple[int, int, int]] = []
        self.arrays: List[Optional[np.ndarray]] = []
        self.planes: List[Tuple[np.ndarray, ...]] = []
        for i in range(h.slot_count):
            d = h.slot_table_offset + i * SLOT_DESC_SIZE
            o = i * h.slot_stride
            self.slots.append((base + d, d, o))
            if self.fmt.fourcc == MJPEG:
                self.arrays.append(None)
                self.planes.append(())
            else:
                self.arrays.append(array_view(self.fmt, self.data_np, o, False) if is_packed(self.fmt) else None)
                self.planes.append(plane_views(self.fmt, self.data_np, o, False))

    def bind_entry(self, i: int) -> None:
        e = self.h.consumer_table_offset + i * CONSUMER_ENTRY_SIZE
        b = self.base + e
        self.entry, self.e_off = i, e
        self.e_state, self.e_pid, self.e_sem, self.e_waiters = b + ENT_STATE, b + ENT_PID, b + ENT_SEM, b + ENT_WAITERS
        self.e_token, self.e_last = b + ENT_TOKEN, b + ENT_LAST_SEQ
        self.e_delivered, self.e_dropped = b + ENT_DELIVERED, b + ENT_DROPPED
        self.e_hb, self.e_torn, self.e_pidns = b + ENT_HEARTBEAT_NS, b + ENT_TORN_RETRIES, b + ENT_PIDNS
        self.e_hold, self.e_hgranted = b + ENT_HOLD_MASK, b + ENT_HOLDS_GRANTED
        self.e_hrefused, self.e_htaken = b + ENT_HOLDS_REFUSED, b + ENT_HOLDS_TAKEN_BACK

    def join(self, token: int) -> None:
        """Shared lock first, then CAS 0 -> 1, fill, CAS 1 -> 2 (PROTOCOL.md section 2)."""
        h = self.h
        for i in range(h.consumer_capacity):
            off = h.consumer_table_offset + i * CONSUMER_ENTRY_SIZE
            if not try_lock(self.fd, off, CONSUMER_ENTRY_SIZE, False):
                continue  # being reclaimed (exclusive lock): try another
            addr = self.base + off
            if not A.cas32(addr + ENT_STATE, ENTRY_FREE, ENTRY_CLAIMING):
                unlock(self.fd, off, CONSUMER_ENTRY_SIZE)
                continue
            self.bind_entry(i)
            A.store32(self.e_pid, os.getpid() & 0xFFFFFFFF)
            A.store64(self.e_pidns, pidns())  # amendment 8, with pid, before the CAS to 2
            A.store32(self.e_sem, 0)
            A.store32(self.e_waiters, 0)
            A.store64(self.e_token, token)
            A.store64(self.e_last, A.load64(self.last_seq_addr))
            A.store64(self.e_delivered, 0)
            A.store64(self.e_dropped, 0)
            A.store64(self.e_torn, 0)
            A.store32(self.e_hold, 0)  # amendment 10: a joiner stores 0 in hold_mask while claiming
            A.store64(self.e_hgranted, 0)
            A.store64(self.e_hrefused, 0)
            A.store64(self.e_htaken, 0)
            A.store64(self.e_hb, _now())
            if not A.cas32(self.e_state, ENTRY_CLAIMING, ENTRY_ACTIVE):
                unlock(self.fd, off, CONSUMER_ENTRY_SIZE)  # a peer broke the rules: try another
                self.entry = -1
                continue
            return
        raise TableFull(h.consumer_capacity)

    def leave(self, token: int) -> None:
        """CAS 2 -> 0, then drop the lock."""
        if self.entry < 0 or self.released:
            return
        try:
            if A.load64(self.e_token) == token:
                # pidns back to 0 ("unknown") while the entry is still ours: a joiner that does
                # not know amendment 8 would otherwise inherit it (docs/PYTHON.md, findings).
                A.store64(self.e_pidns, 0)
                A.store32(self.e_hold, 0)  # amendment 10: every hold ends before the CAS 2 -> 0
                self.hold_refs = [0] * self.slot_count
                A.cas32(self.e_state, ENTRY_ACTIVE, ENTRY_FREE)
        finally:
            unlock(self.fd, self.e_off, CONSUMER_ENTRY_SIZE)
            self.entry = -1

    def lost(self) -> bool:
        """The guard replaced the mappings with zero pages: the file was truncated under an access."""
        return _trunc(self.group)

    def size_ok(self) -> bool:
        """The file still has the size of its header (a truncated file would SIGBUS the mapping)
        and no access found it truncated (the guard's flag)."""
        if _trunc(self.group):
            return False
        try:
            return _fstat(self.fd).st_size >= self.total_size
        except OSError:
            return False

    def _unmap(self) -> None:
        for name in ("data_mv",):
            mv = getattr(self, name, None)
            if mv is not None:
                try:
                    mv.release()
                except Exception:
                    pass
        self.arrays, self.planes, self.data_np = [], [], None  # type: ignore[assignment]
        self.ent_states = self.ent_masks = None  # type: ignore[assignment]
        # Unmapped when the last reference goes (at once, unless the caller still holds views):
        # GuardedMap forgets its guarded range first, then the mmap unmaps it.
        self.ctl = self.data = None  # type: ignore[assignment]

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        self._unmap()
        try:
            os.close(self.fd)  # drops every OFD lock of this description
        except OSError:
            pass


def _count_version_mismatch(fd: int) -> None:
    """Bumps version_mismatch_count of a segment whose abi_version we refuse (section 3.1)."""
    try:
        m = mmap.mmap(fd, 64, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
    except (OSError, ValueError):
        return
    try:
        A.fetch_add64(ctypes.addressof(ctypes.c_char.from_buffer(m)) + OFF["version_mismatch_count"], 1)
    finally:
        m.close()


class Frame:
    """One delivered frame.

    For ``Consumer.next()`` the pixels are a read-only view into the slot (zero
    copy): ``array`` and ``planes`` stay correct only while the producer has
    not come back to the slot. ``valid()`` tells, after use; with double
    buffering a reader has about one frame period. For ``read_into()`` they
    are views of the caller's buffer and always valid.
    """

    __slots__ = ("seq", "capture_ns", "commit_ns", "wake_ns", "nbytes", "dropped", "torn_retries", "generation",
                 "generation_changed", "user_meta", "format", "checksum", "_seg", "_lock_addr", "_lock",
                 "_array", "_planes", "_data", "_owner", "_slot")

    seq: int  #: the frame's sequence number
    capture_ns: int  #: when the source produced it (CLOCK_MONOTONIC, time.monotonic_ns())
    commit_ns: int  #: when the producer committed it
    wake_ns: int  #: when this consumer had read and validated it
    nbytes: int  #: bytes of frame data
    dropped: int  #: frames missed since the previous delivered frame
    torn_retries: int  #: reads of this frame that lost a race with the producer and were retried
    generation: int  #: the bus generation it came from
    generation_changed: bool  #: first frame of a new generation the consumer followed
    user_meta: bytes  #: the producer's metadata for this frame (0-64 bytes)
    format: FrameFormat  #: size, pixel format and planes
    checksum: int  #: the CRC-32C the producer stored (0 when the bus carries none)

    @property
    def array(self) -> np.ndarray:
        """The frame as one read-only uint8 array: (h, w, 4) RGBA, (h, w, 3) RGB24/BGR24,
        (h, w) GREY, (h, w, 2) YUYV, (h * 3 // 2, w) NV12/I420 (what cv2.cvtColor takes),
        (nbytes,) MJPEG."""
        a = self._array
        if a is None:
            if self.format.fourcc == MJPEG:
                return self._data[:self.nbytes]
            raise BadOptions(f"{self.format.name} frame with padded planes: use Frame.planes")
        return a

    @property
    def planes(self) -> Tuple[np.ndarray, ...]:
        """Y and interleaved UV (h/2, w/2, 2) for NV12; Y, U, V for I420; (array,) otherwise."""
        if self.format.fourcc == MJPEG:
            return (self.array,)
        return self._planes

    @property
    def data(self) -> np.ndarray:
        """The frame's bytes, a 1-D uint8 array of ``nbytes``."""
        return self._data[:self.nbytes]

    def valid(self) -> bool:
        """Whether a zero-copy frame is still intact: the producer has not begun to
        overwrite its slot since it was read (the sequence lock's step 3, repeated
        after use). Always True for a frame from read_into()."""
        seg = self._seg
        if seg is None:
            return True
        if seg.released or not seg.size_ok():
            return False
        if not _TSO:
            _fence(_SC)
        # Under the guard a truncation after the fstat reads zeros here, and sets the flag.
        return _lock_settles(self._lock_addr, self._lock) and not _trunc(seg.group)

    def hold(self) -> "Hold":
        """Keeps this zero-copy frame (amendment 10): until the Hold is released the producer
        never writes its slot, so ``array`` stays intact across later ``next()`` calls::

            with f.hold() as h:
                model(torch.from_numpy(h.array))

        Never waits: a refusal raises HoldRefused (HoldCapReached: the bus's
        ``slot_count - 2`` held slots are taken; HoldOverwritten: the slot was overwritten
        since the frame was read; HoldUnsupported: the producer does not honour holds);
        copy instead (``read_into``). A frame from ``read_into()`` is the caller's buffer:
        its Hold holds nothing and is always valid."""
        if self._seg is None:
            return Hold(self, None, None, -1)
        return self._owner._grant(self)

    def __repr__(self) -> str:
        return (f"<framebus.Frame seq={self.seq} {self.format} nbytes={self.nbytes} dropped={self.dropped} "
                f"generation={self.generation}{' (new)' if self.generation_changed else ''}>")


class Hold:
    """A frame kept by ``Frame.hold()`` (amendment 10): a context manager (the block's end
    releases it), ``release()``, ``valid()``, and the frame's views (``array``, ``planes``,
    ``data``, ``frame``). Released also by ``Consumer.close()`` and when garbage-collected."""

    __slots__ = ("frame", "_c", "_seg", "_slot", "_released", "__weakref__")

    def __init__(self, frame: Frame, consumer: Optional["Consumer"], seg: Optional[_Segment], slot: int) -> None:
        self.frame = frame
        self._c, self._seg, self._slot = consumer, seg, slot
        self._released = False

    @property
    def array(self) -> np.ndarray:
        return self.frame.array

    @property
    def planes(self) -> Tuple[np.ndarray, ...]:
        return self.frame.planes

    @property
    def data(self) -> np.ndarray:
        return self.frame.data

    @property
    def seq(self) -> int:
        return self.frame.seq

    @property
    def released(self) -> bool:
        return self._released

    def valid(self) -> bool:
        """True while held and intact: not released, not taken back by the producer (a lease,
        or forged words), the file not truncated."""
        seg = self._seg
        if seg is None:
            return not self._released
        if self._released or seg.released or seg.entry < 0:
            return False
        if not (_load4(seg.e_hold, _SC) >> self._slot) & 1:
            return False  # taken back
        return self.frame.valid()

    def release(self) -> None:
        """Ends the hold: the producer may write the slot again. HoldReleased when it was
        released already, Closed after the consumer's close() (which released it)."""
        if self._released:
            if self._c is not None and self._c._closed:
                raise Closed("consumer closed: its holds were released", op="release", name=self._c.name)
            raise HoldReleased(f"hold of frame {self.frame.seq} released already", op="release")
        self._end()

    def _end(self) -> None:
        if self._released:
            return
        self._released = True
        seg, a = self._seg, self._slot
        if seg is None:
            return
        if self._c is not None:
            self._c._holds.discard(self)
        if seg.released or seg.entry < 0 or seg.hold_refs[a] <= 0:
            return
        seg.hold_refs[a] -= 1
        if seg.hold_refs[a] == 0 and seg.size_ok():
            A.fetch_and32(seg.e_hold, ~(1 << a))  # the last hold of that slot: the bit goes

    def __enter__(self) -> "Hold":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._end()

    def __del__(self) -> None:
        try:
            self._end()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"<framebus.Hold seq={self.frame.seq} slot={self._slot}{' released' if self._released else ''}>"


@dataclass(frozen=True)
class ConsumerStats:
    """The consumer's counters in its current generation, read from its table entry."""

    generation: int
    entry: int
    last_seq: int
    delivered: int
    dropped: int
    torn_retries: int
    shared_wake: bool  #: sleeps on the bus's shared wake word (amendment 7), not its entry's semaphore
    liveness_checks: int  #: wait timeouts on which it checked the producer (this process's count)
    #: Reads refused for a word no honest producer writes (a frame newer than the header's
    #: last_seq, an ``active`` out of range, impossible ``bytes`` or ``user_meta_len``:
    #: amendment 9), since the consumer was made; this process's count.
    refused: int = 0
    #: Times the consumer took the header's last_seq as its own after its own had been moved
    #: ahead by such a word (amendment 9), since it was made; this process's count.
    resyncs: int = 0
    #: Amendment 10, from the entry (this generation): holds granted, refused (cap,
    #: overwritten; plus this process's refusals on buses without holds, which are not
    #: written to them), taken back by the producer (lease, forged words).
    holds_granted: int = 0
    holds_refused: int = 0
    holds_taken_back: int = 0
    #: Holds this consumer has now (not released).
    holds: int = 0


class _Resources:
    """What a Consumer must give back, reachable without the Consumer (for its finalizer)."""

    def __init__(self) -> None:
        self.seg: Optional[_Segment] = None
        self.old: Optional[_Segment] = None
        self.lock_fd = -1
        self.token = 0
        self.broken = False

    def close(self) -> None:
        if self.old is not None:
            self.old.release()
            self.old = None
        seg, self.seg = self.seg, None
        if seg is not None:
            if not self.broken and seg.size_ok():  # a truncated file's entry cannot be touched
                try:
                    seg.leave(self.token)
                except Exception:
                    pass
            seg.release()
        if self.lock_fd >= 0:
            try:
                os.close(self.lock_fd)
            except OSError:
                pass
            self.lock_fd = -1


class Consumer:
    """Joins the bus ``name`` as a consumer and reads its frames.

    ``timeout`` is how long the constructor waits for a producer that has not
    created the bus yet (seconds; 0 fails at once with NotFound). ``dir`` is
    the bus directory (default $FRAMEBUS_DIR, else /dev/shm).
    ``verify_checksum`` checks the CRC-32C of frames on buses that carry one
    (the check runs on a copy taken under the sequence lock; it costs about
    2.5 ns per byte with numpy alone). ``newest`` makes the first ``next()``
    deliver the newest frame already on the bus instead of waiting for the
    next one.

    A Consumer is a context manager and an iterator (``for f in c:`` ends at
    the end of stream). It is not safe for concurrent use from several
    threads; several Consumers in one process are fine. It leaves the
    consumer table on ``close()``, when garbage-collected, and at
    interpreter exit.
    """

    def __init__(self, name: str, timeout: float = 0.0, *, dir: Optional[str] = None,
                 verify_checksum: bool = True, newest: bool = False) -> None:
        self.name = validate_name(name)
        self.dir = bus_dir(dir)
        self.path = segment_path(self.dir, name)
        self.lock_path = lock_path(self.dir, name)
        self.verify_checksum = verify_checksum
        self._newest = newest
        self._r = _Resources()
        self._r.token = int.from_bytes(os.urandom(8), "little") | 1
        self._token = self._r.token
        self._seg: Optional[_Segment] = None
        self._last_seq = 0
        self._last_check = 0
        self._checks = 0
        # Amendment 9: refused reads, re-synchronisations, why the last read was refused,
        # and the slot and lock of the last frame refused (not looked at again meanwhile).
        self._refused = 0
        self._resyncs = 0
        self._last_refusal: Optional[CorruptSegment] = None
        self._refused_slot = 0
        self._refused_lock = 0
        self._holds: "weakref.WeakSet[Hold]" = weakref.WeakSet()
        self._holds_unsupported = 0
        self._wake_repairs = 0  # amendment 11: wake_waiters counted once more after a missed wake
        self._gen_changed = False
        self._gone_reported = False
        self._stalled_reported = False
        self._eos = False
        self._eos_seq = 0
        self._broken = False
        self._hb_due = False
        self._fresh = False
        self._closed = False
        self._scratch: Optional[bytearray] = None
        self._scratch_mv: Optional[memoryview] = None
        self._dst_cache: Any = None
        self._finalizer = weakref.finalize(self, self._r.close)
        deadline = _now() + max(0.0, float(timeout)) * 1e9
        try:
            while True:
                try:
                    self._set_seg(self._attach())
                    break
                except (NotFound, _NotReady) as e:
                    if _now() >= deadline:
                        if isinstance(e, _NotReady):
                            raise NotFound(f"{self.path} never became ready", path=self.path) from None
                        raise NotFound(f"{self.path} does not exist", path=self.path) from None
                    time.sleep(min(0.02, max(0.0, (deadline - _now()) / 1e9) + 0.001))
            self._open_lock()
        except Error as e:
            self._finalizer()
            _label(e, "open", self.name)
            raise

    # ---- attaching ------------------------------------------------------------------

    def _attach(self) -> _Segment:
        fd = open_existing(self.path, True)
        try:
            seg = _Segment(fd, self.path)
        except BaseException:
            os.close(fd)
            raise
        try:
            seg.join(self._token)
        except BaseException:
            seg.release()
            raise
        self._last_seq = A.load64(seg.e_last)
        if self._newest and self._last_seq > 0:
            self._last_seq -= 1  # the newest committed frame counts as not yet delivered
            A.store64(seg.e_last, self._last_seq)
        return seg

    def _set_seg(self, seg: _Segment) -> None:
        self._seg = seg
        self._r.seg = seg

    def _open_lock(self) -> None:
        if self._r.lock_fd >= 0:
            os.close(self._r.lock_fd)
            self._r.lock_fd = -1
        try:
            self._r.lock_fd = open_existing(self.lock_path, False)
        except Error:
            pass

    # ---- public API -------------------------------------------------------------------

    @property
    def format(self) -> FrameFormat:
        """The frame format of the current generation."""
        return self._live().fmt

    @property
    def generation(self) -> int:
        return self._live().h.generation

    @property
    def entry(self) -> int:
        """The index of this consumer's entry in the consumer table."""
        return self._live().entry

    @property
    def checksums(self) -> bool:
        """Whether the bus carries CRC-32C checksums."""
        return self._live().checksum

    def stats(self) -> ConsumerStats:
        s = self._live()
        nh = len(self._holds)
        if s.entry < 0 or self._broken:
            return ConsumerStats(s.h.generation, -1, self._last_seq, 0, 0, 0, s.shared_wake, self._checks,
                                 self._refused, self._resyncs, 0, self._holds_unsupported, 0, nh)
        if s.holds:
            hg, hr, ht = A.load64(s.e_hgranted), A.load64(s.e_hrefused), A.load64(s.e_htaken)
        else:
            hg = hr = ht = 0  # reserved words on a bus without holds: not ours to read as counters
        return ConsumerStats(s.h.generation, s.entry, A.load64(s.e_last), A.load64(s.e_delivered),
                             A.load64(s.e_dropped), A.load64(s.e_torn), s.shared_wake, self._checks,
                             self._refused, self._resyncs, hg, hr + self._holds_unsupported, ht, nh)

    def refusals(self) -> Tuple[int, int, Optional[CorruptSegment]]:
        """(refused, resyncs, why the last read was refused or the last re-synchronisation
        made, as a CorruptSegment that was not raised; None when there was none): amendment
        9's counters (``ConsumerStats.refused``, ``resyncs``), as Go's Consumer.Refusals.
        Reads no shared memory: a loop can call it after every frame."""
        return self._refused, self._resyncs, self._last_refusal

    def next(self, timeout: Optional[float] = None) -> Frame:
        """Waits for a frame newer than the last one delivered and returns the newest as
        a zero-copy, read-only view, validated by the sequence lock (and the checksum,
        when the bus carries one and ``verify_checksum`` is on).

        ``timeout`` in seconds (None: no limit) raises Timeout. It follows a new
        generation by itself (``Frame.generation_changed``). Raises EndOfStream (the
        producer closed the stream), ProducerGone and Stalled (once per episode:
        calling next() again keeps waiting), ChecksumMismatch, CorruptSegment (the file
        truncated under the consumer). A forged or torn word in the slot or the header
        (amendment 9) raises nothing: the read is refused and counted (``refusals()``).
        """
        return self._next(timeout, None, "next")

    def read_into(self, buf: Any, timeout: Optional[float] = None) -> Frame:
        """next() that copies the frame into ``buf`` (a writable, C-contiguous buffer:
        a numpy array, a bytearray, a torch tensor's ``.numpy()``), under the sequence
        lock. The returned Frame's ``array`` and ``planes`` are views of ``buf``.
        A buffer smaller than the frame raises BufferTooSmall and the frame is not
        consumed."""
        try:
            mv = memoryview(buf).cast("B")
        except TypeError as e:
            raise BadOptions(f"read_into needs a C-contiguous writable buffer: {e}", op="read", name=self.name) from None
        if mv.readonly:
            raise BadOptions("read_into needs a writable buffer", op="read", name=self.name)
        return self._next(timeout, (buf, mv), "read")

    def close(self) -> None:
        """Leaves the consumer table and unmaps the segment. Views still held stay
        readable (their mapping goes when the last one does)."""
        if self._closed:
            return
        self._closed = True
        self._r.broken = self._broken
        for h in list(self._holds):  # their bits go with the entry's hold_mask, in leave()
            h._released = True
        self._holds.clear()
        self._finalizer()

    def __enter__(self) -> "Consumer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        return self

    def __next__(self) -> Frame:
        try:
            return self.next()
        except EndOfStream:
            raise StopIteration from None

    def __repr__(self) -> str:
        if self._closed or self._seg is None:
            return f"<framebus.Consumer {self.name!r} closed>"
        s = self._seg
        return f"<framebus.Consumer {self.name!r} {s.fmt} generation={s.h.generation} entry={s.entry}>"

    def _live(self) -> _Segment:
        if self._closed or self._seg is None:
            raise Closed("consumer closed", op="use", name=self.name)
        return self._seg

    # ---- the read loop ----------------------------------------------------------------

    def _next(self, timeout: Optional[float], dst: Any, op: str) -> Frame:
        if self._closed:
            raise Closed("consumer closed", op=op, name=self.name)
        r = self._r
        if r.old is not None:
            r.old.release()
            r.old = None
        if self._eos:
            raise EndOfStream(self._eos_seq, op=op, name=self.name)
        deadline = None if timeout is None else _now() + int(max(0.0, timeout) * 1e9)
        N.ensure()  # our SIGBUS handler back on top if another one replaced it
        try:
            while True:
                try:
                    if self._broken:
                        self._recover_broken(deadline)
                    s = self._seg
                    if self._fresh:
                        self._fresh = False  # just woken through the mapping: intact as of the wake
                    elif not s.size_ok():  # type: ignore[union-attr]
                        self._broken = self._r.broken = True
                        continue
                    fr = self._try_read(dst)
                    if fr is None and _trunc(s.group):  # type: ignore[union-attr]
                        self._broken = self._r.broken = True  # read zeros: truncated under the read
                        continue
                    if self._hb_due:
                        self._hb_due = False
                        _store8(s.e_hb, fr.wake_ns if fr is not None else _now(), _SC)  # type: ignore[union-attr]
                    if fr is not None:
                        return fr
                    # Nothing new: a RETIRED or BROKEN segment means the name must be looked at now.
                    st = _load4(s.state_addr, _SC)  # type: ignore[union-attr]
                    if st == STATE_RETIRED or st == STATE_BROKEN:
                        self._check()
                    self._wait(deadline)
                except _Followed:
                    continue
        except Error as e:
            _label(e, op, self.name)
            raise

    def _try_read(self, dst: Any) -> Optional[Frame]:
        """The read protocol of PROTOCOL.md section 5; None when there is nothing new."""
        s = self._seg
        assert s is not None
        ctl = s.ctl
        torn = 0
        spins = 0
        verify = s.checksum and self.verify_checksum
        live_crc = verify and dst is None and N.NATIVE_CRC
        got = 0
        while True:
            a = _load4(s.active_addr, _SC)
            if a >= s.slot_count:
                self._refuse(a, 0, CorruptSegment("active", a, f"want < slot_count ({s.slot_count})"))
                return None  # forged or torn: the producer's next flip mends it (amendment 9)
            lock_addr, desc, off = s.slots[a]
            l1 = _load8(lock_addr, _SC)  # step 1 (at least acquire)
            if l1 & 1:
                spins += 1
                if spins > 1000:
                    return None  # a producer died mid-write: the timeouts will tell
                continue
            seq, capture, commit, n, checksum, fflags, ml = SLOT_STRUCT.unpack_from(ctl, desc + 8)  # step 2
            if seq <= self._last_seq or (self._refused and a == self._refused_slot and l1 == self._refused_lock):
                return None  # nothing new (or a stale active, or a frame refused already)
            meta = ctl[desc + SLOT_USER_META:desc + SLOT_USER_META + min(ml, USER_META_MAX)] if ml else b""
            bad = n > s.capacity or ml > USER_META_MAX
            short = False
            if not bad and n > 0:
                if dst is not None:
                    if dst[1].nbytes < n:
                        short = True
                    else:
                        dst[1][:n] = s.data_mv[off:off + n]
                elif live_crc:
                    # The helper's CRC (about 0.3 ms for 1080p RGBA) of the slot itself, under the
                    # sequence lock: step 3 below says whether it saw one frame.
                    got = N.crc32c_at(s.data_addr + off, n)
                elif verify:
                    scratch = self._scratch_for(s.capacity)
                    scratch[:n] = s.data_mv[off:off + n]  # the checksum is taken of a copy made under the lock
            if not _TSO:
                _fence(_SC)  # the load fence of step 3 (dmb ish on arm64; x86-64 needs none)
            if _load8(lock_addr, _SC) != l1:  # step 3: overwritten mid-read
                if _trunc(s.group):
                    self._broken = self._r.broken = True
                    raise _Followed()
                torn += 1
                _fadd8(s.e_torn, 1, _SC)
                continue
            if _trunc(s.group):
                # The file was truncated under this read: what it read is zeros from the guard.
                self._broken = self._r.broken = True
                raise _Followed()
            wake = _now()  # read and validated; what follows is bookkeeping
            last = _load8(s.last_seq_addr, _SC)
            if seq > last:
                # Newer than the header says (amendment 9): one ahead is a frame committed and
                # not yet flipped (its flip and wake follow); more is a forged word.
                if seq > last + 1:
                    self._refuse(a, l1, CorruptSegment("frame_seq", seq, f"slot {a}: newer than last_seq {last}"))
                return None
            if bad:
                if n > s.capacity:
                    why = CorruptSegment("bytes", n, f"slot {a}: more than the slot capacity {s.capacity}")
                else:
                    why = CorruptSegment("user_meta_len", ml, f"slot {a}: more than {USER_META_MAX}")
                self._refuse(a, l1, why)
                return None
            if short:
                raise BufferTooSmall(n, dst[1].nbytes)
            crc_bad = False
            if verify and n > 0:
                if not live_crc:
                    got = crc32c(dst[1][:n] if dst is not None else self._scratch_mv[:n])  # type: ignore[index]
                crc_bad = got != checksum
            last = self._last_seq
            dropped = seq - last - 1 if seq > last + 1 else 0
            # Step 4: the entry's words first, our own last_seq after them.
            _store8(s.e_last, seq, _SC)
            if crc_bad:
                # Intact by the sequence lock yet not what the producer summed: corrupted in
                # memory. Consumed and counted as dropped, so the next call moves on.
                _fadd8(s.e_dropped, dropped + 1, _SC)
                self._last_seq = seq
                raise ChecksumMismatch(seq, checksum, got)
            if dropped:
                _fadd8(s.e_dropped, dropped, _SC)
            _fadd8(s.e_delivered, 1, _SC)
            self._last_seq = seq
            if fflags & FRAME_EOS:
                self._eos = True
                self._eos_seq = seq
                raise EndOfStream(seq, dropped)
            f = Frame.__new__(Frame)
            f.seq, f.capture_ns, f.commit_ns, f.wake_ns, f.nbytes = seq, capture, commit, wake, n
            f.dropped, f.torn_retries, f.generation = dropped, torn, s.h.generation
            f.generation_changed, f.user_meta, f.format, f.checksum = self._gen_changed, meta, s.fmt, checksum
            if dst is None:
                f._seg, f._lock_addr, f._lock, f._owner, f._slot = s, lock_addr, l1, self, a
                f._array, f._planes = s.arrays[a], s.planes[a]
                f._data = s.data_np[off:off + s.capacity]
            else:
                f._seg, f._lock_addr, f._lock, f._owner, f._slot = None, 0, 0, None, -1
                f._data, f._array, f._planes = self._dst_views(dst, s.fmt)
            self._gen_changed = False
            return f

    # ---- holds (amendment 10) ------------------------------------------------------------

    def _grant(self, f: Frame) -> Hold:
        """G1-G5 of amendment 10 for the slot of a frame this consumer read."""
        if self._closed:
            raise Closed("consumer closed", op="hold", name=self.name)
        s = f._seg
        assert s is not None
        a, l1, lock_addr = f._slot, f._lock, f._lock_addr
        if not s.holds:
            self._holds_unsupported += 1
            raise _label_hold(HoldUnsupported("unsupported", f.seq, "the producer does not honour holds (no flag "
                                                               "bit 2): copy the frame (read_into)"), self.name)
        if s is not self._seg or s.released or s.entry < 0 or not s.size_ok():
            raise self._hold_refused(s, HoldOverwritten("overwritten", f.seq, "the consumer left that generation"),
                                     count=False)
        bit = 1 << a
        if s.hold_refs[a] > 0:
            # Held already (the same frame: a held slot is not written): one bit, counted here.
            if _load8(lock_addr, _SC) != l1 or not _load4(s.e_hold, _SC) & bit:
                raise self._hold_refused(s, HoldOverwritten("overwritten", f.seq, f"slot {a} was overwritten"))
        else:
            pend = bit << HOLD_PENDING_SHIFT
            A.fetch_or32(s.e_hold, bit | pend)  # G1
            if not _lock_settles(lock_addr, l1):  # G2
                A.fetch_and32(s.e_hold, ~(bit | pend))
                raise self._hold_refused(s, HoldOverwritten("overwritten", f.seq, f"slot {a} was overwritten"))
            _fence(_SC)  # G3: the entries' words by plain loads after a full barrier (as seq_cst loads)
            m = s.ent_masks[s.ent_states == ENTRY_ACTIVE]
            union = int(np.bitwise_or.reduce(m)) & ((1 << s.slot_count) - 1) if m.size else 0
            if bin(union).count("1") > s.hold_cap:
                A.fetch_and32(s.e_hold, ~(bit | pend))
                raise self._hold_refused(s, HoldCapReached(
                    "cap", f.seq, f"{bin(union & ~bit).count('1')} of the bus's {s.hold_cap} held slots are taken "
                                  f"({s.slot_count} slots)"))
            A.fetch_and32(s.e_hold, ~pend)  # G4
            if not _lock_settles(lock_addr, l1):  # G5
                A.fetch_and32(s.e_hold, ~bit)
                raise self._hold_refused(s, HoldOverwritten("overwritten", f.seq, f"slot {a} was overwritten"))
        if _trunc(s.group):
            raise self._hold_refused(s, HoldOverwritten("overwritten", f.seq, "the file was truncated"), count=False)
        s.hold_refs[a] += 1
        _fadd8(s.e_hgranted, 1, _SC)
        _fadd8(s.h_granted, 1, _SC)
        h = Hold(f, self, s, a)
        self._holds.add(h)
        return h

    def _hold_refused(self, s: _Segment, e: Error, count: bool = True) -> Error:
        if count and s.size_ok():
            _fadd8(s.e_hrefused, 1, _SC)
            _fadd8(s.h_refused, 1, _SC)
        return _label_hold(e, self.name)

    def _refuse(self, a: int, lock: int, why: CorruptSegment) -> None:
        """Counts a read refused for a word no honest producer writes (amendment 9): the
        frame in slot ``a`` under ``lock`` is not taken, and not looked at again while
        that lock stays."""
        self._refused += 1
        self._last_refusal = why
        self._refused_slot, self._refused_lock = a, lock

    def _scratch_for(self, n: int) -> memoryview:
        if self._scratch is None or len(self._scratch) < n:
            self._scratch = bytearray(n)
            self._scratch_mv = memoryview(self._scratch)
        return self._scratch_mv  # type: ignore[return-value]

    def _dst_views(self, dst: Any, fmt: FrameFormat) -> Tuple[np.ndarray, Optional[np.ndarray], Tuple[np.ndarray, ...]]:
        obj, mv = dst
        c = self._dst_cache
        if c is not None and c[0] is obj and c[1] is fmt and c[2] == mv.nbytes:
            return c[3]
        base = np.frombuffer(mv, np.uint8)
        if fmt.fourcc == MJPEG:
            views: Tuple[np.ndarray, Optional[np.ndarray], Tuple[np.ndarray, ...]] = (base, None, ())
        else:
            try:
                arr: Optional[np.ndarray] = array_view(fmt, base, 0, True)
            except BadOptions:
                arr = None
            try:
                planes = plane_views(fmt, base, 0, True)
            except BadOptions:
                planes = ()
            views = (base, arr, planes)
        self._dst_cache = (obj, fmt, mv.nbytes, views)
        return views

    # ---- waiting (section 5, amendment 7) ---------------------------------------------

    def _pending(self) -> bool:
        """The active slot holds a committed frame newer than the last one delivered: not
        one newer than the header says, nor one refused already (amendment 9: a forged
        word must not keep the consumer awake)."""
        s = self._seg
        assert s is not None
        a = _load4(s.active_addr, _SC)
        if a >= s.slot_count:
            return False
        lock_addr = s.slots[a][0]
        seq = _load8(lock_addr + 8, _SC)
        if seq <= self._last_seq or seq > _load8(s.last_seq_addr, _SC):
            return False
        return not (self._refused and a == self._refused_slot and _load8(lock_addr, _SC) == self._refused_lock)

    def _wait(self, deadline: Optional[int]) -> None:
        """Sleeps until a wake, checking liveness and generation on every timeout. On
        the shared wake word when the producer keeps one (amendment 7), else on the
        entry's semaphore."""
        s = self._seg
        assert s is not None
        if self._last_check == 0:
            self._last_check = _now()
        # Wakes that bring nothing new (a forged sequence number makes every frame look old)
        # must not put the heartbeat's look off for ever: it comes once a heartbeat interval
        # even while wakes keep coming (Go's wait does the same).
        now = _now()
        if now - self._last_check >= s.hb_ns:
            if self._on_timeout(now):
                return
            s = self._seg
            assert s is not None
        while True:
            shared = s.shared_wake
            if shared:
                word, waiters = s.wake_seq_addr, s.wake_waiters_addr
                val = _load4(word, _SC)  # before the pending check: the order is the rule
            else:
                if _xchg4(s.e_sem, 0, _SC) > 0:
                    self._hb_due = True
                    self._fresh = True  # the exchange itself just went through the mapping
                    return
                word, val, waiters = s.e_sem, 0, s.e_waiters
            timeout = s.hb_ns
            if deadline is not None:
                left = deadline - _now()
                if left <= 0:
                    raise Timeout("no frame before the deadline")
                timeout = min(timeout, left)
            sliced = timeout > _SIGNAL_SLICE_NS and threading.current_thread() is threading.main_thread()
            if sliced:
                timeout = _SIGNAL_SLICE_NS
            counted = False
            r = F.TIMED_OUT
            try:
                if shared:
                    _fadd4(waiters, 1, _SC)  # the shared count: one per sleeper (amendment 7)
                else:
                    _store4(waiters, 1, _SC)  # the entry's own word: stored, not added (amendment 11)
                counted = True
                if shared and self._pending():
                    r = F.WOKEN
                    self._hb_due = True
                    return
                r = F.wait(word, val, timeout)
            finally:
                # A wake (or EAGAIN: the word had moved on) means the kernel read the word: the
                # mapping was intact then, as it is after an fstat. After anything else the file
                # may have been truncated while we slept: look before touching it. The guard's
                # flag says whether an access already found it truncated.
                intact = (r == F.WOKEN or r == F.CHANGED or s.size_ok()) and not _trunc(s.group)
                if counted and intact:
                    if shared:
                        _fadd4(waiters, _MINUS1, _SC)
                        if r == F.TIMED_OUT and _load4(word, _SC) != val:
                            # Amendment 11: the producer committed while we slept, yet nothing
                            # woke us: wake_waiters was forged (to 0, or to 2^32 - 1 which our
                            # += 1 wrapped to 0). Counted once more, for good: a sleeper is
                            # counted again from the next sleep on (a word left one too high
                            # costs a FUTEX_WAKE with nobody to wake).
                            _fadd4(waiters, 1, _SC)
                            self._wake_repairs += 1
                    else:
                        _store4(waiters, 0, _SC)
            if not intact or r == F.FAULT:
                self._broken = self._r.broken = True
                raise _Followed()  # the read loop recovers without touching the mapping
            if shared and (r == F.WOKEN or r == F.CHANGED):
                # Go re-reads the word to tell a spurious wake; reading the slot at once tells it
                # too (nothing new: the read loop sleeps again), and is quicker for a real one.
                self._hb_due = True
                self._fresh = True
                return
            now = _now()
            if r == F.TIMED_OUT and sliced and now - self._last_check < s.hb_ns:
                continue  # only the signal slice ended (a deadline is looked at above)
            if r == F.TIMED_OUT or now - self._last_check >= s.hb_ns:
                if self._on_timeout(now):
                    return
                s = self._seg
                assert s is not None

    def _on_timeout(self, now: int) -> bool:
        """What the consumer does every heartbeat interval while it waits: the entry's
        heartbeat, then the look at the producer (``_check``) unless a committed frame is
        waiting to be read first. True: read now."""
        s = self._seg
        assert s is not None
        self._last_check = now
        self._checks += 1
        _store8(s.e_hb, now, _SC)
        if self._pending():
            # A committed frame we have not read (say, the end of stream of a producer
            # that closed while we were stopped) comes before any verdict on it.
            return True
        self._check()
        return False

    # ---- liveness and generations (sections 2 and 5) -----------------------------------

    def _check(self) -> None:
        """Keep the entry; look at state, owner, heartbeat and the file behind the name."""
        s = self._seg
        assert s is not None
        if _trunc(s.group):
            self._broken = self._r.broken = True
            raise _Followed()
        if A.load32(s.e_state) != ENTRY_ACTIVE or A.load64(s.e_token) != self._token:
            if not s.size_ok():  # zeros from the guard, not a peer: the file was truncated
                self._broken = self._r.broken = True
                raise _Followed()
            # Taken from us (it must not be while we hold its lock, but a hostile peer can
            # write anything): join again, keeping our accounting.
            unlock(s.fd, s.e_off, CONSUMER_ENTRY_SIZE)
            s.entry = -1
            s.join(self._token)
            A.store64(s.e_last, self._last_seq)
        info = lstat_path(self.path)
        same = not info.exists or (info.dev, info.ino) == s.ident
        if not same:
            if self._follow():
                raise _Followed()
        st = A.load32(s.state_addr)
        alive = self._owner_alive()
        if st == STATE_RETIRED or st == STATE_BROKEN or not info.exists:
            if alive:
                return  # the producer is replacing the segment: wait for it
            if st == STATE_RETIRED:
                raise Retired("segment RETIRED without an end of stream, and the producer is gone")
        if not alive:
            self._stalled_reported = False
            if not self._gone_reported:
                self._gone_reported = True
                raise ProducerGone(f"producer gone (no lock on {self.lock_path})")
            return
        if same:
            self._resync()
        self._gone_reported = False
        age = _now() - A.load64(s.heartbeat_addr)
        if age > 3 * s.hb_ns:
            if _trunc(s.group) or not s.size_ok():
                # The heartbeat read zeros: the file was truncated since the look above.
                self._broken = self._r.broken = True
                raise _Followed()
            if not self._stalled_reported:
                self._stalled_reported = True
                raise Stalled(f"producer stalled: heartbeat {age / 1e6:.1f} ms old "
                              f"(interval {s.hb_ns // 1_000_000} ms)", age)
            return
        self._stalled_reported = False

    def _resync(self) -> None:
        """Takes the header's last_seq as the consumer's own when its own is ahead of it
        while the active slot holds an intact frame of exactly that number (amendment 9): a
        forged frame_seq or last_seq moved it ahead, and without this every real frame would
        be "nothing new" for good. Called at each check, while the producer is alive."""
        s = self._seg
        assert s is not None
        last = _load8(s.last_seq_addr, _SC)
        if last >= self._last_seq:
            return
        a = _load4(s.active_addr, _SC)
        if a >= s.slot_count:
            return
        lock_addr = s.slots[a][0]
        l1 = _load8(lock_addr, _SC)
        seq = _load8(lock_addr + 8, _SC)
        if not _TSO:
            _fence(_SC)
        if l1 & 1 or _load8(lock_addr, _SC) != l1 or seq != last:
            return
        self._last_refusal = CorruptSegment(
            "last_seq", last, f"this consumer's last frame {self._last_seq} is ahead of the bus's last_seq {last}: "
                              "re-synchronised")
        self._resyncs += 1
        self._last_seq = last
        _store8(s.e_last, last, _SC)

    def _owner_alive(self) -> bool:
        """The producer's write lock on byte 0 of the lock file (F_OFD_GETLK, taking nothing)."""
        r = self._r
        if r.lock_fd >= 0:
            info = lstat_path(self.lock_path)
            if info.exists:
                try:
                    st = _fstat(r.lock_fd)
                    if (st.st_dev, st.st_ino) != (info.dev, info.ino):
                        self._open_lock()  # a new producer made a new lock file
                except OSError:
                    self._open_lock()
        else:
            self._open_lock()
        return r.lock_fd >= 0 and owner_held(r.lock_fd)

    def _follow(self) -> bool:
        """Joins the generation now behind the name; False when it is not there or not ready."""
        try:
            fd = open_existing(self.path, True)
        except NotFound:
            return False
        try:
            seg = _Segment(fd, self.path)
        except _NotReady:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        try:
            seg.join(self._token)
        except BaseException:
            seg.release()
            raise
        old = self._seg
        if old is not None and not self._broken:
            old.leave(self._token)
        self._adopt(seg)
        return True

    def _adopt(self, seg: _Segment) -> None:
        r = self._r
        if r.old is not None:  # a second change within one call
            r.old.release()
        r.old = self._seg  # released at the next call: the caller may hold frames of it
        self._set_seg(seg)
        # Amendment 1: when the producer continued the numbering, keep our last_seq (frames
        # committed before we joined count as dropped); when it restarted, restart with it.
        joined = A.load64(seg.e_last)
        if joined >= self._last_seq:
            A.store64(seg.e_last, self._last_seq)
        else:
            self._last_seq = joined
        self._gen_changed = True
        self._gone_reported = self._stalled_reported = False
        self._broken = self._r.broken = False
        self._open_lock()

    def _recover_broken(self, deadline: Optional[int]) -> None:
        """Waits (one heartbeat interval at most) for a new generation to replace a segment
        truncated under us, touching nothing of the broken mapping."""
        s = self._seg
        assert s is not None
        until = _now() + s.hb_ns
        if deadline is not None:
            until = min(until, deadline)
        while True:
            info = lstat_path(self.path)
            if info.exists and (info.dev, info.ino) != s.ident:
                try:
                    if self._follow():
                        raise _Followed()
                except (CorruptSegment, NotFound):
                    pass
            if _now() >= until:
                if deadline is not None and _now() >= deadline:
                    raise Timeout("no frame before the deadline")
                if not self._owner_alive():
                    raise ProducerGone("producer gone, and the segment file was truncated")
                size = 0
                try:
                    size = _fstat(s.fd).st_size
                except OSError:
                    pass
                raise CorruptSegment("file size", size, f"segment file truncated under the consumer (total_size "
                                                        f"{s.total_size}); waiting for the producer's next generation")
            time.sleep(0.005)


def _label_hold(e: Error, name: str) -> Error:
    e.op, e.name = "hold", name
    return e


def _label(e: Error, op: str, name: str) -> None:
    if not e.op:
        e.op = op
    if not e.name:
        e.name = name
