"""Numeric kernels behind the leaf layers, and their naive references.

* :mod:`.im2col`      im2col / col2im (numba): convolution as one batched GEMM
* :mod:`.batchnorm`   per-channel statistics and folded affine passes (numba)
* :mod:`.pooling`     max / average pooling forward and backward (numba)
* :mod:`.elementwise` ReLU forward and backward (numba)
* :mod:`.gemm`        minicnn's threads: GEMM slices and every kernel's ranges (BLAS itself single-threaded)
* :mod:`.conv2d`      convolution drivers: cache-sized im2col + GEMM chunks on all threads, and the dispatch
* :mod:`.winograd`    Winograd F(2x2, 3x3) for 3x3 stride-1 convolutions (numba transforms + batched GEMMs)
* :mod:`.reference`   plain-loop definitions of all of the above, for tests and lessons

All numba kernels are compiled with ``cache=True``, and only when first
called: a run compiles what its model uses. On the 2-core development
machine (2026-11-23) the first ResNet-20 training step after installing
waits 8 s in all (process start, imports, compiling, the step itself;
``benchmarks/bench_vs_torch.py --parts coldstart``); later processes load
the machine code from ``__pycache__`` and reach the end of their first step
in about 2 s. Every kernel is a plain single-threaded loop run on minicnn's
own threads (``gemm.run_slices`` / ``gemm.for_chunks``), not numba's
``parallel=True``: as fast here, and each parallel kernel took about 1 s more
to compile (the cold start was 12.6 s with them). The kernels of the methods
(``methods/_dbtd.py``, ``quant/fixed.py``, ``kernels/sparse_conv.py``) are
still ``parallel=True``; they compile only for a run that uses the method.
Call :func:`warmup` to pay the compile cost up front (e.g. before timing).

Importing this package also sets up the process for speed (see gemm.py):
OpenBLAS single-threaded with our own thread pool for the conv GEMMs, numba's
OpenMP threads waiting passively, and glibc's malloc keeping freed arrays.
"""
from __future__ import annotations

import os

# numba's OpenMP threads must not busy-wait between kernels: the process
# alternates numba kernels with BLAS calls (whose threads spin too), and the
# machine may be shared. With OpenMP's default (active) wait policy a parallel
# kernel launch measured 16 ms on a loaded 2-core machine, 10 us with PASSIVE;
# even on an idle machine ResNet-20 fwd+bwd went from 268 to 464 img/s.
# libgomp reads this when numba first starts its thread pool (the first
# parallel kernel call), so it must be set before that; a user's value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

from .batchnorm import channel_affine, channel_affine2, channel_grad_sums, channel_mean_var  # noqa: E402
from .elementwise import relu_backward, relu_forward  # noqa: E402
from .gemm import configure_threads, matmul_batched, matmul_batched_sum_bt, thread_info, tune_malloc  # noqa: E402
from .im2col import col2im, col2im_nogil, conv_output_size, im2col, im2col_nogil  # noqa: E402
from .pooling import avgpool2d_backward, avgpool2d_forward, maxpool2d_backward, maxpool2d_forward  # noqa: E402

__all__ = ["im2col", "col2im", "im2col_nogil", "col2im_nogil", "conv_output_size", "channel_mean_var", "channel_affine",
           "channel_grad_sums", "channel_affine2", "relu_forward", "relu_backward",
           "maxpool2d_forward", "maxpool2d_backward", "avgpool2d_forward", "avgpool2d_backward",
           "matmul_batched", "matmul_batched_sum_bt", "configure_threads", "thread_info", "warmup"]

# BLAS to one thread, GEMMs split over our own (sleeping, never spinning) threads,
# and malloc keeps freed activations for reuse: see gemm.py
configure_threads()
tune_malloc()


def cache_is_warm() -> bool:
    """True if numba's on-disk cache already holds compiled kernels (so the first batch starts at once)."""
    import glob

    import numba
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "__pycache__")
    if numba.config.CACHE_DIR:     # NUMBA_CACHE_DIR: numba keeps a folder per source folder under it
        here = os.path.join(numba.config.CACHE_DIR, "*kernels*")
    return bool(glob.glob(os.path.join(here, "im2col.*.nbi"))) and bool(glob.glob(os.path.join(here, "*.nbc")))


def warmup(dtypes=(np.float32,)) -> None:
    """Compile (or load from cache) every kernel for the given dtypes on tiny inputs."""
    for dt in dtypes:
        x = np.ones((2, 2, 4, 4), dtype=dt)
        cols = np.empty((2, 2 * 9, 16), dtype=dt)
        im2col(x, 3, 3, 1, 1, 1, 1, cols)
        col2im(cols, 3, 3, 1, 1, 1, 1, np.empty_like(x))
        im2col_nogil(x, 3, 3, 1, 1, 1, 1, cols)
        col2im_nogil(cols, 3, 3, 1, 1, 1, 1, np.empty_like(x))
        mean, var = channel_mean_var(x)
        v = np.ones(2, dtype=dt)
        channel_affine(x, v, v, np.empty_like(x))
        channel_grad_sums(x, x, mean)
        channel_affine2(x, x, v, v, v, v, np.empty_like(x))
        relu_backward(x.ravel(), x.ravel(), relu_forward(x.ravel(), np.empty(x.size, dtype=dt)))
        y = np.empty((2, 2, 2, 2), dtype=dt)
        arg = np.empty((2, 2, 2, 2), dtype=np.int32)
        maxpool2d_forward(x, 2, 2, 2, 2, y, arg)
        maxpool2d_backward(y, arg, np.empty_like(x))
        avgpool2d_forward(x, 2, 2, 2, 2, y)
        avgpool2d_backward(y, 2, 2, 2, 2, np.empty_like(x))
        from .winograd import winograd_forward, winograd_input_grad, winograd_weight_grad
        w = np.ones((2, 2, 3, 3), dtype=dt)
        winograd_forward(x, w, 1, 1, np.empty_like(x))
        winograd_input_grad(x, w, 1, 1, np.empty_like(x))
        winograd_weight_grad(x, x, 1, 1)
