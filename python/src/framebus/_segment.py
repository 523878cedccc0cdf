"""The consumer's side of one generation (PROTOCOL.md section 2): its mappings and its entry
in the consumer table (join, leave), and the state every part of the consumer shares.

The consumer is split as the Go consumer is (framebus/consumer.go, read.go, wait.go,
liveness.go, hold.go): Python has no methods of one type across files, so each part is a
class, each one built on the one before (``_Core`` here, then ``_hold._Holder``,
``_liveness._Liveness``, ``_wait._Waiter``, ``_read._Reader``, and ``_consumer.Consumer``),
and ``_Core`` holds the state they share.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import time
import weakref
from typing import TYPE_CHECKING, Any, List, Optional, Tuple

import numpy as np

from . import _atomics as A
from ._errors import CorruptSegment, Error, TableFull, VersionMismatch
from ._format import MJPEG, Pixels, array_view, is_packed, plane_views
from ._layout import (CONSUMER_ENTRY_SIZE, ENT_DELIVERED, ENT_DROPPED, ENT_HEARTBEAT_NS, ENT_HOLD_MASK,
                      ENT_HOLDS_GRANTED, ENT_HOLDS_REFUSED, ENT_HOLDS_TAKEN_BACK, ENT_LAST_SEQ, ENT_PID, ENT_PIDNS,
                      ENT_SEM, ENT_STATE, ENT_TOKEN, ENT_TORN_RETRIES, ENT_WAITERS, ENTRY_ACTIVE, ENTRY_CLAIMING,
                      ENTRY_FREE, OFF, STATE_INITIALIZING)
from ._mapping import Mapping, read_header
from ._sys import bus_dir, lock_path, open_existing, pidns, segment_path, try_lock, unlock, validate_name

if TYPE_CHECKING:
    from ._hold import Hold

_now = time.monotonic_ns  # CLOCK_MONOTONIC, the clock of every *_ns field
_load8 = A.raw_load8
_SC = A.SEQ_CST

Planes = Tuple[Pixels, ...]


class _NotReady(Exception):
    """The segment is still INITIALIZING."""


class _Followed(Exception):
    """The consumer joined a new generation: read again."""


_SETTLE_READS = 64


def lock_settles(addr: int, l1: int) -> bool:
    """Whether a slot's lock is l1, reading it again a few times while it is l1 + 1: a
    producer backing off at C4 of amendment 10 (holds) made the slot odd without writing it
    and stores l1 back at once. Still odd after that, or any other value: rewritten."""
    v: int = _load8(addr, _SC)
    for _ in range(_SETTLE_READS):
        if v != l1 + 1:
            break
        v = _load8(addr, _SC)
    return v == l1


class _Segment(Mapping):
    """One generation as a consumer sees it: the control block mapped read-write, the
    frame data read-only (two MAP_SHARED mappings of one descriptor)."""

    _MAPPED = ("ctl", "data", "data_np", "arrays", "planes")

    def __init__(self, fd: int, path: str) -> None:
        self.path = path
        self.entry = -1
        try:
            h, st = read_header(fd)  # before anything is mapped: no SIGBUS from a short file
        except VersionMismatch:
            _count_version_mismatch(fd)
            raise
        if h.state == STATE_INITIALIZING:
            raise _NotReady()
        super().__init__(fd, h, (st.st_dev, st.st_ino))
        self.hb_ns = h.heartbeat_interval_ms * 1_000_000
        self.hold_cap = max(0, h.slot_count - 2)
        self.hold_refs = [0] * h.slot_count  # this consumer's holds per slot (one bit each)
        try:
            self.ctl = self.map(h.payload_offset, 0, True, populate=True)
            self.data = self.map(h.payload_size, h.payload_offset, False, populate=True)
        except (OSError, ValueError) as e:
            self.unmap()
            raise CorruptSegment("file size", st.st_size, f"cannot map the segment: {e}") from None
        self.bind(self.ctl)
        self.data_np: Pixels = np.frombuffer(self.data, np.uint8)
        self.data_addr = int(self.data_np.ctypes.data)
        self.data_mv = memoryview(self.data)
        self._views.append(self.data_mv)
        # Per slot: lock address, descriptor offset in the control block, data offset.
        self.slots: List[Tuple[int, int, int]] = []
        self.arrays: List[Optional[Pixels]] = []
        self.planes: List[Planes] = []
        for i in range(h.slot_count):
            o = i * h.slot_stride
            self.slots.append((self.lock[i], self.desc[i], o))
            if self.fmt.fourcc == MJPEG:
                self.arrays.append(None)
                self.planes.append(())
            else:
                self.arrays.append(array_view(self.fmt, self.data_np, o, False) if is_packed(self.fmt) else None)
                self.planes.append(plane_views(self.fmt, self.data_np, o, False))

    def bind_entry(self, i: int) -> None:
        e = self.entry_off[i]
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
        for i, off in enumerate(self.entry_off):
            if not try_lock(self.fd, off, CONSUMER_ENTRY_SIZE, False):
                continue  # being reclaimed (exclusive lock): try another
            if not A.cas32(self.base + off + ENT_STATE, ENTRY_FREE, ENTRY_CLAIMING):
                unlock(self.fd, off, CONSUMER_ENTRY_SIZE)
                continue
            self.bind_entry(i)
            A.store32(self.e_pid, os.getpid() & 0xFFFFFFFF)
            A.store64(self.e_pidns, pidns())  # amendment 8 (PID namespaces), with pid, before the CAS to 2
            A.store32(self.e_sem, 0)
            A.store32(self.e_waiters, 0)
            A.store64(self.e_token, token)
            A.store64(self.e_last, A.load64(self.last_seq_addr))
            A.store64(self.e_delivered, 0)
            A.store64(self.e_dropped, 0)
            A.store64(self.e_torn, 0)
            A.store32(self.e_hold, 0)  # amendment 10 (holds): a joiner stores 0 in hold_mask while claiming
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
                # not know amendment 8 (PID namespaces) would otherwise inherit it
                # (docs/PYTHON.md, findings).
                A.store64(self.e_pidns, 0)
                A.store32(self.e_hold, 0)  # amendment 10 (holds): every hold ends before the CAS 2 -> 0
                self.hold_refs = [0] * self.slot_count
                A.cas32(self.e_state, ENTRY_ACTIVE, ENTRY_FREE)
        finally:
            unlock(self.fd, self.e_off, CONSUMER_ENTRY_SIZE)
            self.entry = -1


def _count_version_mismatch(fd: int) -> None:
    """Bumps version_mismatch_count of a segment whose abi_version we refuse (section 3.1)."""
    try:
        if os.fstat(fd).st_size < 64:
            return
        m = mmap.mmap(fd, 64, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
    except (OSError, ValueError):
        return
    try:
        A.fetch_add64(ctypes.addressof(ctypes.c_char.from_buffer(m)) + OFF["version_mismatch_count"], 1)
    finally:
        m.close()


def open_joined(path: str, token: int) -> _Segment:
    """The segment at ``path`` mapped and joined. Raises NotFound, _NotReady (the descriptor
    closed), what the header's checks raise, TableFull."""
    fd = open_existing(path, True)
    try:
        seg = _Segment(fd, path)
    except BaseException:
        os.close(fd)
        raise
    try:
        seg.join(token)
    except BaseException:
        seg.release()
        raise
    return seg


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


class _Core:
    """The state of a Consumer that its parts share, and the few steps they all take."""

    def __init__(self, name: str, dir: Optional[str], verify_checksum: bool, newest: bool) -> None:
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
        # Amendment 9 (forged words refused): refused reads, re-synchronisations, why the
        # last read was refused, and the slot and lock of the last frame refused (not
        # looked at again meanwhile).
        self._refused = 0
        self._resyncs = 0
        self._last_refusal: Optional[CorruptSegment] = None
        self._refused_slot = 0
        self._refused_lock = 0
        self._holds: "weakref.WeakSet[Hold]" = weakref.WeakSet()
        self._holds_unsupported = 0
        # Amendment 11 (wake words heal): wake_waiters counted once more after a missed wake.
        self._wake_repairs = 0
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

    def _set_seg(self, seg: _Segment) -> None:
        self._seg = seg
        self._r.seg = seg

    def _set_broken(self) -> None:
        """The file was truncated under us: nothing of the mapping is touched again."""
        self._broken = self._r.broken = True

    def _open_lock(self) -> None:
        if self._r.lock_fd >= 0:
            os.close(self._r.lock_fd)
            self._r.lock_fd = -1
        try:
            self._r.lock_fd = open_existing(self.lock_path, False)
        except Error:
            pass
