"""Training methods, each a plain class that plugs into the hook points.

The contract a method author reads: ``minicnn/methods/README.md``.

``build_methods(["freeze:layers=conv1", ...])`` parses command-line specs
(``baseline`` adds none; a combination such as ``e2train`` becomes its
parts); ``attach(model, methods)`` lets them add their own layers, before
the optimizer is built; ``run_length(epochs, methods)`` is the run's epoch
count once methods that lengthen it (SMD's ``epochs_scale``) are applied.
Every module of this package that defines a method is imported below, so
its ``@register_method`` decorator runs.
"""
from __future__ import annotations

import math

from .base import METHODS, Combination, Method, parse_method_spec, register_method
from . import freeze  # noqa: F401  (registers "freeze")
from . import lars_skip, smd, wus  # noqa: F401  (register "lars-skip", "smd", "wus", "wus-lr")
from . import slu, stochastic_depth, e2train  # noqa: F401  (register "slu", "stochastic-depth", "e2train")
from . import gradprune  # noqa: F401  (registers "gradprune")
from . import psg  # noqa: F401  (registers "psg", "fixed8", "signsgd")
from . import swa  # noqa: F401  (registers "swa")
from .freeze import Freeze


def build_methods(specs) -> list[Method]:
    """Methods from ``--method`` specs; ``baseline`` (or no spec) means none."""
    methods = []
    for spec in specs or []:
        if spec.strip() == "baseline":
            continue
        m = parse_method_spec(spec)
        if isinstance(m, Combination):
            for part in m.parts():
                part.origin = spec.strip()
                methods.append(part)
        else:
            methods.append(m)
    return methods


def attach(model, methods) -> None:
    """Let every method add its own layers to ``model`` (call before building the optimizer)."""
    for m in methods:
        m.attach(model)


def epochs_scale(methods) -> float:
    """The product of the methods' ``epochs_scale``."""
    return math.prod(float(getattr(m, "epochs_scale", 1.0)) for m in methods)


def run_length(epochs: int, methods) -> int:
    """``epochs`` stretched by the methods (rounded to the nearest epoch, at least 1)."""
    return max(1, int(round(epochs * epochs_scale(methods))))


#: learning rates a paper trains a method at: {method name: (lr, where the paper says so)}.
#: minicnn never changes a run's --lr for a method; ``minicnn train`` says so in one line when a run with
#: such a method leaves --lr at its default (:func:`paper_lr_note`), and the presets set it.
PAPER_LR = {
    "psg": (0.03, 'E2-Train §4.1: "For experiments where PSG is used, the initial learning rate is adjusted '
                  'to 0.03"'),
}


def paper_lr_note(methods, lr: float) -> str | None:
    """One line if one of ``methods`` (parts of a combination included) is trained at another lr in its paper."""
    for m in methods:
        known = PAPER_LR.get(getattr(m, "name", ""))
        if known and float(lr) != known[0]:
            who = f"{m.origin} (its part {m.name})" if getattr(m, "origin", None) else m.name
            return (f"note: {who} runs at lr {lr:g} here; {known[1]} (give --lr {known[0]:g} for the paper's "
                    "setting)")
    return None


__all__ = ["METHODS", "PAPER_LR", "Combination", "Method", "attach", "build_methods", "epochs_scale",
           "paper_lr_note", "parse_method_spec", "register_method", "run_length", "Freeze"]
