"""Convolution drivers: im2col + GEMM on cache-sized chunks of the batch, on all threads.

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

import numpy as np

from . import gemm
from .im2col import col2im_nogil, im2col_nogil

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


def conv2d_forward(x, w2, geometry, y):
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


def conv2d_backward(x, w2, geometry, dy, want_dw: bool, dx):
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
