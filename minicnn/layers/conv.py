"""2-D convolution as im2col + one batched GEMM (PyTorch's Conv2d, NCHW).

Forward, with ``K = C_in*kh*kw``, ``L = H_out*W_out`` and
``W2 = weight.reshape(C_out, K)``::

    cols = im2col(x)                  # (N, K, L), see minicnn.kernels.im2col
    y[n] = W2 @ cols[n] + bias[:, None]   # (C_out, L): already NCHW

Backward, for an upstream gradient ``dy`` (N, C_out, L)::

    dbias  = sum_{n, l} dy[n, :, l]
    dW2    = sum_n dy[n] @ cols[n].T
    dcols[n] = W2.T @ dy[n];   dx = col2im(dcols)   # adjoint of im2col

What is cached: the columns ``cols`` (not x), because both dW and dx need
them (dW directly; dx needs only their shape) and recomputing im2col in
backward costs as much memory traffic as keeping them. Memory: ``N*K*L``
values per layer, 9x the input for a 3x3 stride-1 conv (ResNet-20 at batch
128 in float32 holds about 0.8 GB of columns at the end of forward).
To bound that, backward reuses the column buffer in place for ``dcols``,
and the next forward reuses it again (one ``N*K*L`` workspace per layer,
allocated once and kept: fresh large arrays cost page faults every step;
``release_workspace()`` frees it). A 1x1 stride-1 unpadded conv needs no
im2col at all: ``cols`` is a view of x.

In eval mode (``layer.eval()``), where batches may be large and backward is
rare, forward runs ``EVAL_CHUNK`` samples at a time through a temporary
buffer and caches x only; a backward in eval mode recomputes the columns.

The GEMMs run on NumPy's BLAS (``np.matmul``) in the layer dtype, the batch
split over threads by ``minicnn.kernels.gemm`` (BLAS itself single-threaded).
"""
from __future__ import annotations

import math

import numpy as np

from ..kernels.gemm import matmul_batched, matmul_batched_sum_bt
from ..kernels.im2col import col2im, conv_output_size, im2col
from ._leaf import as_grad, as_input, check_shape, need_cache, pair, positive_int, uniform_init
from .base import Layer, ShapeError


#: samples per im2col chunk in eval mode (bounds the temporary column buffer)
EVAL_CHUNK = 64


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
        self._workspace = None  # the (N, K, L) column buffer, reused across steps

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
    def _workspace_cols(self, shape) -> np.ndarray:
        """A (N, K, L) view of this layer's persistent column buffer (grown when needed)."""
        size = shape[0] * shape[1] * shape[2]
        buf = self._workspace  # flat, so a smaller batch reuses it too
        if buf is None or buf.size < size or buf.dtype != self.dtype:
            buf = self._workspace = np.empty(size, dtype=self.dtype)
        return buf[:size].reshape(shape)

    def forward(self, x):
        x = as_input(self, x)
        out_shape = self.output_shape(x.shape)
        N, O, Ho, Wo = out_shape
        C, L = x.shape[1], Ho * Wo
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        K = C * kh * kw
        w2 = self.params["weight"].reshape(O, K)
        if self._is_pointwise():          # 1x1, stride 1, no padding: the columns are x
            cols = x.reshape(N, C, L)
            y = matmul_batched(w2, cols, np.empty((N, O, L), dtype=self.dtype))  # (N, O, L): NCHW
            self.cache = ("cols", cols, False, x.shape, out_shape)
        elif self.training:               # keep the columns for backward
            cols = im2col(x, kh, kw, sh, sw, ph, pw, self._workspace_cols((N, K, L)))
            y = matmul_batched(w2, cols, np.empty((N, O, L), dtype=self.dtype))
            self.cache = ("cols", cols, True, x.shape, out_shape)
        else:
            # eval: a few samples at a time through a temporary buffer (evaluation batches
            # may be large), keeping only x; a backward in eval mode recomputes the columns
            y = np.empty((N, O, L), dtype=self.dtype)
            b = min(N, EVAL_CHUNK)
            tmp = np.empty((b, K, L), dtype=self.dtype)
            for s in range(0, N, b):
                e = min(N, s + b)
                im2col(x[s:e], kh, kw, sh, sw, ph, pw, tmp[:e - s])
                matmul_batched(w2, tmp[:e - s], y[s:e])
            self.cache = ("x", x, True, x.shape, out_shape)
        if "bias" in self.params:
            y += self.params["bias"][:, None]
        return y.reshape(out_shape)

    def backward(self, dy):
        kind, cols, owned, x_shape, out_shape = need_cache(self)
        dy = as_grad(self, dy, out_shape)
        N, O, Ho, Wo = out_shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        dy3 = dy.reshape(N, O, Ho * Wo)
        if kind == "x" and (self.wants_grad("weight") or self.needs_input_grad):
            cols = im2col(cols, kh, kw, sh, sw, ph, pw,
                          np.empty((N, x_shape[1] * kh * kw, Ho * Wo), dtype=self.dtype))
        if self.wants_grad("bias"):
            self.grads["bias"] = dy3.sum(axis=2).sum(axis=0)
        if self.wants_grad("weight"):
            # sum_n dy[n] @ cols[n].T ; cols[n].T is a transposed view (BLAS 'T' flag, no copy)
            dw = matmul_batched_sum_bt(dy3, cols)
            self.grads["weight"] = dw.reshape(self.params["weight"].shape)
        dx = None
        if self.needs_input_grad:
            w2 = self.params["weight"].reshape(O, -1)
            if not owned:  # pointwise: dcols is dx
                dx = matmul_batched(w2.T, dy3, np.empty((N, w2.shape[1], Ho * Wo), dtype=self.dtype))
                dx = dx.reshape(x_shape)
            else:
                dcols = matmul_batched(w2.T, dy3, cols)  # cols are no longer needed: reuse the buffer
                dx = col2im(dcols, kh, kw, sh, sw, ph, pw, np.empty(x_shape, dtype=self.dtype))
        self.cache = None
        return dx

    def release_workspace(self) -> None:
        """Free the column buffer (it is reallocated by the next forward)."""
        self._workspace = None
        self.cache = None

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if "bias" not in self.params:
            s += ", bias=False"
        return s
