"""The process-wide settings minicnn trains under, and who applies them.

Three settings make minicnn fast on a small shared machine; each one
changes the whole process, so ``import minicnn`` applies **none** of them:

* **OpenBLAS on one thread** (through its C API, found with ctypes), with
  minicnn's own sleeping threads (:mod:`.threads`) splitting the
  convolution GEMMs instead. NumPy's OpenBLAS starts worker threads that
  busy-wait (spin) for a long while after each GEMM; minicnn alternates
  GEMMs with numba kernels all the time, so those spinning threads steal
  the cores numba's threads need.
* **numba's OpenMP threads wait passively** (``OMP_WAIT_POLICY=PASSIVE``
  unless you set it): the method kernels (``parallel=True``) alternate
  with BLAS calls, and actively waiting OpenMP threads spin too. libgomp
  reads the variable when numba starts its thread pool (the first parallel
  kernel call), so it must be set before that.
* **glibc's malloc keeps freed arrays** (``mallopt``; :func:`tune_malloc`):
  a training step frees and allocates the same activation-sized arrays
  over and over, and by default every one is a fresh ``mmap`` that
  page-faults in again.

The measured effect of each is in ``docs/measurements/timings.md``.

Who applies them: the CLI (``minicnn ...``, for the whole command) and
:meth:`minicnn.training.Trainer.fit` (for the duration of the fit), both
through :func:`speed_settings`, a context manager that puts back, on exit,
the OpenBLAS and numba thread counts and minicnn's pool as they were, and
removes ``OMP_WAIT_POLICY`` if it set it. Two effects outlast it: the
malloc thresholds (they change when memory returns to the OS, never a
result) and the wait policy of an OpenMP pool started inside it. Code
that runs layers directly (benchmarks, lessons, a notebook) gets the same
speed with ``with speed_settings(): ...``; without it minicnn's kernels run
on the calling thread and NumPy's BLAS keeps its own threads, as in any
NumPy program.

Threads: ``MINICNN_NUM_THREADS`` if set, else numba's thread count (the
number of cores). ``MINICNN_NO_MALLOPT=1`` leaves malloc alone.
"""
from __future__ import annotations

import contextlib
import ctypes
import os

import numba

from . import threads

_blas_info = "OpenBLAS untouched (minicnn's speed settings are not applied)"
_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads64_",
            "openblas_set_num_threads")


def _openblas_libs():
    """[(path, library)] of every OpenBLAS loaded in this process."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line}
    except OSError:  # not Linux
        paths = set()
    out = []
    for path in sorted(paths):
        try:
            out.append((path, ctypes.CDLL(path)))
        except OSError:
            continue
    return out


def _openblas_setters():
    """ctypes functions that set the thread count of every OpenBLAS loaded in this process."""
    found = []
    for path, lib in _openblas_libs():
        for name in _SETTERS:
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.argtypes = [ctypes.c_int]
                fn.restype = None
                found.append((path, fn))
                break
    return found


def _openblas_threads() -> list:
    """[(setter, thread count now)] of every OpenBLAS loaded (to put the counts back)."""
    out = []
    for path, lib in _openblas_libs():
        for name in _SETTERS:
            set_fn, get_fn = getattr(lib, name, None), getattr(lib, name.replace("_set_", "_get_"), None)
            if set_fn is not None and get_fn is not None:
                set_fn.argtypes, set_fn.restype, get_fn.restype = [ctypes.c_int], None, ctypes.c_int
                out.append((set_fn, int(get_fn())))
                break
    return out


def default_threads() -> int:
    """``MINICNN_NUM_THREADS`` or numba's thread count (the cores)."""
    return int(os.environ.get("MINICNN_NUM_THREADS", numba.config.NUMBA_NUM_THREADS))


def configure_threads(n: int | None = None) -> int:
    """Use ``n`` threads for the conv GEMMs and numba kernels; BLAS gets one thread. Returns n.

    Default: :func:`default_threads`. Process-wide (OpenBLAS, numba): prefer :func:`speed_settings`,
    which puts the previous counts back.
    """
    global _blas_info
    if n is None:
        n = default_threads()
    n = max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))
    setters = _openblas_setters()
    for _, fn in setters:
        fn(1)
    _blas_info = f"OpenBLAS set to 1 thread in {len(setters)} librar{'y' if len(setters) == 1 else 'ies'}"
    numba.set_num_threads(n)
    return threads.set_threads(n)


def tune_malloc() -> bool:
    """Keep freed arrays in the heap for reuse instead of returning them to the OS (glibc only).

    glibc serves arrays above a (dynamic, <= 32 MB) threshold with fresh
    mmap()s and trims the heap top on free, so every training step would
    page-fault its activations in again. With M_MMAP_THRESHOLD = 256 MB and
    M_TRIM_THRESHOLD = 1 GB it does not (same peak RSS). Set
    ``MINICNN_NO_MALLOPT=1`` to leave malloc alone. Returns True if applied.
    """
    if os.environ.get("MINICNN_NO_MALLOPT"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        return bool(libc.mallopt(M_MMAP_THRESHOLD, 256 << 20)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 1 << 30))
    except (OSError, AttributeError):  # not glibc
        return False


def thread_info() -> str:
    return f"{threads.num_threads()} thread(s) for GEMM slices and numba kernels; {_blas_info}"


def apply_speed_settings(n: int | None = None) -> tuple:
    """Apply minicnn's speed settings (module docstring) until :func:`restore_settings`; returns what they replaced.

    ``n``: minicnn's threads (default :func:`default_threads`). A script that only trains (a lesson,
    a benchmark) may call this once and never restore.
    """
    set_env = "OMP_WAIT_POLICY" not in os.environ
    if set_env:                     # first: numba.get_num_threads() below may start numba's OpenMP pool
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    saved = (_openblas_threads(), numba.get_num_threads(), threads.num_threads(), _blas_info, set_env)
    configure_threads(n)
    tune_malloc()
    return saved


def restore_settings(saved: tuple) -> None:
    """Put back the thread counts (and the environment) :func:`apply_speed_settings` replaced."""
    global _blas_info
    blas, numba_n, pool_n, _blas_info, set_env = saved
    for fn, count in blas:
        fn(count)
    numba.set_num_threads(numba_n)
    threads.set_threads(pool_n)
    if set_env:
        os.environ.pop("OMP_WAIT_POLICY", None)


@contextlib.contextmanager
def speed_settings(n: int | None = None):
    """minicnn's speed settings inside the block; the thread counts as they were after it.

    Nested uses are cheap (the pool is rebuilt only when its size changes).
    """
    saved = apply_speed_settings(n)
    try:
        yield
    finally:
        restore_settings(saved)
