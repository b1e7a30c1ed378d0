"""Fixed-point quantization kernels: the b-bit grid, rounding, and the MSB predictor.

The grid (E2-Train's official quantizer, ``models/quantize.py``; §4.4 uses
8-bit activations and weights, 16-bit gradients)::

    r     range of the tensor (or of one row of it), see the *_range functions
    lo    0 for a non-negative tensor (after a ReLU), -r otherwise
    step  (r - lo) / 2**b
    code  q = round(clip((x - lo) * (1 / step), 0, 2**b - 1))  an integer in [0, 2**b - 1]
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
last bit of a value can differ from it. (x - lo) is multiplied by the
float64 reciprocal of step rather than divided by step (since 2026-12-06:
2.3x faster; v may differ from the quotient in its last float64 bit, which
changes a code only when v lies within that bit of a rounding boundary). What *is* exact is minicnn's own
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


def _fixed_point_loop(x, row_len, lo, step, qmax, unit, u, value_out, msb_out, code_out):
    """One pass over flat ``x``, seen as ``len(lo)`` rows of ``row_len`` (row r has its own lo[r], step[r]).

    u: uniforms for stochastic rounding (size 0: round to nearest).
    value_out / msb_out / code_out: flat outputs; size 0 skips one.
    unit = 2**(bits - msb_bits) (ignored when msb_out is empty); a power of two, so the kernel
    multiplies by its exact reciprocal where the reference divides.

    The work is cut into tasks of at most ``_CHUNK`` elements inside one row, so
    an element's row is known without a division, and the inner loop has no
    branch on what to write (the common cases -- value alone, value and MSB,
    rounding to nearest -- have loops of their own). Same operations, in the
    same order, as :func:`minicnn.quant.reference.fixed_point_naive`: bit-equal.
    """
    rows = lo.size
    per_row = (row_len + _CHUNK - 1) // _CHUNK
    inv_unit = 1.0 / unit      # unit is a power of two: q * inv_unit == q / unit exactly (the reference divides)
    stochastic = u.size > 0
    want_v, want_m, want_c = value_out.size > 0, msb_out.size > 0, code_out.size > 0
    for k in prange(rows * per_row):
        r = k // per_row
        start = r * row_len + (k % per_row) * _CHUNK
        stop = min(start + _CHUNK, (r + 1) * row_len)
        s = step[r]
        l = lo[r]
        # multiply by 1/step, not divide: a float64 division per entry was most of the pass (2.3x slower); the
        # reference does the same. A step below ~2^-1024 has no float64 reciprocal: such a row divides.
        inv_s = 1.0 / s if s > 0.0 else 0.0
        divide = math.isinf(inv_s)
        xs = x[start:stop]
        if s <= 0.0:                                # all-zero range: code 0, value 0 * step + lo
            z = 0.0 * s + l                         # (+0.0 when lo is -0.0, as the reference has it)
            if want_v:
                value_out[start:stop] = z
            if want_c:
                code_out[start:stop] = 0
            if want_m:
                msb_out[start:stop] = z
        elif not divide and not stochastic and want_v and not want_c and not want_m:
            vs = value_out[start:stop]              # the value alone (weights, fixed8's gradients)
            for i in range(xs.size):
                v = (np.float64(xs[i]) - l) * inv_s
                v = 0.0 if v < 0.0 else v           # clip (a NaN stays NaN, as np.clip leaves it)
                v = qmax if v > qmax else v
                vs[i] = np.rint(v) * s + l
        elif not divide and not stochastic and want_v and not want_c and want_m:
            vs = value_out[start:stop]              # value and MSB predictor (PSG's x and g_y)
            ms = msb_out[start:stop]
            for i in range(xs.size):
                v = (np.float64(xs[i]) - l) * inv_s
                v = 0.0 if v < 0.0 else v
                v = qmax if v > qmax else v
                q = np.rint(v)
                vs[i] = q * s + l
                m = np.rint(q * inv_unit) * unit
                m = qmax if m > qmax else m
                ms[i] = m * s + l
        else:
            for i in range(start, stop):            # everything else: stochastic rounding, codes, a tiny step
                v = (np.float64(x[i]) - l) / s if divide else (np.float64(x[i]) - l) * inv_s
                v = 0.0 if v < 0.0 else v
                v = qmax if v > qmax else v
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
                    m = np.rint(q * inv_unit) * unit
                    m = qmax if m > qmax else m
                    msb_out[i] = m * s + l
    return value_out


#: the same loop compiled twice: parallel for large tensors, serial below SERIAL_BELOW elements (a
#: weight tensor), where waking the thread pool costs more than the work (same code: same bits)
SERIAL_BELOW = 2 * _CHUNK
_fixed_point_kernel = njit(parallel=True, cache=True)(_fixed_point_loop)
_fixed_point_serial = njit(cache=True)(_fixed_point_loop)


def _row_absmax_negative_loop(bits, mask, inf, absmax_bits, negative):
    """absmax_bits[r] = the bits of max_j |x2[r, j]|, negative[r] = any x2[r, j] < 0, one pass over the rows.

    ``bits`` is the float array seen as unsigned integers of its width (``x2.view(np.uint32)`` for float32,
    uint64 for float64) and ``mask`` = all bits but the sign. It works on the bits because IEEE-754 orders
    non-negative floats as their bit patterns order as integers (+0, subnormals, normals, then inf and the
    NaNs above every finite value): clearing the sign bit gives |x|, and the integer max of those is the bits
    of max|x| -- exact, and an integer max vectorizes where a float max with NaN semantics does not (3-5x
    faster). A NaN or inf in a row shows as absmax bits at or above ``inf``, the exponent mask (handled by
    the caller). x < 0 is "sign bit set, not -0.0 and not a NaN" (x86 makes NaNs with the sign bit set).
    """
    R, M = bits.shape
    for r in prange(R):
        a = bits.dtype.type(0)
        neg = False
        for j in range(M):
            b = bits[r, j]
            m = b & mask                  # |x| as bits
            a = max(a, m)
            neg |= (b > mask) & (m != 0) & (m <= inf)  # sign bit set, not -0.0, not a NaN (-inf is < 0)
        absmax_bits[r] = a
        negative[r] = neg


_row_absmax_negative_kernel = njit(parallel=True, cache=True)(_row_absmax_negative_loop)
_row_absmax_negative_serial = njit(cache=True)(_row_absmax_negative_loop)

#: per float dtype: (the unsigned integer of its width, all bits but the sign, the exponent bits = +inf)
_BITS = {np.dtype(np.float32): (np.uint32, 0x7FFFFFFF, 0x7F800000),
         np.dtype(np.float64): (np.uint64, 0x7FFFFFFFFFFFFFFF, 0x7FF0000000000000)}


def row_absmax_negative(x2: np.ndarray):
    """(max|x| per row as float64, NaN for a row with a NaN or inf; whether each row has an entry < 0), for a
    2-D float32 or float64 array, in one pass (other dtypes: NumPy)."""
    x2 = np.ascontiguousarray(x2)
    if x2.size == 0:
        raise ValueError(f"the range of an empty tensor (shape {x2.shape}) is undefined")
    if x2.dtype not in _BITS:                  # float16, integers (cast first: abs(-128) overflows in int8)
        a = np.abs(x2.astype(np.float64)).max(axis=1)
        return np.where(np.isfinite(a), a, np.nan), (x2 < 0).any(axis=1)
    uint, mask, inf = _BITS[x2.dtype]
    absmax_bits = np.empty(x2.shape[0], dtype=uint)
    negative = np.empty(x2.shape[0], dtype=np.bool_)
    kernel = _row_absmax_negative_serial if x2.size < SERIAL_BELOW else _row_absmax_negative_kernel
    kernel(x2.view(uint), uint(mask), uint(inf), absmax_bits, negative)
    absmax = absmax_bits.view(x2.dtype).astype(np.float64)
    absmax[absmax_bits >= uint(inf)] = np.nan
    return absmax, negative


class Quantized(NamedTuple):
    """What :func:`fixed_point` returns; ``msb`` and ``code`` are None unless asked for."""
    value: np.ndarray      # q * step + lo, in x's dtype and shape
    msb: np.ndarray | None     # q_msb * step + lo (the predictor), same dtype and shape
    code: np.ndarray | None    # the integer codes q (int64)
    lo: np.ndarray         # (R,) float64
    step: np.ndarray       # (R,) float64


# -- ranges (numba, one pass each; the NumPy definitions are in minicnn.quant.reference) ----------
def _rows(x: np.ndarray) -> np.ndarray:
    """x as (first axis, rest) rows, contiguous."""
    if x.size == 0:
        raise ValueError(f"the range of an empty tensor (shape {x.shape}) is undefined")
    return np.ascontiguousarray(x).reshape(x.shape[0] if x.ndim else 1, -1)


def activation_range(x: np.ndarray) -> np.ndarray:
    """r = mean over the batch of each sample's max|x| (shape (1,), float64)."""
    return activation_range_and_sign(x)[0]


def activation_range_and_sign(x: np.ndarray):
    """(activation_range(x), whether x has a negative entry) from one pass over x.

    The sign decides the grid of a conv input (signed when negative values occur, see
    :mod:`minicnn.methods.psg`); computing it with the range saves a pass over the tensor.
    """
    absmax, negative = row_absmax_negative(_rows(x))
    return np.array([absmax.mean()]), bool(negative.any())


def weight_range(w: np.ndarray) -> np.ndarray:
    """r = max|w| per output filter (first axis), shape (out_channels,), float64."""
    return row_absmax_negative(_rows(w))[0]


def gradient_range(g: np.ndarray) -> np.ndarray:
    """r = max|g| of the whole tensor (shape (1,), float64)."""
    absmax = row_absmax_negative(_rows(g))[0]
    return np.array([float(absmax.max())])


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
    kernel = _fixed_point_serial if flat.size < SERIAL_BELOW else _fixed_point_kernel
    kernel(flat, row_len, lo, step, qmax, unit, u, value, msb, code)
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
