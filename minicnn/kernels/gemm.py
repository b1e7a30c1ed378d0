"""Batched GEMMs for convolution and the linear layer, split over minicnn's threads.

BLAS itself runs on one thread while minicnn trains (:mod:`.process` says
why and who sets it); the products are parallelized here instead, each
piece one ``np.matmul`` on a thread of minicnn's pool (:mod:`.threads`;
NumPy releases the GIL inside matmul):

* :func:`matmul_batched`        out[n] = a @ b[n]: the batch cut into one contiguous slice per thread
* :func:`matmul_batched_sum_bt` sum_n a[n] @ b[n].T (a weight gradient): chunks fixed by the shapes,
                                summed in chunk order
* :func:`matmul`                a @ b: blocks of the result fixed by the shapes

The numbers do not depend on the thread count: the slices of
:func:`matmul_batched` are independent samples, and the chunks and blocks
of the other two depend on the shapes alone, their sums added in order.
(The measured speed of this split against OpenBLAS's own threads is in
``docs/measurements/timings.md``.)

The thread pool itself (``run_slices``, ``run_on_threads``, ``for_chunks``,
``OrderedSum``) lived here until it moved to :mod:`.threads`, and the
process settings (``configure_threads``, ``thread_info``, ``tune_malloc``)
to :mod:`.process`. The names below still import from here **for one
release** (``gemm.run_slices``, ``from .gemm import OrderedSum``, even
``gemm._threads``); new code imports them from their modules.
"""
from __future__ import annotations

import numpy as np

from . import threads
from .process import _openblas_setters, configure_threads, thread_info, tune_malloc  # noqa: F401  (one release)
from .threads import OrderedSum, for_chunks, run_on_threads, run_slices  # noqa: F401  (one release)


def __getattr__(name):
    """The pool's private names (``_threads``, ``_pool``, ``_slices``), live, for one release."""
    if name in ("_threads", "_pool", "_slices"):
        return getattr(threads, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
