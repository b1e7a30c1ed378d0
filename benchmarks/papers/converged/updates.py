"""Issue 18, step 4: are SMD's, SLU's and e2train's deficits on the slice the weight updates they did not make?

    python benchmarks/papers/converged/updates.py [OUT.png] [--root docs/measurements/converged] [--model resnet8]

SMD trains on the batches it keeps, SLU and stochastic depth run (and update) a gated block on the batches its
gate opens, so each gated block receives ``updates = sum over epochs of (batches trained) * (fraction of the
gated blocks executed)`` weight updates: 2/3 of the baseline's for SMD at 4/3 of the epochs, 0.6 for SLU at
target 0.6, 0.4 for e2train (both, and PSG). On the CIFAR slice a baseline of the same lr trained for *fewer
epochs* (its lr schedule scaled to its length) also makes fewer updates. This script puts every finished resnet8
run (or ``--model``'s) of every converged sweep on one axis, updates per gated block, and asks: does a method score what a shorter
baseline with the same number of updates (and the same lr) scores?

For every configuration (method, lr, epochs) it prints the seeds, the updates per gated block, the final test
accuracy, and the baseline curve at those updates: the baselines of the same lr, one point per run length (mean
over seeds), interpolated linearly in log2(updates) between the two lengths around the configuration's updates
("outside" when no measured length is below or above it: nothing is extrapolated). The residual is each
seed's accuracy minus that curve, mean ± sd over seeds. Runs adopted into several sweeps (the same run id) count
once. The figure: test accuracy against updates per gated block, the baselines as lines (lr 0.1 and 0.03), and
each configuration of a method that makes fewer updates (SMD, SLU, stochastic depth, e2train) with its seeds as
dots and its mean as a labelled marker (the other methods make the baseline's updates; they are in the table).

What it showed (README, "The converged regime", 2026-12-08): see the table printed; the reading is written there.
Only the runs' ``summary.json`` and ``metrics.jsonl`` are read.
"""
import argparse
import math
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from paired import label  # noqa: E402

from minicnn.sweep.results import load_sweep  # noqa: E402

#: the methods that make fewer updates than the baseline of their length (the figure shows these; the table all)
FEWER_UPDATES = ("smd", "slu", "stochastic-depth", "e2train")

#: the methods whose records give the fraction of gated blocks a batch ran (and updated)
GATED = ("slu", "stochastic-depth")


def executed_updates(metrics: list) -> float:
    """Weight updates one gated block received over the run: per epoch, batches trained x fraction executed."""
    total, prev = 0.0, 0
    for rec in metrics:
        batches = rec["batches_cum"] - prev
        prev = rec["batches_cum"]
        frac = 1.0
        for name in GATED:
            r = (rec.get("method_records") or {}).get(name)
            if r and r.get("executed") is not None:
                frac = r["executed"]
        total += batches * frac
    return total


def runs(root: str, model: str = "resnet8") -> dict:
    """{(label without the lr/epochs, lr, epochs): {seed: (updates, test acc %)}} over every sweep under root."""
    seen, out = set(), {}
    for name in sorted(os.listdir(root)):
        sweep = os.path.join(root, name)
        if not os.path.isfile(os.path.join(sweep, "sweep.json")):
            continue
        for c in load_sweep(sweep)[1]:
            for rec, summary, metrics, _ in c.runs:
                args = rec["args"]
                if (rec["id"] in seen or args.get("model") != model or summary is None
                        or summary.get("status") != "completed" or not metrics):
                    continue
                seen.add(rec["id"])
                methods = args.get("method") or ["baseline"]
                methods = [methods] if isinstance(methods, str) else methods
                key = ("+".join(methods), float(args.get("lr", 0.1)), int(summary["epochs"]))
                out.setdefault(key, {})[args["seed"]] = (executed_updates(metrics),
                                                         100 * summary["final_test_acc"])
    return out


def baseline_curve(data: dict, lr: float) -> list:
    """[(updates, mean test acc %)] of the plain baselines at this lr, one point per run length, sorted."""
    pts = [(statistics.mean(u for u, _ in seeds.values()), statistics.mean(a for _, a in seeds.values()))
           for (meth, l, _), seeds in data.items() if meth == "baseline" and l == lr]
    return sorted(pts)


def on_curve(curve: list, updates: float):
    """The curve's accuracy at ``updates``, linear in log2(updates) between the measured points; None outside."""
    for (u0, a0), (u1, a1) in zip(curve, curve[1:]):
        if u0 <= updates <= u1:
            t = (math.log2(updates) - math.log2(u0)) / (math.log2(u1) - math.log2(u0)) if u1 > u0 else 0.0
            return a0 + t * (a1 - a0)
    return None


def table(data: dict) -> str:
    lines = ["| configuration | lr | epochs | seeds | updates per gated block | test acc % | baseline of the same lr "
             "at those updates | residual (per seed) |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    curves = {lr: baseline_curve(data, lr) for _, lr, _ in data}          # one curve per lr, read by every row
    for (meth, lr, epochs), seeds in sorted(data.items(), key=lambda kv: (kv[0][0] != "baseline", kv[0])):
        ups = [u for u, _ in seeds.values()]
        accs = [a for _, a in seeds.values()]
        u = statistics.mean(ups)
        acc = f"{statistics.mean(accs):.1f}" + (f" ± {statistics.stdev(accs):.1f}" if len(accs) > 1 else "")
        ref = on_curve(curves[lr], u) if meth != "baseline" else None
        if meth == "baseline":
            ref_s, res_s = "(the curve)", ""
        elif ref is None:
            ref_s, res_s = "outside the measured lengths", ""
        else:
            res = [a - ref for a in accs]
            ref_s = f"{ref:.1f}"
            res_s = f"{statistics.mean(res):+.1f}" + (f" ± {statistics.stdev(res):.1f}" if len(res) > 1 else "")
        lines.append(f"| {meth} | {lr:g} | {epochs} | {len(seeds)} | {u:.0f} | {acc} | {ref_s} | {res_s} |")
    return "\n".join(lines)


def plot(data: dict, path: str, model: str = "resnet8"):
    from matplotlib.figure import Figure
    fig = Figure(figsize=(9, 6), layout="constrained")
    ax = fig.subplots()
    for lr, color in ((0.1, "#4c72b0"), (0.03, "#8172b2")):
        curve = baseline_curve(data, lr)
        if curve:
            ax.plot([u for u, _ in curve], [a for _, a in curve], "-o", color=color, ms=4,
                    label=f"baseline, lr {lr:g} (one point per run length)")
    for (meth, lr, epochs), seeds in sorted(data.items()):
        if not any(m in meth for m in FEWER_UPDATES):      # the others make the baseline's updates: in the table
            continue
        color = "#c44e52" if "e2train" in meth else "#55a868" if lr == 0.1 else "#dd8452"
        xs, ys = [u for u, _ in seeds.values()], [a for _, a in seeds.values()]
        ax.scatter(xs, ys, s=8, color=color, alpha=0.35)
        mx, my = statistics.mean(xs), statistics.mean(ys)
        ax.scatter([mx], [my], s=36, color=color, edgecolor="black", lw=0.5, zorder=3)
        short = meth.replace("+swa", "").replace("stochastic-depth:target=", "SD ").replace("slu:target=", "SLU ")
        short = short.replace("smd:p=0.5,epochs_scale=1.333", "SMD 4/3").replace("smd:p=0.5,epochs_scale=2", "SMD 2x")
        ax.annotate(f"{short}, {epochs} ep", (mx, my), fontsize=6.5, xytext=(4, -3),
                    textcoords="offset points")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("weight updates per gated block (batches trained x fraction of gated blocks run)")
    ax.set_ylabel("final test accuracy % (1,017 images)")
    ax.set_title(f"{model} on the CIFAR-10 slice: accuracy against the updates a run made "
                 "(green: methods at lr 0.1, red: e2train at lr 0.03)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.savefig(path, dpi=120)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", nargs="?", help="write the figure here (PNG)")
    p.add_argument("--root", default="docs/measurements/converged")
    p.add_argument("--model", default="resnet8")
    args = p.parse_args(argv)
    data = runs(args.root, args.model)
    if not data:
        sys.exit(f"error: no finished {args.model} run under {args.root}")
    print(table(data))
    if args.out:
        plot(data, args.out, args.model)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
