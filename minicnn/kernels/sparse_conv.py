"""Conv2d backward for a sparse output gradient: work only where dy != 0 (Ye et al. §3.1, Fig. 1).

Both backward convolutions of a layer read the output gradient ``dy``
(Ye et al.'s g_{A_O}): weight-gradient computation (WGC) and activation-
gradient back-propagation (AGB). Every non-zero ``g = dy[n, o, ho, wo]``
contributes, over the kernel window it came from (``h = ho*sh - ph + i``,
``w = wo*sw - pw + j``, inside the image)::

    dW[o, :, i, j]   += g * x[n, :, h, w]          (WGC)
    dx[n, :, h, w]   += g * W[o, :, i, j]          (AGB)

so both cost ``nnz(dy) * C_in * kh * kw`` MACs (fewer at the padded
border) instead of the dense ``N * C_out * H_out * W_out * C_in * kh * kw``.
A zero entry costs one compare. This is a gather/scatter per non-zero, not a
GEMM: it runs at a small fraction of the dense BLAS path's MAC rate, so it
only pays at low density. ``benchmarks/bench_sparse_conv.py`` measures where;
:func:`sparse_crossover` holds the result for this project's machine.

Layout: the channel axis is made innermost (x and W transposed once to
``(N, H, W, C)`` and ``(O, kh, kw, C)``), so the inner loop of both
updates is a contiguous length-C axpy that numba vectorizes.
Parallelism: dW over output channels (each thread owns dW[o]), dx over
samples (each thread owns dx[n]); no races, and the summation order does
not depend on the thread count. Accumulation is in the arrays' dtype; the
sum order differs from the dense GEMM path, so the two agree to rounding
(tests/test_sparse_conv.py), not bit for bit.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

#: (C_in at most, density below which the sparse path was faster) -- see :func:`sparse_crossover`
CROSSOVER = ((4, 0.0), (16, 0.02), (32, 0.05), (64, 0.1), (192, 0.2), (10**9, 0.3))


def sparse_crossover(in_channels: int) -> float:
    """Density of dy below which the sparse backward beat the dense one, by the conv's input channels.

    The sparse kernel's inner loop is a length-C_in axpy, so its speed grows
    with C_in; the dense GEMM's does much less. Measured with
    ``benchmarks/bench_sparse_conv.py`` (batch 64, float32, the 3x3 convs of
    resnet20 and alexnet-ye, 1 and 2 threads, on this project's 2-core
    machine while other jobs ran; rounded *down* to the measured grid
    0.005 / 0.01 / 0.02 / 0.05 / 0.1 / 0.2 / 0.35 / 0.5)::

        C_in    3      16     32          64          192    256-384
        cross   never  0.02   0.05-0.1    0.1-0.35    0.2    0.35-0.5

    A rule of thumb for one machine, not a law: re-run the benchmark elsewhere.
    With 3 input channels (a first conv) the sparse path never paid.
    """
    for c_max, density in CROSSOVER:
        if in_channels <= c_max:
            return density
    return CROSSOVER[-1][1]


@njit(cache=True, inline="always")
def _window(o, stride, pad, k, size):
    """Output position o reads inputs o*stride - pad + t for kernel taps t; returns (o*stride - pad, t_lo, t_hi)
    with t_lo <= t < t_hi the taps that land inside [0, size) (the rest read zero padding)."""
    start = o * stride - pad
    return start, max(0, -start), min(k, size - start)


@njit(parallel=True, cache=True)
def _sparse_dw(xt, dy, kh, kw, sh, sw, ph, pw, dwt):
    """dwt (O, kh, kw, C) = WGC from xt (N, H, W, C) and dy (N, O, Ho, Wo), skipping zeros of dy."""
    N, H, W, C = xt.shape
    O, Ho, Wo = dy.shape[1], dy.shape[2], dy.shape[3]
    for o in prange(O):
        acc = dwt[o]
        acc[...] = 0
        for n in range(N):
            for ho in range(Ho):
                h0, i_lo, i_hi = _window(ho, sh, ph, kh, H)
                for wo in range(Wo):
                    g = dy[n, o, ho, wo]
                    if g == 0:
                        continue
                    w0, j_lo, j_hi = _window(wo, sw, pw, kw, W)
                    for i in range(i_lo, i_hi):
                        for j in range(j_lo, j_hi):
                            row = xt[n, h0 + i, w0 + j]
                            out = acc[i, j]
                            for c in range(C):
                                out[c] += g * row[c]
    return dwt


@njit(parallel=True, cache=True)
def _sparse_dx(wt, dy, sh, sw, ph, pw, dxt):
    """dxt (N, H, W, C) = AGB from wt (O, kh, kw, C) and dy (N, O, Ho, Wo), skipping zeros of dy."""
    N, H, W, C = dxt.shape
    O, kh, kw = wt.shape[0], wt.shape[1], wt.shape[2]
    Ho, Wo = dy.shape[2], dy.shape[3]
    for n in prange(N):
        acc = dxt[n]
        acc[...] = 0
        for o in range(O):
            for ho in range(Ho):
                h0, i_lo, i_hi = _window(ho, sh, ph, kh, H)
                for wo in range(Wo):
                    g = dy[n, o, ho, wo]
                    if g == 0:
                        continue
                    w0, j_lo, j_hi = _window(wo, sw, pw, kw, W)
                    for i in range(i_lo, i_hi):
                        for j in range(j_lo, j_hi):
                            row = wt[o, i, j]
                            out = acc[h0 + i, w0 + j]
                            for c in range(C):
                                out[c] += g * row[c]
    return dxt


def sparse_conv2d_backward(x, w, dy, stride, padding, want_dw=True, want_dx=True):
    """(dW or None, dx or None) of a Conv2d for output gradient dy, touching only dy's non-zeros.

    x (N, C, H, W), w (O, C, kh, kw), dy (N, O, Ho, Wo); stride, padding: (h, w) pairs.
    """
    (sh, sw), (ph, pw) = stride, padding
    kh, kw = w.shape[2], w.shape[3]
    dy = np.ascontiguousarray(dy)
    dw = dx = None
    if want_dw:
        xt = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        dwt = np.empty((w.shape[0], kh, kw, w.shape[1]), dtype=dy.dtype)
        _sparse_dw(xt, dy, kh, kw, sh, sw, ph, pw, dwt)
        dw = np.ascontiguousarray(dwt.transpose(0, 3, 1, 2))
    if want_dx:
        wt = np.ascontiguousarray(w.transpose(0, 2, 3, 1))
        dxt = np.empty((x.shape[0], x.shape[2], x.shape[3], x.shape[1]), dtype=dy.dtype)
        _sparse_dx(wt, dy, sh, sw, ph, pw, dxt)
        dx = np.ascontiguousarray(dxt.transpose(0, 3, 1, 2))
    return dw, dx
