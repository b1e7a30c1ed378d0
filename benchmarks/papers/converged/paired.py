"""Paired differences between the configurations of one converged sweep, seed by seed (issue 18).

    python benchmarks/papers/converged/paired.py SWEEP_DIR [A:B ...]

A sweep's runs of one seed share their initialization and data order, so a method's final test accuracy minus its
reference's *of the same seed* has less noise than the difference of the two means. For every configuration
this prints the seeds finished, the final test accuracy (mean ± sample sd over seeds, and per seed) and the paired
difference against the sweep's baseline (``method = ["baseline"]`` at the spec's own arguments), and the training
accuracy of the runs' last epoch (:func:`train_accs`: how far each is from fitting its training images); then, for each
``A:B`` given, the paired difference A - B (configurations named by their labels in the first table, e.g.
``slu-target0.8:stochastic-depth-target0.88`` or ``psg+swa_lr0.03:baseline_lr0.03``).

A configuration's label is its run id without the seed and the hash (``seed-0__case-slu-target0.8-6e5d4e6e`` ->
``slu-target0.8``); only finished runs (summary status "completed") count, so a sweep half-way is read as far as
it has got. Nothing is computed here that the runs' ``summary.json`` do not hold.
"""
import json
import os
import re
import statistics
import sys

from minicnn.sweep.results import load_sweep


def label(run_id: str) -> str:
    """``seed-0__case-slu-target0.8-6e5d4e6e`` -> ``slu-target0.8`` (the axes other than the seed, no hash)."""
    parts = [p for p in run_id.rsplit("-", 1)[0].split("__") if not re.fullmatch(r"seed-\d+", p)]
    return "__".join(re.sub(r"^(case|method)-", "", p) for p in parts)


def completed_acc(sweep: str, run: dict):
    """The final test accuracy (a fraction) of one of sweep.json's runs, or None if it has not completed."""
    try:
        with open(os.path.join(sweep, run["dir"], "summary.json")) as f:
            s = json.load(f)
    except (OSError, ValueError):
        return None
    return s["final_test_acc"] if s.get("status") == "completed" else None


def _runs(sweep: str):
    """(label, seed, summary of a completed run or None, metrics) of every run, in sweep.json's order of
    configurations (``minicnn.sweep.results.load_sweep`` reads the files, once)."""
    for c in load_sweep(sweep)[1]:
        for rec, summary, metrics, _ in c.runs:
            done = summary if summary is not None and summary.get("status") == "completed" else None
            yield label(rec["id"]), rec["args"]["seed"], done, metrics


def configs(sweep: str) -> dict:
    """{label: {seed: final test acc %}} of the sweep's finished runs, in sweep.json's order."""
    out = {}
    for name, seed, summary, _ in _runs(sweep):
        accs = out.setdefault(name, {})
        if summary is not None:
            accs[seed] = 100 * summary["final_test_acc"]
    return out


def train_accs(sweep: str) -> dict:
    """{label: {seed: training accuracy % of the last epoch}} of the finished runs.

    The running accuracy over the last epoch's training batches, as the run recorded it (metrics.jsonl
    ``train_acc``): on augmented images, with the method acting (SLU's skipped blocks, PSG's fixed-point
    forward), on the batches SMD kept. Not a clean evaluation of the training set, but it tells a run that
    has fitted its training images from one that is still far from it.
    """
    out = {}
    for name, seed, summary, metrics in _runs(sweep):
        accs = out.setdefault(name, {})
        if summary is not None and metrics and metrics[-1].get("train_acc") is not None:
            accs[seed] = 100 * metrics[-1]["train_acc"]
    return out


def mean_sd(xs) -> str:
    if not xs:
        return ""
    return f"{statistics.mean(xs):.1f} ± {statistics.stdev(xs):.1f}" if len(xs) > 1 else f"{xs[0]:.1f}"


def paired(a: dict, b: dict) -> list:
    """A - B per seed that both have, in seed order."""
    return [a[s] - b[s] for s in sorted(set(a) & set(b))]


def table(sweep: str, pairs=()) -> str:
    cfg, train = configs(sweep), train_accs(sweep)
    base = cfg.get("baseline", {})
    lines = ["| configuration | seeds | final test acc % | per seed | paired vs baseline (per seed; mean ± sd) "
             "| last epoch's training acc % |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, accs in cfg.items():
        xs = [accs[s] for s in sorted(accs)]
        d = paired(accs, base) if name != "baseline" else []
        dtxt = f"{', '.join(f'{v:+.1f}' for v in d)} ({mean_sd(d)})" if d else ""
        tr = list(train.get(name, {}).values())
        lines.append(f"| {name} | {len(xs)} | {mean_sd(xs)} | {', '.join(f'{v:.1f}' for v in xs)} | {dtxt} "
                     f"| {mean_sd(tr)} |")
    for p in pairs:
        a, b = p.split(":")
        if a not in cfg or b not in cfg:
            raise SystemExit(f"paired.py: no configuration {a if a not in cfg else b!r} in {sweep} "
                             f"(labels: {', '.join(cfg)})")
        d = paired(cfg[a], cfg[b])
        lines.append(f"\n{a} - {b}: {', '.join(f'{v:+.1f}' for v in d)} (mean {mean_sd(d)}, {len(d)} seeds)")
    return "\n".join(lines)


def main(argv):
    if not argv or not os.path.isfile(os.path.join(argv[0], "sweep.json")):
        print("usage: paired.py SWEEP_DIR [A:B ...]  (SWEEP_DIR holds a sweep.json)", file=sys.stderr)
        return 2
    print(table(argv[0], argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
