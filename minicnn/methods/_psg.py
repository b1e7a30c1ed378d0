"""The predictive sign rule of PSG (E2-Train §3.3, Eq. 2), as a pure function.

Given the predicted weight gradient ``g_w^msb`` (from the MSB predictors of
x and g_y) and the weight gradient ``g_w`` (from the full fixed-point
operands), with ``tau = beta * max_i |g_w^msb[i]|`` per layer (the
"adaptive threshold" of §3.3, printed there as beta * max_i {g_w^msb[i]}
without the absolute value, which the official ``predictive.py`` takes;
beta = 0.05 in §4.4)::

    direction[i] = sgn(g_w^msb[i])   if |g_w^msb[i]| >= tau       (the cheap predictor decides)
                   sgn(g_w[i])       otherwise                     (fall back to the full gradient)

SGD with momentum and weight decay then applies to that sign, as for signSGD.

Choices: ``>=`` as in Eq. 2 and the official ``predictive.py`` (its
``new_conv.py`` variant uses ``<=`` for the fallback, i.e. ``>`` for the
predictor: they differ only on ties). When the predictor is all zero, tau is
0 and every entry is "decided" with sign 0 (no update), as the official
code does; this happens only when x or g_y is all zero, and then g_w is zero too.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np



class SignRule(NamedTuple):
    direction: np.ndarray     # in {-1, 0, +1}, g_w's dtype and shape
    predicted: np.ndarray     # bool: True where the MSB predictor decided
    tau: float


def psg_sign_rule(g_msb: np.ndarray, g_full: np.ndarray, beta: float) -> SignRule:
    """Eq. 2 with the adaptive threshold tau = beta * max|g_msb| (one layer's weight gradient)."""
    if g_msb.shape != g_full.shape:
        raise ValueError(f"g_msb {g_msb.shape} and g_full {g_full.shape} must have the same shape")
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    mag = np.abs(g_msb)
    tau = float(beta) * float(mag.max()) if mag.size else 0.0
    predicted = mag >= tau
    direction = np.where(predicted, np.sign(g_msb), np.sign(g_full)).astype(g_full.dtype, copy=False)
    return SignRule(direction, predicted, tau)


def sign_agreement(g_msb: np.ndarray, g_full: np.ndarray, where: np.ndarray | None = None) -> float:
    """Fraction of entries (optionally only where ``where``) whose predicted sign equals the full one."""
    same = np.sign(g_msb) == np.sign(g_full)
    if where is not None:
        same = same[where]
    return float(same.mean()) if same.size else 1.0
