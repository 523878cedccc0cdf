"""The consumer: PROTOCOL.md sections 2 and 5 and the amendments of its section 7 (1-11), in
the order of operations of the Go consumer (framebus/consumer.go, read.go, wait.go,
liveness.go, hold.go), split as it is: this module is the Consumer (open, close, the public
API, the read loop of ``next()``);
``_segment`` its mapping of a generation and its entry (join, leave); ``_read`` the read under
the sequence lock and ``Frame``; ``_wait`` the futex waits; ``_liveness`` the checks,
generations and re-synchronisation; ``_hold`` holds.

Amendment 9 (forged words refused: a frame is taken only when it is not newer than the
header says): the read loads the header's last_seq after the sequence lock validated the slot
and takes the frame only when frame_seq <= last_seq; a frame more than one ahead of it, an
``active`` out of range, and impossible ``bytes`` or ``user_meta_len`` are refused for that
read and counted (``ConsumerStats.refused``), never an exception of the stream; and on every
wait timeout (at least once a heartbeat interval, even while wakes keep coming) a consumer
whose own last_seq is ahead of the header's re-synchronises on an intact active frame of
exactly that number (``ConsumerStats.resyncs``)."""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Tuple

from . import _atomics as A
from . import _native as N
from ._errors import BadOptions, Closed, CorruptSegment, EndOfStream, Error, NotFound
from ._format import FrameFormat
from ._hold import Hold
from ._layout import STATE_BROKEN, STATE_RETIRED
from ._read import Frame, _Reader
from ._segment import _Followed, _NotReady, _Segment, open_joined

_now = time.monotonic_ns  # CLOCK_MONOTONIC, the clock of every *_ns field
_load4, _store8 = A.raw_load4, A.raw_store8
_SC = A.SEQ_CST
_trunc = N.truncated

__all__ = ["Consumer", "ConsumerStats", "Frame", "Hold"]


@dataclass(frozen=True)
class ConsumerStats:
    """The consumer's counters in its current generation, read from its table entry."""

    generation: int
    entry: int
    last_seq: int
    delivered: int
    dropped: int
    torn_retries: int
    shared_wake: bool  #: sleeps on the bus's shared wake word (amendment 7), not its entry's semaphore
    liveness_checks: int  #: wait timeouts on which it checked the producer (this process's count)
    #: Reads refused for a word no honest producer writes (a frame newer than the header's
    #: last_seq, an ``active`` out of range, impossible ``bytes`` or ``user_meta_len``:
    #: amendment 9, forged words refused), since the consumer was made; this process's count.
    refused: int = 0
    #: Times the consumer took the header's last_seq as its own after its own had been moved
    #: ahead by such a word (amendment 9, forged words refused), since it was made; this process's count.
    resyncs: int = 0
    #: Amendment 10, from the entry (this generation): holds granted, refused (cap,
    #: overwritten; plus this process's refusals on buses without holds, which are not
    #: written to them), taken back by the producer (lease, forged words).
    holds_granted: int = 0
    holds_refused: int = 0
    holds_taken_back: int = 0
    #: Holds this consumer has now (not released).
    holds: int = 0


class Consumer(_Reader):
    """Joins the bus ``name`` as a consumer and reads its frames.

    ``timeout`` is how long the constructor waits for a producer that has not
    created the bus yet (seconds; 0 fails at once with NotFound). ``dir`` is
    the bus directory (default $FRAMEBUS_DIR, else /dev/shm).
    ``verify_checksum`` checks the CRC-32C of frames on buses that carry one
    (the check runs on a copy taken under the sequence lock; it costs about
    2.5 ns per byte with numpy alone). ``newest`` makes the first ``next()``
    deliver the newest frame already on the bus instead of waiting for the
    next one.

    A Consumer is a context manager and an iterator (``for f in c:`` ends at
    the end of stream). It is not safe for concurrent use from several
    threads; several Consumers in one process are fine. It leaves the
    consumer table on ``close()``, when garbage-collected, and at
    interpreter exit.
    """

    def __init__(self, name: str, timeout: float = 0.0, *, dir: Optional[str] = None,
                 verify_checksum: bool = True, newest: bool = False) -> None:
        super().__init__(name, dir, verify_checksum, newest)
        self._finalizer = weakref.finalize(self, self._r.close)
        deadline = _now() + max(0.0, float(timeout)) * 1e9
        try:
            while True:
                try:
                    self._set_seg(self._attach())
                    break
                except (NotFound, _NotReady) as e:
                    if _now() >= deadline:
                        if isinstance(e, _NotReady):
                            raise NotFound(f"{self.path} never became ready", path=self.path) from None
                        raise NotFound(f"{self.path} does not exist", path=self.path) from None
                    time.sleep(min(0.02, max(0.0, (deadline - _now()) / 1e9) + 0.001))
            self._open_lock()
        except Error as e:
            self._finalizer()
            _label(e, "open", self.name)
            raise

    # ---- attaching ------------------------------------------------------------------

    def _attach(self) -> _Segment:
        seg = open_joined(self.path, self._token)
        self._last_seq = A.load64(seg.e_last)
        if self._newest and self._last_seq > 0:
            self._last_seq -= 1  # the newest committed frame counts as not yet delivered
            A.store64(seg.e_last, self._last_seq)
        return seg

    # ---- public API -------------------------------------------------------------------

    @property
    def format(self) -> FrameFormat:
        """The frame format of the current generation."""
        return self._live().fmt

    @property
    def generation(self) -> int:
        return self._live().h.generation

    @property
    def entry(self) -> int:
        """The index of this consumer's entry in the consumer table."""
        return self._live().entry

    @property
    def checksums(self) -> bool:
        """Whether the bus carries CRC-32C checksums."""
        return self._live().checksum

    def stats(self) -> ConsumerStats:
        s = self._live()
        nh = len(self._holds)
        if s.entry < 0 or self._broken:
            return ConsumerStats(s.h.generation, -1, self._last_seq, 0, 0, 0, s.shared_wake, self._checks,
                                 self._refused, self._resyncs, 0, self._holds_unsupported, 0, nh)
        if s.holds:
            hg, hr, ht = A.load64(s.e_hgranted), A.load64(s.e_hrefused), A.load64(s.e_htaken)
        else:
            hg = hr = ht = 0  # reserved words on a bus without holds: not ours to read as counters
        return ConsumerStats(s.h.generation, s.entry, A.load64(s.e_last), A.load64(s.e_delivered),
                             A.load64(s.e_dropped), A.load64(s.e_torn), s.shared_wake, self._checks,
                             self._refused, self._resyncs, hg, hr + self._holds_unsupported, ht, nh)

    def refusals(self) -> Tuple[int, int, Optional[CorruptSegment]]:
        """(refused, resyncs, why the last read was refused or the last re-synchronisation
        made, as a CorruptSegment that was not raised; None when there was none): amendment
        9's counters (forged words refused: (``ConsumerStats.refused``, ``resyncs``), as Go's Consumer.Refusals.
        Reads no shared memory: a loop can call it after every frame."""
        return self._refused, self._resyncs, self._last_refusal

    def next(self, timeout: Optional[float] = None) -> Frame:
        """Waits for a frame newer than the last one delivered and returns the newest as
        a zero-copy, read-only view, validated by the sequence lock (and the checksum,
        when the bus carries one and ``verify_checksum`` is on).

        ``timeout`` in seconds (None: no limit) raises Timeout. It follows a new
        generation by itself (``Frame.generation_changed``). Raises EndOfStream (the
        producer closed the stream), ProducerGone and Stalled (once per episode:
        calling next() again keeps waiting), ChecksumMismatch, CorruptSegment (the file
        truncated under the consumer). A forged or torn word in the slot or the header
        (amendment 9, forged words refused) raises nothing: the read is refused and counted (``refusals()``).
        """
        return self._next(timeout, None, "next")

    def read_into(self, buf: Any, timeout: Optional[float] = None) -> Frame:
        """next() that copies the frame into ``buf`` (a writable, C-contiguous buffer:
        a numpy array, a bytearray, a torch tensor's ``.numpy()``), under the sequence
        lock. The returned Frame's ``array`` and ``planes`` are views of ``buf``.
        A buffer smaller than the frame raises BufferTooSmall and the frame is not
        consumed."""
        try:
            mv = memoryview(buf).cast("B")
        except TypeError as e:
            raise BadOptions(f"read_into needs a C-contiguous writable buffer: {e}", op="read", name=self.name) from None
        if mv.readonly:
            raise BadOptions("read_into needs a writable buffer", op="read", name=self.name)
        return self._next(timeout, (buf, mv), "read")

    def close(self) -> None:
        """Leaves the consumer table and unmaps the segment. Views still held stay
        readable (their mapping goes when the last one does)."""
        if self._closed:
            return
        self._closed = True
        self._r.broken = self._broken
        self._release_holds()
        self._finalizer()

    def __enter__(self) -> "Consumer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        return self

    def __next__(self) -> Frame:
        try:
            return self.next()
        except EndOfStream:
            raise StopIteration from None

    def __repr__(self) -> str:
        if self._closed or self._seg is None:
            return f"<framebus.Consumer {self.name!r} closed>"
        s = self._seg
        return f"<framebus.Consumer {self.name!r} {s.fmt} generation={s.h.generation} entry={s.entry}>"

    def _live(self) -> _Segment:
        if self._closed or self._seg is None:
            raise Closed("consumer closed", op="use", name=self.name)
        return self._seg

    # ---- the read loop ----------------------------------------------------------------

    def _next(self, timeout: Optional[float], dst: Any, op: str) -> Frame:
        if self._closed:
            raise Closed("consumer closed", op=op, name=self.name)
        r = self._r
        if r.old is not None:
            r.old.release()
            r.old = None
        if self._eos:
            raise EndOfStream(self._eos_seq, op=op, name=self.name)
        deadline = None if timeout is None else _now() + int(max(0.0, timeout) * 1e9)
        N.ensure()  # our SIGBUS handler back on top if another one replaced it
        try:
            while True:
                try:
                    if self._broken:
                        self._recover_broken(deadline)
                    s = self._seg
                    assert s is not None
                    if self._fresh:
                        self._fresh = False  # just woken through the mapping: intact as of the wake
                    elif not s.size_ok():
                        self._set_broken()
                        continue
                    fr = self._try_read(dst)
                    if fr is None and _trunc(s.group):
                        self._set_broken()  # read zeros: truncated under the read
                        continue
                    if self._hb_due:
                        self._hb_due = False
                        _store8(s.e_hb, fr.wake_ns if fr is not None else _now(), _SC)
                    if fr is not None:
                        return fr
                    # Nothing new: a RETIRED or BROKEN segment means the name must be looked at now.
                    st = _load4(s.state_addr, _SC)
                    if st == STATE_RETIRED or st == STATE_BROKEN:
                        self._check()
                    self._wait(deadline)
                except _Followed:
                    continue
        except Error as e:
            _label(e, op, self.name)
            raise


def _label(e: Error, op: str, name: str) -> None:
    if not e.op:
        e.op = op
    if not e.name:
        e.name = name
