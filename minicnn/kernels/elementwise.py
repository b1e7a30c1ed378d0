"""Elementwise kernels (numba, parallel over flat chunks, cache=True).

ReLU: ``y = max(x, 0)``; backward ``dx = dy * [y > 0]`` (the output carries
the mask, so nothing else needs caching). NaN inputs propagate in forward.
"""
from __future__ import annotations

from numba import njit, prange

_CHUNK = 16384  # elements per parallel task


@njit(parallel=True, cache=True)
def relu_forward(x, y):
    """y = x where x > 0 (or NaN), else 0; x and y are flat contiguous arrays."""
    n = x.size
    nchunks = (n + _CHUNK - 1) // _CHUNK
    for k in prange(nchunks):
        lo = k * _CHUNK
        hi = min(lo + _CHUNK, n)
        for i in range(lo, hi):
            v = x[i]
            y[i] = 0 if v <= 0 else v
    return y


@njit(parallel=True, cache=True)
def relu_backward(y, dy, dx):
    """dx = dy where y > 0, else 0 (flat contiguous arrays)."""
    n = y.size
    nchunks = (n + _CHUNK - 1) // _CHUNK
    for k in prange(nchunks):
        lo = k * _CHUNK
        hi = min(lo + _CHUNK, n)
        for i in range(lo, hi):
            dx[i] = dy[i] if y[i] > 0 else 0
    return dx
