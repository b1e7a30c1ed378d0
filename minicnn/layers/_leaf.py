"""Small helpers shared by the leaf layers (argument parsing, shape checks)."""
from __future__ import annotations

import numbers

import numpy as np

from .base import ShapeError


def pair(value, what: str, minimum: int = 1) -> tuple[int, int]:
    """An int or a pair of ints -> (a, b), each >= minimum (ValueError otherwise)."""
    if isinstance(value, numbers.Integral):
        value = (value, value)
    try:
        a, b = value
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be an int or a pair of ints, got {value!r}") from None
    for v in (a, b):
        if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < minimum:
            raise ValueError(f"{what} must be int(s) >= {minimum}, got {value!r}")
    return int(a), int(b)


def positive_int(value, what: str) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{what} must be a positive int, got {value!r}")
    return int(value)


def check_shape(layer, shape, ndim: int, channels: int | None = None, what: str = "channels") -> tuple:
    """Raise a ShapeError naming ``layer`` if an input of ``shape`` does not fit."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != ndim:
        raise ShapeError(f"{layer.name}: expected a {ndim}-D input, got input of shape {shape}")
    if channels is not None and shape[1] != channels:
        raise ShapeError(f"{layer.name}: expected {channels} input {what}, got input of shape {shape}")
    return shape


def as_input(layer, x) -> np.ndarray:
    """x as a C-contiguous array of the layer's dtype (no copy when it already is one)."""
    return np.ascontiguousarray(x, dtype=layer.dtype)


def as_grad(layer, dy, expected_shape) -> np.ndarray:
    """dy as a C-contiguous array of the layer's dtype, checked against the output shape."""
    dy = np.ascontiguousarray(dy, dtype=layer.dtype)
    if dy.shape != tuple(expected_shape):
        raise ShapeError(f"{layer.name}: backward expected a gradient of shape {tuple(expected_shape)}, "
                         f"got {dy.shape}")
    return dy


def need_cache(layer):
    """The forward cache, or a clear error if backward comes before forward."""
    if layer.cache is None:
        raise RuntimeError(f"{layer.name}: backward() called before forward() "
                           "(or twice for one forward)")
    return layer.cache


def uniform_init(rng, bound: float, shape) -> np.ndarray:
    """U(-bound, bound), PyTorch's default for conv/linear (kaiming_uniform with a=sqrt(5))."""
    return rng.uniform(-bound, bound, size=shape)
