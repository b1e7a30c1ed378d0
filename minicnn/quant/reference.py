"""The fixed-point grid in plain NumPy: the definition the numba kernel is tested against.

Same maths, same operation order as :mod:`minicnn.quant.fixed` (float64
throughout, the value cast to x's dtype at the end), so the two agree bit
for bit. Read this one first.
"""
from __future__ import annotations

import numpy as np


def fixed_point_naive(x, bits, lo, step, msb_bits=None, u=None):
    """Returns (value, msb value or None, code) for x viewed as (len(lo), -1) rows.

    lo, step: (R,) float64 arrays (one per row); u: uniforms of x.size for stochastic rounding.
    """
    rows = len(lo)
    x2 = np.asarray(x, dtype=np.float64).reshape(rows, -1)
    qmax = float(2 ** bits - 1)
    lo2, step2 = np.asarray(lo, np.float64)[:, None], np.asarray(step, np.float64)[:, None]
    live = np.broadcast_to(step2 > 0, x2.shape)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        inv = 1.0 / step2                                   # (x - lo) / step, clipped to [0, 2^b - 1], computed as
        v = np.where(np.isinf(inv), (x2 - lo2) / step2, (x2 - lo2) * inv)   # the kernel does: times 1/step,
        v = np.clip(v, 0.0, qmax)                           # divided where 1/step overflows (step < ~2^-1024)
    if u is None:
        q = np.rint(v)                                      # round half to even
    else:
        q = np.minimum(np.floor(v + np.asarray(u, np.float64).reshape(x2.shape)), qmax)
    q = np.where(live, q, 0.0)                              # step 0 (all-zero tensor): code 0
    value = (q * step2 + lo2).astype(x.dtype).reshape(x.shape)
    msb = None
    if msb_bits is not None:
        unit = float(2 ** (bits - msb_bits))
        m = np.minimum(np.rint(q / unit) * unit, qmax)     # nearest multiple of 2^(b-m), clipped to the top code
        msb = (m * step2 + lo2).astype(x.dtype).reshape(x.shape)
    return value, msb, q.astype(np.int64).reshape(x.shape)


def msb_truncate_naive(code, bits, msb_bits):
    """What the paper's words "taking the MSBs" would give: the low b-m bits cleared (for comparison)."""
    shift = bits - msb_bits
    return (np.asarray(code, dtype=np.int64) >> shift) << shift


# -- ranges: the definitions the fused numba pass (minicnn.quant.fixed.row_absmax_negative) is tested against --
def activation_range_naive(x):
    """Mean over the batch of each sample's max|x|, (1,) float64; and whether x has a negative entry."""
    N = x.shape[0]
    per_sample = np.abs(x.reshape(N, -1)).max(axis=1).astype(np.float64)
    return np.array([per_sample.mean()]), bool((x < 0).any())


def weight_range_naive(w):
    """max|w| per output filter (first axis), (out_channels,) float64."""
    return np.abs(w.reshape(w.shape[0], -1)).max(axis=1).astype(np.float64)


def gradient_range_naive(g):
    """max|g| of the whole tensor, (1,) float64."""
    return np.array([float(np.abs(g).max())])
