"""Elementwise kernels (numba, cache=True), run on minicnn's threads.

ReLU: ``y = max(x, 0)``; backward ``dx = dy * [y > 0]`` (the output carries
the mask, so nothing else needs caching). NaN inputs propagate in forward.

Non-zero counts (:func:`count_nonzero`, :func:`fewer_nonzeros_than`): what
the ledger needs for a sparse tensor and what a conv's sparse-path test
needs. NumPy's ``np.count_nonzero`` on a float array goes through the
dtype's generic "is non-zero" function per element (about 3x slower than a
compiled loop, measured in ``docs/measurements/method_overheads_gradprune.md``);
the test only asks whether the count is *below* a bound, so it stops as soon
as the bound is reached (a dense dy is decided after a few percent of it).
Both equal ``np.count_nonzero`` exactly (tests/test_kernels.py).

Each kernel is a plain single-threaded loop over a flat contiguous slice
(``nogil``: it releases the GIL); the public function cuts the array into
one contiguous slice per thread (:func:`minicnn.kernels.threads.run_slices`).
A plain ``range`` index over a slice compiles to SIMD code (an index that
might be negative would keep numba's wraparound check and block that).
Why not ``parallel=True``: the same speed, but a slower first compile of
each kernel (the cold start; ``docs/measurements/timings.md``).
"""
from __future__ import annotations

import numpy as np
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


_COUNT_BLOCK = 16384   # elements counted between two looks at the bound (fewer_nonzeros_than)


@njit(nogil=True, cache=True)
def _count_nonzero(a, limit):
    """Non-zeros of flat a, or ``limit`` as soon as the count reaches it (checked once per block)."""
    c = 0
    n = a.shape[0]
    for start in range(0, n, _COUNT_BLOCK):
        block = a[start:min(start + _COUNT_BLOCK, n)]    # a slice indexed from 0: no negative-index check
        for i in range(block.size):                      # per load (see minicnn.methods._dbtd._abs_sum)
            c += block[i] != 0
        if c >= limit:
            return limit
    return c


def _flat(a):
    return a.reshape(-1) if a.flags.c_contiguous and a.dtype in (np.float32, np.float64) else None


def count_nonzero(a) -> int:
    """``np.count_nonzero(a)`` for any array; a compiled loop for contiguous float32 / float64 ones."""
    flat = _flat(a)
    return int(np.count_nonzero(a)) if flat is None else int(_count_nonzero(flat, flat.size + 1))


def fewer_nonzeros_than(a, limit: int) -> bool:
    """``np.count_nonzero(a) < limit``, stopping the count once it reaches ``limit``."""
    flat = _flat(a)
    if flat is None:
        return int(np.count_nonzero(a)) < limit
    return int(_count_nonzero(flat, max(int(limit), 0))) < limit
