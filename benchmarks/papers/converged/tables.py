"""The per-paper tables of the converged sweeps (issue 18), from their reports, for the README.

    python benchmarks/papers/converged/tables.py [SWEEP_DIR ...]

Reads ``SWEEP_DIR/report/report.json`` (build it first with ``minicnn report SWEEP_DIR``) of each sweep given
(default: every sweep under ``docs/measurements/converged`` that has one) and prints two Markdown tables:

* per configuration: seeds finished, final test accuracy (mean ± sd over seeds, and per seed), the training
  energy of the ledger against the baseline's (an estimate, not a measurement) and the mean training time;
* the sweep's cost so far: finished runs and their summed wall time;
* per claim of ``minicnn/sweep/claims.toml`` the report checked: what it was compared with, the paper's words,
  minicnn's figures against the noise, and the verdict.

Every figure is the report's; nothing is computed here but the per-seed list, read from the runs' summaries.
"""
import glob
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from paired import completed_acc  # noqa: E402
ROOT = os.path.normpath(os.path.join(HERE, "..", "..", "..", "docs", "measurements", "converged"))


def per_seed(sweep: str, args: dict) -> dict:
    """{seed: final test acc} of the finished runs of one configuration (sweep.json's runs with the same args)."""
    with open(os.path.join(sweep, "sweep.json")) as f:
        runs = json.load(f)["runs"]
    want = {k: v for k, v in args.items() if k != "seed"}
    out = {}
    for r in runs:
        acc = completed_acc(sweep, r) if {k: v for k, v in r["args"].items() if k != "seed"} == want else None
        if acc is not None:
            out[r["args"]["seed"]] = acc
    return out


def wall_time(rep: dict) -> tuple[int, float]:
    """(finished runs, their summed wall time in hours) from a report: what the sweep has cost so far.

    The report's per-configuration wall time (mean over its finished runs, and their count), summed; a run's wall
    time is its own process's, start to end. Runs went one or two at a time, so this is machine time, not
    calendar time.
    """
    stats = [c["stats"].get("wall_time_s") or {} for c in rep["configs"]]
    n = sum(st.get("n", 0) for st in stats)
    return n, sum(st["mean"] * st["n"] for st in stats if st.get("n")) / 3600


def table(sweep: str) -> str:
    path = os.path.join(sweep, "report", "report.json")
    with open(path) as f:
        rep = json.load(f)
    base = next((c for c in rep["configs"] if c["label"] == "baseline"), None)
    e0 = base["stats"]["energy_j"]["mean"] if base else None
    n, hours = wall_time(rep)
    lines = [f"**{os.path.basename(os.path.normpath(sweep))}** ({rep['description'].split(':')[0]}; "
             f"{n} runs finished, {hours:.1f} h of wall time summed over them)", "",
             "| configuration | seeds | final test acc % | per seed | energy J (ledger) | vs baseline | "
             "train time s (mean) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for c in rep["configs"]:
        st = c["stats"]
        if not (st.get("final_test_acc") or {}).get("n"):
            lines.append(f"| {c['label']} | 0 | | | | | |")
            continue
        acc = st["final_test_acc"]
        seeds = per_seed(sweep, c["args"])
        ps = ", ".join(f"{100 * seeds[k]:.1f}" for k in sorted(seeds))
        e = st["energy_j"]["mean"]
        vs = f"{e / e0:.2f}x" if e0 else ""
        lines.append(f"| {c['label']} | {acc['n']} | {100 * acc['mean']:.1f} ± {100 * acc['std']:.1f} | {ps} | "
                     f"{e:.0f} | {vs} | {st['train_time_s']['mean']:.0f} |")
    lines += ["", "| configuration | claim | compared with | the paper | minicnn | verdict |",
              "| --- | --- | --- | --- | --- | --- |"]
    for cl in rep["claims"]:
        checks = "; ".join(ch["why"] if ch.get("metric") == "acc_delta" else f"{ch['metric']}: {ch['why']}"
                           for ch in cl["checks"])
        ref = cl.get("baseline") or ""
        if cl.get("reference") == "equal-energy" and cl.get("energy_ratio"):
            ref += f" (equal energy, ratio {cl['energy_ratio']:.2f})"
        lines.append(f"| {cl['config']} | {cl['id']} | {ref} | {cl['claim']} ({cl['source']}) | {checks} | "
                     f"**{cl['verdict']}** |")
    return "\n".join(lines)


def main(argv):
    sweeps = argv or sorted(os.path.dirname(os.path.dirname(p))
                            for p in glob.glob(os.path.join(ROOT, "*", "report", "report.json")))
    if not sweeps:
        print("tables.py: no report.json found; run `minicnn report SWEEP_DIR` first", file=sys.stderr)
        return 2
    for s in sweeps:
        if not os.path.isfile(os.path.join(s, "report", "report.json")):
            print(f"tables.py: {s} has no report/report.json; run `minicnn report {s}` first", file=sys.stderr)
            return 2
        print(table(s))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
