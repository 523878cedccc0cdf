"""The futex of PROTOCOL.md section 5 through ``syscall(2)``, from ctypes.

Shared futexes (FUTEX_WAIT / FUTEX_WAKE without FUTEX_PRIVATE_FLAG): the
waker is another process. ctypes releases the GIL for the call, so other
threads of the interpreter run while a consumer sleeps.
"""

from __future__ import annotations

import ctypes
import errno
import platform

from ._errors import Unsupported

FUTEX_WAIT = 0
FUTEX_WAKE = 1
INT_MAX = 0x7FFFFFFF

_SYS_FUTEX = {"x86_64": 202, "amd64": 202, "aarch64": 98, "arm64": 98}
_machine = platform.machine().lower()
if _machine not in _SYS_FUTEX:  # pragma: no cover
    raise Unsupported(f"framebus for Python supports x86-64 and arm64 Linux; this is {_machine}")
SYS_FUTEX = _SYS_FUTEX[_machine]

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_syscall.argtypes = [ctypes.c_long, ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32,
                     ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint32]


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


WOKEN, TIMED_OUT, CHANGED, INTERRUPTED, FAULT = 0, 1, 2, 3, 4


def wait(addr: int, expected: int, timeout_ns: int) -> int:
    """Sleeps while the u32 at addr equals expected, at most timeout_ns.

    Returns WOKEN (a wake, or a spurious one), TIMED_OUT, CHANGED (EAGAIN:
    the word was not expected), INTERRUPTED (EINTR: a signal; Python runs
    its handler at the next bytecode) or FAULT (EFAULT: the page is gone,
    the file was truncated under the mapping). The caller re-checks the word
    in every case.
    """
    if timeout_ns < 0:
        timeout_ns = 0
    sec, nsec = divmod(timeout_ns, 1_000_000_000)
    ts = _Timespec(sec, nsec)  # per call: another thread may sleep at the same time
    r = _syscall(SYS_FUTEX, addr, FUTEX_WAIT, expected & 0xFFFFFFFF, ctypes.addressof(ts), None, 0)
    if r == 0:
        return WOKEN
    e = ctypes.get_errno()
    if e == errno.ETIMEDOUT:
        return TIMED_OUT
    if e == errno.EAGAIN:
        return CHANGED
    if e == errno.EINTR:
        return INTERRUPTED
    if e == errno.EFAULT:
        return FAULT
    raise OSError(e, f"futex wait: {errno.errorcode.get(e, e)}")


def wake(addr: int, n: int = INT_MAX) -> int:
    """Wakes up to n sleepers on the u32 at addr; returns how many were woken (-1 on error)."""
    woken: int = _syscall(SYS_FUTEX, addr, FUTEX_WAKE, n, None, None, 0)
    return woken
