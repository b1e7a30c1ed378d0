"""LARS layer skipping (Miyauchi et al. §III Eq. 1-3, Alg. 1, §IV): the controller and the model layout."""
from __future__ import annotations

import math

import numpy as np
import pytest

from minicnn.methods.lars_skip import LarsSkipController, conv_layout, layer_nw
from minicnn.models import build

CONVS = ["c1", "c2", "c3", "c4", "c5"]
ALL = list(range(6))


def test_nw_of_weights_with_known_norms():
    w0 = np.zeros((2, 2, 3, 3), np.float32)
    w0[0, 0, 0, 0] = 3.0
    w1 = w0.copy()
    w1[0, 0, 0, 1] = 4.0                 # ||W|| = 5, ||dW|| = 4
    assert layer_nw(w1, w0) == pytest.approx(5 / 4)
    assert layer_nw(w0, w0) == math.inf  # a weight that did not move


def test_deepest_conv_over_alpha_freezes_the_prefix():
    c = LarsSkipController(alpha=2.0)
    nw = {"c1": 10.0, "c2": 1.0, "c3": 3.0, "c4": 1.5, "c5": 0.5}
    k, _ = c.decide(nw, acc_fell=False, conv_order=CONVS, allowed=ALL)
    assert k == 3                        # l* = c3 (deepest over 2): c1..c3 frozen, c2's own nw does not matter
    assert c.decide({n: 0.1 for n in CONVS}, False, CONVS, ALL)[0] == 0      # nobody over alpha: full
    assert c.decide({n: 2.0 for n in CONVS}, False, CONVS, ALL)[0] == 0      # "exceeds": strictly greater


def test_accuracy_drop_gives_a_full_epoch():
    c = LarsSkipController(alpha=2.0)
    k, reason = c.decide({n: 100.0 for n in CONVS}, acc_fell=True, conv_order=CONVS, allowed=ALL)
    assert k == 0 and "accuracy" in reason


def test_frozen_layers_are_not_kept_frozen_for_ever():
    """Epoch N froze c1..c3 (their dW = 0, nw = inf). Only c4, c5 trained; both under alpha -> full epoch."""
    c = LarsSkipController(alpha=2.0)
    assert c.decide({"c1": 1, "c2": 1, "c3": 9.0, "c4": 1, "c5": 1}, False, CONVS, ALL)[0] == 3
    measured = {"c4": 1.0, "c5": 1.5}
    assert c.decide(measured, False, CONVS, ALL)[0] == 0
    # even if a caller passes the frozen convs' infinite nw, only trained convs count
    c.decide({"c3": 9.0}, False, CONVS, ALL)
    polluted = {"c1": math.inf, "c2": math.inf, "c3": math.inf, "c4": 1.0, "c5": 1.5}
    assert c.decide(polluted, False, CONVS, ALL, trained=["c4", "c5"])[0] == 0


def test_a_trained_conv_over_alpha_extends_the_prefix():
    c = LarsSkipController(alpha=2.0)
    c.decide({"c2": 5.0}, False, CONVS, ALL)
    assert c.decide({"c3": 1.0, "c4": 7.0, "c5": 1.0}, False, CONVS, ALL)[0] == 4


def test_snap_down_to_block_boundary():
    c = LarsSkipController(alpha=2.0)
    allowed = [0, 1, 3, 5]               # a stem conv, then blocks of two convs: (c2, c3), (c4, c5)
    assert c.decide({"c4": 9.0, "c5": 1.0}, False, CONVS, allowed)[0] == 3   # c4 is mid-block: freeze c1..c3
    assert c.decide({"c3": 9.0}, False, CONVS, allowed)[0] == 3
    assert c.decide({"c2": 9.0, "c3": 1.0}, False, CONVS, allowed)[0] == 1
    assert c.decide({"c5": 9.0}, False, CONVS, allowed)[0] == 5


def test_alternate_mode():
    c = LarsSkipController(alpha=2.0, mode="alternate")
    hot = {n: 9.0 for n in CONVS}
    seq = [c.decide(hot, False, CONVS, ALL)[0] for _ in range(4)]
    assert seq == [5, 0, 5, 0]
    auto = LarsSkipController(alpha=2.0)
    assert [auto.decide(hot, False, CONVS, ALL)[0] for _ in range(3)] == [5, 5, 5]


@pytest.mark.parametrize("kw", [dict(alpha=0), dict(alpha=float("inf")), dict(alpha=1.0, mode="sometimes")])
def test_bad_options(kw):
    with pytest.raises(ValueError):
        LarsSkipController(**kw)


def test_layout_convnet_small():
    m = build("convnet-small", num_classes=10, seed=0)
    convs, allowed, frozen = conv_layout(m)
    assert [c.name for c in convs] == ["conv1", "conv2", "conv3", "conv4"]
    assert allowed == [0, 1, 2, 3, 4]
    assert frozen[0] == []
    assert {f"{l.name}.{p}" for l, p in frozen[2]} == {"conv1.weight", "bn1.weight", "bn1.bias",
                                                        "conv2.weight", "bn2.weight", "bn2.bias"}
    assert "fc.weight" not in {f"{l.name}.{p}" for l, p in frozen[4]}       # a linear layer is never frozen
    assert len(frozen[4]) == 4 * 3


def test_layout_resnet20_whole_blocks():
    m = build("resnet20", num_classes=10, seed=0)
    convs, allowed, frozen = conv_layout(m)
    assert len(convs) == 21
    # stem | 3 blocks of 2 | layer2.0 has 3 convs (projection) then 2, 2 | same for layer3
    assert allowed == [0, 1, 3, 5, 7, 10, 12, 14, 17, 19, 21]
    names = {l.name for l, _ in frozen[10]}
    assert "layer2.0.shortcut_conv" in names and "layer2.0.shortcut_bn" in names
    assert not any(n.startswith("layer2.1") for n in names)
    assert {l.name for l, _ in frozen[21]} >= {"layer3.2.bn2"} and "fc" not in {l.name for l, _ in frozen[21]}


# -- the method on a real model: a frozen prefix is never visited by backward -----------------------------
from minicnn.methods.lars_skip import LarsSkip  # noqa: E402

from _method_helpers import count_backward_calls, fake_state, one_step  # noqa: E402


def test_frozen_prefix_backward_never_runs_resnet8():
    m = build("resnet8", num_classes=10, seed=0)
    meth = LarsSkip(alpha=2.0)
    st = fake_state(m)
    meth.on_train_begin(st)
    assert meth._allowed == [0, 1, 3, 6, 9]
    meth._k = 3                                    # stem + layer1.0 frozen
    meth.on_epoch_begin(st)
    calls = count_backward_calls(m)
    one_step(m)
    ran = {k for k, v in calls.items() if v}
    assert not any(n in ran for n in ("conv1", "bn1", "relu1")) and not any(n.startswith("layer1.") for n in ran)
    assert "layer2.0.conv1" in ran
    # the first trained conv computes dW but no dx (nothing below it trains)
    assert m["layer2"][0].conv1.grads["weight"] is not None
    assert all(l.grads[p] is None for l, p in meth._frozen.pairs)
    # only the convs that trained are measured at the epoch's end
    m["layer2"][0].conv1.params["weight"] *= 1.5
    meth.on_epoch_end(st)
    assert set(meth.history[-1]["nw"]) == {c.name for c in meth._convs[3:]}
    assert meth.history[-1]["nw"]["layer2.0.conv1"] == pytest.approx(3.0)    # ||1.5W|| / ||0.5W||


def test_next_epoch_gives_back_the_prefix():
    m = build("convnet-small", num_classes=10, seed=0)
    meth = LarsSkip(alpha=2.0)
    st = fake_state(m)
    meth.on_train_begin(st)
    meth._k = 2
    meth.on_epoch_begin(st)
    assert not m["conv2"].requires_grad["weight"] and not m["bn2"].requires_grad["bias"]
    assert m["conv3"].requires_grad["weight"]
    meth._k = 0
    meth.on_epoch_begin(st)
    assert all(l.requires_grad[p] for _, l, p in m.named_parameters())


# -- in training ----------------------------------------------------------------------------------------------
from minicnn.hooks import Hook  # noqa: E402
from minicnn.training.conformance import check_method  # noqa: E402

from _method_helpers import small_trainer  # noqa: E402


class Watch(Hook):
    def __init__(self):
        self.changed, self.bn_stats_moved = [], []

    def on_epoch_begin(self, state):
        self._w = {f"{l.name}.{p}": l.params[p].copy() for _, l, p in state.model.named_parameters()}
        self._rm = state.model["bn1"].buffers["running_mean"].copy()

    def on_epoch_end(self, state):
        self.changed.append({f"{l.name}.{p}" for _, l, p in state.model.named_parameters()
                             if not np.array_equal(self._w[f"{l.name}.{p}"], l.params[p])})
        self.bn_stats_moved.append(not np.array_equal(self._rm, state.model["bn1"].buffers["running_mean"]))


def test_lars_run_freezes_then_measures_only_what_trained(tmp_path):
    # alpha 1: after the full epoch 1 every conv is over alpha -> all four frozen in epoch 2 (only fc trains)
    # -> no trained conv measured -> epoch 3 full. Controller reads the validation accuracy.
    meth = LarsSkip(alpha=1.0)
    watch = Watch()
    tr = small_trainer([meth, watch], epochs=3, n_train=96, batch=32, val_images=20, run_dir=str(tmp_path))
    summary = tr.fit()
    rec = summary["method_records"]["lars-skip"]
    assert rec["frozen_convs_per_epoch"] == [0, 4, 0]
    ep = rec["per_epoch"]
    assert set(ep[0]["nw"]) == {"conv1", "conv2", "conv3", "conv4"} and ep[1]["nw"] == {}
    assert ep[1]["reason"].startswith("no trained conv") or ep[1]["accuracy_fell"]
    assert watch.changed[1] == {"fc.weight", "fc.bias"}
    assert watch.bn_stats_moved[1]                   # BN running statistics keep updating in the frozen prefix
    assert len(watch.changed[2]) == len(list(tr.model.named_parameters()))


def test_conformance():
    check_method("lars-skip:alpha=1", train_images=128)
