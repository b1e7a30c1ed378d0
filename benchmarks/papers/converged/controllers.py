"""What WUS's and LARS-skip's controllers (and gradprune's pruning) decided in the converged sweeps (issue 18), run by run and per seed mean.

    python benchmarks/papers/converged/controllers.py [docs/measurements/converged/wus ...]

Reads the committed runs (``metrics.jsonl`` + ``summary.json``) of each sweep directory given (default: the
``wus``, ``lars`` and ``gradprune`` sweeps) and prints, per configuration and seed: final and best test accuracy, the
controller's decisions (WUS: the first WUS epoch, the number of WUS epochs, the 5-epoch std of validation
accuracy just before the first one, Eq. 1's skipped-update fraction; LARS-skip: the epochs with a frozen conv
prefix and the frozen-conv count per epoch; gradprune: the density of non-zeros rho_nnz of the pruned
activation gradients, Ye et al.'s Tables 1-3 column), and the training time (``train_time_s``: CPU-bound training only,
no evaluation) against the same seed's baseline. The per-epoch medians of training time are given too: the runs
ran niced beside other work, and a few epochs that were slowed by it would move the totals.
"""
import glob
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runs_state import finished  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..", "..", "docs", "measurements", "converged")


def runs(sweep):
    out = []
    for d in sorted(glob.glob(os.path.join(sweep, "runs", "*"))):
        if not os.path.isfile(os.path.join(d, "summary.json")):
            continue
        if not finished(d):                        # in progress, or interrupted (runs_state.py)
            continue
        with open(os.path.join(d, "summary.json")) as f:
            s = json.load(f)
        with open(os.path.join(d, "config.json")) as f:
            c = json.load(f)
        with open(os.path.join(d, "metrics.jsonl")) as f:
            m = [json.loads(line) for line in f if line.strip()]
        out.append((c, s, m))
    return out


def label(c):
    return "+".join(c["method"]) or "baseline"


def controller_cells(c, m):
    recs = [e.get("method_records", {}) for e in m]
    meth = c["method"][0].split(":")[0] if c["method"] else "baseline"
    if meth in ("wus", "wus-lr"):
        w = [r.get(meth.replace("-lr", ""), r.get(meth, {})) for r in recs]
        kinds = [x.get("kind") for x in w]
        first = next((i + 1 for i, k in enumerate(kinds) if k == "wus"), None)
        std = w[first - 2].get("std_pp") if first and first >= 2 else None
        skipped = w[-1].get("updates_skipped_eq1")
        t_wus = [e["train_time_s"] for e, k in zip(m, kinds) if k == "wus"]
        t_normal = [e["train_time_s"] for e, k in zip(m, kinds) if k != "wus"]
        times = (f", median epoch {statistics.median(t_wus):.1f} s WUS / {statistics.median(t_normal):.1f} s normal"
                 if t_wus and t_normal else "")
        return (f"first WUS epoch {first}, {kinds.count('wus')} WUS epochs, std before it "
                f"{std:.2f} pt" if first else
                f"never fired; std per epoch: {', '.join('%.2f' % x['std_pp'] for x in w if x.get('std_pp') is not None)}") \
            + (f", updates skipped (Eq. 1) {skipped:.1%}" if skipped is not None else "") + times
    if meth == "lars-skip":
        k = [r.get("lars-skip", {}).get("frozen_convs", 0) for r in recs]
        t_frozen = [e["train_time_s"] for e, x in zip(m, k) if x]
        t_full = [e["train_time_s"] for e, x in zip(m, k) if not x]
        times = (f"; median epoch {statistics.median(t_frozen):.1f} s with a frozen prefix / "
                 f"{statistics.median(t_full):.1f} s full" if t_frozen and t_full else "")
        return f"{sum(1 for x in k if x)} epochs with a frozen prefix; frozen convs per epoch {k}" + times
    if meth == "gradprune":
        # rho_nnz per epoch: the density of non-zeros of the pruned activation gradients over every pruned
        # site, averaged over the epoch's steps (Ye et al. Tables 1-3 give one density per run)
        rho = [r.get("gradprune", {}).get("rho_nnz") for r in recs]
        rho = [x for x in rho if x is not None]
        if not rho:
            return ""
        return (f"rho_nnz mean over epochs {statistics.mean(rho):.3f} (epoch 1 {rho[0]:.3f}, "
                f"last {rho[-1]:.3f}, range {min(rho):.3f}-{max(rho):.3f})")
    return ""


def main(argv):
    sweeps = argv or [os.path.join(ROOT, name) for name in ("wus", "lars", "gradprune")]
    for sweep in sweeps:
        rs = runs(sweep)
        if not rs:
            print(f"{sweep}: no finished run\n")
            continue
        base = {c["seed"]: (s, m) for c, s, m in rs if label(c) == "baseline"}
        print(f"**{os.path.basename(os.path.normpath(sweep))}** ({len(rs)} finished runs)\n")
        print("| configuration | seed | final test % | best test % | train time s (median epoch s) | vs baseline | "
              "the controller |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        by_cfg = {}
        for c, s, m in sorted(rs, key=lambda r: (label(r[0]) != "baseline", label(r[0]), r[0]["seed"])):
            t = s["train_time_s"]
            med = statistics.median(e["train_time_s"] for e in m)
            b = base.get(c["seed"])
            vs = f"{t / b[0]['train_time_s']:.2f}x time, {100 * (s['final_test_acc'] - b[0]['final_test_acc']):+.1f} pt" \
                if b and label(c) != "baseline" else ""
            print(f"| {label(c)} | {c['seed']} | {100 * s['final_test_acc']:.1f} | {100 * s['best_test_acc']:.1f} | "
                  f"{t:.0f} ({med:.1f}) | {vs} | {controller_cells(c, m)} |")
            by_cfg.setdefault(label(c), []).append(100 * s["final_test_acc"])
        print("\nPer configuration, final test accuracy over seeds (mean ± sd):", "; ".join(
            f"{k} {statistics.mean(v):.1f} ± {statistics.stdev(v) if len(v) > 1 else 0:.1f} ({len(v)} seeds)"
            for k, v in by_cfg.items()))
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
