"""Fixed-point quantization kernels: the b-bit grid, rounding, and the MSB predictor.

The grid (E2-Train's official quantizer, ``models/quantize.py``; §4.4 uses
8-bit activations and weights, 16-bit gradients)::

    r     range of the tensor (or of one row of it), see the *_range functions
    lo    0 for a non-negative tensor (after a ReLU), -r otherwise
    step  (r - lo) / 2**b
    code  q = round(clip((x - lo) / step, 0, 2**b - 1))      an integer in [0, 2**b - 1]
    value q * step + lo

``round`` is round-half-to-even (``np.rint``, like ``torch.round`` in the
official code). The top code is ``2**b - 1``, so ``r`` itself saturates to
``r - step``: the grid has ``2**b`` points ``lo, lo + step, ..., r - step``.
Stochastic rounding (Gupta et al. 2015) is an option: ``q = floor(v + u)``
with ``u ~ U[0, 1)`` drawn from a given Generator, so ``E[q] = v``; the
official code accepts a ``stochastic`` flag but never uses it (its
quantizer always rounds to nearest), and so does minicnn by default.

MSB predictor (E2-Train §3.3): the ``m`` most significant bits of a b-bit
code. The paper says "taking the MSBs", i.e. truncation ``(q >> (b-m)) <<
(b-m)``; the official code (``EfficientFPQuantizeFunction``) *rounds* the
code to the nearest multiple of ``u = 2**(b-m)`` and clips to the top code::

    q_msb = min(round(q / u) * u, 2**b - 1)

minicnn follows the official code (rounding: unbiased, where truncation
would always shrink magnitudes towards ``lo``). The predictor value is
``q_msb * step + lo``: a point of the coarse grid (multiples of ``u``) or
the top code.

Ranges per tensor kind (as the official code computes them):

==============  =====================================================  ================
kind            r                                                       shape of r
==============  =====================================================  ================
activation      per-sample max|x|, averaged over the batch              (1,)
                (evaluation uses a running average: the method keeps it)
weight          max|w| per output filter (first axis)                   (out_channels,)
gradient        max|g| of the whole tensor                              (1,)
==============  =====================================================  ================

Everything is computed in float64 (codes, steps, values) and the value is
stored in the array's dtype; the official code computes in float32, so the
last bit of a value can differ from it. What *is* exact is minicnn's own
consistency: the numba kernel here and the NumPy reference
(:mod:`minicnn.quant.reference`) agree bit for bit (tests/test_quant.py).

Edge cases: an all-zero tensor has ``r = 0`` and ``step = 0``: every code is
0 and every value is ``lo = 0``. A non-finite range (a NaN or inf in the
tensor) is an error.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit, prange

_CHUNK = 32768  # elements per parallel task

_EMPTY_F64 = np.empty(0, dtype=np.float64)


@njit(parallel=True, cache=True)
def _fixed_point_kernel(x, row_len, lo, step, qmax, unit, u, value_out, msb_out, code_out):
    """One pass over flat ``x``: element i is in row ``i // row_len`` (its own lo, step).

    u: uniforms for stochastic rounding (size 0: round to nearest).
    value_out / msb_out / code_out: flat outputs; size 0 skips one.
    unit = 2**(bits - msb_bits) (ignored when msb_out is empty).
    """
    n = x.size
    nchunks = (n + _CHUNK - 1) // _CHUNK
    stochastic = u.size > 0
    want_v, want_m, want_c = value_out.size > 0, msb_out.size > 0, code_out.size > 0
    for k in prange(nchunks):
        start = k * _CHUNK
        stop = min(start + _CHUNK, n)
        for i in range(start, stop):
            r = i // row_len
            s = step[r]
            l = lo[r]
            q = 0.0
            if s > 0.0:
                v = (np.float64(x[i]) - l) / s
                if v < 0.0:
                    v = 0.0
                elif v > qmax:
                    v = qmax
                if stochastic:
                    q = math.floor(v + u[i])
                    if q > qmax:      # v + u can round up to qmax + 1 in float64
                        q = qmax
                else:
                    q = np.rint(v)
            if want_v:
                value_out[i] = q * s + l
            if want_c:
                code_out[i] = q
            if want_m:
                m = np.rint(q / unit) * unit
                if m > qmax:
                    m = qmax
                msb_out[i] = m * s + l
    return value_out


class Quantized(NamedTuple):
    """What :func:`fixed_point` returns; ``msb`` and ``code`` are None unless asked for."""
    value: np.ndarray      # q * step + lo, in x's dtype and shape
    msb: np.ndarray | None     # q_msb * step + lo (the predictor), same dtype and shape
    code: np.ndarray | None    # the integer codes q (int64)
    lo: np.ndarray         # (R,) float64
    step: np.ndarray       # (R,) float64


# -- ranges -------------------------------------------------------------------------------
def activation_range(x: np.ndarray) -> np.ndarray:
    """r = mean over the batch of each sample's max|x| (shape (1,), float64)."""
    N = x.shape[0]
    per_sample = np.abs(x.reshape(N, -1)).max(axis=1).astype(np.float64)
    return np.array([per_sample.mean()])


def weight_range(w: np.ndarray) -> np.ndarray:
    """r = max|w| per output filter (first axis), shape (out_channels,), float64."""
    return np.abs(w.reshape(w.shape[0], -1)).max(axis=1).astype(np.float64)


def gradient_range(g: np.ndarray) -> np.ndarray:
    """r = max|g| of the whole tensor (shape (1,), float64)."""
    return np.array([float(np.abs(g).max())])


def grid(r, bits: int, signed: bool):
    """(lo, step) float64 arrays for ranges ``r``: lo = -r (signed) or 0, step = (r - lo) / 2**bits."""
    if not 1 <= int(bits) <= 30:
        raise ValueError(f"bits must be in 1..30, got {bits}")
    r = np.atleast_1d(np.asarray(r, dtype=np.float64))
    if not np.all(np.isfinite(r)) or np.any(r < 0):
        raise ValueError(f"a quantization range must be finite and >= 0, got {r[~(np.isfinite(r) & (r >= 0))][:3]}"
                         " (is there a NaN or inf in the tensor?)")
    lo = -r if signed else np.zeros_like(r)
    return lo, (r - lo) / 2.0 ** int(bits)


def fixed_point(x: np.ndarray, bits: int, r, signed: bool, *, msb_bits: int | None = None,
                rng: np.random.Generator | None = None, want_code: bool = False) -> Quantized:
    """Quantize ``x`` to the b-bit grid of range ``r`` (see the module docstring).

    Args:
        x: any shape, float32 or float64.
        bits: b, the code width.
        r: the range: a scalar/(1,) for the whole tensor, or (x.shape[0],) for one range per row
            (per output filter of a weight).
        signed: lo = -r if True, else lo = 0 (a non-negative tensor).
        msb_bits: m <= b: also return the MSB predictor of every code.
        rng: a Generator: stochastic rounding with uniforms drawn from it (default: round to nearest).
        want_code: also return the integer codes.
    """
    x = np.ascontiguousarray(x)
    lo, step = grid(r, bits, signed)
    rows = lo.size
    if rows != 1 and (x.ndim == 0 or x.shape[0] != rows):
        raise ValueError(f"{rows} ranges for a tensor of shape {x.shape}: expected 1 or one per row (first axis)")
    row_len = max(1, x.size // rows)
    qmax = float(2 ** int(bits) - 1)
    unit = 1.0
    if msb_bits is not None:
        if not 1 <= int(msb_bits) <= int(bits):
            raise ValueError(f"msb_bits must be in 1..bits={bits}, got {msb_bits}")
        unit = float(2 ** (int(bits) - int(msb_bits)))
    flat = x.reshape(-1)
    u = rng.random(flat.size) if rng is not None else _EMPTY_F64
    value = np.empty_like(flat)
    msb = np.empty_like(flat) if msb_bits is not None else np.empty(0, dtype=flat.dtype)
    code = np.empty(flat.size if want_code else 0, dtype=np.int64)
    _fixed_point_kernel(flat, row_len, lo, step, qmax, unit, u, value, msb, code)
    return Quantized(value.reshape(x.shape),
                     msb.reshape(x.shape) if msb_bits is not None else None,
                     code.reshape(x.shape) if want_code else None, lo, step)


def quantize(x: np.ndarray, bits: int, r, signed: bool, rng: np.random.Generator | None = None) -> np.ndarray:
    """Just the quantized values of :func:`fixed_point`."""
    return fixed_point(x, bits, r, signed, rng=rng).value


def msb_codes(code: np.ndarray, bits: int, msb_bits: int) -> np.ndarray:
    """The MSB predictor of integer codes: min(round(q / 2**(b-m)) * 2**(b-m), 2**b - 1) (int64)."""
    unit = 2 ** (int(bits) - int(msb_bits))
    return np.minimum(np.rint(np.asarray(code, dtype=np.float64) / unit) * unit, 2 ** int(bits) - 1).astype(np.int64)
