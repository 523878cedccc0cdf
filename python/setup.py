"""The native helper (src/framebus/_native.c): a plain shared library, no Python.h,
built with the machine's C compiler at install time and loaded with ctypes. It is
optional: without a compiler the package installs and runs on its pure-Python
fallback (framebus.GUARDED is then False; see docs/PYTHON.md)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "framebus._fbhelper", ["src/framebus/_native.c"], depends=["src/framebus/_crc32c_impl.h"],
    extra_compile_args=["-O2", "-std=gnu11", "-fvisibility=hidden", "-Wall"],
    optional=True)])
