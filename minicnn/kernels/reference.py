"""Naive reference implementations: plain loops, obviously correct, slow.

These are the definitions the fast kernels are tested against (and what the
lessons show first). Every function works on float64 or float32 arrays in
NCHW layout and follows PyTorch's conventions. The index arithmetic is the
one of :mod:`minicnn.kernels.im2col`::

    h_in = h_out * stride_h - pad_h + i
    w_in = w_out * stride_w - pad_w + j

Use small shapes: these loops run in the Python interpreter.
"""
from __future__ import annotations

import numpy as np


def _pair(v):
    return (v, v) if np.isscalar(v) else tuple(v)


# -- convolution ----------------------------------------------------------------
def conv2d_forward_naive(x, w, b=None, stride=1, padding=0):
    """y[n,o,ho,wo] = b[o] + sum_{c,i,j} w[o,c,i,j] * x_pad[n,c,h_in,w_in] (cross-correlation)."""
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    N, C, H, W = x.shape
    O, _, kh, kw = w.shape
    Ho = (H + 2 * ph - kh) // sh + 1
    Wo = (W + 2 * pw - kw) // sw + 1
    y = np.zeros((N, O, Ho, Wo), dtype=x.dtype)
    for n in range(N):
        for o in range(O):
            for ho in range(Ho):
                for wo in range(Wo):
                    acc = 0.0 if b is None else float(b[o])
                    for c in range(C):
                        for i in range(kh):
                            h_in = ho * sh - ph + i
                            if not 0 <= h_in < H:
                                continue  # zero padding
                            for j in range(kw):
                                w_in = wo * sw - pw + j
                                if 0 <= w_in < W:
                                    acc += w[o, c, i, j] * x[n, c, h_in, w_in]
                    y[n, o, ho, wo] = acc
    return y


def conv2d_backward_naive(x, w, dy, stride=1, padding=0):
    """Gradients of L with dL/dy = dy: returns (dx, dw, db).

    Each forward term ``w[o,c,i,j] * x[n,c,h_in,w_in]`` contributes
    ``dy[n,o,ho,wo] * x[...]`` to dw and ``dy[n,o,ho,wo] * w[...]`` to dx;
    db[o] = sum_{n,ho,wo} dy[n,o,ho,wo].
    """
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    N, C, H, W = x.shape
    O, _, kh, kw = w.shape
    _, _, Ho, Wo = dy.shape
    dx = np.zeros_like(x)
    dw = np.zeros_like(w)
    db = np.zeros(O, dtype=dy.dtype)
    for n in range(N):
        for o in range(O):
            for ho in range(Ho):
                for wo in range(Wo):
                    g = dy[n, o, ho, wo]
                    db[o] += g
                    for c in range(C):
                        for i in range(kh):
                            h_in = ho * sh - ph + i
                            if not 0 <= h_in < H:
                                continue
                            for j in range(kw):
                                w_in = wo * sw - pw + j
                                if 0 <= w_in < W:
                                    dw[o, c, i, j] += g * x[n, c, h_in, w_in]
                                    dx[n, c, h_in, w_in] += g * w[o, c, i, j]
    return dx, dw, db


def im2col_naive(x, kh, kw, stride=1, padding=0):
    """cols[n, (c*kh+i)*kw+j, ho*Wo+wo] = x_pad[n, c, h_in, w_in] (the layout of im2col.py)."""
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    N, C, H, W = x.shape
    Ho = (H + 2 * ph - kh) // sh + 1
    Wo = (W + 2 * pw - kw) // sw + 1
    cols = np.zeros((N, C * kh * kw, Ho * Wo), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(kh):
                for j in range(kw):
                    for ho in range(Ho):
                        for wo in range(Wo):
                            h_in, w_in = ho * sh - ph + i, wo * sw - pw + j
                            if 0 <= h_in < H and 0 <= w_in < W:
                                cols[n, (c * kh + i) * kw + j, ho * Wo + wo] = x[n, c, h_in, w_in]
    return cols


# -- pooling --------------------------------------------------------------------
def maxpool2d_forward_naive(x, kernel_size, stride=None):
    """y = max over each window; also returns the argmax (flat index h*W+w into the plane).

    Ties go to the first maximum in row-major window order (PyTorch's choice); a NaN beats a number and
    not an earlier NaN (it propagates), the rule of the fast kernels (``pooling._beats``).
    """
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(kernel_size if stride is None else stride)
    N, C, H, W = x.shape
    Ho, Wo = (H - kh) // sh + 1, (W - kw) // sw + 1
    y = np.empty((N, C, Ho, Wo), dtype=x.dtype)
    arg = np.empty((N, C, Ho, Wo), dtype=np.int64)
    for n in range(N):
        for c in range(C):
            for ho in range(Ho):
                for wo in range(Wo):
                    best, best_idx = -np.inf, -1
                    for i in range(kh):
                        for j in range(kw):
                            h_in, w_in = ho * sh + i, wo * sw + j
                            v = x[n, c, h_in, w_in]
                            nan_wins = np.isnan(v) and not np.isnan(best)
                            if v > best or nan_wins or best_idx < 0:  # strict '>': first max wins
                                best, best_idx = v, h_in * W + w_in
                    y[n, c, ho, wo] = best
                    arg[n, c, ho, wo] = best_idx
    return y, arg


def maxpool2d_backward_naive(x, dy, kernel_size, stride=None):
    """dx: each dy routed to the (first) argmax of its window; overlapping windows add."""
    _, arg = maxpool2d_forward_naive(x, kernel_size, stride)
    N, C, H, W = x.shape
    dx = np.zeros_like(x)
    for n in range(N):
        for c in range(C):
            for ho in range(dy.shape[2]):
                for wo in range(dy.shape[3]):
                    idx = arg[n, c, ho, wo]
                    dx[n, c, idx // W, idx % W] += dy[n, c, ho, wo]
    return dx


def avgpool2d_forward_naive(x, kernel_size, stride=None):
    """y = mean over each kh x kw window (no padding)."""
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(kernel_size if stride is None else stride)
    N, C, H, W = x.shape
    Ho, Wo = (H - kh) // sh + 1, (W - kw) // sw + 1
    y = np.empty((N, C, Ho, Wo), dtype=x.dtype)
    for ho in range(Ho):
        for wo in range(Wo):
            y[:, :, ho, wo] = x[:, :, ho * sh:ho * sh + kh, wo * sw:wo * sw + kw].mean(axis=(2, 3))
    return y


def avgpool2d_backward_naive(x_shape, dy, kernel_size, stride=None):
    """dx: each dy spread evenly, dy/(kh*kw), over its window; overlapping windows add."""
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(kernel_size if stride is None else stride)
    dx = np.zeros(x_shape, dtype=dy.dtype)
    for ho in range(dy.shape[2]):
        for wo in range(dy.shape[3]):
            dx[:, :, ho * sh:ho * sh + kh, wo * sw:wo * sw + kw] += dy[:, :, ho:ho + 1, wo:wo + 1] / (kh * kw)
    return dx


# -- batch normalization -----------------------------------------------------------
def batchnorm2d_forward_naive(x, gamma, beta, eps=1e-5):
    """Training-mode BN over (N, H, W) per channel: returns (y, mean, biased var)."""
    N, C, H, W = x.shape
    y = np.empty_like(x)
    mean = np.empty(C, dtype=x.dtype)
    var = np.empty(C, dtype=x.dtype)
    for c in range(C):
        v = x[:, c].ravel()
        m = sum(float(t) for t in v) / v.size
        s2 = sum((float(t) - m) ** 2 for t in v) / v.size  # biased variance
        mean[c], var[c] = m, s2
        y[:, c] = gamma[c] * (x[:, c] - m) / np.sqrt(s2 + eps) + beta[c]
    return y, mean, var


def batchnorm2d_backward_naive(x, gamma, dy, eps=1e-5):
    """Training-mode BN backward by the chain rule through mean and variance, term by term.

    With xhat = (x - mu) / sqrt(var + eps), y = gamma * xhat + beta, over the n = N*H*W
    values of one channel::

        dxhat = dy * gamma
        dvar  = sum(dxhat * (x - mu)) * -1/2 * (var + eps)^(-3/2)
        dmu   = -sum(dxhat) / sqrt(var + eps) + dvar * (-2/n) * sum(x - mu)
        dx    = dxhat / sqrt(var + eps) + dvar * 2 (x - mu) / n + dmu / n

    (the long-hand form; the layer uses the compact equivalent). Returns (dx, dgamma, dbeta).
    """
    N, C, H, W = x.shape
    n = N * H * W
    dx = np.empty_like(x)
    dgamma = np.empty(C, dtype=x.dtype)
    dbeta = np.empty(C, dtype=x.dtype)
    for c in range(C):
        xc, g = x[:, c], dy[:, c]
        mu = xc.mean()
        var = ((xc - mu) ** 2).mean()
        std = np.sqrt(var + eps)
        xhat = (xc - mu) / std
        dbeta[c] = g.sum()
        dgamma[c] = (g * xhat).sum()
        dxhat = g * gamma[c]
        dvar = (dxhat * (xc - mu)).sum() * -0.5 * std ** -3
        dmu = -dxhat.sum() / std + dvar * (-2.0 / n) * (xc - mu).sum()
        dx[:, c] = dxhat / std + dvar * 2 * (xc - mu) / n + dmu / n
    return dx, dgamma, dbeta


# -- Winograd F(2x2, 3x3), tile by tile ------------------------------------------------------------------------
def winograd_conv2d_naive(x, w, padding, BT, G, AT):
    """Stride-1 3x3 correlation by Winograd's algorithm, one 2x2 output tile at a time (minicnn.kernels.winograd).

    For every output tile ``(ty, tx)`` of every (n, o)::

        Y = AT @ ( sum_c (G @ w[o, c] @ G.T) * (BT @ d[n, c] @ BT.T) ) @ AT.T
        d[n, c] = x_pad[n, c, 2ty : 2ty + 4, 2tx : 2tx + 4]      (zero beyond the padded image)

    cropped at the output's edges. The transform matrices are arguments, so that
    the same loops with ``abs`` of every matrix and operand give the magnitude
    term of the rounding-error bound (``winograd.error_bound``).
    """
    ph, pw = _pair(padding)
    N, C, H, W = x.shape
    O = w.shape[0]
    Ho, Wo = H + 2 * ph - 2, W + 2 * pw - 2
    th, tw = -(-Ho // 2), -(-Wo // 2)
    xp = np.zeros((N, C, 2 * th + 2, 2 * tw + 2), dtype=np.float64)    # zero padding, and beyond for odd sizes
    xp[:, :, ph:ph + H, pw:pw + W] = x
    U = np.array([[G @ w[o, c] @ G.T for c in range(C)] for o in range(O)])              # (O, C, 4, 4)
    y = np.zeros((N, O, 2 * th, 2 * tw))
    for n in range(N):
        for ty in range(th):
            for tx in range(tw):
                V = np.array([BT @ xp[n, c, 2 * ty:2 * ty + 4, 2 * tx:2 * tx + 4] @ BT.T for c in range(C)])
                for o in range(O):
                    y[n, o, 2 * ty:2 * ty + 2, 2 * tx:2 * tx + 2] = AT @ (U[o] * V).sum(axis=0) @ AT.T
    return y[:, :, :Ho, :Wo].astype(x.dtype)


def winograd_weight_grad_naive(x, dy, padding, BT, G, AT):
    """dL/dW of the stride-1 3x3 correlation as the adjoint of :func:`winograd_conv2d_naive`'s maps::

        dW[o, c] = G.T @ ( sum_{n, tiles} (AT.T @ dY @ AT) * (BT @ d[n, c] @ BT.T) ) @ G

    with dY the 2x2 tile of dy[n, o] (zero beyond its edges) and d the 4x4 input tile.
    """
    ph, pw = _pair(padding)
    N, C, H, W = x.shape
    O, Ho, Wo = dy.shape[1:]
    th, tw = -(-Ho // 2), -(-Wo // 2)
    xp = np.zeros((N, C, 2 * th + 2, 2 * tw + 2), dtype=np.float64)
    xp[:, :, ph:ph + H, pw:pw + W] = x
    dyp = np.zeros((N, O, 2 * th, 2 * tw))
    dyp[:, :, :Ho, :Wo] = dy
    dU = np.zeros((O, C, 4, 4))
    for n in range(N):
        for ty in range(th):
            for tx in range(tw):
                V = np.array([BT @ xp[n, c, 2 * ty:2 * ty + 4, 2 * tx:2 * tx + 4] @ BT.T for c in range(C)])
                dM = np.array([AT.T @ dyp[n, o, 2 * ty:2 * ty + 2, 2 * tx:2 * tx + 2] @ AT for o in range(O)])
                dU += dM[:, None] * V[None]
    return np.array([[G.T @ dU[o, c] @ G for c in range(C)] for o in range(O)]).astype(x.dtype)


def winograd_input_grad_naive(dy, w, x_shape, padding, BT, G, AT):
    """dL/dx of the stride-1 3x3 correlation as the adjoint of :func:`winograd_conv2d_naive`'s maps::

        dx_pad[n, c, 2ty : 2ty + 4, 2tx : 2tx + 4] += BT.T @ ( sum_o (G @ w[o, c] @ G.T) * (AT.T @ dY @ AT) ) @ BT

    over every tile (overlapping tiles add), then cropped to the image: dx = dx_pad[..., ph:ph+H, pw:pw+W].
    """
    ph, pw = _pair(padding)
    N, C, H, W = x_shape
    O, Ho, Wo = dy.shape[1:]
    th, tw = -(-Ho // 2), -(-Wo // 2)
    dyp = np.zeros((N, O, 2 * th, 2 * tw))
    dyp[:, :, :Ho, :Wo] = dy
    U = np.array([[G @ w[o, c] @ G.T for c in range(C)] for o in range(O)])              # (O, C, 4, 4)
    dxp = np.zeros((N, C, max(2 * th + 2, ph + H), max(2 * tw + 2, pw + W)))
    for n in range(N):
        for ty in range(th):
            for tx in range(tw):
                dM = np.array([AT.T @ dyp[n, o, 2 * ty:2 * ty + 2, 2 * tx:2 * tx + 2] @ AT for o in range(O)])
                for c in range(C):
                    dxp[n, c, 2 * ty:2 * ty + 4, 2 * tx:2 * tx + 4] += BT.T @ (U[:, c] * dM).sum(axis=0) @ BT
    return dxp[:, :, ph:ph + H, pw:pw + W].astype(dy.dtype)
