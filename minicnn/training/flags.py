"""The flags of a training run, in one place: ``minicnn train`` builds its parser from them, sweep specs check
their values against them, and :func:`~minicnn.training.setup.build_run` takes them as a dict.

Each :class:`Flag` is a plain record -- name, how a value is parsed, its choices, whether it is a switch or
may be repeated, its help text -- so a reader (or a sweep spec) never has to look inside argparse. The
defaults live in :data:`minicnn.training.setup.DEFAULTS` (what a run uses when a flag is absent).

The parsers (``positive_int``, ...) raise ``argparse.ArgumentTypeError`` with a one-line message, which
argparse prints as is (and a sweep spec quotes).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable

import numpy as np


def number(kind, low, strict=False):
    """A value parser: ``kind`` (int or float), finite, >= low (> low if strict)."""
    what = ("an integer" if kind is int else "a finite number") + (f" > {low}" if strict else f" >= {low}")

    def parse(s):
        try:
            v = kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {s!r}") from None
        if not np.isfinite(v) or v < low or (strict and v == low):
            raise argparse.ArgumentTypeError(f"expected {what}, got {s!r}")
        return v
    return parse


positive_int = number(int, 1)
nonneg_int = number(int, 0)
nonneg_float = number(float, 0)
positive_float = number(float, 0, strict=True)


def momentum(s):
    v = nonneg_float(s)
    if v >= 1:
        raise argparse.ArgumentTypeError(f"expected a momentum in [0, 1), got {s!r}")
    return v


def milestones(s):
    try:
        ms = [int(t) for t in s.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated epochs like 10,15, got {s!r}") from None
    if not ms or min(ms) < 1 or ms != sorted(set(ms)):
        raise argparse.ArgumentTypeError(f"expected increasing epochs >= 1 like 10,15, got {s!r}")
    return ms


@dataclass(frozen=True)
class Flag:
    """One flag of a run: ``--name VALUE`` on the command line, ``name = VALUE`` in a sweep spec."""
    name: str                               # without the dashes, e.g. "batch-size"
    parse: Callable | None = None           # str -> value (raises argparse.ArgumentTypeError); None: a string
    choices: tuple | None = None
    switch: bool = False                    # takes no value (True when given)
    repeat: bool = False                    # may be given several times (the values form a list)
    metavar: str | None = None
    help: str | None = None

    @property
    def dest(self) -> str:
        """The key in a run's configuration (``batch_size``)."""
        return self.name.replace("-", "_")

    def add_to(self, parser) -> None:
        """Add this flag to an ``argparse`` parser (public argparse calls only)."""
        kw = {"help": self.help}
        if self.switch:
            kw["action"] = "store_true"
        else:
            if self.repeat:
                kw["action"] = "append"
            if self.parse is not None:
                kw["type"] = self.parse
            if self.choices is not None:
                kw["choices"] = self.choices
            if self.metavar is not None:
                kw["metavar"] = self.metavar
        parser.add_argument(f"--{self.name}", **kw)


#: ``--energy-table`` and ``--memory-level`` (``minicnn train`` and ``minicnn cost``)
ENERGY_FLAGS = (
    Flag("energy-table", metavar="FILE",
         help="JSON object overriding entries of the Horowitz 2014 energy table (see minicnn.cost.energy)"),
    Flag("memory-level", choices=("dram", "cache_1mb", "cache_32kb", "cache_8kb"),
         help="memory level every counted byte comes from (default dram)"),
)


def train_flags() -> tuple:
    """The flags of a run, in ``minicnn train --help`` order (the command's own flags, ``--out`` ... , aside)."""
    from ..models import MODELS
    return (
        Flag("model", help=f"one of {', '.join(MODELS)} (default: convnet-small)"),
        Flag("dataset", help="synthetic (built in), cifar10 or cifar100"),
        Flag("data-dir", help="CIFAR directory (python or binary format)"),
        Flag("epochs", positive_int, help="default 5 on synthetic data (under a minute on 2 cores), 4 otherwise"),
        Flag("batch-size", positive_int),
        Flag("lr", nonneg_float),
        Flag("momentum", momentum, help="in [0, 1)"),
        Flag("weight-decay", nonneg_float),
        Flag("nesterov", switch=True),
        Flag("schedule", choices=("constant", "step", "cosine")),
        Flag("milestones", milestones, metavar="E1,E2,...",
             help="with --schedule step: multiply the lr by --gamma at these epochs (like PyTorch's "
                  "MultiStepLR; without it, step decays every third of the run)"),
        Flag("gamma", positive_float, help="lr decay factor of the step schedule"),
        Flag("augment", help="comma-separated: flip,crop, or none"),
        Flag("width", positive_float, help="channel multiplier for alexnet-cifar/alexnet-ye/vgg11-cifar"),
        Flag("train-images", positive_int, help="train on a class-balanced subset"),
        Flag("val-images", nonneg_int,
             help="carve a class-balanced validation set of N training images; methods that decide "
                  "from accuracy (WUS, LARS skipping) read it instead of the test set"),
        Flag("method", repeat=True, metavar="NAME[:key=value,...]",
             help="a training method (repeatable); 'baseline' adds none"),
        Flag("stats", switch=True, help="record per-layer statistics (stats.jsonl)"),
        Flag("stats-every", positive_int, help="record statistics every k batches"),
        *ENERGY_FLAGS,
        Flag("seed", nonneg_int),
    )
