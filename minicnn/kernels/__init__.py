"""Numeric kernels behind the leaf layers, and their naive references.

* :mod:`.im2col`      im2col / col2im (numba): convolution as one batched GEMM
* :mod:`.batchnorm`   per-channel statistics and folded affine passes (numba)
* :mod:`.pooling`     max / average pooling forward and backward (numba)
* :mod:`.elementwise` ReLU forward and backward (numba)
* :mod:`.gemm`        GEMMs split over minicnn's threads (convolution, linear)
* :mod:`.conv2d`      convolution drivers: cache-sized im2col + GEMM chunks on all threads, and the dispatch
* :mod:`.winograd`    Winograd F(2x2, 3x3) for 3x3 stride-1 convolutions (numba transforms + batched GEMMs)
* :mod:`.threads`     minicnn's thread pool: every kernel's ranges and GEMM slices
* :mod:`.process`     the process-wide speed settings (BLAS threads, OpenMP wait policy, malloc) and
                      :func:`speed_settings`, which the CLI and the Trainer apply
* :mod:`.reference`   plain-loop definitions of all of the above, for tests and lessons

All numba kernels are compiled with ``cache=True``, and only when first
called: a run compiles what its model uses, and later processes load the
machine code from ``__pycache__`` (the first step's wait, with and without
a warm cache, is measured in ``docs/measurements/timings.md``). Every kernel
is a plain single-threaded loop run on minicnn's own threads
(``threads.run_slices`` / ``threads.for_chunks``), not numba's
``parallel=True``: as fast here, and quicker to compile. The kernels of
the methods (``methods/_dbtd.py``, ``quant/fixed.py``,
``kernels/sparse_conv.py``) are still ``parallel=True``; they compile only
for a run that uses the method. Call :func:`warmup` to pay the compile
cost up front (e.g. before timing).

Importing this package changes nothing outside minicnn: no environment
variable, no BLAS or malloc setting, no thread started (:mod:`.process`).
"""
from __future__ import annotations

import os

import numpy as np

from .batchnorm import channel_affine, channel_affine2, channel_grad_sums, channel_mean_var
from .elementwise import relu_backward, relu_forward
from .gemm import matmul_batched, matmul_batched_sum_bt
from .im2col import col2im, col2im_nogil, conv_output_size, im2col, im2col_nogil
from .pooling import avgpool2d_backward, avgpool2d_forward, maxpool2d_backward, maxpool2d_forward
from .process import apply_speed_settings, configure_threads, speed_settings, thread_info, tune_malloc

__all__ = ["im2col", "col2im", "im2col_nogil", "col2im_nogil", "conv_output_size", "channel_mean_var", "channel_affine",
           "channel_grad_sums", "channel_affine2", "relu_forward", "relu_backward",
           "maxpool2d_forward", "maxpool2d_backward", "avgpool2d_forward", "avgpool2d_backward",
           "matmul_batched", "matmul_batched_sum_bt", "apply_speed_settings", "configure_threads", "speed_settings",
           "thread_info",
           "tune_malloc", "warmup"]


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
