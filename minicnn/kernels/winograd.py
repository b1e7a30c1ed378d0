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
    t  = (n * th + ty) * (tw + 1) + tx             tile number in a chunk of images, n counted in the chunk;
                                                   tx = tw is a padding tile (below), tx < tw the real ones
    Wp = 2 * (tw + 1)                              padded columns of a tile row: tile t starts at 2 * t
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

**Two passes per transform, and the padding tile.** Each transform is the
1-D transform applied twice, first down the columns of every tile, then along
its rows. The first pass runs along whole rows of the padded plane (every
tile of a tile row at once) into a scratch R that holds the chunk's tile rows
one after another, Wp columns each. With one extra tile per tile row, tile t
starts at column 2t of R for *every* t, so the second pass is one flat loop
over all the chunk's tiles. Both passes are long loops over few arrays, which
LLVM vectorizes; the earlier kernels looped over one row of tiles (tw = 16, 8,
4 long) with scalar code, and were 1.5-2.5x slower per transform
(``benchmarks/winograd_measurements.md``, 2026-12-07). The price is the
padding tiles' columns in the GEMMs: 1/tw more (6%, 12.5%, 25% at tw = 16,
8, 4). The padding tiles of V hold values (finite for a finite x) that nothing reads as an
output; the dy transform gives them exactly 0 (they read dy beyond W_out), so
they add nothing to dU, and dV = U^T dM is 0 there too, which dL/dx needs.
The transforms are the matrices above written out as additions;
``tests/test_winograd.py`` checks each kernel against the matrix products and
the dL/dx kernel as the exact adjoint of the input transform.

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
  B dV B^T with the overlapping tiles summed 6 (along a row, a tile's
  three-term sum plus its left neighbour's: four terms, three roundings; the
  same down the columns).
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


# Layout of the transforms (see "A layer" in the module doc): every tile row has tw real tiles and one *padding
# tile* (tx = tw), so the tiles of a chunk, numbered t = (n * th + ty) * (tw + 1) + tx, start at padded column
# 2 * t of R, a scratch holding the chunk's rows of tiles one after another, Wp = 2 * (tw + 1) columns each.
# Each transform is then two passes of long loops with few streams, which LLVM vectorizes: one along the rows of
# the plane (B^T or A^T down the columns of every tile at once) and one flat loop over all the chunk's tiles (the
# same matrix along their rows). Loops over one row of tiles (tw = 16, 8, 4) did not vectorize, and the scalar
# tile loops were 1.3-1.6x the GEMMs they fed (benchmarks/winograd_measurements.md).
# A row outside the image is the zero row, chosen by a conditional expression written out at each use: the same
# choice made in a small inlined helper returning the array was 4-13x slower (2026-12-07).

@njit(nogil=True, cache=True)
def winograd_input_nogil(x, ph, pw, th, tw, V, R, zero):
    """V[xi, c, t] = (B^T d B)[xi] for every 4x4 input tile d of x (b, C, H, W); see the module doc.

    Scratch: R (4, b*th*Wp + 2) with Wp = 2*tw + 2, zero (>= W) all zeros. The padding tiles of V get the
    transform of whatever R holds there: finite values that the output transform never reads and that dW
    multiplies by dM's exact zeros.
    """
    b, C, H, W = x.shape
    Wp = 2 * tw + 2                  # padded columns of a tile row (tw + 1 tiles, 2 columns apart)
    L = th * Wp                      # one image's tile rows in R
    NT = b * th * (tw + 1)           # the chunk's tiles, padding tiles included
    for a in range(4):
        R[a, b * L] = 0              # the last padding tile reads two entries past the rows
        R[a, b * L + 1] = 0
    for c in range(C):
        # 1. B^T down the columns: R[a, n*L + ty*Wp + pc] = sum_i BT[a, i] * padded plane[2ty + i, pc]
        for n in range(b):
            for ty in range(th):
                h = 2 * ty - ph                                  # image row of padded row 2ty
                z0 = x[n, c, h] if 0 <= h < H else zero
                z1 = x[n, c, h + 1] if 0 <= h + 1 < H else zero
                z2 = x[n, c, h + 2] if 0 <= h + 2 < H else zero
                z3 = x[n, c, h + 3] if 0 <= h + 3 < H else zero
                o = n * L + ty * Wp
                for a in range(4):                               # the padding columns, left and right
                    for j in range(pw):
                        R[a, o + j] = 0
                    for j in range(pw + W, Wp):
                        R[a, o + j] = 0
                q0, q1 = R[0, o + pw:o + pw + W], R[1, o + pw:o + pw + W]
                q2, q3 = R[2, o + pw:o + pw + W], R[3, o + pw:o + pw + W]
                for w in range(W):                               # image column w = padded column pw + w
                    r0, r1, r2, r3 = _bt(z0[w], z1[w], z2[w], z3[w])
                    q0[w] = r0
                    q1[w] = r1
                    q2[w] = r2
                    q3[w] = r3
        # 2. B along the rows: tile t's row a is R[a, 2t .. 2t + 3]; position xi = 4a + b'
        for a in range(4):
            src = R[a]
            v0, v1, v2, v3 = V[4 * a, c], V[4 * a + 1, c], V[4 * a + 2, c], V[4 * a + 3, c]
            for t in range(NT):
                r0, r1, r2, r3 = _bt(src[2 * t], src[2 * t + 1], src[2 * t + 2], src[2 * t + 3])
                v0[t] = r0
                v1[t] = r1
                v2[t] = r2
                v3[t] = r3
    return V


@njit(nogil=True, cache=True)
def winograd_output_nogil(M, th, tw, y, R):
    """y[n, o, 2ty + r, 2tx + s] = (A^T M[:, o, t] A)[r, s] for y (b, O, H_out, W_out), cropped at its edges.

    Scratch: R (>= 2, b*th*Wp). Pass 1, for each output row r a flat loop over the chunk's tiles: row r of
    A^T down each tile's four columns, then A^T along it, into R[r, 2t + s] (output row r of every tile row, side
    by side); pass 2 copies them into y, cropped (the padding tiles' values fall beyond W_out).
    """
    b, O, Ho, Wo = y.shape
    Wp = 2 * tw + 2
    NT = b * th * (tw + 1)
    for o in range(O):
        m0, m1, m2, m3 = M[0, o], M[1, o], M[2, o], M[3, o]
        m4, m5, m6, m7 = M[4, o], M[5, o], M[6, o], M[7, o]
        m8, m9, m10, m11 = M[8, o], M[9, o], M[10, o], M[11, o]
        m12, m13, m14, m15 = M[12, o], M[13, o], M[14, o], M[15, o]
        for r in range(2):                                       # output row r of every tile, one pass each
            p = R[r]                                             # (two passes of 12 streams vectorize; one of 16
            for t in range(NT):                                  # did not: 2.3x slower)
                # A^T m, row r: down each column k of the 4x4 tile m[4a + k]
                k0 = _at(m0[t], m4[t], m8[t], m12[t])[r]
                k1 = _at(m1[t], m5[t], m9[t], m13[t])[r]
                k2 = _at(m2[t], m6[t], m10[t], m14[t])[r]
                k3 = _at(m3[t], m7[t], m11[t], m15[t])[r]
                # (A^T m) A: along the row, A^T again
                y0, y1 = _at(k0, k1, k2, k3)
                p[2 * t] = y0
                p[2 * t + 1] = y1
        for n in range(b):
            for ty in range(th):
                src = (n * th + ty) * Wp
                for r in range(min(2, Ho - 2 * ty)):             # output rows 2ty, 2ty + 1 (if < H_out)
                    dst = y[n, o, 2 * ty + r]
                    row = R[r, src:src + Wo]
                    for w in range(Wo):
                        dst[w] = row[w]
    return y


@njit(nogil=True, cache=True)
def winograd_dy_nogil(dy, th, tw, dM, R, zero):
    """dM[xi, o, t] = (A dY A^T)[xi] for every 2x2 tile dY of dy (b, O, H_out, W_out), zero beyond its edges.

    Scratch: R (4, b*th*Wp), zero (>= W_out) all zeros. The padding tiles read columns beyond W_out, which are
    zero: their dM is exactly 0 (what keeps dW exact, see winograd_input_nogil).
    """
    b, O, Ho, Wo = dy.shape
    Wp = 2 * tw + 2
    L = th * Wp
    NT = b * th * (tw + 1)
    for o in range(O):
        # 1. A down the columns: R[a, n*L + ty*Wp + col] = (A (dy[2ty, col], dy[2ty + 1, col]))[a]
        for n in range(b):
            for ty in range(th):
                z0 = dy[n, o, 2 * ty] if 2 * ty < Ho else zero
                z1 = dy[n, o, 2 * ty + 1] if 2 * ty + 1 < Ho else zero
                s = n * L + ty * Wp
                for a in range(4):                               # beyond W_out
                    for j in range(Wo, Wp):
                        R[a, s + j] = 0
                q0, q1, q2, q3 = R[0, s:s + Wo], R[1, s:s + Wo], R[2, s:s + Wo], R[3, s:s + Wo]
                for w in range(Wo):
                    r0, r1, r2, r3 = _a(z0[w], z1[w])
                    q0[w] = r0
                    q1[w] = r1
                    q2[w] = r2
                    q3[w] = r3
        # 2. A along the rows: tile t's row a is R[a, 2t], R[a, 2t + 1]; position xi = 4a + b'
        for a in range(4):
            src = R[a]
            d0, d1, d2, d3 = dM[4 * a, o], dM[4 * a + 1, o], dM[4 * a + 2, o], dM[4 * a + 3, o]
            for t in range(NT):
                r0, r1, r2, r3 = _a(src[2 * t], src[2 * t + 1])
                d0[t] = r0
                d1[t] = r1
                d2[t] = r2
                d3[t] = r3
    return dM


@njit(nogil=True, cache=True)
def winograd_input_grad_nogil(dV, ph, pw, th, tw, dx, R, zero):
    """dx[n, c] = the 4x4 tiles B dV[:, c, t] B^T added back where their input tiles came from (the adjoint of
    winograd_input_nogil, pass by pass, in reverse), cropped to the image: dx (b, C, H, W).

    dV's padding tiles must be zero (they are: dV = U^T dM and dM's padding tiles are 0). Scratch: R (4,
    b*th*Wp); ``zero`` is not used (the signature is the input transform's). Both passes gather (each output sums what reads it), so no entry is
    written twice and the loops vectorize:

        pass 2's adjoint: R[a, 2t + j] = sum_b' BT[b', j] dV[4a + b', t], summed over the two tiles that read
                          it (tile t reads columns 2t .. 2t + 3: column 2t as j = 0 of tile t and j = 2 of t - 1)
        pass 1's adjoint: padded row pr = sum_i BT[a, i] R[a, row of tile row ty] over the tile rows that read it
                          (pr = 2ty + i: tile rows pr // 2 with i = pr % 2, and pr // 2 - 1 with i = pr % 2 + 2)

    The columns of B = (B^T)^T used here: j = 0: (1, 0, 0, 0); 1: (0, 1, -1, 1); 2: (-1, 1, 1, 0); 3: (0, 0, 0, -1).
    """
    b, C, H, W = dx.shape
    Wp = 2 * tw + 2
    L = th * Wp
    NT = b * th * (tw + 1)
    for c in range(C):
        for a in range(4):
            v0, v1, v2, v3 = dV[4 * a, c], dV[4 * a + 1, c], dV[4 * a + 2, c], dV[4 * a + 3, c]
            dst = R[a]
            dst[0] = v0[0]                                       # tile 0 has no left neighbour
            dst[1] = v1[0] - v2[0] + v3[0]
            for t in range(1, NT):
                dst[2 * t] = v0[t] + (v1[t - 1] + v2[t - 1] - v0[t - 1])        # j = 0 of t, j = 2 of t - 1
                dst[2 * t + 1] = (v1[t] - v2[t] + v3[t]) - v3[t - 1]            # j = 1 of t, j = 3 of t - 1
        for n in range(b):
            for h in range(H):
                pr = h + ph                                      # padded row of image row h
                ty1 = pr // 2                                    # the tile rows that read it: ty1 (as i = pr % 2)
                s1 = n * L + ty1 * Wp + pw                       # and ty1 - 1 (as i = pr % 2 + 2); image column 0
                s0 = s1 - Wp                                     # is padded column pw
                both, only1 = ty1 >= 1 and ty1 < th, ty1 < 1     # (a missing tile row adds nothing)
                if pr % 2 == 0:                                  # i = 0 from ty1, i = 2 from ty1 - 1
                    if both:
                        for w in range(W):
                            dx[n, c, h, w] = R[0, s1 + w] + (R[1, s0 + w] + R[2, s0 + w] - R[0, s0 + w])
                    elif only1:
                        for w in range(W):
                            dx[n, c, h, w] = R[0, s1 + w]
                    else:
                        for w in range(W):
                            dx[n, c, h, w] = R[1, s0 + w] + R[2, s0 + w] - R[0, s0 + w]
                else:                                            # i = 1 from ty1, i = 3 from ty1 - 1
                    if both:
                        for w in range(W):
                            dx[n, c, h, w] = (R[1, s1 + w] - R[2, s1 + w] + R[3, s1 + w]) - R[3, s0 + w]
                    elif only1:
                        for w in range(W):
                            dx[n, c, h, w] = R[1, s1 + w] - R[2, s1 + w] + R[3, s1 + w]
                    else:
                        for w in range(W):
                            dx[n, c, h, w] = -R[3, s0 + w]
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
    """One thread's buffers for a chunk of n images: V (16, C, T), M (16, O, T) with T = n*th*(tw + 1) tiles
    (padding tiles included), the transforms' row scratch R (4, n*th*Wp + 2) and a zero row (Wp = 2*tw + 2
    entries, never written). Forward and backward share them."""
    T = n * th * (tw + 1)
    Wp = 2 * tw + 2
    zero = _scratch.get((slot, "zero", np.dtype(dtype)))
    if zero is None or zero.size < Wp:
        zero = _scratch[(slot, "zero", np.dtype(dtype))] = np.zeros(Wp, dtype=dtype)
    return (_buffer(slot, "V", (ALPHA * ALPHA, C, T), dtype), _buffer(slot, "M", (ALPHA * ALPHA, O, T), dtype),
            _buffer(slot, "R", (4, n * th * Wp + 2), dtype), zero[:Wp])


def winograd_forward(x, w, ph, pw, y):
    """y (N, O, H_out, W_out) = the stride-1 correlation of x (N, C, H, W) with w (O, C, 3, 3), zero padding ph, pw."""
    N, C, H, W = x.shape
    O = w.shape[0]
    Ho, Wo = y.shape[2], y.shape[3]
    th, tw = tiles(Ho, Wo)
    U = weight_transform(w, y.dtype)
    b = chunk_images(N, th * (tw + 1), C + O, y.dtype)

    def chunk(slot, k, s, e):
        V, M, R, zero = _chunk_scratch(slot, C, O, e - s, th, tw, y.dtype)
        winograd_input_nogil(x[s:e], ph, pw, th, tw, V, R, zero)
        np.matmul(U, V, out=M)
        winograd_output_nogil(M, th, tw, y[s:e], R)

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
    b = chunk_images(N, th * (tw + 1), C + O, dy.dtype)
    dU = gemm.OrderedSum()
    UT = weight_transform(w, dy.dtype, transposed=True) if dx is not None else None

    def chunk(slot, k, s, e):
        V, dM, R, zero = _chunk_scratch(slot, C, O, e - s, th, tw, dy.dtype)
        winograd_dy_nogil(dy[s:e], th, tw, dM, R, zero)
        if want_dw:
            winograd_input_nogil(x[s:e], ph, pw, th, tw, V, R, zero)
            dU.add(k, np.matmul(dM, V.transpose(0, 2, 1)))      # (16, O, C): sum over the chunk's tiles
        if dx is not None:
            np.matmul(UT, dM, out=V)                            # dV; its padding tiles are 0, as dM's are
            winograd_input_grad_nogil(V, ph, pw, th, tw, dx[s:e], R, zero)

    gemm.for_chunks(N, b, chunk)
    return weight_grad_transform(dU.total) if want_dw else None


def winograd_weight_grad(x, dy, ph, pw):
    """dW (O, C, 3, 3) of the stride-1 3x3 correlation, for x (N, C, H, W) and dy (N, O, H_out, W_out)."""
    return winograd_backward(x, None, dy, ph, pw, True, None)


def winograd_input_grad(dy, w, ph, pw, dx):
    """dx (N, C, H, W) of the stride-1 3x3 correlation with w (O, C, 3, 3), for dy (N, O, H_out, W_out)."""
    winograd_backward(None, w, dy, ph, pw, False, dx)
    return dx
