"""Convolution drivers: im2col + GEMM, or Winograd for 3x3 stride-1 layers, on cache-sized chunks, all threads.

:func:`conv2d_forward` and :func:`conv2d_backward` choose the algorithm
(:func:`use_winograd`): Winograd F(2x2, 3x3) (:mod:`.winograd`) for 3x3
stride-1 convolutions with at least ``WINOGRAD_MIN_CHANNELS`` input
channels, where it measured faster, and
im2col + GEMM (below) for everything else. ``MINICNN_CONV_ALGO=im2col`` (or
``conv2d.ALGORITHM = "im2col"``) forces im2col everywhere, to compare;
``winograd`` takes Winograd wherever it applies. The weight gradient alone
is :func:`conv2d_weight_grad`.

im2col + GEMM:

The batch is cut into chunks of ``b`` samples whose columns (``b x K x L``
values, see :mod:`.im2col`) fit in a scratch buffer of about ``CHUNK_BYTES``,
one buffer per thread, so the columns are written by im2col and read back by
the GEMM while still in cache, and are never kept. Every thread
(``minicnn.kernels.gemm``) takes the next chunk when it is free::

    forward   for each chunk:  cols = im2col(x[chunk]);  y[chunk] = W2 @ cols
    backward  for each chunk:  cols = im2col(x[chunk])                 (recomputed)
                               dW2 += sum_n dy[n] @ cols[n].T
                               dcols = W2.T @ dy[chunk] (into the same buffer)
                               dx[chunk] = col2im(dcols)

Recomputing the columns in backward costs one im2col per layer and step,
but saves keeping ``N*K*L`` values per layer (9x a 3x3 conv's input; 0.8 GB
for ResNet-20 at batch 128) and measured faster than keeping them: the
cache-resident chunks make both im2col and the GEMM cheaper.

The im2col kernels used here are the single-threaded, GIL-free twins
(``im2col_nogil``), so the threads really run in parallel. Per-chunk
weight gradients are summed in chunk order (deterministic, whatever thread
did which chunk), each as soon as the ones before it are in (``gemm.OrderedSum``). The scratch buffers are shared by all layers (layers run
one at a time); do not run two convolutions concurrently from your own threads.
"""
from __future__ import annotations

import os

import numpy as np

from . import gemm
from . import winograd
from .im2col import col2im_nogil, conv_output_size, im2col_nogil

#: bytes of columns per chunk (per thread): about one core's L2 cache (1 MB here measured best, 1-4 MB within 5%)
CHUNK_BYTES = 1 << 20

_scratch: dict[tuple[int, np.dtype], np.ndarray] = {}


def chunk_samples(N: int, K: int, L: int, dtype) -> int:
    """Samples per chunk so that a (chunk, K, L) column buffer fits in CHUNK_BYTES (>= 1)."""
    return max(1, min(N, CHUNK_BYTES // (K * L * np.dtype(dtype).itemsize)))


def _buffer(slot: int, shape, dtype) -> np.ndarray:
    """A (b, K, L) view of scratch buffer ``slot`` (one per batch slice), grown when needed."""
    dtype = np.dtype(dtype)
    size = shape[0] * shape[1] * shape[2]
    buf = _scratch.get((slot, dtype))
    if buf is None or buf.size < size:
        buf = _scratch[(slot, dtype)] = np.empty(size, dtype=dtype)
    return buf[:size].reshape(shape)


def release_scratch() -> None:
    """Free the shared column buffers (reallocated on the next convolution)."""
    _scratch.clear()


def im2col_forward(x, w2, geometry, y):
    """y (N, O, L) = W2 @ im2col(x) for x (N, C, H, W), W2 (O, K); geometry = (kh, kw, sh, sw, ph, pw)."""
    kh, kw, sh, sw, ph, pw = geometry
    N = x.shape[0]
    K, L = w2.shape[1], y.shape[2]
    b = chunk_samples(N, K, L, y.dtype)

    def chunk(slot, k, s, e):
        cols = im2col_nogil(x[s:e], kh, kw, sh, sw, ph, pw, _buffer(slot, (e - s, K, L), y.dtype))
        np.matmul(w2, cols, out=y[s:e])

    gemm.for_chunks(N, b, chunk)
    return y


def im2col_backward(x, w2, geometry, dy, want_dw: bool, dx):
    """Returns dW2 (O, K) or None, and fills dx (N, C, H, W) unless it is None.

    dy is (N, O, L); the columns of x are recomputed chunk by chunk. The
    per-chunk weight gradients are summed in chunk order, so dW does not
    depend on which thread did which chunk.
    """
    kh, kw, sh, sw, ph, pw = geometry
    N = x.shape[0]
    K, L = w2.shape[1], dy.shape[2]
    if not want_dw and dx is None:
        return None
    b = chunk_samples(N, K, L, dy.dtype)
    w2t = w2.T
    dw = gemm.OrderedSum()      # per-chunk dW added in chunk order, whichever thread did which chunk

    def chunk(slot, k, s, e):
        cols = im2col_nogil(x[s:e], kh, kw, sh, sw, ph, pw, _buffer(slot, (e - s, K, L), dy.dtype))
        g = dy[s:e]
        if want_dw:
            # sum_n dy[n] @ cols[n].T ; cols[n].T is a transposed view (BLAS 'T' flag, no copy)
            dw.add(k, np.matmul(g, cols.transpose(0, 2, 1)).sum(axis=0))
        if dx is not None:
            col2im_nogil(np.matmul(w2t, g, out=cols), kh, kw, sh, sw, ph, pw, dx[s:e])

    gemm.for_chunks(N, b, chunk)
    return dw.total if want_dw else None


# -- dispatch: Winograd F(2x2, 3x3) for 3x3 stride-1 layers where it measured faster ------------------------
#: "auto" (Winograd where :func:`use_winograd` says so, im2col elsewhere), "im2col" (always; to compare) or
#: "winograd" (wherever it applies: 3x3, stride 1, any padding). Default from ``MINICNN_CONV_ALGO``.
ALGORITHM = os.environ.get("MINICNN_CONV_ALGO", "auto")
#: "auto" takes Winograd for 3x3 stride-1 layers with at least this many input channels. Measured
#: (benchmarks/bench_conv_algos.py, 2 cores, 2026-12-03, forward + dW + dx at batch 128): with 3 input
#: channels (the stems) Winograd is 0.3-0.4x im2col (its GEMMs have K = 3); from 16 channels on 1.07-2.1x.
WINOGRAD_MIN_CHANNELS = 16


def use_winograd(x_shape, O: int, geometry) -> bool:
    """Whether a convolution of this shape takes the Winograd path (see :data:`ALGORITHM`)."""
    if ALGORITHM not in ("auto", "im2col", "winograd"):
        raise ValueError(f"MINICNN_CONV_ALGO / conv2d.ALGORITHM must be auto, im2col or winograd, got {ALGORITHM!r}")
    kh, kw, sh, sw, ph, pw = geometry
    if ALGORITHM == "im2col" or (kh, kw, sh, sw) != (3, 3, 1, 1):
        return False
    return ALGORITHM == "winograd" or x_shape[1] >= WINOGRAD_MIN_CHANNELS


def _as4(a, N, O, geometry, x_shape):
    kh, kw, sh, sw, ph, pw = geometry
    return a.reshape(N, O, conv_output_size(x_shape[2], kh, sh, ph), conv_output_size(x_shape[3], kw, sw, pw))


def conv2d_forward(x, w2, geometry, y):
    """y (N, O, L) = conv2d(x, W2) for x (N, C, H, W), W2 (O, K); geometry = (kh, kw, sh, sw, ph, pw)."""
    N, C = x.shape[:2]
    O = w2.shape[0]
    if use_winograd(x.shape, O, geometry):
        winograd.winograd_forward(x, w2.reshape(O, C, 3, 3), geometry[4], geometry[5], _as4(y, N, O, geometry, x.shape))
        return y
    return im2col_forward(x, w2, geometry, y)


def conv2d_backward(x, w2, geometry, dy, want_dw: bool, dx):
    """Returns dW2 (O, K) or None, and fills dx (N, C, H, W) unless it is None; dy is (N, O, L).

    The weight gradient alone is ``conv2d_backward(x, w2, geometry, dy, True, None)`` (see
    :func:`conv2d_weight_grad`).
    """
    N, C = x.shape[:2]
    O = w2.shape[0]
    if not use_winograd(x.shape, O, geometry):
        return im2col_backward(x, w2, geometry, dy, want_dw, dx)
    ph, pw = geometry[4], geometry[5]
    dy4 = _as4(dy, N, O, geometry, x.shape)
    if not want_dw and dx is None:
        return None
    dw = winograd.winograd_backward(x, w2.reshape(O, C, 3, 3), dy4, ph, pw, want_dw, dx)
    return dw.reshape(O, -1) if want_dw else None


def conv2d_weight_grad(x, dy, geometry, out_channels: int):
    """dW2 (O, K) of a convolution for x (N, C, H, W) and dy (N, O, L): the one weight-gradient computation."""
    K = x.shape[1] * geometry[0] * geometry[1]
    return conv2d_backward(x, np.empty((out_channels, K), dtype=dy.dtype), geometry, dy, True, None)
