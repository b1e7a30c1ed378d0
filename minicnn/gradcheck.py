"""Numerical gradient checking (central differences), CS231n style.

For a function f and an upstream gradient dy, the scalar ``L(x) = sum(f(x) * dy)``
has ``dL/dx = J_f(x)^T dy``, which is exactly what a layer's backward returns
for that dy. Central differences approximate it entry by entry::

    dL/dx_i ~= (L(x + h e_i) - L(x - h e_i)) / (2h)       error O(h^2)

Run checks in float64. The rounding error of one entry is about
1e-16 * |f| / h and the truncation error is O(h^2) (zero for piecewise-linear
layers), so with h = 1e-5 (what :func:`check_layer_gradients` uses) a correct
backward agrees to a CS231n relative error well below 1e-6; a wrong one is
off by far more.
"""
from __future__ import annotations

import numpy as np


def numerical_gradient(f, x: np.ndarray, dy: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """d/dx sum(f(x) * dy) by central differences: ``sum((f(x+h e_i) - f(x-h e_i)) * dy) / 2h``.

    ``x`` is perturbed *in place* one entry at a time (and restored), so ``f``
    may ignore its argument and read a parameter array that is ``x`` itself.
    """
    grad = np.zeros(x.shape, dtype=np.float64)
    flat = x.reshape(-1)  # a view: x must be contiguous
    if not np.shares_memory(flat, x):
        raise ValueError("numerical_gradient needs a contiguous x (it perturbs x in place)")
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        fp = np.array(f(x), dtype=np.float64)  # a copy: f may reuse its output buffer
        flat[i] = old - h
        fm = np.array(f(x), dtype=np.float64)  # a copy too: f(x) may be a view of x
        flat[i] = old
        # difference first, then the sum: outputs that x_i does not touch cancel exactly
        grad.reshape(-1)[i] = np.sum((fp - fm) * dy) / (2 * h)
    return grad


def rel_error(a, b) -> float:
    """max_i |a_i - b_i| / max(1e-8, |a_i| + |b_i|)  (CS231n's relative error)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes differ, {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


def check_layer_gradients(layer, x: np.ndarray, rng: np.random.Generator, h: float = 1e-5) -> dict[str, float]:
    """rel_error between a layer's backward and central differences, for x and every param.

    Draws a random upstream gradient dy ~ N(0, 1), runs forward and backward once
    (the layer's ``needs_input_grad`` and ``requires_grad`` are honoured: entries
    that were not computed are left out), then compares with
    :func:`numerical_gradient`. The layer should be float64. Returns
    ``{"x": err, "weight": err, ...}``.
    """
    x = np.array(x, dtype=layer.dtype)  # a private, contiguous copy
    y = layer.forward(x)
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy.astype(layer.dtype))
    errors = {}
    if dx is not None:
        errors["x"] = rel_error(dx, numerical_gradient(layer.forward, x, dy, h))
    for name, p in layer.params.items():
        g = layer.grads.get(name)
        if g is None:
            continue
        errors[name] = rel_error(g, numerical_gradient(lambda _: layer.forward(x), p, dy, h))
    return errors
