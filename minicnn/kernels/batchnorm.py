"""Batch-normalization kernels on NCHW arrays (numba, cache=True).

For one channel c, over its n = N*H*W values x_k (k runs over n, h, w)::

    mu     = (1/n) sum_k x_k
    var    = (1/n) sum_k (x_k - mu)^2                 (biased: what normalizes)
    xhat_k = (x_k - mu) * inv_std,   inv_std = 1/sqrt(var + eps)
    y_k    = gamma * xhat_k + beta

Statistics are accumulated in float64 around a shift (the channel's first
value), which keeps the one-pass variance accurate when |mu| >> std.

Backward reductions (per channel)::

    dbeta  = sum_k dy_k
    dgamma = sum_k dy_k * xhat_k  = inv_std * sum_k dy_k (x_k - mu)

and the input gradient is an affine map of (dy, x) per channel, so one pass
``dx = A*dy + B*(x - mu) + C`` applies it (A, B, C computed by the layer, see
``minicnn.layers.batchnorm``). First call per dtype compiles.

Threads: each kernel is a single-threaded, GIL-free loop over a range of
channels (the reductions) or of the N*C image planes (the elementwise
passes); the public function gives each thread one contiguous range
(:func:`minicnn.kernels.threads.run_slices`). Ranges never share an output
entry, so there are no races, and each channel's sum runs in the same order
whatever the thread count. (numba's ``parallel=True`` ran as fast but
compiled more slowly: the cold start, ``docs/measurements/timings.md``.)
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .threads import run_slices


# float64 accumulators with reassociation allowed (fastmath 'reassoc'), so the
# sums vectorize; the order of a float64 sum of float32 values hardly matters.
_REDUCE = {"reassoc", "contract"}


def channel_mean_var(x):
    """Per-channel mean and biased variance of x (N,C,H,W), as float64 arrays (C,)."""
    C = x.shape[1]
    mean = np.empty(C, dtype=np.float64)
    var = np.empty(C, dtype=np.float64)
    run_slices(lambda k, c0, c1: _channel_mean_var(x, c0, c1, mean, var), C)
    return mean, var


@njit(nogil=True, cache=True, fastmath=_REDUCE)
def _channel_mean_var(x, c0, c1, mean, var):
    """mean[c], var[c] for the channels c0 <= c < c1."""
    N, C, H, W = x.shape
    HW = H * W
    n = N * HW
    for c in range(c0, c1):
        shift = np.float64(x[0, c, 0, 0])
        s = 0.0
        s2 = 0.0
        for b in range(N):
            plane = x[b, c].reshape(HW)
            for k in range(HW):
                d = np.float64(plane[k]) - shift
                s += d
                s2 += d * d
        m = s / n
        mean[c] = shift + m
        v = s2 / n - m * m
        var[c] = v if v > 0.0 else 0.0


def channel_affine(x, scale, shift, y):
    """y[n,c] = x[n,c] * scale[c] + shift[c] (the normalization, folded)."""
    run_slices(lambda k, p0, p1: _channel_affine(x, scale, shift, y, p0, p1), x.shape[0] * x.shape[1])
    return y


@njit(nogil=True, cache=True)
def _channel_affine(x, scale, shift, y, p0, p1):
    """channel_affine on the image planes p0 <= p < p1 (plane p = sample p // C, channel p % C)."""
    N, C, H, W = x.shape
    for p in range(p0, p1):
        b, c = p // C, p % C
        a = scale[c]
        t = shift[c]
        src = x[b, c]
        dst = y[b, c]
        for h in range(H):
            for w in range(W):
                dst[h, w] = src[h, w] * a + t


def channel_grad_sums(dy, x, mean):
    """Per channel: sum_k dy_k and sum_k dy_k * (x_k - mean[c]), float64 arrays (C,)."""
    C = x.shape[1]
    sdy = np.empty(C, dtype=np.float64)
    sdyx = np.empty(C, dtype=np.float64)
    run_slices(lambda k, c0, c1: _channel_grad_sums(dy, x, mean, sdy, sdyx, c0, c1), C)
    return sdy, sdyx


@njit(nogil=True, cache=True, fastmath=_REDUCE)
def _channel_grad_sums(dy, x, mean, sdy, sdyx, c0, c1):
    """sdy[c], sdyx[c] for the channels c0 <= c < c1."""
    N, C, H, W = x.shape
    HW = H * W
    for c in range(c0, c1):
        m = mean[c]
        s = 0.0
        s2 = 0.0
        for b in range(N):
            g = dy[b, c].reshape(HW)
            v = x[b, c].reshape(HW)
            for k in range(HW):
                gv = np.float64(g[k])
                s += gv
                s2 += gv * (np.float64(v[k]) - m)
        sdy[c] = s
        sdyx[c] = s2


def channel_affine2(dy, x, mean, a, b, c0, dx):
    """dx[n,c] = a[c]*dy[n,c] + b[c]*(x[n,c] - mean[c]) + c0[c] (BN's input gradient, folded).

    Centering x before scaling avoids the cancellation of ``b*x - b*mean`` when |mean| >> std.
    """
    run_slices(lambda k, p0, p1: _channel_affine2(dy, x, mean, a, b, c0, dx, p0, p1), x.shape[0] * x.shape[1])
    return dx


@njit(nogil=True, cache=True)
def _channel_affine2(dy, x, mean, a, b, c0, dx, p0, p1):
    """channel_affine2 on the image planes p0 <= p < p1."""
    N, C, H, W = x.shape
    for p in range(p0, p1):
        n, c = p // C, p % C
        ac = a[c]
        bc = b[c]
        cc = c0[c]
        mc = mean[c]
        g = dy[n, c]
        v = x[n, c]
        d = dx[n, c]
        for h in range(H):
            for w in range(W):
                d[h, w] = ac * g[h, w] + bc * (v[h, w] - mc) + cc
