"""The training loop: epochs, validation, hook points, ledger, run directory.

One training step, with the hook points of ``minicnn.hooks`` it fires::

    on_batch_begin(state)                    -> False drops the batch (SMD)
    logits = model.forward(x)                (layer hooks fire inside)
    loss   = SoftmaxCrossEntropy(logits, y)
    model.backward(dL/dlogits)               (stops at the lowest trained layer)
    on_after_backward(state)
    grad   = param_grad(layer, name, grad)   for every param that has one (PSG)
    optimizer.step()                         (skips params without a gradient)
    on_batch_end(state)

and after each epoch: validation (counted by the ledger as ``eval``), a line
in ``metrics.jsonl``, then ``on_epoch_end(state)`` (WUS and LARS decide here).

A run directory holds ``metrics.jsonl`` (one JSON object per epoch),
``summary.json``, ``cost.json`` (the ledger per layer), ``model.npz``
(weights and BatchNorm buffers) and, with ``--stats``, ``stats.jsonl``.
"""
from __future__ import annotations

import json
import math
import os
import time
import zipfile
from dataclasses import dataclass, field

import numpy as np

from ..hooks import FormatTable, HookList
from ..losses import SoftmaxCrossEntropy


@dataclass
class TrainState:
    """What hooks see. Methods may read everything and change ``model`` flags and ``formats``."""
    model: object
    optimizer: object
    epochs: int
    num_batches: int
    rng: np.random.Generator
    formats: FormatTable = field(default_factory=FormatTable)
    ledger: object = None
    run_dir: str | None = None
    epoch: int = 0
    batch: int = 0
    global_step: int = 0
    lr: float = 0.0
    x: np.ndarray | None = None
    y: np.ndarray | None = None
    logits: np.ndarray | None = None
    loss: float | None = None
    batches_done: int = 0
    batches_dropped: int = 0
    history: list = field(default_factory=list)   # the metrics.jsonl records so far
    stop_training: bool = False


def evaluate(model, x_u8, y, batch_size=256, mean=None, std=None, ledger=None):
    """Accuracy and mean loss of ``model`` on uint8 images (eval mode; no gradient).

    With a ledger, the work is counted in its ``eval`` phase.
    """
    from ..data import BatchIterator
    it = BatchIterator(x_u8, y, batch_size, shuffle=False, mean=mean, std=std)
    was_training = model.training
    model.eval()
    if ledger is not None:
        ledger.set_mode("eval")
    loss_fn = SoftmaxCrossEntropy()
    total_loss, correct, n = 0.0, 0, 0
    try:
        for xb, yb in it:
            logits = model.forward(xb)
            total_loss += loss_fn.forward(logits, yb) * len(yb)
            correct += int((logits.argmax(axis=1) == yb).sum())
            n += len(yb)
    finally:
        if ledger is not None:
            ledger.set_mode("train")
        if was_training:
            model.train()
    return {"accuracy": correct / max(n, 1), "loss": total_loss / max(n, 1), "images": n}


class Trainer:
    """Train ``model`` on a :class:`minicnn.data.Dataset`.

    methods: hook objects (``minicnn.methods``) applied in order;
    stats:   a ``StatsRecorder`` or None; ledger: a ``Ledger`` or None.
    progress: a tqdm bar per epoch; verbose: one summary line per epoch
    (defaults to ``progress``).
    """

    def __init__(self, model, dataset, optimizer, schedule, epochs, batch_size=128, augment=(),
                 methods=(), ledger=None, stats=None, run_dir=None, seed=0, progress=True,
                 eval_batch_size=256, config=None, verbose=None):
        from ..data import BatchIterator, channel_stats
        self.model, self.dataset, self.optimizer, self.schedule = model, dataset, optimizer, schedule
        self.epochs, self.batch_size = epochs, batch_size
        self.methods, self.ledger, self.stats = list(methods), ledger, stats
        self.run_dir, self.progress, self.eval_batch_size = run_dir, progress, eval_batch_size
        self.verbose = progress if verbose is None else verbose   # one line per epoch
        self.config = dict(config or {})
        self.mean, self.std = channel_stats(dataset.train_x)
        self.train_iter = BatchIterator(dataset.train_x, dataset.train_y, batch_size, shuffle=True,
                                        augment=augment, mean=self.mean, std=self.std, seed=seed)
        # observers last, so they see what the methods made of each tensor
        self.hooks = HookList(self.methods + [h for h in (stats, ledger) if h is not None])
        model.set_hooks(self.hooks)
        self.loss_fn = SoftmaxCrossEntropy()
        self.state = TrainState(model=model, optimizer=optimizer, epochs=epochs,
                                num_batches=len(self.train_iter), rng=np.random.default_rng(seed + 1),
                                ledger=ledger, run_dir=run_dir)
        if ledger is not None:
            # one source of truth: the ledger counts the update the optimizer really does
            ledger.formats = self.state.formats
            ledger.momentum = bool(optimizer.momentum)
            ledger.weight_decay = bool(optimizer.weight_decay)

    # -- one step ---------------------------------------------------------------
    def train_step(self, x, y):
        """Forward, backward, update on one batch; returns (loss, number correct)."""
        s, model = self.state, self.model
        s.x, s.y = x, y
        logits = model.forward(x)
        s.logits = logits
        s.loss = self.loss_fn.forward(logits, y)
        model.zero_grad()
        model.backward(self.loss_fn.backward())
        self.hooks.call("on_after_backward", s)
        for _, layer, name in self.optimizer.params:
            g = layer.grads.get(name)
            if g is not None:
                layer.grads[name] = self.hooks.param_grad(layer, name, g)
        updated = self.optimizer.step()
        if self.ledger is not None:
            n_state = 1 if self.optimizer.momentum else 0
            for layer, name in updated:
                self.ledger.count_update(layer, name, n_state)
        return s.loss, int((logits.argmax(axis=1) == y).sum())

    # -- the loop -----------------------------------------------------------------
    def fit(self):
        s, hooks = self.state, self.hooks
        self._t0 = time.perf_counter()
        hooks.call("on_train_begin", s)          # methods check their options before anything is written
        if self.run_dir:
            os.makedirs(self.run_dir, exist_ok=True)
            open(os.path.join(self.run_dir, "metrics.jsonl"), "w").close()
            if self.stats is not None and hasattr(self.stats, "attach"):
                self.stats.attach(self.run_dir)
        for epoch in range(self.epochs):
            s.epoch = epoch
            s.lr = self.optimizer.lr = self.schedule.lr_at(epoch)
            self.train_iter.set_epoch(epoch)
            self.model.train()
            hooks.call("on_epoch_begin", s)
            loss_sum, correct, seen = 0.0, 0, 0
            batches = self._progress(self.train_iter, epoch)
            for i, (x, y) in enumerate(batches):
                s.batch = i
                if self.ledger is not None:
                    self.ledger.add_dense_step(len(y), x.shape[1:])
                if not hooks.batch_begin(s):
                    s.batches_dropped += 1
                    s.global_step += 1
                    continue
                loss, ok = self.train_step(x, y)
                loss_sum += loss * len(y)
                correct += ok
                seen += len(y)
                s.batches_done += 1
                hooks.call("on_batch_end", s)
                s.global_step += 1
                if hasattr(batches, "set_postfix") and i % 5 == 0:
                    batches.set_postfix(loss=f"{loss:.3f}", acc=f"{correct / max(seen, 1):.3f}")
            record = self._end_epoch(epoch, loss_sum, correct, seen)
            hooks.call("on_epoch_end", s)
            if self.verbose:
                print(f"epoch {epoch + 1}/{self.epochs}: train loss {_fmt(record['train_loss'])} "
                      f"acc {_fmt(record['train_acc'])} | test loss {_fmt(record['test_loss'])} "
                      f"acc {_fmt(record['test_acc'])} | {record['wall_time_s']:.1f}s", flush=True)
            if s.stop_training:
                break
        hooks.call("on_train_end", s)
        return self._finish()

    def _progress(self, it, epoch):
        if not self.progress:
            return it
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover - tqdm is a dependency
            return it
        return tqdm(it, desc=f"epoch {epoch + 1}/{self.epochs}", leave=False, unit="batch")

    def _end_epoch(self, epoch, loss_sum, correct, seen):
        s, ds = self.state, self.dataset
        ev = evaluate(self.model, ds.test_x, ds.test_y, self.eval_batch_size, self.mean, self.std, self.ledger)
        record = {"epoch": epoch + 1, "lr": s.lr,
                  "train_loss": loss_sum / seen if seen else None,
                  "train_acc": correct / seen if seen else None,
                  "test_loss": ev["loss"], "test_acc": ev["accuracy"],
                  "wall_time_s": time.perf_counter() - self._t0,
                  "batches_cum": s.batches_done, "batches_dropped_cum": s.batches_dropped}
        if self.ledger is not None:
            tot = self.ledger.totals()["total"]
            dense = self.ledger.dense_totals()["total"]
            record.update(macs_cum=int(tot.macs), bytes_cum=float(tot.bytes), energy_j_cum=tot.energy_pj * 1e-12,
                          dense_macs_cum=int(dense.macs), dense_energy_j_cum=dense.energy_pj * 1e-12)
        s.history.append(record)
        if self.run_dir:
            with open(os.path.join(self.run_dir, "metrics.jsonl"), "a") as f:
                f.write(json.dumps(_finite(record), allow_nan=False) + "\n")
        return record

    def _finish(self):
        s, ds = self.state, self.dataset
        accs = [r["test_acc"] for r in s.history]
        summary = {
            "model": getattr(self.model, "arch", type(self.model).__name__),
            "dataset": ds.name,
            "epochs": len(s.history),
            "methods": [m.describe() if hasattr(m, "describe") else type(m).__name__ for m in self.methods]
                       or ["baseline"],
            "train_images": int(len(ds.train_y)),
            "test_images": int(len(ds.test_y)),
            "batch_size": self.batch_size,
            "final_test_acc": accs[-1] if accs else None,
            "best_test_acc": max(accs) if accs else None,
            "final_train_acc": s.history[-1]["train_acc"] if s.history else None,
            "wall_time_s": time.perf_counter() - self._t0,
            "batches_done": s.batches_done,
            "batches_dropped": s.batches_dropped,
            "config": self.config,
        }
        if self.ledger is not None:
            summary.update(self.ledger.summary())
        if self.run_dir:
            with open(os.path.join(self.run_dir, "summary.json"), "w") as f:
                json.dump(_finite(summary), f, indent=2, allow_nan=False)
            if self.ledger is not None:
                self.ledger.save(os.path.join(self.run_dir, "cost.json"))
            if self.stats is not None:
                self.stats.save(self.run_dir)
            save_checkpoint(self.model, os.path.join(self.run_dir, "model.npz"),
                            mean=self.mean, std=self.std, dataset=ds.name, classes=ds.classes)
        return summary


def _fmt(v):
    return "n/a" if v is None else f"{v:.4f}"


def _finite(obj):
    """JSON has no NaN or infinity: write them as null (a diverged run stays readable)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def save_checkpoint(model, path, mean=None, std=None, **meta):
    """Weights, BatchNorm buffers, the architecture and the normalization, in one .npz."""
    arrays = {f"state/{k}": v for k, v in model.state_dict().items()}
    info = {"arch": getattr(model, "arch", None), "config": getattr(model, "config", {}), **meta}
    arrays["meta"] = np.array(json.dumps(info))
    if mean is not None:
        arrays["norm_mean"], arrays["norm_std"] = np.asarray(mean), np.asarray(std)
    np.savez(path, **arrays)


def load_checkpoint(path):
    """Rebuild the model saved by :func:`save_checkpoint`; returns (model, meta, mean, std).

    Every check lives in :mod:`.checkpoint_io` (a damaged file is one ValueError).
    """
    from .checkpoint_io import load_checkpoint as _load
    return _load(path)
