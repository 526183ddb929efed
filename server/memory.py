"""Giving freed heap memory back to the operating system.

The 30-minute soak (issue 24) had every worker's resident memory climb in steps, about
+14 % after warm-up, long after the Python-level growth had been fixed. Sampling glibc's
own accounting (``mallinfo2``) in the workers showed why: the bytes malloc had handed out
stayed flat at ~20 MiB for the whole run and Python's object count was steady, but the
*free* bytes inside malloc's heap rose from 2 to 15 MiB. Requests allocate and free
buffers of every size (rows, JSON bodies, ciphertexts, templates); glibc returns memory to
the system only from the top of its heap, so freed chunks in the middle stay resident,
and a little more of the heap ends up that way at each burst of concurrency.

``malloc_trim(0)`` releases every whole free page inside the heap (glibc 2.8 and newer,
by ``madvise``), which is what a worker needs to do now and then. It costs a millisecond
or two and holds malloc's lock only while it walks the heap. Elsewhere (musl, macOS) the
function does not exist and this module does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True)
class Trimmed:
    rss_before: int  # bytes
    rss_after: int

    @property
    def released(self) -> int:
        return max(0, self.rss_before - self.rss_after)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        function = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    trim: Callable[[int], int] = function
    return trim


def resident_bytes() -> int | None:
    """This process's resident set size, from /proc (None where there is no /proc)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return None


def can_trim() -> bool:
    return _malloc_trim() is not None


def release_free_heap() -> Trimmed | None:
    """Hand malloc's whole free pages back to the system; None where that is not possible."""
    trim = _malloc_trim()
    if trim is None:
        return None
    before = resident_bytes()
    trim(0)
    after = resident_bytes()
    if before is None or after is None:
        return None
    return Trimmed(before, after)
