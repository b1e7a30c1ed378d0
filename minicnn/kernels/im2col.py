"""im2col / col2im: the data movement that turns convolution into one GEMM.

Index arithmetic (used everywhere in minicnn, written once here)::

    h_in = h_out * stride_h - pad_h + i        # i in [0, kh): kernel row
    w_in = w_out * stride_w - pad_w + j        # j in [0, kw): kernel column
    H_out = (H + 2*pad_h - kh) // stride_h + 1
    W_out = (W + 2*pad_w - kw) // stride_w + 1

Positions with ``h_in`` or ``w_in`` outside the image read the zero padding.

Column layout. ``cols`` has shape ``(N, C*kh*kw, H_out*W_out)``::

    cols[n, (c*kh + i)*kw + j, h_out*W_out + w_out] = x_pad[n, c, h_in, w_in]

The row index ``(c, i, j)`` is the flattening order of a PyTorch weight
``(C_out, C_in, kh, kw)``, so with ``W2 = weight.reshape(C_out, C*kh*kw)``::

    y[n] = W2 @ cols[n]            # (C_out, H_out*W_out) = y[n] in NCHW, no transpose

and ``np.matmul(W2, cols)`` does all samples in one call (a batched GEMM on
NumPy's BLAS). Backward uses the same layout::

    dW2     = sum_n dy[n] @ cols[n].T
    dcols[n] = W2.T @ dy[n]          then  dx = col2im(dcols)

col2im is the adjoint of im2col: it *adds* every column entry back to the
input pixel it was copied from (overlapping windows sum).

The kernels are numba-jitted with ``parallel=True`` (prange over the batch:
samples are independent, so col2im has no write races) and ``cache=True``.
The first call for each dtype compiles (a few seconds); later runs load the
compiled code from ``__pycache__``.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange


def conv_output_size(size: int, kernel: int, stride: int, pad: int) -> int:
    """``(size + 2*pad - kernel) // stride + 1`` (may be <= 0: an empty output)."""
    return (size + 2 * pad - kernel) // stride + 1


@njit(cache=True, inline="always")
def _valid_range(out_size, in_size, stride, pad, k):
    """Output positions ``o`` whose input ``o*stride - pad + k`` lies in ``[0, in_size)``.

    Returns ``lo, hi`` with the valid ``o`` being ``lo <= o < hi`` (possibly empty).
    """
    # o*stride - pad + k >= 0            <=>  o >= ceil((pad - k) / stride)
    lo = 0
    if pad - k > 0:
        lo = (pad - k + stride - 1) // stride
    # o*stride - pad + k <= in_size - 1  <=>  o <= floor((in_size - 1 + pad - k) / stride)
    top = in_size - 1 + pad - k
    hi = 0
    if top >= 0:
        hi = top // stride + 1
    if hi > out_size:
        hi = out_size
    if lo > hi:
        lo = hi
    return lo, hi


@njit(parallel=True, cache=True)
def im2col(x, kh, kw, sh, sw, ph, pw, cols):
    """Fill ``cols`` (N, C*kh*kw, H_out*W_out) from ``x`` (N, C, H, W); see module doc."""
    N, C, H, W = x.shape
    Ho = (H + 2 * ph - kh) // sh + 1
    Wo = (W + 2 * pw - kw) // sw + 1
    for n in prange(N):
        for c in range(C):
            for i in range(kh):
                ylo, yhi = _valid_range(Ho, H, sh, ph, i)
                for j in range(kw):
                    xlo, xhi = _valid_range(Wo, W, sw, pw, j)
                    row = cols[n, (c * kh + i) * kw + j]
                    # output rows whose h_in is in the top/bottom padding: zeros
                    for p in range(0, ylo * Wo):
                        row[p] = 0
                    for p in range(yhi * Wo, Ho * Wo):
                        row[p] = 0
                    for ho in range(ylo, yhi):
                        h_in = ho * sh - ph + i
                        src = x[n, c, h_in]
                        base = ho * Wo
                        for wo in range(0, xlo):
                            row[base + wo] = 0
                        for wo in range(xlo, xhi):
                            row[base + wo] = src[wo * sw - pw + j]
                        for wo in range(xhi, Wo):
                            row[base + wo] = 0
    return cols


@njit(parallel=True, cache=True)
def col2im(cols, kh, kw, sh, sw, ph, pw, dx):
    """Overwrite ``dx`` (N, C, H, W) with the adjoint of im2col applied to ``cols``.

    ``dx[n, c, h_in, w_in] = sum of cols[n, (c,i,j), (h_out,w_out)]`` over every
    (i, j, h_out, w_out) that im2col copied from that pixel.
    """
    N, C, H, W = dx.shape
    Ho = (H + 2 * ph - kh) // sh + 1
    Wo = (W + 2 * pw - kw) // sw + 1
    for n in prange(N):
        for c in range(C):
            img = dx[n, c]
            img[:, :] = 0
            for i in range(kh):
                ylo, yhi = _valid_range(Ho, H, sh, ph, i)
                for j in range(kw):
                    xlo, xhi = _valid_range(Wo, W, sw, pw, j)
                    row = cols[n, (c * kh + i) * kw + j]
                    for ho in range(ylo, yhi):
                        h_in = ho * sh - ph + i
                        dst = img[h_in]
                        base = ho * Wo
                        for wo in range(xlo, xhi):
                            dst[wo * sw - pw + j] += row[base + wo]
    return dx
