"""The parts of SLU and stochastic depth that know nothing of the trainer.

E2-Train (Wang et al., NeurIPS 2019), §3.2, "input-dependent selective
layer update" (SLU): a light gate per residual block (the official code:
every block but the first) decides, per sample, whether the block runs --
forward *and* backward -- and a cost term (Eq. 1, ``min L + alpha*C``;
minicnn's carries the official code's sign and target, :class:`CostTerm`)
teaches the gates thrift.
Stochastic depth (Huang et al., ECCV 2016), the "random version of SLU" E2-Train
compares against (§4.3, Fig. 4), drops whole blocks per mini-batch.

Here:

* :class:`GateNetwork` -- the gates' layers and how they run (one step per gated block);
* :class:`GateDecision` -- p -> m (sampled in training, thresholded at evaluation)
  and the straight-through backward;
* :class:`CostTerm` -- C, its sign s and the gradient alpha*s*dC/dm;
* :func:`survival_probabilities`, :func:`expected_executed_fraction`,
  :func:`p_last_for_fraction` -- stochastic depth's linear decay rule.

The gate network (the official design; the paper says only "a light-weight
RNN gating network per layer block" whose "soft-gating indicators" are the
probabilities of selecting a block, §3.2; "More details can be found in the
supplement")::

    gate l (before gated block l), reading x = the previous block's output, detached:
      rnn:  v = mean_HW(x) (N, C_l) -> e = v E_l^T (10)  -> h = LSTMCell(e; h, c) (10)
            -> p = sigmoid(h w^T + b)                  one LSTMCell and one head shared by all gates,
                                                       state reset (zeros) at each forward pass
      ff:   v = mean_HW(x) -> p = sigmoid(v w_l^T + b_l)   (a lighter variant, nothing shared)

Choices of minicnn, and where they differ from the official code
(GATECH-EIC/E2Train, ``models/efficient_resnet.py``: ``RNNGate``,
``ResNetRecurrentGateSP``):

* the embedding E_l is ``Linear(C_l, 10, bias=False)``: the official 1x1
  convolution without bias applied to the pooled 1x1 map is that linear map
  (same MACs); it is per gate, the LSTM cell and the head are shared, as there;
* the official code computes a gate after the last block too and throws its
  output away; minicnn does not compute it;
* the gate input is *detached*: no gradient flows from a gate into the
  backbone (SkipNet and the official code let it). Three reasons: the
  backbone's backward then is exactly that of the blocks that ran, with no
  extra gradient injected into every block output (work that would not be
  skipped); the cost term cannot push the backbone's features towards
  closing gates -- only the gates' own parameters learn the policy; and the
  hook points need no new way of adding a gradient to a block's output;
* init: PyTorch's defaults for ``nn.LSTM``/``nn.Linear`` (what the official
  gate gets: ``install_gate()`` runs after the model's own init), Kaiming
  would not matter for a 10-wide layer.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..layers.linear import Linear
from ..layers.pooling import GlobalAvgPool2d
from ..layers.recurrent import GateHead, LSTMCell

GATE_KINDS = ("rnn", "ff")


class DirectRunner:
    """Runs a layer's forward/backward directly (no hooks). A model's ``aux`` container
    offers the same two methods and fires the hook points, so the ledger sees the gates."""

    @staticmethod
    def forward_child(layer, x):
        return layer.forward(x)

    @staticmethod
    def backward_child(layer, dy):
        return layer.backward(dy)


class GateNetwork:
    """The gates of one network: ``forward_step`` once per gated block, in order, then
    ``backward`` once with the gradient of every step's p (BPTT through the shared cell).

    ``in_channels[l]`` is the channel count gate l reads (the output of the block before
    gated block l). ``kind`` is ``"rnn"`` (the official recurrent gate) or ``"ff"``.
    """

    def __init__(self, in_channels, kind: str = "rnn", embed_dim: int = 10, hidden_dim: int = 10,
                 dtype=np.float32, rng: np.random.Generator | None = None):
        if kind not in GATE_KINDS:
            raise ValueError(f"gate must be one of {', '.join(GATE_KINDS)}, got {kind!r}")
        rng = np.random.default_rng(0) if rng is None else rng
        self.kind = kind
        self.in_channels = [int(c) for c in in_channels]
        self.pools = [GlobalAvgPool2d(dtype=dtype) for _ in self.in_channels]
        if kind == "rnn":
            self.embeds = [Linear(c, embed_dim, bias=False, dtype=dtype, rng=rng) for c in self.in_channels]
            self.cell = LSTMCell(embed_dim, hidden_dim, dtype=dtype, rng=rng)
            self.head = GateHead(hidden_dim, dtype=dtype, rng=rng)
            for e in self.embeds:
                e.needs_input_grad = False          # the pooled input is detached
            self.cell.needs_input_grad = True
            self.head.needs_input_grad = True
        else:
            self.heads = [GateHead(c, dtype=dtype, rng=rng) for c in self.in_channels]
            for h in self.heads:
                h.needs_input_grad = False
        self.steps = 0

    def __len__(self):
        return len(self.in_channels)

    def named_layers(self) -> list:
        """(short name, layer) of every layer, for ``model.add_aux``: gate{l}.pool,
        gate{l}.embed, cell, head (rnn) or gate{l}.pool, gate{l}.head (ff)."""
        out = []
        for l, pool in enumerate(self.pools):
            out.append((f"gate{l}.pool", pool))
            out.append((f"gate{l}.embed", self.embeds[l]) if self.kind == "rnn" else (f"gate{l}.head", self.heads[l]))
        if self.kind == "rnn":
            out += [("cell", self.cell), ("head", self.head)]
        return out

    def layers(self) -> list:
        return [layer for _, layer in self.named_layers()]

    def num_params(self) -> int:
        return sum(layer.num_params() for layer in self.layers())

    def reset(self) -> None:
        """A new forward pass: zero LSTM state, no cached steps, no gradients."""
        self.steps = 0
        if self.kind == "rnn":
            self.cell.reset()
            self.head.reset()
            for e in self.embeds:
                e.zero_grad()
        else:
            for h in self.heads:
                h.reset()

    def forward_step(self, x: np.ndarray, runner=DirectRunner) -> np.ndarray:
        """p (N,) of the next gate, from the previous block's output x (N, C, H, W)."""
        l = self.steps
        if l >= len(self):
            raise RuntimeError(f"gate network: {len(self)} gates, asked for step {l + 1} (reset() per forward pass)")
        if x.shape[1] != self.in_channels[l]:
            raise ValueError(f"gate {l} reads {self.in_channels[l]} channels, got input of shape {x.shape}")
        v = runner.forward_child(self.pools[l], x)
        if self.kind == "rnn":
            p = runner.forward_child(self.head, runner.forward_child(self.cell, runner.forward_child(self.embeds[l], v)))
        else:
            p = runner.forward_child(self.heads[l], v)
        self.steps += 1
        return p

    def backward(self, dps, runner=DirectRunner) -> None:
        """Backward of every step of this pass: ``dps[l]`` = dLoss/dp of gate l (N,)."""
        if len(dps) != self.steps:
            raise ValueError(f"gate network: {self.steps} steps ran, got {len(dps)} gradients")
        for l in reversed(range(self.steps)):
            if self.kind == "rnn":
                dh = runner.backward_child(self.head, dps[l])
                de = runner.backward_child(self.cell, dh)
                runner.backward_child(self.embeds[l], de)
            else:
                runner.backward_child(self.heads[l], dps[l])


@dataclass
class GateDecision:
    """m = 1[p > u] in training (u ~ U(0,1) per sample); m = 1[p > 0.5] at evaluation.

    The official ``RNNGate.forward`` samples ``(prob > rand).float().detach() - prob.detach() + prob``
    in training *and* evaluation (it has no eval branch), so its test accuracy is itself
    a random variable; ``sample_at_eval=True`` does that. minicnn's default thresholds
    at 0.5 (the deterministic rule of SkipNet's inference) so that accuracy is reproducible.

    Backward: straight-through, dm/dp = 1 (the forward value is the hard m, the gradient
    is passed to p unchanged), as the official expression above.
    """
    sample_at_eval: bool = False

    def decide(self, p: np.ndarray, training: bool, rng: np.random.Generator | None = None,
               u: np.ndarray | None = None) -> np.ndarray:
        """The bool mask; draws u from ``rng`` (or takes the given ``u``) when sampling."""
        if training or self.sample_at_eval:
            if u is None:
                u = rng.random(len(p))
            return np.asarray(p) > u
        return np.asarray(p) > 0.5

    @staticmethod
    def backward(dm: np.ndarray) -> np.ndarray:
        """dLoss/dp from dLoss/dm: the straight-through estimator."""
        return dm


@dataclass
class CostResult:
    executed: float              # C: the MAC-weighted executed fraction of the gated blocks
    sign: int                    # s: +1 above target, -1 at or below
    value: float                 # alpha * s * C, the term added to the loss
    dm: list = field(default_factory=list)    # dLoss/dm per gate, (N,) each
    fractions: list = field(default_factory=list)   # each gate's plain fraction of samples run


@dataclass
class CostTerm:
    """The cost term, ``loss = L + alpha * s * C``: E2-Train Eq. (1)'s ``L + alpha * C`` with the
    sign s and the target of the official code (``--minimum``).

    C = sum_l w_l * mean_n m_{l,n}, the executed fraction of the gated blocks weighted by
    their MACs (w_l = MACs of block l's residual branch / the sum over gated blocks): the
    "FLOPs of the selected layers" of Eq. (1), normalized to [0, 1]. s = +1 when C exceeds
    ``target`` and -1 otherwise: the term pushes the executed fraction *towards* the target
    from both sides (the official ``reg``; the paper's Eq. (1) has no sign, it only shrinks C).
    Gradient: dLoss/dm_{l,n} = alpha * s * w_l / N.

    The official code (``main_all.py``): ``loss = CE + beta * reg * sum_l sum_n m_{l,n}``
    with uniform weights, ``beta = 1e-5`` and ``reg`` = +1 when the batch's executed
    percentage exceeds ``--minimum``: dLoss/dm = beta * reg per gate and sample. With
    uniform w_l = 1/G over G gates this is minicnn's term with ``alpha = beta * G * N``:
    0.0448 for ResNet-74 (G = 35 gates) at batch size N = 128, 0.01 for resnet20 (G = 8).
    """
    target: float = 0.6
    alpha: float = 0.1

    def __post_init__(self):
        if not 0.0 <= self.target <= 1.0:
            raise ValueError(f"target must be in [0, 1], got {self.target}")
        if not self.alpha >= 0.0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")

    def __call__(self, masks, weights) -> CostResult:
        w = np.asarray(weights, dtype=np.float64)
        if len(w) != len(masks) or not (w >= 0).all() or not w.sum() > 0:
            raise ValueError(f"need one non-negative weight per gate ({len(masks)}), got {weights!r}")
        w = w / w.sum()
        fractions = [float(np.mean(m)) for m in masks]
        c = float(np.dot(w, fractions))
        s = 1 if c > self.target else -1
        dm = [np.full(len(m), self.alpha * s * wl / len(m)) for m, wl in zip(masks, w)]
        return CostResult(c, s, self.alpha * s * c, dm, fractions)


# -- stochastic depth (Huang et al. 2016, §3, "linear decay rule", Eq. 4) ------------------------

def survival_probabilities(num_blocks: int, p_last: float) -> np.ndarray:
    """p_l = 1 - (l/L)(1 - p_L) for blocks l = 1..L (Huang et al. Eq. 4; their default p_L = 0.5)."""
    if not 0.0 <= p_last <= 1.0:
        raise ValueError(f"p_last must be in [0, 1], got {p_last}")
    l = np.arange(1, num_blocks + 1)
    return 1.0 - l / num_blocks * (1.0 - p_last)


def expected_executed_fraction(block_macs, p_last: float) -> float:
    """E[executed MACs] / all MACs of the residual branches, for survival rule ``p_last``."""
    w = np.asarray(block_macs, dtype=np.float64)
    return float(np.dot(w, survival_probabilities(len(w), p_last)) / w.sum())


def p_last_for_fraction(block_macs, target: float) -> float:
    """The p_L whose expected MAC-weighted executed fraction is ``target`` (E2-Train §4.3 sets
    SD's dropping ratio equal to SLU's). The fraction is 1 - (1 - p_L) * A with
    A = sum_l w_l l / L, so p_L = 1 - (1 - target) / A; ValueError if that is outside [0, 1]."""
    w = np.asarray(block_macs, dtype=np.float64)
    w = w / w.sum()
    a = float(np.dot(w, np.arange(1, len(w) + 1) / len(w)))
    p = 1.0 - (1.0 - target) / a
    if not -1e-12 <= p <= 1.0 + 1e-12:
        raise ValueError(f"stochastic depth cannot reach an executed fraction of {target} "
                         f"(reachable: {1 - a:.3f} .. 1)")
    return float(min(max(p, 0.0), 1.0))


def residual_macs(block, input_shape) -> int:
    """MACs per sample of a BasicBlock's residual branch (conv1 + conv2) for an input shape."""
    shape = (1,) + tuple(input_shape[1:])
    total = 0
    for conv in (block.conv1, block.conv2):
        out = conv.output_shape(shape)
        kh, kw = conv.kernel_size
        total += out[1] * out[2] * out[3] * conv.in_channels * kh * kw
        shape = out
    return int(total)
