"""``stochastic-depth``: drop whole residual blocks per mini-batch (Huang et al., "Deep
Networks with Stochastic Depth", ECCV 2016), E2-Train's baseline for SLU (§4.3, Fig. 4).

``--method stochastic-depth[:p_last=0.5,target=-1]``

Block l of L (every BasicBlock, l = 1..L in forward order) survives a mini-batch with
probability p_l = 1 - (l/L)(1 - p_L) (the linear decay rule, Huang et al. Eq. 4; their
default p_L = 0.5). A dropped block's residual branch is skipped in forward and backward
for the whole batch (``block_gate`` returns an all-False mask; a projection block keeps its
shortcut, which runs). At evaluation every block runs with its residual output scaled by
p_l (Huang et al. Eq. 5: H = ReLU(p_l f(x) + id(x))), applied to bn2's output.

``target`` (0..1; default -1 = unused) replaces p_last by the value whose *expected*
MAC-weighted executed fraction over all residual branches equals ``target``
(:func:`~minicnn.methods.gating.p_last_for_fraction`): "we adjust the hyper-parameter p_L
so that the SD dropping ratio is always the same as SLU" (E2-Train §4.3). Note SLU's
executed fraction counts its gated blocks only (the first block always runs): for equal
work give ``target = (M_1 + C * (M - M_1)) / M`` with M_1 the first block's MACs.

Choice: the survival draws are made when each block is reached in the forward pass (one
uniform per block and mini-batch from the method's own stream), not up front.

Records per epoch: ``executed`` (MAC-weighted fraction of residual-branch work done),
``block_fractions`` (each block's fraction of batches run), ``p_last``.
"""
from __future__ import annotations

import numpy as np

from ..layers.residual import BasicBlock
from .base import Method, register_method
from .gating import p_last_for_fraction, residual_macs, survival_probabilities


@register_method("stochastic-depth")
class StochasticDepth(Method):
    name = "stochastic-depth"
    acts_in_eval = True        # evaluation scales each residual output by its survival probability

    def __init__(self, p_last: float = 0.5, target: float = -1.0):
        if not 0.0 <= p_last <= 1.0:
            raise ValueError(f"method stochastic-depth: p_last must be in [0, 1], got {p_last}")
        if not (target == -1.0 or 0.0 <= target <= 1.0):
            raise ValueError(f"method stochastic-depth: target must be in [0, 1] (or -1: unused), got {target}")
        self.p_last, self.target = float(p_last), float(target)
        self.rng = np.random.default_rng(0)      # the trainer gives the method its own stream

    def attach(self, model, input_shape=(3, 32, 32)):
        self.blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
        if not self.blocks:
            raise ValueError(f"method {self.name}: the model has no residual blocks")
        self._index = {id(b): l for l, b in enumerate(self.blocks)}
        self._bn2 = {id(b.bn2): l for l, b in enumerate(self.blocks)}
        # residual-branch MACs per sample, walking the shapes of a 32x32 (or given) input
        self.block_macs = self._block_macs(model, input_shape)
        if self.target >= 0:
            self.p_last = p_last_for_fraction(self.block_macs, self.target)
        self.survival = survival_probabilities(len(self.blocks), self.p_last)
        self._reset_epoch()
        return self

    def _block_macs(self, model, input_shape):
        macs, seen = [], {}

        def walk(container, shape):
            for child in container.children():
                if isinstance(child, BasicBlock):
                    seen[id(child)] = residual_macs(child, shape)
                    shape = child.output_shape(shape)
                elif child.is_container:
                    shape = walk(child, shape)
                else:
                    shape = child.output_shape(shape)
            return shape
        walk(model, (1,) + tuple(input_shape))
        for b in self.blocks:
            macs.append(seen[id(b)])
        return np.array(macs, dtype=np.int64)

    def _reset_epoch(self):
        self._runs = np.zeros(len(self.blocks))
        self._batches = 0

    def block_gate(self, block, x):
        l = self._index.get(id(block))
        if l is None or not block.training:
            return None
        if l == 0:
            self._batches += 1
        if self.rng.random() < self.survival[l]:
            self._runs[l] += 1
            return None
        return np.zeros(x.shape[0], dtype=bool)

    def forward_output(self, layer, x, y):
        l = self._bn2.get(id(layer))
        if l is None or layer.training:
            return y
        return y * y.dtype.type(self.survival[l])

    def on_epoch_begin(self, state):
        self._reset_epoch()

    def epoch_record(self, state=None) -> dict:
        n = max(self._batches, 1)
        frac = self._runs / n
        return {"executed": float(np.dot(self.block_macs, frac) / self.block_macs.sum()),
                "block_fractions": [float(v) for v in frac], "p_last": self.p_last,
                "expected_executed": float(np.dot(self.block_macs, self.survival) / self.block_macs.sum()),
                "batches": self._batches}
