"""Pooling kernels (numba, parallel over the N*C image planes, cache=True).

Windows have no padding::

    h_in = h_out * stride_h + i,   w_in = w_out * stride_w + j,   0 <= i < kh, 0 <= j < kw
    H_out = (H - kh) // stride_h + 1

Max pooling records, for every output, the flat index ``h_in*W + w_in`` of the
maximum inside its plane; ties go to the *first* maximum in row-major window
order (strict ``>``), as PyTorch's argmax does. A NaN wins (it propagates).
Backward adds each ``dy`` into ``dx`` at that index, so overlapping windows
accumulate. Planes are independent, so the parallel loops have no races.

The first call for each dtype compiles (seconds); later runs use the cache.
"""
from __future__ import annotations

from numba import njit, prange


@njit(parallel=True, cache=True)
def maxpool2d_forward(x, kh, kw, sh, sw, y, argmax):
    """y[n,c,ho,wo] = max over the window; argmax[...] = flat index h_in*W + w_in."""
    N, C, H, W = x.shape
    Ho, Wo = y.shape[2], y.shape[3]
    for p in prange(N * C):
        n, c = p // C, p % C
        plane = x[n, c]
        for ho in range(Ho):
            for wo in range(Wo):
                h0, w0 = ho * sh, wo * sw
                best = plane[h0, w0]
                best_idx = h0 * W + w0
                for i in range(kh):
                    for j in range(kw):
                        v = plane[h0 + i, w0 + j]
                        if v > best or (v != v and best == best):  # strict: first max wins; NaN wins
                            best = v
                            best_idx = (h0 + i) * W + (w0 + j)
                y[n, c, ho, wo] = best
                argmax[n, c, ho, wo] = best_idx
    return y


@njit(parallel=True, cache=True)
def maxpool2d_backward(dy, argmax, dx):
    """Overwrite dx (N,C,H,W) with zeros, then dx.flat_plane[argmax] += dy."""
    N, C, H, W = dx.shape
    Ho, Wo = dy.shape[2], dy.shape[3]
    for p in prange(N * C):
        n, c = p // C, p % C
        plane = dx[n, c]
        plane[:, :] = 0
        for ho in range(Ho):
            for wo in range(Wo):
                idx = argmax[n, c, ho, wo]
                plane[idx // W, idx % W] += dy[n, c, ho, wo]
    return dx


@njit(parallel=True, cache=True)
def avgpool2d_forward(x, kh, kw, sh, sw, y):
    """y[n,c,ho,wo] = (1/(kh*kw)) * sum of the window."""
    N, C, H, W = x.shape
    Ho, Wo = y.shape[2], y.shape[3]
    inv = 1.0 / (kh * kw)
    for p in prange(N * C):
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
    return y


@njit(parallel=True, cache=True)
def avgpool2d_backward(dy, kh, kw, sh, sw, dx):
    """Overwrite dx with zeros, then spread dy/(kh*kw) over each window (overlaps add)."""
    N, C, H, W = dx.shape
    Ho, Wo = dy.shape[2], dy.shape[3]
    inv = 1.0 / (kh * kw)
    for p in prange(N * C):
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
    return dx
