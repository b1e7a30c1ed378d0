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

and ``np.matmul(W2, cols)`` does a batch of samples in one call (a batched
GEMM on NumPy's BLAS). Backward uses the same layout::

    dW2      = sum_n dy[n] @ cols[n].T
    dcols[n] = W2.T @ dy[n]          then  dx = col2im(dcols)

col2im is the adjoint of im2col: it *adds* every column entry back to the
input pixel it was copied from (overlapping windows sum).

The kernels ``im2col_nogil``/``col2im_nogil`` are single-threaded and release
the GIL; the convolution layer runs them on its own threads, one cache-sized
chunk of the batch at a time (minicnn.kernels.conv2d). ``im2col``/``col2im``
run them on every thread over contiguous slices of the batch (samples are
independent, so col2im has no write races): use these on whole arrays.
All are compiled with ``cache=True``: the first call for each dtype compiles
(seconds); later runs load the compiled code from ``__pycache__``.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .threads import run_slices


def conv_output_size(size: int, kernel: int, stride: int, pad: int) -> int:
    """``(size + 2*pad - kernel) // stride + 1`` (may be <= 0: an empty output)."""
    return (size + 2 * pad - kernel) // stride + 1


@njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)
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


# Implementation note: numba emits a negative-index ("wraparound") check for an
# index that may be negative, which stops LLVM from vectorizing a loop. Every
# hot loop below therefore slices views first and then indexes them with a
# plain ``range(count)`` variable (known >= 0): these loops compile to SIMD
# copies, about 10x faster than indexing with computed offsets.
#
# Compile time: the helpers are separate numba functions without Python wrappers
# (``no_cpython_wrapper``, ``no_cfunc_wrapper``: only other kernels call them),
# compiled once and shared by im2col_nogil and col2im_nogil; LLVM still inlines
# them into the kernels. Inlined into numba's IR (``inline="always"``) each call
# site was re-translated and typed again. Compiled alone, the two kernels took
# 5.3 s of CPU that way and 4.7 s this way (2026-12-03, loaded machine; in a whole
# first step the gain was within noise: benchmarks/winograd_measurements.md, cold start).

@njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _fill0(a):
    for p in range(a.shape[0]):
        a[p] = 0


@njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _copy(dst, src):
    for p in range(dst.shape[0]):
        dst[p] = src[p]


@njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _zero_edges(row, base, xlo, xhi, Wo):
    """row[base + w] = 0 for w < xlo and xhi <= w < Wo (usually one entry each: scalar stores)."""
    for w in range(xlo):
        row[base + w] = 0
    for w in range(xhi, Wo):
        row[base + w] = 0


@njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _copy_strided(dst, src, step):
    """dst[p] = src[p*step]; stride 2 gets its own loop (a constant stride vectorizes)."""
    if step == 2:
        for p in range(dst.shape[0]):
            dst[p] = src[2 * p]
    else:
        for p in range(dst.shape[0]):
            dst[p] = src[p * step]


@njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _add_strided(dst, src, step):
    """dst[p*step] += src[p]"""
    if step == 2:
        for p in range(src.shape[0]):
            dst[2 * p] += src[p]
    else:
        for p in range(src.shape[0]):
            dst[p * step] += src[p]


@njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _add(dst, src):
    for p in range(dst.shape[0]):
        dst[p] += src[p]


@njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _im2col_plane(src, kh, kw, sh, sw, ph, pw, H, W, Ho, Wo, cols, r0):
    """im2col of one image plane ``src`` (H*W, flat) into rows r0.. of ``cols`` (rows, L)."""
    L = Ho * Wo
    for i in range(kh):
        ylo, yhi = _valid_range(Ho, H, sh, ph, i)
        for j in range(kw):
            xlo, xhi = _valid_range(Wo, W, sw, pw, j)
            row = cols[r0 + i * kw + j]
            _fill0(row[:ylo * Wo])          # h_in in the top padding
            _fill0(row[yhi * Wo:])          # h_in in the bottom padding
            if sh == 1 and sw == 1 and Wo == W:
                # "same" width, stride 1: row[p] = src[p + off] for every valid p, one long copy
                # (p = h_out*W + w_out, off = (i - ph)*W + (j - pw)); the entries whose w_in
                # wrapped around into the neighbouring image row are zeroed just after.
                off = (i - ph) * W + (j - pw)
                lo = max(ylo * W, -off)
                hi = min(yhi * W, H * W - off)
                if hi > lo:
                    _copy(row[lo:hi], src[lo + off:hi + off])
                if xlo > 0 or xhi < Wo:
                    for ho in range(ylo, yhi):
                        _zero_edges(row, ho * W, xlo, xhi, W)
            else:
                for ho in range(ylo, yhi):
                    base = ho * Wo
                    _zero_edges(row, base, xlo, xhi, Wo)
                    if xhi > xlo:
                        # w_in = w_out*sw - pw + j for w_out in [xlo, xhi)
                        s0 = (ho * sh - ph + i) * W + xlo * sw - pw + j
                        _copy_strided(row[base + xlo:base + xhi], src[s0:], sw)


@njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _col2im_plane(cols, kh, kw, sh, sw, ph, pw, H, W, Ho, Wo, img, r0):
    """Adjoint of _im2col_plane: img (H*W, flat) = sum of rows r0.. of ``cols`` put back."""
    _fill0(img)
    for i in range(kh):
        ylo, yhi = _valid_range(Ho, H, sh, ph, i)
        for j in range(kw):
            xlo, xhi = _valid_range(Wo, W, sw, pw, j)
            row = cols[r0 + i * kw + j]
            if sh == 1 and sw == 1 and Wo == W:
                # the mirror of im2col's long copy: zero the wrapped entries, then one long add
                off = (i - ph) * W + (j - pw)
                if xlo > 0 or xhi < Wo:
                    for ho in range(ylo, yhi):
                        _zero_edges(row, ho * W, xlo, xhi, W)
                lo = max(ylo * W, -off)
                hi = min(yhi * W, H * W - off)
                if hi > lo:
                    _add(img[lo + off:hi + off], row[lo:hi])
            elif xhi > xlo:
                for ho in range(ylo, yhi):
                    base = ho * Wo
                    s0 = (ho * sh - ph + i) * W + xlo * sw - pw + j
                    _add_strided(img[s0:], row[base + xlo:base + xhi], sw)


# -- stride 2: the plane split into its four parity sub-planes ("polyphase") first ---------------------------
# A stride-2 kernel offset reads every other pixel of every other row: im2col's strided path copies rows of
# W_out entries at stride 2, one short loop per (c, i, j, h_out) (8 and 16 long in ResNet-20), 9 times over
# each pixel. Split once instead. With d = i - pad_h, h_in = 2*h_out + d = 2*(h_out + oy) + a for the row
# parity a = d mod 2 and oy = floor(d / 2) (the same for columns: b, ox), so::
#
#     sub[2a + b][y, x] = x[2y + a, 2x + b]                  (H_out x W_out, zero beyond the image)
#     cols[(c, i, j), h_out*W_out + w_out] = sub[2a + b][h_out + oy, w_out + ox]
#
# a stride-1 shifted copy of a sub-plane with the sub-plane's width W_out: one long copy per row of cols, as
# in the stride-1 "same width" path above, then the entries whose w_out + ox wrapped into the row before are
# zeroed. That needs oy, ox <= 0 for every offset (so no valid read leaves the H_out x W_out sub-plane):
# d = k - 1 - pad <= 1, i.e. pad >= k - 2: ResNets' 3x3 pad-1 stride-2 convolutions (their 1x1 pad-0 shortcuts
# read one parity and keep the strided path). Measured (benchmarks/bench_stride2_conv.py, one thread, batch
# 128): ResNet-20's two stride-2 3x3 layers 1.9-2.2x faster, forward and backward, bit-identical; the
# figures are in benchmarks/winograd_measurements.md.

@njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _polyphase(kh, kw, sh, sw, ph, pw):
    """Whether im2col/col2im take the parity sub-plane path: stride 2, pad >= kernel - 2 on both axes, and a
    kernel at least 2 x 2 (a 1-wide kernel reads one parity only: the strided path copies each pixel once)."""
    return sh == 2 and sw == 2 and kh >= 2 and kw >= 2 and kh - 1 - ph <= 1 and kw - 1 - pw <= 1


@njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _split_phases(src, H, W, Ho, Wo, subs):
    """subs[2a + b][y*Wo + x] = src[(2y + a)*W + 2x + b] (zero outside the image), for the plane ``src`` (flat)."""
    for a in range(2):
        for b in range(2):
            sub = subs[2 * a + b]
            count = min(Wo, (W - b + 1) // 2)      # x with 2x + b < W
            for y in range(Ho):
                dst = sub[y * Wo:(y + 1) * Wo]
                h = 2 * y + a
                if h < H and count > 0:
                    _copy_strided(dst[:count], src[h * W + b:], 2)
                    _fill0(dst[count:])
                else:
                    _fill0(dst)


@njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _merge_phases(subs, H, W, Ho, Wo, img):
    """The inverse of _split_phases (pixels outside every sub-plane, never read, get 0): img (H*W, flat)."""
    _fill0(img)
    for a in range(2):
        for b in range(2):
            sub = subs[2 * a + b]
            count = min(Wo, (W - b + 1) // 2)
            for y in range(Ho):
                h = 2 * y + a
                if h < H and count > 0:
                    _add_strided(img[h * W + b:], sub[y * Wo:y * Wo + count], 2)


@njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _phase_shift(k, pad):
    """(parity, shift) of kernel offset k at stride 2: (k - pad) mod 2 and floor((k - pad) / 2)."""
    d = k - pad
    return d % 2, d // 2                          # numba's integer // and % round down, as Python's do


@njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _im2col_plane_phases(subs, kh, kw, ph, pw, H, W, Ho, Wo, cols, r0):
    """im2col of one plane, stride 2, from its parity sub-planes ``subs`` (see _split_phases)."""
    L = Ho * Wo
    for i in range(kh):
        ylo, yhi = _valid_range(Ho, H, 2, ph, i)
        a, oy = _phase_shift(i, ph)
        for j in range(kw):
            xlo, xhi = _valid_range(Wo, W, 2, pw, j)
            b, ox = _phase_shift(j, pw)
            row = cols[r0 + i * kw + j]
            src = subs[2 * a + b]
            _fill0(row[:ylo * Wo])
            _fill0(row[yhi * Wo:])
            off = oy * Wo + ox                  # row[p] = src[p + off] for p = h_out*Wo + w_out
            lo = max(ylo * Wo, -off)
            hi = min(yhi * Wo, L - off)
            if hi > lo:
                _copy(row[lo:hi], src[lo + off:hi + off])
            if xlo > 0 or xhi < Wo:
                for ho in range(ylo, yhi):
                    _zero_edges(row, ho * Wo, xlo, xhi, Wo)


@njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _col2im_plane_phases(cols, kh, kw, ph, pw, H, W, Ho, Wo, subs, r0):
    """Adjoint of _im2col_plane_phases: the rows r0.. of ``cols`` added into the sub-planes (then merged)."""
    L = Ho * Wo
    for q in range(4):
        _fill0(subs[q])
    for i in range(kh):
        ylo, yhi = _valid_range(Ho, H, 2, ph, i)
        a, oy = _phase_shift(i, ph)
        for j in range(kw):
            xlo, xhi = _valid_range(Wo, W, 2, pw, j)
            b, ox = _phase_shift(j, pw)
            row = cols[r0 + i * kw + j]
            if xlo > 0 or xhi < Wo:
                for ho in range(ylo, yhi):
                    _zero_edges(row, ho * Wo, xlo, xhi, Wo)
            off = oy * Wo + ox
            lo = max(ylo * Wo, -off)
            hi = min(yhi * Wo, L - off)
            if hi > lo:
                _add(subs[2 * a + b][lo + off:hi + off], row[lo:hi])


@njit(nogil=True, cache=True)
def im2col_nogil(x, kh, kw, sh, sw, ph, pw, cols):
    """im2col on the calling thread, without the GIL."""
    N, C, H, W = x.shape
    Ho = (H + 2 * ph - kh) // sh + 1
    Wo = (W + 2 * pw - kw) // sw + 1
    poly = _polyphase(kh, kw, sh, sw, ph, pw)
    subs = np.empty((4, Ho * Wo if poly else 0), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            src = x[n, c].reshape(H * W)
            if poly:
                _split_phases(src, H, W, Ho, Wo, subs)
                _im2col_plane_phases(subs, kh, kw, ph, pw, H, W, Ho, Wo, cols[n], c * kh * kw)
            else:
                _im2col_plane(src, kh, kw, sh, sw, ph, pw, H, W, Ho, Wo, cols[n], c * kh * kw)
    return cols


@njit(nogil=True, cache=True)
def col2im_nogil(cols, kh, kw, sh, sw, ph, pw, dx):
    """col2im on the calling thread, without the GIL."""
    N, C, H, W = dx.shape
    Ho = (H + 2 * ph - kh) // sh + 1
    Wo = (W + 2 * pw - kw) // sw + 1
    poly = _polyphase(kh, kw, sh, sw, ph, pw)
    subs = np.empty((4, Ho * Wo if poly else 0), dtype=dx.dtype)
    for n in range(N):
        for c in range(C):
            img = dx[n, c].reshape(H * W)
            if poly:
                _col2im_plane_phases(cols[n], kh, kw, ph, pw, H, W, Ho, Wo, subs, c * kh * kw)
                _merge_phases(subs, H, W, Ho, Wo, img)
            else:
                _col2im_plane(cols[n], kh, kw, sh, sw, ph, pw, H, W, Ho, Wo, img, c * kh * kw)
    return dx


def im2col(x, kh, kw, sh, sw, ph, pw, cols):
    """Fill ``cols`` (N, C*kh*kw, H_out*W_out) from ``x`` (N, C, H, W); see module doc. All threads."""
    run_slices(lambda k, s, e: im2col_nogil(x[s:e], kh, kw, sh, sw, ph, pw, cols[s:e]), x.shape[0])
    return cols


def col2im(cols, kh, kw, sh, sw, ph, pw, dx):
    """Overwrite ``dx`` (N, C, H, W) with the adjoint of im2col applied to ``cols``. All threads.

    ``dx[n, c, h_in, w_in] = sum of cols[n, (c,i,j), (h_out,w_out)]`` over every
    (i, j, h_out, w_out) that im2col copied from that pixel.

    ``cols`` is used as scratch: its entries that im2col would have read from
    the zero padding may be set to 0 (they carry no gradient to any pixel).
    """
    run_slices(lambda k, s, e: col2im_nogil(cols[s:e], kh, kw, sh, sw, ph, pw, dx[s:e]), dx.shape[0])
    return dx
