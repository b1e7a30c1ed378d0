"""Training methods, each a plain class that plugs into the hook points.

``build_methods(["freeze:layers=conv1", ...])`` parses command-line specs;
``baseline`` registers nothing. New methods add themselves to ``METHODS``.
"""
from .base import Method, parse_method_spec
from .freeze import Freeze

METHODS = {"freeze": Freeze}


def build_methods(specs) -> list[Method]:
    """Methods from ``--method`` specs; ``baseline`` (or no spec) means none."""
    methods = []
    for spec in specs or []:
        if spec.strip() == "baseline":
            continue
        methods.append(parse_method_spec(spec, METHODS))
    return methods


__all__ = ["METHODS", "Method", "build_methods", "parse_method_spec", "Freeze"]
