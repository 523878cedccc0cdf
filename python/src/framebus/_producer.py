"""The producer: PROTOCOL.md sections 2 and 4, amendments 7 and 8, in the order of
operations of the Go producer (framebus/producer.go)."""

from __future__ import annotations

import ctypes
import errno
import grp
import logging
import mmap
import os
import stat as _stat
import struct
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np

from . import _atomics as A
from . import _futex as F
from . import _native as N
from ._crc32c import crc32c
from ._errors import BadOptions, Busy, Closed, CorruptSegment, Error, NoSpace, PermissionDenied, UnsafePath
from ._format import MJPEG, FrameFormat, array_view, complete, packed_size
from ._layout import (ABI_VERSION, CONSUMER_ENTRY_SIZE, DEFAULT_CONSUMERS, ENT_PIDNS, ENT_SEM, ENT_WAITERS,
                      ENTRY_ACTIVE, ENTRY_CLAIMING, ENTRY_FREE, FLAG_CHECKSUM, FLAG_SHARED_WAKE, FRAME_EOS,
                      FLAG_HOLDS, HOLD_PENDING_SHIFT, ENT_HOLD_MASK, ENT_HOLDS_TAKEN_BACK,
                      HEADER_SIZE, MAGIC, MAX_CONSUMERS, MAX_SLOTS, MIN_SLOTS, OFF, SLOT_DESC_SIZE, SLOT_USER_META, STATE_BROKEN,
                      STATE_READY, STATE_RETIRED, USER_META_MAX, Geometry, Header, check_identity, validate_header)
from ._sys import (OPEN_FLAGS, bus_dir, free_space, lock_path, lstat_path, open_existing, owner_held,
                   path_error, pidns, segment_path, try_lock, unlock, validate_name)

log = logging.getLogger("framebus")
log.addHandler(logging.NullHandler())

_now = time.monotonic_ns
_SC = A.SEQ_CST
_load4, _load8, _store4, _store8 = A.raw_load4, A.raw_load8, A.raw_store4, A.raw_store8
_fadd4, _fadd8, _fence = A.raw_fadd4, A.raw_fadd8, A.raw_fence
_DESC = struct.Struct("<QQQQIII")  # frame_seq, capture_ns, commit_ns, bytes, checksum, frame_flags, user_meta_len

CREATE_TRIES = 5  # amendment 8: a temporary file that vanishes before its rename starts the creation again


class _PSeg:
    """One generation as the producer sees it: mapped read-write, whole (its own) or the
    control block only (a dead producer's old generation, to retire)."""

    def __init__(self, fd: int, h: Header, ident: tuple, whole: bool) -> None:
        self.fd, self.h, self.ident = fd, h, ident
        self.released = False
        self.total = h.total_size
        length = h.total_size if whole else h.payload_offset
        N.warn_unguarded()
        self.group = N.new_group()  # the SIGBUS guard's group of the mapping
        self.mem = N.GuardedMap(fd, length, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self.mem.guard(self.group, True)
        self.base = base = ctypes.addressof(ctypes.c_char.from_buffer(self.mem))
        self.state = base + OFF["state"]
        self.active = base + OFF["active"]
        self.last_seq = base + OFF["last_seq"]
        self.published = base + OFF["frames_published"]
        self.last_commit = base + OFF["last_commit_ns"]
        self.heartbeat = base + OFF["heartbeat_ns"]
        self.source_drops = base + OFF["source_drops"]
        self.reclaimed = base + OFF["consumers_reclaimed"]
        self.shared_wake = bool(h.flags & FLAG_SHARED_WAKE)
        self.wake_seq = base + OFF["wake_seq"]
        self.wake_waiters = base + OFF["wake_waiters"]
        self.checksum = bool(h.flags & FLAG_CHECKSUM)
        self.slot_count = h.slot_count
        self.capacity = h.slot_capacity
        self.fmt: FrameFormat = h.format()
        self.np = np.frombuffer(self.mem, np.uint8)
        cto, cap = h.consumer_table_offset, h.consumer_capacity
        self.entry_off = [cto + i * CONSUMER_ENTRY_SIZE for i in range(cap)]
        # Every entry's state word, for the wake's scan (one numpy comparison).
        self.entry_states = np.ndarray((cap,), np.uint32, self.mem, cto, (CONSUMER_ENTRY_SIZE,))
        # Amendment 10: every entry's hold_mask, for the choice of the back slot (C1, C4).
        self.holds = bool(h.flags & FLAG_HOLDS)
        self.hold_masks = np.ndarray((cap,), np.uint32, self.mem, cto + ENT_HOLD_MASK, (CONSUMER_ENTRY_SIZE,))
        self.hold_max_ns = h.hold_max_ns
        self.h_taken_back = base + OFF["holds_taken_back"]
        self.h_ignored = base + OFF["holds_ignored"]
        self.slot_bits = (1 << h.slot_count) - 1
        self.desc = [h.slot_table_offset + i * SLOT_DESC_SIZE for i in range(h.slot_count)]
        self.lock = [base + d for d in self.desc]
        self.data_off = [h.payload_offset + i * h.slot_stride for i in range(h.slot_count)]
        self.mv = memoryview(self.mem)
        self.arrays = []
        if whole:
            for o in self.data_off:
                self.arrays.append(array_view(self.fmt, self.np, o, True) if self.fmt.fourcc != MJPEG
                                   else self.np[o:o + self.capacity])

    def lost(self) -> bool:
        """The guard replaced the mapping with zero pages: the file was truncated under an access."""
        return N.truncated(self.group)

    def size_ok(self) -> bool:
        if N.truncated(self.group):
            return False
        try:
            return os.fstat(self.fd).st_size >= self.total
        except OSError:
            return False

    def wake_all(self) -> None:
        """Step 6: the shared wake word (amendment 7), then sem += 1 for every active
        entry and a FUTEX_WAKE only where waiters != 0. sem += 1 and the read of waiters
        are seq_cst (the store-buffering handshake of section 5)."""
        if self.shared_wake:
            _fadd4(self.wake_seq, 1, _SC)
            if _load4(self.wake_waiters, _SC):
                F.wake(self.wake_seq)
        # A full barrier, then the states by plain loads (aligned 4-byte words): the
        # flip is ordered before them as a seq_cst load would order it.
        _fence(_SC)
        for i in np.flatnonzero(self.entry_states == ENTRY_ACTIVE).tolist():
            sem = self.base + self.entry_off[i] + ENT_SEM
            _fadd4(sem, 1, _SC)
            if _load4(self.base + self.entry_off[i] + ENT_WAITERS, _SC):
                F.wake(sem)

    def hold_sets(self) -> tuple:
        """C1: (held, pending), the unions over the entries in state 2 of the bits i < N of
        their hold_masks whose pending bit (8 + i) is clear, and set. A full barrier first,
        then plain loads of aligned words (as seq_cst loads)."""
        _fence(_SC)
        m = self.hold_masks[self.entry_states == ENTRY_ACTIVE]
        if not m.size or not m.any():
            return 0, 0
        slots = m & np.uint32(self.slot_bits)
        pend = m >> np.uint32(HOLD_PENDING_SHIFT)
        held = int(np.bitwise_or.reduce(slots & ~pend))
        pending = int(np.bitwise_or.reduce(slots & pend))
        return held, pending

    def take_back(self, b: int) -> int:
        """Clears bit b in every entry holding it, counting each in the entry's and the
        header's holds_taken_back (a lease ran out, or forged words left no other slot)."""
        bit = 1 << b
        n = 0
        _fence(_SC)
        pend = bit << HOLD_PENDING_SHIFT
        for i in np.flatnonzero((self.entry_states == ENTRY_ACTIVE) & ((self.hold_masks & bit) != 0)
                                & ((self.hold_masks & pend) == 0)).tolist():  # a grant in progress fails at G5
            e = self.base + self.entry_off[i]
            if A.fetch_and32(e + ENT_HOLD_MASK, ~bit) & bit:
                _fadd8(e + ENT_HOLDS_TAKEN_BACK, 1, _SC)
                _fadd8(self.h_taken_back, 1, _SC)
                n += 1
        return n

    def retire(self) -> None:
        if _load4(self.state, _SC) != STATE_BROKEN:
            _store4(self.state, STATE_RETIRED, _SC)
        self.wake_all()

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        self.arrays = []
        self.entry_states = self.hold_masks = None  # type: ignore[assignment]
        self.np = None  # type: ignore[assignment]
        try:
            self.mv.release()
        except Exception:
            pass
        # Unmapped when the last reference goes (at once, unless a caller still holds a
        # frame() view): GuardedMap forgets its guarded range first, then the mmap unmaps it.
        self.mem = None  # type: ignore[assignment]
        try:
            os.close(self.fd)
        except OSError:
            pass


@dataclass(frozen=True)
class ProducerStats:
    generation: int
    last_seq: int
    frames_published: int
    source_drops: int
    consumers_reclaimed: int
    active_consumers: int


def _group_id(group: Union[None, int, str]) -> int:
    if group is None or group == "":
        return -1
    if isinstance(group, int):
        return group
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise BadOptions(f"unknown group {group!r}") from None


def _set_mode(fd: int, path: str, mode: int, gid: int) -> None:
    try:
        if gid >= 0:
            os.fchown(fd, -1, gid)
        os.fchmod(fd, mode)
    except OSError as e:
        raise path_error("chmod", path, e) from None


def _owner_pid(path: str) -> int:
    """producer_pid of the segment at path, 0 if it cannot be read."""
    try:
        fd = open_existing(path, False)
    except Error:
        return 0
    try:
        b = os.pread(fd, HEADER_SIZE, 0)
        size = os.fstat(fd).st_size
        check_identity(b, size)
        h = Header.decode(b)
        validate_header(h, size)
        return h.producer_pid
    except (Error, OSError):
        return 0
    finally:
        os.close(fd)


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


class FrameLoan:
    """The back slot, lent by ``Producer.frame()``: a context manager whose value is the
    slot as a writable numpy array of the frame's shape. Leaving the block commits it;
    an exception aborts it (nothing is published and the slot's old frame is
    invalidated). Set ``nbytes`` for a variable-size format (MJPEG)."""

    def __init__(self, p: "Producer", capture_ns: Optional[int], user_meta: bytes, nbytes: Optional[int]) -> None:
        self._p, self._capture, self._meta, self.nbytes = p, capture_ns, user_meta, nbytes
        self.seq = 0  #: the committed frame's sequence number, after the block
        self.array: Optional[np.ndarray] = None

    def __enter__(self) -> np.ndarray:
        self.array = self._p._lend()
        return self.array

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        p = self._p
        self.array = None
        if et is not None:
            p._abort_and_release()
            return
        n = self.nbytes if self.nbytes is not None else packed_size(p._seg.fmt)  # type: ignore[union-attr]
        self.seq = p._commit_and_release(n, self._capture, self._meta)


class Producer:
    """Owns the bus ``name``: creates it (or takes over a dead producer's bus: its
    generation + 1, its frame numbers continued), publishes frames, keeps the heartbeat,
    reclaims dead consumers' entries, and on ``close()`` ends the stream cleanly.

    ``format``: RGBA, RGB24, BGR24, GREY, YUYV, NV12, I420, MJPEG or a fourcc. ``fps`` is
    informational (0 = unknown); the producer never paces. ``slots`` 2-8, ``consumers``
    (table entries) 1-1024, ``heartbeat`` in seconds (0.001-60). ``mode`` 0600 by
    default (0660 with ``group`` to share; never world-writable). ``shared_wake``
    keeps amendment 7's single wake word (one FUTEX_WAKE for all consumers).
    ``frame_size`` sets the slot capacity of MJPEG buses.

    A second producer on a live name raises Busy naming the owner's pid. The producer
    is a context manager and closes at interpreter exit. publish() and frame() are not
    to be called from several threads at once (they serialise on a lock).
    """

    def __init__(self, name: str, width: int, height: int, format: Union[str, int] = "RGBA", fps: float = 0.0,
                 slots: int = 2, checksum: bool = False, *, dir: Optional[str] = None,
                 consumers: int = DEFAULT_CONSUMERS, heartbeat: float = 0.1, mode: int = 0o600,
                 group: Union[None, int, str] = None, shared_wake: bool = True, frame_size: int = 0,
                 holds: bool = True, hold_max: float = 0.0) -> None:
        self.name = validate_name(name)
        try:
            self._fmt = complete(width, height, format, fps, frame_size)
            if not MIN_SLOTS <= slots <= MAX_SLOTS:
                raise BadOptions(f"{slots} slots, want {MIN_SLOTS}-{MAX_SLOTS}")
            if not 1 <= consumers <= MAX_CONSUMERS:
                raise BadOptions(f"{consumers} consumers, want 1-{MAX_CONSUMERS}")
            if not 0.001 <= heartbeat <= 60:
                raise BadOptions(f"heartbeat {heartbeat} s, want 0.001-60")
            if mode & ~0o777 or mode & 0o002:
                raise BadOptions(f"mode {mode:04o}: must be a permission mode that is not world-writable")
            if hold_max < 0:
                raise BadOptions(f"hold_max {hold_max} s, want >= 0 (0: no lease)")
            if mode & 0o600 != 0o600:
                raise BadOptions(f"mode {mode:04o}: the owner needs read and write")
        except Error as e:
            e.op, e.name = "create", name
            raise
        self.dir = bus_dir(dir)
        self.path = segment_path(self.dir, name)
        self.lock_path = lock_path(self.dir, name)
        self._slots, self._consumers, self._checksum = slots, consumers, checksum
        self._hb_ms = max(1, int(round(heartbeat * 1000)))
        self._mode, self._gid, self._shared_wake = mode, _group_id(group), shared_wake
        self._holds, self._hold_max_ns = holds, int(hold_max * 1e9)
        self._mu = threading.Lock()  # held from a frame's begin to its commit; excludes generation changes
        self._seg_lock = threading.Lock()  # guards _seg's lifetime against the heartbeat thread
        self._seg: Optional[_PSeg] = None
        self._seq = 0
        self._held: Optional[int] = None
        self._closed = False
        self._need_regen = False
        self.last_error: Optional[BaseException] = None  #: the last error of the background heartbeat
        self._lock_fd = -1
        self._lock_created = False
        self._stop = threading.Event()
        try:
            self._take_ownership()
            old = None
            try:
                old = self._previous()
                prev_gen = old.h.generation if old else 0
                prev_seq = _load8(old.last_seq, _SC) if old else 0
                self._seg = self._new_generation(self._fmt, prev_gen + 1, prev_seq)
            except BaseException:
                if old is not None:
                    old.release()
                self._disown()
                raise
            self._seq = prev_seq
            if old is not None:
                if old.size_ok():
                    old.retire()
                old.release()
        except Error as e:
            e.op, e.name = e.op or "create", e.name or name
            raise
        self._finalizer = weakref.finalize(self, Producer._finalize, weakref.ref(self))
        self._thread = threading.Thread(target=self._heartbeat_loop, name=f"framebus-heartbeat-{name}", daemon=True)
        self._thread.start()

    # ---- ownership (section 2) --------------------------------------------------------

    def _open_lock_file(self) -> tuple:
        path = self.lock_path
        created = True
        try:
            fd = os.open(path, OPEN_FLAGS | os.O_RDWR | os.O_CREAT | os.O_EXCL, self._mode)
        except FileExistsError:
            created = False
            try:
                fd = os.open(path, OPEN_FLAGS | os.O_RDWR)
            except OSError as e:
                raise path_error("open", path, e) from None
        except OSError as e:
            raise path_error("open", path, e) from None
        st = os.fstat(fd)
        if not _stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise UnsafePath(f"{path} is not a regular file")
        if created:
            try:
                _set_mode(fd, path, self._mode, self._gid)
            except Error:
                os.close(fd)
                raise
        elif st.st_uid != os.geteuid():
            # Even for root: the owner of a lock file can unlink it and make us look gone.
            os.close(fd)
            raise PermissionDenied(path, st.st_mode & 0o7777, st.st_uid, "lock file belongs to another user")
        return fd, created

    def _take_ownership(self) -> None:
        for attempt in range(10):
            fd, created = self._open_lock_file()
            if not try_lock(fd, 0, 1, True):
                # A producer holds a write lock; a read lock is someone blocking the name:
                # that lock file is given up and a new one made (consumers follow it).
                if not owner_held(fd) and attempt < 9:
                    st = os.fstat(fd)
                    cur = lstat_path(self.lock_path)
                    if cur.exists and (cur.dev, cur.ino) == (st.st_dev, st.st_ino):
                        os.unlink(self.lock_path)
                    os.close(fd)
                    continue
                os.close(fd)
                raise Busy(_owner_pid(self.path))
            st = os.fstat(fd)
            cur = lstat_path(self.lock_path)
            if cur.exists and cur.regular and (cur.dev, cur.ino) == (st.st_dev, st.st_ino):
                self._lock_fd, self._lock_created = fd, created
                return
            os.close(fd)  # unlinked between our open and our lock: again
        raise Busy(0)

    def _disown(self) -> None:
        """Undoes _take_ownership after a failed create."""
        if self._lock_fd < 0:
            return
        info = lstat_path(self.path)
        if not info.exists or self._lock_created:
            cur = lstat_path(self.lock_path)
            st = os.fstat(self._lock_fd)
            if cur.exists and (cur.dev, cur.ino) == (st.st_dev, st.st_ino):
                try:
                    os.unlink(self.lock_path)
                except OSError:
                    pass
        unlock(self._lock_fd, 0, 1)
        os.close(self._lock_fd)
        self._lock_fd = -1

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
            st = os.fstat(fd)
            b = os.pread(fd, HEADER_SIZE, 0)
            check_identity(b, st.st_size)
            h = Header.decode(b)
            validate_header(h, st.st_size)
            return _PSeg(fd, h, (st.st_dev, st.st_ino), whole=False)
        except (Error, OSError, ValueError):
            os.close(fd)
            return None  # a corrupt leftover is replaced by generation 1

    # ---- generations (section 2, amendment 8) ----------------------------------------

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
                try:
                    os.posix_fallocate(fd, 0, g.total)
                except OSError as e:
                    if e.errno == errno.ENOSPC:
                        raise NoSpace(self.dir, g.total, avail) from None
                    if e.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                        raise path_error("allocate", tmp, e) from None
                    os.ftruncate(fd, g.total)
                now = _now()
                flags = ((FLAG_CHECKSUM if self._checksum else 0) | (FLAG_SHARED_WAKE if self._shared_wake else 0)
                         | (FLAG_HOLDS if self._holds else 0))
                st = list(fmt.plane_stride) + [0] * (4 - len(fmt.plane_stride))
                po = list(fmt.plane_offset) + [0] * (4 - len(fmt.plane_offset))
                h = Header(magic=MAGIC, abi_version=ABI_VERSION, header_size=HEADER_SIZE, state=0, flags=flags,
                           total_size=g.total, generation=gen, heartbeat_ns=now, payload_offset=g.payload_offset,
                           payload_size=g.payload_size, producer_pid=os.getpid() & 0xFFFFFFFF,
                           slot_count=g.slot_count, slot_stride=g.slot_stride, slot_capacity=g.slot_capacity,
                           consumer_capacity=g.consumer_capacity, heartbeat_interval_ms=self._hb_ms,
                           width=fmt.width, height=fmt.height, pixel_format=fmt.fourcc,
                           plane_count=fmt.plane_count, plane_stride=tuple(st), plane_offset=tuple(po),
                           fps_num=fmt.fps_num, fps_den=fmt.fps_den, slot_table_offset=g.slot_table_offset,
                           consumer_table_offset=g.consumer_table_offset, created_ns=now,
                           producer_pidns=pidns(), last_seq=last_seq,
                           hold_max_ns=self._hold_max_ns if self._holds else 0)
                fst = os.fstat(fd)
                seg = _PSeg(fd, h, (fst.st_dev, fst.st_ino), whole=True)
                seg.np[::4096] = 0  # pre-fault every page: the first frames cost what later ones do
                seg.mem[0:HEADER_SIZE] = h.encode()
                _store4(seg.state, STATE_READY, _SC)
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

    # ---- publishing (section 4) --------------------------------------------------------

    @property
    def format(self) -> FrameFormat:
        return self._fmt

    @property
    def last_seq(self) -> int:
        """The sequence number of the last frame published (the next is last_seq + 1)."""
        return self._seq

    @property
    def generation(self) -> int:
        s = self._seg
        return s.h.generation if s is not None else 0

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
        return s  # type: ignore[return-value]

    def _begin(self, s: _PSeg) -> int:
        """Steps 1 and 2: the back slot, its lock made odd, then a store fence. With holds
        (amendment 10) the slot is chosen by C1-C4."""
        if s.holds:
            b = self._choose(s)
        else:
            b = (_load4(s.active, _SC) + 1) % s.slot_count
            lk = s.lock[b]
            _store8(lk, _load8(lk, _SC) | 1, _SC)
            A.seqlock_fence()  # the store fence: odd lock before the data (dmb ish on arm64)
        self._held = b
        return b

    def _choose(self, s: _PSeg) -> int:
        """Amendment 10's choice of the back slot: C1 the held and pending sets; C2 the first of
        active + 1, active + 2, ... in neither, else the first not held; C3 its lock odd; C4 the
        sets again: held meanwhile (a grant finished), the lock goes back to its even value and
        C1 again without it, afresh when that leaves none (2N scans at most). A held slot is
        written only when taken back: its lease ran out, or no scan found another (forged
        words, or holds changing during every scan)."""
        n = s.slot_count
        active = _load4(s.active, _SC) % n
        order = [(active + k) % n for k in range(1, n)]
        excluded = 0
        expired = 0
        for _ in range(2 * n):
            held, pending = s.hold_sets()  # C1
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
            held2, _ = s.hold_sets()  # C4
            if (held2 & ~expired) >> b & 1:
                _store8(lk, even, _SC)  # no data was written: back to its even value
                excluded |= 1 << b
                continue
            if (held2 >> b) & 1:
                s.take_back(b)  # its lease ran out
            return b
        # Forged words, or holds changing during every scan: never wait, take the next slot back.
        b = order[0]
        s.take_back(b)
        lk = s.lock[b]
        _store8(lk, _load8(lk, _SC) | 1, _SC)
        A.seqlock_fence()
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
        _store8(s.last_seq, seq, _SC)  # step 5: last_seq, then the flip
        _store4(s.active, b, _SC)
        self._seq = seq
        _fadd8(s.published, 1, _SC)
        _store8(s.last_commit, now, _SC)
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

    def publish(self, frame: Any, capture_ns: Optional[int] = None, user_meta: bytes = b"") -> int:
        """Copies ``frame`` into the back slot and commits it; returns its sequence number.

        ``frame``: a numpy array of the frame's shape (``format.shape``, any strides: an
        OpenCV image, a slice), or any buffer of the frame's bytes (MJPEG: the JPEG).
        ``capture_ns``: when the source produced it (time.monotonic_ns()); None = now.
        ``user_meta``: up to 64 bytes carried with the frame."""
        with self._mu:
            s = self._ready()
            b = self._begin(s)
            try:
                n = self._copy_in(s, b, frame)
            except BaseException:
                self._abort(s, b)
                raise
            return self._commit(s, n, capture_ns, bytes(user_meta))

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
            mv = memoryview(np.ascontiguousarray(frame)).cast("B")
        n = mv.nbytes
        if n > s.capacity:
            raise BadOptions(f"frame of {n} bytes, slot capacity {s.capacity} ({fmt})")
        if fmt.fourcc != MJPEG and n != packed_size(fmt):
            raise BadOptions(f"frame of {n} bytes (shape {getattr(frame, 'shape', None)}); {fmt} takes "
                             f"{packed_size(fmt)} bytes, shape {fmt.shape}")
        o = s.data_off[b]
        s.mv[o:o + n] = mv
        return n

    def frame(self, capture_ns: Optional[int] = None, user_meta: bytes = b"",
              nbytes: Optional[int] = None) -> FrameLoan:
        """The zero-copy form of publish: ``with p.frame() as buf: buf[...] = ...``; ``buf``
        is the back slot as a writable array of ``format.shape``. Leaving the block commits
        the frame, an exception aborts it. While the block runs, the slot's lock is odd
        and no other publish can start."""
        return FrameLoan(self, capture_ns, bytes(user_meta), nbytes)

    def _lend(self) -> np.ndarray:
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
            return self._commit(self._seg, n, capture_ns, meta)  # type: ignore[arg-type]
        finally:
            self._mu.release()

    def _abort_and_release(self) -> None:
        try:
            if self._held is not None and self._seg is not None:
                self._abort(self._seg, self._held)
        finally:
            self._mu.release()

    def reconfigure(self, width: int, height: int, format: Union[None, str, int] = None,
                    fps: Optional[float] = None, frame_size: int = 0) -> None:
        """Starts a new generation with another frame size or format; consumers follow it."""
        f = self._fmt
        fmt = complete(width, height, f.fourcc if format is None else format, f.fps if fps is None else fps,
                       frame_size)
        with self._mu:
            if self._closed:
                raise Closed("producer closed", op="reconfigure", name=self.name)
            self._regen(fmt)

    def add_source_drops(self, n: int) -> None:
        """Counts frames the source produced that could not be published."""
        with self._seg_lock:
            if self._seg is not None and self._seg.size_ok():
                _fadd8(self._seg.source_drops, n, _SC)

    def stats(self) -> ProducerStats:
        with self._seg_lock:
            s = self._seg
            if s is None or not s.size_ok():
                return ProducerStats(0, self._seq, 0, 0, 0, 0)
            _fence(_SC)
            active = int(np.count_nonzero(s.entry_states == ENTRY_ACTIVE))
            return ProducerStats(s.h.generation, _load8(s.last_seq, _SC), _load8(s.published, _SC),
                                 _load8(s.source_drops, _SC), _load8(s.reclaimed, _SC), active)

    # ---- heartbeat, reclaim, repair ----------------------------------------------------

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
                if magic != MAGIC or total != s.total or gen != s.h.generation:
                    broken = True  # truncated and grown back, or scribbled over
                else:
                    _store8(s.heartbeat, _now(), _SC)
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
                _store4(s.state, STATE_BROKEN, _SC)
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
                    _fadd8(s.reclaimed, 1, _SC)
                    # Amendment 10: the dead consumer's holds end after the CAS.
                    A.store32(s.base + off + ENT_HOLD_MASK, 0)
                    # The dead consumer's pidns, cleared while no joiner can claim the entry
                    # (we hold its lock exclusively), for joiners that do not write one.
                    _store8(s.base + off + ENT_PIDNS, 0, _SC)
            finally:
                unlock(s.fd, off, CONSUMER_ENTRY_SIZE)

    @staticmethod
    def _count_ignored(s: _PSeg) -> None:
        """Amendment 10: hold bits of entries not in state 2, bits at or past slot_count, and
        pending bits without their slot's bit are ignored by both sides, and counted in
        holds_ignored by this scan."""
        _fence(_SC)
        m = s.hold_masks
        held = m & np.uint32(0xFF)
        active = s.entry_states == ENTRY_ACTIVE
        odd = (held & ~np.uint32(s.slot_bits)) | (((m >> np.uint32(HOLD_PENDING_SHIFT)) & np.uint32(0xFF) & ~held) << np.uint32(8)) \
            | (m & ~np.uint32(0xFFFF))
        stray = np.where(active, odd, held)
        if stray.any():
            n = sum(bin(int(v)).count("1") for v in stray[stray != 0])
            _fadd8(s.h_ignored, n, _SC)

    def _keep_lock(self) -> None:
        """Re-creates and re-takes the lock file when it was removed from outside (systemd's
        RemoveIPC): without it a second producer could take the name of a live one."""
        info = lstat_path(self.lock_path)
        if info.exists:
            st = os.fstat(self._lock_fd)
            if (st.st_dev, st.st_ino) == (info.dev, info.ino):
                return
        old = self._lock_fd
        self._take_ownership()  # sets _lock_fd only on success
        unlock(old, 0, 1)
        os.close(old)

    # ---- closing ------------------------------------------------------------------------

    def close(self) -> None:
        """Ends the stream: an end-of-stream frame, state RETIRED, every consumer woken, the
        name and the lock file removed, the lock released. Consumers see EndOfStream."""
        with self._mu:
            if self._closed:
                return
            if self._held is not None and self._seg is not None:
                self._abort(self._seg, self._held)
            self._closed = True
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        with self._mu:
            s = self._seg
            try:
                if s is not None and s.size_ok():
                    self._begin(s)
                    self._commit(s, 0, None, b"", FRAME_EOS)
                    _store4(s.state, STATE_RETIRED, _SC)
                    s.wake_all()
            finally:
                if s is not None:
                    info = lstat_path(self.path)
                    if info.exists and (info.dev, info.ino) == s.ident:
                        try:
                            os.unlink(self.path)
                        except OSError:
                            pass
                if self._lock_fd >= 0:
                    info = lstat_path(self.lock_path)
                    st = os.fstat(self._lock_fd)
                    if info.exists and (info.dev, info.ino) == (st.st_dev, st.st_ino):
                        try:
                            os.unlink(self.lock_path)  # while still holding byte 0
                        except OSError:
                            pass
                    unlock(self._lock_fd, 0, 1)
                    os.close(self._lock_fd)
                    self._lock_fd = -1
                with self._seg_lock:
                    if s is not None:
                        s.release()
                    self._seg = None
        self._finalizer.detach()

    @staticmethod
    def _finalize(ref: "weakref.ReferenceType[Producer]") -> None:
        p = ref()
        if p is not None:
            try:
                p.close()
            except Exception:
                pass

    def __enter__(self) -> "Producer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"generation={self.generation} last_seq={self._seq}"
        return f"<framebus.Producer {self.name!r} {self._fmt} {state}>"
