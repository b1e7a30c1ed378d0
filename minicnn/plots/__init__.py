"""Plots of one or more run directories (``minicnn plot RUN_DIR [RUN_DIR ...]``).

``plot_runs(run_dirs, out_dir=None)`` reads what each run directory holds
(``metrics.jsonl``, ``summary.json``, ``cost.json``, ``stats.jsonl``; every
file optional) and writes PNGs, skipping a figure whose data is absent:

comparison figures (all runs overlaid, one colour per run, legend
``run name [methods]``):

* ``curves.png``          train/test loss and accuracy (%) vs epoch
* ``accuracy_vs_cost.png`` test accuracy vs cumulative training energy (J)
                          and vs cumulative MACs (needs the ledger's
                          ``energy_j_cum``/``macs_cum`` columns)

one set per run (file names prefixed with the run name when several runs
are plotted):

* ``cost_by_layer.png``   per-layer stacked bars of forward, backward dL/dx,
                          backward dL/dW and update, in MACs and in J
                          (cost.json; the dense cost outlined when a method
                          saved work)
* ``param_distributions.png`` WUS Fig. 1 style (Safayenikoo & Akturk §2):
                          for a few layers, weight and bias value
                          distributions after every epoch and the signed
                          log-magnitude distributions of their gradients over
                          training (stats.jsonl)
* ``activation_grad_distributions.png`` the same for dL/dy of each layer
* ``density.png``         fraction of non-zero activations / dL/dy / dL/dW per
                          layer, and dL/dy density over training
* ``lars.png``            the LARS ratio ||W||/||ΔW|| per layer and epoch

Rendering uses the Agg renderer through ``matplotlib.figure.Figure`` (no
pyplot, no display, no global backend change).
"""
from __future__ import annotations

import os

from . import figures
from .rundata import Run, load_run

__all__ = ["plot_runs", "load_run", "Run"]

#: per-run figures: (file stem, function)
PER_RUN = (("cost_by_layer", figures.plot_cost_breakdown),
           ("param_distributions", figures.plot_param_distributions),
           ("activation_grad_distributions", figures.plot_activation_grad_distributions),
           ("density", figures.plot_density),
           ("lars", figures.plot_lars))


def _unique_names(paths: list[str]) -> list[str]:
    names, seen = [], {}
    for p in paths:
        base = os.path.basename(os.path.normpath(p)) or "run"
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return names


def plot_runs(run_dirs: list[str], out_dir: str | None = None) -> list[str]:
    """Draw the figures of the given runs; returns the PNG paths written.

    out_dir defaults to ``<first run>/plots``. Raises ValueError (one line)
    if a run directory does not exist or none holds anything to plot.
    """
    if isinstance(run_dirs, (str, os.PathLike)):
        run_dirs = [run_dirs]
    run_dirs = [os.fspath(p) for p in run_dirs]
    if not run_dirs:
        raise ValueError("plot_runs: no run directory given")
    runs = [load_run(p, name) for p, name in zip(run_dirs, _unique_names(run_dirs))]
    empty = [r.path for r in runs if not (r.metrics or r.cost or r.stats)]
    if len(empty) == len(runs):
        raise ValueError(f"nothing to plot in {', '.join(empty)} (no metrics.jsonl, cost.json or stats.jsonl)")
    out_dir = os.fspath(out_dir) if out_dir is not None else os.path.join(run_dirs[0], "plots")
    os.makedirs(out_dir, exist_ok=True)

    paths = []
    for stem, fn in (("curves", figures.plot_curves), ("accuracy_vs_cost", figures.plot_accuracy_vs_cost)):
        p = fn(runs, os.path.join(out_dir, stem + ".png"))
        if p:
            paths.append(p)
    for run in runs:
        prefix = f"{run.name}_" if len(runs) > 1 else ""
        for stem, fn in PER_RUN:
            p = fn(run, os.path.join(out_dir, prefix + stem + ".png"))
            if p:
                paths.append(p)
    return paths
