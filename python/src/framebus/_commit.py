"""The producer's publication of a frame (PROTOCOL.md section 4), as the Go producer's
(framebus/commit.go): the back slot taken (steps 1-2; with holds, amendment 10, chosen by
``_holds``), the frame copied or lent, the commit (steps 3-6) or the abort."""

from __future__ import annotations

import struct
import time
from typing import Any, Optional

import numpy as np

from . import _atomics as A
from . import _native as N
from ._crc32c import crc32c
from ._errors import BadOptions, Closed, CorruptSegment, Error
from ._format import MJPEG, Pixels, packed_size
from ._generation import _PSeg
from ._holds import _BackSlot
from ._layout import SLOT_USER_META, USER_META_MAX

_now = time.monotonic_ns
_SC = A.SEQ_CST
_load4, _load8, _store4, _store8 = A.raw_load4, A.raw_load8, A.raw_store4, A.raw_store8
_fadd8 = A.raw_fadd8
_DESC = struct.Struct("<QQQQIII")  # frame_seq, capture_ns, commit_ns, bytes, checksum, frame_flags, user_meta_len


class _Committer(_BackSlot):
    """The producer's part that publishes frames."""

    def _ready(self) -> _PSeg:
        """With _mu held: the current segment, renewed first if it must be."""
        if self._closed:
            raise Closed("producer closed", op="publish", name=self.name)
        if self._held is not None:
            raise Error("a frame is already lent (finish the frame() block first)", op="publish", name=self.name)
        s = self._seg
        N.ensure()  # our SIGBUS handler back on top if another one replaced it
        if self._need_regen or s is None or not s.size_ok():
            self._regen(self._fmt)
            s = self._seg
        assert s is not None  # _regen made one
        return s

    def _begin(self, s: _PSeg) -> int:
        """Steps 1 and 2: the back slot, its lock made odd, then a store fence. With holds
        (amendment 10, holds) the slot is chosen by C1-C4."""
        if s.holds:
            b = self._choose(s)
        else:
            b = (_load4(s.active_addr, _SC) + 1) % s.slot_count
            lk = s.lock[b]
            _store8(lk, _load8(lk, _SC) | 1, _SC)
            A.seqlock_fence()  # the store fence: odd lock before the data (dmb ish on arm64)
        self._held = b
        return b

    def _commit(self, s: _PSeg, n: int, capture_ns: Optional[int], user_meta: bytes, flags: int = 0) -> int:
        """Steps 3-6 on the held back slot."""
        b = self._held
        assert b is not None
        self._held = None
        if n < 0 or n > s.capacity:
            self._abort(s, b)
            raise BadOptions(f"frame of {n} bytes, slot capacity {s.capacity}")
        if len(user_meta) > USER_META_MAX:
            self._abort(s, b)
            raise BadOptions(f"{len(user_meta)} bytes of user metadata, at most {USER_META_MAX}")
        o = s.data_off[b]
        checksum = crc32c(s.mv[o:o + n]) if s.checksum and n > 0 else 0
        seq = self._seq + 1
        d = s.desc[b]
        used = min(struct.unpack_from("<I", s.mem, d + 48)[0], USER_META_MAX)
        ml = len(user_meta)
        if ml:
            s.mem[d + SLOT_USER_META:d + SLOT_USER_META + ml] = user_meta
        if used > ml:  # only the bytes the slot's last frame used need clearing
            s.mem[d + SLOT_USER_META + ml:d + SLOT_USER_META + used] = bytes(used - ml)
        if s.lost():
            # The file was truncated under the copy, the frame() block or the checksum: what
            # was written went to the guard's zero pages. As the Go producer: an error, and a
            # new generation at the next frame.
            self._need_regen = True
            raise CorruptSegment("file size", 0, "segment file truncated under the producer; a new generation "
                                                 "follows at the next frame")
        now = _now()
        _DESC.pack_into(s.mem, d + 8, seq, capture_ns or now, now, n, checksum, flags, ml)  # commit_ns last
        lk = s.lock[b]
        _store8(lk, _load8(lk, _SC) + 1, _SC)  # step 4: even, committed (release)
        _store8(s.last_seq_addr, seq, _SC)  # step 5: last_seq, then the flip
        _store4(s.active_addr, b, _SC)
        self._seq = seq
        _fadd8(s.published_addr, 1, _SC)
        _store8(s.last_commit_addr, now, _SC)
        s.wake_all()  # step 6
        if s.lost():
            self._need_regen = True  # truncated during the commit: the next frame starts a new generation
        return seq

    def _abort(self, s: _PSeg, b: int) -> None:
        """Gives the slot back, its old frame invalidated (its data may be half overwritten)."""
        d = s.desc[b]
        struct.pack_into("<Q", s.mem, d + 8, 0)
        struct.pack_into("<Q", s.mem, d + 32, 0)
        lk = s.lock[b]
        _store8(lk, _load8(lk, _SC) + 1, _SC)
        self._held = None

    def _copy_in(self, s: _PSeg, b: int, frame: Any) -> int:
        fmt = s.fmt
        if isinstance(frame, np.ndarray) and fmt.fourcc != MJPEG and frame.shape == fmt.shape:
            if frame.dtype != np.uint8:
                raise BadOptions(f"frame dtype {frame.dtype}, want uint8")
            np.copyto(s.arrays[b], frame)
            return packed_size(fmt)
        try:
            mv = memoryview(frame).cast("B")
        except TypeError:
            mv = np.ascontiguousarray(frame).data.cast("B")
        n = mv.nbytes
        if n > s.capacity:
            raise BadOptions(f"frame of {n} bytes, slot capacity {s.capacity} ({fmt})")
        if fmt.fourcc != MJPEG and n != packed_size(fmt):
            raise BadOptions(f"frame of {n} bytes (shape {getattr(frame, 'shape', None)}); {fmt} takes "
                             f"{packed_size(fmt)} bytes, shape {fmt.shape}")
        o = s.data_off[b]
        s.mv[o:o + n] = mv
        return n

    def _lend(self) -> Pixels:
        self._mu.acquire()
        try:
            s = self._ready()
            b = self._begin(s)
            return s.arrays[b]
        except BaseException:
            self._mu.release()
            raise

    def _commit_and_release(self, n: int, capture_ns: Optional[int], meta: bytes) -> int:
        try:
            s = self._seg
            assert s is not None  # _lend's segment: generations change only under _mu, which we hold
            return self._commit(s, n, capture_ns, meta)
        finally:
            self._mu.release()

    def _abort_and_release(self) -> None:
        try:
            if self._held is not None and self._seg is not None:
                self._abort(self._seg, self._held)
        finally:
            self._mu.release()
