"""Pooling layers: MaxPool2d, AvgPool2d (no padding), GlobalAvgPool2d.

Windows (see minicnn.kernels.pooling)::

    h_in = h_out * stride_h + i,    H_out = (H - kh) // stride_h + 1

MaxPool2d: y = max over the window; backward routes dy to the argmax (the
first maximum in row-major order on ties, as PyTorch), overlapping windows
add. Cache: the argmax indices (int32, one per output value).
AvgPool2d: y = mean over the window; backward spreads dy/(kh*kw) over it.
Cache: only the input shape.
GlobalAvgPool2d: (N, C, H, W) -> (N, C), y = mean over H, W; dx = dy/(H*W)
broadcast over the plane.
"""
from __future__ import annotations

import numpy as np

from ..kernels.pooling import avgpool2d_backward, avgpool2d_forward, maxpool2d_backward, maxpool2d_forward
from ._leaf import as_grad, as_input, check_shape, need_cache, pair
from .base import Layer, ShapeError


class _Pool2d(Layer):
    def __init__(self, kernel_size, stride=None, dtype=np.float32):
        super().__init__(dtype)
        kind = type(self).__name__
        self.kernel_size = pair(kernel_size, f"{kind} kernel_size")
        self.stride = self.kernel_size if stride is None else pair(stride, f"{kind} stride")

    def output_shape(self, input_shape):
        N, C, H, W = check_shape(self, input_shape, 4)
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        Ho, Wo = (H - kh) // sh + 1, (W - kw) // sw + 1
        if Ho < 1 or Wo < 1:
            raise ShapeError(f"{self.name}: input of shape {(N, C, H, W)} gives an empty output "
                             f"{(N, C, Ho, Wo)} (kernel {self.kernel_size}, stride {self.stride})")
        return (N, C, Ho, Wo)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding=0"


class MaxPool2d(_Pool2d):
    """MaxPool2d(kernel_size, stride=None): stride defaults to kernel_size; no padding."""

    def forward(self, x):
        x = as_input(self, x)
        out_shape = self.output_shape(x.shape)
        y = np.empty(out_shape, dtype=self.dtype)
        argmax = np.empty(out_shape, dtype=np.int32)
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        maxpool2d_forward(x, kh, kw, sh, sw, y, argmax)
        self.cache = (argmax, x.shape)
        return y

    def backward(self, dy):
        argmax, x_shape = need_cache(self)
        dy = as_grad(self, dy, argmax.shape)
        dx = None
        if self.needs_input_grad:
            dx = maxpool2d_backward(dy, argmax, np.empty(x_shape, dtype=self.dtype))
        self.cache = None
        return dx


class AvgPool2d(_Pool2d):
    """AvgPool2d(kernel_size, stride=None): stride defaults to kernel_size; no padding."""

    def forward(self, x):
        x = as_input(self, x)
        out_shape = self.output_shape(x.shape)
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        y = avgpool2d_forward(x, kh, kw, sh, sw, np.empty(out_shape, dtype=self.dtype))
        self.cache = (x.shape, out_shape)
        return y

    def backward(self, dy):
        x_shape, out_shape = need_cache(self)
        dy = as_grad(self, dy, out_shape)
        dx = None
        if self.needs_input_grad:
            (kh, kw), (sh, sw) = self.kernel_size, self.stride
            dx = avgpool2d_backward(dy, kh, kw, sh, sw, np.empty(x_shape, dtype=self.dtype))
        self.cache = None
        return dx


class GlobalAvgPool2d(Layer):
    """(N, C, H, W) -> (N, C): the mean of each plane (AdaptiveAvgPool2d(1) + flatten)."""

    def output_shape(self, input_shape):
        N, C, H, W = check_shape(self, input_shape, 4)
        if H < 1 or W < 1:
            raise ShapeError(f"{self.name}: cannot average an empty plane, got input of shape {(N, C, H, W)}")
        return (N, C)

    def forward(self, x):
        x = as_input(self, x)
        self.output_shape(x.shape)
        N, C, H, W = x.shape
        y = x.reshape(N, C, H * W).mean(axis=2, dtype=np.float64).astype(self.dtype)
        self.cache = x.shape
        return y

    def backward(self, dy):
        x_shape = need_cache(self)
        N, C, H, W = x_shape
        dy = as_grad(self, dy, (N, C))
        dx = None
        if self.needs_input_grad:
            dx = np.empty(x_shape, dtype=self.dtype)
            dx[...] = (dy * self.dtype.type(1.0 / (H * W)))[:, :, None, None]
        self.cache = None
        return dx
