"""The producer's ownership of a name (PROTOCOL.md section 2), as the Go producer's
(framebus/producer.go): the lock file and its write lock on byte 0, taken over from a
dead producer, given up after a failed creation, and taken again when it was removed from
outside; and the state that the producer's parts share.

The producer is split as the Go producer is (framebus/producer.go, generation.go,
commit.go, heartbeat.go, holds.go): Python has no methods of one type across files, so each
part is a class built on the one before (``_Ownership`` here, then
``_generation._Generations``, ``_holds._BackSlot``, ``_commit._Committer``,
``_heartbeat._Heartbeat``, and ``_producer.Producer``, whose constructor sets the state
declared here)."""

from __future__ import annotations

import grp
import os
import stat as _stat
import threading
from typing import TYPE_CHECKING, Optional, Tuple, Union

from ._errors import BadOptions, Busy, Error, PermissionDenied, UnsafePath
from ._format import FrameFormat
from ._mapping import read_header
from ._sys import OPEN_FLAGS, lstat_path, open_existing, owner_held, path_error, try_lock, unlock

if TYPE_CHECKING:
    from ._generation import _PSeg


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
        h, _ = read_header(fd)
        return h.producer_pid
    except (Error, OSError):
        return 0
    finally:
        os.close(fd)


class _Ownership:
    """The producer's lock file; and the state of a Producer, set by its constructor."""

    name: str
    dir: str
    path: str
    lock_path: str
    _fmt: FrameFormat
    _slots: int
    _consumers: int
    _checksum: bool
    _hb_ms: int
    _mode: int
    _gid: int
    _shared_wake: bool
    _holds: bool
    _hold_max_ns: int
    _mu: threading.Lock  # held from a frame's begin to its commit; excludes generation changes
    _seg_lock: threading.Lock  # guards _seg's lifetime against the heartbeat thread
    _seg: Optional[_PSeg]
    _seq: int
    _held: Optional[int]
    _closed: bool
    _need_regen: bool
    last_error: Optional[BaseException]  #: the last error of the background heartbeat
    _lock_fd: int
    _lock_created: bool
    _stop: threading.Event

    def _open_lock_file(self) -> Tuple[int, bool]:
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
