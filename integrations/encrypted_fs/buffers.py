"""New ``bytes`` objects filled in place: whole-file reads, and memory:// files.

pandas' C parser (and other callers) accept only ``bytes`` from ``read()``, and
fsspec's memory:// keeps a file as one ``bytes``-backed BytesIO; building either
in a bytearray and then calling ``bytes()`` would copy it, doubling the peak
memory.  So a large result is an uninitialised bytes object asked of CPython
(``PyBytes_FromStringAndSize(NULL, n)``), filled through a ctypes view of its
storage, and only then handed out: nobody else can see the object before it is
filled, and its hash is not computed until asked for.  Other interpreters get a
bytearray copied into bytes.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable


class _Maker:
    make: Any = None


def _fresh(n: int) -> tuple[bytes, memoryview]:
    import ctypes  # noqa: PLC0415 - loaded on first use (cold start)

    if _Maker.make is None:
        make = ctypes.pythonapi.PyBytes_FromStringAndSize
        make.restype = ctypes.py_object
        make.argtypes = (ctypes.c_char_p, ctypes.c_ssize_t)
        _Maker.make = make
    out = _Maker.make(None, n)  # n > 1: never one of the shared singletons
    addr = ctypes.cast(ctypes.c_char_p(out), ctypes.c_void_p).value  # its storage, no copy
    if not addr:
        raise MemoryError(n)
    return out, memoryview((ctypes.c_char * n).from_address(addr)).cast("B")


def new_bytes(n: int, fill: Callable[[memoryview], Any]) -> bytes:
    """``bytes`` of length ``n`` (> 1), filled by ``fill`` through a writable view
    (released when ``fill`` returns: it must keep no view of it)."""
    if sys.implementation.name != "cpython":
        buf = bytearray(n)
        fill(memoryview(buf))
        return bytes(buf)
    out, view = _fresh(n)
    try:
        fill(view)
    finally:
        view.release()
    return out
