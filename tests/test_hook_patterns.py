"""The hook points are enough for every mechanism the papers need.

Each test writes a miniature method (a few lines, nothing in minicnn/layers
touched) in the pattern the real method will follow, and checks both what
training computes and what the ledger counts:

* fixed-point emulation of weights and inputs (E2-Train §3.3, PSG's 8-bit
  weights/activations): quantized tensors used in forward *and* backward, fp32
  master weights updated, bytes counted at 1 byte per value;
* stochastic mini-batch dropping (E2-Train §3.1): a dropped batch costs nothing
  and the dense count still includes it;
* activation-gradient pruning (Ye et al. §3.2): dL/dy zeroed before a layer's
  backward, declared sparse, and the backward MACs counted on the non-zeros.
"""
import numpy as np
import pytest

from minicnn.cost import Ledger
from minicnn.data import synthetic
from minicnn.cost.formats import TensorFormat
from minicnn.hooks import Hook, HookList
from minicnn.layers import Conv2d, Linear
from minicnn.losses import SoftmaxCrossEntropy
from minicnn.models import build
from minicnn.training import SGD, ConstantLR, Trainer

INT8 = TensorFormat(bits=8, fixed=True)


def quantize(a, bits=8):
    """Symmetric fixed point: round(a / step) * step, step = max|a| / (2**(bits-1) - 1)."""
    step = max(float(np.abs(a).max()), 1e-12) / (2 ** (bits - 1) - 1)
    return (np.round(a / step) * step).astype(a.dtype)


class FixedPointWeights(Hook):
    """Forward and backward of every conv/linear run on 8-bit weights and inputs; updates hit fp32 masters."""

    def __init__(self):
        self.master = {}

    def on_train_begin(self, state):
        for layer in state.model.leaves():
            if isinstance(layer, (Conv2d, Linear)):
                state.formats.set(layer, "weight", INT8)
                state.formats.set(layer, "input", INT8)

    def forward_input(self, layer, x):
        if not isinstance(layer, (Conv2d, Linear)):
            return x
        w = layer.params["weight"]
        self.master[layer.name] = (layer, w.copy())
        w[...] = quantize(w)                                  # backward will use these same values
        return quantize(x)

    def forward_output(self, layer, x, y):
        if not layer.training and layer.name in self.master:  # eval: nothing to backpropagate
            self._restore(layer.name)
        return y

    def on_after_backward(self, state):                      # every backward is done: masters back
        for name in list(self.master):
            self._restore(name)

    def _restore(self, name):
        layer, w = self.master.pop(name)
        layer.params["weight"][...] = w


def test_fixed_point_emulation_through_hooks():
    model = build("convnet-small", seed=0)
    method = FixedPointWeights()
    ledger = Ledger(model)
    ds = synthetic(n_train=64, n_test=32, seed=0)
    before = model["conv2"].params["weight"].copy()
    Trainer(model, ds, SGD(model, 0.01, momentum=0.9), ConstantLR(0.01), epochs=1, batch_size=32,
            methods=[method], ledger=ledger, progress=False).fit()
    w = model["conv2"].params["weight"]
    assert not method.master                                 # everything restored, eval included
    assert not np.array_equal(w, before)
    assert not np.allclose(w, quantize(w))                   # fp32 masters, off the 8-bit grid
    # the forward really ran on quantized weights and inputs
    x = np.random.default_rng(0).standard_normal((2, 32, 8, 8)).astype(np.float32)
    conv = model["conv2"]
    model.set_hooks(HookList([method]))
    model.eval()
    y_hooked = model.forward_child(conv, x)
    ref = Conv2d(32, 32, 3, padding=1, bias=False)
    ref.params["weight"][...] = quantize(w)
    np.testing.assert_allclose(y_hooked, ref.eval().forward(quantize(x)), rtol=1e-5, atol=1e-6)
    # weights and inputs moved at 1 byte per value: forward bytes below the dense fp32 count
    s = ledger.summary()
    assert s["bytes"]["forward"] < s["dense_bytes"]["forward"]
    assert s["savings"]["bytes"] > 0 and s["savings"]["energy"] > 0
    assert s["macs"]["total"] == s["dense_macs"]["total"]          # same arithmetic, cheaper bytes


class DropEveryOther(Hook):
    def on_batch_begin(self, state):
        return state.batch % 2 == 0


def test_dropped_batches_cost_nothing_but_count_in_the_dense_reference():
    ds = synthetic(n_train=128, n_test=32, seed=0)
    model = build("convnet-small", seed=0)
    ledger = Ledger(model)
    tr = Trainer(model, ds, SGD(model, 0.01), ConstantLR(0.01), epochs=1, batch_size=32,
                 methods=[DropEveryOther()], ledger=ledger, progress=False)
    tr.fit()
    assert tr.state.batches_done == 2 and tr.state.batches_dropped == 2
    t, d = ledger.totals(), ledger.dense_totals()
    assert t["forward"].macs == 2 * 32 * 24_518_656 and d["forward"].macs == 4 * 32 * 24_518_656
    assert ledger.summary()["savings"]["macs"] == pytest.approx(0.5)


class PruneGradOutput(Hook):
    """Zero dL/dy entries below a threshold before conv3's backward (a deterministic stand-in)."""

    def __init__(self, formats, keep_fraction=0.25):
        self.formats, self.keep = formats, keep_fraction

    def backward_output_grad(self, layer, dy):
        if layer.name != "conv3":
            return dy
        self.formats.set(layer, "grad_output", TensorFormat(sparse=True))
        tau = np.quantile(np.abs(dy), 1 - self.keep)
        out = np.where(np.abs(dy) >= tau, dy, 0).astype(dy.dtype)
        self.nnz = int(np.count_nonzero(out))
        return out


def test_pruned_output_gradient_is_used_and_counted_on_its_nonzeros():
    from minicnn.cost.formats import FormatTable
    model = build("convnet-small", seed=0)
    formats = FormatTable()
    ledger = Ledger(model, formats=formats)
    prune = PruneGradOutput(formats)
    model.set_hooks(HookList([prune, ledger]))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 32, 32)).astype(np.float32)
    loss = SoftmaxCrossEntropy()
    loss.forward(model.forward(x), rng.integers(0, 10, 4))
    model.zero_grad()
    model.backward(loss.backward())
    conv3 = ledger.per_layer()["conv3"]
    per_nz = 32 * 3 * 3                                  # MACs per non-zero of dL/dy: Cin*kh*kw
    assert conv3["backward_input"].macs == prune.nnz * per_nz
    assert conv3["backward_weight"].macs == prune.nnz * per_nz
    assert prune.nnz < 4 * 64 * 16 * 16 * 0.3
    assert ledger.per_layer()["conv4"]["backward_input"].macs == 4 * 16 * 16 * 64 * 64 * 9   # dense
