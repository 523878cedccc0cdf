"""CRC-32C cost per 1920x1080 RGBA frame (8,294,400 bytes): numpy and the native helper.

    python bench/crc_cost.py     (median of 20 runs each; docs/PYTHON.md)
"""
import time

import numpy as np

from framebus import _crc32c as C
from framebus import _native as N

a = np.random.default_rng(1).integers(0, 256, 1920 * 1080 * 4, dtype=np.uint8)


def med(fn, n=20):
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return sorted(ts)[n // 2] * 1e3


assert C.crc32c_numpy(a) == (C.crc32c(a) if N.NATIVE_CRC else C.crc32c_numpy(a))
print(f"numpy:  {med(lambda: C.crc32c_numpy(a), 10):.2f} ms per 1080p RGBA frame")
if N.NATIVE_CRC:
    print(f"native: {med(lambda: C.crc32c(a)):.3f} ms per 1080p RGBA frame "
          f"(crc32 instruction: {bool(N._lib.fb_crc32c_hw())})")
