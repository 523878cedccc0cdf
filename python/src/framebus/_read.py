"""The consumer's read, as the Go consumer's (framebus/read.go): PROTOCOL.md section 5's read
of the active slot under its sequence lock, amendment 9's refusals (forged words refused and
counted, never raised), the accounting of step 4, and ``Frame``, what a read delivers."""

from __future__ import annotations

import time
from typing import Any, Optional, Tuple

import numpy as np

from . import _atomics as A
from . import _native as N
from ._crc32c import crc32c
from ._errors import BadOptions, BufferTooSmall, ChecksumMismatch, CorruptSegment, EndOfStream
from ._format import MJPEG, FrameFormat, Pixels, array_view, plane_views
from ._hold import Hold
from ._layout import FRAME_EOS, SLOT_STRUCT, SLOT_USER_META, USER_META_MAX
from ._segment import Planes, _Followed, _Segment, lock_settles
from ._wait import _Waiter

_now = time.monotonic_ns
_load4, _load8, _store8 = A.raw_load4, A.raw_load8, A.raw_store8
_fadd8, _fence = A.raw_fadd8, A.raw_fence
_SC = A.SEQ_CST
_TSO = A.TSO
_trunc = N.truncated

#: A slot descriptor from frame_seq on: frame_seq, capture_ns, commit_ns, bytes, checksum,
#: frame_flags, user_meta_len.
_Desc = Tuple[int, ...]
_DstViews = Tuple[Pixels, Optional[Pixels], Planes]


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
    _seg: Optional[_Segment]
    _lock_addr: int
    _lock: int
    _array: Optional[Pixels]
    _planes: Planes
    _data: Pixels
    _owner: Optional["_Reader"]
    _slot: int

    @property
    def array(self) -> Pixels:
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
    def planes(self) -> Planes:
        """Y and interleaved UV (h/2, w/2, 2) for NV12; Y, U, V for I420; (array,) otherwise."""
        if self.format.fourcc == MJPEG:
            return (self.array,)
        return self._planes

    @property
    def data(self) -> Pixels:
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
        return lock_settles(self._lock_addr, self._lock) and not _trunc(seg.group)

    def hold(self) -> Hold:
        """Keeps this zero-copy frame (amendment 10, holds): until the Hold is released the
        producer never writes its slot, so ``array`` stays intact across later ``next()`` calls::

            with f.hold() as h:
                model(torch.from_numpy(h.array))

        Never waits: a refusal raises HoldRefused (HoldCapReached: the bus's
        ``slot_count - 2`` held slots are taken; HoldOverwritten: the slot was overwritten
        since the frame was read; HoldUnsupported: the producer does not honour holds);
        copy instead (``read_into``). A frame from ``read_into()`` is the caller's buffer:
        its Hold holds nothing and is always valid."""
        if self._seg is None or self._owner is None:
            return Hold(self, None, None, -1)
        return self._owner._grant(self)

    def __repr__(self) -> str:
        return (f"<framebus.Frame seq={self.seq} {self.format} nbytes={self.nbytes} dropped={self.dropped} "
                f"generation={self.generation}{' (new)' if self.generation_changed else ''}>")


class _Reader(_Waiter):
    """The consumer's part that reads a frame."""

    def _try_read(self, dst: Any) -> Optional[Frame]:
        """The read protocol of PROTOCOL.md section 5; None when there is nothing new."""
        s = self._seg
        assert s is not None
        ctl = s.ctl
        torn = 0
        spins = 0
        verify = s.checksum and self.verify_checksum
        live_crc = verify and dst is None and N.NATIVE_CRC
        got: Optional[int] = None
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
            d: _Desc = SLOT_STRUCT.unpack_from(ctl, desc + 8)  # step 2
            seq, n, ml = d[0], d[3], d[6]
            if seq <= self._last_seq or (self._refused and a == self._refused_slot and l1 == self._refused_lock):
                return None  # nothing new (or a stale active, or a frame refused already)
            meta = ctl[desc + SLOT_USER_META:desc + SLOT_USER_META + min(ml, USER_META_MAX)] if ml else b""
            bad = n > s.capacity or ml > USER_META_MAX
            if not bad and n > 0:
                if dst is not None:
                    if dst[1].nbytes >= n:
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
                    self._set_broken()
                    raise _Followed()
                torn += 1
                _fadd8(s.e_torn, 1, _SC)
                continue
            if _trunc(s.group):
                # The file was truncated under this read: what it read is zeros from the guard.
                self._set_broken()
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
            return self._deliver(s, dst, a, l1, d, meta, torn, wake, got)

    def _deliver(self, s: _Segment, dst: Any, a: int, l1: int, d: _Desc, meta: bytes, torn: int, wake: int,
                 got: Optional[int]) -> Frame:
        """Step 4 for a frame read and validated in slot ``a`` under lock ``l1``: the checksum
        (``got`` when it was taken under the lock), the entry's words, our own last_seq; the
        end of stream raised, any other frame returned."""
        seq, capture, commit, n, checksum, fflags, _ = d
        if dst is not None and n > 0 and dst[1].nbytes < n:
            raise BufferTooSmall(n, dst[1].nbytes)
        crc_bad = False
        if s.checksum and self.verify_checksum and n > 0:
            if got is None:
                got = crc32c(dst[1][:n] if dst is not None else self._scratch_view()[:n])
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
            raise ChecksumMismatch(seq, checksum, got or 0)
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
            lock_addr, _, off = s.slots[a]
            f._seg, f._lock_addr, f._lock, f._owner, f._slot = s, lock_addr, l1, self, a
            f._array, f._planes = s.arrays[a], s.planes[a]
            f._data = s.data_np[off:off + s.capacity]
        else:
            f._seg, f._lock_addr, f._lock, f._owner, f._slot = None, 0, 0, None, -1
            f._data, f._array, f._planes = self._dst_views(dst, s.fmt)
        self._gen_changed = False
        return f

    def _refuse(self, a: int, lock: int, why: CorruptSegment) -> None:
        """Counts a read refused for a word no honest producer writes (amendment 9, forged
        words refused): the frame in slot ``a`` under ``lock`` is not taken, and not looked
        at again while that lock stays."""
        self._refused += 1
        self._last_refusal = why
        self._refused_slot, self._refused_lock = a, lock

    def _scratch_for(self, n: int) -> memoryview:
        if self._scratch is None or len(self._scratch) < n:
            self._scratch = bytearray(n)
            self._scratch_mv = memoryview(self._scratch)
        return self._scratch_view()

    def _scratch_view(self) -> memoryview:
        mv = self._scratch_mv
        assert mv is not None
        return mv

    def _dst_views(self, dst: Any, fmt: FrameFormat) -> _DstViews:
        obj, mv = dst
        c = self._dst_cache
        if c is not None and c[0] is obj and c[1] is fmt and c[2] == mv.nbytes:
            views: _DstViews = c[3]
            return views
        base: Pixels = np.frombuffer(mv, np.uint8)
        if fmt.fourcc == MJPEG:
            views = (base, None, ())
        else:
            try:
                arr: Optional[Pixels] = array_view(fmt, base, 0, True)
            except BadOptions:
                arr = None
            try:
                planes = plane_views(fmt, base, 0, True)
            except BadOptions:
                planes = ()
            views = (base, arr, planes)
        self._dst_cache = (obj, fmt, mv.nbytes, views)
        return views
