"""Small helpers shared by the lesson scripts (not a lesson itself).

Python puts the folder of the script you run on ``sys.path``, so a lesson
can simply ``from _lesson import ...``; minicnn itself comes from the
installed package.

* ``section(title)``   prints a numbered header;
* ``out_dir()``        where PNGs go: ``$MINICNN_LESSONS_OUT`` or ``./lessons_out``;
* ``save(fig, name)``  writes a matplotlib Figure there and says so;
* ``load_data(...)``   a class-balanced subset of real CIFAR-10 when it can be
                       found, else the built-in synthetic data (with a note);
* ``QUICK``            True when ``MINICNN_LESSON_QUICK=1`` (the tests set it
                       to shrink every run further);
* ``check(name, ok, detail)``  prints ``[ok] name`` or ``[FAIL] name`` and
                       records the outcome: every claim a lesson makes about
                       the numbers it shows is such a check;
* ``check_equal`` / ``check_close``  the same for "by hand vs library" figures;
* ``finish()``         the last line of every lesson: prints
                       ``CHECKS: <passed> passed, <failed> failed`` and exits
                       with status 1 if any check failed (``tests/test_lessons.py``
                       reads that line).

Importing this module applies minicnn's speed settings for the lesson's
process (BLAS on one thread, minicnn's own thread pool: see
``minicnn/kernels/process.py``), as ``minicnn train`` does: the lessons run
layers directly, outside a Trainer.
"""
from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

from minicnn.kernels.process import apply_speed_settings

apply_speed_settings()

#: set MINICNN_LESSON_QUICK=1 to make every lesson do even less work (the tests do)
QUICK = os.environ.get("MINICNN_LESSON_QUICK", "") not in ("", "0")

#: where the project keeps its real CIFAR slice: <repo>/../shared/data
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def section(title: str) -> None:
    """Print a lesson section header, e.g. ``section("1. The contract")``."""
    print()
    print(title)
    print("-" * len(title))


def out_dir() -> Path:
    """The output folder for figures (created if needed)."""
    path = Path(os.environ.get("MINICNN_LESSONS_OUT", "lessons_out"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def save(fig, name: str) -> Path:
    """Save a ``matplotlib.figure.Figure`` as ``out_dir()/name`` and print the path."""
    path = out_dir() / name
    fig.savefig(path, dpi=110)
    print(f"[saved figure] {path}")
    return path


def _cifar_folder() -> Path | None:
    """The CIFAR-10 folder: $MINICNN_CIFAR10 if set, else ../shared/data if present, else None."""
    env = os.environ.get("MINICNN_CIFAR10")
    if env:
        return Path(env)
    if (SHARED_DATA / "cifar-10-batches-py").is_dir():
        return SHARED_DATA / "cifar-10-batches-py"
    return None


def load_data(n_train: int, n_test: int, seed: int = 0):
    """A class-balanced subset of CIFAR-10 (or of the synthetic dataset) as a minicnn Dataset.

    On a CIFAR-10 too small for ``n_train`` / ``n_test`` images in equal numbers per class (the project's slice:
    at most 3,880 and 870), the largest balanced subset, with a note; the synthetic data only when there is no
    CIFAR-10 or it cannot be read."""
    import numpy as np

    from minicnn.data import DataError, load_dataset, subset, synthetic

    folder = _cifar_folder()
    if folder is not None:
        try:
            ds = load_dataset("cifar10", folder)
            # the project's slice has 388-437 training and 87-114 test images per class: a lesson asking for
            # more than its largest class-balanced subset gets that subset (real images), with a note
            cap_train, cap_test = (ds.num_classes * int(np.bincount(y, minlength=ds.num_classes).min())
                                   for y in (ds.train_y, ds.test_y))
            if n_train > cap_train or n_test > cap_test:
                print(f"note: {folder} holds at most {cap_train} training and {cap_test} test images in equal "
                      f"numbers per class; using {min(n_train, cap_train)} and {min(n_test, cap_test)} "
                      f"(asked for {n_train} and {n_test})")
            ds = subset(ds, min(n_train, cap_train), min(n_test, cap_test), seed=seed)
            print(f"data: real CIFAR-10 from {folder}: {ds.summary()}")
            return ds
        except DataError as e:
            print(f"note: could not read CIFAR-10 at {folder} ({e}); using synthetic data instead")
    else:
        print("note: no CIFAR-10 found (looked at $MINICNN_CIFAR10 and ../shared/data); "
              "using minicnn's built-in synthetic dataset instead.")
    ds = synthetic(n_train=n_train, n_test=n_test, seed=seed)
    print(f"data: {ds.summary()}")
    return ds


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``."""

    def __enter__(self):
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self._t0
        return False


# -- checks ---------------------------------------------------------------------------------------
_passed: list[str] = []
_failed: list[str] = []


def check(name: str, ok, detail: str = "") -> bool:
    """Record and print one verdict: ``[ok] name (detail)`` or ``[FAIL] name (detail)``. Returns ok."""
    ok = bool(ok)
    (_passed if ok else _failed).append(name)
    print(f"  [{'ok' if ok else 'FAIL'}] {name}" + (f"  ({detail})" if detail else ""))
    return ok


def check_equal(name: str, by_hand, library, labels=("by hand", "minicnn")) -> bool:
    """An exact "by hand vs library" comparison (integer counts)."""
    fmt = (lambda v: f"{v:,}") if isinstance(by_hand, int) and isinstance(library, int) else repr
    return check(name, by_hand == library, f"{labels[0]} {fmt(by_hand)}, {labels[1]} {fmt(library)}")


def check_close(name: str, by_hand, library, rtol: float = 1e-9, atol: float = 0.0,
                labels=("by hand", "minicnn")) -> bool:
    """A floating-point comparison: |by_hand - library| <= atol + rtol * |by_hand| (element-wise)."""
    import numpy as np
    a, b = np.asarray(by_hand, dtype=float), np.asarray(library, dtype=float)
    ok = a.shape == b.shape and bool(np.all(np.abs(a - b) <= atol + rtol * np.abs(a)))
    if a.size == 1:
        detail = f"{labels[0]} {float(a.ravel()[0]):.6g}, {labels[1]} {float(b.ravel()[0]):.6g}"
    else:
        detail = f"max |difference| {float(np.max(np.abs(a - b))) if a.shape == b.shape else math.inf:.2e}"
    return check(name, ok, detail + f"; tolerance {atol:g} + {rtol:g} x |value|")


def finish() -> None:
    """Print ``CHECKS: p passed, f failed`` (the lesson's last line); exit 1 if any check failed."""
    if _failed:
        print(f"\nfailed checks: {'; '.join(_failed)}")
    print(f"CHECKS: {len(_passed)} passed, {len(_failed)} failed", flush=True)
    if _failed:
        sys.exit(1)


class Grab:
    """A hook that keeps copies of one layer's input x and of the dL/dy arriving at it.

    ``model.set_hooks(HookList([Grab("layer1.0.conv2")]))``, one forward and
    backward, then read ``grab.x`` and ``grab.dy`` (for a ResNet conv, dy is
    the gradient after BatchNorm's backward: where pruning and PSG act).
    """

    def __init__(self, name):
        self.name, self.x, self.dy = name, None, None

    def forward_input(self, layer, x):
        if layer.name == self.name:
            self.x = x.copy()
        return x

    def backward_output_grad(self, layer, dy):
        if layer.name == self.name:
            self.dy = dy.copy()
        return dy


def grab_on_real_batch(name: str, ds, batch: int, seed: int):
    """resnet8 with a :class:`Grab` on layer ``name``, after one forward and backward on the first ``batch``
    real training images (scaled to roughly [-2, 2]); returns (model, grab)."""
    import numpy as np

    from minicnn.hooks import HookList
    from minicnn.losses import SoftmaxCrossEntropy
    from minicnn.models import build
    model = build("resnet8", num_classes=ds.num_classes, seed=seed)
    grab = Grab(name)
    model.set_hooks(HookList([grab]))
    x = (ds.train_x[:batch].astype(np.float32) / 255 - 0.5) / 0.25
    loss_fn = SoftmaxCrossEntropy()
    loss_fn(model.forward(x), ds.train_y[:batch])
    model.backward(loss_fn.backward())
    return model, grab
