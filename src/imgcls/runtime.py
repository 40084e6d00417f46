"""Process settings for fast CPU work: :func:`tune_process`, which the ``imgcls`` command applies first thing.

Both are standard CPU-inference advice (Intel's and PyTorch's CPU performance guides) that a
tutorial loop never applies; each keeps a value the user set. They change the whole process, so
importing imgcls as a library applies neither: call ``imgcls.runtime.tune_process()`` before torch is
imported to get them. ``IMGCLS_NO_TUNING=1`` makes :func:`tune_process` apply neither.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# glibc mallopt() parameters
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def usable_cpus() -> int:
    """The cores this process may run on (its affinity mask, which containers and taskset narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def cpu_loader_workers() -> int:
    """Image-decoding processes beside a model running on the CPU: up to 4, one core left to the model."""
    return max(0, min(4, usable_cpus() - 1))


def tuning_wanted() -> bool:
    return not os.environ.get("IMGCLS_NO_TUNING")


def set_passive_openmp() -> None:
    """OpenMP threads that spin while they wait take the cores that loader workers and other programs
    need: on 2 shared cores a training step ran 20-50x slower. Passive threads sleep instead. This must
    be set before torch is first imported."""
    if tuning_wanted():
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep the memory torch frees instead of handing it back to the kernel.

    By default every tensor over 128 KB-32 MB is a fresh mmap, and the kernel zero-fills each of its
    pages again on first touch: a 224-pixel efficientnet_lite0 training step at batch 32 took 23,000
    page faults per image. Served from a heap that is never trimmed, the same step takes none, and runs
    1.7x faster on 2 cores (83 -> 49 ms per image; inference at batch 8: 21 -> 13 ms), for about 20%
    more resident memory. The same effect as preloading jemalloc or tcmalloc, without either. Returns
    whether the settings were applied (glibc only; skipped when the user tunes malloc).
    """
    if not tuning_wanted() or "malloc" in os.environ.get("GLIBC_TUNABLES", "") or any(
            name.startswith("MALLOC_") for name in os.environ):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl without mallopt)
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**30))


def tune_process() -> None:
    """Passive OpenMP threads and a malloc that keeps freed memory, for this process (and the processes it
    starts). Call it before torch is first imported; the ``imgcls`` command does."""
    set_passive_openmp()
    keep_freed_memory()
