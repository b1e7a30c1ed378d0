"""Linear (fully connected) and Flatten layers.

Linear, PyTorch's convention (weight is (out_features, in_features))::

    y  = x @ W.T + b           x: (N, in), y: (N, out)
    dW = dy.T @ x              db = sum_n dy[n]          dx = dy @ W

Cache: a reference to x. Init: W, b ~ U(-1/sqrt(in), 1/sqrt(in)) (PyTorch default).
The three products are ``matmul(a, b)`` = ``a @ b`` with the rows split over
minicnn's threads (``minicnn.kernels.gemm``; NumPy's BLAS is single-threaded here).

Flatten: (N, d1, d2, ...) -> (N, d1*d2*...), a view; backward reshapes dy back.
"""
from __future__ import annotations

import math

import numpy as np

from ..kernels.gemm import matmul
from ._leaf import as_grad, as_input, need_cache, positive_int, uniform_init
from .base import Layer, ShapeError


class Linear(Layer):
    """Linear(in_features, out_features, bias=True, dtype=np.float32, rng=None)."""

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32, rng=None):
        super().__init__(dtype)
        self.in_features = positive_int(in_features, "Linear in_features")
        self.out_features = positive_int(out_features, "Linear out_features")
        rng = np.random.default_rng(0) if rng is None else rng
        bound = 1.0 / math.sqrt(self.in_features)
        self.add_param("weight", uniform_init(rng, bound, (self.out_features, self.in_features)))
        if bias:
            self.add_param("bias", uniform_init(rng, bound, (self.out_features,)))

    def output_shape(self, input_shape):
        shape = tuple(int(v) for v in input_shape)
        if len(shape) < 1 or shape[-1] != self.in_features:
            raise ShapeError(f"{self.name}: expected {self.in_features} input features (last dim), "
                             f"got input of shape {shape}")
        return shape[:-1] + (self.out_features,)

    def forward(self, x):
        """y = x W^T + b over the last dim; leading dims (usually just N) are kept, as in PyTorch."""
        x = as_input(self, x)
        out_shape = self.output_shape(x.shape)
        x2 = x.reshape(-1, self.in_features)           # (rows, in): every leading index is a row
        y = matmul(x2, self.params["weight"].T)           # x @ W^T
        if "bias" in self.params:
            y += self.params["bias"]
        self.cache = (x2, x.shape)
        return y.reshape(out_shape)

    def backward(self, dy):
        """dW = dy^T x, db = sum of dy over rows, dx = dy W (rows as in forward)."""
        x2, x_shape = need_cache(self)
        dy = as_grad(self, dy, tuple(x_shape[:-1]) + (self.out_features,))
        dy2 = dy.reshape(-1, self.out_features)
        if self.wants_grad("weight"):
            self.grads["weight"] = matmul(dy2.T, x2)      # dy^T @ x
        if self.wants_grad("bias"):
            self.grads["bias"] = dy2.sum(axis=0)
        dx = matmul(dy2, self.params["weight"]).reshape(x_shape) if self.needs_input_grad else None   # dy @ W
        self.cache = None
        return dx

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={'bias' in self.params}"


class Flatten(Layer):
    """(N, ...) -> (N, prod(...)) as a view (like torch.nn.Flatten())."""

    def output_shape(self, input_shape):
        shape = tuple(int(s) for s in input_shape)
        if len(shape) < 2:
            raise ShapeError(f"{self.name}: expected an input with at least 2 dimensions, got input of shape {shape}")
        return (shape[0], int(np.prod(shape[1:])))

    def forward(self, x):
        x = as_input(self, x)
        out_shape = self.output_shape(x.shape)
        self.cache = x.shape
        return x.reshape(out_shape)

    def backward(self, dy):
        x_shape = need_cache(self)
        dy = as_grad(self, dy, self.output_shape(x_shape))
        self.cache = None
        return dy.reshape(x_shape) if self.needs_input_grad else None
