"""What the consumer and the producer both map of a segment (PROTOCOL.md section 3).

``read_header`` reads and checks a segment's header before anything is mapped (no SIGBUS
from a short file). ``Mapping`` is one generation's mappings: the header's words as
addresses, the slot table (every slot's lock word and descriptor), the consumer table (every
entry's offset; its state and hold_mask words as numpy views, for the scans of the wake, of
holds (amendment 10) and of the hold grant), the file-size check, and the release. The
consumer maps the control block read-write and the frame data read-only (two mappings of one
descriptor); the producer maps its own segment whole, or only the control block of a dead
producer's generation that it retires. Every mapping of a segment is in one group of the
SIGBUS guard (``_native.py``).
"""

from __future__ import annotations

import ctypes
import mmap
import os
from typing import List, Tuple

import numpy as np

from . import _native as N
from ._format import FrameFormat, Words
from ._layout import (CONSUMER_ENTRY_SIZE, ENT_HOLD_MASK, FLAG_CHECKSUM, FLAG_HOLDS, FLAG_SHARED_WAKE, HEADER_SIZE,
                      OFF, SLOT_DESC_SIZE, Header, check_identity, validate_header)

_fstat = os.fstat
_trunc = N.truncated  # the guard's flag: the segment's mappings were replaced by zero pages

#: A device and inode: which file a path or a descriptor names.
Ident = Tuple[int, int]


def read_header(fd: int) -> Tuple[Header, os.stat_result]:
    """The header of the segment open at ``fd`` and the file's status, checked as every
    reader checks them: magic and abi_version (section 3.1), then every layout field against
    the file size (the Go reader's rules). Raises BadMagic, VersionMismatch, CorruptSegment."""
    st = _fstat(fd)
    b = os.pread(fd, HEADER_SIZE, 0)
    check_identity(b, st.st_size)
    h = Header.decode(b)
    validate_header(h, st.st_size)
    return h, st


class Mapping:
    """One generation's mappings, as both sides see them. ``bind`` takes the control block
    (the header, the slot table, the consumer table) once it is mapped; ``release`` drops
    every view and mapping and closes the descriptor."""

    #: Attributes that hold mappings or views of them, dropped by release (each subclass
    #: names its own; a mapping is unmapped when its last reference goes).
    _MAPPED: Tuple[str, ...] = ()

    def __init__(self, fd: int, h: Header, ident: Ident) -> None:
        self.fd, self.h, self.ident = fd, h, ident
        self.released = False
        self.total_size = h.total_size
        self.fmt: FrameFormat = h.format()
        self.slot_count = h.slot_count
        self.capacity = h.slot_capacity
        self.slot_bits = (1 << h.slot_count) - 1
        self.checksum = bool(h.flags & FLAG_CHECKSUM)
        self.shared_wake = bool(h.flags & FLAG_SHARED_WAKE)  # amendment 7 (the shared wake word)
        self.holds = bool(h.flags & FLAG_HOLDS)  # amendment 10 (holds)
        self._views: List[memoryview] = []  # released first by release
        N.warn_unguarded()
        self.group = N.new_group()  # the SIGBUS guard's group of every mapping of the segment

    def map(self, length: int, offset: int, writable: bool, populate: bool = False) -> N.GuardedMap:
        """A MAP_SHARED mapping of the file, guarded in the segment's group."""
        flags = mmap.MAP_SHARED | (getattr(mmap, "MAP_POPULATE", 0) if populate else 0)
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
        m = N.GuardedMap(self.fd, length, flags=flags, prot=prot, offset=offset)
        m.guard(self.group, writable)
        return m

    def bind(self, ctl: mmap.mmap) -> None:
        """The addresses of the header's words and of every slot's lock, the descriptors'
        and entries' offsets, and the entries' state and hold_mask words as numpy views, in
        the control block ``ctl`` (mapped from offset 0)."""
        h = self.h
        base = ctypes.addressof(ctypes.c_char.from_buffer(ctl))  # the export ends with the temporary
        self.base = base
        self.state_addr = base + OFF["state"]
        self.active_addr = base + OFF["active"]
        self.last_seq_addr = base + OFF["last_seq"]
        self.heartbeat_addr = base + OFF["heartbeat_ns"]
        self.published_addr = base + OFF["frames_published"]
        self.last_commit_addr = base + OFF["last_commit_ns"]
        self.source_drops_addr = base + OFF["source_drops"]
        self.reclaimed_addr = base + OFF["consumers_reclaimed"]
        self.wake_seq_addr = base + OFF["wake_seq"]  # amendment 7 (the shared wake word)
        self.wake_waiters_addr = base + OFF["wake_waiters"]
        self.granted_addr = base + OFF["holds_granted"]  # amendment 10 (holds): the header's counters
        self.refused_addr = base + OFF["holds_refused"]
        self.taken_back_addr = base + OFF["holds_taken_back"]
        self.ignored_addr = base + OFF["holds_ignored"]
        self.desc = [h.slot_table_offset + i * SLOT_DESC_SIZE for i in range(h.slot_count)]
        self.lock = [base + d for d in self.desc]
        cto, cap = h.consumer_table_offset, h.consumer_capacity
        self.entry_off = [cto + i * CONSUMER_ENTRY_SIZE for i in range(cap)]
        # Every entry's state and hold_mask word: one numpy look for the wake's scan, the
        # producer's hold sets and the consumer's grant.
        self.ent_states: Words = np.ndarray((cap,), np.uint32, ctl, cto, (CONSUMER_ENTRY_SIZE,))
        self.ent_masks: Words = np.ndarray((cap,), np.uint32, ctl, cto + ENT_HOLD_MASK, (CONSUMER_ENTRY_SIZE,))

    def lost(self) -> bool:
        """The guard replaced the mappings with zero pages: the file was truncated under an access."""
        return _trunc(self.group)

    def size_ok(self) -> bool:
        """The file still has the size of its header (a truncated file would SIGBUS the mapping)
        and no access found it truncated (the guard's flag)."""
        if _trunc(self.group):
            return False
        try:
            return _fstat(self.fd).st_size >= self.total_size
        except OSError:
            return False

    def unmap(self) -> None:
        """Drops the views and the mappings. Each mapping is unmapped when its last reference
        goes (at once, unless a caller still holds views of it): GuardedMap forgets its guarded
        range first, then the mmap unmaps it."""
        for mv in self._views:
            try:
                mv.release()
            except Exception:
                pass
        self._views = []
        for name in ("ent_states", "ent_masks") + self._MAPPED:
            self.__dict__.pop(name, None)

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        self.unmap()
        try:
            os.close(self.fd)  # for the consumer, drops every OFD lock of this description
        except OSError:
            pass
