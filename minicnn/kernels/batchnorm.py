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
``minicnn.layers.batchnorm``). Reductions are parallel over channels, the
elementwise passes over the N*C planes. First call per dtype compiles.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange


# float64 accumulators with reassociation allowed (fastmath 'reassoc'), so the
# sums vectorize; the order of a float64 sum of float32 values hardly matters.
_REDUCE = {"reassoc", "contract"}


@njit(parallel=True, cache=True, fastmath=_REDUCE)
def channel_mean_var(x):
    """Per-channel mean and biased variance of x (N,C,H,W), as float64 arrays (C,)."""
    N, C, H, W = x.shape
    HW = H * W
    mean = np.empty(C, dtype=np.float64)
    var = np.empty(C, dtype=np.float64)
    n = N * HW
    for c in prange(C):
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
    return mean, var


@njit(parallel=True, cache=True)
def channel_affine(x, scale, shift, y):
    """y[n,c] = x[n,c] * scale[c] + shift[c] (the normalization, folded)."""
    N, C, H, W = x.shape
    for p in prange(N * C):
        b, c = p // C, p % C
        a = scale[c]
        t = shift[c]
        src = x[b, c]
        dst = y[b, c]
        for h in range(H):
            for w in range(W):
                dst[h, w] = src[h, w] * a + t
    return y


@njit(parallel=True, cache=True, fastmath=_REDUCE)
def channel_grad_sums(dy, x, mean):
    """Per channel: sum_k dy_k and sum_k dy_k * (x_k - mean[c]), float64 arrays (C,)."""
    N, C, H, W = x.shape
    HW = H * W
    sdy = np.empty(C, dtype=np.float64)
    sdyx = np.empty(C, dtype=np.float64)
    for c in prange(C):
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
    return sdy, sdyx


@njit(parallel=True, cache=True)
def channel_affine2(dy, x, mean, a, b, c0, dx):
    """dx[n,c] = a[c]*dy[n,c] + b[c]*(x[n,c] - mean[c]) + c0[c] (BN's input gradient, folded).

    Centering x before scaling avoids the cancellation of ``b*x - b*mean`` when |mean| >> std.
    """
    N, C, H, W = x.shape
    for p in prange(N * C):
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
    return dx
