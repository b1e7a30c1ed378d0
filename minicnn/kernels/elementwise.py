"""Elementwise kernels (numba, parallel over flat chunks, cache=True).

ReLU: ``y = max(x, 0)``; backward ``dx = dy * [y > 0]`` (the output carries
the mask, so nothing else needs caching). NaN inputs propagate in forward.

Each parallel task takes a contiguous chunk as a view and loops over it with
a plain ``range`` index, which numba/LLVM turn into SIMD code (an index that
might be negative would keep numba's wraparound check and block that).
"""
from __future__ import annotations

from numba import njit, prange

_CHUNK = 32768  # elements per parallel task


@njit(parallel=True, cache=True)
def relu_forward(x, y):
    """y = x where x > 0 (or NaN), else 0; x and y are flat contiguous arrays."""
    n = x.size
    nchunks = (n + _CHUNK - 1) // _CHUNK
    for k in prange(nchunks):
        lo = k * _CHUNK
        hi = min(lo + _CHUNK, n)
        xs = x[lo:hi]
        ys = y[lo:hi]
        for i in range(hi - lo):
            v = xs[i]
            ys[i] = 0 if v <= 0 else v
    return y


@njit(parallel=True, cache=True)
def relu_backward(y, dy, dx):
    """dx = dy where y > 0, else 0 (flat contiguous arrays)."""
    n = y.size
    nchunks = (n + _CHUNK - 1) // _CHUNK
    for k in prange(nchunks):
        lo = k * _CHUNK
        hi = min(lo + _CHUNK, n)
        ys = y[lo:hi]
        gs = dy[lo:hi]
        ds = dx[lo:hi]
        for i in range(hi - lo):
            ds[i] = gs[i] if ys[i] > 0 else 0
    return dx
