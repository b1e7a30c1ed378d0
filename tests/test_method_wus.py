"""WUS / WUS+LR (Safayenikoo & Akturk §3, Alg. 1): the controller on scripted validation accuracies."""
from __future__ import annotations

import json

import numpy as np
import pytest

from minicnn.methods.wus import NORMAL, WUS, WUSController, wus_targets
from minicnn.models import build

FLAT = 0.50   # a flat accuracy: std 0 once `window` values exist


def kinds_str(kinds):
    return "".join("N" if k == NORMAL else "W" for k in kinds)


def test_initial_epoch_and_off_by_one():
    """std over window=3: first std after epoch 2, two successive below threshold after epoch 3 ->
    initial epoch 4; Alg. 1 switches only when epoch > initial epoch, so epoch 4 is still normal."""
    c = WUSController(patience=100, std_threshold=0.71, window=3)
    kinds = c.run([0.10, 0.30] + [FLAT] * 8)
    # accs 10, 30, 50, 50, 50 ...: std(10,30,50)=16.3, std(30,50,50)=9.4, std(50,50,50)=0 (epoch 4),
    # std 0 again at epoch 5 -> initial epoch = 6; epoch 6 normal, 7 the first WUS epoch
    assert c.stds[2] == pytest.approx(np.std([10, 30, 50]))
    assert c.initial_epoch == 6
    assert kinds_str(kinds) == "NNNNNNNWWW"
    assert c.kind_of(6) == NORMAL and c.kind_of(7) == WUS


def test_no_std_before_window_and_one_low_std_is_not_enough():
    c = WUSController(patience=100, std_threshold=0.71, window=4)
    # accuracies 50 50 50 50 | 60 60 60 60: std 0 at epoch 3, then > 0.71 until the window holds only 60s
    c.run([FLAT] * 4 + [0.60] + [0.60] * 3)
    assert c.stds[:3] == [None, None, None]
    assert c.stds[3] == 0.0 and c.stds[4] > 0.71
    assert c.initial_epoch is None                 # one low std (epoch 3) then a high one: no switch
    c.observe(8, 0.60)                             # epochs 7 and 8: (60,60,60,60) twice
    assert c.initial_epoch == 9


def test_threshold_is_in_percent_points():
    """0.71 percent points: accuracies moving by 1 point have a std of ~0.5 pp (< 0.71)."""
    c = WUSController(patience=100, std_threshold=0.71, window=3)
    c.run([0.500, 0.510, 0.500, 0.510])
    assert c.stds[2] == pytest.approx(np.std([50.0, 51.0, 50.0]))
    assert c.initial_epoch == 4
    c2 = WUSController(patience=100, std_threshold=0.71, window=3)
    c2.run([0.50, 0.53, 0.50, 0.53])               # std 1.4 pp: no switch
    assert c2.initial_epoch is None


def test_patience_reset_gives_exactly_one_normal_epoch():
    c = WUSController(patience=3, std_threshold=0.71, window=2)
    # epoch 0: best 50. epochs 1.. : 50 is a tie (resets count, delta 0); use 49 to count.
    accs = [0.50, 0.50, 0.50, 0.49, 0.49, 0.49, 0.49, 0.49, 0.49, 0.49, 0.49]
    kinds = c.run(accs)
    # stds (window 2): e1 0, e2 0 -> initial epoch 3; epoch 3 normal, WUS from 4.
    assert c.initial_epoch == 3
    # count: e3 1, e4 2, e5 3 -> patience reached at validation of epoch 5: epoch 6 normal, 7 WUS again;
    # count restarts at 0: e6 1, e7 2, e8 3 -> epoch 9 normal; e9 1, e10 2
    assert kinds_str(kinds) == "NNNNWWNWWNW"
    assert c.count == 2 and c.best == pytest.approx(50.0)     # best never reset


def test_tie_resets_count_with_delta_zero():
    c = WUSController(patience=2, window=2)
    c.run([0.5, 0.4, 0.5, 0.4, 0.5])
    assert c.count == 0 and c.previous_epoch is None           # ties with best reset the count each time
    c2 = WUSController(patience=2, delta=0.5, window=2)        # delta in percent points: a tie is not enough
    c2.run([0.5, 0.5, 0.5])
    assert c2.previous_epoch == 2 and c2.count == 0


def test_improvement_resets_and_sets_best():
    c = WUSController(patience=2, window=2)
    c.run([0.3, 0.2, 0.4, 0.35])
    assert c.best == pytest.approx(40.0) and c.count == 1


def test_best_and_count_not_reset_when_wus_starts():
    c = WUSController(patience=4, window=2)
    # best 60 at epoch 0; then 59, 59, 59 -> count 3 by epoch 3; initial epoch set after epoch 2 (stds e1=0.5, e2=0)
    c.run([0.60, 0.59, 0.59, 0.59])
    assert c.initial_epoch == 3 and c.count == 3
    assert c.kind_of(4) == WUS
    c.observe(4, 0.59)                 # count reaches 4 at epoch 4 (it was not reset when WUS began)
    assert c.previous_epoch == 4 and c.kind_of(5) == NORMAL and c.kind_of(6) == WUS


def test_trigger_before_initial_epoch_does_not_make_a_later_epoch_normal():
    """Alg. 1: a patience trigger long before the initial epoch is consumed without a normal epoch."""
    c = WUSController(patience=1, window=3, std_threshold=0.71)
    c.run([0.5, 0.4])                  # trigger at epoch 1 (count 1 >= patience 1)
    assert c.previous_epoch == 1
    for e, a in enumerate([0.5, 0.5, 0.5, 0.5], start=2):   # ties: no trigger; stds 4.7, 4.7, 0, 0
        c.observe(e, a)
    assert c.initial_epoch == 6 and c.previous_epoch == 1
    assert c.kind_of(6) == NORMAL and c.kind_of(7) == WUS


def test_wus_lr_normal_epoch_after_an_lr_change():
    accs = [FLAT] * 10
    lrs = [0.1] * 8 + [0.01] * 2       # the rate changes at epoch 8
    plain = WUSController(patience=100, window=2).run(accs, lrs)
    lr = WUSController(patience=100, window=2, lr_reset=True).run(accs, lrs)
    # window 2: stds at e1, e2 -> initial epoch 3; WUS from epoch 4
    assert kinds_str(plain) == "NNNNWWWWWW"
    assert kinds_str(lr) == "NNNNWWWWNW"          # epoch 8, the first at the new rate, is normal


def test_state_dict_roundtrip_continues_identically():
    accs = [0.1, 0.3, 0.5, 0.5, 0.49, 0.49, 0.49, 0.5, 0.49, 0.49, 0.49, 0.49]
    full = WUSController(patience=2, window=3).run(accs)
    a = WUSController(patience=2, window=3)
    first = a.run(accs[:5])
    b = WUSController(patience=2, window=3)
    b.load_state_dict(a.state_dict())
    rest = []
    for e in range(5, len(accs)):
        rest.append(b.kind_of(e))
        b.observe(e, accs[e])
    assert first + rest == full


@pytest.mark.parametrize("kw", [dict(patience=0), dict(window=1), dict(std_threshold=-1), dict(delta=float("nan"))])
def test_bad_options(kw):
    with pytest.raises(ValueError):
        WUSController(**kw)


def test_targets_are_last_biases_with_bn_beta_standing_in():
    m = build("convnet-small", num_classes=10, seed=0)
    assert [(l.name, n) for l, n in wus_targets(m, 1)] == [("fc", "bias")]
    assert [(l.name, n) for l, n in wus_targets(m, 2)] == [("bn4", "bias"), ("fc", "bias")]
    r = build("resnet8", num_classes=10, seed=0)
    names = [f"{l.name}.{n}" for l, n in wus_targets(r, 3)]
    # counted along the depth (the projection shortcut is not one of resnet8's 8 layers; issue 15)
    assert names == ["layer3.0.bn1.bias", "layer3.0.bn2.bias", "fc.bias"]
    with pytest.raises(ValueError):
        wus_targets(m, 99)


# -- the method on a real model: what a WUS epoch computes ---------------------------------------------
from minicnn.methods.wus import WeightUpdateSkipping  # noqa: E402

from _method_helpers import count_backward_calls, fake_state, one_step  # noqa: E402


@pytest.mark.parametrize("arch", ["convnet-small", "resnet8"])
def test_wus_epoch_computes_only_the_last_bias_gradient(arch):
    """1L: backward runs fc's backward alone, which computes dL/db only (no dW, no dx); no other layer's
    backward is ever called -- the frozen gradients are never computed, not computed and discarded."""
    m = build(arch, num_classes=10, seed=0)
    meth = WeightUpdateSkipping()
    st = fake_state(m)
    meth.on_train_begin(st)
    meth.controller.initial_epoch = -1            # make epoch 0 eligible
    meth.on_epoch_begin(st)
    assert meth.kinds == [WUS]
    calls = count_backward_calls(m)
    one_step(m)
    assert {k: v for k, v in calls.items() if v} == {"fc": 1}
    assert m["fc"].grads["bias"] is not None and m["fc"].grads["weight"] is None
    assert all(g is None for _, l, p in m.named_parameters() if (l.name, p) != ("fc", "bias")
               for g in [l.grads[p]])


def test_wus_2l_on_resnet_stops_at_the_last_blocks_bn():
    m = build("resnet8", num_classes=10, seed=0)
    meth = WeightUpdateSkipping(layers=2)
    st = fake_state(m)
    meth.on_train_begin(st)
    meth.controller.initial_epoch = -1
    meth.on_epoch_begin(st)
    calls = count_backward_calls(m)
    one_step(m)
    ran = {k for k, v in calls.items() if v}
    # the layer before fc is layer3.0's conv2 (its projection shortcut is not a layer of the depth count)
    assert meth.summary_record(None)["targets"] == ["layer3.0.bn2.bias", "fc.bias"]
    assert ran == {"fc", "pool", "layer3.0.relu_out", "layer3.0.bn2"}
    assert m["layer3"][0].bn2.grads["weight"] is None
    assert m["layer3"][0].bn2.grads["bias"] is not None


def test_normal_epoch_gives_back_only_what_wus_froze():
    m = build("convnet-small", num_classes=10, seed=0)
    m["conv1"].requires_grad["weight"] = False    # frozen by someone else
    meth = WeightUpdateSkipping()
    st = fake_state(m)
    meth.on_train_begin(st)
    meth.controller.initial_epoch = -1
    meth.on_epoch_begin(st)
    assert not m["conv2"].requires_grad["weight"]
    meth.controller.previous_epoch = 0            # patience ran out at epoch 0: epoch 1 is normal
    st.epoch = 1
    meth.on_epoch_begin(st)
    assert meth.kinds == [WUS, NORMAL]
    assert m["conv2"].requires_grad["weight"] and not m["conv1"].requires_grad["weight"]


def test_eq1_fraction_of_updates_skipped():
    m = build("convnet-small", num_classes=10, seed=0)
    meth = WeightUpdateSkipping()
    meth.on_train_begin(fake_state(m))
    meth.kinds = [NORMAL, NORMAL, WUS, WUS]
    n = m.num_params()
    expected = 1 - (2 * 10 + 2 * n) / (4 * n)     # b_x = fc.bias, 10 values
    assert meth.updates_skipped_fraction() == pytest.approx(expected)


# -- in training ----------------------------------------------------------------------------------------------
from minicnn.hooks import Hook  # noqa: E402
from minicnn.training.conformance import check_method  # noqa: E402

from _method_helpers import small_trainer  # noqa: E402


class ParamWatch(Hook):
    """Which parameters changed during each epoch, and the ledger's backward_weight MACs of each epoch."""

    def __init__(self):
        self.changed, self.bw_macs, self._bw = [], [], 0

    def on_epoch_begin(self, state):
        self._w = {f"{l.name}.{p}": l.params[p].copy() for _, l, p in state.model.named_parameters()}
        self._bw = state.ledger.totals()["backward_weight"].macs

    def on_epoch_end(self, state):
        self.changed.append({f"{l.name}.{p}" for _, l, p in state.model.named_parameters()
                             if not np.array_equal(self._w[f"{l.name}.{p}"], l.params[p])})
        self.bw_macs.append(state.ledger.totals()["backward_weight"].macs - self._bw)


def test_wus_run_updates_only_the_last_bias_in_wus_epochs(tmp_path):
    # window 2 and a huge threshold: stds after epochs 1 and 2 -> initial epoch 3 -> WUS from epoch 4 (0-based)
    meth = WeightUpdateSkipping(window=2, std_threshold=1000.0, patience=100)
    watch = ParamWatch()
    tr = small_trainer([meth, watch], epochs=6, n_train=64, batch=32, val_images=20, run_dir=str(tmp_path))
    summary = tr.fit()
    rec = summary["method_records"]["wus"]
    assert rec["kinds"] == ["normal"] * 4 + ["wus"] * 2
    assert summary["controller_metric"] == "val_acc"
    for e in (4, 5):
        assert watch.changed[e] == {"fc.bias"}
        assert watch.bw_macs[e] == 0                       # no weight gradient computed at all
    assert len(watch.changed[3]) > 10 and watch.bw_macs[3] > 0
    n = tr.model.num_params()
    assert rec["updates_skipped_fraction_eq1"] == pytest.approx(1 - (2 * 10 + 4 * n) / (6 * n))
    lines = [json.loads(x) for x in open(tmp_path / "metrics.jsonl")]
    assert [r["method_records"]["wus"]["kind"] for r in lines] == rec["kinds"]


def test_wus_lr_refuses_cosine():
    tr = small_trainer(["wus-lr"], epochs=2, schedule="cosine", ledger=False)
    with pytest.raises(ValueError, match="--schedule step or --milestones"):
        tr.fit()


def test_wus_lr_in_training_normal_epoch_at_new_rate():
    tr = small_trainer(["wus-lr:window=2,std_threshold=1000,patience=100"], epochs=7, n_train=64, batch=32,
                       schedule="step", milestones=[5], ledger=False)
    kinds = tr.fit()["method_records"]["wus-lr"]["kinds"]
    assert kinds == ["normal"] * 4 + ["wus", "normal", "wus"]


def test_conformance():
    """wus-lr runs every line of wus plus the learning-rate rule (one conformance run: each costs ~20 s)."""
    summary = check_method("wus-lr:window=2,std_threshold=1000", train_images=128,
                           extra_cfg={"schedule": "step", "milestones": [1]})
    assert summary["method_records"]["wus-lr"]["kinds"] == ["normal", "normal"]
