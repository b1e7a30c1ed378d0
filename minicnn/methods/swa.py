"""``swa``: stochastic weight averaging (Izmailov et al., UAI 2018), as E2-Train uses it with PSG (§4.1).

``--method swa[:start=0.75,freq=1,bn_update=true,bn_augment=true]``

E2-Train §4.1: "We also employed the stochastic weight averaging (SWA)
technique [67], which was found to notably stabilize training, when PSG is
adopted." Its [67] is SWALP (Yang et al. 2019, "Stochastic weight
averaging in low-precision training"; its abstract: it "averages
low-precision SGD iterates with a modified learning rate schedule"). The
paper says nothing more (no start, frequency or learning rate), and the
official code (GATECH-EIC/E2Train) has no SWA at all: every setting below is
minicnn's, chosen as a user of SWA expects it.

What it does::

    snapshot   after epoch e (1-based) if e >= first and (e - first) % freq == 0:
               w_swa <- w_swa + (w - w_swa) / (n + 1),  n <- n + 1       (a running mean;
               the first snapshot is a copy)                              every parameter of the
                                                                          model, method-owned ones too)
    at the end (on_train_end, a completed run with at least one snapshot):
               the model's parameters <- w_swa
               BatchNorm running statistics recomputed: one pass over the training set,
               shuffled and augmented as training makes it (bn_augment=true), with every
               BatchNorm normalizing with its batch statistics and accumulating their
               cumulative average over the images (bn_update=true)
    then       the trainer evaluates the averaged model (``state.weights_replaced``):
               summary.json's final_test_acc and model.npz are the SWA model's

Decisions, and where they come from (Izmailov et al.'s paper is not in
``../shared/papers``; their code is timgaripov/swa, ``train.py`` and
``utils.py``, read for this):

* ``start`` -- below 1, a fraction of the run: the first snapshot is taken
  after epoch floor(start * epochs) + 1 (0.75: the last quarter of the run,
  e.g. epochs 76-100 of 100, as Izmailov & Wilson's PyTorch blog post
  describes it: "the end of every epoch within the last 25% of training
  time"); 1 or more, the 1-based epoch of the first snapshot (a whole number
  at most the run's length), Izmailov et al.'s ``--swa_start`` (their README:
  126 of 225 epochs for PreResNet on CIFAR-10; snapshot after epoch e when
  ``e >= swa_start and (e - swa_start) % swa_c_epochs == 0``, as here).
* ``freq`` -- one snapshot every ``freq`` epochs (their ``--swa_c_epochs``,
  1 by default); minicnn averages at epoch ends only (torchcontrib's
  automatic mode counts optimizer steps instead).
* The learning rate is the run's own ``--schedule``: SWA's "SWA learning
  rate" is not applied (Izmailov et al.'s schedule: lr_init for the first
  half of the epochs before swa_start, a linear decay to ``--swa_lr`` until
  90% of them, then swa_lr constant). With a decaying schedule (cosine,
  step) the snapshots come from the low-rate end of the run and the average
  moves less; E2-Train gives no SWA schedule.
* The running mean is kept in the parameters' dtype (float32), as PyTorch's
  ``AveragedModel`` and Izmailov et al.'s ``moving_average`` do. With PSG or
  fixed8 the fp32 master weights are averaged; the forward requantizes the
  average to 8 bits as it does any weight.
* BatchNorm update (Izmailov et al.'s ``utils.bn_update``): running
  statistics restarted and replaced by the cumulative average, over the
  pass's images, of each batch's mean and unbiased variance: momentum
  b / (n + b) for a batch of b images after n (the first batch replaces the
  old statistics). PyTorch's ``update_bn`` (``momentum=None``) weighs batches
  equally instead: the same unless batch sizes differ (the last batch). The
  pass is one epoch of the training loader, shuffled and augmented with the
  run's ``--augment`` (``bn_augment=true``), as Izmailov et al. pass their
  training loader to ``bn_update``; its order and augmentation are drawn
  from the method's own random stream (the same run, the same pass).
  ``bn_augment=false`` passes the training images in order, not augmented
  ("the statistics of the images evaluation sees", minicnn's choice until
  2026-12-06). That was measured worse, and with PSG much worse: on resnet8,
  16 epochs, seed 0 (``benchmarks/papers/converged/swa_ablation.py``), the
  last epoch's weights scored 50.5% and 47.4% after an un-augmented pass,
  50.6% after an augmented one (psg, lr 0.03); an un-augmented pass over the
  *test* images themselves gave 47.0%. The network's later layers (and
  PSG's 8-bit activation ranges) were fitted to statistics of augmented
  batches; statistics of clean images move them off that.
  ``bn_update`` runs the whole model in train mode;
  here every layer runs in eval mode except that each BatchNorm computes its
  forward in train mode (batch statistics), and the run's other methods'
  layer hooks act as at evaluation: PSG's 8-bit forward (its activation ranges are the ones it
  kept from training; the pass does not update them), SLU's evaluation
  gates, stochastic depth's scaled blocks. A BatchNorm that never runs in the
  pass (a block SLU skips for every image) keeps its statistics.
* A run that diverged keeps the last finished epoch's weights (the trainer's
  rule); SWA then swaps nothing. ``bn_update=false`` swaps the average in
  with the last epoch's BatchNorm statistics (measurably worse; for tests).

What the ledger counts (``ledger.add_work(..., extra=True)``: work a plain run
does not do; ``extra_work = True``):

* each snapshot, per parameter tensor of n values, in the ``update`` phase:
  read w and w_swa, write w_swa, 3 elementwise ops per value (subtract,
  divide, add); the first snapshot a copy (read w, write w_swa). Counted
  like the optimizer's update (``minicnn.cost.rules.update_counts``): fp32
  tensors, ops rather than MACs;
* the swap: read w_swa, write w (``update`` phase);
* the BatchNorm pass: the forward of every layer that ran, by the ledger's
  own rules at the formats the methods declared (PSG's 8-bit convs), each
  BatchNorm as a train-mode forward (batch statistics and their running
  update), in the ``forward`` phase: one forward over the training set.

Records: per epoch ``snapshot`` (taken after this epoch), ``snapshots`` (so
far) and ``first_snapshot_epoch``; in the summary the snapshot epochs,
whether the average was swapped in, the BatchNorm pass (images, batches,
whether augmented and the seed of its order and augmentation, layers
updated, layers that did not run) and the work counted for SWA.
"""
from __future__ import annotations

import math

import numpy as np

from ..cost.counts import Counts, Tensor
from ..cost.rules import Work, residual_rows, rule_for
from ..cost.static import is_residual_block
from ..hooks import Hook, HookList
from ..layers.batchnorm import BatchNorm2d
from .base import Method, register_method


class SnapshotSchedule:
    """After which epochs SWA takes a snapshot (pure: the tests drive it with scripted epochs).

    ``start`` < 1 is a fraction of the run (first snapshot after epoch floor(start * epochs) + 1),
    ``start`` >= 1 a 1-based epoch; then one snapshot every ``freq`` epochs. Epochs are 1-based.
    """

    def __init__(self, start: float = 0.75, freq: int = 1):
        start = float(start)
        if not (math.isfinite(start) and start > 0):
            raise ValueError(f"method swa: start must be > 0 (a fraction of the run below 1, else an epoch), "
                             f"got {start}")
        if start >= 1 and not start.is_integer():
            raise ValueError(f"method swa: start {start} is neither a fraction below 1 nor a whole epoch")
        if int(freq) != freq or freq < 1:
            raise ValueError(f"method swa: freq must be a whole number of epochs >= 1, got {freq}")
        self.start, self.freq = start, int(freq)

    def first_epoch(self, epochs: int) -> int:
        """The 1-based epoch after which the first snapshot is taken."""
        if self.start < 1:
            return min(int(epochs), math.floor(self.start * epochs) + 1)
        return int(self.start)

    def check(self, epochs: int) -> None:
        if self.first_epoch(epochs) > epochs:
            raise ValueError(f"method swa: start epoch {self.first_epoch(epochs)} is after the run's last "
                             f"epoch ({epochs}); give a smaller start (or a fraction such as 0.75)")

    def takes_snapshot(self, epoch: int, epochs: int) -> bool:
        first = self.first_epoch(epochs)
        return epoch >= first and (epoch - first) % self.freq == 0

    def snapshot_epochs(self, epochs: int) -> list[int]:
        return [e for e in range(1, epochs + 1) if self.takes_snapshot(e, epochs)]


class RunningAverage:
    """The running mean of snapshots of named arrays: mean_k = mean_{k-1} + (w - mean_{k-1}) / k."""

    def __init__(self):
        self.mean: dict[str, np.ndarray] = {}
        self.count = 0

    def add(self, arrays: dict) -> None:
        if self.count and set(arrays) != set(self.mean):
            raise ValueError("swa: a snapshot has other parameters than the running average")
        self.count += 1
        if self.count == 1:
            self.mean = {k: np.array(v, copy=True) for k, v in arrays.items()}
            return
        for k, v in arrays.items():
            m = self.mean[k]
            m += (v - m) / m.dtype.type(self.count)

    def state_dict(self) -> dict:
        return {"count": self.count, "mean": {k: v.copy() for k, v in self.mean.items()}}

    def load_state_dict(self, d: dict) -> None:
        self.count = int(d["count"])
        self.mean = {k: np.array(v, copy=True) for k, v in d["mean"].items()}


class _BNEnter(Hook):
    """Last in the pass's hook list: a BatchNorm's own forward runs in train mode, with momentum b / (n + b),
    and the pass's forward work is counted (every other hook has seen the layer in eval mode)."""

    def __init__(self, bns, ledger):
        self.bns = {id(b): b for b in bns}
        self.seen = {id(b): 0 for b in bns}        # images each BatchNorm has averaged so far
        self.ledger = ledger
        self.work = Counts()

    def forward_input(self, layer, x):
        if id(layer) in self.bns and x.shape[0] * x.shape[2] * x.shape[3] > 1:
            n, b = self.seen[id(layer)], x.shape[0]
            self.seen[id(layer)] = n + b
            layer.momentum = b / (n + b)       # cumulative average over images: the first batch replaces all
            layer.training = True
        return x

    def forward_output(self, layer, x, y):
        if self.ledger is None:
            return y
        m = self.ledger.meter(layer)
        if not layer.is_container:
            bn = id(layer) in self.bns
            c = rule_for(layer).forward(m, layer, Work(Tensor.of(x, m.fmt("input")), Tensor.of(y, m.fmt("output")),
                                                       training=bn))
            kind = None
        elif is_residual_block(layer):
            rows = residual_rows(layer, y.shape[0])
            if not rows:
                return y
            t = Tensor((rows,) + tuple(y.shape[1:]))
            c, kind = rule_for(layer).forward(m, layer, Work(t, t)), "add"
        else:
            return y
        self.ledger.add_work(layer, "forward", c, kind=kind, extra=True)
        self.work += c
        return y


class _BNLeave(Hook):
    """First in the pass's hook list: the BatchNorm is back in eval mode before any other hook sees its output."""

    def __init__(self, bns):
        self.bns = {id(b) for b in bns}

    def forward_output(self, layer, x, y):
        if id(layer) in self.bns:
            layer.training = False
        return y


@register_method("swa")
class SWA(Method):
    """Stochastic weight averaging (Izmailov et al. 2018) with the BatchNorm update; E2-Train §4.1 with PSG."""

    name = "swa"
    extra_work = True          # the averaging and the BatchNorm pass are work a plain run does not do

    def __init__(self, start: float = 0.75, freq: int = 1, bn_update: bool = True, bn_augment: bool = True):
        self.schedule = SnapshotSchedule(start, freq)
        self.start, self.freq, self.bn_update = self.schedule.start, self.schedule.freq, bool(bn_update)
        self.bn_augment = bool(bn_augment)
        self.average = RunningAverage()
        self.snapshot_epochs: list[int] = []
        self._ledger = None
        self._last: dict = {}
        self._end: dict = {}
        self._work = {"update": Counts(), "forward": Counts()}

    # -- hooks -------------------------------------------------------------------------
    def on_train_begin(self, state):
        self.schedule.check(state.epochs)
        self._first = self.schedule.first_epoch(state.epochs)
        self._ledger = getattr(state, "ledger", None)

    def on_epoch_end(self, state):
        e = state.epoch + 1
        taken = self.schedule.takes_snapshot(e, state.epochs)
        if taken:
            params = {q: layer.params[p] for q, layer, p in state.model.named_parameters()}
            first = self.average.count == 0
            self.average.add(params)
            self.snapshot_epochs.append(e)
            self._count_params(state.model, "snapshot-copy" if first else "snapshot")
        self._last = {"snapshot": taken, "snapshots": self.average.count, "first_snapshot_epoch": self._first}

    def on_train_end(self, state):
        status = getattr(state, "status", None) or "completed"
        if status != "completed":
            self._end = {"swapped": False, "why": f"the run {status}: the last finished epoch's weights are kept"}
            return
        if self.average.count == 0:
            self._end = {"swapped": False, "why": "no snapshot was taken (the run stopped before the start epoch)"}
            return
        self.swap_in(state.model)
        self._end = {"swapped": True}
        if self.bn_update:
            self._end["bn_update"] = self.update_batchnorm(state)
        state.weights_replaced = self.key or self.name

    # -- the two steps at the end ---------------------------------------------------------
    def swap_in(self, model) -> None:
        """Write the running mean into the model's parameters."""
        for q, layer, p in model.named_parameters():
            layer.params[p][...] = self.average.mean[q]
        self._count_params(model, "swap")

    def update_batchnorm(self, state) -> dict:
        """Recompute every BatchNorm's running statistics over the training set (see the module docstring)."""
        model = state.model
        bns = [m for m in model.modules() if isinstance(m, BatchNorm2d)]
        if not bns:
            return {"batchnorm_layers": 0}
        momenta = {id(b): b.momentum for b in bns}
        old_hooks = getattr(model, "hooks", None) or HookList()
        methods = [h for h in old_hooks if isinstance(h, Method) and h is not self]   # observers stay out
        enter, leave = _BNEnter(bns, self._ledger), _BNLeave(bns)
        was_training = model.training
        images = batches = 0
        model.set_hooks(HookList([leave, *methods, enter]))
        model.eval()
        rng = getattr(self, "rng", None)       # the method's own stream (the Trainer gives it one)
        seed = int(rng.integers(2**31)) if (self.bn_augment and rng is not None) else 0
        try:
            for x, _ in state.training_batches(augment=self.bn_augment, seed=seed):
                model.forward(x)
                images += len(x)
                batches += 1
        finally:
            for b in bns:
                b.momentum, b.training = momenta[id(b)], False
            model.set_hooks(old_hooks)
            if was_training:
                model.train()
        self._work["forward"] += enter.work
        not_run = [b.name for b in bns if enter.seen[id(b)] == 0]
        return {"images": images, "batches": batches, "augmented": self.bn_augment, "seed": seed,
                "batchnorm_layers": len(bns) - len(not_run), "not_run": not_run}

    def _count_params(self, model, what: str) -> None:
        """The averaging's update-phase work, per parameter tensor (module docstring)."""
        if self._ledger is None:
            return
        for _, layer, p in model.named_parameters():
            t = Tensor(tuple(layer.params[p].shape))
            if what == "snapshot":
                c = self._ledger.meter(layer).counts(ops=3 * t.size, moved=[(None, t)] * 3)
            else:                                   # a copy: the first snapshot, the swap
                c = self._ledger.meter(layer).counts(moved=[(None, t)] * 2)
            self._ledger.add_work(layer, "update", c, extra=True)
            self._work["update"] += c

    # -- records and state ------------------------------------------------------------------
    def epoch_record(self, state) -> dict:
        return dict(self._last)

    def summary_record(self, state) -> dict:
        return {"first_snapshot_epoch": self.schedule.first_epoch(state.epochs), "freq": self.freq,
                "snapshot_epochs": list(self.snapshot_epochs), "snapshots": self.average.count, **self._end,
                "work": {p: c.to_dict() for p, c in self._work.items()}}

    def state_dict(self) -> dict:
        return {"average": self.average.state_dict(), "snapshot_epochs": list(self.snapshot_epochs),
                "work": {p: c.to_dict() for p, c in self._work.items()}}

    def load_state_dict(self, d: dict) -> None:
        self.average.load_state_dict(d["average"])
        self.snapshot_epochs = [int(e) for e in d["snapshot_epochs"]]
        self._work = {p: Counts.from_dict(c) for p, c in d["work"].items()}


__all__ = ["SWA", "RunningAverage", "SnapshotSchedule"]
