"""The wire layout of docs/PROTOCOL.md, version 1, with amendments 7 (the shared wake word),
8 (PID namespaces) and 10 (holds).

One table of header fields with their offsets; the struct format is built
from it and checked (tests/test_layout.py compares every offset with the C
header, framebus/include/framebus.h, compiled with gcc, and decodes the Go
side's golden header bytes).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Dict, List, Tuple

from ._errors import BadMagic, CorruptSegment, VersionMismatch
from ._format import FrameFormat, plane_specs

MAGIC = 0x53554246  # "FBUS" as a little-endian u32
ABI_VERSION = 1
HEADER_SIZE = 512
SLOT_DESC_SIZE = 128
CONSUMER_ENTRY_SIZE = 128
PAYLOAD_ALIGN = 65536
MIN_SLOTS, MAX_SLOTS = 2, 8
MAX_CONSUMERS, DEFAULT_CONSUMERS = 1024, 32
USER_META_MAX = 64
MAX_PLANES = 4
MAX_DIMENSION = 16384
DEFAULT_HEARTBEAT_MS = 100

STATE_INITIALIZING, STATE_READY, STATE_BROKEN, STATE_RETIRED = 0, 1, 2, 3
STATE_NAMES = {0: "INITIALIZING", 1: "READY", 2: "BROKEN", 3: "RETIRED"}
FLAG_CHECKSUM = 1 << 0
FLAG_SHARED_WAKE = 1 << 1  # amendment 7 (the shared wake word)
FLAG_HOLDS = 1 << 2  # amendment 10: the producer honours holds
HOLD_PENDING_SHIFT = 8  # amendment 10: hold_mask bit 8 + i: the grant on slot i is in progress
FRAME_EOS = 1 << 0
ENTRY_FREE, ENTRY_CLAIMING, ENTRY_ACTIVE = 0, 1, 2

# (offset, struct code, name) of every header field, sections 3.1-3.3.
HEADER_FIELDS: List[Tuple[int, str, str]] = [
    (0, "I", "magic"),
    (4, "H", "abi_version"),
    (6, "H", "header_size"),
    (8, "I", "state"),
    (12, "I", "flags"),
    (16, "Q", "total_size"),
    (24, "Q", "generation"),
    (32, "Q", "heartbeat_ns"),
    (40, "Q", "payload_offset"),
    (48, "Q", "payload_size"),
    (56, "Q", "version_mismatch_count"),
    (128, "I", "producer_pid"),
    (132, "I", "slot_count"),
    (136, "Q", "slot_stride"),
    (144, "Q", "slot_capacity"),
    (152, "I", "consumer_capacity"),
    (156, "I", "heartbeat_interval_ms"),
    (160, "I", "width"),
    (164, "I", "height"),
    (168, "I", "pixel_format"),
    (172, "I", "plane_count"),
    (176, "4I", "plane_stride"),
    (192, "4I", "plane_offset"),
    (208, "I", "fps_num"),
    (212, "I", "fps_den"),
    (216, "Q", "slot_table_offset"),
    (224, "Q", "consumer_table_offset"),
    (232, "I", "slot_desc_size"),
    (236, "I", "consumer_entry_size"),
    (240, "Q", "created_ns"),
    (248, "Q", "producer_pidns"),  # amendment 8 (was reserved)
    (256, "I", "active"),
    (264, "Q", "last_seq"),
    (272, "Q", "frames_published"),
    (280, "Q", "last_commit_ns"),
    (288, "Q", "source_drops"),
    (296, "Q", "consumers_reclaimed"),
    (320, "I", "wake_seq"),  # amendment 7 (the shared wake word)
    (324, "I", "wake_waiters"),  # amendment 7 (the shared wake word)
    (384, "Q", "hold_max_ns"),  # amendment 10, holds (was reserved): the lease, 0 = none
    (392, "Q", "holds_granted"),  # amendment 10
    (400, "Q", "holds_refused"),  # amendment 10
    (408, "Q", "holds_taken_back"),  # amendment 10
    (416, "Q", "holds_ignored"),  # amendment 10
]

OFF: Dict[str, int] = {name: off for off, _, name in HEADER_FIELDS}


def _build_format(fields: List[Tuple[int, str, str]], size: int) -> str:
    fmt, pos = "<", 0
    for off, code, _ in fields:
        if off < pos:
            raise AssertionError(f"header field at {off} overlaps")
        if off > pos:
            fmt += f"{off - pos}x"
        fmt += code
        pos = off + struct.calcsize("<" + code)
    if size > pos:
        fmt += f"{size - pos}x"
    return fmt


HEADER_STRUCT = struct.Struct(_build_format(HEADER_FIELDS, HEADER_SIZE))
assert HEADER_STRUCT.size == HEADER_SIZE

# Slot descriptor, section 3.4.
SLOT_LOCK, SLOT_FRAME_SEQ, SLOT_CAPTURE_NS, SLOT_COMMIT_NS, SLOT_BYTES = 0, 8, 16, 24, 32
SLOT_CHECKSUM, SLOT_FRAME_FLAGS, SLOT_USER_META_LEN, SLOT_USER_META = 40, 44, 48, 64
# frame_seq, capture_ns, commit_ns, bytes, checksum, frame_flags, user_meta_len: read in one go
SLOT_STRUCT = struct.Struct("<QQQQIII")  # from SLOT_FRAME_SEQ, 36 bytes
# Producer's descriptor write: frame_seq, capture_ns, commit_ns, bytes, checksum, frame_flags, user_meta_len
SLOT_FIELDS = {"lock": 0, "frame_seq": 8, "capture_ns": 16, "commit_ns": 24, "bytes": 32, "checksum": 40,
               "frame_flags": 44, "user_meta_len": 48, "user_meta": 64}

# Consumer entry, section 3.5 (pidns: amendment 8, was reserved).
ENT_STATE, ENT_PID, ENT_SEM, ENT_WAITERS, ENT_TOKEN, ENT_LAST_SEQ = 0, 4, 8, 12, 16, 24
ENT_DELIVERED, ENT_DROPPED, ENT_HEARTBEAT_NS, ENT_TORN_RETRIES, ENT_PIDNS = 32, 40, 48, 56, 64
# Amendment 10 (were reserved): the holds of the entry's consumer and its counters.
ENT_HOLD_MASK, ENT_HOLDS_GRANTED, ENT_HOLDS_REFUSED, ENT_HOLDS_TAKEN_BACK = 72, 80, 88, 96
ENTRY_FIELDS = {"state": 0, "pid": 4, "sem": 8, "waiters": 12, "token": 16, "last_seq": 24, "delivered": 32,
                "dropped": 40, "heartbeat_ns": 48, "torn_retries": 56, "pidns": 64, "hold_mask": 72,
                "holds_granted": 80, "holds_refused": 88, "holds_taken_back": 96}
#: Entry and header words of amendment 10 (holds), which the C header of this branch still calls reserved.
AMENDMENT10_FIELDS = ("hold_max_ns", "holds_granted", "holds_refused", "holds_taken_back", "holds_ignored",
                      "hold_mask")
ENTRY_STRUCT = struct.Struct("<IIIIQQQQQQQ")  # state .. pidns, 72 bytes


@dataclass
class Header:
    """A snapshot of the 512-byte header, every field loaded once (PROTOCOL.md section 3)."""

    magic: int = MAGIC
    abi_version: int = ABI_VERSION
    header_size: int = HEADER_SIZE
    state: int = STATE_INITIALIZING
    flags: int = 0
    total_size: int = 0
    generation: int = 0
    heartbeat_ns: int = 0
    payload_offset: int = 0
    payload_size: int = 0
    version_mismatch_count: int = 0
    producer_pid: int = 0
    slot_count: int = 0
    slot_stride: int = 0
    slot_capacity: int = 0
    consumer_capacity: int = 0
    heartbeat_interval_ms: int = 0
    width: int = 0
    height: int = 0
    pixel_format: int = 0
    plane_count: int = 0
    plane_stride: Tuple[int, int, int, int] = (0, 0, 0, 0)
    plane_offset: Tuple[int, int, int, int] = (0, 0, 0, 0)
    fps_num: int = 0
    fps_den: int = 1
    slot_table_offset: int = HEADER_SIZE
    consumer_table_offset: int = 0
    slot_desc_size: int = SLOT_DESC_SIZE
    consumer_entry_size: int = CONSUMER_ENTRY_SIZE
    created_ns: int = 0
    producer_pidns: int = 0
    active: int = 0
    last_seq: int = 0
    frames_published: int = 0
    last_commit_ns: int = 0
    source_drops: int = 0
    consumers_reclaimed: int = 0
    wake_seq: int = 0
    wake_waiters: int = 0
    hold_max_ns: int = 0
    holds_granted: int = 0
    holds_refused: int = 0
    holds_taken_back: int = 0
    holds_ignored: int = 0

    @classmethod
    def decode(cls, b: bytes) -> "Header":
        vals = list(HEADER_STRUCT.unpack_from(b, 0))
        kw: Dict[str, Any] = {}
        i = 0
        for _, code, name in HEADER_FIELDS:
            if code == "4I":
                kw[name] = tuple(vals[i:i + 4])
                i += 4
            else:
                kw[name] = vals[i]
                i += 1
        return cls(**kw)

    def encode(self) -> bytes:
        vals: List[int] = []
        for _, code, name in HEADER_FIELDS:
            v = getattr(self, name)
            if code == "4I":
                vals.extend(v)
            else:
                vals.append(v)
        return HEADER_STRUCT.pack(*vals)

    def format(self) -> FrameFormat:
        return FrameFormat(width=self.width, height=self.height, fourcc=self.pixel_format,
                           plane_count=self.plane_count, plane_stride=tuple(self.plane_stride[:self.plane_count]),
                           plane_offset=tuple(self.plane_offset[:self.plane_count]), frame_size=self.slot_capacity,
                           fps_num=self.fps_num, fps_den=self.fps_den or 1)


def check_identity(b: bytes, file_size: int) -> None:
    """The stable prefix: magic and version (a refused version is counted by the caller)."""
    if file_size < HEADER_SIZE or len(b) < HEADER_SIZE:
        if file_size >= 8 and len(b) >= 8:
            magic = struct.unpack_from("<I", b, 0)[0]
            if magic != MAGIC:
                raise BadMagic(magic)
        raise CorruptSegment("file size", max(file_size, 0),
                             f"shorter than the {HEADER_SIZE}-byte header (truncated or empty file)")
    magic, version = struct.unpack_from("<IH", b, 0)
    if magic != MAGIC:
        raise BadMagic(magic)
    if version != ABI_VERSION:
        raise VersionMismatch(version, ABI_VERSION)


def validate_header(h: Header, file_size: int) -> None:
    """Every layout field against the file size (Go: validateHeader), so that every
    offset derived from the header stays inside the file. Never touches a mapping."""
    def bad(name: str, v: int, why: str) -> CorruptSegment:
        return CorruptSegment(name, v, why)

    if h.header_size != HEADER_SIZE:
        raise bad("header_size", h.header_size, f"want {HEADER_SIZE}")
    if file_size < 0 or h.total_size != file_size:
        raise bad("total_size", h.total_size, f"file size is {file_size} (truncated or grown)")
    if h.state > STATE_RETIRED:
        raise bad("state", h.state, "want 0-3")
    if not MIN_SLOTS <= h.slot_count <= MAX_SLOTS:
        raise bad("slot_count", h.slot_count, f"want {MIN_SLOTS}-{MAX_SLOTS}")
    if not 1 <= h.consumer_capacity <= MAX_CONSUMERS:
        raise bad("consumer_capacity", h.consumer_capacity, f"want 1-{MAX_CONSUMERS}")
    if h.slot_desc_size != SLOT_DESC_SIZE:
        raise bad("slot_desc_size", h.slot_desc_size, f"want {SLOT_DESC_SIZE}")
    if h.consumer_entry_size != CONSUMER_ENTRY_SIZE:
        raise bad("consumer_entry_size", h.consumer_entry_size, f"want {CONSUMER_ENTRY_SIZE}")
    if not 1 <= h.heartbeat_interval_ms <= 60000:
        raise bad("heartbeat_interval_ms", h.heartbeat_interval_ms, "want 1-60000")
    if h.slot_table_offset != HEADER_SIZE:
        raise bad("slot_table_offset", h.slot_table_offset, f"want {HEADER_SIZE}")
    slot_end = h.slot_table_offset + h.slot_count * SLOT_DESC_SIZE
    cto = h.consumer_table_offset
    if cto < slot_end or cto % 8 != 0 or cto > h.total_size:
        raise bad("consumer_table_offset", cto, f"want a multiple of 8 between {slot_end} and total_size")
    table_end = cto + h.consumer_capacity * CONSUMER_ENTRY_SIZE
    po = h.payload_offset
    if po % PAYLOAD_ALIGN != 0 or po < table_end or po > h.total_size:
        raise bad("payload_offset", po, f"want a multiple of {PAYLOAD_ALIGN} between the consumer table end "
                                        f"({table_end}) and total_size")
    if h.slot_stride == 0 or h.slot_stride % PAYLOAD_ALIGN != 0:
        raise bad("slot_stride", h.slot_stride, f"want a positive multiple of {PAYLOAD_ALIGN}")
    if h.slot_capacity == 0 or h.slot_capacity > h.slot_stride:
        raise bad("slot_capacity", h.slot_capacity, f"want 1..slot_stride ({h.slot_stride})")
    if h.payload_size != h.slot_count * h.slot_stride:
        raise bad("payload_size", h.payload_size, "want slot_count * slot_stride")
    if po + h.payload_size > h.total_size:
        raise bad("payload_size", h.payload_size, f"payload ends past total_size ({h.total_size})")
    if not 1 <= h.width <= MAX_DIMENSION:
        raise bad("width", h.width, f"want 1-{MAX_DIMENSION}")
    if not 1 <= h.height <= MAX_DIMENSION:
        raise bad("height", h.height, f"want 1-{MAX_DIMENSION}")
    if h.fps_num != 0 and h.fps_den == 0:
        raise bad("fps_den", 0, f"zero with fps_num {h.fps_num}")
    if not 1 <= h.plane_count <= MAX_PLANES:
        raise bad("plane_count", h.plane_count, f"want 1-{MAX_PLANES}")
    for i in range(h.plane_count):
        if h.plane_offset[i] >= h.slot_capacity:
            raise bad(f"plane_offset[{i}]", h.plane_offset[i], f"outside the slot capacity {h.slot_capacity}")
    specs = plane_specs(h.pixel_format)
    if specs:
        if h.plane_count != len(specs):
            raise bad("plane_count", h.plane_count, f"{FrameFormat.fourcc_name(h.pixel_format)} has {len(specs)} planes")
        for i, (num, den, rowdiv) in enumerate(specs):
            row = h.width * num // den
            if h.plane_stride[i] < row:
                raise bad(f"plane_stride[{i}]", h.plane_stride[i], f"shorter than a row of {row} bytes")
            end = h.plane_offset[i] + h.plane_stride[i] * (h.height // rowdiv)
            if end > h.slot_capacity:
                raise bad(f"plane_stride[{i}]", h.plane_stride[i],
                          f"plane {i} ends at {end}, past the slot capacity {h.slot_capacity}")
    if h.active >= h.slot_count:
        raise bad("active", h.active, f"want < slot_count ({h.slot_count})")


def align_up(n: int, a: int) -> int:
    return (n + a - 1) // a * a


@dataclass
class Geometry:
    """The derived sizes of a new segment (Go: computeGeometry)."""

    slot_count: int
    consumer_capacity: int
    slot_capacity: int
    slot_stride: int = field(init=False)
    slot_table_offset: int = field(init=False)
    consumer_table_offset: int = field(init=False)
    payload_offset: int = field(init=False)
    payload_size: int = field(init=False)
    total: int = field(init=False)

    def __post_init__(self) -> None:
        self.slot_stride = align_up(self.slot_capacity, PAYLOAD_ALIGN) or PAYLOAD_ALIGN
        self.slot_table_offset = HEADER_SIZE
        self.consumer_table_offset = HEADER_SIZE + self.slot_count * SLOT_DESC_SIZE
        self.payload_offset = align_up(self.consumer_table_offset + self.consumer_capacity * CONSUMER_ENTRY_SIZE,
                                       PAYLOAD_ALIGN)
        self.payload_size = self.slot_count * self.slot_stride
        self.total = self.payload_offset + self.payload_size
