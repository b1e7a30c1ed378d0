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
                       to shrink every run further).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

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
    """A class-balanced subset of CIFAR-10 (or of the synthetic dataset) as a minicnn Dataset."""
    from minicnn.data import DataError, load_dataset, subset, synthetic

    folder = _cifar_folder()
    if folder is not None:
        try:
            ds = load_dataset("cifar10", folder)
            ds = subset(ds, n_train, n_test, seed=seed)
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
