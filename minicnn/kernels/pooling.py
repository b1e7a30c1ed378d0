"""Pooling kernels (numba, cache=True), each thread on its own range of the N*C image planes.

Windows have no padding::

    h_in = h_out * stride_h + i,   w_in = w_out * stride_w + j,   0 <= i < kh, 0 <= j < kw
    H_out = (H - kh) // stride_h + 1

Max pooling records, for every output, the flat index ``h_in*W + w_in`` of the
maximum inside its plane; ties go to the *first* maximum in row-major window
order (strict ``>``), as PyTorch's argmax does. A NaN wins (it propagates).
Backward adds each ``dy`` into ``dx`` at that index, so overlapping windows
accumulate. Planes are independent, so the threads have no races: each
kernel is a single-threaded, GIL-free loop over planes ``p0 <= p < p1``
(plane ``p`` is sample ``p // C``, channel ``p % C``), and the public
function gives each thread one range (:func:`minicnn.kernels.threads.run_slices`).

The first call for each dtype compiles (seconds); later runs use the cache.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .threads import run_slices


def _planes(a) -> int:
    return a.shape[0] * a.shape[1]


@njit(cache=True, inline="always")
def _beats(v, best):
    """Strict '>' (the first max in row-major window order wins), and a NaN wins (over a number, not over an
    earlier NaN). Bitwise ``|`` and ``&``, not ``or`` / ``and``: the short-circuit made a branch per entry and
    kept the 2x2 loop from vectorizing (11.6 -> 4.2 ms for 128 x 32 planes of 32 x 32 on one thread, 2026-12-07)."""
    return (v > best) | ((v != v) & (best == best))


def maxpool2d_forward(x, kh, kw, sh, sw, y, argmax):
    """y[n,c,ho,wo] = max over the window; argmax[...] = flat index h_in*W + w_in.

    The common 2x2 stride-2 case has its own unrolled, branch-free loop (20x
    faster than the general one, whose short runtime-length window loops
    mispredict; the note above ``_maxpool2d_forward`` says why branch-free).
    """
    x = np.ascontiguousarray(x)         # the 2x2 loop reads each plane flat
    run_slices(lambda k, p0, p1: _maxpool2d_forward(x, kh, kw, sh, sw, y, argmax, p0, p1), _planes(x))
    return y


# Why the 2x2 loop has no ``if`` on the data (measured 2026-12-08, AMD EPYC, one thread, post-ReLU random
# planes): written as ``if _beats(v, best): best = v; idx = ...`` it ran at 1 ns per input where LLVM
# vectorized it (an Intel Xeon, 2026-12-07) and at 4 ns where it did not (the AMD machine, which LLVM
# targets as znver3): there every comparison was a branch, mispredicted on random data (0.8 ns per input
# on all-zero or sorted planes, the same code). The comparisons as 0/1 integers and the values read
# back at the winning index compile without branches on any target: 1.3-1.4 ns per input on every alexnet-ye
# shape there (34x34, 19x19, 9x9: 2.6-2.9x faster), bit-identical values and indices.
@njit(nogil=True, cache=True)
def _maxpool2d_forward(x, kh, kw, sh, sw, y, argmax, p0, p1):
    N, C, H, W = x.shape
    Ho, Wo = y.shape[2], y.shape[3]
    fast = kh == 2 and kw == 2 and sh == 2 and sw == 2
    for p in range(p0, p1):
        n, c = p // C, p % C
        plane = x[n, c]
        flat = plane.reshape(H * W)          # the plane, flat (x is C-contiguous)
        for ho in range(Ho):
            yrow = y[n, c, ho]
            arow = argmax[n, c, ho]
            h0 = ho * sh
            if fast:
                # the window's four entries b0 b1 / b2 b3 (flat indices i0, i0 + 1 / i0 + W, i0 + W + 1): each
                # row's winner first (strict '>': the left one wins a tie), then row 1's only if it beats row 0's,
                # which is the first maximum in row-major order. Branch-free: the comparisons become 0/1 offsets
                # and the values are read back at them, no 'if' on the data (the note above)
                for wo in range(Wo):
                    i0 = h0 * W + 2 * wo
                    ta = np.int64(_beats(flat[i0 + 1], flat[i0]))               # 1: row 0's right entry wins
                    tb = np.int64(_beats(flat[i0 + W + 1], flat[i0 + W]))       # 1: row 1's right entry wins
                    tr = np.int64(_beats(flat[i0 + W + tb], flat[i0 + ta]))     # 1: row 1's winner wins
                    k = i0 + ta + tr * (W + tb - ta)                            # the winner's flat index
                    arow[wo] = k
                    yrow[wo] = flat[k]
            else:
                for wo in range(Wo):
                    w0 = wo * sw
                    best = plane[h0, w0]
                    idx = h0 * W + w0
                    for i in range(kh):
                        row = plane[h0 + i]
                        for j in range(kw):
                            v = row[w0 + j]
                            if _beats(v, best):
                                best = v
                                idx = (h0 + i) * W + w0 + j
                    yrow[wo] = best
                    arow[wo] = idx


def maxpool2d_backward(dy, argmax, dx):
    """Overwrite dx (N,C,H,W, C-contiguous) with zeros, then dx.flat_plane[argmax] += dy."""
    if not dx.flags.c_contiguous:
        raise ValueError("maxpool2d_backward: dx must be C-contiguous (its planes are indexed flat)")
    run_slices(lambda k, p0, p1: _maxpool2d_backward(dy, argmax, dx, p0, p1), _planes(dx))
    return dx


@njit(nogil=True, cache=True)
def _maxpool2d_backward(dy, argmax, dx, p0, p1):
    N, C, H, W = dx.shape
    Ho, Wo = dy.shape[2], dy.shape[3]
    for p in range(p0, p1):
        n, c = p // C, p % C
        plane = dx[n, c].reshape(H * W)     # the plane, flat (dx is C-contiguous): argmax holds flat indices,
        plane[:] = 0                        # so no division per entry (2x faster than plane[idx // W, idx % W])
        g = dy[n, c]
        a = argmax[n, c]
        for ho in range(Ho):
            for wo in range(Wo):
                plane[a[ho, wo]] += g[ho, wo]


def avgpool2d_forward(x, kh, kw, sh, sw, y):
    """y[n,c,ho,wo] = (1/(kh*kw)) * sum of the window."""
    run_slices(lambda k, p0, p1: _avgpool2d_forward(x, kh, kw, sh, sw, y, p0, p1), _planes(x))
    return y


@njit(nogil=True, cache=True)
def _avgpool2d_forward(x, kh, kw, sh, sw, y, p0, p1):
    N, C, H, W = x.shape
    Ho, Wo = y.shape[2], y.shape[3]
    inv = 1.0 / (kh * kw)
    for p in range(p0, p1):
        n, c = p // C, p % C
        plane = x[n, c]
        for ho in range(Ho):
            for wo in range(Wo):
                h0, w0 = ho * sh, wo * sw
                acc = 0.0
                for i in range(kh):
                    for j in range(kw):
                        acc += plane[h0 + i, w0 + j]
                y[n, c, ho, wo] = acc * inv


def avgpool2d_backward(dy, kh, kw, sh, sw, dx):
    """Overwrite dx with zeros, then spread dy/(kh*kw) over each window (overlaps add)."""
    run_slices(lambda k, p0, p1: _avgpool2d_backward(dy, kh, kw, sh, sw, dx, p0, p1), _planes(dx))
    return dx


@njit(nogil=True, cache=True)
def _avgpool2d_backward(dy, kh, kw, sh, sw, dx, p0, p1):
    N, C, H, W = dx.shape
    Ho, Wo = dy.shape[2], dy.shape[3]
    inv = 1.0 / (kh * kw)
    for p in range(p0, p1):
        n, c = p // C, p % C
        plane = dx[n, c]
        plane[:, :] = 0
        for ho in range(Ho):
            for wo in range(Wo):
                g = dy[n, c, ho, wo] * inv
                h0, w0 = ho * sh, wo * sw
                for i in range(kh):
                    for j in range(kw):
                        plane[h0 + i, w0 + j] += g
