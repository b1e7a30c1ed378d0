"""StatsRecorder: per-layer statistics of activations, gradients and weights.

A hook object (``minicnn.hooks.Hook``) that watches training and writes
``stats.jsonl`` into the run directory. Add it to the trainer
(``Trainer(..., stats=StatsRecorder(model, every=10))``) or to any HookList.

What is recorded
================

**Every ``every`` trained batches** (a counter of the batches that reached
``on_batch_end``; a batch dropped by another hook, e.g. SMD, is not counted, so
the next trained batch is recorded instead; the first trained batch is always
recorded), for every leaf layer (containers are skipped), while the model is
in training mode (evaluation forwards are never recorded):

* ``activation``    the layer output y (``forward_output`` hook);
* ``grad_output``   dL/dy as the layer's backward received it, i.e. after
                    methods have transformed it (pruned, quantized);
                    ``observe_backward`` hook;
* ``grad_<param>``  ``layer.grads[param]`` read in ``on_after_backward``,
                    before ``param_grad`` hooks and the optimizer (``grad_weight``,
                    ``grad_bias``; a param with no gradient, frozen or skipped
                    this step, is not recorded).

For a tensor t with ``numel`` = N values, the record holds

    mean     = (1/N) sum_i t_i
    std      = sqrt((1/N) sum_i (t_i - mean)^2)            (population std)
    mean_abs = (1/N) sum_i |t_i|
    density  = #{i : t_i != 0} / N                         (fraction non-zero)

computed on the whole tensor in float64, and (for gradients; for activations
only with ``hist_activations=True``) a *signed log-magnitude histogram*:

Bin layout (the same for every record, stored once in the meta line). With
edges e_0 < e_1 < ... < e_K (default: 57 edges 10**linspace(-12, 2, 57), i.e.
4 bins per decade from 1e-12 to 1e2, K = 56 bins)::

    hist_pos[k] = #{t_i > 0 : e_k <= t_i  < e_{k+1}}    k = 0..K-1
    hist_neg[k] = #{t_i < 0 : e_k <= |t_i| < e_{k+1}}
    zeros       = #{t_i == 0}
    nan         = #{t_i is NaN}

except that magnitudes below e_0 fall into bin 0 and magnitudes >= e_K
(including inf) into bin K-1, so that
``sum(hist_pos) + sum(hist_neg) + zeros + nan == n_hist``. Tensors with more
than ``max_hist`` values (default 65,536) are histogrammed on a uniform random
sample of ``max_hist`` values drawn with replacement (``n_hist`` says how many
were used; the moments above always use the whole tensor).

**Every epoch**: ``on_epoch_begin`` copies every parameter of every leaf
(w_begin); ``on_epoch_end`` computes, per parameter (Miyauchi et al., "Layer
Skip Learning using LARS variables", §III eq. 1-3, where Δw is "the difference
between the first and last weight in an epoch")::

    norm        = ||w_end||_2                       (eq. 2)
    update_norm = ||w_end - w_begin||_2             (eq. 3)
    lars        = norm / update_norm                (eq. 1; null when update_norm == 0)

plus the value distribution of the parameter (weights *and* biases, the
distributions of Safayenikoo & Akturk's WUS Fig. 1): a histogram of
``value_bins`` (64) equal-width bins between the parameter's min and max at
that epoch end (the range moves with the parameter; ``minicnn.plots`` re-bins
all epochs onto a common grid by interpolating the cumulative counts). The
distribution at the very start of training is recorded once, as an ``init``
record, at the first ``on_epoch_begin``.

Storage: ``stats.jsonl``
========================

One JSON object per line; non-finite numbers are written as ``null``.

First line, once::

    {"kind": "meta", "version": 1, "every": 10, "max_hist": 65536, "value_bins": 64,
     "bin_edges": [1e-12, ..., 100.0],
     "layers": [{"name": "conv1", "type": "Conv2d", "params": {"weight": [16, 3, 3, 3]}}, ...]}

``layers`` lists the leaf layers in forward order. Then, in time order::

    {"kind": "batch", "epoch": 0, "batch": 20, "step": 20, "layer": "conv1",
     "tensor": "activation" | "grad_output" | "grad_weight" | "grad_bias" | "grad_<param>",
     "numel": N, "mean": .., "std": .., "mean_abs": .., "density": ..,
     # gradients only (and activations with hist_activations=True):
     "n_hist": n, "hist_pos": [K ints], "hist_neg": [K ints], "zeros": int, "nan": int}

    {"kind": "epoch", "epoch": 0, "step": 32, "layer": "conv1", "param": "weight",
     "numel": N, "norm": .., "update_norm": .., "lars": .. | null,
     "trained": true,                       # requires_grad at epoch end
     "mean": .., "std": .., "value_lo": .., "value_hi": .., "value_hist": [value_bins ints]}

    {"kind": "init", "epoch": 0, "layer": .., "param": .., "numel": .., "norm": ..,
     "mean": .., "std": .., "value_lo": .., "value_hi": .., "value_hist": [...]}

``epoch`` is 0-based (metrics.jsonl counts epochs from 1), ``step`` is the
trainer's ``state.global_step``.

Writing: call ``attach(run_dir)`` before training (the Trainer does): it
writes the meta line (replacing an old file atomically), and the recorder then appends
its buffered records at every ``on_epoch_end`` and at ``on_train_end``, so a
crash loses at most one epoch. ``save(run_dir)`` flushes what is pending; to a
directory it is not attached to, it writes a complete file there (possible
only for the records it still holds: without ``attach`` it holds them all).
Read back with :func:`minicnn.stats.load_stats`.

Cost: when no record is due, each layer hook is one attribute test (a few
microseconds per batch for the whole model). A due batch reads each layer's
output and gradients once (a numba one-pass kernel, ``_kernels.py``) and
histograms at most ``max_hist`` sampled values per gradient tensor. Its
share of the training time at ``every=10`` and ``every=1`` is measured by
``benchmarks/bench_stats_overhead.py`` (figures: ``docs/measurements/timings.md``).
"""
from __future__ import annotations

import json
import math
import os

import numpy as np

from ..fileio import atomic_write_text
from ..hooks import Hook
from ._kernels import shifted_sums, signed_hist

STATS_FILE = "stats.jsonl"
_NO_INDEX = np.zeros(0, dtype=np.int64)
FORMAT_VERSION = 1


def default_bin_edges() -> np.ndarray:
    """57 log-spaced magnitude edges 1e-12 .. 1e2 (4 bins per decade)."""
    return 10.0 ** np.linspace(-12.0, 2.0, 57)


def _num(v):
    """A JSON-safe float: None for NaN/inf."""
    v = float(v)
    return v if math.isfinite(v) else None


def moments(t: np.ndarray) -> dict:
    """numel, mean, std, mean_abs, density of a tensor (one pass, float64 accumulators).

    See ``minicnn.stats._kernels`` for the shifted one-pass formulas.
    """
    a = np.ascontiguousarray(t).reshape(-1)
    n = a.size
    if n == 0:
        return {"numel": 0, "mean": None, "std": None, "mean_abs": None, "density": None}
    k, s1, s2, sa, nz = shifted_sums(a)
    m1 = s1 / n
    var = max(s2 / n - m1 * m1, 0.0) if math.isfinite(s2) else math.nan
    return {"numel": int(n), "mean": _num(k + m1), "std": _num(math.sqrt(var)), "mean_abs": _num(sa / n),
            "density": int(nz) / n}


def signed_log_hist(t: np.ndarray, edges: np.ndarray, max_hist: int | None = None,
                    rng: np.random.Generator | None = None) -> dict:
    """The signed log-magnitude histogram of the module docstring.

    Returns {"n_hist", "hist_pos", "hist_neg", "zeros", "nan"}; the counts add
    up to ``n_hist`` (the tensor size, or ``max_hist`` if it was subsampled).
    """
    a = np.ascontiguousarray(t).reshape(-1)
    edges = np.asarray(edges, dtype=np.float64)
    if max_hist is not None and a.size > max_hist:
        rng = rng if rng is not None else np.random.default_rng(0)
        idx = rng.integers(0, a.size, size=max_hist)
    else:
        idx = _NO_INDEX
    counts, zeros, nan = signed_hist(a, idx, edges)
    k = len(edges) - 1
    return {"n_hist": int(idx.size or a.size), "hist_pos": counts[:k].tolist(), "hist_neg": counts[k:].tolist(),
            "zeros": int(zeros), "nan": int(nan)}


def value_hist(w: np.ndarray, bins: int) -> dict:
    """Equal-width histogram of the values of ``w`` between its min and max."""
    a = w.reshape(-1)
    finite = a[np.isfinite(a)] if not np.all(np.isfinite(a)) else a
    if finite.size == 0:
        return {"value_lo": None, "value_hi": None, "value_hist": [0] * bins}
    lo, hi = float(finite.min()), float(finite.max())
    if hi == lo:
        counts = np.zeros(bins, dtype=np.int64)
        counts[bins // 2] = finite.size
        # a constant tensor (a zero bias at init): a degenerate range
        return {"value_lo": lo, "value_hi": hi, "value_hist": counts.tolist()}
    counts, _ = np.histogram(finite, bins=bins, range=(lo, hi))
    return {"value_lo": lo, "value_hi": hi, "value_hist": counts.tolist()}


class StatsRecorder(Hook):
    """Record per-layer statistics every ``every`` trained batches and every epoch.

    model:        the model (a Container: its ``leaves()`` are watched)
    every:        record every ``every``-th trained batch (>= 1)
    bins:         magnitude bin edges for the gradient histograms (positive,
                  increasing); None = ``default_bin_edges()``
    max_hist:     histogram at most this many (randomly sampled) values per tensor
    value_bins:   bins of the per-epoch parameter value histogram
    hist_activations: also histogram activations (off by default: they are
                  mostly non-negative after ReLU and the file grows)
    seed:         seed of the subsampling generator
    """

    def __init__(self, model, every: int = 10, bins=None, max_hist: int = 65536, value_bins: int = 64,
                 hist_activations: bool = False, seed: int = 0):
        if not isinstance(every, (int, np.integer)) or every < 1:
            raise ValueError(f"StatsRecorder: every must be a positive integer, got {every!r}")
        edges = default_bin_edges() if bins is None else np.asarray(bins, dtype=np.float64)
        if edges.ndim != 1 or edges.size < 2 or np.any(edges <= 0) or np.any(np.diff(edges) <= 0):
            raise ValueError("StatsRecorder: bins must be at least 2 positive, strictly increasing edges")
        if max_hist < 1 or value_bins < 1:
            raise ValueError("StatsRecorder: max_hist and value_bins must be positive")
        self.model = model
        self.every = int(every)
        self.edges = edges
        self.max_hist = int(max_hist)
        self.value_bins = int(value_bins)
        self.hist_activations = bool(hist_activations)
        self.rng = np.random.default_rng(seed)
        self.records: list[dict] = []      # not yet written to the attached file
        self.run_dir: str | None = None    # set by attach()
        self._trained = 0                  # trained batches so far (drives `every`)
        self._due = False                  # True between begin and end of a recorded batch
        self._where = {}                   # epoch/batch/step of the current batch
        self._snap: dict | None = None     # (layer, param) -> w_begin
        self._epoch = 0
        self._init_done = False

    # -- helpers -------------------------------------------------------------------
    def leaves(self):
        m = self.model
        return m.leaves() if hasattr(m, "leaves") else [m]

    def meta(self) -> dict:
        return {"kind": "meta", "version": FORMAT_VERSION, "every": self.every, "max_hist": self.max_hist,
                "value_bins": self.value_bins, "bin_edges": self.edges.tolist(),
                "layers": [{"name": l.name, "type": type(l).__name__,
                            "params": {k: list(v.shape) for k, v in l.params.items()}}
                           for l in self.leaves()]}

    def _batch_record(self, layer, tensor: str, t: np.ndarray, hist: bool) -> None:
        rec = {"kind": "batch", **self._where, "layer": layer.name, "tensor": tensor}
        rec.update(moments(t))
        if hist:
            rec.update(signed_log_hist(t, self.edges, self.max_hist, self.rng))
        self.records.append(rec)

    # -- trainer-level hooks ------------------------------------------------------------
    def on_epoch_begin(self, state):
        self._epoch = int(getattr(state, "epoch", self._epoch))
        self._snap = {}
        for layer in self.leaves():
            for name, w in layer.params.items():
                self._snap[(layer.name, name)] = w.copy()
                if not self._init_done:
                    rec = {"kind": "init", "epoch": self._epoch, "layer": layer.name, "param": name,
                           "numel": int(w.size), "norm": _num(np.linalg.norm(w.ravel().astype(np.float64))),
                           "mean": _num(w.mean(dtype=np.float64)), "std": _num(w.std(dtype=np.float64))}
                    rec.update(value_hist(w, self.value_bins))
                    self.records.append(rec)
        self._init_done = True

    def on_batch_begin(self, state):
        self._due = self._trained % self.every == 0 and bool(getattr(self.model, "training", True))
        if self._due:
            self._where = {"epoch": int(getattr(state, "epoch", self._epoch)),
                           "batch": int(getattr(state, "batch", 0)),
                           "step": int(getattr(state, "global_step", self._trained))}
        return True

    def on_after_backward(self, state):
        if not self._due:
            return
        for layer in self.leaves():
            for name, g in layer.grads.items():
                if g is not None:
                    self._batch_record(layer, "grad_" + name, g, hist=True)

    def on_batch_end(self, state):
        self._trained += 1
        self._due = False

    def on_epoch_end(self, state):
        self._due = False
        if self._snap is not None:
            epoch = int(getattr(state, "epoch", self._epoch))
            step = int(getattr(state, "global_step", self._trained))
            for layer in self.leaves():
                for name, w in layer.params.items():
                    w0 = self._snap.get((layer.name, name))
                    w64 = w.ravel().astype(np.float64)
                    norm = float(np.linalg.norm(w64))
                    upd = float(np.linalg.norm(w64 - w0.ravel())) if w0 is not None else None
                    lars = None if not upd else norm / upd  # eq. 1; undefined when nothing moved
                    rec = {"kind": "epoch", "epoch": epoch, "step": step, "layer": layer.name, "param": name,
                           "numel": int(w.size), "norm": _num(norm),
                           "update_norm": None if upd is None else _num(upd),
                           "lars": None if lars is None else _num(lars),
                           "trained": bool(layer.requires_grad.get(name, True)),
                           "mean": _num(w64.mean()), "std": _num(w64.std())}
                    rec.update(value_hist(w, self.value_bins))
                    self.records.append(rec)
            self._snap = None
        self.flush()

    def on_train_end(self, state):
        self.flush()

    # -- layer-level hooks ------------------------------------------------------------------
    def forward_output(self, layer, x, y):
        if self._due and layer.training and not layer.is_container:
            self._batch_record(layer, "activation", y, hist=self.hist_activations)
        return y

    def observe_backward(self, layer, dy, dx):
        if self._due and dy is not None and not layer.is_container:
            self._batch_record(layer, "grad_output", dy, hist=True)

    # -- storage ------------------------------------------------------------------------------
    def attach(self, run_dir: str, resume: bool = False) -> None:
        """Write the meta line to ``run_dir/stats.jsonl`` and append records there from now on.

        ``resume=True`` (after :meth:`load_state_dict`): keep the file as it was
        when the checkpoint was written, cutting off what a killed run wrote after it.
        """
        os.makedirs(run_dir, exist_ok=True)
        path = os.path.join(run_dir, STATS_FILE)
        if resume:
            with open(path, "r+b") as f:
                f.truncate(self._file_bytes)
        else:                              # a new file whole or not at all (temp file, fsync, rename)
            atomic_write_text(path, json.dumps(self.meta()) + "\n")
        self.run_dir = run_dir
        self.flush()

    # -- resuming ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Position in training and in stats.jsonl (called right after an epoch's flush)."""
        self.flush()
        size = os.path.getsize(os.path.join(self.run_dir, STATS_FILE)) if self.run_dir else 0
        return {"trained": self._trained, "epoch": self._epoch, "init_done": self._init_done,
                "rng": self.rng.bit_generator.state, "file_bytes": size}

    def load_state_dict(self, d: dict) -> None:
        self._trained, self._epoch = int(d["trained"]), int(d["epoch"])
        self._init_done = bool(d["init_done"])
        self.rng.bit_generator.state = d["rng"]
        self._file_bytes = int(d["file_bytes"])
        self.records, self._snap, self._due = [], None, False

    def flush(self) -> None:
        """Append the pending records to the attached file (no-op when not attached)."""
        if self.run_dir is None or not self.records:
            return
        with open(os.path.join(self.run_dir, STATS_FILE), "a") as f:
            f.write("".join(json.dumps(r) + "\n" for r in self.records))
        self.records = []

    def save(self, run_dir: str) -> str:
        """Flush to ``run_dir/stats.jsonl`` (see the module docstring); returns its path."""
        path = os.path.join(run_dir, STATS_FILE)
        if self.run_dir is not None and os.path.abspath(run_dir) == os.path.abspath(self.run_dir):
            self.flush()
            return path
        os.makedirs(run_dir, exist_ok=True)
        atomic_write_text(path, json.dumps(self.meta()) + "\n" + "".join(json.dumps(r) + "\n" for r in self.records))
        return path
