"""The consumer's look at the producer and at the name, as the Go consumer's
(framebus/liveness.go): the check made every heartbeat interval while it waits (its entry
still its own, the producer's lock and heartbeat, the file behind the name), the
re-synchronisation of amendment 9 (forged words refused), following a new generation
(amendment 1: the numbering kept when the producer continued it), and the recovery from a
file truncated under the consumer."""

from __future__ import annotations

import os
import time
from typing import Optional

from . import _atomics as A
from ._errors import CorruptSegment, NotFound, ProducerGone, Retired, Stalled, Timeout
from ._hold import _Holder
from ._layout import CONSUMER_ENTRY_SIZE, ENTRY_ACTIVE, STATE_BROKEN, STATE_RETIRED
from ._segment import _Followed, _NotReady, _Segment, open_joined
from ._sys import lstat_path, owner_held, unlock

_now = time.monotonic_ns
_load4, _load8, _store8, _fence = A.raw_load4, A.raw_load8, A.raw_store8, A.raw_fence
_SC = A.SEQ_CST
_TSO = A.TSO


class _Liveness(_Holder):
    """The consumer's part that checks the producer and follows generations."""

    def _check(self) -> None:
        """Keep the entry; look at state, owner, heartbeat and the file behind the name."""
        s = self._seg
        assert s is not None
        if s.lost():
            self._set_broken()
            raise _Followed()
        if A.load32(s.e_state) != ENTRY_ACTIVE or A.load64(s.e_token) != self._token:
            if not s.size_ok():  # zeros from the guard, not a peer: the file was truncated
                self._set_broken()
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
        self._check_heartbeat(s)

    def _check_heartbeat(self, s: _Segment) -> None:
        """Stalled, once an episode, when the producer's heartbeat is older than 3 intervals."""
        age = _now() - A.load64(s.heartbeat_addr)
        if age > 3 * s.hb_ns:
            if s.lost() or not s.size_ok():
                # The heartbeat read zeros: the file was truncated since the look above.
                self._set_broken()
                raise _Followed()
            if not self._stalled_reported:
                self._stalled_reported = True
                raise Stalled(f"producer stalled: heartbeat {age / 1e6:.1f} ms old "
                              f"(interval {s.hb_ns // 1_000_000} ms)", age)
            return
        self._stalled_reported = False

    def _resync(self) -> None:
        """Takes the header's last_seq as the consumer's own when its own is ahead of it
        while the active slot holds an intact frame of exactly that number (amendment 9,
        forged words refused): a forged frame_seq or last_seq moved it ahead, and without
        this every real frame would be "nothing new" for good. Called at each check, while
        the producer is alive."""
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
                    st = os.fstat(r.lock_fd)
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
            seg = open_joined(self.path, self._token)
        except (NotFound, _NotReady):
            return False
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
        # Amendment 1 (generations): when the producer continued the numbering, keep our
        # last_seq (frames committed before we joined count as dropped); when it restarted,
        # restart with it.
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
                    size = os.fstat(s.fd).st_size
                except OSError:
                    pass
                raise CorruptSegment("file size", size, f"segment file truncated under the consumer (total_size "
                                                        f"{s.total_size}); waiting for the producer's next generation")
            time.sleep(0.005)
