"""The producer: PROTOCOL.md sections 2 and 4, amendments 7 (the shared wake word), 8 (PID
namespaces) and 10 (holds), in the order of operations of the Go producer
(framebus/producer.go, generation.go, commit.go, heartbeat.go, holds.go), split as it is:
this module is the Producer (options, the public API, close); ``_ownership`` the lock file;
``_generation`` its mapping of a generation, new generations and takeovers; ``_holds`` the
back slot's choice under holds; ``_commit`` publish and frame(); ``_heartbeat`` the
heartbeat thread."""

from __future__ import annotations

import os
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np

from . import _atomics as A
from ._errors import BadOptions, Closed, Error
from ._format import FrameFormat, Pixels, complete, packed_size
from ._generation import _PSeg, collect_abandoned
from ._heartbeat import _Heartbeat
from ._layout import DEFAULT_CONSUMERS, ENTRY_ACTIVE, FRAME_EOS, MAX_CONSUMERS, MAX_SLOTS, MIN_SLOTS, STATE_RETIRED
from ._ownership import _group_id
from ._sys import bus_dir, lock_path, lstat_path, segment_path, unlock, validate_name

_SC = A.SEQ_CST
_load8, _store4, _fadd8, _fence = A.raw_load8, A.raw_store4, A.raw_fadd8, A.raw_fence

__all__ = ["FrameLoan", "Producer", "ProducerStats", "collect_abandoned"]


@dataclass(frozen=True)
class ProducerStats:
    generation: int
    last_seq: int
    frames_published: int
    source_drops: int
    consumers_reclaimed: int
    active_consumers: int


class FrameLoan:
    """The back slot, lent by ``Producer.frame()``: a context manager whose value is the
    slot as a writable numpy array of the frame's shape. Leaving the block commits it;
    an exception aborts it (nothing is published and the slot's old frame is
    invalidated). Set ``nbytes`` for a variable-size format (MJPEG)."""

    def __init__(self, p: "Producer", capture_ns: Optional[int], user_meta: bytes, nbytes: Optional[int]) -> None:
        self._p, self._capture, self._meta, self.nbytes = p, capture_ns, user_meta, nbytes
        self.seq = 0  #: the committed frame's sequence number, after the block
        self.array: Optional[Pixels] = None

    def __enter__(self) -> Pixels:
        self.array = self._p._lend()
        return self.array

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        p = self._p
        self.array = None
        if et is not None:
            p._abort_and_release()
            return
        s = p._seg
        assert s is not None  # the lent slot's segment (generations change only under _mu, which the loan holds)
        n = self.nbytes if self.nbytes is not None else packed_size(s.fmt)
        self.seq = p._commit_and_release(n, self._capture, self._meta)


class Producer(_Heartbeat):
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
                prev_seq = _load8(old.last_seq_addr, _SC) if old else 0
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

    def frame(self, capture_ns: Optional[int] = None, user_meta: bytes = b"",
              nbytes: Optional[int] = None) -> FrameLoan:
        """The zero-copy form of publish: ``with p.frame() as buf: buf[...] = ...``; ``buf``
        is the back slot as a writable array of ``format.shape``. Leaving the block commits
        the frame, an exception aborts it. While the block runs, the slot's lock is odd
        and no other publish can start."""
        return FrameLoan(self, capture_ns, bytes(user_meta), nbytes)

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
                _fadd8(self._seg.source_drops_addr, n, _SC)

    def stats(self) -> ProducerStats:
        with self._seg_lock:
            s = self._seg
            if s is None or not s.size_ok():
                return ProducerStats(0, self._seq, 0, 0, 0, 0)
            _fence(_SC)
            active = int(np.count_nonzero(s.ent_states == ENTRY_ACTIVE))
            return ProducerStats(s.h.generation, _load8(s.last_seq_addr, _SC), _load8(s.published_addr, _SC),
                                 _load8(s.source_drops_addr, _SC), _load8(s.reclaimed_addr, _SC), active)

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
                    _store4(s.state_addr, STATE_RETIRED, _SC)
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
