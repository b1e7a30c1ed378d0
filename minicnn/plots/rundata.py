"""Reading a run directory for plotting: metrics, summary, cost ledger, statistics.

Every file is optional; a missing or unreadable one reads as None/empty so
that the plots needing it are skipped.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from ..stats import load_stats

#: the training phases of the cost ledger, in the order they are stacked
TRAIN_PHASES = ("forward", "backward_input", "backward_weight", "update")


def read_jsonl(path: str) -> list[dict]:
    """One dict per line; blank lines and a truncated last line are skipped."""
    out = []
    with open(path) as f:
        lines = f.read().splitlines()
    for i, line in enumerate(lines):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                if i != len(lines) - 1:
                    raise ValueError(f"{path}: line {i + 1} is not valid JSON") from None
    return out


def _read_json(path: str):
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


@dataclass
class Run:
    """What the plots need from one run directory."""
    path: str
    name: str
    metrics: list = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    cost: dict | None = None
    stats: object = None  # minicnn.stats.Stats or None

    @property
    def methods(self) -> list[str]:
        m = self.summary.get("methods") or []
        return [m] if isinstance(m, str) else list(m)

    @property
    def label(self) -> str:
        """``name [methods]`` for legends, shortened to stay readable."""
        meth = ", ".join(self.methods)
        text = f"{self.name} [{meth}]" if meth else self.name
        return text if len(text) <= 48 else text[:47] + "\u2026"

    def column(self, key: str):
        """(epochs, values) of a metrics.jsonl field, rows lacking it left out."""
        xs, ys = [], []
        for i, r in enumerate(self.metrics):
            v = r.get(key)
            if v is not None:
                xs.append(r.get("epoch", i + 1))
                ys.append(v)
        return xs, ys

    def has(self, key: str) -> bool:
        return any(r.get(key) is not None for r in self.metrics)


def load_run(path: str, name: str | None = None) -> Run:
    """Read what there is of a run directory (ValueError if it does not exist)."""
    if not os.path.isdir(path):
        raise ValueError(f"run directory {path} does not exist")
    run = Run(path=path, name=name or os.path.basename(os.path.normpath(path)) or path)
    mp = os.path.join(path, "metrics.jsonl")
    if os.path.isfile(mp):
        run.metrics = read_jsonl(mp)
    run.summary = _read_json(os.path.join(path, "summary.json")) or {}
    cost = _read_json(os.path.join(path, "cost.json"))
    run.cost = cost if isinstance(cost, dict) and isinstance(cost.get("layers"), dict) else None
    if os.path.isfile(os.path.join(path, "stats.jsonl")):
        try:
            run.stats = load_stats(path)
        except ValueError:
            run.stats = None
    return run


def accuracy_percent(values: list) -> list:
    """Accuracies as percentages: metrics.jsonl stores fractions in [0, 1]."""
    if values and max(values) <= 1.0:
        return [100.0 * v for v in values]
    return list(values)
