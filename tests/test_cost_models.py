"""The cost ledger on whole models: MAC counts checked against first-principles counts."""
import json

import numpy as np
import pytest

from minicnn.cost import Ledger, format_cost_table, static_cost
from minicnn.hooks import HookList
from minicnn.losses import SoftmaxCrossEntropy
from minicnn.models import build


def conv(cin, cout, k, hout):
    """Forward MACs per image of a conv with a k x k kernel and a hout x hout output."""
    return hout * hout * cout * cin * k * k


# Written from the architectures' definitions (papers / zoo docstring), not from the ledger's code.
CONVNET_SMALL = conv(3, 32, 3, 32) + conv(32, 32, 3, 32) + conv(32, 64, 3, 16) + conv(64, 64, 3, 16) + 64 * 8 * 8 * 10


def _resnet(n):
    total = conv(3, 16, 3, 32)
    cin = 16
    for cout, hw in ((16, 32), (32, 16), (64, 8)):
        for b in range(n):
            total += conv(cin, cout, 3, hw) + conv(cout, cout, 3, hw)
            if cin != cout:
                total += conv(cin, cout, 1, hw)      # projection shortcut
            cin = cout
    return total + 64 * 10


RESNET20, RESNET8 = _resnet(3), _resnet(1)
ALEXNET = conv(3, 64, 11, 8) + conv(64, 192, 5, 4) + conv(192, 384, 3, 2) + conv(384, 256, 3, 2) \
    + conv(256, 256, 3, 2) + 256 * 10
VGG11 = conv(3, 64, 3, 32) + conv(64, 128, 3, 16) + conv(128, 256, 3, 8) + conv(256, 256, 3, 8) \
    + conv(256, 512, 3, 4) + conv(512, 512, 3, 4) + 2 * conv(512, 512, 3, 2) + 512 * 10


def test_first_principles_numbers_are_the_documented_ones():
    assert CONVNET_SMALL == 24_518_656
    assert RESNET20 == 40_813_184


def train_step(model, ledger, x, y, momentum=True):
    loss = SoftmaxCrossEntropy()
    loss.forward(model.forward(x), y)
    model.zero_grad()
    model.backward(loss.backward())
    for _, layer, name in model.named_parameters():
        if layer.grads[name] is not None:
            ledger.count_update(layer, name, 1 if momentum else 0)


@pytest.mark.parametrize("name,per_image", [("convnet-small", CONVNET_SMALL), ("resnet20", RESNET20)])
def test_whole_model_forward_backward(name, per_image):
    model = build(name)
    led = Ledger(model)
    model.set_hooks(HookList([led]))
    rng = np.random.default_rng(0)
    n_images = 0
    for n in (2, 1):                      # the last batch smaller
        x = rng.normal(size=(n, 3, 32, 32)).astype(np.float32)
        led.add_dense_step(n)
        train_step(model, led, x, rng.integers(0, 10, n))
        n_images += n
    t = led.totals()
    assert t["forward"].macs == n_images * per_image
    first = model.leaves()[0]             # conv1: no dL/dx
    first_macs = first.output_shape((1, 3, 32, 32))[1] * 32 * 32 * 3 * 9
    assert t["backward_input"].macs == n_images * (per_image - first_macs)
    assert t["backward_weight"].macs == n_images * per_image
    assert t["update"].ops == 2 * 4 * model.num_params()          # 2 steps, momentum: 4 ops per value
    # a plain fp32 run is its own dense count, layer by layer
    act, dense = led.per_layer(), led.per_layer(dense=True)
    for layer_name in act:
        for phase in ("forward", "backward_input", "backward_weight", "update"):
            assert act[layer_name][phase] == dense[layer_name][phase], (layer_name, phase)
    s = led.summary()
    assert s["macs"]["total"] == s["dense_macs"]["total"] == n_images * (3 * per_image - first_macs)
    assert s["savings"]["energy"] == 0.0
    json.dumps(led.to_json())


def test_resnet_frozen_stage_stops_backward():
    model = build("resnet8")
    for layer in model.leaves():
        if layer.name in ("conv1", "bn1") or layer.name.startswith("layer1."):
            layer.freeze()
    led = Ledger(model)
    model.set_hooks(HookList([led]))
    rng = np.random.default_rng(0)
    led.add_dense_step(2)
    train_step(model, led, rng.normal(size=(2, 3, 32, 32)).astype(np.float32), np.array([1, 2]))
    p = led.per_layer()
    for name, per in p.items():
        if name in ("conv1", "bn1", "relu1") or name.startswith("layer1."):
            assert not per["backward_input"] and not per["backward_weight"] and not per["update"], name
            assert per["forward"], name
    # layer2.0 is the lowest trained block: its layers get dW but no block input gradient
    assert p["layer2.0.conv1"]["backward_weight"].macs == 2 * conv(16, 32, 3, 16)
    assert not p["layer2.0.conv1"]["backward_input"] and not p["layer2.0.shortcut_conv"]["backward_input"]
    assert not p["layer2.0"]["backward_input"]          # no dx_main + dx_shortcut
    assert p["layer2.0.conv2"]["backward_input"].macs == 2 * conv(32, 32, 3, 16)
    frozen_fwd = sum(conv(16, 16, 3, 32) for _ in range(2)) + conv(3, 16, 3, 32)
    d, a = led.dense_totals()["total"], led.totals()["total"]
    # saved: dW of the frozen convs, dx of conv1..layer1 and of layer2.0's first convs
    saved = 2 * (frozen_fwd + frozen_fwd - conv(3, 16, 3, 32) + conv(16, 32, 3, 16) + conv(16, 32, 1, 16))
    assert d.macs - a.macs == saved


@pytest.mark.parametrize("name,per_image", [("convnet-small", CONVNET_SMALL), ("resnet20", RESNET20),
                                            ("resnet8", RESNET8), ("alexnet-cifar", ALEXNET),
                                            ("vgg11-cifar", VGG11)])
def test_static_cost_forward_macs(name, per_image):
    cost = static_cost(build(name), 5)
    assert sum(per["forward"].macs for per in cost.values()) == 5 * per_image
    assert sum(per["eval"].macs for per in cost.values()) == 5 * per_image


def test_cost_table():
    model = build("resnet20")
    table = format_cost_table(model, 128)
    assert "40,813,184" in table                       # per-image forward MACs
    assert f"MACs forward {128 * RESNET20}" in table   # exact total
    assert "40.81 M" not in table and "5.22 G" in table   # human units, batch 128
    assert "layer3.2.conv2" in table and "layer1.0  " in table and "add" in table
    assert f"params {model.num_params()}" in table
    one = format_cost_table(model, 1)
    assert "40.81 M" in one
    with pytest.raises(ValueError, match="batch size"):
        format_cost_table(model, 0)


def test_trainer_wiring(tmp_path):
    """The Trainer drives the ledger; a plain run has no savings."""
    from minicnn import data, training
    rng = np.random.default_rng(0)
    ds = data.Dataset("tiny", rng.integers(0, 256, (10, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, 10),
                      rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, 4),
                      [str(i) for i in range(10)])
    model = build("convnet-small")
    led = Ledger(model, momentum=True)
    opt = training.SGD(model, lr=0.01, momentum=0.9)
    tr = training.Trainer(model, ds, opt, training.ConstantLR(0.01), 1, batch_size=4, ledger=led,
                          run_dir=str(tmp_path), progress=False)
    summary = tr.fit()
    assert summary["macs"]["forward"] == 10 * CONVNET_SMALL
    assert summary["macs"]["eval"] == 4 * CONVNET_SMALL
    assert summary["savings"]["macs"] == 0.0
    assert summary["savings"]["energy"] == pytest.approx(0.0, abs=1e-12)
    cost = json.loads((tmp_path / "cost.json").read_text())
    assert cost["dense_images"] == 10
