"""The producer's side of amendment 10 (holds), as the Go producer's (framebus/holds.go):
the held and pending sets of every entry's hold_mask (C1), the choice of the back slot
(C1-C4), the lease (``hold_max``), holds taken back, and the count of ignored bits."""

from __future__ import annotations

import struct
import time
from typing import Tuple

import numpy as np

from . import _atomics as A
from ._layout import ENT_HOLD_MASK, ENT_HOLDS_TAKEN_BACK, ENTRY_ACTIVE, HOLD_PENDING_SHIFT
from ._generation import _Generations, _PSeg

_now = time.monotonic_ns
_SC = A.SEQ_CST
_load4, _load8, _store8, _fadd8, _fence = A.raw_load4, A.raw_load8, A.raw_store8, A.raw_fadd8, A.raw_fence


def hold_sets(s: _PSeg) -> Tuple[int, int]:
    """C1: (held, pending), the unions over the entries in state 2 of the bits i < N of
    their hold_masks whose pending bit (8 + i) is clear, and set. A full barrier first,
    then plain loads of aligned words (as seq_cst loads)."""
    _fence(_SC)
    m = s.ent_masks[s.ent_states == ENTRY_ACTIVE]
    if not m.size or not m.any():
        return 0, 0
    slots = m & np.uint32(s.slot_bits)
    pend = m >> np.uint32(HOLD_PENDING_SHIFT)
    held = int(np.bitwise_or.reduce(slots & ~pend))
    pending = int(np.bitwise_or.reduce(slots & pend))
    return held, pending


def take_back(s: _PSeg, b: int) -> int:
    """Clears bit b in every entry holding it, counting each in the entry's and the
    header's holds_taken_back (a lease ran out, or forged words left no other slot)."""
    bit = 1 << b
    n = 0
    _fence(_SC)
    pend = bit << HOLD_PENDING_SHIFT
    for i in np.flatnonzero((s.ent_states == ENTRY_ACTIVE) & ((s.ent_masks & bit) != 0)
                            & ((s.ent_masks & pend) == 0)).tolist():  # a grant in progress fails at G5
        e = s.base + s.entry_off[i]
        if A.fetch_and32(e + ENT_HOLD_MASK, ~bit) & bit:
            _fadd8(e + ENT_HOLDS_TAKEN_BACK, 1, _SC)
            _fadd8(s.taken_back_addr, 1, _SC)
            n += 1
    return n


class _BackSlot(_Generations):
    """The producer's part that chooses the back slot of a bus with holds."""

    def _choose(self, s: _PSeg) -> int:
        """The choice of the back slot of amendment 10 (holds): C1 the held and pending sets; C2 the first of
        active + 1, active + 2, ... in neither, else the first not held; C3 its lock odd; C4 the
        sets again: held meanwhile (a grant finished), the lock goes back to its even value and
        C1 again without it, afresh when that leaves none (2N scans at most). A held slot is
        written only when taken back: its lease ran out, or no scan found another (forged
        words, or holds changing during every scan)."""
        n = s.slot_count
        active: int = _load4(s.active_addr, _SC) % n
        order = [(active + k) % n for k in range(1, n)]
        excluded = 0
        expired = 0
        for _ in range(2 * n):
            held, pending = hold_sets(s)  # C1
            if s.hold_max_ns and held:
                expired = self._expired(s, held)
                held &= ~expired  # a hold past its lease does not protect its slot
            cands = [c for c in order if not (excluded >> c) & 1]
            b = next((c for c in cands if not ((held | pending) >> c) & 1), None)  # C2
            if b is None:
                b = next((c for c in cands if not (held >> c) & 1), None)
            if b is None:
                excluded = 0  # start afresh: the grants C4 saw may have withdrawn at G5
                continue
            lk = s.lock[b]
            even = _load8(lk, _SC) & ~1
            _store8(lk, even | 1, _SC)  # C3 (step 2), seq_cst
            A.seqlock_fence()
            held2, _ = hold_sets(s)  # C4
            if (held2 & ~expired) >> b & 1:
                _store8(lk, even, _SC)  # no data was written: back to its even value
                excluded |= 1 << b
                continue
            if (held2 >> b) & 1:
                take_back(s, b)  # its lease ran out
            return b
        # Forged words, or holds changing during every scan: never wait, take the next slot back.
        b = order[0]
        lk = s.lock[b]
        _store8(lk, _load8(lk, _SC) | 1, _SC)  # C3 before the bits are cleared (amendment 10)
        A.seqlock_fence()
        take_back(s, b)
        return b

    def _expired(self, s: _PSeg, held: int) -> int:
        """The held slots whose frame's commit_ns is older than the lease."""
        old = 0
        now = _now()
        for b in range(s.slot_count):
            if (held >> b) & 1:
                commit = struct.unpack_from("<Q", s.mem, s.desc[b] + 24)[0]
                if now - commit > s.hold_max_ns:
                    old |= 1 << b
        return old

    @staticmethod
    def _count_ignored(s: _PSeg) -> None:
        """Amendment 10, holds: hold bits of entries not in state 2, bits at or past slot_count, and
        pending bits without their slot's bit are ignored by both sides, and counted in
        holds_ignored by this scan."""
        _fence(_SC)
        m = s.ent_masks
        held = m & np.uint32(0xFF)
        active = s.ent_states == ENTRY_ACTIVE
        odd = (held & ~np.uint32(s.slot_bits)) | (((m >> np.uint32(HOLD_PENDING_SHIFT)) & np.uint32(0xFF) & ~held) << np.uint32(8)) \
            | (m & ~np.uint32(0xFFFF))
        stray = np.where(active, odd, held)
        if stray.any():
            n = sum(bin(int(v)).count("1") for v in stray[stray != 0])
            _fadd8(s.ignored_addr, n, _SC)
