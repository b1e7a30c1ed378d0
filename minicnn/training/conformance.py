"""The method conformance test: what every method must satisfy, checked on a real (small) run.

It lives in ``minicnn.training`` (it runs the Trainer, which sits above the methods):
``from minicnn.training.conformance import check_method``.

``check_method("smd:p=0.5")`` trains two epochs of resnet8 on a small
slice of the synthetic data (seeded) three times -- with the method, with
no method (same stretched schedule), and with the method but stopped after
epoch 1 and resumed -- and asserts:

1. **dense figure**: the ledger's dense count equals that of the baseline run
   of the same (possibly stretched) schedule, phase by phase (method-owned
   layers are not part of the dense model);
2. **actual <= dense**, phase by phase in MACs, in total in elementwise ops
   (a frozen BatchNorm's reduction pass moves from one phase to another), except
   the work the method declared extra (``ledger.add_work(..., extra=True)``
   and its own layers, ``aux.*``); bytes and energy too unless the method
   sets ``extra_work = True`` (a sparse format may move more bytes than the
   dense one it replaces: that is a real cost and the ledger shows it);
3. **frozen parameters** (``requires_grad`` False at the start of an
   epoch, after every method's ``on_epoch_begin``) are bit-for-bit
   unchanged at its end;
4. **records** (every ``metrics.jsonl`` line and ``summary.json``) are
   JSON-serializable, with ``method_records`` under the method's key;
5. **resume**: the run stopped after epoch 1 and resumed ends with
   bit-identical weights and the same ``metrics.jsonl`` (wall times aside).

Returns the method run's summary (for further checks by the caller).
"""
from __future__ import annotations

import json
import os
import tempfile

import numpy as np

from ..hooks import Hook
from ..methods.base import Method

TRAIN_PHASES = ("forward", "backward_input", "backward_weight", "update")


class ConformanceError(AssertionError):
    """A method broke the contract (the message says which clause)."""


class _FrozenWatch(Hook):
    """Snapshots params frozen at epoch start (after every method), compares them at epoch end."""

    def __init__(self):
        self.violations = []
        self.frozen_seen = 0

    def on_epoch_begin(self, state):
        self._snap = {(layer.name, n): layer.params[n].copy()
                      for _, layer, n in state.model.named_parameters() if not layer.requires_grad.get(n, True)}
        self.frozen_seen += len(self._snap)

    def on_epoch_end(self, state):
        for (lname, n), before in self._snap.items():
            layer = next(m for m in state.model.modules() if m.name == lname)
            if not np.array_equal(layer.params[n], before):
                self.violations.append(f"epoch {state.epoch + 1}: frozen {lname}.{n} changed")


class _StopAfter(Method):
    """Test helper: raise KeyboardInterrupt at the start of epoch ``epoch`` (0-based), as Ctrl-C would."""

    name = "_stop-after"

    def __init__(self, epoch: int = 1):
        self.epoch = epoch

    def on_epoch_begin(self, state):
        if state.epoch == self.epoch and self.armed:
            raise KeyboardInterrupt

    armed = True


def _cfg(spec_list, epochs, seed, model, train_images, extra):
    return dict(model=model, dataset="synthetic", epochs=epochs, batch_size=64, lr=0.02,
                train_images=train_images, method=list(spec_list), seed=seed, **extra)


def _train(cfg, run_dir, resume=False, stop_after=None, watch=None):
    from .setup import build_run
    from .trainer import Trainer, TrainingInterrupted
    job = build_run(cfg)
    methods = list(job["methods"])
    stopper = None
    if stop_after is not None:
        stopper = _StopAfter(stop_after)
        stopper.armed = not resume
        methods.append(stopper)
    trainer = Trainer(job["model"], job["ds"], job["opt"], job["schedule"], job["epochs"],
                      batch_size=cfg["batch_size"], methods=methods, ledger=job["ledger"], run_dir=run_dir,
                      seed=cfg["seed"], progress=False, verbose=False, config=cfg,
                      stats=watch)
    try:
        summary = trainer.fit(resume=resume)
    except TrainingInterrupted as e:
        summary = e.summary
    return trainer, summary


def _metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    for r in rows:
        r.pop("wall_time_s", None)
        r.pop("train_time_s", None)
    return rows


def check_method(spec, model: str = "resnet8", epochs: int = 2, seed: int = 0, train_images: int = 256,
                 extra_cfg: dict | None = None) -> dict:
    """Run the conformance checks on ``spec`` (a --method string or a list of them); raise ConformanceError."""
    specs = [spec] if isinstance(spec, str) else list(spec)
    extra = dict(extra_cfg or {})
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = _cfg(specs, epochs, seed, model, train_images, extra)
        watch = _FrozenWatch()
        tr, summ = _train(cfg, os.path.join(tmp, "method"), watch=watch)
        if summ["status"] != "completed":
            raise ConformanceError(f"{spec}: the run did not complete ({summ['status']})")
        base_cfg = _cfg([], tr.epochs, seed, model, train_images, extra)   # the same stretched schedule
        btr, _ = _train(base_cfg, os.path.join(tmp, "baseline"))
        led, bled = tr.ledger, btr.ledger

        # 1. dense figure
        d, bd = led.dense_totals(), bled.dense_totals()
        for p in TRAIN_PHASES:
            if d[p].to_dict() != bd[p].to_dict():
                problems.append(f"dense {p} {d[p].to_dict()} differs from the baseline's {bd[p].to_dict()}")

        # 2. actual <= dense, except declared extra work and method-owned layers
        extra_w = led.extra_totals()
        act = led.per_layer()
        aux = {p: sum(act[n][p].macs for n in act if n.startswith("aux.")) for p in TRAIN_PHASES}
        aux_ops = {p: sum(act[n][p].ops for n in act if n.startswith("aux.")) for p in TRAIN_PHASES}
        a = led.totals()
        declared = any(getattr(m, "extra_work", False) for m in tr.methods)
        for p in TRAIN_PHASES:
            if a[p].macs - extra_w[p].macs - aux[p] > d[p].macs:
                problems.append(f"actual {p} MACs {a[p].macs} exceed dense {d[p].macs} (+ declared extra)")
        # ops in total only: a frozen BatchNorm's reduction pass moves from backward_weight to backward_input
        ops = a["total"].ops - sum(extra_w[p].ops + aux_ops[p] for p in TRAIN_PHASES)
        if ops > d["total"].ops:
            problems.append(f"actual elementwise ops {ops} exceed dense {d['total'].ops} (+ declared extra)")
        if not declared:
            if a["total"].bytes > d["total"].bytes * (1 + 1e-12):
                problems.append(f"actual bytes {a['total'].bytes} exceed dense {d['total'].bytes}; "
                                "set extra_work = True if the method moves more on purpose")
            if a["total"].energy_pj > d["total"].energy_pj * (1 + 1e-12):
                problems.append(f"actual energy {a['total'].energy_pj} pJ exceeds dense {d['total'].energy_pj} pJ")

        # 3. frozen parameters unchanged
        problems += watch.violations

        # 4. records JSON-serializable, under the method's key
        try:
            json.dumps(summ, allow_nan=False)
            rows = _metrics(os.path.join(tmp, "method"))
        except (TypeError, ValueError) as e:
            problems.append(f"records are not JSON-serializable: {e}")
            rows = []
        for k in summ.get("method_records", {}):
            if k not in tr.keys:
                problems.append(f"summary method_records has key {k!r}, not one of the methods' keys {tr.keys}")

        # 5. resume after epoch 1 ends identical
        if tr.epochs >= 2:
            rdir = os.path.join(tmp, "resumed")
            _train(cfg, rdir, stop_after=1)
            rtr, rsumm = _train(cfg, rdir, resume=True, stop_after=1)
            w1, w2 = tr.model.state_dict(), rtr.model.state_dict()
            diff = [k for k in w1 if not np.array_equal(w1[k], w2[k])]
            if diff:
                problems.append(f"resumed run ends with different weights (e.g. {diff[0]})")
            if _metrics(rdir) != rows:
                problems.append("resumed run's metrics.jsonl differs from the uninterrupted run's")
            if rsumm.get("method_records") != summ.get("method_records"):
                problems.append("resumed run's method_records differ")
    if problems:
        raise ConformanceError(f"{spec}: " + "; ".join(problems))
    return summ
