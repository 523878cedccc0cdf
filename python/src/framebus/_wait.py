"""The consumer's wait, as the Go consumer's (framebus/wait.go): PROTOCOL.md section 5's
futex sleep on the entry's semaphore, or on the shared wake word (amendment 7) when the
producer keeps one; the repair of amendment 11 (wake words heal); and what the consumer does
every heartbeat interval while it waits (its entry's heartbeat, then the check of
``_liveness``)."""

from __future__ import annotations

import threading
import time
from typing import Optional

from . import _atomics as A
from . import _futex as F
from . import _native as N
from ._errors import Timeout
from ._liveness import _Liveness
from ._segment import _Followed, _Segment

_now = time.monotonic_ns
_load4, _load8, _store4, _store8 = A.raw_load4, A.raw_load8, A.raw_store4, A.raw_store8
_xchg4, _fadd4 = A.raw_xchg4, A.raw_fadd4
_SC = A.SEQ_CST
_trunc = N.truncated

# The longest single futex sleep of the main thread. CPython runs a signal's Python handler
# (KeyboardInterrupt) only between bytecodes: a signal that lands after the last one before
# the FUTEX_WAIT and before the system call starts (a window a loaded machine widens) leaves
# the wait to end by itself. Other threads never run signal handlers and sleep the whole
# heartbeat interval. The slice ends the sleep only: no liveness check, no heartbeat store.
_SIGNAL_SLICE_NS = 250_000_000
_MINUS1 = 0xFFFFFFFF


class _Waiter(_Liveness):
    """The consumer's part that sleeps until a wake."""

    def _pending(self) -> bool:
        """The active slot holds a committed frame newer than the last one delivered: not
        one newer than the header says, nor one refused already (amendment 9, forged words
        refused: a forged word must not keep the consumer awake)."""
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
            r = self._sleep(s, shared, word, val, waiters, timeout)
            if r is None:
                return  # a committed frame is waiting: read it
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

    def _sleep(self, s: _Segment, shared: bool, word: int, val: int, waiters: int, timeout: int) -> Optional[int]:
        """One futex sleep on ``word`` while it holds ``val``, counted in ``waiters``: the
        futex's result, or None when the pending check found a frame before the sleep."""
        counted = False
        r = F.TIMED_OUT
        try:
            if shared:
                _fadd4(waiters, 1, _SC)  # the shared count: one per sleeper (amendment 7, the shared wake word)
            else:
                # The entry's own word: stored, not added (amendment 11, wake words heal).
                _store4(waiters, 1, _SC)
            counted = True
            if shared and self._pending():
                r = F.WOKEN
                self._hb_due = True
                return None
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
                        # Amendment 11 (wake words heal): the producer committed while we
                        # slept, yet nothing woke us: wake_waiters was forged (to 0, or to
                        # 2^32 - 1 which our += 1 wrapped to 0). Counted once more, for good:
                        # a sleeper is counted again from the next sleep on (a word left one
                        # too high costs a FUTEX_WAKE with nobody to wake).
                        _fadd4(waiters, 1, _SC)
                        self._wake_repairs += 1
                else:
                    _store4(waiters, 0, _SC)
        if not intact or r == F.FAULT:
            self._set_broken()
            raise _Followed()  # the read loop recovers without touching the mapping
        return r

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
