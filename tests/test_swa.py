"""``swa``: the snapshot schedule, the running average, the BatchNorm update, the ledger's count, a run.

All gradient-free: weights are scripted (written into the model), BatchNorm statistics are
checked against a fresh train-mode pass computed here, independently of the method.
"""
from __future__ import annotations

import json
import os
from types import SimpleNamespace

import numpy as np
import pytest

from minicnn.cost import Ledger
from minicnn.data import BatchIterator, channel_stats, synthetic
from minicnn.hooks import Hook, HookList
from minicnn.layers.batchnorm import BatchNorm2d
from minicnn.methods import build_methods, parse_method_spec
from minicnn.methods.swa import SWA, RunningAverage, SnapshotSchedule
from minicnn.models import build

from _method_helpers import small_trainer

#: the running mean is kept in float32 (as PyTorch's AveragedModel): against the float64 mean of values of
#: order 1 it is off by a few float32 ulps (cancellation where the mean is near 0)
F32_ATOL = 1e-6


# -- the schedule (pure) ----------------------------------------------------------------------------

@pytest.mark.parametrize("start,freq,epochs,expected", [
    (0.75, 1, 100, list(range(76, 101))),       # the last quarter: "the end of every epoch within the last 25%"
    (0.75, 1, 4, [4]),
    (0.75, 1, 8, [7, 8]),
    (0.5, 2, 10, [6, 8, 10]),
    (1, 1, 3, [1, 2, 3]),
    (3, 2, 10, [3, 5, 7, 9]),
    (0.01, 1, 2, [1, 2]),
])
def test_snapshot_schedule(start, freq, epochs, expected):
    s = SnapshotSchedule(start, freq)
    assert s.snapshot_epochs(epochs) == expected
    assert s.first_epoch(epochs) == expected[0]


@pytest.mark.parametrize("spec,message", [
    ("swa:start=0", "start must be > 0"),
    ("swa:start=-1", "start must be > 0"),
    ("swa:start=2.5", "neither a fraction below 1 nor a whole epoch"),
    ("swa:freq=0", "freq must be"),
    ("swa:start=nan", "start must be > 0"),
])
def test_bad_options_are_one_line(spec, message):
    with pytest.raises(ValueError, match=message) as e:
        parse_method_spec(spec)
    assert "\n" not in str(e.value)


def test_start_after_the_run_is_refused_before_training():
    m = parse_method_spec("swa:start=5")
    with pytest.raises(ValueError, match="after the run's last epoch"):
        m.on_train_begin(SimpleNamespace(epochs=4, ledger=None))


def test_options_are_typed_and_described():
    m = parse_method_spec("swa:start=0.5,freq=2,bn_update=false,bn_augment=false")
    assert (m.start, m.freq, m.bn_update, m.bn_augment) == (0.5, 2, False, False)
    assert m.describe() == "swa:start=0.5,freq=2,bn_update=False,bn_augment=False"
    assert parse_method_spec("swa").bn_augment is True


# -- the running average (pure) -------------------------------------------------------------------------

def test_running_average_is_the_mean_of_the_snapshots(rng):
    snaps = [{"a": rng.standard_normal((3, 4)).astype(np.float32), "b": rng.standard_normal(5).astype(np.float32)}
             for _ in range(7)]
    avg = RunningAverage()
    for k, s in enumerate(snaps, start=1):
        avg.add(s)
        for name in s:
            want = np.mean([t[name].astype(np.float64) for t in snaps[:k]], axis=0)
            np.testing.assert_allclose(avg.mean[name], want, rtol=1e-6, atol=F32_ATOL)
    assert avg.count == 7 and avg.mean["a"].dtype == np.float32
    snaps[0]["a"][...] = 99.0                      # the first snapshot was copied, not kept by reference
    assert not np.any(avg.mean["a"] == 99.0)
    back = RunningAverage()
    back.load_state_dict(avg.state_dict())
    assert back.count == 7 and all(np.array_equal(back.mean[k], avg.mean[k]) for k in avg.mean)
    with pytest.raises(ValueError, match="other parameters"):
        avg.add({"a": snaps[0]["a"]})


# -- the method through its hooks, with scripted weights --------------------------------------------------

def _state(model, epochs, ds=None, batch=32, ledger=None, status="completed"):
    ds = ds or synthetic(n_train=96, n_test=10, seed=1)
    mean, std = channel_stats(ds.train_x)
    st = SimpleNamespace(model=model, epochs=epochs, epoch=0, ledger=ledger, status=status, weights_replaced=None,
                         batch_size=batch)
    st.passes = []

    def training_batches(augment=False, seed=None):       # as TrainState's (no --augment here)
        st.passes.append((augment, seed))
        return BatchIterator(ds.train_x, ds.train_y, batch, shuffle=augment, mean=mean, std=std,
                             seed=0 if seed is None else seed)
    st.training_batches = training_batches
    return st, ds, mean, std


def _script_epochs(model, swa, state, epochs, rng):
    """Write random weights into the model before each epoch end; returns the weights at every epoch end."""
    seen = []
    swa.on_train_begin(state)
    for e in range(epochs):
        for _, layer, p in model.named_parameters():
            layer.params[p][...] = rng.standard_normal(layer.params[p].shape).astype(layer.params[p].dtype)
        seen.append({q: layer.params[p].copy() for q, layer, p in model.named_parameters()})
        state.epoch = e
        swa.on_epoch_end(state)
    return seen


def test_the_swapped_in_weights_are_the_mean_of_the_snapshot_epochs(rng):
    model = build("resnet8", num_classes=10, seed=0)
    swa = SWA(start=2, freq=2, bn_update=False)
    state, *_ = _state(model, epochs=6)
    seen = _script_epochs(model, swa, state, 6, rng)
    assert swa.snapshot_epochs == [2, 4, 6]
    assert [swa.epoch_record(state)["snapshots"]] == [3]
    swa.on_train_end(state)
    assert state.weights_replaced == "swa"
    for q, layer, p in model.named_parameters():
        want = np.mean([seen[e - 1][q].astype(np.float64) for e in (2, 4, 6)], axis=0)
        np.testing.assert_allclose(layer.params[p], want, rtol=1e-6, atol=F32_ATOL, err_msg=q)


def test_a_diverged_run_or_no_snapshot_swaps_nothing(rng):
    model = build("resnet8", num_classes=10, seed=0)
    swa = SWA(start=1)
    state, *_ = _state(model, epochs=2, status="diverged")
    _script_epochs(model, swa, state, 2, rng)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    swa.on_train_end(state)
    assert state.weights_replaced is None and all(np.array_equal(before[k], v) for k, v in model.state_dict().items())
    assert swa.summary_record(state)["swapped"] is False and "diverged" in swa.summary_record(state)["why"]
    early = SWA(start=2)
    state2, *_ = _state(model, epochs=2)
    early.on_train_begin(state2)
    early.on_train_end(state2)                      # stopped (stop_training) before epoch 2 ended
    assert state2.weights_replaced is None and "no snapshot" in early.summary_record(state2)["why"]


class _GrabBNInputs(Hook):
    def __init__(self):
        self.x = {}

    def forward_input(self, layer, x):
        if isinstance(layer, BatchNorm2d):
            self.x.setdefault(layer.name, []).append(x.astype(np.float64))
        return x


def _independent_bn_stats(model, ds, mean, std, batch, shuffle=False, seed=0):
    """A fresh train-mode pass over the training images (in order, or shuffled with ``seed``): per BatchNorm the
    average over images of each batch's channel mean and unbiased variance (Izmailov et al.'s bn_update)."""
    grab = _GrabBNInputs()
    model.set_hooks(HookList([grab]))
    model.train()
    for x, _ in BatchIterator(ds.train_x, ds.train_y, batch, shuffle=shuffle, mean=mean, std=std, seed=seed):
        model.forward(x)
    out = {}
    for name, xs in grab.x.items():
        b = np.array([len(x) for x in xs], dtype=np.float64)
        means = [x.mean(axis=(0, 2, 3)) for x in xs]
        variances = [x.transpose(1, 0, 2, 3).reshape(x.shape[1], -1).var(axis=1, ddof=1) for x in xs]
        out[name] = (np.average(means, axis=0, weights=b), np.average(variances, axis=0, weights=b))
    return out


@pytest.mark.parametrize("arch,augment", [("resnet8", False), ("convnet-small", False), ("resnet8", True)])
def test_batchnorm_update_equals_a_fresh_pass_computed_independently(arch, augment, rng):
    model = build(arch, num_classes=10, seed=3)
    for m in model.modules():                         # statistics that are certainly wrong before the update
        if isinstance(m, BatchNorm2d):
            m.buffers["running_mean"][...] = 5.0
            m.buffers["running_var"][...] = 9.0
    twin = build(arch, num_classes=10, seed=3)
    twin.load_state_dict(model.state_dict())
    state, ds, mean, std = _state(model, epochs=1, batch=40)   # 96 images: batches of 40, 40 and 16
    swa = SWA(start=1, bn_augment=augment)
    swa.rng = np.random.default_rng(7)
    seed = int(np.random.default_rng(7).integers(2**31)) if augment else 0    # the pass's seed: the method's stream
    swa.on_train_begin(state)
    weights = {k: v.copy() for k, v in model.state_dict().items() if "running" not in k}
    swa.on_epoch_end(state)
    swa.on_train_end(state)
    rec = swa.summary_record(state)["bn_update"]
    assert rec["images"] == 96 and rec["batches"] == 3 and rec["not_run"] == [] and rec["augmented"] is augment
    assert state.passes == [(augment, seed)]
    want = _independent_bn_stats(twin, ds, mean, std, batch=40, shuffle=augment, seed=seed)
    bns = {m.name: m for m in model.modules() if isinstance(m, BatchNorm2d)}
    assert set(want) == set(bns)
    for name, (mu, var) in want.items():
        np.testing.assert_allclose(bns[name].buffers["running_mean"], mu, rtol=1e-5, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(bns[name].buffers["running_var"], var, rtol=1e-5, atol=1e-6, err_msg=name)
        assert bns[name].momentum == 0.1 and bns[name].training          # restored (the model was training)
    for k, v in weights.items():                                          # the pass changed no weight
        assert np.array_equal(model.state_dict()[k], v), k


def test_the_trainer_s_pass_is_the_run_s_augmentation_from_a_stream_of_its_own():
    """TrainState.training_batches(augment=True): shuffled and augmented with the run's --augment, from the seed
    it is given (the same seed, the same pass; another seed, another), never the trainer's own stream."""
    tr = small_trainer([], arch="convnet-small", epochs=1, n_train=64, n_test=20, batch=32, augment="flip,crop")
    st = tr.state
    plain = np.concatenate([x for x, _ in st.training_batches()])
    a1 = [x for x, _ in st.training_batches(augment=True, seed=3)]
    a2 = [x for x, _ in st.training_batches(augment=True, seed=3)]
    b = [x for x, _ in st.training_batches(augment=True, seed=4)]
    assert len(a1) == 2 and all(np.array_equal(p, q) for p, q in zip(a1, a2))
    assert not all(np.array_equal(p, q) for p, q in zip(a1, b))
    ds = tr.dataset
    in_order = BatchIterator(ds.train_x, ds.train_y, 32, shuffle=False, mean=tr.mean, std=tr.std)
    assert np.array_equal(plain, np.concatenate([x for x, _ in in_order]))   # augment=False: in order, as before
    assert not np.array_equal(np.sort(np.concatenate(a1), axis=None), np.sort(plain, axis=None))   # augmented


def test_the_pass_runs_other_methods_hooks_as_at_evaluation_and_keeps_fp32_masters(rng):
    """With psg in the hook list the pass quantizes conv inputs and weights (eval path) and puts the masters
    back: after the update the model holds exactly the averaged fp32 weights."""
    model = build("resnet8", num_classes=10, seed=0)
    psg, swa = build_methods(["psg", "swa:start=1"])
    led = Ledger(model)
    state, *_ = _state(model, epochs=2, ledger=led)
    state.formats, state.optimizer, state.input_shape = led.formats, SimpleNamespace(momentum=0.9, weight_decay=0), \
        (3, 32, 32)
    psg.key, swa.key = "psg", "swa"
    model.set_hooks(HookList([psg, swa, led]))
    psg.on_train_begin(state)
    _script_epochs(model, swa, state, 2, rng)
    calls = {"q": 0}
    orig = psg.forward_input

    def counting(layer, x):
        calls["q"] += layer.name in psg._convs and not layer.training
        return orig(layer, x)
    psg.forward_input = counting
    model.set_hooks(HookList([psg, swa, led]))
    swa.on_train_end(state)
    assert calls["q"] > 0                               # psg's eval-mode quantization acted in the pass
    for q, layer, p in model.named_parameters():
        assert np.array_equal(layer.params[p], swa.average.mean[q]), q
    assert model.hooks is not None and list(model.hooks) == [psg, swa, led]   # the run's hooks are back


def _same(a, b):
    """Counts equal: integers exactly, energy up to the order of a float sum."""
    assert (a.macs, a.ops, a.bytes) == (b.macs, b.ops, b.bytes)
    assert a.energy_pj == pytest.approx(b.energy_pj, rel=1e-12)


def test_the_ledger_counts_the_averaging_and_the_pass_as_declared_extra_work(rng):
    model = build("resnet8", num_classes=10, seed=0)
    led = Ledger(model)
    state, ds, mean, std = _state(model, epochs=3, ledger=led, batch=32)
    swa = SWA(start=2)
    _script_epochs(model, swa, state, 3, rng)          # snapshots after epochs 2 (a copy) and 3 (an average)
    swa.on_train_end(state)
    n = sum(layer.params[p].size for _, layer, p in model.named_parameters())
    extra = led.extra_totals()
    # copy 8n bytes, average 12n bytes + 3n ops, swap 8n bytes (fp32)
    assert extra["update"].ops == 3 * n and extra["update"].bytes == (8 + 12 + 8) * n and extra["update"].macs == 0
    assert led.totals()["update"].to_dict() == extra["update"].to_dict()      # nothing else was updated
    # the pass: the forward work a fresh train-mode forward over the same batches counts with the ledger's rules
    twin = build("resnet8", num_classes=10, seed=0)
    twin.load_state_dict(model.state_dict())
    ref = Ledger(twin)
    twin.set_hooks(HookList([ref]))
    twin.train()
    for x, _ in BatchIterator(ds.train_x, ds.train_y, 32, shuffle=False, mean=mean, std=std):
        twin.forward(x)
    _same(extra["forward"], ref.totals()["forward"])
    _same(led.totals()["forward"], extra["forward"])
    assert led.dense_totals()["total"].macs == 0                             # no dense step was added
    work = swa.summary_record(state)["work"]
    assert work["forward"] == extra["forward"].to_dict() and work["update"] == extra["update"].to_dict()
    assert extra["forward"].macs > 0 and extra["backward_input"].macs == extra["backward_weight"].macs == 0


# -- the whole run: the trainer evaluates the averaged model, model.npz holds it ---------------------------

class _Snapshots(Hook):
    """An observer keeping the weights at every epoch end (after the methods' on_epoch_end)."""

    def __init__(self):
        self.w = []

    def on_epoch_end(self, state):
        self.w.append({q: layer.params[p].copy() for q, layer, p in state.model.named_parameters()})


def test_a_run_ends_with_the_averaged_model_evaluated_and_saved(tmp_path):
    from minicnn.training import evaluate, load_checkpoint
    run = tmp_path / "run"
    tr = small_trainer(["swa:start=2"], arch="resnet8", epochs=3, n_train=96, n_test=40, batch=32,
                       run_dir=str(run))
    snaps = _Snapshots()
    tr.hooks.add(snaps)
    summary = tr.fit()
    assert summary["status"] == "completed"
    model, meta, mean, std = load_checkpoint(str(run / "model.npz"))
    saved = model.state_dict()
    for q in snaps.w[0]:
        want = np.mean([snaps.w[e][q].astype(np.float64) for e in (1, 2)], axis=0)
        np.testing.assert_allclose(saved[q], want, rtol=1e-6, atol=F32_ATOL, err_msg=q)
    for k, v in tr.model.state_dict().items():            # BatchNorm statistics too: the recomputed ones
        assert np.array_equal(saved[k], v), k
    fe = summary["final_eval"]
    assert fe["weights_from"] == "swa" and fe["last_epoch_test_acc"] == tr.state.history[-1]["test_acc"]
    ds = tr.dataset
    again = evaluate(model, ds.test_x, ds.test_y, 256, mean, std)
    assert summary["final_test_acc"] == fe["test_acc"] == again["accuracy"]
    with open(run / "summary.json") as f:
        on_disk = json.load(f)
    assert on_disk["final_test_acc"] == fe["test_acc"] and on_disk["final_eval"]["weights_from"] == "swa"
    rec = on_disk["method_records"]["swa"]
    assert [r["snapshot"] for r in rec["per_epoch"]] == [False, True, True]
    assert rec["snapshot_epochs"] == [2, 3] and rec["swapped"] is True and rec["bn_update"]["images"] == 96
    with open(run / "metrics.jsonl") as f:
        lines = [json.loads(line) for line in f]
    assert [r["method_records"]["swa"]["snapshots"] for r in lines] == [0, 1, 2]


def test_without_a_method_that_replaces_weights_the_summary_is_the_last_epochs():
    tr = small_trainer([], arch="convnet-small", epochs=1, n_train=64, n_test=20)
    summary = tr.fit()
    assert "final_eval" not in summary and summary["final_test_acc"] == tr.state.history[-1]["test_acc"]


# -- the contract ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", ["swa", ["psg", "swa:start=1"], ["e2train", "swa"]])
def test_swa_passes_the_conformance_test(spec):
    from minicnn.training.conformance import check_method
    summary = check_method(spec, train_images=64)
    rec = summary["method_records"]["swa"]
    assert rec["swapped"] is True and summary["final_eval"]["weights_from"] == "swa"
    assert rec["work"]["forward"]["macs"] > 0 and rec["work"]["update"]["bytes"] > 0
