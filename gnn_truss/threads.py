"""Thread counts of the BLAS libraries that numpy and scipy load.

The FE analyses call BLAS on small matrices (SuperLU's kernels, the Lanczos vectors of the
buckling eigensolver). OpenBLAS starts one thread per core for them, and when two jobs share
the cores (``--workers 2``, or an FE job beside a training run) the threads spin against
each other: the buckling analysis of a corpus lattice took 0.28 s instead of 0.09 s with one
core busy elsewhere. FE worker processes therefore run with one BLAS thread each, and
``gnn-truss --threads N`` sets N for BLAS as well as for torch.

numpy and scipy ship separate copies of OpenBLAS (``numpy.libs``, ``scipy.libs``), so each
loaded copy is set through its own C entry point (``openblas_set_num_threads`` under the
names the wheels export). The environment variable ``OPENBLAS_NUM_THREADS``, read only when a
library loads, is set too, for processes started later.
"""
from __future__ import annotations

import ctypes
import os

__all__ = ["blas_libraries", "blas_threads", "limit_blas_threads", "single_thread_worker"]

#: Entry points of OpenBLAS builds (scipy-openblas wheels with 64- and 32-bit integers, plain).
_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
            "openblas_set_num_threads64_", "openblas_set_num_threads")
_GETTERS = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
            "openblas_get_num_threads64_", "openblas_get_num_threads")


def blas_libraries() -> list[str]:
    """Paths of the OpenBLAS libraries loaded in this process (Linux: read from
    ``/proc/self/maps``; elsewhere an empty list)."""
    try:
        with open("/proc/self/maps") as fh:
            paths = {line.split()[-1] for line in fh if "openblas" in line.lower()}
    except OSError:
        return []
    return sorted(p for p in paths if p.startswith("/") and ".so" in os.path.basename(p))


def _entry(lib, names):
    for name in names:
        fn = getattr(lib, name, None)
        if fn is not None:
            return fn
    return None


def blas_threads() -> dict[str, int]:
    """``{path: threads}`` of each loaded OpenBLAS."""
    out = {}
    for path in blas_libraries():
        get = _entry(ctypes.CDLL(path), _GETTERS)
        if get is not None:
            get.restype = ctypes.c_int
            out[path] = int(get())
    return out


def limit_blas_threads(threads: int) -> int:
    """Set the thread count of every loaded OpenBLAS (and ``OPENBLAS_NUM_THREADS`` for child
    processes).

    Args:
        threads: threads per library, >= 1.

    Returns:
        How many loaded libraries were set (0 where none could be found: not Linux, or a BLAS
        other than OpenBLAS, whose own environment variables then apply).

    Raises:
        ValueError: for a thread count that is not a positive integer.
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    os.environ["OPENBLAS_NUM_THREADS"] = str(threads)
    count = 0
    for path in blas_libraries():
        setter = _entry(ctypes.CDLL(path), _SETTERS)
        if setter is not None:
            setter.argtypes = [ctypes.c_int]
            setter(threads)
            count += 1
    return count


def single_thread_worker() -> None:
    """Initializer of the FE worker processes (``ProcessPoolExecutor(initializer=...)``): one
    torch thread and one thread per BLAS library each, the workers being the parallelism."""
    import torch

    torch.set_num_threads(1)
    limit_blas_threads(1)
