"""Atomic operations and fences on shared memory, from Python.

CPython has no atomic compare-and-swap, exchange or fetch-add on memory it
shares with other processes, and the protocol needs them (PROTOCOL.md
sections 2, 4 and 5: the entry state CAS, the semaphore exchange, the
``waiters`` counts of the store-buffering wake handshake). They come from
GCC's runtime library ``libatomic.so.1`` (Debian and Ubuntu package
``libatomic1``, installed with gcc and by most desktop systems), called
through ctypes: no compiler at install time, one shared library that every
Linux distribution ships. Every call passes memory order 5 (seq_cst).

What the calls are, per architecture (objdump of Debian 12's libatomic):

* x86-64: ``__atomic_load_8`` is a plain ``mov`` (x86 loads are acquire),
  ``__atomic_store_8`` is ``xchg`` (a full barrier), the read-modify-writes
  are ``lock``-prefixed, ``atomic_thread_fence`` is ``lock or`` (a full
  barrier).
* arm64: loads are ``ldar`` (acquire), stores ``stlr`` (release), the
  read-modify-writes ``ldaddal``/``casal``/``swpal`` (LSE, chosen at load
  time) or acquire-release exclusive-pair loops, ``atomic_thread_fence`` is
  ``dmb ish``.

The sequence lock (section 5, memory ordering) gets its orders so: the
reader's first ``lock`` load is ``load64`` (at least acquire), the descriptor
and data reads are plain loads (``struct.unpack_from``, ``memcpy``), then
``fence()`` (``dmb ish`` on arm64, which orders those loads before the second
``load64`` of ``lock``; a full barrier on x86-64, where only the compiler
needed constraining). The writer stores the odd ``lock`` with ``store64``,
calls ``fence()`` (orders that store before the plain data stores that
follow), writes the data and descriptor, and stores the even ``lock`` with
``store64`` (release: orders the data before it). Between two Python
statements the C compiler cannot move a memory access either: each statement
reaches memory through calls into other shared objects (the interpreter,
ctypes, numpy), across which a compiler keeps every access to memory whose
address has escaped, as a mapping's has.

Each call costs about 0.25-0.4 microseconds here (ctypes' argument
conversion, not the instruction): see docs/PYTHON.md for the per-frame
count and the alternatives weighed (a compiled helper).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import Any, Callable

from ._errors import Unsupported

SEQ_CST = 5

__all__ = [
    "load32", "load64", "store32", "store64", "exchange32", "fetch_add32", "fetch_add64",
    "cas32", "fetch_or32", "fetch_and32", "fence", "LIBRARY",
]


def _open_libatomic() -> ctypes.CDLL:
    names = ["libatomic.so.1"]
    found = ctypes.util.find_library("atomic")
    if found and found not in names:
        names.append(found)
    errors = []
    for n in names:
        try:
            return ctypes.CDLL(n)
        except OSError as e:  # pragma: no cover - depends on the system
            errors.append(f"{n}: {e}")
    raise Unsupported("libatomic.so.1 not found (Debian/Ubuntu: apt-get install libatomic1; "
                      "Fedora: dnf install libatomic): " + "; ".join(errors))


if not sys.platform.startswith("linux"):  # pragma: no cover
    raise Unsupported(f"framebus for Python runs on Linux only (this is {sys.platform})")

_lib = _open_libatomic()
LIBRARY: str = getattr(_lib, "_name", "libatomic.so.1")

_vp, _u32, _u64, _int = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int


def _fn(name: str, restype: Any, *argtypes: Any) -> Callable[..., Any]:
    f = _lib[name]  # a ctypes function pointer
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


# The ctypes function pointers, typed by what ctypes converts: an address and integers in,
# an int (or None) out. (addr, order) -> value; (addr, value, order) -> old value or None.
_Load = Callable[[int, int], int]
_Store = Callable[[int, int, int], None]
_RMW = Callable[[int, int, int], int]

_load4: _Load = _fn("__atomic_load_4", _u32, _vp, _int)
_load8: _Load = _fn("__atomic_load_8", _u64, _vp, _int)
_store4: _Store = _fn("__atomic_store_4", None, _vp, _u32, _int)
_store8: _Store = _fn("__atomic_store_8", None, _vp, _u64, _int)
_xchg4: _RMW = _fn("__atomic_exchange_4", _u32, _vp, _u32, _int)
_fadd4: _RMW = _fn("__atomic_fetch_add_4", _u32, _vp, _u32, _int)
_fadd8: _RMW = _fn("__atomic_fetch_add_8", _u64, _vp, _u64, _int)
_for4: _RMW = _fn("__atomic_fetch_or_4", _u32, _vp, _u32, _int)
_fand4: _RMW = _fn("__atomic_fetch_and_4", _u32, _vp, _u32, _int)
_cas4: Callable[[int, int, int, int, int], bool] = _fn("__atomic_compare_exchange_4", ctypes.c_bool, _vp, _vp, _u32,
                                                      _int, _int)
_fence: Callable[[int], None] = _fn("atomic_thread_fence", None, _int)


def load32(addr: int) -> int:
    """Sequentially consistent 32-bit load (``__atomic_load_4``)."""
    return _load4(addr, SEQ_CST)


def load64(addr: int) -> int:
    """Sequentially consistent 64-bit load (``__atomic_load_8``)."""
    return _load8(addr, SEQ_CST)


def store32(addr: int, value: int) -> None:
    """Sequentially consistent 32-bit store."""
    _store4(addr, value, SEQ_CST)


def store64(addr: int, value: int) -> None:
    """Sequentially consistent 64-bit store."""
    _store8(addr, value, SEQ_CST)


def exchange32(addr: int, value: int) -> int:
    """Atomically store value and return the old one (seq_cst)."""
    return _xchg4(addr, value, SEQ_CST)


def fetch_add32(addr: int, delta: int) -> int:
    """Atomic add, modulo 2**32 (pass 0xFFFFFFFF to subtract 1); returns the old value."""
    return _fadd4(addr, delta & 0xFFFFFFFF, SEQ_CST)


def fetch_add64(addr: int, delta: int) -> int:
    """Atomic 64-bit add; returns the old value."""
    return _fadd8(addr, delta & 0xFFFFFFFFFFFFFFFF, SEQ_CST)


def fetch_or32(addr: int, bits: int) -> int:
    """Atomic u32 |= bits, seq_cst; returns the old value (amendment 10's hold_mask)."""
    return _for4(addr, bits & 0xFFFFFFFF, SEQ_CST)


def fetch_and32(addr: int, bits: int) -> int:
    """Atomic u32 &= bits, seq_cst; returns the old value."""
    return _fand4(addr, bits & 0xFFFFFFFF, SEQ_CST)


def cas32(addr: int, old: int, new: int) -> bool:
    """Compare-and-swap (seq_cst both ways): True when *addr was old and is now new."""
    expect = ctypes.c_uint32(old)  # per call: threads of one process may CAS at once
    return bool(_cas4(addr, ctypes.addressof(expect), new, SEQ_CST, SEQ_CST))


def fence() -> None:
    """A full memory barrier (``atomic_thread_fence``): the seqlock's load and store fences."""
    _fence(SEQ_CST)


import platform as _platform

#: x86-64 is TSO: loads are not reordered with loads, stores not with stores, so the
#: seqlock's load fence (reader) and store fence (writer) are compiler-only there, and a
#: call into libatomic already is a compiler barrier. Everywhere else (arm64) they are
#: ``atomic_thread_fence`` calls (``dmb ish``).
TSO: bool = _platform.machine().lower() in ("x86_64", "amd64")


def seqlock_fence() -> None:
    """The sequence lock's load fence (between the data reads and the second lock load) and
    store fence (between the odd lock store and the data writes): nothing on x86-64 (TSO),
    ``atomic_thread_fence`` (``dmb ish``) elsewhere."""
    if not TSO:
        _fence(SEQ_CST)


# Bound methods for the hot paths (one attribute lookup less per call).
raw_load4, raw_load8, raw_store4, raw_store8 = _load4, _load8, _store4, _store8
raw_xchg4, raw_fadd4, raw_fadd8, raw_fence = _xchg4, _fadd4, _fadd8, _fence
