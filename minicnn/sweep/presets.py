"""``minicnn reproduce NAME``: one preset sweep per paper, sized for a 2-core laptop, then its report.

The presets are ordinary spec files in ``minicnn/sweep/presets/`` (read them
to see exactly what runs); ``reproduce`` adds ``data-dir`` and runs them like
``minicnn sweep``. A preset whose methods are not in this minicnn yet stops
with one line naming the missing method before anything runs. ``all`` runs
every preset in turn into ``OUT/<name>/``, each with its own report.

``--converged`` takes the same names from ``presets/converged/``: each paper's
headline comparison trained to the baseline's plateau (measured, issue 18:
``docs/measurements/converged/README.md``), at the paper's own settings, on
three seeds; hours on 2 cores, resumable (rerun the same command). The
sweep's grid runs seed-major (every configuration's seed 0 first), so a
sweep stopped half-way already compares every configuration on one seed.
"""
from __future__ import annotations

import os
import tomllib

from .engine import SweepError, run_sweep
from .report import write_report
from .spec import parse_spec

HERE = os.path.join(os.path.dirname(__file__), "presets")
CONVERGED = os.path.join(HERE, "converged")
PRESETS = {"wus": "wus.toml", "e2train": "e2train.toml", "gradprune": "gradprune.toml", "lars": "lars.toml"}
DATA_CANDIDATES = ("../shared/data/cifar-10-batches-py", "data/cifar-10-batches-py")


def find_data_dir(data_dir: str | None) -> str:
    """--data-dir, else $MINICNN_CIFAR10, else the first of DATA_CANDIDATES that exists (cwd-relative)."""
    if data_dir:
        if not os.path.isdir(data_dir):
            raise SweepError(f"--data-dir {data_dir} is not a directory")
        return os.path.abspath(data_dir)
    env = os.environ.get("MINICNN_CIFAR10")
    for cand in ([env] if env else []) + list(DATA_CANDIDATES):
        if os.path.isdir(cand):
            return os.path.abspath(cand)
    raise SweepError("no CIFAR-10 data found; give --data-dir DIR (see data_scripts/download_cifar.py)")


def preset_spec(name: str, data_dir: str, converged: bool = False):
    if name not in PRESETS:
        raise SweepError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}, all")
    path = os.path.join(CONVERGED if converged else HERE, PRESETS[name])
    if not os.path.isfile(path):
        raise SweepError(f"preset {name!r} has no converged version yet" if converged
                         else f"preset file {path} is missing")
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    raw["train"]["data-dir"] = data_dir
    return parse_spec(raw, path)


def reproduce(name: str, data_dir: str | None = None, out: str | None = None, workers: int | None = None,
              scheduler: str | None = None, dry_run: bool = False, progress: bool = True, echo=print,
              converged: bool = False):
    """Run one preset (or ``all``) and write its report(s). Returns (sweep doc, out dir, report paths).

    ``converged``: the preset's converged-regime version (``presets/converged/``)."""
    names = list(PRESETS) if name == "all" else [name]
    data = find_data_dir(data_dir)
    specs = [preset_spec(n, data, converged) for n in names]      # every preset validated before anything runs
    out = out or os.path.join("runs", f"reproduce-{name}" + ("-converged" if converged else ""))
    docs, reports = [], []
    for n, spec in zip(names, specs):
        d = os.path.join(out, n) if name == "all" else out
        echo(f"preset {n}: {spec.description}")
        doc = run_sweep(spec, d, workers=workers, scheduler=scheduler, dry_run=dry_run,
                        progress=progress, echo=echo)
        docs.append(doc)
        if dry_run:
            continue
        statuses = [r["status"] for r in doc["runs"]]
        if "interrupted" in statuses or "pending" in statuses:
            break
        reports += write_report(d)[:2]
    merged = {"runs": [r for doc in docs for r in doc["runs"]]}
    return merged, out, reports
