"""The producer's generations (PROTOCOL.md section 2; amendment 8, PID namespaces and
temporary files), as the Go producer's (framebus/generation.go): its mapping of a generation
(``_PSeg``: the wake of step 6, the retirement), a new segment built under a temporary name
and renamed over the bus name, the takeover of a dead producer's generation, and the
collection of abandoned temporary files."""

from __future__ import annotations

import errno
import logging
import os
import stat as _stat
import time
from typing import List, Optional

import numpy as np

from . import _atomics as A
from . import _futex as F
from ._errors import Error, NoSpace, PermissionDenied, UnsafePath
from ._format import MJPEG, FrameFormat, Pixels, array_view
from ._layout import (ABI_VERSION, ENT_SEM, ENT_WAITERS, ENTRY_ACTIVE, FLAG_CHECKSUM, FLAG_HOLDS, FLAG_SHARED_WAKE,
                      HEADER_SIZE, MAGIC, STATE_BROKEN, STATE_READY, STATE_RETIRED, Geometry, Header)
from ._mapping import Ident, Mapping, read_header
from ._ownership import _Ownership, _set_mode
from ._sys import (OPEN_FLAGS, bus_dir, free_space, lstat_path, open_existing, path_error, pidns, try_lock, unlock,
                   validate_name)

log = logging.getLogger("framebus")
log.addHandler(logging.NullHandler())

_now = time.monotonic_ns
_SC = A.SEQ_CST
_load4, _store4 = A.raw_load4, A.raw_store4
_fadd4, _fence = A.raw_fadd4, A.raw_fence

CREATE_TRIES = 5  # amendment 8: a temporary file that vanishes before its rename starts the creation again


class _PSeg(Mapping):
    """One generation as the producer sees it: mapped read-write, whole (its own) or the
    control block only (a dead producer's old generation, to retire)."""

    _MAPPED = ("mem", "np", "arrays")

    def __init__(self, fd: int, h: Header, ident: Ident, whole: bool) -> None:
        super().__init__(fd, h, ident)
        self.mem = self.map(h.total_size if whole else h.payload_offset, 0, True)
        self.bind(self.mem)
        self.np: Pixels = np.frombuffer(self.mem, np.uint8)
        self.hold_max_ns = h.hold_max_ns
        self.data_off = [h.payload_offset + i * h.slot_stride for i in range(h.slot_count)]
        self.mv = memoryview(self.mem)
        self._views.append(self.mv)
        self.arrays: List[Pixels] = []
        if whole:
            for o in self.data_off:
                self.arrays.append(array_view(self.fmt, self.np, o, True) if self.fmt.fourcc != MJPEG
                                   else self.np[o:o + self.capacity])

    def wake_all(self) -> None:
        """Step 6: the shared wake word (amendment 7), then sem += 1 for every active
        entry and a FUTEX_WAKE only where waiters != 0. sem += 1 and the read of waiters
        are seq_cst (the store-buffering handshake of section 5)."""
        if self.shared_wake:
            _fadd4(self.wake_seq_addr, 1, _SC)
            if _load4(self.wake_waiters_addr, _SC):
                F.wake(self.wake_seq_addr)
        # A full barrier, then the states by plain loads (aligned 4-byte words): the
        # flip is ordered before them as a seq_cst load would order it.
        _fence(_SC)
        for i in np.flatnonzero(self.ent_states == ENTRY_ACTIVE).tolist():
            sem = self.base + self.entry_off[i] + ENT_SEM
            _fadd4(sem, 1, _SC)
            if _load4(self.base + self.entry_off[i] + ENT_WAITERS, _SC):
                F.wake(sem)

    def retire(self) -> None:
        if _load4(self.state_addr, _SC) != STATE_BROKEN:
            _store4(self.state_addr, STATE_RETIRED, _SC)
        self.wake_all()


def collect_abandoned(name: str, dir: Optional[str] = None) -> int:
    """Removes the abandoned temporary files of bus ``name`` (amendment 8): a
    ``framebus.<name>.tmp-<pid>`` whose byte 0 someone else can write-lock has no
    creator. Each is locked, checked to still be the file at its path, unlinked,
    released. Returns how many were removed."""
    d = bus_dir(dir)
    prefix = f"framebus.{validate_name(name)}.tmp-"
    removed = 0
    try:
        names = os.listdir(d)
    except OSError:
        return 0
    for n in names:
        if not n.startswith(prefix) or not n[len(prefix):].isdigit():
            continue
        path = os.path.join(d, n)
        try:
            fd = os.open(path, OPEN_FLAGS | os.O_RDWR | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            st = os.fstat(fd)
            if not _stat.S_ISREG(st.st_mode):
                continue
            if not try_lock(fd, 0, 1, True):
                continue  # its creator holds it: a creation in progress
            cur = lstat_path(path)
            if cur.exists and (cur.dev, cur.ino) == (st.st_dev, st.st_ino):
                os.unlink(path)
                removed += 1
        except (OSError, Error):
            pass
        finally:
            os.close(fd)  # releases the lock
    return removed


class _Generations(_Ownership):
    """The producer's part that makes, replaces and takes over generations."""

    def _previous(self) -> Optional[_PSeg]:
        """The segment a dead producer left at the path, to continue its numbering and
        retire it. Anything there that is not a regular file of ours is refused."""
        info = lstat_path(self.path)
        if not info.exists:
            return None
        if info.symlink or not info.regular:
            raise UnsafePath(f"{self.path} is not a regular file (refusing to replace it)")
        if info.uid != os.geteuid():
            raise PermissionDenied(self.path, info.mode, info.uid, "segment belongs to another user")
        try:
            fd = open_existing(self.path, True)
        except Error:
            return None  # unreadable leftovers are simply replaced
        try:
            h, st = read_header(fd)
            return _PSeg(fd, h, (st.st_dev, st.st_ino), whole=False)
        except (Error, OSError, ValueError):
            os.close(fd)
            return None  # a corrupt leftover is replaced by generation 1

    def _create_tmp(self, tmp: str) -> int:
        """Creates the temporary file and takes its creation lock (amendment 8): an OFD write
        lock on byte 0, held until the rename, on a file the path still names."""
        for attempt in range(CREATE_TRIES):
            if attempt:
                time.sleep(0.002 * attempt)  # a collector holding the file removes it in a moment
            try:
                fd = os.open(tmp, OPEN_FLAGS | os.O_RDWR | os.O_CREAT | os.O_EXCL, self._mode)
            except FileExistsError:
                # Ours by name only (a dead process with our pid, or a live creator in another
                # PID namespace): removed if abandoned, else left alone.
                collect_abandoned(self.name, self.dir)
                continue
            except OSError as e:
                raise path_error("create", tmp, e) from None
            if not try_lock(fd, 0, 1, True):
                os.close(fd)  # a collector holds it for a moment, and removes it: again
                continue
            st = os.fstat(fd)
            cur = lstat_path(tmp)
            if not (cur.exists and (cur.dev, cur.ino) == (st.st_dev, st.st_ino)):
                os.close(fd)  # collected between our create and our lock: again
                continue
            try:
                _set_mode(fd, tmp, self._mode, self._gid)
            except Error:
                os.close(fd)
                os.unlink(tmp)
                raise
            return fd
        raise Error(f"cannot create {tmp}: another creation holds it")

    def _new_generation(self, fmt: FrameFormat, gen: int, last_seq: int) -> _PSeg:
        """Builds a complete segment under the temporary name and renames it over the bus
        name (PROTOCOL.md section 2; amendment 8 for the temporary file)."""
        g = Geometry(self._slots, self._consumers, fmt.frame_size)
        tmp = f"{self.path}.tmp-{os.getpid()}"
        for attempt in range(CREATE_TRIES):
            collect_abandoned(self.name, self.dir)  # before the free-space check
            avail = free_space(self.dir)
            if g.total > avail:
                raise NoSpace(self.dir, g.total, avail)
            fd = self._create_tmp(tmp)
            seg: Optional[_PSeg] = None
            try:
                self._allocate(fd, tmp, g.total, avail)
                h = self._header(fmt, g, gen, last_seq)
                fst = os.fstat(fd)
                seg = _PSeg(fd, h, (fst.st_dev, fst.st_ino), whole=True)
                seg.np[::4096] = 0  # pre-fault every page: the first frames cost what later ones do
                seg.mem[0:HEADER_SIZE] = h.encode()
                _store4(seg.state_addr, STATE_READY, _SC)
                seg.h.state = STATE_READY
                try:
                    os.rename(tmp, self.path)
                except FileNotFoundError:
                    log.warning("framebus %s: temporary file %s vanished before its rename; "
                                "starting the creation again (%d/%d)", self.name, tmp, attempt + 1, CREATE_TRIES)
                    seg.release()
                    seg = None
                    continue
                except OSError as e:
                    raise path_error("rename", self.path, e) from None
                unlock(fd, 0, 1)  # the creation lock ends with the rename
                return seg
            except BaseException:
                cur = lstat_path(tmp)
                try:
                    ours = os.fstat(fd)
                    if cur.exists and (cur.dev, cur.ino) == (ours.st_dev, ours.st_ino):
                        os.unlink(tmp)
                except OSError:
                    pass
                if seg is not None:
                    seg.release()
                else:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
                raise
        raise Error(f"the temporary file {tmp} vanished before its rename {CREATE_TRIES} times")

    def _allocate(self, fd: int, tmp: str, total: int, avail: int) -> None:
        """The temporary file's blocks, allocated now: no SIGBUS later for want of space."""
        try:
            os.posix_fallocate(fd, 0, total)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise NoSpace(self.dir, total, avail) from None
            if e.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise path_error("allocate", tmp, e) from None
            os.ftruncate(fd, total)

    def _header(self, fmt: FrameFormat, g: Geometry, gen: int, last_seq: int) -> Header:
        """The header of a new generation of ``fmt`` (state INITIALIZING until it is complete)."""
        now = _now()
        flags = ((FLAG_CHECKSUM if self._checksum else 0) | (FLAG_SHARED_WAKE if self._shared_wake else 0)
                 | (FLAG_HOLDS if self._holds else 0))
        st = list(fmt.plane_stride) + [0] * (4 - len(fmt.plane_stride))
        po = list(fmt.plane_offset) + [0] * (4 - len(fmt.plane_offset))
        return Header(magic=MAGIC, abi_version=ABI_VERSION, header_size=HEADER_SIZE, state=0, flags=flags,
                      total_size=g.total, generation=gen, heartbeat_ns=now, payload_offset=g.payload_offset,
                      payload_size=g.payload_size, producer_pid=os.getpid() & 0xFFFFFFFF,
                      slot_count=g.slot_count, slot_stride=g.slot_stride, slot_capacity=g.slot_capacity,
                      consumer_capacity=g.consumer_capacity, heartbeat_interval_ms=self._hb_ms,
                      width=fmt.width, height=fmt.height, pixel_format=fmt.fourcc,
                      plane_count=fmt.plane_count, plane_stride=(st[0], st[1], st[2], st[3]),
                      plane_offset=(po[0], po[1], po[2], po[3]),
                      fps_num=fmt.fps_num, fps_den=fmt.fps_den, slot_table_offset=g.slot_table_offset,
                      consumer_table_offset=g.consumer_table_offset, created_ns=now,
                      producer_pidns=pidns(), last_seq=last_seq,
                      hold_max_ns=self._hold_max_ns if self._holds else 0)

    def _regen(self, fmt: FrameFormat) -> None:
        """Replaces the current generation by a new one of fmt. Called with _mu held."""
        old = self._seg
        assert old is not None
        seg = self._new_generation(fmt, old.h.generation + 1, self._seq)
        with self._seg_lock:
            self._seg = seg
            self._fmt = fmt
        if old.size_ok():
            old.retire()
        old.release()
        self._need_regen = False
