r"""How the process's `malloc` treats the large blocks XLA's CPU runtime frees after every call.

XLA on a CPU allocates a compiled call's temporary buffers with `malloc` and frees them when
the call returns. glibc's `malloc` serves a block above its mmap threshold (dynamic, at
most 32 MiB) with fresh pages from the system and gives them back when it is freed, and
trims the top of its heap when more than its trim threshold is free. A step whose
temporaries are a few MiB can so fault in fresh, zeroed pages on every call, which costs
more than its arithmetic: a covariance-probe training step of the 1.1 M-parameter MLP
(batch 256, 11.6 MiB of temporaries) took 72 to 80 ms a call under glibc's defaults,
against 15 to 25 ms with the blocks kept, or under tcmalloc (a 2-core AMD EPYC, JAX 0.10.2).

[`keep_freed_memory`][snrkit.core.allocator.keep_freed_memory] raises both thresholds in
the running process (`mallopt(3)`), which is what `GLIBC_TUNABLES` does from outside
before the process starts. snrkit's commands (`snrkit report`, `verify`, `sweep`, `cost`)
call it first; a script or notebook that times snrkit calls itself.

Examples:
    >>> from snrkit.core.allocator import keep_freed_memory
    >>> keep_freed_memory() in (True, False)  # False off glibc
    True
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform

MMAP_THRESHOLD = 512 << 20
"""Blocks up to this size (512 MiB) come from `malloc`'s heap, which keeps them when freed."""
TRIM_THRESHOLD = 1 << 30
"""Free memory (1 GiB) the heap may keep at its top before it gives pages back."""

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3  # glibc's <malloc.h> parameter numbers


@functools.cache
def keep_freed_memory() -> bool:
    """Let glibc's `malloc` keep freed blocks of up to `MMAP_THRESHOLD` for reuse, in this process.

    Memory XLA frees then stays with the process for its next call instead of returning to
    the system (the process's resident size falls back less between calls). Results are
    unchanged: only where the bytes come from. Called once per process; later calls return
    the first one's answer.

    Returns:
        True when glibc accepted both settings; False where the C library is not glibc
        (macOS, musl), which is left as it is.
    """
    if platform.libc_ver()[0] != "glibc":  # the parameter numbers below are glibc's
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError):
        return False
    mmap, trim = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD), mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    return bool(mmap) and bool(trim)


__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "keep_freed_memory"]
