"""Reading ``stats.jsonl`` back (schema: ``minicnn.stats.recorder``)."""
from __future__ import annotations

import json
import os

import numpy as np

from .recorder import STATS_FILE


class Stats:
    """The parsed records of one ``stats.jsonl``, with a few helpers.

    Attributes: ``meta`` (the meta dict), ``records`` (every record, in file
    order), ``bin_edges`` (ndarray), ``path``.
    """

    def __init__(self, meta: dict, records: list[dict], path: str = ""):
        self.meta = meta
        self.records = records
        self.path = path
        self.bin_edges = np.asarray(meta.get("bin_edges", []), dtype=np.float64)
        self.batch = [r for r in records if r.get("kind") == "batch"]
        self.epoch = [r for r in records if r.get("kind") == "epoch"]
        self.init = [r for r in records if r.get("kind") == "init"]

    def __len__(self):
        return len(self.records)

    def __iter__(self):
        return iter(self.records)

    # -- what is there --------------------------------------------------------------
    def layers(self) -> list[str]:
        """Leaf layer names in forward order (meta order; then any others seen)."""
        names = [l["name"] for l in self.meta.get("layers", [])]
        seen = set(names)
        for r in self.records:
            n = r.get("layer")
            if n is not None and n not in seen:
                names.append(n)
                seen.add(n)
        return names

    def layer_type(self, layer: str) -> str:
        for l in self.meta.get("layers", []):
            if l["name"] == layer:
                return l.get("type", "")
        return ""

    def params(self, layer: str) -> list[str]:
        """Parameter names of a layer (meta order, then any seen in epoch records)."""
        out = []
        for l in self.meta.get("layers", []):
            if l["name"] == layer:
                out = list(l.get("params", {}))
        for r in self.epoch + self.init:
            if r["layer"] == layer and r["param"] not in out:
                out.append(r["param"])
        return out

    def tensors(self, layer: str) -> list[str]:
        """Batch tensor kinds recorded for a layer (activation, grad_output, grad_weight, ...)."""
        out = []
        for r in self.batch:
            if r["layer"] == layer and r["tensor"] not in out:
                out.append(r["tensor"])
        return out

    def epochs(self) -> list[int]:
        return sorted({r["epoch"] for r in self.epoch} | {r["epoch"] for r in self.batch})

    # -- series ------------------------------------------------------------------------
    def batch_records(self, layer: str, tensor: str) -> list[dict]:
        return [r for r in self.batch if r["layer"] == layer and r["tensor"] == tensor]

    def series(self, layer: str, tensor: str, field: str):
        """(steps, values) of a batch-record field; missing values become NaN."""
        return _columns(self.batch_records(layer, tensor), "step", field)

    def epoch_records(self, layer: str, param: str) -> list[dict]:
        return [r for r in self.epoch if r["layer"] == layer and r["param"] == param]

    def epoch_series(self, layer: str, param: str, field: str):
        """(epochs, values) of an epoch-record field (norm, update_norm, lars, ...)."""
        return _columns(self.epoch_records(layer, param), "epoch", field)

    def epoch_mean(self, layer: str, tensor: str, field: str) -> dict[int, float]:
        """Per epoch, the mean of a batch-record field over that epoch's records."""
        acc: dict[int, list] = {}
        for r in self.batch_records(layer, tensor):
            v = r.get(field)
            if v is not None:
                acc.setdefault(r["epoch"], []).append(v)
        return {e: float(np.mean(v)) for e, v in sorted(acc.items())}

    def hist(self, layer: str, tensor: str):
        """Stacked signed histograms of a tensor: (steps, epochs, pos, neg, zeros, n).

        pos/neg are (records, K) int arrays on ``bin_edges``; records without
        a histogram are left out.
        """
        recs = [r for r in self.batch_records(layer, tensor) if "hist_pos" in r]
        k = max(len(self.bin_edges) - 1, 0)
        steps = np.array([r["step"] for r in recs], dtype=np.int64)
        epochs = np.array([r["epoch"] for r in recs], dtype=np.int64)
        pos = np.array([r["hist_pos"] for r in recs], dtype=np.int64).reshape(len(recs), k)
        neg = np.array([r["hist_neg"] for r in recs], dtype=np.int64).reshape(len(recs), k)
        zeros = np.array([r["zeros"] for r in recs], dtype=np.int64)
        n = np.array([r["n_hist"] for r in recs], dtype=np.int64)
        return steps, epochs, pos, neg, zeros, n


def _columns(recs: list[dict], key: str, field: str):
    """(keys as int64, values as float64 with a missing/null value as NaN) of a list of records."""
    keys = np.array([r[key] for r in recs], dtype=np.int64)
    vals = np.array([np.nan if r.get(field) is None else r[field] for r in recs], dtype=np.float64)
    return keys, vals


def load_stats(run_dir: str) -> Stats:
    """Parse ``run_dir/stats.jsonl`` (or a path to the file itself).

    Raises ValueError (one line) when the file is missing or not a stats file.
    A truncated last line (a run that crashed mid-write) is ignored.
    """
    path = run_dir if os.path.isfile(run_dir) else os.path.join(run_dir, STATS_FILE)
    if not os.path.isfile(path):
        raise ValueError(f"no {STATS_FILE} in {run_dir} (train with statistics recording on, e.g. --stats)")
    meta, records = None, []
    with open(path) as f:
        lines = f.read().splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break  # a partial last line
            raise ValueError(f"{path}: line {i + 1} is not valid JSON") from None
        if rec.get("kind") == "meta":
            meta = rec
        else:
            records.append(rec)
    if meta is None:
        raise ValueError(f"{path} has no meta line: not a minicnn stats file")
    return Stats(meta, records, path)
