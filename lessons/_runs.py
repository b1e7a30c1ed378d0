"""Training runs for the method lessons (06-08): what ``minicnn train`` does, on a dataset already loaded.

``train(ds, methods, ...)`` builds the model, lets the methods attach, builds
SGD, a schedule for the run stretched by the methods' ``epochs_scale``
(milestones stretched too), a ledger, and trains. It returns the trainer,
the summary and the training time of each epoch *without* evaluation
(``EpochTimer``), which is what the method papers compare.
"""
from __future__ import annotations

import time

from minicnn.cost import Ledger
from minicnn.hooks import Hook
from minicnn.methods import attach, build_methods, epochs_scale, run_length
from minicnn.models import build
from minicnn.training import SGD, Trainer, make_schedule, stretch_milestones


class EpochTimer(Hook):
    """Wall time of each epoch's training batches (from on_epoch_begin to the last batch's end)."""

    def __init__(self):
        self.seconds: list[float] = []

    def on_epoch_begin(self, state):
        self._t0 = self._t1 = time.perf_counter()

    def on_batch_end(self, state):
        self._t1 = time.perf_counter()

    def on_epoch_end(self, state):
        self.seconds.append(self._t1 - self._t0)


def train(ds, methods=(), arch="convnet-small", epochs=3, lr=0.01, schedule="cosine", milestones=None, gamma=0.1,
          batch_size=64, val_images=0, seed=0, augment=(), run_dir=None):
    """One run, as ``minicnn train`` would do it; returns ``(trainer, summary, epoch_train_seconds)``."""
    methods = build_methods(list(methods)) if methods and isinstance(list(methods)[0], str) else list(methods)
    model = build(arch, num_classes=ds.num_classes, seed=seed)
    attach(model, methods)
    opt = SGD(model, lr=lr, momentum=0.9, weight_decay=5e-4)
    n_epochs = run_length(epochs, methods)
    ms = stretch_milestones(milestones, epochs_scale(methods)) if milestones else None
    sched = make_schedule(schedule, lr, n_epochs, gamma=gamma, milestones=ms)
    timer = EpochTimer()
    trainer = Trainer(model, ds, opt, sched, n_epochs, batch_size=batch_size, augment=augment,
                      methods=methods, ledger=Ledger(model), stats=timer, run_dir=run_dir, seed=seed,
                      progress=False, verbose=False, val_images=val_images)
    summary = trainer.fit()
    return trainer, summary, timer.seconds
