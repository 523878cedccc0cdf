"""The consumer's holds, amendment 10 (holds), as the Go consumer's (framebus/hold.go): G1-G5
for the slot of a frame the consumer read, and ``Hold``, which keeps that slot from the
producer until it is released."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from . import _atomics as A
from ._errors import Closed, Error, HoldCapReached, HoldOverwritten, HoldReleased, HoldUnsupported
from ._layout import ENTRY_ACTIVE, HOLD_PENDING_SHIFT
from ._format import Pixels
from ._segment import Planes, _Core, _Segment, lock_settles

if TYPE_CHECKING:
    from ._read import Frame

_load4, _load8 = A.raw_load4, A.raw_load8
_fadd8, _fence = A.raw_fadd8, A.raw_fence
_SC = A.SEQ_CST


class Hold:
    """A frame kept by ``Frame.hold()`` (amendment 10, holds): a context manager (the block's
    end releases it), ``release()``, ``valid()``, and the frame's views (``array``, ``planes``,
    ``data``, ``frame``). Released also by ``Consumer.close()`` and when garbage-collected."""

    __slots__ = ("frame", "_c", "_seg", "_slot", "_released", "__weakref__")

    def __init__(self, frame: "Frame", consumer: Optional[_Core], seg: Optional[_Segment], slot: int) -> None:
        self.frame = frame
        self._c, self._seg, self._slot = consumer, seg, slot
        self._released = False

    @property
    def array(self) -> Pixels:
        return self.frame.array

    @property
    def planes(self) -> Planes:
        return self.frame.planes

    @property
    def data(self) -> Pixels:
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


def _label_hold(e: Error, name: str) -> Error:
    e.op, e.name = "hold", name
    return e


def _overwritten(f: "Frame", why: str) -> HoldOverwritten:
    return HoldOverwritten("overwritten", f.seq, why)


class _Holder(_Core):
    """The consumer's part that grants holds."""

    def _grant(self, f: "Frame") -> Hold:
        """G1-G5 of amendment 10 (holds) for the slot of a frame this consumer read."""
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
            raise self._hold_refused(s, _overwritten(f, "the consumer left that generation"), count=False)
        if s.hold_refs[a] > 0:
            # Held already (the same frame: a held slot is not written): one bit, counted here.
            if _load8(lock_addr, _SC) != l1 or not _load4(s.e_hold, _SC) & (1 << a):
                raise self._hold_refused(s, _overwritten(f, f"slot {a} was overwritten"))
        else:
            self._g1_to_g5(s, f, a, l1, lock_addr)
        if s.lost():
            raise self._hold_refused(s, _overwritten(f, "the file was truncated"), count=False)
        s.hold_refs[a] += 1
        _fadd8(s.e_hgranted, 1, _SC)
        _fadd8(s.granted_addr, 1, _SC)
        h = Hold(f, self, s, a)
        self._holds.add(h)
        return h

    def _g1_to_g5(self, s: _Segment, f: "Frame", a: int, l1: int, lock_addr: int) -> None:
        """The grant's steps on a slot this consumer does not hold yet; raises the refusal."""
        bit = 1 << a
        pend = bit << HOLD_PENDING_SHIFT
        A.fetch_or32(s.e_hold, bit | pend)  # G1
        if not lock_settles(lock_addr, l1):  # G2
            A.fetch_and32(s.e_hold, ~(bit | pend))
            raise self._hold_refused(s, _overwritten(f, f"slot {a} was overwritten"))
        _fence(_SC)  # G3: the entries' words by plain loads after a full barrier (as seq_cst loads)
        m = s.ent_masks[s.ent_states == ENTRY_ACTIVE]
        union = int(np.bitwise_or.reduce(m)) & s.slot_bits if m.size else 0
        if bin(union).count("1") > s.hold_cap:
            A.fetch_and32(s.e_hold, ~(bit | pend))
            raise self._hold_refused(s, HoldCapReached(
                "cap", f.seq, f"{bin(union & ~bit).count('1')} of the bus's {s.hold_cap} held slots are taken "
                              f"({s.slot_count} slots)"))
        A.fetch_and32(s.e_hold, ~pend)  # G4
        if not lock_settles(lock_addr, l1):  # G5
            A.fetch_and32(s.e_hold, ~bit)
            raise self._hold_refused(s, _overwritten(f, f"slot {a} was overwritten"))

    def _hold_refused(self, s: _Segment, e: Error, count: bool = True) -> Error:
        if count and s.size_ok():
            _fadd8(s.e_hrefused, 1, _SC)
            _fadd8(s.refused_addr, 1, _SC)
        return _label_hold(e, self.name)

    def _release_holds(self) -> None:
        """close(): every hold released (their bits go with the entry's hold_mask, in leave())."""
        for h in list(self._holds):
            h._released = True
        self._holds.clear()

