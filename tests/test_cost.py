"""The cost ledger on small hand-computed cases: every layer type, every phase.

Expected numbers are written out by hand from the rules in
minicnn/cost/rules.py (fp32 = 4 bytes; energy from the Horowitz table:
fp32 MAC 4.6 pJ, fp32 op 0.9 pJ, DRAM 1300 pJ / 8 bytes = 162.5 pJ per byte).
"""
import json

import numpy as np
import pytest

from minicnn.cost import Counts, EnergyTable, Ledger, static_cost
from minicnn.cost.rules import RULES, Rule, register
from minicnn.cost.formats import FormatTable, TensorFormat
from minicnn.hooks import Hook, HookList
from minicnn.layers import (AvgPool2d, BasicBlock, BatchNorm2d, Conv2d, Flatten, GlobalAvgPool2d, Linear,
                            MaxPool2d, ReLU, Sequential)
from minicnn.layers.base import Layer

MAC, OP, BYTE = 4.6, 0.9, 162.5   # pJ


def energy(macs=0, ops=0, nbytes=0):
    return macs * MAC + ops * OP + nbytes * BYTE


def run(model, x_shape, ledger=None, seed=0, dy_fn=None):
    """One forward + backward with a random upstream gradient; returns the ledger."""
    ledger = ledger or Ledger(model)
    model.set_hooks(HookList([ledger]))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=x_shape).astype(np.float32)
    y = model.forward(x)
    dy = rng.normal(size=y.shape).astype(np.float32)
    model.zero_grad()
    model.backward(dy if dy_fn is None else dy_fn(dy))
    return ledger


def check(c: Counts, macs, ops, nbytes):
    assert (c.macs, c.ops, c.bytes) == (macs, ops, nbytes)
    assert c.energy_pj == pytest.approx(energy(macs, ops, nbytes), rel=1e-12)


# -- one layer type at a time ---------------------------------------------------------------

def test_conv2d_all_phases_and_first_layer_has_no_backward_input():
    model = Sequential(("c0", Conv2d(2, 3, 3, padding=1)),
                       ("c1", Conv2d(3, 4, (3, 2), stride=(2, 1), padding=(1, 0))))
    led = run(model, (2, 2, 5, 6))
    c0, c1 = led.per_layer()["c0"], led.per_layer()["c1"]
    # c1: x (2,3,5,6) = 180 values, y (2,4,3,5) = 120, K = 3*3*2 = 18, weight 72, bias 4
    check(c1["forward"], 120 * 18, 120, 4 * (180 + 72 + 4 + 120))
    check(c1["backward_input"], 2160, 0, 4 * (120 + 72 + 180))
    check(c1["backward_weight"], 2160, 120, 4 * (120 + 180 + 72) + 4 * (120 + 4))
    # c0: x (2,2,5,6) = 120, y (2,3,5,6) = 180, K = 2*9 = 18; first layer: no dL/dx
    check(c0["forward"], 180 * 18, 180, 4 * (120 + 54 + 3 + 180))
    check(c0["backward_input"], 0, 0, 0)
    check(c0["backward_weight"], 3240, 180, 4 * (180 + 120 + 54) + 4 * (180 + 3))


def test_linear_relu_flatten():
    model = Sequential(("flat", Flatten()), ("l1", Linear(6, 4)), ("relu", ReLU()), ("l2", Linear(4, 3)))
    led = run(model, (5, 2, 3))
    p = led.per_layer()
    check(p["l2"]["forward"], 5 * 4 * 3, 15, 4 * (20 + 12 + 3 + 15))
    check(p["l2"]["backward_input"], 60, 0, 4 * (15 + 12 + 20))
    check(p["l2"]["backward_weight"], 60, 15, 4 * (15 + 20 + 12) + 4 * (15 + 3))
    check(p["relu"]["forward"], 0, 20, 4 * 40)
    check(p["relu"]["backward_input"], 0, 20, 4 * 60)          # R dy, R y (the cache), W dx
    check(p["l1"]["forward"], 5 * 6 * 4, 20, 4 * (30 + 24 + 4 + 20))
    check(p["l1"]["backward_input"], 0, 0, 0)                  # nothing below l1 trains
    for phase in p["flat"].values():                           # a view: free
        check(phase, 0, 0, 0)


def test_batchnorm_train_eval_and_frozen():
    def model():
        return Sequential(("conv", Conv2d(1, 2, 1, bias=False)), ("bn", BatchNorm2d(2)), ("relu", ReLU()))
    # bn input (3,2,2,2): E = 24 per tensor, C = 2
    bn = run(model(), (3, 1, 2, 2)).per_layer()["bn"]
    check(bn["forward"], 0, 6 * 24 + 18 * 2, 4 * (24 + 2 + 2 + 24) + 4 * 6 * 2)
    check(bn["backward_input"], 0, 4 * 24 + 8 * 2, 4 * (24 + 24 + 2 + 2 + 2 + 24))
    # the reduction pass (4/elem, R dy and x) goes to dgamma; dgamma 1 op per channel; W dgamma, dbeta
    check(bn["backward_weight"], 0, 4 * 24 + 2, 4 * (24 + 24) + 4 * 2 + 4 * 2)

    # gamma and beta frozen: dx still needs both sums, so backward_input pays the reduction pass
    m = model()
    m["bn"].freeze()
    bn = run(m, (3, 1, 2, 2)).per_layer()["bn"]
    check(bn["backward_weight"], 0, 0, 0)
    check(bn["backward_input"], 0, 4 * 24 + 8 * 2 + 4 * 24, 4 * (24 + 24 + 2 + 2 + 2 + 24) + 4 * (24 + 24))

    # only beta frozen: dgamma still pays the pass, dx does not
    m = model()
    m["bn"].freeze("bias")
    bn = run(m, (3, 1, 2, 2)).per_layer()["bn"]
    check(bn["backward_weight"], 0, 4 * 24 + 2, 4 * (24 + 24) + 4 * 2)
    check(bn["backward_input"], 0, 4 * 24 + 8 * 2, 4 * (24 + 24 + 2 + 2 + 2 + 24))

    # eval mode: y = x*scale + shift, counted in the eval phase only
    m = model()
    led = Ledger(m)
    m.set_hooks(HookList([led]))
    m.eval()                         # the ledger reads layer.training: no mode to set
    m.forward(np.ones((3, 1, 2, 2), np.float32))
    bn = led.per_layer()["bn"]
    check(bn["eval"], 0, 2 * 24 + 6 * 2, 4 * (24 + 2 + 2 + 24) + 4 * 2 * 2)
    check(bn["forward"], 0, 0, 0)


def test_pools():
    model = Sequential(("conv", Conv2d(1, 1, 1)), ("max", MaxPool2d(2)), ("avg", AvgPool2d(2, stride=1)),
                       ("gap", GlobalAvgPool2d()))
    # conv out (2,1,6,6) = 72 -> max (2,1,3,3) = 18 -> avg (2,1,2,2) = 8 -> gap (2,1) = 2
    p = run(model, (2, 1, 6, 6)).per_layer()
    check(p["max"]["forward"], 0, 18 * 3, 4 * (72 + 18) + 4 * 18)          # + the int32 argmax
    check(p["max"]["backward_input"], 0, 18, 4 * (18 + 72) + 4 * 18)
    check(p["avg"]["forward"], 0, 8 * 4, 4 * (18 + 8))
    check(p["avg"]["backward_input"], 0, 8 * 5, 4 * (8 + 18))
    check(p["gap"]["forward"], 0, 8, 4 * (8 + 2))
    check(p["gap"]["backward_input"], 0, 2, 4 * (2 + 8))
    for name in ("max", "avg", "gap"):
        check(p[name]["backward_weight"], 0, 0, 0)


def test_residual_add_identity_and_projection():
    model = Sequential(("conv", Conv2d(2, 4, 1, bias=False)), ("b0", BasicBlock(4, 4)),
                       ("b1", BasicBlock(4, 8, stride=2)))
    p = run(model, (2, 2, 4, 4)).per_layer()
    # b0: add over (2,4,4,4) = 128 forward and backward (R 2 addends, W the sum)
    check(p["b0"]["forward"], 0, 128, 4 * 3 * 128)
    check(p["b0"]["backward_input"], 0, 128, 4 * 3 * 128)
    # b1 (projection, stride 2): forward add over its output (2,8,2,2) = 64,
    # backward dx_main + dx_shortcut over its input (2,4,4,4) = 128
    check(p["b1"]["forward"], 0, 64, 4 * 3 * 64)
    check(p["b1"]["backward_input"], 0, 128, 4 * 3 * 128)
    # the block's layers are counted on their own
    assert p["b1.shortcut_conv"]["forward"].macs == 64 * 4
    assert p["b0.conv1"]["backward_input"].macs == 128 * 4 * 9


class GateSecondSample(Hook):
    def block_gate(self, block, x):
        return np.array([True, False] * (len(x) // 2))


def test_residual_block_skipped_per_sample_counts_kept_samples_only():
    model = Sequential(("conv", Conv2d(2, 4, 1, bias=False)), ("b0", BasicBlock(4, 4)))
    led = Ledger(model)
    model.set_hooks(HookList([GateSecondSample(), led]))
    rng = np.random.default_rng(1)
    y = model.forward(rng.normal(size=(4, 2, 4, 4)).astype(np.float32))
    model.zero_grad()
    model.backward(rng.normal(size=y.shape).astype(np.float32))
    p = led.per_layer()
    kept = 2 * 4 * 4 * 4                          # 2 of 4 samples
    check(p["b0"]["forward"], 0, kept, 4 * 3 * kept)
    check(p["b0"]["backward_input"], 0, kept, 4 * 3 * kept)
    assert p["b0.conv1"]["forward"].macs == kept * 4 * 9
    assert p["b0.conv2"]["backward_weight"].macs == kept * 4 * 9
    assert p["b0.relu_out"]["forward"].ops == 2 * kept    # all samples
    dense = led.per_layer(dense=True)
    assert dense["b0.conv1"]["forward"].macs == 0         # no dense step was added


def test_update_counts():
    model = Sequential(("conv", Conv2d(1, 2, 3)), ("fc", Linear(2, 3)))
    led = Ledger(model)
    conv = model["conv"]
    led.count_update(conv, "weight", 1)        # 18 values: R+W p, R g, R+W momentum
    check(led.per_layer()["conv"]["update"], 0, 18 * 4, 4 * 18 * 5)
    led.count_update(conv, "bias", 0)          # 2 values, plain SGD: R+W p, R g
    check(led.per_layer()["conv"]["update"], 0, 18 * 4 + 2 * 2, 4 * 18 * 5 + 4 * 2 * 3)
    wd = Ledger(model, weight_decay=True)
    wd.count_update(model["fc"], "weight", 1)
    check(wd.per_layer()["fc"]["update"], 0, 6 * 6, 4 * 6 * 5)
    with pytest.raises(KeyError, match="no parameter"):
        led.count_update(conv, "gamma", 1)


# -- structure: frozen layers, early stop, last batch, eval, dense ----------------------------------

def small_net():
    return Sequential(("conv1", Conv2d(3, 4, 3, padding=1, bias=False)), ("bn1", BatchNorm2d(4)), ("relu1", ReLU()),
                      ("conv2", Conv2d(4, 4, 3, padding=1, bias=False)), ("bn2", BatchNorm2d(4)), ("relu2", ReLU()),
                      ("pool", MaxPool2d(2)), ("flat", Flatten()), ("fc", Linear(4 * 4 * 4, 10)))


def test_frozen_layer_has_no_backward_weight_and_backward_stops_early():
    model = small_net()
    for name in ("conv1", "bn1", "conv2"):
        model[name].freeze()
    p = run(model, (2, 3, 8, 8)).per_layer()
    # conv2 frozen: bn2 is the lowest trained layer and needs no dL/dx
    assert not p["bn2"]["backward_input"] and p["bn2"]["backward_weight"].ops > 0
    for name in ("conv2", "relu1", "bn1", "conv1"):
        assert not p[name]["backward_input"] and not p[name]["backward_weight"], name
        assert p[name]["forward"].bytes > 0
    # a frozen layer in the middle: dL/dx yes (conv1 below trains), dW no
    model = small_net()
    model["conv2"].freeze()
    p = run(model, (2, 3, 8, 8)).per_layer()
    assert p["conv2"]["backward_input"].macs == 2 * 8 * 8 * 4 * 4 * 9
    assert not p["conv2"]["backward_weight"]
    assert p["conv1"]["backward_weight"].macs == 2 * 8 * 8 * 4 * 3 * 9


def step(model, led, x, labels_seed=0, momentum=True):
    from minicnn.losses import SoftmaxCrossEntropy
    loss = SoftmaxCrossEntropy()
    logits = model.forward(x)
    loss.forward(logits, np.random.default_rng(labels_seed).integers(0, logits.shape[1], len(x)))
    model.zero_grad()
    model.backward(loss.backward())
    for _, layer, name in model.named_parameters():
        if layer.grads[name] is not None:
            led.count_update(layer, name, 1 if momentum else 0)


def test_dense_equals_actual_for_a_plain_run_with_a_smaller_last_batch():
    model = small_net()
    led = Ledger(model)
    model.set_hooks(HookList([led]))
    rng = np.random.default_rng(0)
    for n in (4, 4, 3):
        led.add_dense_step(n, (3, 8, 8))
        step(model, led, rng.normal(size=(n, 3, 8, 8)).astype(np.float32))
    act, dense = led.per_layer(), led.per_layer(dense=True)
    for name in act:
        for phase in ("forward", "backward_input", "backward_weight", "update"):
            assert act[name][phase] == dense[name][phase], (name, phase)
    assert led.totals()["total"] == led.dense_totals()["total"]
    s = led.summary()
    assert s["savings"] == {"macs": 0.0, "bytes": 0.0, "energy": 0.0, "ops": 0.0}
    assert s["dense_steps"] == 3 and s["dense_images"] == 11
    # 11 images of conv2 forward work, the last batch counted at its real size
    assert act["conv2"]["forward"].macs == 11 * 8 * 8 * 4 * 4 * 9
    # the dense step is static_cost per batch size
    st4, st3 = static_cost(model, 4, (3, 8, 8)), static_cost(model, 3, (3, 8, 8))
    assert dense["fc"]["update"] == st4["fc"]["update"].scaled(2) + st3["fc"]["update"]
    assert dense["bn1"]["backward_input"] == st4["bn1"]["backward_input"].scaled(2) + st3["bn1"]["backward_input"]


def test_eval_counted_apart_and_not_in_total():
    model = small_net()
    led = Ledger(model)
    model.set_hooks(HookList([led]))
    x = np.random.default_rng(0).normal(size=(4, 3, 8, 8)).astype(np.float32)
    led.add_dense_step(4, (3, 8, 8))
    step(model, led, x)
    before = led.totals()
    model.eval()                     # evaluation is what layer.training says, nothing else
    model.forward(x)
    model.forward(x[:2])
    model.train()
    after = led.totals()
    assert after["total"] == before["total"] and after["forward"] == before["forward"]
    assert after["eval"].macs == 6 * 8 * 8 * (4 * 3 * 9 + 4 * 4 * 9) + 6 * 64 * 10
    assert after["eval"].ops < 6 / 4 * before["forward"].ops       # BN is cheaper in eval mode
    assert led.dense_totals()["eval"] == after["eval"]               # dense eval = actual eval
    assert led.summary()["savings"]["macs"] == 0.0


def test_savings_when_batches_are_dropped():
    model = small_net()
    led = Ledger(model)
    model.set_hooks(HookList([led]))
    x = np.random.default_rng(0).normal(size=(4, 3, 8, 8)).astype(np.float32)
    for i in range(4):
        led.add_dense_step(4, (3, 8, 8))
        if i % 2 == 0:                      # half the batches dropped (SMD-like)
            step(model, led, x)
    s = led.summary()
    for k in ("macs", "bytes", "energy", "ops"):
        assert s["savings"][k] == pytest.approx(0.5, abs=1e-12)
    assert s["macs"]["total"] * 2 == s["dense_macs"]["total"]
    assert s["energy_j"]["total"] == pytest.approx(s["dense_energy_j"]["total"] / 2, rel=1e-12)
    # and freezing saves exactly the frozen work
    model["conv2"].freeze()
    led.reset()
    led.add_dense_step(4, (3, 8, 8))
    step(model, led, x)
    d, a = led.dense_totals(), led.totals()
    saved = 4 * 8 * 8 * 4 * 4 * 9        # conv2's dW MACs
    assert d["total"].macs - a["total"].macs == saved
    assert led.summary()["savings"]["macs"] == pytest.approx(saved / d["total"].macs)


# -- formats ---------------------------------------------------------------------------------------

class PruneGrad(Hook):
    """Zero all but every 4th value of dL/dy entering ``target`` (like Ye et al.'s pruning)."""

    def __init__(self, target):
        self.target = target

    def backward_output_grad(self, layer, dy):
        if layer.name == self.target:
            dy = dy.copy()
            dy.reshape(-1)[np.arange(dy.size) % 4 != 0] = 0
        return dy


def test_sparse_grad_output_scales_macs_and_bytes_with_nnz():
    model = small_net()
    fmts = FormatTable()
    led = Ledger(model, formats=fmts)
    sparse = TensorFormat(bits=32, sparse=True, index_bits=16)
    fmts.set(model["conv2"], "grad_output", sparse)
    model.set_hooks(HookList([PruneGrad("conv2"), led]))
    rng = np.random.default_rng(0)
    y = model.forward(rng.normal(size=(2, 3, 8, 8)).astype(np.float32))
    model.zero_grad()
    model.backward(rng.normal(size=y.shape).astype(np.float32))
    c = led.per_layer()["conv2"]
    size = 2 * 4 * 8 * 8                 # dy of conv2: 512 values, 128 kept
    nnz = 128
    K = 4 * 9
    dy_bytes = nnz * (4 + 2)             # values + 16-bit indices
    check(c["backward_input"], nnz * K, 0, dy_bytes + 4 * (144 + size))
    check(c["backward_weight"], nnz * K, 0, dy_bytes + 4 * (size + 144))
    # dense count is unchanged
    assert led.per_layer(dense=True)["conv2"]["backward_input"].macs == 0   # no dense step added
    assert static_cost(model, 2, (3, 8, 8))["conv2"]["backward_input"].macs == size * K


def test_low_precision_formats_bytes_and_energy():
    model = small_net()
    fmts = FormatTable()
    led = Ledger(model, formats=fmts)
    int8, int4 = TensorFormat(bits=8, fixed=True), TensorFormat(bits=4, fixed=True)
    fc = model["fc"]
    for role in ("input", "weight"):
        fmts.set(fc, role, int8)
    fmts.set(fc, "bias", int4)            # 10 values * 4 bits = 5 bytes
    fmts.set(fc, "output", int4)          # 2*10 values: 10 bytes
    p = run(model, (2, 3, 8, 8), ledger=led).per_layer()
    f = p["fc"]["forward"]
    macs, ops = 2 * 64 * 10, 20
    nbytes = 2 * 64 + 640 + 5 + 10
    assert (f.macs, f.ops, f.bytes) == (macs, ops, nbytes)
    # int8 x int8 MAC = 0.2 + int32 accumulate 0.1 pJ; the bias add at the int4 output: 0.015 pJ
    assert f.energy_pj == pytest.approx(macs * 0.3 + ops * 0.015 + nbytes * BYTE)
    # backward: dy is fp32, so its MACs are fp32 (the wider operand) but the weight read is 1 byte each
    b = p["fc"]["backward_weight"]
    assert b.bytes == 4 * 20 + 2 * 64 + 4 * 640 + 4 * 20 + 4 * 10
    assert b.energy_pj == pytest.approx(macs * MAC + 20 * OP + b.bytes * BYTE)
    # a sub-byte tensor with an odd number of bits in total gives fractional bytes
    fmts.set(fc, "bias", TensorFormat(bits=3, fixed=True))
    led.reset()
    model.forward(np.zeros((2, 3, 8, 8), np.float32))
    assert led.per_layer()["fc"]["forward"].bytes == 2 * 64 + 640 + 30 / 8 + 10


# -- the energy table ------------------------------------------------------------------------------

def test_energy_table_entries_and_derived_values():
    e = EnergyTable()
    fp32, fp16 = TensorFormat(), TensorFormat(bits=16)
    fx = lambda b: TensorFormat(bits=b, fixed=True)   # noqa: E731
    assert e.mac_pj(fp32) == pytest.approx(4.6) and e.mac_pj(fp16) == pytest.approx(1.5)
    assert e.mult_pj(fx(8)) == 0.2 and e.mult_pj(fx(32)) == 3.1
    assert e.mult_pj(fx(16)) == pytest.approx(3.1 / 4)       # quadratic from int32
    assert e.mult_pj(fx(4)) == pytest.approx(0.05)           # quadratic from int8
    assert e.add_pj(fx(4)) == pytest.approx(0.015)           # linear
    assert e.add_pj(fx(24)) == pytest.approx(0.075)          # between int16 and int32
    assert e.mac_pj(fx(8)) == pytest.approx(0.3)             # int8 mult + int32 accumulate
    assert e.op_pj(fp32) == 0.9
    assert e.byte_pj() == 1300 / 8
    assert EnergyTable(memory_level="cache_1mb").byte_pj() == 100 / 8


def test_energy_table_override(tmp_path):
    model = Sequential(("c0", Conv2d(1, 2, 1)), ("c1", Conv2d(2, 2, 1)))
    table = EnergyTable(fp32_mult=0.0, fp32_add=1.0, dram=8.0)     # 1 pJ per MAC, per op and per byte
    led = run(model, (1, 1, 2, 2), ledger=Ledger(model, energy=table))
    c = led.per_layer()["c1"]["forward"]
    assert c.energy_pj == pytest.approx(c.macs + c.ops + c.bytes)
    path = tmp_path / "table.json"
    path.write_text(json.dumps({"fp32_mult": 0.0, "fp32_add": 1.0, "dram": 8.0}))
    assert EnergyTable.from_json(str(path)) == table
    path.write_text(json.dumps({"fp32_mul": 1.0}))
    with pytest.raises(ValueError, match="unknown entries fp32_mul"):
        EnergyTable.from_json(str(path))
    with pytest.raises(ValueError, match="memory_level"):
        EnergyTable(memory_level="L2")
    with pytest.raises(ValueError, match="fp32_add"):
        EnergyTable(fp32_add=-1)
    with pytest.raises(ValueError, match="cannot read"):
        EnergyTable.from_json(str(tmp_path / "missing.json"))


# -- output ----------------------------------------------------------------------------------------

def test_json_roundtrip_and_layer_sums(tmp_path):
    model = Sequential(("conv", Conv2d(3, 4, 3, padding=1)), ("blk", BasicBlock(4, 4)), ("gap", GlobalAvgPool2d()),
                       ("fc", Linear(4, 10)))
    led = Ledger(model)
    model.set_hooks(HookList([led]))
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 4)).astype(np.float32)
    led.add_dense_step(2, (3, 4, 4))
    step(model, led, x)
    led.save(str(tmp_path / "cost.json"))
    data = json.loads((tmp_path / "cost.json").read_text())
    assert data["schema"] == "minicnn.cost/1"
    names = data["order"]
    assert names == ["conv", "blk.conv1", "blk.bn1", "blk.relu1", "blk.conv2", "blk.bn2", "blk", "blk.relu_out",
                     "gap", "fc"]
    assert list(data["layers"]) == names and list(data["dense_layers"]) == names
    assert data["types"]["blk"] == "add" and data["types"]["fc"] == "Linear"
    assert data["params"]["conv"] == 4 * 3 * 9 + 4 and data["params"]["blk"] == 0
    for phase in ("forward", "backward_input", "backward_weight", "update"):
        for key in ("macs", "ops", "bytes"):
            assert sum(lay[phase][key] for lay in data["layers"].values()) == data["totals"][phase][key]
            assert data["layers"]["blk.conv2"][phase][key] == data["dense_layers"]["blk.conv2"][phase][key]
    assert data["totals"]["total"]["macs"] == data["summary"]["macs"]["total"] == data["summary"]["dense_macs"]["total"]
    json.dumps(led.summary())   # JSON-able


def test_unknown_layer_type_is_a_clear_error_and_rules_can_be_added():
    class Scale(Layer):
        def output_shape(self, s):
            return s

        def forward(self, x):
            return 2 * x

        def backward(self, dy):
            return 2 * dy if self.needs_input_grad else None

    model = Sequential(("conv", Conv2d(1, 1, 1)), ("scale", Scale()))
    with pytest.raises(TypeError, match="no counting rule for layer scale of type Scale"):
        Ledger(model)

    @register("Scale")
    class ScaleRule(Rule):
        def forward(self, m, layer, w):
            return m.counts(ops=w.x.size, moved=[("input", w.x), ("output", w.y)])
    try:
        led = run(model, (1, 1, 2, 2), ledger=Ledger(model))
        check(led.per_layer()["scale"]["forward"], 0, 4, 32)
    finally:
        del RULES["Scale"]
