"""Batched GEMMs for convolution, split over threads; BLAS itself single-threaded.

Why: NumPy's OpenBLAS starts its own worker threads, which busy-wait (spin)
for a long while after each GEMM. minicnn alternates GEMMs with numba
kernels all the time, so those spinning threads steal the cores numba's
threads need; on a shared 2-core machine a model step measured 10-40x slower
than with single-threaded BLAS. So at import, :func:`configure_threads`
sets OpenBLAS to one thread (through its C API, found with ctypes) and the
conv GEMMs are parallelized here instead: the batch is cut into as many
contiguous slices as there are threads, and each slice's ``np.matmul`` runs
on its own Python thread (NumPy releases the GIL inside matmul). Idle pool
threads sleep, they never spin. Measured on 2 cores (loaded machine), a
(16 x 144) @ (128 x 144 x 1024) batched GEMM: OpenBLAS 2 threads 7.0 ms,
1 thread 10.4 ms, split over 2 threads 5.2 ms.

Threads: ``MINICNN_NUM_THREADS`` if set, else numba's thread count (the
number of cores). The numbers do not depend on the thread count: the
slices of :func:`matmul_batched` are independent samples, and the batch sum
of :func:`matmul_batched_sum_bt` runs over chunks fixed by the shapes alone,
added in chunk order.
"""
from __future__ import annotations

import ctypes
import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

_pool: ThreadPoolExecutor | None = None
_threads = 1
_blas_info = "not configured"


def _openblas_setters():
    """ctypes functions that set the thread count of every OpenBLAS loaded in this process."""
    names = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads64_",
             "openblas_set_num_threads")
    found = []
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line}
    except OSError:  # not Linux
        paths = set()
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in names:
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.argtypes = [ctypes.c_int]
                fn.restype = None
                found.append((path, fn))
                break
    return found


def configure_threads(n: int | None = None) -> int:
    """Use ``n`` threads for the conv GEMMs (and numba kernels); BLAS gets one thread.

    Default: ``MINICNN_NUM_THREADS`` or numba's thread count. Returns n.
    """
    global _pool, _threads, _blas_info
    if n is None:
        n = int(os.environ.get("MINICNN_NUM_THREADS", numba.config.NUMBA_NUM_THREADS))
    n = max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))
    setters = _openblas_setters()
    for _, fn in setters:
        fn(1)
    _blas_info = f"OpenBLAS set to 1 thread in {len(setters)} librar{'y' if len(setters) == 1 else 'ies'}"
    numba.set_num_threads(n)
    if _pool is not None:
        _pool.shutdown(wait=True)
    _pool = ThreadPoolExecutor(max_workers=n - 1, thread_name_prefix="minicnn-gemm") if n > 1 else None
    _threads = n
    return n


def _after_fork_in_child() -> None:
    """A forked child has no pool threads (only the forking thread survives): start afresh."""
    global _pool
    _pool = ThreadPoolExecutor(max_workers=_threads - 1, thread_name_prefix="minicnn-gemm") if _threads > 1 else None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def tune_malloc() -> bool:
    """Keep freed arrays in the heap for reuse instead of returning them to the OS (glibc only).

    A training step allocates and frees the same activation-sized arrays over
    and over. glibc serves arrays above a (dynamic, <= 32 MB) threshold with
    fresh mmap()s and trims the heap top on free, so every step page-faults
    its memory in again: ResNet-20 at batch 128 took ~19,000 page faults per
    step, ~10% of its time in a VM. With M_MMAP_THRESHOLD = 256 MB and
    M_TRIM_THRESHOLD = 1 GB it takes none (same peak RSS). Set
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
    return f"{_threads} thread(s) for GEMM slices and numba kernels; {_blas_info}"


def _slices(N: int, parts: int):
    parts = max(1, min(parts, N))
    bounds = [N * k // parts for k in range(parts + 1)]
    return [(bounds[k], bounds[k + 1]) for k in range(parts)]


def run_slices(fn, N: int):
    """Run fn(slot, start, stop) over contiguous batch slices, one per thread; results in slice order.

    ``slot`` numbers the slices 0.. (use it to pick per-slice scratch memory); the
    last slice runs on the calling thread. fn must release the GIL to gain anything
    (np.matmul and the ``nogil`` numba kernels do).
    """
    sl = _slices(N, _threads)
    if len(sl) == 1 or _pool is None:
        return [fn(0, 0, N)]
    futures = [_pool.submit(fn, k, s, e) for k, (s, e) in enumerate(sl[:-1])]
    last = fn(len(sl) - 1, *sl[-1])
    return [f.result() for f in futures] + [last]


def run_on_threads(fn, n: int | None = None):
    """Run fn(slot) on ``n`` threads at once (default: all), slot = 0..n-1; results in slot order."""
    n = _threads if n is None else max(1, min(n, _threads))
    if n == 1 or _pool is None:
        return [fn(0)]
    futures = [_pool.submit(fn, k) for k in range(n - 1)]
    last = fn(n - 1)
    return [f.result() for f in futures] + [last]


def _run(fn, N: int):
    return run_slices(lambda k, s, e: fn(s, e), N)


#: a 2-D product with fewer multiply-adds than this runs on the calling thread alone (handing work to the
#: pool costs tens of microseconds)
MATMUL_SPLIT_MACS = 1 << 20
#: row blocks of a split product (dynamic schedule: a delayed thread takes fewer)
MATMUL_BLOCKS = 8


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b for 2-D a (M, K) and b (K, N), blocks of the result on all threads.

    The result is cut along its longer side (rows of a, or columns of b: each
    block then reads only its own part of the other, larger operand) into
    ``MATMUL_BLOCKS`` blocks whose bounds depend on the shapes alone, never
    on the thread count, and each block is one ``np.matmul`` over the whole K:
    the same bits on any number of threads. (Blocks cut per thread gave other
    bits: BLAS's tiling of a block's edges differs.) Small products stay on
    the calling thread. NumPy's own ``@`` would use one core here: BLAS is
    single-threaded (see the module docstring).
    """
    M, K = a.shape
    N = b.shape[1]
    out = np.empty((M, N), dtype=np.result_type(a, b))
    if M * K * N < MATMUL_SPLIT_MACS:
        return np.matmul(a, b, out=out)
    size = max(M, N)
    step = -(-(-(-size // MATMUL_BLOCKS)) // 16) * 16        # ceil(size / blocks), rounded up to 16
    if N >= M:      # out[:, s:e] = a @ b[:, s:e]
        for_chunks(N, step, lambda slot, k, s, e: np.matmul(a, b[:, s:e], out=out[:, s:e]))
    else:           # out[s:e] = a[s:e] @ b
        for_chunks(M, step, lambda slot, k, s, e: np.matmul(a[s:e], b, out=out[s:e]))
    return out


def matmul_batched(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out[n] = a @ b[n] for a (M, K), b (N, K, L), out (N, M, L)."""
    _run(lambda s, e: np.matmul(a, b[s:e], out=out[s:e]), b.shape[0])
    return out


def for_chunks(N: int, b: int, fn) -> None:
    """Call fn(slot, k, start, stop) for every chunk k of ``b`` samples of a batch of N, on all threads.

    Dynamic schedule: each thread takes the next chunk when it is free, so a
    thread the OS delays (a shared machine) does fewer chunks instead of
    holding up the others. ``slot`` identifies the thread (e.g. its scratch
    buffer). The chunks depend on N and b only, never on the thread count.
    """
    nchunks = -(-N // b)
    counter = itertools.count()  # next() on it is atomic under the GIL

    def worker(slot):
        while True:
            k = next(counter)
            if k >= nchunks:
                return
            fn(slot, k, k * b, min(N, (k + 1) * b))

    run_on_threads(worker, nchunks)


class OrderedSum:
    """Adds arrays numbered 0, 1, 2, ... in that order, whatever order the threads hand them in.

    ``add(k, a)`` parks ``a`` until every array before it has been added, so
    the floating-point sum is ``((a0 + a1) + a2) + ...`` for any thread count
    and schedule, while at most a few arrays wait at a time (keeping all of
    them, then summing, held 128 per-sample weight gradients at once: 0.45 GB
    for one AlexNet conv at batch 128).
    """

    def __init__(self):
        self.total = None
        self._next = 0
        self._waiting: dict = {}
        self._lock = threading.Lock()

    def add(self, k: int, a: np.ndarray) -> None:
        with self._lock:
            self._waiting[k] = a
            while self._next in self._waiting:
                part = self._waiting.pop(self._next)
                if self.total is None:
                    self.total = part
                else:
                    self.total += part
                self._next += 1


#: bytes of operands per chunk of :func:`matmul_batched_sum_bt` (1-8 MB measured alike on 2 cores; 2 MB keeps >= 6 chunks at batch 128)
SUM_CHUNK_BYTES = 2 << 20


def matmul_batched_sum_bt(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """sum_n a[n] @ b[n].T for a (N, M, L), b (N, K, L): the (M, K) weight gradient.

    The batch is cut into chunks whose size depends on the shapes only
    (operands of about ``SUM_CHUNK_BYTES``), each chunk's sum is formed by
    whichever thread is free, and the chunk sums are added in chunk order:
    the floating-point summation order, hence every bit of the result, is the
    same for any thread count. (Cutting the batch into one slice per thread
    instead made the sum depend on the thread count: 6e-5 apart in float32.)
    """
    N, M, L = a.shape
    per_sample = (M + b.shape[1]) * L * a.itemsize
    step = max(1, min(N, SUM_CHUNK_BYTES // per_sample))
    total = OrderedSum()

    def chunk(slot, k, s, e):
        total.add(k, np.matmul(a[s:e], b[s:e].transpose(0, 2, 1)).sum(axis=0))

    for_chunks(N, step, chunk)
    return total.total
