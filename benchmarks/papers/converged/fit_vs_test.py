"""Issue 18, step 4: is a method's accuracy deficit a worse end point, or a run that has not fitted its data yet?

    python benchmarks/papers/converged/fit_vs_test.py OUT.png SWEEP_DIR[:LABEL] ...

For every finished run of the sweeps given: the training accuracy of its last epoch (``paired.train_accs``: on
augmented images, with the method acting, on the batches SMD kept) against its final test accuracy, one marker
per run, one colour per sweep, each configuration's seed mean labelled. Prints the same as a Markdown table
(configuration, sweep, seeds, last-epoch training accuracy, final test accuracy, their gap).

What it shows on the CIFAR slice (README, "E2-Train at 128 epochs"): the runs far from fitting their training
images (e2train at 64 and 128 epochs, SLU 0.6 and stochastic depth 0.76 at 64) score about their training
accuracy: they are under-trained, not at a worse end point. The baseline fits 80% at 64 epochs and 93% at 128.
"""
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from paired import configs, train_accs  # noqa: E402


def points(sweep: str) -> dict:
    """{configuration label: [(seed, last-epoch training acc %, final test acc %), ...]} of the finished runs."""
    test, train = configs(sweep), train_accs(sweep)
    out = {}
    for name, accs in test.items():
        rows = [(s, train[name][s], accs[s]) for s in sorted(accs) if s in train.get(name, {})]
        if rows:
            out[name] = rows
    return out


def table(sweeps: list) -> str:
    lines = ["| configuration | sweep | seeds | last epoch's training acc % | final test acc % | training minus test |",
             "| --- | --- | --- | --- | --- | --- |"]
    for sweep, tag in sweeps:
        for name, rows in points(sweep).items():
            tr = statistics.mean(r[1] for r in rows)
            te = statistics.mean(r[2] for r in rows)
            lines.append(f"| {name} | {tag} | {len(rows)} | {tr:.1f} | {te:.1f} | {tr - te:+.1f} |")
    return "\n".join(lines)


def plot(sweeps: list, path: str):
    """One panel per sweep: each run a small dot, each configuration's seed mean a labelled marker."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(6 * len(sweeps), 6), layout="constrained")
    axes = fig.subplots(1, len(sweeps), sharey=True, squeeze=False)[0]
    pts = [points(sweep) for sweep, _ in sweeps]
    lo = 5 * int(min(v for p in pts for rows in p.values() for r in rows for v in r[1:]) // 5)
    for ax, (sweep, tag), p in zip(axes, sweeps, pts):
        for name, rows in p.items():
            xs, ys = [r[1] for r in rows], [r[2] for r in rows]
            color = "#c44e52" if "e2train" in name else "#4c72b0" if name.startswith("baseline") else "#55a868"
            ax.scatter(xs, ys, s=10, color=color, alpha=0.35)
            mx, my = statistics.mean(xs), statistics.mean(ys)
            ax.scatter([mx], [my], s=40, color=color, edgecolor="black", lw=0.5, zorder=3)
            ax.annotate(name, (mx, my), fontsize=6.5, xytext=(5, -2), textcoords="offset points")
        ax.plot([lo, 100], [lo, 100], color="#888888", lw=0.8, ls="--")
        ax.text(lo + 1, lo + 2.5, "test = training accuracy", color="#888888", fontsize=7, rotation=38)
        ax.set(xlabel="training accuracy of the last epoch % (augmented, method acting)", xlim=(lo, 100),
               title=tag)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("final test accuracy %")
    fig.suptitle("resnet8 on the CIFAR-10 slice: how far each run fitted its training images, and its test score "
                 "(blue: baselines, green: methods, red: e2train)", fontsize=10)
    fig.savefig(path, dpi=110)


def main(argv):
    if len(argv) < 2 or not argv[0].endswith(".png"):
        print("usage: fit_vs_test.py OUT.png SWEEP_DIR[:LABEL] ...", file=sys.stderr)
        return 2
    sweeps = []
    for arg in argv[1:]:
        sweep, _, tag = arg.partition(":")
        if not os.path.isfile(os.path.join(sweep, "sweep.json")):
            print(f"fit_vs_test.py: {sweep} holds no sweep.json", file=sys.stderr)
            return 2
        sweeps.append((sweep, tag or os.path.basename(os.path.normpath(sweep))))
    print(table(sweeps))
    plot(sweeps, argv[0])
    print(f"\n{argv[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
