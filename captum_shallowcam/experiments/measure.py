"""What the benchmark scripts measure with: the process's memory and allocator.

Shared by ``benchmarks/speed.py``, ``speed_ab.py`` and ``cam_family_speed.py``
(the allocator) and by ``metric_memory.py`` and ``engine_memory.py`` (the peak
resident memory), so that no script imports another.
"""

import ctypes
import ctypes.util
import resource


def steady_allocator() -> str:
    """Raises glibc's mmap and trim thresholds to their maximum (mallopt
    M_MMAP_THRESHOLD = -3, M_TRIM_THRESHOLD = -1): freed memory is reused,
    not returned to the operating system and mapped again. Returns a line
    that says so, for a script's header."""
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is None or not hasattr(libc, "mallopt"):
        raise SystemExit("--steady-allocator needs glibc (Linux).")
    largest = ctypes.c_int(2**31 - 1)
    if not (libc.mallopt(-3, largest) and libc.mallopt(-1, largest)):
        raise SystemExit(
            "mallopt refused the thresholds; run without --steady-allocator."
        )
    return "steady allocator (glibc mmap and trim thresholds raised)"


def peak_mib() -> float:
    """The process's peak resident memory so far, in MiB (Linux)."""
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
