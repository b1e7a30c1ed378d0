"""Shared helpers of the method tests: count which layers' backward runs and which gradients exist."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from minicnn.losses import SoftmaxCrossEntropy


def count_backward_calls(model) -> dict:
    """Wrap every leaf's ``backward`` so that calls are counted: ``{layer name: calls}``."""
    calls = {}
    for leaf in model.leaves():
        calls[leaf.name] = 0

        def wrapped(dy, _orig=leaf.backward, _name=leaf.name):
            calls[_name] += 1
            return _orig(dy)
        leaf.backward = wrapped
    return calls


def one_step(model, n=4, seed=0):
    """One forward and backward of a random batch (no optimizer step)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, n)
    loss = SoftmaxCrossEntropy()
    loss.forward(model.forward(x), y)
    model.zero_grad()
    model.backward(loss.backward())


def fake_state(model, epoch=0, lr=0.1, acc=0.5):
    return SimpleNamespace(model=model, epoch=epoch, lr=lr, control_acc=lambda: acc, history=[])


def small_trainer(methods, arch="convnet-small", epochs=2, n_train=128, n_test=40, batch=32, lr=0.02,
                  schedule="constant", milestones=None, ledger=True, val_images=0, run_dir=None, seed=0,
                  augment="none"):
    """A Trainer on a small synthetic dataset, with the methods attached as ``build_run`` does."""
    from minicnn.cost import Ledger
    from minicnn.data import synthetic
    from minicnn.methods import attach, build_methods
    from minicnn.models import build
    from minicnn.training import SGD, Trainer, make_schedule

    methods = build_methods(methods) if methods and isinstance(methods[0], str) else list(methods)
    ds = synthetic(n_train=n_train, n_test=n_test, seed=seed)
    model = build(arch, num_classes=ds.num_classes, seed=seed)
    attach(model, [m for m in methods if hasattr(m, "attach")])
    opt = SGD(model, lr=lr, momentum=0.9, weight_decay=5e-4)
    led = Ledger(model) if ledger else None
    sched = make_schedule(schedule, lr, epochs, milestones=milestones)
    return Trainer(model, ds, opt, sched, epochs, batch_size=batch, methods=methods, ledger=led,
                   run_dir=run_dir, seed=seed, progress=False, verbose=False, val_images=val_images,
                   augment=augment)
