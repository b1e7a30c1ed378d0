"""The training loop: epochs, validation, hook points, when the run's files are written.

What the files hold and how they are written lives beside their readers:
``checkpoint.npz`` and ``model.npz`` in :mod:`.checkpoint_io`, ``config.json``,
``metrics.jsonl`` and ``summary.json`` (and the run lock) in :mod:`.runfiles`.

One training step, with the hook points of ``minicnn.hooks`` it fires::

    on_batch_begin(state)                    -> False drops the batch (SMD); state.x not loaded yet
    x      = state.x                         (loaded now: augmented with the batch's own stream, normalized)
    logits = model.forward(x)                (layer hooks fire inside)
    loss   = SoftmaxCrossEntropy(logits, y)  (a non-finite loss stops the run: "diverged")
    model.backward(dL/dlogits)               (stops at the lowest trained layer)
    on_after_backward(state)
    grad   = param_grad(layer, name, grad)   for every param that has one (signSGD)
    optimizer.step()                         (skips params without a gradient)
    on_param_update(layer, name, optimizer)  for every param updated (the ledger counts here)
    on_batch_end(state)

After each epoch: validation on ``--val-images`` (if any) and the test set
(evaluation forwards run in eval mode, which the ledger counts as ``eval``),
then ``on_epoch_end(state)`` (WUS and LARS decide here, from
``state.control_acc()``), then each method's ``epoch_record(state)``, then
the line in ``metrics.jsonl``, then ``checkpoint.npz``.

After the last epoch: ``state.status`` is set ("completed" or "diverged"),
then ``on_train_end(state)``. A method that puts other weights into the model
there (SWA: the averaged weights) sets ``state.weights_replaced`` to its key;
the trainer then evaluates the model once more (validation and test set), and
``summary.json``'s ``final_test_acc`` / ``final_val_acc`` and ``model.npz`` are
that model's (``summary["final_eval"]`` says whose, with the last epoch's
accuracy beside it; ``metrics.jsonl`` keeps the per-epoch evaluations).

The cost ledger and the statistics recorder are ordinary hooks here: the
trainer knows nothing of what they count.

Randomness, all from the run's seed: the data order of epoch e from
``(seed, e)``, the augmentation of batch b from ``(seed, e, b)``
(``minicnn.data.iterator``), each method's ``rng`` from ``(seed, crc32 of
its record key)``, so adding a method changes no other stream.

Resuming (``fit(resume=True)``; a run stopped before its first epoch ended
starts over): the last ``checkpoint.npz`` restores
weights, buffers, optimizer state, schedule position, history, every
random stream, method state, ledger totals and statistics position; a
resumed run ends with the same weights, bit for bit, and the same
``metrics.jsonl`` (wall times aside) as one never stopped.
``requires_grad`` flags are not saved: methods set them in
``on_epoch_begin`` from their own state.
"""
from __future__ import annotations

import copy
import math
import os
import threading
import time
import zlib

import numpy as np

from ..hooks import HookList
from ..kernels.process import speed_settings
from ..losses import SoftmaxCrossEntropy
from .checkpoint_io import restore_train_checkpoint, save_checkpoint, save_train_checkpoint
from .runfiles import RunLock, append_metrics, finite, jsonable, rewrite_metrics, start_run_files, write_summary
from .state import TrainState

STATUS = ("completed", "diverged", "interrupted")

#: set by a signal handler (``minicnn train``'s SIGINT/SIGTERM): the trainer stops at the next batch
#: boundary as if Ctrl-C had been pressed there. Raising from the handler itself could land inside a
#: numba kernel on a worker thread, where it becomes a SystemError instead of a clean stop.
STOP_REQUESTED = threading.Event()


class Diverged(Exception):
    """The loss became NaN or infinite (raised inside ``fit``, turned into status "diverged")."""

    def __init__(self, epoch: int, batch: int, loss: float):
        super().__init__(f"loss became {loss} in epoch {epoch}, batch {batch}")
        self.epoch, self.batch, self.loss = epoch, batch, loss


def evaluate(model, x_u8, y, batch_size=256, mean=None, std=None, before_batch=None):
    """Accuracy and mean loss of ``model`` on uint8 images (eval mode; no gradient).

    Hooks attached to the model see these forwards with ``layer.training``
    False: the ledger counts them as ``eval``, never as training.
    ``before_batch`` (no arguments) is called before each batch (the trainer
    checks there for a requested stop).
    """
    from ..data import BatchIterator
    it = BatchIterator(x_u8, y, batch_size, shuffle=False, mean=mean, std=std)
    was_training = model.training
    model.eval()
    loss_fn = SoftmaxCrossEntropy()
    total_loss, correct, n = 0.0, 0, 0
    try:
        for xb, yb in it:
            if before_batch is not None:
                before_batch()
            logits = model.forward(xb)
            total_loss += loss_fn.forward(logits, yb) * len(yb)
            correct += int((logits.argmax(axis=1) == yb).sum())
            n += len(yb)
    finally:
        if was_training:
            model.train()
    return {"accuracy": correct / max(n, 1), "loss": total_loss / max(n, 1), "images": n}


def method_keys(methods) -> list[str]:
    """Record keys: the method's name; a name given twice gets ``#2``, ``#3``, ... in order."""
    seen: dict[str, int] = {}
    keys = []
    for m in methods:
        name = getattr(m, "name", type(m).__name__)
        seen[name] = seen.get(name, 0) + 1
        keys.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return keys


def method_rng(seed: int, key: str) -> np.random.Generator:
    """The stream of the method recorded under ``key``: a function of (seed, key) alone."""
    return np.random.default_rng([int(seed), zlib.crc32(key.encode()), 0x6D657468])   # "meth"


class Trainer:
    """Train ``model`` on a :class:`minicnn.data.Dataset`.

    methods:    ``minicnn.methods.Method`` objects applied in order (attached to the
                model before the optimizer was built: ``minicnn.methods.attach``)
    ledger, stats: a ``Ledger`` / ``StatsRecorder`` or None (hooks, added after the methods)
    val_images: carve a class-balanced validation set of this many training images
    progress:   a tqdm bar per epoch; verbose: one summary line per epoch (defaults to ``progress``)
    """

    def __init__(self, model, dataset, optimizer, schedule, epochs, batch_size=128, augment=(),
                 methods=(), ledger=None, stats=None, run_dir=None, seed=0, progress=True,
                 eval_batch_size=256, config=None, verbose=None, val_images=0):
        from ..data import BatchIterator, channel_stats, split_validation
        self.model, self.optimizer, self.schedule = model, optimizer, schedule
        self.epochs, self.batch_size, self.seed = epochs, batch_size, seed
        self.methods, self.ledger, self.stats = list(methods), ledger, stats
        self.run_dir, self.progress, self.eval_batch_size = run_dir, progress, eval_batch_size
        self.verbose = progress if verbose is None else verbose   # one line per epoch
        self.config = dict(config or {})
        dataset, self.val_x, self.val_y = split_validation(dataset, val_images, seed)
        self.dataset = dataset
        self.mean, self.std = channel_stats(dataset.train_x)
        self.train_iter = BatchIterator(dataset.train_x, dataset.train_y, batch_size, shuffle=True,
                                        augment=augment, mean=self.mean, std=self.std, seed=seed)
        self.keys = method_keys(self.methods)
        for key, m in zip(self.keys, self.methods):
            m.key = key
            m.rng = method_rng(seed, key)
        known = {id(layer) for _, layer, _ in optimizer.params}
        for qname, layer, _ in model.named_parameters():
            if id(layer) not in known:
                raise ValueError(f"the optimizer does not hold parameter {qname}: build it after "
                                 "minicnn.methods.attach(model, methods)")
        # observers last, so they see what the methods made of each tensor
        self.hooks = HookList(self.methods + [h for h in (stats, ledger) if h is not None])
        model.set_hooks(self.hooks)
        self.loss_fn = SoftmaxCrossEntropy()
        self.state = TrainState(model, optimizer, epochs, len(self.train_iter), np.random.default_rng(seed + 1),
                                ledger=ledger, run_dir=run_dir, input_shape=dataset.train_x.shape[1:],
                                has_val=len(self.val_y) > 0)
        self.state.schedule = schedule   # read-only for methods (wus-lr refuses a schedule that changes every epoch)
        self.state.batch_size = batch_size
        self.state.train_set = (dataset.train_x, dataset.train_y, self.mean, self.std, self.train_iter.augment)
        self._final_eval = None       # the evaluation after on_train_end, when a method replaced the weights
        self._epoch_records: dict[str, list] = {k: [] for k in self.keys}
        self._last_good = None        # weights at the end of the last finished epoch (for divergence)
        self._last_good_methods = {}  # ... and the eval_state methods' state then (saved in model.npz)
        self._elapsed = 0.0           # wall time of earlier sessions of a resumed run

    # -- one step ---------------------------------------------------------------
    def train_step(self, x, y):
        """Forward, backward, update on one batch; returns (loss, number correct)."""
        s, model = self.state, self.model
        s.x, s.y = x, y
        with np.errstate(over="ignore", invalid="ignore"):   # divergence is reported once, below, not as warnings
            return self._step(x, y)

    def _step(self, x, y):
        s, model = self.state, self.model
        logits = model.forward(x)
        s.logits = logits
        s.loss = self.loss_fn.forward(logits, y)
        if not math.isfinite(s.loss):
            raise Diverged(s.epoch + 1, s.batch + 1, s.loss)
        model.zero_grad()
        model.backward(self.loss_fn.backward())
        self.hooks.call("on_after_backward", s)
        for _, layer, name in self.optimizer.params:
            g = layer.grads.get(name)
            if g is not None:
                layer.grads[name] = self.hooks.param_grad(layer, name, g)
        for layer, name in self.optimizer.step():
            self.hooks.param_update(layer, name, self.optimizer)
        return s.loss, int((logits.argmax(axis=1) == y).sum())

    # -- the loop -----------------------------------------------------------------
    def fit(self, resume: bool = False):
        """Train (or continue an interrupted run with ``resume=True``); returns the summary dict.

        Ends with ``summary["status"]`` "completed", "diverged" or "interrupted"
        (KeyboardInterrupt: the summary is written, then the interrupt is raised again).
        Runs under minicnn's speed settings (``minicnn.kernels.process.speed_settings``: BLAS on one
        thread, minicnn's pool on ``MINICNN_NUM_THREADS``), whose thread counts are put back after.
        """
        if self.run_dir:
            os.makedirs(self.run_dir, exist_ok=True)
        lock = RunLock(self.run_dir).acquire() if self.run_dir else None
        try:
            with speed_settings():
                return self._fit(resume)
        finally:
            if lock is not None:
                lock.release()

    def _fit(self, resume):
        s, hooks = self.state, self.hooks
        self._t0 = time.perf_counter()
        STOP_REQUESTED.clear()
        hooks.call("on_train_begin", s)          # methods check their options before anything is written
        start = 0
        if resume and os.path.exists(os.path.join(self.run_dir, "checkpoint.npz")):
            start = self._load_checkpoint()
        elif self.run_dir:      # a new run (or one stopped before its first epoch ended: start it over)
            start_run_files(self.run_dir, self.config)
            if self.stats is not None and hasattr(self.stats, "attach"):
                self.stats.attach(self.run_dir)
        if self._last_good is None:
            self._last_good, self._last_good_methods = _copy_state(self.model), self._eval_states()
        status, diverged_at = "completed", None
        try:
            for epoch in range(start, self.epochs):
                self._run_epoch(epoch)
                if s.stop_training:
                    break
        except Diverged as d:
            status, diverged_at = "diverged", {"epoch": d.epoch, "batch": d.batch}
            print(f"minicnn: training diverged: {d}; model.npz keeps the weights of the last finished "
                  f"epoch ({len(s.history)})", flush=True)
        except KeyboardInterrupt:
            summary = self._finish("interrupted", None)
            raise TrainingInterrupted(summary) from None
        s.status = status
        try:
            hooks.call("on_train_end", s)
            if status == "completed" and s.weights_replaced:
                self._final_eval = self._evaluate_final()
        except KeyboardInterrupt:         # the last epoch's checkpoint stands: resuming redoes this part
            self._final_eval = None
            summary = self._finish("interrupted", None)
            raise TrainingInterrupted(summary) from None
        return self._finish(status, diverged_at)

    def _evaluate_final(self) -> dict:
        """Evaluate the weights a method put into the model in ``on_train_end`` (SWA's average)."""
        s, ds = self.state, self.dataset
        out = {"weights_from": s.weights_replaced,
               "last_epoch_test_acc": s.history[-1]["test_acc"] if s.history else None}
        if s.has_val:
            ev = evaluate(self.model, self.val_x, self.val_y, self.eval_batch_size, self.mean, self.std, _check_stop)
            out.update(val_loss=ev["loss"], val_acc=ev["accuracy"],
                       last_epoch_val_acc=s.history[-1]["val_acc"] if s.history else None)
        ev = evaluate(self.model, ds.test_x, ds.test_y, self.eval_batch_size, self.mean, self.std, _check_stop)
        out.update(test_loss=ev["loss"], test_acc=ev["accuracy"])
        return out

    def _run_epoch(self, epoch):
        s, hooks, it = self.state, self.hooks, self.train_iter
        s.epoch = epoch
        s.lr = self.optimizer.lr = self.schedule.lr_at(epoch)
        self.model.train()
        hooks.call("on_epoch_begin", s)
        loss_sum, correct, seen = 0.0, 0, 0
        t_epoch = time.perf_counter()
        plan = it.plan(epoch)
        bar = self._progress(len(plan), epoch)
        for i, idx in enumerate(plan):
            _check_stop()
            s.batch = i
            s._set_batch(idx, it.y[idx], lambda idx=idx, i=i: it.load(idx, epoch, i))
            if not hooks.batch_begin(s):
                s.batches_dropped += 1
                s.global_step += 1
                if bar is not None:
                    bar.update(1)
                continue
            loss, ok = self.train_step(s.x, s.y)
            loss_sum += loss * len(s.y)
            correct += ok
            seen += len(s.y)
            s.batches_done += 1
            hooks.call("on_batch_end", s)
            s.global_step += 1
            if bar is not None:
                bar.update(1)
                if i % 5 == 0:
                    bar.set_postfix(loss=f"{loss:.3f}", acc=f"{correct / max(seen, 1):.3f}")
        if bar is not None:
            bar.close()
        s._set_batch(None, None, None)
        _check_stop()
        self._train_time = time.perf_counter() - t_epoch
        record = self._end_epoch(epoch, loss_sum, correct, seen)
        if self.verbose:
            val = f" | val acc {_fmt(record['val_acc'])}" if "val_acc" in record else ""
            print(f"epoch {epoch + 1}/{self.epochs}: train loss {_fmt(record['train_loss'])} "
                  f"acc {_fmt(record['train_acc'])}{val} | test loss {_fmt(record['test_loss'])} "
                  f"acc {_fmt(record['test_acc'])} | {record['wall_time_s']:.1f}s", flush=True)

    def _progress(self, total, epoch):
        if not self.progress:
            return None
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover - tqdm is a dependency
            return None
        return tqdm(total=total, desc=f"epoch {epoch + 1}/{self.epochs}", leave=False, unit="batch")

    def _wall(self) -> float:
        return self._elapsed + time.perf_counter() - self._t0

    def _end_epoch(self, epoch, loss_sum, correct, seen):
        s, ds = self.state, self.dataset
        record = {"epoch": epoch + 1, "lr": s.lr,
                  "train_loss": loss_sum / seen if seen else None,
                  "train_acc": correct / seen if seen else None}
        if s.has_val:
            ev = evaluate(self.model, self.val_x, self.val_y, self.eval_batch_size, self.mean, self.std, _check_stop)
            record.update(val_loss=ev["loss"], val_acc=ev["accuracy"])
        ev = evaluate(self.model, ds.test_x, ds.test_y, self.eval_batch_size, self.mean, self.std, _check_stop)
        record.update(test_loss=ev["loss"], test_acc=ev["accuracy"])
        record.update(batches_cum=s.batches_done, batches_dropped_cum=s.batches_dropped)
        if self.ledger is not None:
            tot = self.ledger.totals()["total"]
            dense = self.ledger.dense_totals()["total"]
            record.update(macs_cum=int(tot.macs), bytes_cum=float(tot.bytes), energy_j_cum=tot.energy_pj * 1e-12,
                          dense_macs_cum=int(dense.macs), dense_energy_j_cum=dense.energy_pj * 1e-12)
        s.history.append(record)
        self.hooks.call("on_epoch_end", s)          # methods decide from this epoch's record
        recs = {}
        for key, m in zip(self.keys, self.methods):
            r = m.epoch_record(s) if hasattr(m, "epoch_record") else None
            if r:
                recs[key] = finite(jsonable(r))
                self._epoch_records[key].append({"epoch": epoch + 1, **recs[key]})
        if recs:
            record["method_records"] = recs
        record["train_time_s"] = self._train_time     # this epoch's batches only (no validation)
        record["wall_time_s"] = self._wall()
        self._last_good, self._last_good_methods = _copy_state(self.model), self._eval_states()
        if self.run_dir:
            # checkpoint first: a run killed between the two resumes from the checkpoint,
            # which rewrites metrics.jsonl from its own history
            self._save_checkpoint(epoch + 1)
            append_metrics(self.run_dir, record)
        return record

    # -- checkpoints ----------------------------------------------------------------
    def _eval_states(self) -> dict:
        """{key: state_dict()} of the methods whose state is part of the trained model (``Method.eval_state``)."""
        return {key: copy.deepcopy(m.state_dict()) for key, m in zip(self.keys, self.methods)
                if getattr(m, "eval_state", False)}

    def _hook_states(self) -> dict:
        out = {}
        for key, m in zip(self.keys, self.methods):
            st = m.state_dict() if hasattr(m, "state_dict") else {}
            out[f"method:{key}"] = {"state": st, "rng": m.rng.bit_generator.state}
        if self.ledger is not None:
            out["ledger"] = {"state": self.ledger.state_dict()}
        if self.stats is not None and hasattr(self.stats, "state_dict"):
            out["stats"] = {"state": self.stats.state_dict()}
        return out

    def _save_checkpoint(self, epochs_done: int) -> None:
        """``checkpoint.npz``: what resuming needs (the format: :func:`.checkpoint_io.save_train_checkpoint`)."""
        s = self.state
        info = {"epochs_done": epochs_done, "global_step": s.global_step, "batches_done": s.batches_done,
                "batches_dropped": s.batches_dropped, "history": s.history, "rng": s.rng.bit_generator.state,
                "epoch_records": self._epoch_records, "wall_time_s": self._wall(), "hooks": self._hook_states(),
                "stop_training": s.stop_training}
        save_train_checkpoint(os.path.join(self.run_dir, "checkpoint.npz"), self.model, self.optimizer, info)

    def _load_checkpoint(self) -> int:
        """Restore everything :meth:`_save_checkpoint` saved; returns the number of finished epochs."""
        s = self.state
        info = restore_train_checkpoint(os.path.join(self.run_dir, "checkpoint.npz"), self.model, self.optimizer)
        s.global_step, s.batches_done = info["global_step"], info["batches_done"]
        s.batches_dropped, s.history = info["batches_dropped"], info["history"]
        s.stop_training = info.get("stop_training", False)
        s.rng.bit_generator.state = info["rng"]
        self._epoch_records = {k: info["epoch_records"].get(k, []) for k in self.keys}
        self._elapsed = info["wall_time_s"]
        hooks = info["hooks"]
        for key, m in zip(self.keys, self.methods):
            h = hooks.get(f"method:{key}")
            if h is None:
                raise ValueError(f"checkpoint has no state for method {key}")
            m.rng.bit_generator.state = h["rng"]
            if hasattr(m, "load_state_dict"):
                m.load_state_dict(h["state"])
        if self.ledger is not None:
            self.ledger.load_state_dict(hooks["ledger"]["state"])
        if self.stats is not None and "stats" in hooks:
            self.stats.load_state_dict(hooks["stats"]["state"])
            self.stats.attach(self.run_dir, resume=True)
        # metrics.jsonl: exactly the finished epochs of the checkpoint (a half-written epoch is dropped)
        rewrite_metrics(self.run_dir, s.history)
        return int(info["epochs_done"])

    # -- the end ---------------------------------------------------------------------
    def _finish(self, status, diverged_at):
        s, ds = self.state, self.dataset
        if status != "completed" and self._last_good is not None:
            self.model.load_state_dict(self._last_good)     # never save weights of a half epoch or NaN
        accs = [r["test_acc"] for r in s.history]
        final = self._final_eval if status == "completed" else None
        if final is not None:
            accs = accs + [final["test_acc"]]          # the replaced weights' accuracy is the run's last
        summary = {
            "status": status,
            "model": getattr(self.model, "arch", type(self.model).__name__),
            "dataset": ds.name,
            "epochs": len(s.history),
            "epochs_planned": self.epochs,
            "methods": _origins(self.methods),
            "train_images": int(len(ds.train_y)),
            "val_images": int(len(self.val_y)),
            "test_images": int(len(ds.test_y)),
            "batch_size": self.batch_size,
            "final_test_acc": accs[-1] if accs else None,
            "best_test_acc": max(accs) if accs else None,
            "final_train_acc": s.history[-1]["train_acc"] if s.history else None,
            "controller_metric": s.control_metric,
            "wall_time_s": self._wall(),
            "train_time_s": sum(r.get("train_time_s") or 0.0 for r in s.history),   # batches only, no validation
            "batches_done": s.batches_done,
            "batches_dropped": s.batches_dropped,
            "config": self.config,
        }
        if diverged_at is not None:
            summary["diverged_at"] = diverged_at
        if s.has_val and s.history:
            vals = [r["val_acc"] for r in s.history] + ([final["val_acc"]] if final is not None else [])
            summary.update(final_val_acc=vals[-1], best_val_acc=max(vals))
        if final is not None:
            summary["final_eval"] = final
        recs = {}
        for key, m in zip(self.keys, self.methods):
            extra = m.summary_record(s) if hasattr(m, "summary_record") else {}
            if self._epoch_records[key] or extra:
                recs[key] = {"per_epoch": self._epoch_records[key], **jsonable(extra or {})}
        summary["method_records"] = recs
        if self.ledger is not None:
            summary.update(self.ledger.summary())
        if self.run_dir:
            if self.ledger is not None:
                self.ledger.save(os.path.join(self.run_dir, "cost.json"))
            if self.stats is not None and hasattr(self.stats, "save"):
                self.stats.save(self.run_dir)
            save_checkpoint(self.model, os.path.join(self.run_dir, "model.npz"), mean=self.mean, std=self.std,
                            dataset=ds.name, classes=ds.classes,
                            methods=[m for m in _origins(self.methods) if m != "baseline"],
                            status=status, method_states=self._last_good_methods)
            write_summary(self.run_dir, summary)   # last
        return summary


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) during ``fit``: the run's files are written with status "interrupted"."""

    def __init__(self, summary):
        super().__init__("interrupted")
        self.summary = summary


def _check_stop() -> None:
    if STOP_REQUESTED.is_set():
        STOP_REQUESTED.clear()
        raise KeyboardInterrupt


def _origins(methods) -> list[str]:
    """The methods as the user gave them (a combination's parts share one origin string)."""
    out = []
    for m in methods:
        d = getattr(m, "origin", None) or (m.describe() if hasattr(m, "describe") else type(m).__name__)
        if d not in out:
            out.append(d)
    return out or ["baseline"]


def _copy_state(model) -> dict:
    return {k: v.copy() for k, v in model.state_dict().items()}


def _fmt(v):
    return "n/a" if v is None else f"{v:.4f}"
