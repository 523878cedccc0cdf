"""The Linux side of PROTOCOL.md section 1: names, files, OFD locks, free space."""

from __future__ import annotations

import errno
import fcntl
import os
import stat as _stat
import struct
from typing import NamedTuple, Optional

from ._errors import BadName, NotFound, PermissionDenied, UnsafePath, Error, NoSpace

MAX_NAME_LEN = 64
DEFAULT_DIR = "/dev/shm"
FILE_PREFIX = "framebus."

F_OFD_GETLK = getattr(fcntl, "F_OFD_GETLK", 36)
F_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", 37)
F_RDLCK, F_WRLCK, F_UNLCK = fcntl.F_RDLCK, fcntl.F_WRLCK, fcntl.F_UNLCK

# struct flock on LP64 Linux (x86-64, arm64): short l_type, short l_whence, off_t l_start,
# off_t l_len, pid_t l_pid, padding: 32 bytes. l_pid must be 0 for OFD locks.
_FLOCK = struct.Struct("@hhqqi4x")

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def validate_name(name: object) -> str:
    """Checks a bus name (PROTOCOL.md section 1) without any system call."""
    if not isinstance(name, str):
        raise BadName(repr(name), "not a string")
    if name == "":
        raise BadName(name, "empty")
    if len(name) > MAX_NAME_LEN:
        raise BadName(name, "longer than 64 characters")
    if name[0] == ".":
        raise BadName(name, "starts with '.'")
    if name.endswith(".lock"):
        raise BadName(name, "ends in .lock")
    if ".tmp-" in name:
        raise BadName(name, "contains .tmp-")
    if not set(name) <= _NAME_CHARS:
        raise BadName(name, "only [A-Za-z0-9._-] are allowed")
    return name


def bus_dir(d: Optional[str] = None) -> str:
    """dir if given, else $FRAMEBUS_DIR, else /dev/shm."""
    return d or os.environ.get("FRAMEBUS_DIR") or DEFAULT_DIR


def segment_path(d: Optional[str], name: str) -> str:
    return os.path.join(bus_dir(d), FILE_PREFIX + name)


def lock_path(d: Optional[str], name: str) -> str:
    return segment_path(d, name) + ".lock"


def path_error(op: str, path: str, e: OSError) -> Error:
    """An OSError as the framebus exception that says what it means."""
    code = e.errno
    if code in (errno.EACCES, errno.EPERM):
        mode = uid = None
        try:
            st = os.lstat(path)
            mode, uid = st.st_mode & 0o7777, st.st_uid
        except OSError:
            pass
        return PermissionDenied(path, mode, uid, os.strerror(code), op=op)
    if code == errno.ENOENT:
        return NotFound(f"{path} does not exist", path=path, op=op)
    if code == errno.ELOOP:
        return UnsafePath(f"{path} is a symbolic link", op=op)
    if code == errno.EISDIR:
        return UnsafePath(f"{path} is a directory", op=op)
    if code == errno.ENOTDIR:
        return NotFound(f"a component of {path} is not a directory", path=path, op=op)
    if code == errno.ENOSPC:
        return NoSpace(os.path.dirname(path), 0, 0, op=op)
    return Error(f"{op} {path}: {e.strerror or e}", op=op)


OPEN_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC


def open_existing(path: str, write: bool) -> int:
    """Opens an existing regular file without following a symbolic link."""
    flags = OPEN_FLAGS | os.O_NONBLOCK | (os.O_RDWR if write else os.O_RDONLY)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise path_error("open", path, e) from None
    try:
        st = os.fstat(fd)
    except OSError as e:
        os.close(fd)
        raise path_error("stat", path, e) from None
    if not _stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UnsafePath(f"{path} is not a regular file")
    return fd


def _lock_op(fd: int, cmd: int, typ: int, start: int, length: int) -> bytes:
    return fcntl.fcntl(fd, cmd, _FLOCK.pack(typ, os.SEEK_SET, start, length, 0))


def try_lock(fd: int, start: int, length: int, exclusive: bool) -> bool:
    """A non-blocking OFD lock on [start, start+length): False when another open
    file description holds a conflicting one."""
    try:
        _lock_op(fd, F_OFD_SETLK, F_WRLCK if exclusive else F_RDLCK, start, length)
        return True
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise


def unlock(fd: int, start: int, length: int) -> None:
    try:
        _lock_op(fd, F_OFD_SETLK, F_UNLCK, start, length)
    except OSError:
        pass


def conflicting_lock(fd: int, start: int, length: int) -> int:
    """The type of a lock another open file description holds on the range (F_UNLCK:
    none), by F_OFD_GETLK, which takes nothing."""
    r = _lock_op(fd, F_OFD_GETLK, F_WRLCK, start, length)
    kind: int = _FLOCK.unpack(r)[0]
    return kind


def owner_held(fd: int) -> bool:
    """Whether a producer holds its write lock on byte 0 of the lock file (a read
    lock there is not a producer: anybody who can read the file can take one)."""
    try:
        return conflicting_lock(fd, 0, 1) == F_WRLCK
    except OSError:
        return False


class PathInfo(NamedTuple):
    exists: bool
    symlink: bool = False
    regular: bool = False
    dev: int = 0
    ino: int = 0
    uid: int = 0
    mode: int = 0
    size: int = 0


def lstat_path(path: str) -> PathInfo:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return PathInfo(False)
    except OSError as e:
        raise path_error("stat", path, e) from None
    return PathInfo(True, _stat.S_ISLNK(st.st_mode), _stat.S_ISREG(st.st_mode), st.st_dev, st.st_ino,
                    st.st_uid, st.st_mode & 0o7777, st.st_size)


def free_space(d: str) -> int:
    """Bytes available to an unprivileged writer in d (statfs)."""
    try:
        st = os.statvfs(d)
    except OSError as e:
        raise path_error("statfs", d, e) from None
    return st.f_bavail * st.f_frsize


_pidns: Optional[int] = None


def pidns() -> int:
    """The inode number of /proc/self/ns/pid (amendment 8, PID namespaces), 0 when unknown."""
    global _pidns
    if _pidns is None:
        try:
            _pidns = os.stat("/proc/self/ns/pid").st_ino
        except OSError:
            _pidns = 0
    return _pidns


def reset_after_fork() -> None:
    global _pidns
    _pidns = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=reset_after_fork)
