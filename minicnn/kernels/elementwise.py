"""Elementwise kernels (numba, cache=True), run on minicnn's threads.

ReLU: ``y = max(x, 0)``; backward ``dx = dy * [y > 0]`` (the output carries
the mask, so nothing else needs caching). NaN inputs propagate in forward.

Each kernel is a plain single-threaded loop over a flat contiguous slice
(``nogil``: it releases the GIL); the public function cuts the array into
one contiguous slice per thread (:func:`minicnn.kernels.threads.run_slices`).
A plain ``range`` index over a slice compiles to SIMD code (an index that
might be negative would keep numba's wraparound check and block that).
Why not ``parallel=True``: the same speed, but a slower first compile of
each kernel (the cold start; ``docs/measurements/timings.md``).
"""
from __future__ import annotations

from numba import njit

from .threads import run_slices


@njit(nogil=True, cache=True)
def _relu_forward(x, y):
    for i in range(x.shape[0]):
        v = x[i]
        y[i] = 0 if v <= 0 else v


@njit(nogil=True, cache=True)
def _relu_backward(y, dy, dx):
    for i in range(y.shape[0]):
        dx[i] = dy[i] if y[i] > 0 else 0


def relu_forward(x, y):
    """y = x where x > 0 (or NaN), else 0; x and y are flat contiguous arrays."""
    run_slices(lambda k, s, e: _relu_forward(x[s:e], y[s:e]), x.size)
    return y


def relu_backward(y, dy, dx):
    """dx = dy where y > 0, else 0 (flat contiguous arrays)."""
    run_slices(lambda k, s, e: _relu_backward(y[s:e], dy[s:e], dx[s:e]), y.size)
    return dx
