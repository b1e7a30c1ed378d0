"""Winograd F(2x2, 3x3) convolution for 3x3 stride-1 layers: forward, dL/dx and dL/dW.

Lavin & Gray, *Fast Algorithms for Convolutional Neural Networks* (CVPR 2016,
arXiv:1509.09308; not in shared/papers, cited from the arXiv text): §4.1
(F(2x2, 3x3)) and §4.2 (F(3x3, 2x2), the same transform used for the weight
gradient). F(2x2, 3x3) rather than F(4x4, 3x3) (their §4.3): its transforms
are exact (entries 0, +-1, +-1/2: B^T and A^T only add and subtract) and its
fp32 error small (below); ``benchmarks/bench_conv_algos.py`` measures what
it gains against im2col per layer shape.

**1-D F(2, 3).** Two outputs of a 3-tap correlation, ``y_k = sum_i g_i d_(k+i)``
(k = 0, 1), from four inputs d_0..d_3 with four multiplications instead of six::

    y = A^T [ (G g) * (B^T d) ]          (* elementwise)

    B^T = [[1,  0, -1,  0],     G = [[1,    0,    0  ],     A^T = [[1, 1,  1,  0],
           [0,  1,  1,  0],          [1/2,  1/2,  1/2],            [0, 1, -1, -1]]
           [0, -1,  1,  0],          [1/2, -1/2,  1/2],
           [0,  1,  0, -1]]          [0,    0,    1  ]]

**2-D F(2x2, 3x3)**, the 1-D one nested: a 2x2 output tile ``Y`` from a 4x4
input tile ``d`` and a 3x3 filter ``g``: ``Y = A^T [ (G g G^T) * (B^T d B) ] A``.

**A layer.** Index arithmetic, used by every kernel below and written once here::

    th = ceil(H_out / 2), tw = ceil(W_out / 2)     tiles per image, rows and columns
    t  = (n * th + ty) * tw + tx                   tile number in a chunk of images, n counted in the chunk
    output tile (ty, tx):  y[n, o, 2*ty + r, 2*tx + s]          r, s in {0, 1}  (cropped at H_out, W_out)
    its input tile:        x_pad[n, c, 2*ty + a, 2*tx + b]      a, b in {0..3}: x rows 2*ty - pad_h + a
    xi = 4 * a' + b'                               one of the 16 positions of the transformed 4x4 tile

Neighbouring input tiles overlap by two pixels. Then, for a chunk of images::

    U[xi, o, c] = (G w[o, c] G^T)[xi]            weight transform (NumPy, once per call)
    V[xi, c, t] = (B^T d[n, c, tile t] B)[xi]    input transform  (winograd_input_nogil)
    M[xi]       = U[xi] @ V[xi]                  16 GEMMs (O x C) @ (C x T) (one batched np.matmul)
    y tile t    = A^T M[:, o, t] A               output transform (winograd_output_nogil)

Backward, as the adjoint (the transpose) of these linear maps, so that it is
exactly the gradient of what the forward computed (no flipped kernel)::

    dM[xi, o, t] = (A dY[n, o, tile t] A^T)[xi]   dy transform: 2x2 -> 4x4 (winograd_dy_nogil)
    dU[xi]      += dM[xi] @ V[xi]^T               16 GEMMs (O x T) @ (T x C): the sum over the batch's tiles
    dW[o, c]     = G^T dU[:, o, c] G              (NumPy, once per call)
    dV[xi]       = U[xi]^T @ dM[xi]               16 GEMMs (C x O) @ (O x T)
    dx_pad tile += B dV[:, c, t] B^T              adjoint of the input transform: the 4x4 tiles added back
                                                  where they were read, overlaps summed (winograd_input_grad_nogil)

The weight gradient is Lavin & Gray's F(3x3, 2x2) of §4.2 (a 3x3 result
from 4x4 input tiles and 2x2 gradient tiles) in the transposed form that
shares B^T d B with the forward; dM serves both dW and dx, one transform per
chunk of dy.

Each numba kernel loops over tiles ``tx`` of one row of tiles innermost, with
contiguous loads and stores only (the padded input rows are first copied into
even- and odd-column halves, so that the tile at tx reads columns tx and tx+1
of each), and vectorizes. The transforms are the matrices above written out as
additions; ``tests/test_winograd.py`` checks each kernel against the matrix
products.

**Work and the ledger.** Multiplications per output pixel and input channel:
16/4 = 4 per output channel in the GEMMs instead of 9 (2.25x fewer), plus the
transforms (additions). The cost ledger (``minicnn.cost``) still counts the
layer's 9 MACs per output: it counts the network's work, not the algorithm's.

**Tolerance (fp32 rounding).** With unit roundoff u (2^-24 in float32,
2^-53 in float64) and ``gamma_n = n u / (1 - n u)``: every computed value is
a sum of exact products of the inputs, each of which has passed through at
most n roundings, so (Higham, *Accuracy and Stability of Numerical
Algorithms*, 2nd ed., §3.1, Lemma 3.1)::

    |computed - exact| <= gamma_n * Y_abs      (elementwise)

where ``Y_abs`` is the same Winograd computation done exactly on absolute
values (of the inputs, the weights and every matrix), e.g. for the forward
``|A^T| [ sum_c (|G| |g| |G^T|) * (|B^T| |d| |B|) ] |A|``. Counting the
roundings along each path:

* forward, n = C + 8: input transform 2 (two stages of two-term sums), U
  rounded once from float64 (1), the product (1), the GEMM's sum over C
  (C - 1), the output transform 4 (two stages of three-term sums); C + 7,
  rounded up.
* dL/dx, n = O + 9: dy transform 2, U 1, product 1, GEMM over O (O - 1),
  B dV B^T 4 (two stages of three-term sums), overlapping tiles 2 (at most
  two per axis).
* dL/dW, n = N*th*tw + 8: input and dy transforms 2 + 2, product 1, the sum
  over all N*th*tw tiles of the batch (chunk GEMMs, then chunks in order:
  N*th*tw - 1), G^T dU G in float64 rounded once (1).

``Y_abs`` exceeds the direct method's ``sum |g| |d|`` only by the
transforms' mixing (in 1-D, output 0's bound has 8 products against the
direct method's 3); ``gamma_(C+8)`` is far below im2col's worst case
``gamma_(9C)``. :func:`error_bound` computes these bounds (float64 loops in
``reference``); ``tests/test_winograd.py`` holds the kernels to them against
the float64 naive convolution on random shapes, paddings and batches, and
checks that the bound is tight enough to catch a transform entry off by
1e-3. Observed errors are ~1% of the bound (float32, ResNet-20 shapes: a
few 1e-6 against the float64 result), the order of im2col's. F(4x4, 3x3)
has transform entries up to 8 and 1/24 (not exact in binary) and a larger
bound; it was not taken.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from . import gemm

# -- the transforms of F(2, 3) (Lavin & Gray §4.1) ------------------------------------------------------
BT = np.array([[1, 0, -1, 0],
               [0, 1, 1, 0],
               [0, -1, 1, 0],
               [0, 1, 0, -1]], dtype=np.float64)
G = np.array([[1, 0, 0],
              [0.5, 0.5, 0.5],
              [0.5, -0.5, 0.5],
              [0, 0, 1]], dtype=np.float64)
AT = np.array([[1, 1, 1, 0],
               [0, 1, -1, -1]], dtype=np.float64)

#: output tile size m and input tile size alpha = m + 3 - 1 of F(m x m, 3 x 3)
TILE = 2
ALPHA = 4


def tiles(H_out: int, W_out: int) -> tuple[int, int]:
    """(th, tw): rows and columns of 2x2 output tiles covering an H_out x W_out output."""
    return -(-H_out // TILE), -(-W_out // TILE)


def _kron_g() -> np.ndarray:
    """The 2-D weight transform as one (16, 9) matrix: (G g G^T)[a, b] = sum_(i, j) G[a, i] G[b, j] g[i, j], so
    K[4a + b, 3i + j] = G[a, i] G[b, j], i.e. np.kron(G, G); K^T maps dU back (the adjoint, for dW).
    (Formed per call from G, a few microseconds, so that G stays the one definition.)"""
    return np.kron(G, G)


def weight_transform(w: np.ndarray, dtype, transposed: bool = False) -> np.ndarray:
    """U (16, O, C) = G w[o, c] G^T for w (O, C, 3, 3), formed in float64 and rounded once to ``dtype``.

    ``transposed``: U^T (16, C, O) instead, what dL/dx multiplies by. One float64 GEMM, :func:`_kron_g` (16 x 9) times
    the O*C filters as columns (every product and sum of it is exact in float64 but for filters whose entries
    span more than ~2^29 in magnitude, so it gives the bits of G w G^T done as two products; until 2026-12-06
    it was two batched 4x3 matmuls, 5-7x slower at alexnet-ye's 192-384 channels: 12-17 ms a call).
    """
    O, C = w.shape[:2]
    w9 = (w.transpose(1, 0, 2, 3) if transposed else w).reshape(O * C, 9).astype(np.float64)
    U = _kron_g() @ w9.T                                                   # (16, O*C) in float64
    return U.astype(dtype).reshape(ALPHA * ALPHA, *((C, O) if transposed else (O, C)))


def weight_grad_transform(dU: np.ndarray) -> np.ndarray:
    """dW (O, C, 3, 3) = G^T dU[:, o, c] G for dU (16, O, C): the adjoint of :func:`weight_transform`."""
    _, O, C = dU.shape
    d = dU.reshape(ALPHA * ALPHA, O * C).astype(np.float64)
    return (d.T @ _kron_g()).astype(dU.dtype).reshape(O, C, 3, 3)       # row o*C + c: sum_xi dU[xi] K[xi]


def error_bound(x, w, dy, padding, dtype):
    """Bounds on |computed - exact| of y, dL/dx and dL/dW in ``dtype`` (see the module doc), elementwise.

    ``gamma_n * Y_abs`` with Y_abs the same Winograd computation in float64 on absolute values
    (``reference.winograd_conv2d_naive`` / ``winograd_weight_grad_naive`` with |B^T|, |G|, |A^T|).
    Slow (plain loops): for tests on small shapes.
    """
    from . import reference as R
    ph, pw = (padding, padding) if np.isscalar(padding) else padding
    N, C = x.shape[:2]
    O, Ho, Wo = dy.shape[1:]
    th, tw = tiles(Ho, Wo)
    u = np.finfo(dtype).eps / 2

    def gamma(n):
        return n * u / (1 - n * u)

    ax, aw, ady = (np.abs(np.asarray(a, dtype=np.float64)) for a in (x, w, dy))
    mats = np.abs(BT), np.abs(G), np.abs(AT)
    return (gamma(C + 8) * R.winograd_conv2d_naive(ax, aw, (ph, pw), *mats),
            gamma(O + 9) * R.winograd_input_grad_naive(ady, aw, x.shape, (ph, pw), *mats),
            gamma(N * th * tw + 8) * R.winograd_weight_grad_naive(ax, ady, (ph, pw), *mats))


# -- numba kernels ---------------------------------------------------------------------------------------------
@njit(cache=True, inline="always")
def _bt(z0, z1, z2, z3):
    """B^T z: the rows of B^T applied to a 4-vector."""
    return z0 - z2, z1 + z2, z2 - z1, z1 - z3


@njit(cache=True, inline="always")
def _at(z0, z1, z2, z3):
    """A^T z: the rows of A^T applied to a 4-vector."""
    return z0 + z1 + z2, z1 - z2 - z3


@njit(cache=True, inline="always")
def _a(u, v):
    """A z for a 2-vector z = (u, v): A = (A^T)^T has rows [1, 0], [1, 1], [1, -1], [0, -1]."""
    return u, u + v, u - v, -v


@njit(cache=True, inline="always")
def _b(z0, z1, z2, z3):
    """B z: B = (B^T)^T has rows [1, 0, 0, 0], [0, 1, -1, 1], [-1, 1, 1, 0], [0, 0, 0, -1]."""
    return z0, z1 - z2 + z3, z1 + z2 - z0, -z3


@njit(cache=True, inline="always")
def _split_row(dst_even, dst_odd, src, shift):
    """dst_even[j] = src[2j - shift], dst_odd[j] = src[2j + 1 - shift], zero where that is outside src.

    (One padded row, split into its even and odd columns; ``shift`` is the left padding.)
    """
    n = src.shape[0]
    for j in range(dst_even.shape[0]):
        k = 2 * j - shift
        dst_even[j] = src[k] if 0 <= k < n else 0
        k += 1
        dst_odd[j] = src[k] if 0 <= k < n else 0


@njit(cache=True, inline="always")
def _merge_row(dst, src_even, src_odd, shift):
    """dst[w] = the padded row's column w + shift, from its even and odd halves: the inverse of _split_row."""
    for w in range(dst.shape[0]):
        k = w + shift
        dst[w] = src_even[k // 2] if k % 2 == 0 else src_odd[k // 2]


@njit(cache=True, inline="always")
def _copy_out(tb, dst, c, t0):
    """dst[xi, c, t0 + t] = tb[xi, t] for all 16 xi: one image's tiles into a (16, C, T) array."""
    count = tb.shape[1]
    for xi in range(tb.shape[0]):
        d = dst[xi, c, t0:t0 + count]
        s = tb[xi]
        for t in range(count):
            d[t] = s[t]


@njit(cache=True, inline="always")
def _copy_in(src, c, t0, tb):
    """tb[xi, t] = src[xi, c, t0 + t]: one image's tiles out of a (16, C, T) array."""
    count = tb.shape[1]
    for xi in range(tb.shape[0]):
        d = tb[xi]
        s = src[xi, c, t0:t0 + count]
        for t in range(count):
            d[t] = s[t]


# Implementation note: a 2-D view such as V[:, c, t0:t0 + tw] has run-time strides, and numba's loops over it
# did not vectorize (4x slower). So each kernel works on one image plane's tiles in a small C-contiguous
# scratch ``tb`` (16, th*tw) and copies it to or from V / M with contiguous 1-D loops.

@njit(nogil=True, cache=True)
def winograd_input_nogil(x, ph, pw, th, tw, V, plane_e, plane_o, tb):
    """V[xi, c, t] = (B^T d B)[xi] for every 4x4 input tile d of x (b, C, H, W); see the module doc.

    Scratch: plane_e, plane_o (2*th + 2, tw + 1) for one padded input plane split into even and odd
    columns; tb (16, th*tw) for one plane's transformed tiles.
    """
    b, C, H, W = x.shape
    for n in range(b):
        for c in range(C):
            # the padded plane: row pr is image row pr - ph (zero outside), column 2j (+1) is image column 2j - pw (+1)
            for pr in range(2 * th + 2):
                h = pr - ph
                if 0 <= h < H:
                    _split_row(plane_e[pr], plane_o[pr], x[n, c, h], pw)
                else:
                    plane_e[pr, :] = 0
                    plane_o[pr, :] = 0
            for ty in range(th):
                # rows 2ty..2ty+3 of the tile row; tile tx reads padded columns 2tx..2tx+3 = even tx, odd tx,
                # even tx+1, odd tx+1
                e0, e1, e2, e3 = plane_e[2 * ty], plane_e[2 * ty + 1], plane_e[2 * ty + 2], plane_e[2 * ty + 3]
                o0, o1, o2, o3 = plane_o[2 * ty], plane_o[2 * ty + 1], plane_o[2 * ty + 2], plane_o[2 * ty + 3]
                base = ty * tw           # this tile row's tiles in tb
                for tx in range(tw):
                    # B^T d: down each of the tile's four columns
                    c0 = _bt(e0[tx], e1[tx], e2[tx], e3[tx])
                    c1 = _bt(o0[tx], o1[tx], o2[tx], o3[tx])
                    c2 = _bt(e0[tx + 1], e1[tx + 1], e2[tx + 1], e3[tx + 1])
                    c3 = _bt(o0[tx + 1], o1[tx + 1], o2[tx + 1], o3[tx + 1])
                    # (B^T d) B: along each row a of B^T d, the same B^T; position xi = 4a + b
                    for a in range(4):
                        v0, v1, v2, v3 = _bt(c0[a], c1[a], c2[a], c3[a])
                        tb[4 * a, base + tx] = v0
                        tb[4 * a + 1, base + tx] = v1
                        tb[4 * a + 2, base + tx] = v2
                        tb[4 * a + 3, base + tx] = v3
            _copy_out(tb, V, c, n * th * tw)
    return V


@njit(nogil=True, cache=True)
def winograd_output_nogil(M, th, tw, y, tb):
    """y[n, o, 2ty + r, 2tx + s] = (A^T M[:, o, t] A)[r, s] for y (b, O, H_out, W_out), cropped at its edges.

    Scratch: tb (16, th*tw) for one plane's tiles. A row of tiles is written whole into two rows of 2*tw
    values (allocated once per call), which are then copied into y cropped to H_out, W_out: one tile loop
    for every shape (compiled once; an odd H_out or W_out needs no second loop for its last tiles).
    """
    b, O, Ho, Wo = y.shape
    rows = np.empty((2, 2 * tw), dtype=y.dtype)
    for n in range(b):
        for o in range(O):
            _copy_in(M, o, n * th * tw, tb)
            for ty in range(th):
                base = ty * tw
                for tx in range(tw):
                    r0, r1 = _at_tile(tb, base + tx)
                    rows[0, 2 * tx], rows[0, 2 * tx + 1] = r0
                    rows[1, 2 * tx], rows[1, 2 * tx + 1] = r1
                for r in range(min(2, Ho - 2 * ty)):       # output rows 2ty, 2ty + 1 (if < H_out), W_out columns
                    dst = y[n, o, 2 * ty + r]
                    src = rows[r]
                    for w in range(Wo):
                        dst[w] = src[w]
    return y


@njit(cache=True, inline="always")
def _at_tile(m, tx):
    """A^T m A for the 4x4 tile m[4a + k, tx]: its two output rows, each (column 0, column 1)."""
    # A^T m: down each column k of the 4x4 m (m[4a + k], a = 0..3); kk[r] = (A^T m)[r, k]
    k0 = _at(m[0, tx], m[4, tx], m[8, tx], m[12, tx])
    k1 = _at(m[1, tx], m[5, tx], m[9, tx], m[13, tx])
    k2 = _at(m[2, tx], m[6, tx], m[10, tx], m[14, tx])
    k3 = _at(m[3, tx], m[7, tx], m[11, tx], m[15, tx])
    # (A^T m) A: along each output row r, A^T again
    return _at(k0[0], k1[0], k2[0], k3[0]), _at(k0[1], k1[1], k2[1], k3[1])


@njit(nogil=True, cache=True)
def winograd_dy_nogil(dy, th, tw, dM, rows, tb):
    """dM[xi, o, t] = (A dY A^T)[xi] for every 2x2 tile dY of dy (b, O, H_out, W_out), zero beyond its edges.

    Scratch: rows (4, tw) for a tile row's two rows of dy split into even and odd columns; tb (16, th*tw).
    """
    b, O, Ho, Wo = dy.shape
    for n in range(b):
        for o in range(O):
            for ty in range(th):
                for r in range(2):
                    h = 2 * ty + r
                    if h < Ho:
                        _split_row(rows[2 * r], rows[2 * r + 1], dy[n, o, h], 0)
                    else:
                        rows[2 * r, :] = 0
                        rows[2 * r + 1, :] = 0
                p_, q_, r_, s_ = rows[0], rows[1], rows[2], rows[3]
                base = ty * tw           # this tile row's tiles in tb
                for tx in range(tw):
                    # dY = [[p, q], [r, s]];  A dY: each column (p, r) and (q, s) times A
                    left = _a(p_[tx], r_[tx])
                    right = _a(q_[tx], s_[tx])
                    # (A dY) A^T: each row (left[a], right[a]) times A again; position xi = 4a + b
                    for a in range(4):
                        v0, v1, v2, v3 = _a(left[a], right[a])
                        tb[4 * a, base + tx] = v0
                        tb[4 * a + 1, base + tx] = v1
                        tb[4 * a + 2, base + tx] = v2
                        tb[4 * a + 3, base + tx] = v3
            _copy_out(tb, dM, o, n * th * tw)
    return dM


@njit(cache=True, inline="always")
def _b_tile_columns(tb, t, k):
    """Columns k and k + 1 of the 4x4 tile B dV B^T, for dV = tb[4a + b', t]: two 4-vectors (rows 0..3)."""
    # dV B^T: along each row a of dV (positions 4a..4a+3), B; ra[k] = (dV B^T)[a, k]
    r0 = _b(tb[0, t], tb[1, t], tb[2, t], tb[3, t])
    r1 = _b(tb[4, t], tb[5, t], tb[6, t], tb[7, t])
    r2 = _b(tb[8, t], tb[9, t], tb[10, t], tb[11, t])
    r3 = _b(tb[12, t], tb[13, t], tb[14, t], tb[15, t])
    # B (dV B^T): down tile columns k and k + 1, B again
    return _b(r0[k], r1[k], r2[k], r3[k]), _b(r0[k + 1], r1[k + 1], r2[k + 1], r3[k + 1])


@njit(nogil=True, cache=True)
def winograd_input_grad_nogil(dV, ph, pw, th, tw, dx, plane_e, plane_o, tb):
    """dx[n, c] = the 4x4 tiles B dV[:, c, t] B^T added back where their input tiles came from (the adjoint of
    winograd_input_nogil), cropped to the image: dx (b, C, H, W).

    Neighbouring tiles overlap by two columns, so one row of tiles is added in two passes (``half`` 0, 1):
    columns 0 and 1 of every tile (padded columns 2tx, 2tx + 1: even tx, odd tx), then columns 2 and 3
    (even tx+1, odd tx+1). Within a pass no two tiles touch the same pixel, so the loop vectorizes; both
    passes are one loop in the code (one copy of the tile transform to compile). Scratch as
    winograd_input_nogil's.
    """
    b, C, H, W = dx.shape
    for n in range(b):
        for c in range(C):
            _copy_in(dV, c, n * th * tw, tb)
            plane_e[:, :] = 0
            plane_o[:, :] = 0
            for ty in range(th):
                base = ty * tw
                e0, e1, e2, e3 = plane_e[2 * ty], plane_e[2 * ty + 1], plane_e[2 * ty + 2], plane_e[2 * ty + 3]
                o0, o1, o2, o3 = plane_o[2 * ty], plane_o[2 * ty + 1], plane_o[2 * ty + 2], plane_o[2 * ty + 3]
                for half in range(2):      # tile columns 2*half, 2*half + 1 -> padded columns even, odd tx + half
                    for tx in range(tw):
                        ce, co = _b_tile_columns(tb, base + tx, 2 * half)
                        p = tx + half
                        e0[p] += ce[0]
                        e1[p] += ce[1]
                        e2[p] += ce[2]
                        e3[p] += ce[3]
                        o0[p] += co[0]
                        o1[p] += co[1]
                        o2[p] += co[2]
                        o3[p] += co[3]
            for h in range(H):                          # image row h is padded row h + ph
                _merge_row(dx[n, c, h], plane_e[h + ph], plane_o[h + ph], pw)
    return dx


# -- drivers: chunks of the batch on all threads ---------------------------------------------------------------
#: bytes of transformed tiles per chunk and thread (V and M: 16 * tiles * (C + O) values), and at least
#: MIN_CHUNK_TILES tiles per chunk (for wide layers: the GEMMs need long rows to run at speed, and U is read
#: once per chunk). Measured on 2 cores, one thread (benchmarks/bench_conv_algos.py, 2026-12-03): 1-4 MB alike
#: for ResNet-20's layers; 192->384 channels at 9x9 (25 tiles per image) 396 ms forward at 1 image per chunk,
#: 302 ms at 9.
CHUNK_BYTES = 2 << 20
MIN_CHUNK_TILES = 256

_scratch: dict = {}


def _buffer(slot: int, name: str, shape, dtype) -> np.ndarray:
    """A view of scratch buffer ``name`` of thread ``slot``, grown when needed."""
    dtype = np.dtype(dtype)
    size = math.prod(shape)              # math.prod: np.prod on a tuple costs ~10 us, and this runs ~1,700x a step
    buf = _scratch.get((slot, name, dtype))
    if buf is None or buf.size < size:
        buf = _scratch[(slot, name, dtype)] = np.empty(size, dtype=dtype)
    return buf[:size].reshape(shape)


def release_scratch() -> None:
    _scratch.clear()


def chunk_images(N: int, tiles_per_image: int, channels: int, dtype) -> int:
    """Images per chunk: 16 * tiles * channels values in CHUNK_BYTES, or MIN_CHUNK_TILES tiles if that is more.

    Depends on the shapes only (never on the thread count): the weight gradient's sum over chunks
    is then the same on any number of threads.
    """
    per_image = ALPHA * ALPHA * tiles_per_image * channels * np.dtype(dtype).itemsize
    return max(1, min(N, max(CHUNK_BYTES // per_image, -(-MIN_CHUNK_TILES // tiles_per_image))))


def _chunk_scratch(slot, C, O, n, th, tw, dtype):
    """One thread's buffers for a chunk of n images: V (16, C, T), M (16, O, T) with T = n*th*tw tiles, the two
    padded half-planes of the input transform and a tile row's scratch (forward and backward share them)."""
    T = n * th * tw
    return (_buffer(slot, "V", (ALPHA * ALPHA, C, T), dtype), _buffer(slot, "M", (ALPHA * ALPHA, O, T), dtype),
            _buffer(slot, "plane_e", (2 * th + 2, tw + 1), dtype), _buffer(slot, "plane_o", (2 * th + 2, tw + 1), dtype),
            _buffer(slot, "tb", (ALPHA * ALPHA, th * tw), dtype))


def winograd_forward(x, w, ph, pw, y):
    """y (N, O, H_out, W_out) = the stride-1 correlation of x (N, C, H, W) with w (O, C, 3, 3), zero padding ph, pw."""
    N, C, H, W = x.shape
    O = w.shape[0]
    Ho, Wo = y.shape[2], y.shape[3]
    th, tw = tiles(Ho, Wo)
    U = weight_transform(w, y.dtype)
    b = chunk_images(N, th * tw, C + O, y.dtype)

    def chunk(slot, k, s, e):
        V, M, plane_e, plane_o, tb = _chunk_scratch(slot, C, O, e - s, th, tw, y.dtype)
        winograd_input_nogil(x[s:e], ph, pw, th, tw, V, plane_e, plane_o, tb)
        np.matmul(U, V, out=M)
        winograd_output_nogil(M, th, tw, y[s:e], tb)

    gemm.for_chunks(N, b, chunk)
    return y


def winograd_backward(x, w, dy, ph, pw, want_dw: bool, dx):
    """dW (O, C, 3, 3) or None, and dx (N, C, H, W) filled unless it is None, for dy (N, O, H_out, W_out).

    x is needed for dW only, w for dx only (either may be None when not needed).

    One pass over chunks of the batch; per chunk the input and dy transforms are made once and serve both::

        V = input transform of x;  dM = dy transform       (B^T d B and A dY A^T of every tile)
        dU += dM[xi] @ V[xi]^T                              (16 GEMMs (O x T) @ (T x C); then dW = G^T dU G)
        dV  = U[xi]^T @ dM[xi]                              (16 GEMMs (C x O) @ (O x T), into V's buffer)
        dx  = the tiles B dV B^T added back                 (the adjoint of the input transform)

    The batch sum of dU runs over chunks fixed by the shapes, added in chunk order
    (``gemm.OrderedSum``): the same bits on any thread count.
    """
    N, C = (x if x is not None else dx).shape[:2]
    O, Ho, Wo = dy.shape[1], dy.shape[2], dy.shape[3]
    th, tw = tiles(Ho, Wo)
    b = chunk_images(N, th * tw, C + O, dy.dtype)
    dU = gemm.OrderedSum()
    UT = weight_transform(w, dy.dtype, transposed=True) if dx is not None else None

    def chunk(slot, k, s, e):
        V, dM, plane_e, plane_o, tb = _chunk_scratch(slot, C, O, e - s, th, tw, dy.dtype)
        winograd_dy_nogil(dy[s:e], th, tw, dM, _buffer(slot, "rows", (4, tw), dy.dtype), tb)
        if want_dw:
            winograd_input_nogil(x[s:e], ph, pw, th, tw, V, plane_e, plane_o, tb)
            dU.add(k, np.matmul(dM, V.transpose(0, 2, 1)))      # (16, O, C): sum over the chunk's tiles
        if dx is not None:
            np.matmul(UT, dM, out=V)
            winograd_input_grad_nogil(V, ph, pw, th, tw, dx[s:e], plane_e, plane_o, tb)

    gemm.for_chunks(N, b, chunk)
    return weight_grad_transform(dU.total) if want_dw else None


def winograd_weight_grad(x, dy, ph, pw):
    """dW (O, C, 3, 3) of the stride-1 3x3 correlation, for x (N, C, H, W) and dy (N, O, H_out, W_out)."""
    return winograd_backward(x, None, dy, ph, pw, True, None)


def winograd_input_grad(dy, w, ph, pw, dx):
    """dx (N, C, H, W) of the stride-1 3x3 correlation with w (O, C, 3, 3), for dy (N, O, H_out, W_out)."""
    winograd_backward(None, w, dy, ph, pw, False, dx)
    return dx
