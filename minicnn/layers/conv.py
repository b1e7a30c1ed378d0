"""2-D convolution as im2col + GEMM (PyTorch's Conv2d, NCHW).

Forward, with ``K = C_in*kh*kw``, ``L = H_out*W_out`` and
``W2 = weight.reshape(C_out, K)``::

    cols = im2col(x)                      # (N, K, L), see minicnn.kernels.im2col
    y[n] = W2 @ cols[n] + bias[:, None]   # (C_out, L): already NCHW, no transpose

Backward, for an upstream gradient ``dy`` (N, C_out, L)::

    dbias    = sum_{n, l} dy[n, :, l]
    dW2      = sum_n dy[n] @ cols[n].T
    dcols[n] = W2.T @ dy[n];   dx = col2im(dcols)   # col2im is the adjoint of im2col

What is cached: x only (a reference, no copy). The columns are built a few
samples at a time in a cache-sized scratch buffer, used by the GEMM at once,
and rebuilt in backward (``minicnn.kernels.conv2d``): keeping them would cost
``N*K*L`` values per layer (9x the input of a 3x3 conv, 0.8 GB for ResNet-20
at batch 128) and measured *slower* than recomputing in cache. A 1x1 stride-1
unpadded conv needs no im2col at all: its columns are x itself.

3x3 stride-1 convolutions with 16 or more input channels run instead by
Winograd F(2x2, 3x3) (``minicnn.kernels.winograd``; the choice is
``minicnn.kernels.conv2d.use_winograd``, ``MINICNN_CONV_ALGO=im2col`` turns
it off): the same results up to float rounding, within a bound derived in
that module.

The GEMMs are NumPy's BLAS (``np.matmul``, one batched call per chunk) in the
layer dtype; the batch is split over threads by ``minicnn.kernels.gemm``
(BLAS itself single-threaded).

Sparse output gradients: when ``sparse_backward_below`` is > 0 (a method
that makes dy sparse sets it, e.g. ``gradprune``) and dy's density is below
it, backward takes the numba path of :mod:`minicnn.kernels.sparse_conv`,
which touches only dy's non-zeros, instead of im2col + GEMM. Same results
up to summation order; which is faster depends on the density
(``benchmarks/bench_sparse_conv.py``). Default 0: never (no density pass).
The density test counts dy's non-zeros only until the bound is reached
(:func:`~minicnn.kernels.elementwise.fewer_nonzeros_than`): a dy far denser
than the bound is decided after a small part of it.
"""
from __future__ import annotations

import math

import numpy as np

from ..kernels.conv2d import conv2d_backward, conv2d_forward
from ..kernels.elementwise import fewer_nonzeros_than
from ..kernels.gemm import matmul_batched, matmul_batched_sum_bt
from ..kernels.im2col import conv_output_size
from ..kernels.sparse_conv import sparse_conv2d_backward
from ._leaf import as_grad, as_input, check_shape, need_cache, pair, positive_int, uniform_init
from .base import Layer, ShapeError


class Conv2d(Layer):
    """y = conv2d(x, weight) + bias, cross-correlation as in PyTorch.

    Args:
        in_channels, out_channels: channel counts.
        kernel_size, stride, padding: an int or an (h, w) pair; zero padding.
        bias: whether to learn an additive per-channel bias.
        dtype: np.float32 (default) or np.float64.
        rng: np.random.Generator for the default init (default: default_rng(0)).

    Init (PyTorch's default, kaiming_uniform with a=sqrt(5)): weight and bias
    ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = in_channels*kh*kw.
    """

    #: take the sparse-dy backward when dy's density is below this (0: never; see the module docstring)
    sparse_backward_below = 0.0

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 dtype=np.float32, rng=None):
        super().__init__(dtype)
        self.in_channels = positive_int(in_channels, "Conv2d in_channels")
        self.out_channels = positive_int(out_channels, "Conv2d out_channels")
        self.kernel_size = pair(kernel_size, "Conv2d kernel_size")
        self.stride = pair(stride, "Conv2d stride")
        self.padding = pair(padding, "Conv2d padding", minimum=0)
        rng = np.random.default_rng(0) if rng is None else rng
        kh, kw = self.kernel_size
        fan_in = self.in_channels * kh * kw
        bound = 1.0 / math.sqrt(fan_in)
        self.add_param("weight", uniform_init(rng, bound, (self.out_channels, self.in_channels, kh, kw)))
        if bias:
            self.add_param("bias", uniform_init(rng, bound, (self.out_channels,)))

    # -- shapes ---------------------------------------------------------------
    def _is_pointwise(self) -> bool:
        """1x1 kernel, stride 1, no padding: the columns are x itself."""
        return self.kernel_size == (1, 1) and self.stride == (1, 1) and self.padding == (0, 0)

    def output_shape(self, input_shape):
        N, C, H, W = check_shape(self, input_shape, 4, self.in_channels)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        Ho, Wo = conv_output_size(H, kh, sh, ph), conv_output_size(W, kw, sw, pw)
        if Ho < 1 or Wo < 1:
            raise ShapeError(
                f"{self.name}: input of shape {(N, C, H, W)} gives an empty output {(N, self.out_channels, Ho, Wo)} "
                f"(kernel {self.kernel_size}, stride {self.stride}, padding {self.padding})")
        return (N, self.out_channels, Ho, Wo)

    # -- forward / backward -----------------------------------------------------
    def _geometry(self):
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        return kh, kw, sh, sw, ph, pw

    def forward(self, x):
        x = as_input(self, x)
        out_shape = self.output_shape(x.shape)
        N, O, Ho, Wo = out_shape
        C, L = x.shape[1], Ho * Wo
        w2 = self.params["weight"].reshape(O, -1)
        y = np.empty((N, O, L), dtype=self.dtype)    # (N, O, L) is NCHW
        if self._is_pointwise():                      # 1x1, stride 1, no padding: the columns are x
            matmul_batched(w2, x.reshape(N, C, L), y)
        else:
            conv2d_forward(x, w2, self._geometry(), y)
        if "bias" in self.params:
            y += self.params["bias"][:, None]
        self.cache = (x, out_shape)
        return y.reshape(out_shape)

    def backward(self, dy):
        x, out_shape = need_cache(self)
        dy = as_grad(self, dy, out_shape)
        N, O, Ho, Wo = out_shape
        dy3 = dy.reshape(N, O, Ho * Wo)
        want_w = self.wants_grad("weight")
        if self.wants_grad("bias"):
            self.grads["bias"] = dy3.sum(axis=2).sum(axis=0)
        below = self.sparse_backward_below
        if below > 0 and fewer_nonzeros_than(dy3, math.ceil(below * dy3.size)):    # density < below
            dw, dx = sparse_conv2d_backward(x, self.params["weight"], dy, self.stride, self.padding,
                                            want_dw=want_w, want_dx=self.needs_input_grad)
        else:
            dw, dx = self._dense_backward(x, dy3, want_w, self.needs_input_grad)
        if want_w:
            self.grads["weight"] = dw.reshape(self.params["weight"].shape)
        self.cache = None
        return dx

    def weight_grad(self, x, dy):
        """dL/dW (the weight's shape) for input ``x`` (N, C_in, H, W) and output gradient ``dy`` (N, C_out, Ho, Wo).

        The layer's own dense weight-gradient path (what :meth:`backward` computes, without
        the input gradient): a batched GEMM for a pointwise conv, else im2col + GEMM or
        Winograd as :mod:`minicnn.kernels.conv2d` chooses. Reads neither the cache nor
        ``requires_grad`` and changes nothing: a method that computes a weight gradient from
        operands of its own (PSG's MSB predictors, E2-Train §3.3) calls this.
        """
        x = as_input(self, x)
        out_shape = self.output_shape(x.shape)
        dy = as_grad(self, dy, out_shape)
        N, O, Ho, Wo = out_shape
        dw, _ = self._dense_backward(x, dy.reshape(N, O, Ho * Wo), True, False)
        return dw.reshape(self.params["weight"].shape)

    def _dense_backward(self, x, dy3, want_w: bool, want_dx: bool):
        """(dW2 (O, K) or None, dx or None) by the dense path: pointwise GEMMs, or im2col/Winograd."""
        N, O = dy3.shape[:2]
        w2 = self.params["weight"].reshape(O, -1)
        if self._is_pointwise():
            cols = x.reshape(N, x.shape[1], dy3.shape[2])
            dw = matmul_batched_sum_bt(dy3, cols) if want_w else None
            dx = matmul_batched(w2.T, dy3, np.empty_like(cols)).reshape(x.shape) if want_dx else None
            return dw, dx
        dx = np.empty(x.shape, dtype=self.dtype) if want_dx else None
        return conv2d_backward(x, w2, self._geometry(), dy3, want_w, dx), dx

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if "bias" not in self.params:
            s += ", bias=False"
        return s
