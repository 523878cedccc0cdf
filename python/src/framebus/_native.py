"""The native helper (``_native.c``), loaded with ctypes: the SIGBUS guard over the bus
mappings and the hardware CRC-32C.

The helper is a plain shared library, ``_fbhelper*.so`` (it does not include Python.h:
not a module, never imported; the name differs from this file's so that the import
system does not take it for ``framebus._native``), built by
setuptools as an optional extension when the package is installed (``pip install
--no-build-isolation``, the machine's gcc). When it is missing (no compiler at
install time, another architecture, ``FRAMEBUS_NO_NATIVE=1``) the package runs on
its pure-Python fallback: ``GUARDED`` is False and the first bus opened says, once,
through the ``warnings`` module, what is not guarded (``UNGUARDED``).

Guard. Every mapping of a segment is a :class:`GuardedMap` registered in the
segment's group. A SIGBUS inside a registered range (a bus file truncated under the
mapping) makes the handler map zero pages over every range of the group and set the
group's flag; the access completes reading zeros. The package checks
``truncated(group)`` after each read and validation and never delivers such data. A
range is forgotten before its mapping goes (``GuardedMap.__del__`` runs before the
mmap's own deallocation unmaps it).
"""

from __future__ import annotations

import ctypes
import glob
import mmap
import os
import threading
import warnings
from typing import Any, List, Optional

import numpy as np

#: True when the SIGBUS guard is in place: a bus file truncated under a read is an
#: error or a new generation, never the death of the interpreter.
GUARDED = False
#: True when CRC-32C comes from the helper (SSE4.2 crc32 on three streams, or
#: slicing-by-8), without the GIL.
NATIVE_CRC = False
#: Why the helper is not used ("" when it is).
REASON = ""
#: What the fallback cannot guard (the text of the warning).
UNGUARDED = ("a bus file truncated (by someone with write access to it) while this process reads or writes "
             "the mapping - Consumer.next() and read_into()'s copy and checksum, your own use of Frame.array "
             "and Frame.planes, Producer.publish()'s copy and checksum, a frame() block's writes - kills the "
             "interpreter with SIGBUS; only the file-size checks between reads remain (before each read after "
             "a timeout, in Frame.valid(), in the producer before each frame and in its heartbeat); and CRC-32C "
             "runs in numpy (about 20 ms per 1080p RGBA frame)")

_lib: Optional[ctypes.CDLL] = None
# The helper's flag array (a ctypes array of one byte per group) and functions (ctypes
# function pointers), None until _load() finds the helper: every caller checks _lib, or a
# group >= 0, which only a loaded helper gives.
_flags: Any = None
_install: Any = None
_register: Any = None
_unregister: Any = None
_clear: Any = None
_crc: Any = None
_copy: Any = None
_mu = threading.Lock()
_free_groups: List[int] = []
_group_refs: List[int] = []
_warned = False


def _load() -> None:
    global _lib, _flags, _install, _register, _unregister, _clear, _crc, _copy, GUARDED, NATIVE_CRC, REASON
    if os.environ.get("FRAMEBUS_NO_NATIVE", "") not in ("", "0"):
        REASON = "FRAMEBUS_NO_NATIVE is set"
        return
    here = os.path.dirname(os.path.abspath(__file__))
    found = sorted(glob.glob(os.path.join(here, "_fbhelper*.so")))
    if not found:
        REASON = f"the native helper was not built into {here} (no C compiler when the package was installed?)"
        return
    try:
        lib = ctypes.CDLL(found[0])
        lib.fb_guard_install.restype = ctypes.c_int
        lib.fb_guard_install.argtypes = []
        lib.fb_register.restype = ctypes.c_int
        lib.fb_register.argtypes = [ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int, ctypes.c_int]
        lib.fb_unregister.restype = None
        lib.fb_unregister.argtypes = [ctypes.c_int]
        lib.fb_clear_flag.restype = None
        lib.fb_clear_flag.argtypes = [ctypes.c_int]
        lib.fb_crc32c.restype = ctypes.c_uint32
        lib.fb_crc32c.argtypes = [ctypes.c_uint32, ctypes.c_size_t, ctypes.c_size_t]
        lib.fb_copy.restype = None
        lib.fb_copy.argtypes = [ctypes.c_size_t, ctypes.c_size_t, ctypes.c_size_t]
        lib.fb_max_groups.restype = ctypes.c_int
        n = lib.fb_max_groups()
        flags = (ctypes.c_uint8 * n).in_dll(lib, "fb_flags")
        if lib.fb_crc32c(0, ctypes.addressof(ctypes.create_string_buffer(b"123456789", 9)), 9) != 0xE3069283:
            raise OSError("CRC-32C check value wrong")
        if lib.fb_guard_install() < 0:
            raise OSError("sigaction(SIGBUS) failed")
    except (OSError, AttributeError, ValueError) as e:
        REASON = f"cannot load {found[0]}: {e}"
        return
    _lib, _flags = lib, flags
    _install, _register, _unregister, _clear = lib.fb_guard_install, lib.fb_register, lib.fb_unregister, lib.fb_clear_flag
    _crc, _copy = lib.fb_crc32c, lib.fb_copy
    _free_groups.extend(range(n - 1, -1, -1))
    _group_refs.extend([0] * n)
    GUARDED = NATIVE_CRC = True


_load()


def warn_unguarded() -> None:
    """Says once, through the warnings module, what the fallback cannot guard."""
    global _warned
    if GUARDED or _warned:
        return
    _warned = True
    warnings.warn(f"framebus: no SIGBUS guard ({REASON}): {UNGUARDED}", RuntimeWarning, stacklevel=3)


def ensure() -> None:
    """Puts the SIGBUS handler back when another one replaced it (faulthandler.enable(),
    signal.signal): ours hands foreign faults to the one it replaced."""
    if _install is not None:
        _install()


def new_group() -> int:
    """A group for the mappings of one segment (-1 without the helper, or when all are
    taken: that segment is then unguarded)."""
    if _lib is None:
        return -1
    with _mu:
        if not _free_groups:
            return -1
        g = _free_groups.pop()
        _clear(g)
        return g


def truncated(g: int) -> bool:
    """Whether a fault replaced the group's mappings with zero pages."""
    return g >= 0 and _flags[g] != 0


def address(m: mmap.mmap) -> int:
    return int(np.frombuffer(m, np.uint8).ctypes.data)


class GuardedMap(mmap.mmap):
    """An mmap whose address range is registered with the guard (group ``g``) until it
    is unmapped. Close it by dropping the last reference (never ``close()``: the range
    must be forgotten first, which ``__del__`` does before the unmapping)."""

    _fb_region = -1
    _fb_group = -1

    def guard(self, g: int, writable: bool) -> None:
        if _lib is None or g < 0:
            return
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
        r: int = _register(address(self), len(self), prot, g)
        if r >= 0:
            with _mu:
                _group_refs[g] += 1
            self._fb_region, self._fb_group = r, g

    def __del__(self) -> None:
        r, g = self._fb_region, self._fb_group
        if r >= 0 and _unregister is not None:
            self._fb_region = -1
            _unregister(r)
            with _mu:
                _group_refs[g] -= 1
                if _group_refs[g] == 0:
                    _free_groups.append(g)


def crc32c_at(addr: int, n: int) -> int:
    """CRC-32C of n bytes at addr (the helper; the GIL is released)."""
    crc: int = _crc(0, addr, n)
    return crc


def copy(dst: int, src: int, n: int) -> None:
    _copy(dst, src, n)


def faults() -> int:
    """Faults the guard turned into zero pages in this process (tests, diagnostics)."""
    return ctypes.c_uint64.in_dll(_lib, "fb_faults").value if _lib is not None else 0


def foreign() -> int:
    """SIGBUS signals the guard handed to the previous handler (not in a bus mapping)."""
    return ctypes.c_uint64.in_dll(_lib, "fb_foreign").value if _lib is not None else 0
