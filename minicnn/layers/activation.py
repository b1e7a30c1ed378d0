"""ReLU: y = max(x, 0); dx = dy * [y > 0].

The cache is the output y itself (a reference, no copy): ``y > 0`` is the
mask, so backward needs nothing else. Any input shape is accepted.
"""
from __future__ import annotations

import numpy as np

from ..kernels.elementwise import relu_backward, relu_forward
from ._leaf import as_grad, as_input, need_cache
from .base import Layer, ShapeError


class ReLU(Layer):
    """Elementwise rectifier (numba, parallel); no parameters."""

    def output_shape(self, input_shape):
        shape = tuple(int(s) for s in input_shape)
        if len(shape) < 1:
            raise ShapeError(f"{self.name}: expected an input with at least 1 dimension, got shape {shape}")
        return shape

    def forward(self, x):
        x = as_input(self, x)
        self.output_shape(x.shape)
        y = np.empty_like(x)
        relu_forward(x.reshape(-1), y.reshape(-1))
        self.cache = y
        return y

    def backward(self, dy):
        y = need_cache(self)
        dy = as_grad(self, dy, y.shape)
        dx = None
        if self.needs_input_grad:
            dx = np.empty_like(y)
            relu_backward(y.reshape(-1), dy.reshape(-1), dx.reshape(-1))
        self.cache = None
        return dx
