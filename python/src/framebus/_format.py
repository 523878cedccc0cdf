"""Pixel formats (V4L2 fourccs, PROTOCOL.md section 3.2) and their numpy shapes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Union

import numpy as np

from ._errors import BadOptions

if TYPE_CHECKING:  # numpy.typing.NDArray came with numpy 1.21; the package runs on 1.20
    import numpy.typing as npt

    Pixels = npt.NDArray[np.uint8]  #: frame bytes and the views of a slot
    Words = npt.NDArray[np.uint32]  #: aligned u32 words (entries' states and hold_masks, CRC tables)
    AnyArray = npt.NDArray[Any]
else:
    Pixels = Words = AnyArray = np.ndarray


def fourcc(code: str) -> int:
    """The u32 of a four-character code, first character in the low byte."""
    b = code.encode("ascii")
    if len(b) != 4:
        raise BadOptions(f"fourcc {code!r} is not four characters")
    return b[0] | b[1] << 8 | b[2] << 16 | b[3] << 24


RGBA = fourcc("AB24")  # RGBA 8-8-8-8 in memory order
RGB24 = fourcc("RGB3")
BGR24 = fourcc("BGR3")
GREY = fourcc("GREY")
YUYV = fourcc("YUYV")
NV12 = fourcc("NV12")
I420 = fourcc("YU12")
MJPEG = fourcc("MJPG")

NAMES: Dict[str, int] = {"RGBA": RGBA, "RGB24": RGB24, "RGB": RGB24, "BGR24": BGR24, "BGR": BGR24,
                         "GREY": GREY, "GRAY": GREY, "YUYV": YUYV, "NV12": NV12, "I420": I420,
                         "YU12": I420, "MJPEG": MJPEG, "MJPG": MJPEG}
_CANONICAL = {RGBA: "RGBA", RGB24: "RGB24", BGR24: "BGR24", GREY: "GREY", YUYV: "YUYV", NV12: "NV12",
              I420: "I420", MJPEG: "MJPEG"}

# Per plane: bytes per row = width * num // den, rows = height // rowdiv (Go: planeLayout).
_SPECS: Dict[int, List[Tuple[int, int, int]]] = {
    RGBA: [(4, 1, 1)], RGB24: [(3, 1, 1)], BGR24: [(3, 1, 1)], GREY: [(1, 1, 1)], YUYV: [(2, 1, 1)],
    NV12: [(1, 1, 1), (1, 1, 2)], I420: [(1, 1, 1), (1, 2, 2), (1, 2, 2)], MJPEG: [],
}


def plane_specs(code: int) -> Optional[List[Tuple[int, int, int]]]:
    """The plane layout of a known raw format ([] for MJPEG, None if unknown)."""
    return _SPECS.get(code)


def parse_format(fmt: Union[str, int]) -> int:
    """A format name (RGBA, RGB24, BGR24, GREY, YUYV, NV12, I420, MJPEG), a fourcc
    string (AB24, YU12, ...) or the fourcc's integer."""
    if isinstance(fmt, int):
        if fmt in _SPECS:
            return fmt
        raise BadOptions(f"unknown pixel format 0x{fmt:08x}")
    code = NAMES.get(fmt.upper())
    if code is not None:
        return code
    if len(fmt) == 4:
        try:
            code = fourcc(fmt)
        except (UnicodeEncodeError, BadOptions):
            code = -1
        if code in _SPECS:
            return code
    raise BadOptions(f"unknown pixel format {fmt!r} (want RGBA, RGB24, BGR24, GREY, YUYV, NV12, I420, "
                     "MJPEG or a fourcc such as AB24)")


@dataclass(frozen=True)
class FrameFormat:
    """The frames of one generation: size, pixel format, planes, rate."""

    width: int
    height: int
    fourcc: int
    plane_count: int
    plane_stride: Tuple[int, ...]
    plane_offset: Tuple[int, ...]
    frame_size: int  # the slot capacity: the largest frame in bytes
    fps_num: int = 0
    fps_den: int = 1

    @staticmethod
    def fourcc_name(code: int) -> str:
        b = bytes([(code >> s) & 0xFF for s in (0, 8, 16, 24)])
        return b.decode("latin-1") if all(0x20 <= c <= 0x7E for c in b) else f"0x{code:08x}"

    @property
    def name(self) -> str:
        """RGBA, RGB24, BGR24, GREY, YUYV, NV12, I420, MJPEG, or the raw fourcc."""
        return _CANONICAL.get(self.fourcc, self.fourcc_name(self.fourcc))

    @property
    def fps(self) -> float:
        return self.fps_num / self.fps_den if self.fps_num and self.fps_den else 0.0

    @property
    def shape(self) -> Tuple[int, ...]:
        """The shape of ``Frame.array``: (h, w, 4) RGBA, (h, w, 3) RGB24/BGR24, (h, w) GREY,
        (h, w, 2) YUYV, (h * 3 // 2, w) NV12 and I420 (OpenCV's layout), (frame_size,) MJPEG."""
        w, h, c = self.width, self.height, self.fourcc
        if c == RGBA:
            return (h, w, 4)
        if c in (RGB24, BGR24):
            return (h, w, 3)
        if c == GREY:
            return (h, w)
        if c == YUYV:
            return (h, w, 2)
        if c in (NV12, I420):
            return (h * 3 // 2, w)
        return (self.frame_size,)

    def __str__(self) -> str:
        s = f"{self.width}x{self.height} {self.name}"
        return s + (f" @ {self.fps:g} fps" if self.fps else "")


def complete(width: int, height: int, fmt: Union[str, int] = "RGBA", fps: float = 0.0,
             frame_size: int = 0) -> FrameFormat:
    """Validates a format and derives strides, offsets and the frame size (Go: Format.Complete)."""
    code = parse_format(fmt)
    if not (isinstance(width, int) and isinstance(height, int)) or width <= 0 or height <= 0:
        raise BadOptions(f"frame size {width}x{height}: width and height must be positive integers")
    if width > 16384 or height > 16384:
        raise BadOptions(f"frame size {width}x{height}: larger than 16384x16384")
    if fps < 0 or fps != fps:
        raise BadOptions(f"fps {fps}: want a number >= 0")
    fps_num, fps_den = _fps_ratio(fps)
    if code == MJPEG:
        return FrameFormat(width, height, code, 1, (0,), (0,), frame_size or width * height * 2, fps_num, fps_den)
    if code in (NV12, I420, YUYV) and (width % 2 or (code != YUYV and height % 2)):
        raise BadOptions(f"{_CANONICAL[code]} needs even dimensions, got {width}x{height}")
    strides, offsets, off = [], [], 0
    for num, den, rowdiv in _SPECS[code]:
        stride = width * num // den
        strides.append(stride)
        offsets.append(off)
        off += stride * (height // rowdiv)
    if frame_size and frame_size < off:
        raise BadOptions(f"frame size {frame_size} is smaller than the planes ({off} bytes)")
    return FrameFormat(width, height, code, len(strides), tuple(strides), tuple(offsets), frame_size or off,
                       fps_num, fps_den)


def _fps_ratio(fps: float) -> Tuple[int, int]:
    if not fps:
        return 0, 1
    if float(fps).is_integer():
        return int(fps), 1
    return int(round(fps * 1000)), 1000


def packed_size(f: FrameFormat) -> int:
    """Bytes of a frame's planes (the bytes a raw frame uses)."""
    specs = _SPECS.get(f.fourcc) or []
    if not specs:
        return f.frame_size
    end = 0
    for i, (_, _, rowdiv) in enumerate(specs):
        end = max(end, f.plane_offset[i] + f.plane_stride[i] * (f.height // rowdiv))
    return end


def _strided(base: Pixels, offset: int, shape: Tuple[int, ...], strides: Tuple[int, ...],
             writable: bool) -> Pixels:
    # as_strided checks nothing: a view past the buffer would read outside the mapping.
    extent = 1 + sum((n - 1) * s for n, s in zip(shape, strides)) if all(shape) else 0
    if offset < 0 or offset + extent > base.shape[0]:
        raise BadOptions(f"a {shape} view at {offset} needs {extent} bytes, the buffer has {base.shape[0] - offset}")
    a = np.lib.stride_tricks.as_strided(base[offset:], shape=shape, strides=strides, writeable=writable)
    if not writable:
        a.flags.writeable = False
    return a


def plane_views(f: FrameFormat, base: Pixels, offset: int, writable: bool) -> Tuple[Pixels, ...]:
    """Views of each plane of a frame starting at base[offset]: Y (h, w) and UV (h/2, w/2, 2)
    for NV12; Y, U, V (h/2, w/2) for I420; the one plane otherwise."""
    w, h, c = f.width, f.height, f.fourcc
    st, po = f.plane_stride, f.plane_offset
    if c == NV12:
        return (_strided(base, offset + po[0], (h, w), (st[0], 1), writable),
                _strided(base, offset + po[1], (h // 2, w // 2, 2), (st[1], 2, 1), writable))
    if c == I420:
        return (_strided(base, offset + po[0], (h, w), (st[0], 1), writable),
                _strided(base, offset + po[1], (h // 2, w // 2), (st[1], 1), writable),
                _strided(base, offset + po[2], (h // 2, w // 2), (st[2], 1), writable))
    return (array_view(f, base, offset, writable),)


def is_packed(f: FrameFormat) -> bool:
    """Whether NV12/I420 planes follow each other without padding (OpenCV's one-array
    layout); True for the other formats."""
    w, h, st, po = f.width, f.height, f.plane_stride, f.plane_offset
    if f.fourcc == NV12:
        return st[0] == w and st[1] == w and po[1] == w * h
    if f.fourcc == I420:
        return st[0] == w and st[1] == st[2] == w // 2 and po[1] == w * h and po[2] == w * h + (w // 2) * (h // 2)
    return True


def array_view(f: FrameFormat, base: Pixels, offset: int, writable: bool) -> Pixels:
    """The frame as one array of ``f.shape`` (row strides kept)."""
    w, h, c = f.width, f.height, f.fourcc
    st = f.plane_stride
    if c == RGBA:
        return _strided(base, offset, (h, w, 4), (st[0], 4, 1), writable)
    if c in (RGB24, BGR24):
        return _strided(base, offset, (h, w, 3), (st[0], 3, 1), writable)
    if c == GREY:
        return _strided(base, offset, (h, w), (st[0], 1), writable)
    if c == YUYV:
        return _strided(base, offset, (h, w, 2), (st[0], 2, 1), writable)
    if c in (NV12, I420):
        if not is_packed(f):
            raise BadOptions(f"{f.name} frame with padded planes (strides {st}): use Frame.planes")
        return _strided(base, offset, (h * 3 // 2, w), (w, 1), writable)
    n = f.frame_size
    return _strided(base, offset, (n,), (1,), writable)
