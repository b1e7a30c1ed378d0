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


__all__ = ["METHODS", "Combination", "Method", "attach", "build_methods", "epochs_scale", "parse_method_spec",
           "register_method", "run_length", "Freeze"]
