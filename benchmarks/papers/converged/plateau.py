"""Issue 18, step 1: read the baseline plateau sweeps and say where each model stops gaining.

Two kinds of sweep (both in docs/measurements/converged/, specs beside this file):

* run lengths (``plateau_<model>_e<E>``): the schedule scales with the run (x0.1 at 50% and 75%, E2-Train's
  shape), so each length is its own run. The plateau is the shortest length E whose doubling gains under
  0.5 point of final test accuracy (mean over seeds).
* one long run (``plateau_<model>``): the decay is at a fixed epoch (the WUS paper's shape), so a run of E
  epochs is the first E epochs of the long one (same seed, same bits). The plateau is the first epoch after
  which the seed-mean test accuracy (3-epoch moving average) never rises 0.5 point above its value there.

    python benchmarks/papers/converged/plateau.py                    # markdown tables on stdout
    python benchmarks/papers/converged/plateau.py --plot docs/converged_plateau.png   # and the figure
"""
from __future__ import annotations

import glob
import json
import os
import re
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
OUT = os.path.join(ROOT, "docs", "measurements", "converged")
GAIN = 0.005          # "gains under 0.5 point"


def runs(sweep: str) -> list:
    """(seed, metrics list, summary) of every completed run of a sweep directory."""
    out = []
    for d in sorted(glob.glob(os.path.join(OUT, sweep, "runs", "*"))):
        try:
            with open(os.path.join(d, "summary.json")) as f:
                summary = json.load(f)
            with open(os.path.join(d, "config.json")) as f:
                seed = json.load(f).get("seed", 0)
            with open(os.path.join(d, "metrics.jsonl")) as f:
                metrics = [json.loads(ln) for ln in f if ln.strip()]
        except (OSError, ValueError):
            continue
        if summary.get("status") == "completed":
            out.append((seed, metrics, summary))
    return out


def pts(x):
    return f"{100 * x:.1f}"


def lengths(model: str) -> dict:
    """{run length: runs()} of the run-length sweeps ``plateau_<model>_e<E>`` that have a completed run."""
    out = {}
    for path in glob.glob(os.path.join(OUT, f"plateau_{model}_e*")):
        rs = runs(os.path.basename(path))
        if rs:
            out[int(re.search(r"_e(\d+)$", path).group(1))] = rs
    return out


def lengths_table(model: str) -> str:
    rows = []
    finals = {e: ([s["final_test_acc"] for _, _, s in rs], [s["wall_time_s"] for _, _, s in rs])
              for e, rs in lengths(model).items()}
    lines = [f"**{model}**, x0.1 at 50% and 75% of the run:", "",
             "| epochs | seeds | final test acc % (mean ± sd) | per seed | gain over half the length | "
             "wall time per run |", "| --- | --- | --- | --- | --- | --- |"]
    plateau = None
    for e in sorted(finals):
        accs, walls = finals[e]
        m = float(np.mean(accs))
        sd = float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0
        half = finals.get(e // 2)
        gain = "" if half is None else f"{100 * (m - float(np.mean(half[0]))):+.1f} pt"
        if half is not None and m - float(np.mean(half[0])) < GAIN and plateau is None:
            plateau = e // 2
        rows.append(f"| {e} | {len(accs)} | {pts(m)} ± {pts(sd)} | {', '.join(pts(a) for a in accs)} | {gain} | "
                    f"{np.mean(walls) / 60:.1f} min |")
    verdict = (f"Plateau: {plateau} epochs (doubling it gains under 0.5 point)." if plateau else
               "Plateau: not reached within the lengths run (every doubling gained 0.5 point or more)."
               + projection(finals))
    return "\n".join(lines + rows + ["", verdict])


def projection(finals: dict) -> str:
    """Where the plateau would be if each doubling kept gaining the same fraction of the previous doubling's gain
    (the ratio of the last two measured gains): a projection, printed as one, never a measurement."""
    means = {e: float(np.mean(a)) for e, (a, _) in finals.items()}
    gains = [(e, means[e] - means[e // 2]) for e in sorted(means) if e // 2 in means]
    if len(gains) < 2 or not 0 < gains[-1][1] < gains[-2][1]:
        return ""
    r = gains[-1][1] / gains[-2][1]
    e, g = gains[-1]
    while g >= GAIN:
        e, g = 2 * e, g * r
    return (f" Projection (not measured): if each doubling keeps gaining {r:.2f}x the previous one's gain (the "
            f"last two measured), the doubling from {e // 2} to {e} epochs is the first to gain under 0.5 point "
            f"({100 * g:+.1f}), so the plateau would be near {e // 2} epochs.")


def curve_table(model: str) -> str:
    rs = runs(f"plateau_{model}")
    if not rs:
        return f"**{model}**: no completed run yet."
    n = min(len(m) for _, m, _ in rs)
    acc = np.array([[r["test_acc"] for r in m[:n]] for _, m, _ in rs])      # seeds x epochs
    mean = acc.mean(axis=0)
    smooth = np.convolve(mean, np.ones(3) / 3, mode="valid")               # epoch e+1 is the mean of e..e+2
    plateau = next((e for e in range(len(smooth)) if smooth[e:].max() - smooth[e] < GAIN), None)
    lines = [f"**{model}**, one run of {n} epochs per seed ({len(rs)} seeds), x0.1 at a fixed epoch:", "",
             "| epoch | " + " | ".join(str(e) for e in range(5, n + 1, 5)) + " |",
             "| --- |" + " --- |" * len(range(5, n + 1, 5)),
             "| test acc % (seed mean) | " + " | ".join(pts(mean[e - 1]) for e in range(5, n + 1, 5)) + " |"]
    verdict = ("Plateau: epoch %d (the 3-epoch average never gains 0.5 point after it; at it %s%%, best after %s%%)."
               % (plateau + 2, pts(smooth[plateau]), pts(smooth[plateau:].max())) if plateau is not None
               else "Plateau: not reached.")
    return "\n".join(lines + ["", verdict])


def plot(models: list, path: str) -> None:
    """Left: final test accuracy against run length (every seed, and the mean with its sd), one line per model.
    Right: the seed-mean test accuracy per epoch of each length of the first model, on the same log axis, so
    that each longer schedule is seen overtaking the shorter ones after its decays."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.6))
    for model, colour in zip(models, ("C0", "C3", "C2")):
        runs_by_len = lengths(model)
        es = sorted(runs_by_len)
        finals = [[100 * summary["final_test_acc"] for _, _, summary in runs_by_len[e]] for e in es]
        for e, f in zip(es, finals):
            ax1.scatter([e] * len(f), f, s=12, color=colour, alpha=0.5)
        mean = [np.mean(f) for f in finals]
        sd = [np.std(f, ddof=1) if len(f) > 1 else 0.0 for f in finals]
        lo, hi = min(len(f) for f in finals), max(len(f) for f in finals)
        ax1.errorbar(es, mean, yerr=sd, color=colour, marker="o", capsize=3,
                     label=f"{model} (mean ± sd of {lo if lo == hi else f'{lo}-{hi}'} seeds a length)")
    ax1.set_xscale("log", base=2)
    ax1.set_xlabel("run length, epochs (lr x0.1 at 50% and 75% of it)")
    ax1.set_ylabel("final test accuracy, %")
    ax1.set_title("Baseline on the CIFAR-10 slice: is there a plateau?")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    runs_by_len = lengths(models[0])
    cmap = plt.get_cmap("viridis")
    for i, e in enumerate(sorted(runs_by_len)):
        n = min(len(m) for _, m, _ in runs_by_len[e])
        acc = 100 * np.mean([[r["test_acc"] for r in m[:n]] for _, m, _ in runs_by_len[e]], axis=0)
        ax2.plot(np.arange(1, n + 1), acc, color=cmap(i / max(1, len(runs_by_len) - 1)), lw=1,
                 label=f"{e} epochs")
    ax2.set_xscale("log", base=2)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("test accuracy, % (seed mean)")
    ax2.set_title(f"{models[0]}: every length's test accuracy per epoch")
    ax2.set_ylim(30, None)
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"figure written to {path}")


def main(argv):
    models_len = sorted({re.sub(r"_e\d+$", "", os.path.basename(p))[len("plateau_"):]
                         for p in glob.glob(os.path.join(OUT, "plateau_*_e*"))})
    models_curve = sorted(os.path.basename(p)[len("plateau_"):] for p in glob.glob(os.path.join(OUT, "plateau_*"))
                          if not re.search(r"_e\d+$", p))
    for m in models_len:
        print(lengths_table(m), end="\n\n")
    for m in models_curve:
        print(curve_table(m), end="\n\n")
    if argv[:1] == ["--plot"] and len(argv) == 2:
        plot(sorted(models_len, key=lambda m: m != "resnet8"), argv[1])
    elif argv:
        print("usage: plateau.py [--plot FILE.png]", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
