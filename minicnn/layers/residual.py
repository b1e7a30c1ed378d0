"""The residual BasicBlock of He et al., "Deep Residual Learning for Image
Recognition" (CVPR 2016), §3 and §4.2 (the CIFAR ResNets)::

    x ──► conv1 ─► bn1 ─► relu1 ─► conv2 ─► bn2 ──(+)──► relu_out ──► y
    └──────────────► shortcut (identity, or 1x1 conv + BN) ──┘

The shortcut is the identity when the shape is kept and a 1x1 convolution
with stride plus BatchNorm (a "projection", option B of the paper) when the
stride or the channel count changes.

Backward, reading the picture from right to left::

    d_sum  = relu_out.backward(dy)               # gradient at the (+)
    dx     = main.backward(d_sum) + shortcut.backward(d_sum)

SLU (E2-Train §3.2) and stochastic depth skip the residual branch for some
samples: the block asks the hook point ``block_gate(block, x)`` for a
boolean mask over the batch; samples whose mask is False go through the
shortcut only, and the residual branch runs, forward and backward, on the
kept samples alone (gather the kept rows, run the branch, scatter-add its
output into the shortcut's): skipped work is really not done::

    s = shortcut(x)                      all N samples (identity, or the projection)
    s[m] += main(x[m])                   the kept samples only
    y = relu_out(s)

A skipped sample gives y = relu(x) with an identity shortcut (= x when x
comes out of a ReLU) and y = relu(bn(conv1x1(x))) with a projection: the
projection runs on every sample, as the official E2-Train code does (it
gates projection blocks too and feeds a skipped sample the downsampled
input; it applies no ReLU to it, minicnn keeps the block's relu_out).

After each forward the block publishes which samples ran its residual
branch: ``executed_mask`` is None when all of them did, else a bool array
over the batch, and ``executed_count`` is how many did (the ledger counts
the residual add over those rows).

BatchNorm inside a gated branch normalizes over the kept samples only (its
batch statistics, and the running statistics it updates, come from x[m]):
gather/scatter execution equals running the block on the kept sub-batch,
not masking the output of a block run on the whole batch (the official
code's "compute all, mask after", where BN sees every sample). In eval
mode (running statistics) the two are the same. See tests/test_residual.py.
"""
from __future__ import annotations

import numpy as np

from .activation import ReLU
from .base import ShapeError
from .batchnorm import BatchNorm2d
from .container import Container
from .conv import Conv2d


class BasicBlock(Container):
    """conv3x3-BN-ReLU-conv3x3-BN + shortcut, ReLU after the add."""

    expansion = 1

    def __init__(self, in_channels, out_channels, stride=1, dtype=np.float32, rng=None):
        super().__init__(dtype)
        rng = rng if rng is not None else np.random.default_rng(0)
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.conv1 = Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False, dtype=dtype, rng=rng)
        self.bn1 = BatchNorm2d(out_channels, dtype=dtype)
        self.relu1 = ReLU(dtype=dtype)
        self.conv2 = Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False, dtype=dtype, rng=rng)
        self.bn2 = BatchNorm2d(out_channels, dtype=dtype)
        self.projection = stride != 1 or in_channels != out_channels
        if self.projection:
            self.shortcut_conv = Conv2d(in_channels, out_channels, 1, stride=stride, bias=False, dtype=dtype, rng=rng)
            self.shortcut_bn = BatchNorm2d(out_channels, dtype=dtype)
        self.relu_out = ReLU(dtype=dtype)
        self.executed_mask: np.ndarray | None = None   # which samples ran the residual branch (None: all)
        self.executed_count = 0                        # how many did, in the last forward
        self._name_children()

    # the residual branch and the shortcut branch, each a chain of layers
    def main_branch(self):
        return [self.conv1, self.bn1, self.relu1, self.conv2, self.bn2]

    def shortcut_branch(self):
        return [self.shortcut_conv, self.shortcut_bn] if self.projection else []

    def named_children(self):
        names = ["conv1", "bn1", "relu1", "conv2", "bn2"]
        names += ["shortcut_conv", "shortcut_bn"] if self.projection else []
        return [(n, getattr(self, n)) for n in names + ["relu_out"]]

    def output_shape(self, input_shape):
        shape = input_shape
        for layer in self.main_branch():
            shape = layer.output_shape(shape)
        return shape

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ShapeError(f"{self.name}: expected input (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        mask = self.hooks.block_gate(self, x)
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != (x.shape[0],):
                raise ShapeError(f"{self.name}: block_gate gave a mask of shape {mask.shape}, "
                                 f"expected ({x.shape[0]},)")
        self.executed_mask = None if mask is None or mask.all() else mask
        self.executed_count = x.shape[0] if self.executed_mask is None else int(mask.sum())

        # shortcut branch
        s = x
        for layer in self.shortcut_branch():
            s = self.forward_child(layer, s)

        # residual branch, on the kept samples only when gated
        kept = self.executed_mask
        if self.executed_count > 0:
            h = x if kept is None else x[kept]
            for layer in self.main_branch():
                h = self.forward_child(layer, h)
            if kept is None:
                s = s + h
            else:
                s = s.copy()
                s[kept] += h
        # (the add is counted by the ledger when the parent container reports this block)
        return self.forward_child(self.relu_out, s)

    def backward(self, dy):
        need_dx = self.needs_input_grad
        d_sum = self.backward_child(self.relu_out, dy)

        kept = self.executed_mask
        dx_main = None
        if self.executed_count > 0:
            d_main = d_sum if kept is None else d_sum[kept]
            dx_main = self._backward_chain(self.main_branch(), d_main, need_dx)
        if self.projection:
            dx = self._backward_chain(self.shortcut_branch(), d_sum, need_dx)
        else:
            dx = d_sum if need_dx else None
        if not need_dx:
            return None
        if dx_main is not None:
            if kept is None:
                dx = dx + dx_main
            else:
                dx = dx.copy()
                dx[kept] += dx_main
        return dx

    def extra_repr(self):
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"
