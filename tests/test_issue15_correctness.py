"""Issue 15, method correctness: each test here failed before its fix and passes after.

1. ``minicnn evaluate`` scores the network the run's own evaluation scored (PSG, fixed8, e2train: the
   fixed-point forward with the running activation ranges, which model.npz now holds).
2. gradprune at input-gradient sites (Conv-ReLU nets): the ledger's bytes equal an independent observer's.
3. WUS beside SLU: the targets are the backbone's (fc.bias), SLU's gates are not WUS's to freeze or count,
   and Eq. 1's fraction equals a hand count.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from minicnn.training import Trainer
from minicnn.training.setup import build_run


def _run(tmp_path, specs, model="resnet8", epochs=1, images=128, batch=32, seed=0, lr=0.02, **cfg):
    job = build_run(dict(model=model, dataset="synthetic", epochs=epochs, batch_size=batch, lr=lr,
                         train_images=images, method=list(specs), seed=seed, **cfg))
    out = str(tmp_path / "run")
    tr = Trainer(job["model"], job["ds"], job["opt"], job["schedule"], job["epochs"], batch_size=batch,
                 methods=job["methods"], ledger=job["ledger"], seed=seed, progress=False, verbose=False,
                 run_dir=out)
    return tr, tr.fit(), out


def _cli_evaluate(path):
    r = subprocess.run([sys.executable, "-m", "minicnn", "evaluate", "--checkpoint", path, "--json"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


# -- 1. evaluate scores the trained (fixed-point) network --------------------------------------------------
@pytest.mark.parametrize("spec, key", [("psg", "psg"), ("fixed8", "fixed8"), ("e2train", "psg")])
def test_evaluate_scores_the_fixed_point_network_the_run_scored(tmp_path, spec, key):
    from minicnn.training import evaluate, load_checkpoint
    tr, summary, out = _run(tmp_path, [spec])
    path = os.path.join(out, "model.npz")
    last = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))][-1]
    ev = _cli_evaluate(path)
    assert ev["images"] == summary["test_images"]
    assert ev["accuracy"] == summary["final_test_acc"]                 # to the last image
    assert ev["loss"] == pytest.approx(last["test_loss"], rel=1e-6)   # the same network, not just the same count
    # the running activation ranges are in model.npz: one per conv, those the trainer's method held
    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
    method = next(m for m in tr.methods if m.key == key)
    saved = meta["method_states"][key]["running"]
    assert set(saved) == method._convs and saved == method._running
    assert all(r > 0 for r in saved.values())
    # and the fp32 master weights are another network: without the hooks the loss differs
    model, _, mean, std = load_checkpoint(path)
    from minicnn.hooks import HookList
    model.set_hooks(HookList([]))
    fp32 = evaluate(model, tr.dataset.test_x, tr.dataset.test_y, 256, mean, std)
    assert fp32["loss"] != pytest.approx(last["test_loss"], rel=1e-6)


def test_a_model_npz_without_the_running_ranges_is_refused(tmp_path):
    """A PSG checkpoint written before the ranges were saved: one line, not a silent fp32 score."""
    import zipfile
    tr, summary, out = _run(tmp_path, ["fixed8"], images=64)
    path = os.path.join(out, "model.npz")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
    del meta["method_states"]
    arrays["meta"] = np.array(json.dumps(meta))
    old = str(tmp_path / "old.npz")
    np.savez(old, **arrays)
    assert zipfile.is_zipfile(old)
    r = subprocess.run([sys.executable, "-m", "minicnn", "evaluate", "--checkpoint", old], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert "no saved state for method fixed8" in r.stderr


# -- 2. gradprune at input-gradient sites: bytes against an independent observer ---------------------------
from minicnn.methods import Method  # noqa: E402


class ByteObserver(Method):
    """Sums what each kernel of a training step reads and writes, from the arrays themselves.

    Written from the layers' code, not from the ledger's rules: a kernel reads its input arrays
    and writes its results once each; an array is charged as it is stored, ``a.nbytes`` (fp32,
    int32 argmax) or, for a gradient stored sparse, 8 bytes per non-zero (fp32 value + int32
    index). Which gradients are stored sparse follows from what happened to them: the result of
    a method's transform of dx (the pruning pass: it writes only non-zeros), and the dx of a
    layer whose backward keeps zeros zero (ReLU, max-pool, flatten) when its dy was stored sparse.
    Placed *first* among the hooks, it sees each layer's dx as the layer returned it.
    """
    name = "byte-observer"

    def __init__(self):
        self.bytes = {}          # (layer name, phase) -> bytes
        self._stored = {}        # id(array) -> (array, bytes as stored), for sparse gradients
        self._raw = {}           # layer name -> dx as the layer's backward returned it
        self._reads = {}         # layer name -> arrays its backward reads besides dy and params

    def _add(self, layer, phase, n):
        key = (layer.name, phase)
        self.bytes[key] = self.bytes.get(key, 0) + int(n)

    def size(self, a):
        got = self._stored.get(id(a))
        return got[1] if got is not None and got[0] is a else a.nbytes

    def _sparse(self, a):
        self._stored[id(a)] = (a, 8 * int(np.count_nonzero(a)))

    def on_batch_end(self, state):
        self._stored, self._raw, self._reads = {}, {}, {}

    def forward_output(self, layer, x, y):
        if layer.is_container or not layer.training:
            return y
        if np.shares_memory(x, y):                                   # a view (flatten): no kernel runs
            self._reads[layer.name] = []
            return y
        cache = layer.cache if isinstance(layer.cache, tuple) else (layer.cache,)
        new = [a for a in cache if isinstance(a, np.ndarray) and not np.shares_memory(a, x)
               and not np.shares_memory(a, y)]                         # arrays the forward wrote besides y
        self._add(layer, "forward", x.nbytes + sum(p.nbytes for p in layer.params.values()) + y.nbytes
                  + sum(a.nbytes for a in new))
        kind = type(layer).__name__
        self._reads[layer.name] = {"ReLU": [y], "MaxPool2d": new}.get(kind, [x])   # what backward reads
        return y

    def backward_input_grad(self, layer, dx):
        self._raw[layer.name] = dx
        return dx

    def observe_backward(self, layer, dy, dx):
        if layer.is_container or not layer.training:
            return
        kind = type(layer).__name__
        raw = self._raw.pop(layer.name, None)
        if raw is not None and not np.shares_memory(raw, dy):
            # dx: read dy, and W (conv, linear) or the cache (ReLU: y; max-pool: argmax); write dx
            extra = [layer.params["weight"]] if kind in ("Conv2d", "Linear") else self._reads[layer.name]
            if kind in ("ReLU", "MaxPool2d") and id(dy) in self._stored:
                self._sparse(raw)                                     # zeros stay zeros: stored sparse too
            self._add(layer, "backward_input", self.size(dy) + sum(a.nbytes for a in extra) + self.size(raw))
        elif raw is not None and id(dy) in self._stored:             # flatten: dx is dy's view
            self._sparse(raw)
        if dx is not None and raw is not None and dx is not raw:     # a method's pass over dx (the pruning)
            self._sparse(dx)
            self._add(layer, "backward_input", raw.nbytes + self.size(dx))
        for p, g in layer.grads.items():
            if g is None or not layer.requires_grad.get(p, False):
                continue
            if p == "weight":                                         # dW: read dy and x, write dW
                self._add(layer, "backward_weight", self.size(dy) + self._reads[layer.name][0].nbytes + g.nbytes)
            else:                                                     # db: read dy, write db
                self._add(layer, "backward_weight", self.size(dy) + g.nbytes)

    def on_param_update(self, layer, name, optimizer):
        p = layer.params[name]                                        # R+W p, R g, R+W the momentum buffer
        self._add(layer, "update", 2 * p.nbytes + layer.grads[name].nbytes + (2 * p.nbytes if optimizer.momentum else 0))


@pytest.mark.parametrize("model, width", [("alexnet-ye", 0.125), ("vgg11-cifar", 0.125)])
def test_gradprune_input_site_bytes_equal_an_independent_observer(model, width):
    from minicnn.cost import Ledger
    from minicnn.data import synthetic
    from minicnn.methods import attach, build_methods
    from minicnn.models import build
    from minicnn.training import SGD, make_schedule
    obs = ByteObserver()
    methods = build_methods(["gradprune:p=0.9,where=input"])
    ds = synthetic(n_train=32, n_test=10, seed=0)
    net = build(model, num_classes=10, seed=0, width=width)
    attach(net, methods)
    opt = SGD(net, lr=0.01, momentum=0.9, weight_decay=5e-4)
    tr = Trainer(net, ds, opt, make_schedule("constant", 0.01, 1), 1, batch_size=16, methods=[obs] + methods,
                 ledger=Ledger(net), seed=0, progress=False, verbose=False)
    tr.fit()
    per = tr.ledger.per_layer()
    ledger = {(n, ph): c.bytes for n, phases in per.items() for ph, c in phases.items()
              if ph != "eval" and c.bytes}
    assert ledger == obs.bytes
    pruned = {n for (n, ph) in obs.bytes if ph == "backward_input" and n.startswith("conv")}
    assert len(pruned) >= 4                                           # every conv with a dx is a site


# -- 3. WUS beside SLU: the backbone's targets, and Eq. 1 by hand --------------------------------------------
def _resnet8_params_by_hand():
    """(w + b, b) of resnet8 from its layer shapes: every parameter, and every bias (conv/linear bias, BN beta)."""
    def conv(cin, cout, k):
        return cin * cout * k * k

    def bn(c):
        return 2 * c                    # gamma and beta
    w_b = conv(3, 16, 3) + bn(16)                                                        # stem
    w_b += conv(16, 16, 3) + bn(16) + conv(16, 16, 3) + bn(16)                           # layer1.0
    w_b += conv(16, 32, 3) + bn(32) + conv(32, 32, 3) + bn(32) + conv(16, 32, 1) + bn(32)   # layer2.0 (+ projection)
    w_b += conv(32, 64, 3) + bn(64) + conv(64, 64, 3) + bn(64) + conv(32, 64, 1) + bn(64)   # layer3.0 (+ projection)
    w_b += 64 * 10 + 10                                                                  # fc
    b = 16 + (16 + 16) + (32 + 32 + 32) + (64 + 64 + 64) + 10                            # BN betas and fc.bias
    return w_b, b


class _Watch(Method):
    """Which backbone / gate parameters changed in each epoch."""
    name = "watch"

    def __init__(self):
        self.changed = []

    def on_epoch_begin(self, state):
        self._w = {f"{l.name}.{p}": l.params[p].copy() for _, l, p in state.model.named_parameters()}

    def on_epoch_end(self, state):
        self.changed.append({f"{l.name}.{p}" for _, l, p in state.model.named_parameters()
                             if not np.array_equal(self._w[f"{l.name}.{p}"], l.params[p])})


def test_wus_beside_slu_trains_fc_bias_and_counts_eq1_by_hand(tmp_path):
    from minicnn.methods import attach, build_methods
    from minicnn.data import synthetic
    from minicnn.cost import Ledger
    from minicnn.models import build
    from minicnn.training import SGD, make_schedule
    # window 2 and a huge threshold: stds after epochs 1 and 2 -> initial epoch 3 -> WUS epochs 4 and 5 (0-based)
    methods = build_methods(["slu", "wus:window=2,std_threshold=1000,patience=100"])
    watch = _Watch()
    ds = synthetic(n_train=64, n_test=20, seed=0)
    net = build("resnet8", num_classes=10, seed=0)
    attach(net, methods)
    opt = SGD(net, lr=0.02, momentum=0.9, weight_decay=5e-4)
    tr = Trainer(net, ds, opt, make_schedule("constant", 0.02, 6), 6, batch_size=32, methods=methods + [watch],
                 ledger=Ledger(net), seed=0, progress=False, verbose=False, val_images=20)
    summary = tr.fit()
    rec = summary["method_records"]["wus"]
    assert rec["kinds"] == ["normal"] * 4 + ["wus"] * 2
    assert rec["targets"] == ["fc.bias"]                     # not a gate's (bias-less) embedding
    for e in (4, 5):
        backbone = {n for n in watch.changed[e] if not n.startswith("aux.")}
        assert backbone == {"fc.bias"}                       # fc.bias trains, every other backbone param is frozen
        assert any(n.startswith("aux.slu.") for n in watch.changed[e])   # the gates are SLU's: not frozen
    w_b, b = _resnet8_params_by_hand()
    assert rec["params_total"] == w_b == 78042 and rec["biases_total"] == b == 346
    assert rec["updates_skipped_fraction_eq1"] == pytest.approx(1 - (2 * 10 + 4 * w_b) / (6 * w_b), abs=1e-15)
    assert rec["updates_skipped_fraction_eq1_paper_b"] == pytest.approx(1 - (2 * b + 4 * w_b) / (6 * w_b),
                                                                        abs=1e-15)
    per = rec["per_epoch"]                                   # the same, epoch by epoch (cumulative)
    assert [r["updates_skipped_eq1"] for r in per[:4]] == [0.0] * 4
    assert per[4]["updates_skipped_eq1_paper_b"] == pytest.approx(1 - (b + 4 * w_b) / (5 * w_b), abs=1e-15)
    assert per[5]["updates_skipped_eq1"] == rec["updates_skipped_fraction_eq1"]


def test_wus_layers_2_on_a_resnet_is_the_last_blocks_bn2_not_its_shortcut():
    from minicnn.models import build
    from minicnn.methods.wus import weight_layers, wus_targets
    r = build("resnet8", num_classes=10, seed=0)
    assert [f"{l.name}.{n}" for l, n in wus_targets(r, 2)] == ["layer3.0.bn2.bias", "fc.bias"]
    assert len(weight_layers(r)) == 8                       # resnet8's 8 layers: the projections are not counted


def test_lars_skip_walk_leaves_aux_layers_out():
    from minicnn.methods import attach, build_methods
    from minicnn.methods.lars_skip import conv_layout
    from minicnn.models import build
    net = build("resnet8", num_classes=10, seed=0)
    attach(net, build_methods(["slu"]))
    convs, allowed, frozen = conv_layout(net)
    assert not any(l.name.startswith("aux.") for sets in frozen for l, _ in sets)
