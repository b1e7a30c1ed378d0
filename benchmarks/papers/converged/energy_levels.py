"""A sweep's energy savings with memory priced at each level of the energy table (issue 18, step 4).

    python benchmarks/papers/converged/energy_levels.py [SWEEP_DIR]     (default: the converged e2train sweep)

minicnn's ledger prices every byte it counts at one memory level (``dram`` by default: 162.5 pJ a byte, Horowitz
2014's 1.3 nJ per 64-bit access; ``minicnn.cost.energy``). E2-Train's energies are measured on an FPGA, whose
tensors live largely on chip. Re-pricing is exact: a run's cost.json holds its training bytes and energy, and
with one level for every byte, energy at another level = energy - bytes * (byte_pj(used) - byte_pj(other)).
Prints, per configuration (mean over its completed runs): the training energy in J at each level and its
saving against the baseline at the same level, and the compute-only saving (memory priced at zero).
Estimates all, not measurements.
"""
import glob
import json
import os
import statistics
import sys

from minicnn.cost.energy import MEMORY_LEVELS, EnergyTable

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT = os.path.normpath(os.path.join(HERE, "..", "..", "..", "docs", "measurements", "converged", "e2train"))


def run_energy(cost: dict) -> dict:
    """{level: training energy in J, ..., "compute": energy with memory at 0} of one run's cost.json."""
    table = EnergyTable(**{k: v for k, v in cost["energy_table"].items()})
    tot = cost["totals"]["total"]
    compute_pj = tot["energy_pj"] - tot["bytes"] * table.byte_pj()
    out = {lvl: (compute_pj + tot["bytes"] * EnergyTable(**{**table.to_dict(), "memory_level": lvl}).byte_pj())
           * 1e-12 for lvl in MEMORY_LEVELS}
    out["compute"] = compute_pj * 1e-12
    return out


def configurations(sweep: str) -> dict:
    """{label: [per-run energies]} of the completed runs, labelled as sweep.json's runs are (their args)."""
    with open(os.path.join(sweep, "sweep.json")) as f:
        runs = json.load(f)["runs"]
    out: dict = {}
    for r in runs:
        d = os.path.join(sweep, r["dir"])
        try:
            with open(os.path.join(d, "summary.json")) as f:
                if json.load(f).get("status") != "completed":
                    continue
            with open(os.path.join(d, "cost.json")) as f:
                cost = json.load(f)
        except (OSError, ValueError):
            continue
        a = {k: v for k, v in r["args"].items() if k not in ("seed", "data-dir")}
        label = "+".join(m for m in a.pop("method")) or "baseline"
        extra = {k: v for k, v in a.items() if k in ("epochs", "lr") and v != runs[0]["args"].get(k)}
        if extra:
            label += " (" + ", ".join(f"{k} {v}" for k, v in extra.items()) + ")"
        out.setdefault(label, []).append(run_energy(cost))
    return out


def main(argv):
    sweep = argv[0] if argv else DEFAULT
    if not os.path.isfile(os.path.join(sweep, "sweep.json")):
        print(f"energy_levels.py: {sweep} is not a sweep directory (no sweep.json)", file=sys.stderr)
        return 2
    cfgs = configurations(sweep)
    if "baseline" not in cfgs:
        print(f"energy_levels.py: no completed baseline run in {sweep}", file=sys.stderr)
        return 2
    cols = list(MEMORY_LEVELS) + ["compute"]
    base = {c: statistics.mean(r[c] for r in cfgs["baseline"]) for c in cols}
    print("Training energy J (ledger estimate) and, in brackets, the share saved against the baseline "
          "(+: less energy), memory priced at each level (compute: memory at 0)\n")
    print("| configuration | runs | " + " | ".join(cols) + " |")
    print("| --- | --- |" + " --- |" * len(cols))
    for label, rs in cfgs.items():
        cells = []
        for c in cols:
            e = statistics.mean(r[c] for r in rs)
            cells.append(f"{e:.0f} J ({1 - e / base[c]:+.0%})" if label != "baseline" else f"{e:.0f} J")
        print(f"| {label} | {len(rs)} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
