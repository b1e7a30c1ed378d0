"""StatsRecorder, stats.jsonl round trip and inspect_run.

The recorder is driven the way the Trainer drives it: a HookList attached to
a small real model, a fake ``state`` with epoch/batch/global_step, and the
trainer-level hook calls around each forward/backward.
"""
import json
from types import SimpleNamespace

import numpy as np
import pytest

from minicnn.hooks import HookList
from minicnn.layers import Conv2d, Flatten, Linear, ReLU, Sequential
from minicnn.stats import (StatsRecorder, default_bin_edges, inspect_run, load_stats, moments,
                           signed_log_hist, value_hist)

EDGES = default_bin_edges()


# -- helpers ------------------------------------------------------------------------------
def tiny_model(seed=0):
    rng = np.random.default_rng(seed)
    inner = Sequential(("fc2", Linear(16, 8, rng=rng)), ("relu2", ReLU()))
    return Sequential(("conv", Conv2d(2, 4, 3, padding=1, rng=rng)), ("relu1", ReLU()), ("flat", Flatten()),
                      ("fc1", Linear(4 * 4 * 4, 16, rng=rng)), ("head", inner), ("out", Linear(8, 3, rng=rng)))


class Driver:
    """A minimal trainer: SGD on a random regression target, with the hook calls of the Trainer."""

    def __init__(self, model, hooks, seed=1):
        self.model, self.hooks = model, HookList(hooks)
        model.set_hooks(self.hooks)
        self.rng = np.random.default_rng(seed)
        self.state = SimpleNamespace(epoch=0, batch=0, global_step=0)

    def batch(self, drop=False, lr=0.05):
        s, m = self.state, self.model
        x = self.rng.normal(size=(5, 2, 4, 4)).astype(np.float32)
        keep = self.hooks.batch_begin(s)
        if drop or not keep:
            s.global_step += 1
            return None
        y = m.forward(x)
        m.zero_grad()
        dy = self.rng.normal(size=y.shape).astype(np.float32)
        m.backward(dy)
        self.hooks.call("on_after_backward", s)
        for layer in m.leaves():
            for k, g in layer.grads.items():
                if g is not None:
                    layer.params[k] -= lr * g
        self.hooks.call("on_batch_end", s)
        s.global_step += 1
        return x

    def epoch(self, n_batches, epoch):
        self.state.epoch = epoch
        self.model.train()
        self.hooks.call("on_epoch_begin", self.state)
        for b in range(n_batches):
            self.state.batch = b
            self.batch()
        self.model.eval()  # validation: must not be recorded
        self.model.forward(self.rng.normal(size=(3, 2, 4, 4)).astype(np.float32))
        self.model.train()
        self.hooks.call("on_epoch_end", self.state)


def batch_records(rec_or_stats, **match):
    recs = rec_or_stats.records
    return [r for r in recs if r.get("kind") == "batch" and all(r.get(k) == v for k, v in match.items())]


# -- the tensor statistics --------------------------------------------------------------------
def test_moments_match_numpy_and_density_on_a_known_tensor():
    m = moments(np.array([0.0, 0.0, 1.0, -2.0, 0.0], dtype=np.float32))
    assert m["numel"] == 5 and m["density"] == pytest.approx(2 / 5)
    assert m["mean"] == pytest.approx(-0.2) and m["mean_abs"] == pytest.approx(0.6)
    assert m["std"] == pytest.approx(np.std([0, 0, 1, -2, 0]))
    # a tensor whose mean is far larger than its spread (the case a naive E[x^2]-E[x]^2 gets wrong)
    rng = np.random.default_rng(0)
    t = (3.0 + 1e-3 * rng.normal(size=(7, 11, 13))).astype(np.float32)
    m = moments(t[:, ::2])  # non-contiguous view
    ref = t[:, ::2].astype(np.float64)
    assert m["mean"] == pytest.approx(ref.mean(), rel=1e-12)
    assert m["std"] == pytest.approx(ref.std(), rel=1e-6)
    assert m["density"] == 1.0
    assert moments(np.array([np.nan, 1.0]))["mean"] is None  # non-finite -> null, never NaN in JSON


def test_signed_hist_places_values_in_the_documented_bins():
    t = np.array([0.0, 1.0, -1.0, 0.5, 1e-20, -1e5, np.inf, np.nan, 0.0, 2e-12], dtype=np.float64)
    h = signed_log_hist(t, EDGES)
    k = len(EDGES) - 1
    assert len(h["hist_pos"]) == len(h["hist_neg"]) == k == 56
    assert h["zeros"] == 2 and h["nan"] == 1 and h["n_hist"] == t.size
    assert sum(h["hist_pos"]) + sum(h["hist_neg"]) + h["zeros"] + h["nan"] == t.size
    pos, neg = np.array(h["hist_pos"]), np.array(h["hist_neg"])
    b1 = int(np.searchsorted(EDGES, 1.0, side="right") - 1)  # 1.0 = 10**0 is edge 48
    assert EDGES[b1] <= 1.0 < EDGES[b1 + 1] and b1 == 48
    assert pos[b1] == 1 and neg[b1] == 1
    assert pos[0] == 1          # 1e-20 clamped into bin 0 = [1e-12, 10**-11.75)
    assert pos[1] == 1          # 2e-12 lies in bin 1 = [1.78e-12, 3.16e-12)
    assert pos[k - 1] == 1      # +inf clamped into the last bin
    assert neg[k - 1] == 1      # -1e5 clamped into the last bin
    assert pos[int(np.searchsorted(EDGES, 0.5, side="right") - 1)] == 1


def test_signed_hist_subsamples_large_tensors_and_counts_add_up():
    rng = np.random.default_rng(0)
    t = rng.normal(size=100_000).astype(np.float32)
    t[t < -1] = 0.0
    h = signed_log_hist(t, EDGES, max_hist=4096, rng=rng)
    assert h["n_hist"] == 4096
    assert sum(h["hist_pos"]) + sum(h["hist_neg"]) + h["zeros"] + h["nan"] == 4096
    # the sample represents the tensor: zero fraction ~ P(N(0,1) < -1) = 0.159
    assert abs(h["zeros"] / 4096 - 0.1587) < 0.03


def test_value_hist_counts_every_value_and_handles_constant_tensors():
    w = np.linspace(-1, 1, 1000)
    v = value_hist(w, 64)
    assert sum(v["value_hist"]) == 1000 and v["value_lo"] == -1 and v["value_hi"] == 1
    c = value_hist(np.zeros(10), 64)
    assert sum(c["value_hist"]) == 10 and c["value_lo"] == c["value_hi"] == 0


# -- the recorder ----------------------------------------------------------------------------------------
def test_records_every_k_trained_batches_with_the_documented_schema():
    model = tiny_model()
    rec = StatsRecorder(model, every=3)
    d = Driver(model, [rec])
    d.epoch(10, 0)
    leaves = [l.name for l in model.leaves()]
    assert leaves == ["conv", "relu1", "flat", "fc1", "head.fc2", "head.relu2", "out"]
    acts = batch_records(rec, tensor="activation")
    assert sorted({r["step"] for r in acts}) == [0, 3, 6, 9]
    assert len(acts) == 4 * len(leaves)           # eval forward not recorded
    gout = batch_records(rec, tensor="grad_output")
    assert {r["layer"] for r in gout} == set(leaves)
    gw = batch_records(rec, tensor="grad_weight")
    assert {r["layer"] for r in gw} == {"conv", "fc1", "head.fc2", "out"}
    assert len(batch_records(rec, tensor="grad_bias")) == 16
    r = gw[0]
    for key in ("kind", "epoch", "batch", "step", "layer", "tensor", "numel", "mean", "std", "mean_abs",
                "density", "n_hist", "hist_pos", "hist_neg", "zeros", "nan"):
        assert key in r, key
    assert r["numel"] == model["conv"].params["weight"].size
    assert sum(r["hist_pos"]) + sum(r["hist_neg"]) + r["zeros"] + r["nan"] == r["n_hist"] == r["numel"]
    assert "hist_pos" not in acts[0]  # activations: moments only, by default
    # every record of one due batch carries that batch's position
    assert {(r["epoch"], r["batch"]) for r in acts if r["step"] == 6} == {(0, 6)}


def test_recorded_values_are_those_of_the_real_tensors():
    class Grab:
        """An observer placed before the recorder: keeps the tensors it sees."""
        def __init__(self):
            self.y, self.dy = {}, {}

        def forward_output(self, layer, x, y):
            self.y[layer.name] = y.copy()
            return y

        def observe_backward(self, layer, dy, dx):
            self.dy[layer.name] = dy.copy()

    model = tiny_model()
    grab, rec = Grab(), StatsRecorder(model, every=1)
    d = Driver(model, [grab, rec])
    d.state.epoch = 0
    d.batch(lr=0.0)
    for name in ("conv", "relu1", "head.relu2"):
        a = batch_records(rec, tensor="activation", layer=name)[0]
        y = grab.y[name].astype(np.float64)
        assert a["mean"] == pytest.approx(y.mean(), rel=1e-9, abs=1e-12)
        assert a["std"] == pytest.approx(y.std(), rel=1e-6)
        assert a["density"] == pytest.approx(np.count_nonzero(y) / y.size)
        g = batch_records(rec, tensor="grad_output", layer=name)[0]
        assert g["mean_abs"] == pytest.approx(np.abs(grab.dy[name]).mean(), rel=1e-6)
    relu = batch_records(rec, tensor="activation", layer="relu1")[0]
    assert 0.1 < relu["density"] < 0.9  # a ReLU output really is sparse
    w = batch_records(rec, tensor="grad_weight", layer="fc1")[0]
    gw = model["fc1"].grads["weight"].astype(np.float64)
    assert w["mean"] == pytest.approx(gw.mean(), rel=1e-6, abs=1e-12)


def test_nothing_recorded_when_not_due_in_eval_or_outside_a_batch():
    model = tiny_model()
    rec = StatsRecorder(model, every=5)
    d = Driver(model, [rec])
    d.state.epoch = 0
    for _ in range(4):
        d.batch()
    assert {r["step"] for r in batch_records(rec)} == {0}
    n = len(rec.records)
    model.forward(np.zeros((2, 2, 4, 4), np.float32))  # a forward outside any batch
    assert len(rec.records) == n
    # a due batch whose forward runs in eval mode records no activation
    d.batch()          # trained batch 4 (not due)
    model.eval()
    rec.on_batch_begin(d.state)  # trained count is 5: due, but the model is in eval mode
    model.forward(np.zeros((2, 2, 4, 4), np.float32))
    assert len(rec.records) == n
    model.train()


def test_no_record_after_a_recorded_batch_ended_or_in_validation_after_a_dropped_one():
    model = tiny_model()
    rec = StatsRecorder(model, every=1)
    d = Driver(model, [rec])
    d.batch()                                        # recorded
    n = len(rec.records)
    model.forward(np.zeros((2, 2, 4, 4), np.float32))  # train mode, but the batch has ended
    assert len(rec.records) == n
    d.batch(drop=True)   # due, then dropped by another hook: on_batch_end never comes
    model.eval()         # ... and the epoch's validation runs
    model.forward(np.zeros((2, 2, 4, 4), np.float32))
    model.train()
    assert len(rec.records) == n


def test_a_dropped_batch_does_not_advance_the_counter():
    model = tiny_model()
    rec = StatsRecorder(model, every=2)
    d = Driver(model, [rec])
    d.batch()              # step 0: recorded
    d.batch(drop=True)     # step 1: dropped by another hook (no on_batch_end)
    d.batch()              # step 2: trained batch #1, not due
    d.batch()              # step 3: trained batch #2, due
    assert sorted({r["step"] for r in batch_records(rec)}) == [0, 3]


def test_epoch_norms_and_lars_ratio_on_a_known_update():
    model = tiny_model()
    rec = StatsRecorder(model, every=100)
    st = SimpleNamespace(epoch=0, batch=0, global_step=0)
    fc = model["fc1"]
    w0 = fc.params["weight"].astype(np.float64).copy()
    rec.on_epoch_begin(st)
    delta = np.zeros_like(fc.params["weight"])
    delta[0, :4] = [3.0, 0.0, 4.0, 0.0]            # ||delta|| = 5
    fc.params["weight"] += delta
    model["out"].freeze("bias")
    rec.on_epoch_end(st)
    ep = [r for r in rec.records if r["kind"] == "epoch" and r["layer"] == "fc1" and r["param"] == "weight"][0]
    w1 = w0 + delta
    assert ep["norm"] == pytest.approx(np.linalg.norm(w1), rel=1e-6)
    assert ep["update_norm"] == pytest.approx(5.0, rel=1e-6)
    assert ep["lars"] == pytest.approx(np.linalg.norm(w1) / 5.0, rel=1e-6)
    assert sum(ep["value_hist"]) == w1.size
    still = [r for r in rec.records if r["kind"] == "epoch" and r["layer"] == "fc1" and r["param"] == "bias"][0]
    assert still["update_norm"] == 0 and still["lars"] is None     # Δw = 0: ratio undefined
    frozen = [r for r in rec.records if r["kind"] == "epoch" and r["layer"] == "out" and r["param"] == "bias"][0]
    assert frozen["trained"] is False
    init = [r for r in rec.records if r["kind"] == "init" and r["layer"] == "fc1" and r["param"] == "weight"][0]
    assert init["norm"] == pytest.approx(np.linalg.norm(w0), rel=1e-6)


def test_frozen_param_gradients_are_not_recorded():
    model = tiny_model()
    model["conv"].freeze()
    rec = StatsRecorder(model, every=1)
    Driver(model, [rec]).batch()
    assert not batch_records(rec, layer="conv", tensor="grad_weight")
    assert batch_records(rec, layer="fc1", tensor="grad_weight")


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="every"):
        StatsRecorder(tiny_model(), every=0)
    with pytest.raises(ValueError, match="bins"):
        StatsRecorder(tiny_model(), bins=[1.0, 0.5])


# -- storage ------------------------------------------------------------------------------------------
def test_attach_flushes_every_epoch_and_load_round_trips(tmp_path):
    model = tiny_model()
    rec = StatsRecorder(model, every=2)
    rec.attach(str(tmp_path))
    d = Driver(model, [rec])
    lines = (tmp_path / "stats.jsonl").read_text().splitlines()
    meta = json.loads(lines[0])
    assert meta["kind"] == "meta" and meta["every"] == 2 and len(meta["bin_edges"]) == 57
    assert [l["name"] for l in meta["layers"]] == [l.name for l in model.leaves()]
    d.epoch(4, 0)
    after_one = len((tmp_path / "stats.jsonl").read_text().splitlines())
    assert after_one > 1 and rec.records == []  # written at the end of the epoch, not held back
    d.epoch(4, 1)
    rec.save(str(tmp_path))
    st = load_stats(str(tmp_path))
    assert st.layers() == [l.name for l in model.leaves()]
    assert st.epochs() == [0, 1]
    steps, vals = st.series("fc1", "grad_weight", "density")
    assert list(steps) == [0, 2, 4, 6] and np.all((vals > 0) & (vals <= 1))
    ep, lars = st.epoch_series("fc1", "weight", "lars")
    assert list(ep) == [0, 1] and np.all(lars > 0)
    s, e, pos, neg, zeros, n = st.hist("fc1", "grad_weight")
    assert pos.shape == (4, 56) and np.all(pos.sum(1) + neg.sum(1) + zeros == n)
    assert set(st.tensors("fc1")) == {"activation", "grad_output", "grad_weight", "grad_bias"}


def test_save_without_attach_and_a_truncated_last_line(tmp_path):
    model = tiny_model()
    rec = StatsRecorder(model, every=1)
    Driver(model, [rec]).epoch(2, 0)
    path = rec.save(str(tmp_path / "run"))
    n = len(load_stats(str(tmp_path / "run")))
    assert n == len(rec.records) > 0
    with open(path, "a") as f:
        f.write('{"kind": "batch", "epo')  # a crash mid-write
    assert len(load_stats(str(tmp_path / "run"))) == n


def test_load_stats_errors(tmp_path):
    with pytest.raises(ValueError, match="no stats.jsonl"):
        load_stats(str(tmp_path))
    (tmp_path / "stats.jsonl").write_text('{"kind": "batch"}\n')
    with pytest.raises(ValueError, match="meta"):
        load_stats(str(tmp_path))


# -- inspect ----------------------------------------------------------------------------------------------
@pytest.fixture
def run_dir(tmp_path):
    model = tiny_model()
    rec = StatsRecorder(model, every=2)
    rec.attach(str(tmp_path))
    d = Driver(model, [rec])
    d.epoch(4, 0)
    model["conv"].freeze()
    d.epoch(4, 1)
    rec.save(str(tmp_path))
    return str(tmp_path)


def test_inspect_overview_lists_every_layer_and_the_lars_table(run_dir):
    text = inspect_run(run_dir)
    for name in ("conv", "relu1", "fc1", "head.fc2", "head.relu2", "out"):
        assert name in text
    assert "LARS" in text and "fc1.weight" in text and "ep 1" in text and "ep 2" in text  # 1-based
    conv_row = [l for l in text.splitlines() if l.startswith("conv.weight")][0]
    assert conv_row.split()[-1] == "inf"  # frozen in epoch 1: ||Δw|| = 0
    st = load_stats(run_dir)
    lars0 = st.epoch_series("fc1", "weight", "lars")[1][0]
    fc1_row = [l for l in text.splitlines() if l.startswith("fc1.weight")][0]
    assert fc1_row.split()[1] == f"{lars0:.4g}"


def test_inspect_one_layer_in_detail(run_dir):
    text = inspect_run(run_dir, layer="fc1")
    assert text.startswith("layer fc1 (Linear)")
    assert "grad_weight" in text and "grad_output" in text and "init" in text
    epoch_rows = [l for l in text.splitlines() if l.split()[:2] in (["1", "weight"], ["2", "weight"])]
    assert len(epoch_rows) == 2


def test_inspect_errors_are_one_line_and_helpful(run_dir, tmp_path_factory):
    with pytest.raises(ValueError) as e:
        inspect_run(run_dir, layer="nosuch")
    msg = str(e.value)
    assert "\n" not in msg and "nosuch" in msg and "head.fc2" in msg
    empty = tmp_path_factory.mktemp("norun")
    with pytest.raises(ValueError, match="stats.jsonl") as e:
        inspect_run(str(empty))
    assert "\n" not in str(e.value)
