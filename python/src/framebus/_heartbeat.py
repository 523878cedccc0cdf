"""The producer's background work, as the Go producer's (framebus/heartbeat.go): every
heartbeat interval the header's heartbeat, the reclaim of dead consumers' entries (PROTOCOL.md
section 2), the count of ignored hold bits (amendment 10, holds), the lock file kept, and a
new generation when the file was truncated, scribbled over or moved away."""

from __future__ import annotations

import logging
import struct
import time

from . import _atomics as A
from ._commit import _Committer
from ._errors import Error
from ._generation import _PSeg
from ._layout import (CONSUMER_ENTRY_SIZE, ENT_HOLD_MASK, ENT_PIDNS, ENTRY_ACTIVE, ENTRY_CLAIMING, ENTRY_FREE, MAGIC,
                      STATE_BROKEN)
from ._sys import lstat_path, try_lock, unlock

log = logging.getLogger("framebus")

_now = time.monotonic_ns
_SC = A.SEQ_CST
_load4, _store4, _store8, _fadd8 = A.raw_load4, A.raw_store4, A.raw_store8, A.raw_fadd8


class _Heartbeat(_Committer):
    """The producer's part that runs in its heartbeat thread."""

    def _heartbeat_loop(self) -> None:
        interval = self._hb_ms / 1000
        while not self._stop.wait(interval):
            try:
                self._beat()
            except BaseException as e:  # never let the thread die silently
                self.last_error = e
                log.warning("framebus %s: heartbeat: %s", self.name, e)

    def _beat(self) -> None:
        with self._seg_lock:
            s = self._seg
            if s is None:
                return
            broken = not s.size_ok()  # truncated: touching the mapping could fault
            if not broken:
                magic, = struct.unpack_from("<I", s.mem, 0)
                total, gen = struct.unpack_from("<QQ", s.mem, 16)
                if magic != MAGIC or total != s.total_size or gen != s.h.generation:
                    broken = True  # truncated and grown back, or scribbled over
                else:
                    _store8(s.heartbeat_addr, _now(), _SC)
                    self._reclaim(s)
                    if s.holds:
                        self._count_ignored(s)
            info = lstat_path(self.path)
            moved = not info.exists or (info.dev, info.ino) != s.ident
        try:
            self._keep_lock()
        except Error as e:
            self.last_error = e  # another process holds the lock file now at our path
            return
        if broken or moved:
            if broken and s.size_ok():
                _store4(s.state_addr, STATE_BROKEN, _SC)
            with self._seg_lock:
                if self._seg is s:
                    self._need_regen = True
            if self._mu.acquire(blocking=False):  # now, unless a frame is being written
                try:
                    if not self._closed and self._need_regen and self._held is None:
                        self._regen(self._fmt)
                except Error as e:
                    self.last_error = e
                finally:
                    self._mu.release()

    def _reclaim(self, s: _PSeg) -> None:
        """Takes back the entries of dead consumers: only an entry whose liveness lock can be
        taken exclusively is freed (PROTOCOL.md section 2); no heartbeat or pid decides."""
        for off in s.entry_off:
            st = _load4(s.base + off, _SC)
            if st != ENTRY_CLAIMING and st != ENTRY_ACTIVE:
                continue
            if not try_lock(s.fd, off, CONSUMER_ENTRY_SIZE, True):
                continue
            try:
                if A.cas32(s.base + off, st, ENTRY_FREE):
                    _fadd8(s.reclaimed_addr, 1, _SC)
                    # Amendment 10: the dead consumer's holds end after the CAS.
                    A.store32(s.base + off + ENT_HOLD_MASK, 0)
                    # The dead consumer's pidns, cleared while no joiner can claim the entry
                    # (we hold its lock exclusively), for joiners that do not write one.
                    _store8(s.base + off + ENT_PIDNS, 0, _SC)
            finally:
                unlock(s.fd, off, CONSUMER_ENTRY_SIZE)
