"""Bit-exact fixed-point emulation (E2-Train §3.3, §4.4; the official code's quantizer).

* :mod:`.fixed`      numba kernels: quantize to a b-bit code grid (nearest or
                     stochastic rounding), dequantize, and the MSB predictor
* :mod:`.reference`  the same maths in plain NumPy, for tests and lessons

The values stay floating point (float32 or float64 arrays); what is emulated
is the *grid*: every quantized value is exactly ``code * step + lo`` for an
integer code in ``[0, 2**bits - 1]``, as a b-bit fixed-point unit would hold it.
"""
from .fixed import (activation_range, activation_range_and_sign, fixed_point, gradient_range, grid, msb_codes, quantize,
                    weight_range)

__all__ = ["activation_range", "activation_range_and_sign", "weight_range", "gradient_range", "grid", "fixed_point", "quantize", "msb_codes"]
