"""``psg`` (E2-Train's predictive sign gradient) and its baselines ``fixed8`` and ``signsgd``.

Paper: Wang et al., E2-Train (NeurIPS 2019) §3.3 (PSG, Eq. 2-3), §4.1
(lr 0.03 with PSG), §4.4 and Table 2 (PSG against 8-bit fixed point [16]
and SignSGD [21] on ResNet-74 / CIFAR-10). Official code: GATECH-EIC/E2Train
(``models/quantize.py``, ``models/predictive.py``, ``models/new_conv.py``).

The three methods act on every ``Conv2d``; BatchNorm and Linear layers train
normally in fp32 with their ordinary gradients (as in the official code,
whose predictive layers are the convolutions).

``fixed8[:bits_x=8,bits_w=8,bits_g=32]`` -- fixed-point training, the §4.4
baseline ("8-bit fixed point [16] ... compromised by their employed 32-bit
gradients"): each conv's input quantized to ``bits_x`` and its weight to
``bits_w`` (:mod:`minicnn.quant`; the fp32 master weights are what SGD
updates), the output gradient quantized to ``bits_g`` bits when
``bits_g < 32``; ordinary SGD on the (fixed-point operand) gradient.

``psg[:beta=0.05,bits_x=8,bits_w=8,bits_g=16,msb_x=4,msb_g=10]`` -- §3.3 on
top of the same fixed-point forward::

    forward      y = conv(x_8, w_8)                               x at bits_x, w at bits_w
    backward     g_y quantized to bits_g -> g_y16, and its MSB predictor g_y^msb (msb_g bits)
                 dx      = conv^T(w_8, g_y16)                      (the layer computes it)
                 g_w^msb = dW(x^msb, g_y^msb)                      x^msb: msb_x MSBs of x_8's code
                 g_w     = dW(x_8, g_y16)
                 tau     = beta * max|g_w^msb|                     per layer (§3.3 "adaptive threshold")
                 direction = sgn(g_w^msb) where |g_w^msb| >= tau, else sgn(g_w)        (Eq. 2)

and SGD with momentum and weight decay applies to ``direction``. The method
supplies the conv's weight (and bias) gradient itself through the
``supply_grads`` hook: g_w, the fallback, is what the conv's own backward computes from x_8
and g_y16, so PSG hands it a *finisher* (``minicnn.hooks``): the conv computes g_w in the same
pass as dx (on the Winograd path they share the transform of g_y16), PSG adds the predictor
pass and the rule, and the ledger counts only what PSG declares (below), not the conv's dW.
Defaults are §4.4's (8-bit activations/weights, 16-bit gradients, 4- and
10-bit predictors, beta = 0.05); the official code's defaults differ
(``PredictiveSignConv2d``: msb_bits=4, msb_bits_weight=4,
msb_bits_grad=16, an absolute threshold 5e-5). §4.1 uses lr 0.03 with
PSG ("SignSGD suggested small learning rates"): pass ``--lr 0.03``.

``signsgd[:layers=conv]`` -- the SignSGD baseline [21] as E2-Train uses it:
the sign of the full-precision (fp32) gradient of each conv param, then
SGD with momentum and weight decay (the official code's ``grad.sign_()``
before its SGD optimizer). This is *not* Signum (Bernstein et al.'s sign of
the momentum). ``layers=all`` signs every parameter's gradient.

Quantization choices (:mod:`minicnn.quant` has the grid): activation
range = per-sample max|x| averaged over the batch in training, and in
evaluation the running value ``r <- 0.1 * r + 0.9 * r_batch`` (the
official ``Quantize`` module's momentum, whose weight 0.9 goes to the *new*
value; minicnn starts it at the first batch's range, the official buffer at
0); weights: max|w| per output filter (conv biases stay fp32: the official
code quantizes them to 16 bits; no ResNet conv has one); gradients: max|g| of the
tensor; a conv input is quantized on the signed grid when it has a
negative entry (the network input), else on the non-negative grid (after
a ReLU); the official code fixes that per layer. Round to nearest
everywhere (the official code never rounds stochastically).

Evaluation is the fixed-point network (the official code evaluates its
quantized model too): the training-time test accuracy in ``summary.json``
is that network's, and so is ``minicnn evaluate runs/X/model.npz``'s.
Both methods act at evaluation (``acts_in_eval``) and their running ranges
are part of the trained model (``eval_state``): ``model.npz`` holds them
(``meta["method_states"]["psg"]["running"]``, one per conv, as they stood
when the saved weights did) and ``evaluate`` rebuilds the method, loads
them and attaches its hooks, so it scores the very network the run scored.
A ``model.npz`` written before minicnn saved them is refused with a
one-line error rather than scored as another (fp32) network.

What the ledger counts (the hardware estimate; formats declared per conv):
forward MACs at ``wider(bits_x, bits_w)`` (8-bit), input-gradient MACs at
``wider(bits_g, bits_w)`` (16-bit), and for PSG the weight gradient through
``ledger.add_work``: ``N*Ho*Wo`` MACs per weight at ``max(msb_x, msb_g)``
bits for *every* weight (the predictor) plus ``N*Ho*Wo`` MACs per weight at
``max(bits_x, bits_g)`` bits for the weights that fell below tau only. The
mixed-width MAC is charged at the wider operand (the ledger's rule for every
MAC; a 4 x 10-bit multiplier is cheaper than a 10 x 10 one, so this
overestimates the predictor's energy). The predictor's operands are read
once (the hardware computes g_w^msb inside g_w, §3.3): bytes are those of
one weight-gradient pass. On a CPU the emulation is *slower* than fp32: one
more dense weight gradient (the predictor; the fallback is the conv's own dW)
plus the quantization passes (docs/measurements/method_overheads.md).

Records per epoch, per conv: ``predicted`` (fraction of weights whose sign
the MSB predictor decided, averaged over steps; §4.4: "at least 60%" with
beta = 0.05), ``agree`` (how often the predicted sign equals sgn(g_w) among
those weights: 1 - the failure rate that Eq. 3 bounds), ``agree_all`` (the
same over every weight).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..cost.counts import Tensor
from ..cost.formats import TensorFormat
from ..layers.conv import Conv2d
from ..quant import activation_range_and_sign, fixed_point, gradient_range, weight_range
from ._psg import psg_sign_rule
from .base import Method, backbone_leaves, register_method


def fixed(bits: int) -> TensorFormat:
    return TensorFormat(bits=int(bits), fixed=True)


def _check_bits(method, **bits):
    for k, v in bits.items():
        if not 1 <= v <= 32:
            raise ValueError(f"method {method}: {k} must be in 1..32, got {v}")


class _FixedPointConvs(Method):
    """Shared by fixed8 and psg: every Conv2d computes with fixed-point x and w (fp32 masters kept)."""

    #: the official Quantize module's running-range momentum (weight of the *old* value)
    RANGE_MOMENTUM = 0.1
    #: evaluation runs the fixed-point network too (what the run's test accuracy measured), so
    #: ``minicnn evaluate`` rebuilds these hooks, with the running ranges saved in model.npz
    acts_in_eval = True
    eval_state = True

    def _setup(self, bits_x, bits_w, bits_g):
        self.bits_x, self.bits_w, self.bits_g = bits_x, bits_w, bits_g
        self._running: dict[str, float] = {}
        self._master: dict[str, np.ndarray] = {}
        self._convs: set[str] = set()
        self._conv_order: list[str] = []

    def _find_convs(self, model) -> list:
        convs = [l for l in backbone_leaves(model) if isinstance(l, Conv2d)]
        if not convs:
            raise ValueError(f"method {self.key or self.name}: the model has no Conv2d layer")
        self._convs = {c.name for c in convs}
        self._conv_order = [c.name for c in convs]       # model order: records (and their means) do not
        return convs                                     # depend on a set's iteration order

    def attach(self, model):
        """Find the convs (training and ``minicnn evaluate`` both attach: the evaluated network is the trained one)."""
        self._find_convs(model)

    def on_train_begin(self, state):
        for c in self._find_convs(state.model):
            state.formats.set(c, "input", fixed(self.bits_x))
            state.formats.set(c, "weight", fixed(self.bits_w))
            if self.bits_g < 32:
                state.formats.set(c, "grad_output", fixed(self.bits_g))

    def _quantize_input(self, layer, x, msb_bits=None):
        batch_range, signed = activation_range_and_sign(x)     # one pass: the batch's range and its sign
        if layer.training:
            r = float(batch_range[0])
            old = self._running.get(layer.name)
            self._running[layer.name] = r if old is None else self.RANGE_MOMENTUM * old + (1 - self.RANGE_MOMENTUM) * r
        else:
            r = self._running.get(layer.name)
            if r is None:                      # evaluated before any training step: use the batch's range
                r = float(batch_range[0])
        return fixed_point(x, self.bits_x, r, signed, msb_bits=msb_bits)

    def _quantize_weight(self, layer):
        w = layer.params["weight"]
        self._master[layer.name] = w.copy()
        w[...] = fixed_point(w, self.bits_w, weight_range(w), True).value

    def _restore(self, layer):
        master = self._master.pop(layer.name, None)
        if master is not None:
            layer.params["weight"][...] = master

    def forward_input(self, layer, x):
        if layer.name not in self._convs:
            return x
        q = self._quantize_input(layer, x)
        self._quantize_weight(layer)
        return q.value

    def forward_output(self, layer, x, y):
        if layer.name in self._convs and not layer.training:
            self._restore(layer)              # evaluation has no backward: put the master back now
        return y

    def backward_output_grad(self, layer, dy):
        if layer.name in self._convs and self.bits_g < 32:
            return fixed_point(dy, self.bits_g, gradient_range(dy), True).value
        return dy

    def on_after_backward(self, state):
        for layer in state.model.leaves():
            if layer.name in self._master:
                self._restore(layer)

    def state_dict(self):
        """The running activation range of every conv that trained (saved in checkpoints and in model.npz)."""
        return {"running": dict(self._running)}

    def load_state_dict(self, d):
        running = d.get("running", {})
        if not isinstance(running, dict):
            raise ValueError(f"method {self.key or self.name}: saved running ranges are not a mapping")
        out = {}
        for k, v in running.items():
            r = float(v)
            if not (math.isfinite(r) and r >= 0):
                raise ValueError(f"method {self.key or self.name}: saved running range of {k} is {v!r}, "
                                 "expected a finite number >= 0")
            out[str(k)] = r
        self._running = out


@register_method("fixed8")
class Fixed8(_FixedPointConvs):
    """E2-Train §4.4's fixed-point baseline [16]: 8-bit conv activations and weights, 32-bit gradients, SGD."""

    def __init__(self, bits_x: int = 8, bits_w: int = 8, bits_g: int = 32):
        _check_bits("fixed8", bits_x=bits_x, bits_w=bits_w, bits_g=bits_g)
        self._setup(bits_x, bits_w, bits_g)


@dataclass
class _SignStats:
    """One conv's running sums over an epoch's steps (the records are these divided by ``steps``)."""
    steps: int = 0
    predicted: float = 0.0     # fraction of weights whose sign the MSB predictor decided
    agree: float = 0.0         # predicted sign == sgn(g_w), among the decided weights
    agree_all: float = 0.0     # the same over every weight

    def add(self, predicted: float, agree: float, agree_all: float) -> None:
        self.steps += 1
        self.predicted += predicted
        self.agree += agree
        self.agree_all += agree_all


@register_method("psg")
class PSG(_FixedPointConvs):
    """E2-Train §3.3: predictive sign gradient on every conv (Eq. 2), fixed-point operands, §4.4 defaults."""

    def __init__(self, beta: float = 0.05, bits_x: int = 8, bits_w: int = 8, bits_g: int = 16,
                 msb_x: int = 4, msb_g: int = 10):
        _check_bits("psg", bits_x=bits_x, bits_w=bits_w, bits_g=bits_g)
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"method psg: beta must be in [0, 1], got {beta}")
        if not (1 <= msb_x <= bits_x and 1 <= msb_g <= bits_g):
            raise ValueError(f"method psg: need 1 <= msb_x <= bits_x and 1 <= msb_g <= bits_g "
                             f"(got msb_x={msb_x}, bits_x={bits_x}, msb_g={msb_g}, bits_g={bits_g})")
        self.beta, self.msb_x, self.msb_g = beta, msb_x, msb_g
        self._setup(bits_x, bits_w, bits_g)
        self._x: dict[str, tuple] = {}
        self._g_msb: dict[str, np.ndarray] = {}
        self._acc: dict[str, _SignStats] = {}
        self._ledger = None

    def on_train_begin(self, state):
        super().on_train_begin(state)
        self._ledger = state.ledger

    def on_epoch_begin(self, state):
        self._acc = {name: _SignStats() for name in self._conv_order}

    def forward_input(self, layer, x):
        if layer.name not in self._convs:
            return x
        q = self._quantize_input(layer, x, msb_bits=self.msb_x if layer.training else None)
        self._quantize_weight(layer)
        if layer.training:
            self._x[layer.name] = (q.value, q.msb)
        return q.value

    def backward_output_grad(self, layer, dy):
        if layer.name not in self._convs:
            return dy
        q = fixed_point(dy, self.bits_g, gradient_range(dy), True, msb_bits=self.msb_g)
        self._g_msb[layer.name] = q.msb
        return q.value

    def supply_grads(self, layer, dy):
        """The sign gradient of Eq. 2, as a finisher of the layer's own dW (see ``minicnn.hooks``).

        The fallback g_w = dW(x_8, g_y16) is exactly what the conv's backward computes from
        its cached input x_8 and the quantized g_y16 it receives, so the layer computes it, in
        the same pass as dL/dx (the Winograd path shares the transform of g_y16 between
        them); :meth:`_sign_gradient` then adds the predictor pass and the rule.
        """
        if layer.name not in self._x:
            return {}
        x8, x_msb = self._x.pop(layer.name)
        dy_msb = self._g_msb.pop(layer.name)
        if not layer.wants_grad("weight"):        # frozen by another method: the layer does what it does
            return {}
        grads = {"weight": lambda g_full: self._sign_gradient(layer, x8.shape, x_msb, dy, dy_msb, g_full)}
        if "bias" in layer.params and layer.wants_grad("bias"):
            grads["bias"] = np.sign(dy.sum(axis=(0, 2, 3))).astype(layer.dtype)
        return grads

    def _sign_gradient(self, layer, x_shape, x_msb, dy, dy_msb, g_full):
        """Eq. 2 for one conv: g_w^msb = dW(x^msb, g_y^msb), then the sign rule against g_full; counts and records."""
        g_msb = layer.weight_grad(x_msb, dy_msb)
        rule = psg_sign_rule(g_msb, g_full, self.beta)
        same = np.sign(g_msb) == np.sign(g_full)
        n_pred = int(rule.predicted.sum())
        self._acc[layer.name].add(predicted=n_pred / rule.predicted.size,
                                  agree=float(same[rule.predicted].mean()) if n_pred else 1.0,
                                  agree_all=float(same.mean()))
        if self._ledger is not None:
            self._count(layer, x_shape, dy, rule.predicted.size - n_pred,
                        "bias" in layer.params and layer.wants_grad("bias"))
        return rule.direction

    def _count(self, layer, x_shape, dy, n_fallback, bias):
        """Weight-gradient work as the hardware would do it (see the module docstring).

        The predictor pass over every weight is declared ``extra`` (a plain run
        does not do it); the fallback pass, at the full fixed-point widths but
        only for the weights below tau, stands for the dW the layer did not compute.
        """
        per_weight = dy.shape[0] * dy.shape[2] * dy.shape[3]          # N * Ho * Wo MACs per weight
        n_weights = layer.params["weight"].size
        m = self._ledger.meter(layer)
        predictor = m.counts(macs=n_weights * per_weight, mac_fmt=fixed(max(self.msb_x, self.msb_g)),
                             moved=[("grad_output", Tensor(dy.shape)), ("input", Tensor(x_shape)),
                                    ("grad_weight", Tensor(layer.params["weight"].shape))])
        fallback = m.counts(macs=n_fallback * per_weight, mac_fmt=fixed(max(self.bits_x, self.bits_g)),
                            ops=dy.size if bias else 0, op_fmt=fixed(self.bits_g))   # db = sum of dy
        self._ledger.add_work(layer, "backward_weight", predictor, extra=True)
        self._ledger.add_work(layer, "backward_weight", fallback)

    def epoch_record(self, state) -> dict:
        layers = {}
        for name, a in self._acc.items():
            if a.steps:
                layers[name] = {"predicted": a.predicted / a.steps, "agree": a.agree / a.steps,
                                "agree_all": a.agree_all / a.steps}
        rec = {"beta": self.beta, "layers": layers}
        if layers:
            rec["predicted"] = float(np.mean([v["predicted"] for v in layers.values()]))
            rec["agree"] = float(np.mean([v["agree"] for v in layers.values()]))
        return rec


@register_method("signsgd")
class SignSGD(Method):
    """SignSGD [21] as E2-Train's baseline: sign of the fp32 gradient, then SGD with momentum and weight decay."""

    def __init__(self, layers: str = "conv"):
        if layers not in ("conv", "all"):
            raise ValueError(f"method signsgd: layers must be conv or all, got {layers!r}")
        self.layers = layers

    def param_grad(self, layer, name, grad):
        if self.layers == "all" or isinstance(layer, Conv2d):
            return np.sign(grad).astype(grad.dtype, copy=False)
        return grad


__all__ = ["Fixed8", "PSG", "SignSGD"]
