"""``minicnn report SWEEP_DIR``: one table and a few plots per sweep, beside the papers' claims.

The numbers come from :mod:`.results` (configurations, seed statistics,
method records, the claims and their verdicts); this module draws and
writes them:

* plots: accuracy against energy and against wall time (error bars: the seeds'
  standard deviation; the Pareto front of high accuracy at low cost marked),
  test accuracy per epoch per configuration (mean over seeds), and per-layer
  training cost by phase of each method beside its baseline (first seed);
* ``report.md`` with the PNGs beside it, ``report.html`` (the same, images
  inlined, no script, opens from a file), ``report.json`` (every number);
  the three text files are written atomically (``minicnn.fileio``).
"""
from __future__ import annotations

import base64
import html
import json
import os

import numpy as np

from ..fileio import atomic_write_text
from .engine import SweepError, _read_json
from .results import TRAIN_PHASES, baseline_of, build_report, pareto_front
from .results import Config, check_claim, load_claims, load_sweep, mean_std  # noqa: F401  (imported from here before)


# -- plots ------------------------------------------------------------------------------------

def _colors(n):
    """n distinct colours: tab10 up to 10 configurations, tab20 up to 20 (a sweep's 12+ would repeat tab10's)."""
    import matplotlib
    k = 10 if n <= 10 else 20
    cmap = matplotlib.colormaps[f"tab{k}"]
    return [cmap(i % k) for i in range(n)]


def plot_tradeoff(configs, cost_key, xlabel, path):
    from matplotlib.figure import Figure
    pts = [(c, c.stats[cost_key], c.stats["final_test_acc"]) for c in configs
           if c.stats[cost_key]["mean"] is not None and c.stats["final_test_acc"]["mean"] is not None]
    if not pts:
        return None
    fig = Figure(figsize=(7 if len(pts) <= 6 else 10, 4.6), layout="constrained")
    ax = fig.subplots()
    front = set(pareto_front([(x["mean"], a["mean"]) for _, x, a in pts]))
    for i, ((c, x, a), col) in enumerate(zip(pts, _colors(len(pts)))):
        ax.errorbar(x["mean"], 100 * a["mean"], xerr=x["std"], yerr=100 * a["std"], fmt="o", color=col,
                    capsize=3, ms=8 if i in front else 6, mec="k" if i in front else col,
                    label=f"{c.label} (n={a['n']})" + (" *" if i in front else ""))
    fr = sorted((pts[i][1]["mean"], 100 * pts[i][2]["mean"]) for i in front)
    if len(fr) > 1:
        ax.plot(*zip(*fr), "k--", lw=0.8, alpha=0.6, label="Pareto front (*)")
    ax.set(xlabel=xlabel, ylabel="final test accuracy (%)",
           title=f"Accuracy against {xlabel.split(' (')[0]} (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    if len(pts) <= 6:
        ax.legend(fontsize=7, loc="best")
    else:                                    # many configurations: beside the axes, clear of the points
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.savefig(path, dpi=100)
    return path


def plot_curves(configs, path):
    from matplotlib.figure import Figure
    fig = Figure(figsize=(7, 4.4), layout="constrained")
    ax = fig.subplots()
    drawn = False
    for c, col in zip(configs, _colors(len(configs))):
        series = [[r.get("test_acc") for r in m] for _, _, m, _ in c.done if m]
        if not series:
            continue
        n = min(len(s) for s in series)
        arr = np.array([[np.nan if v is None else v for v in s[:n]] for s in series], dtype=float)
        mean = 100 * np.nanmean(arr, axis=0)
        ep = np.arange(1, n + 1)
        ax.plot(ep, mean, "o-", color=col, label=c.label)
        if len(series) > 1:
            sd = 100 * np.nanstd(arr, axis=0, ddof=1)
            ax.fill_between(ep, mean - sd, mean + sd, color=col, alpha=0.15)
        drawn = True
    if not drawn:
        return None
    ax.set(xlabel="epoch", ylabel="test accuracy (%)", title="Training curves (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=100)
    return path


def plot_layer_cost(config, base, path):
    """Per-layer training energy by phase: baseline (left) and method (right), first seed each."""
    from matplotlib.figure import Figure
    costs = []
    for c in (base, config):
        run_dir = c.done[0][3] if c.done else None
        costs.append(_read_json(os.path.join(run_dir, "cost.json")) if run_dir else None)
    if not all(isinstance(x, dict) and x.get("layers") for x in costs):
        return None
    order = [n for n in costs[1].get("order", []) if n in costs[1]["layers"] or n in costs[0]["layers"]]

    def table(cost):
        return {n: [float(((cost["layers"].get(n) or {}).get(p) or {}).get("energy_pj", 0) or 0) * 1e-12
                    for p in TRAIN_PHASES] for n in order}
    tabs = [table(x) for x in costs]
    keep = [n for n in order if sum(tabs[0][n]) + sum(tabs[1][n]) > 0]
    if not keep:
        return None
    fig = Figure(figsize=(11, max(3.5, 0.22 * len(keep) + 1.6)), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True, sharex=True)
    y = np.arange(len(keep))
    colors = {"forward": "#4c72b0", "backward_input": "#dd8452", "backward_weight": "#c44e52",
              "update": "#55a868"}
    for ax, tab, c in zip(axes, tabs, (base, config)):
        left = np.zeros(len(keep))
        for i, p in enumerate(TRAIN_PHASES):
            v = np.array([tab[n][i] for n in keep])
            ax.barh(y, v, left=left, color=colors[p], label=p, height=0.75)
            left += v
        ax.set(title=f"{c.label}: {left.sum():.3g} J", xlabel="training energy (J), first seed")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, keep, fontsize=7)
    axes[0].invert_yaxis()
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle("Per-layer training cost by phase, baseline beside method")
    fig.savefig(path, dpi=90)
    return path


# -- the report --------------------------------------------------------------------------------

def _num(x, kind):
    if x is None:
        return "n/a"
    if kind == "acc":
        return f"{100 * x:.1f}"
    if kind == "pct":
        return f"{100 * x:.1f}%"
    if kind == "s":
        return f"{x:.1f}"
    return f"{x:.3g}"


def _ms(st, kind):
    if st["mean"] is None:
        return "n/a"
    if st["n"] > 1:
        std = st["std"]
        if std is not None and abs(std) <= 1e-9 * abs(st["mean"]):    # equal up to float rounding (e.g. energy)
            std = 0.0
        return f"{_num(st['mean'], kind)} ± {_num(std, kind)}"
    return _num(st["mean"], kind)


KINDS = {"final_test_acc": "acc", "best_test_acc": "acc", "wall_time_s": "s", "train_time_s": "s", "macs": "g", "bytes": "g",
         "energy_j": "g", "savings_macs": "pct", "savings_bytes": "pct", "savings_energy": "pct"}


def write_report(sweep_dir: str, out: str | None = None) -> list:
    """report.md, report.html, report.json and the PNGs into ``out`` (default SWEEP_DIR/report)."""
    out = out or os.path.join(sweep_dir, "report")
    if os.path.exists(out) and not os.path.isdir(out):
        raise SweepError(f"--out {out} is a file, not a directory")
    rep = build_report(sweep_dir)
    configs = rep.pop("_configs")
    os.makedirs(out, exist_ok=True)
    images = []   # (title, filename)
    for key, label, name in (("energy_j", "training energy (J)", "acc_vs_energy.png"),
                             ("wall_time_s", "wall time (s)", "acc_vs_time.png")):
        if plot_tradeoff(configs, key, label, os.path.join(out, name)):
            images.append((f"Accuracy against {label}", name))
    if plot_curves(configs, os.path.join(out, "curves.png")):
        images.append(("Training curves", "curves.png"))
    for i, c in enumerate(configs):
        base = baseline_of(c, configs)
        if c.is_baseline or base is None:
            continue
        name = f"layers_{i}.png"
        if plot_layer_cost(c, base, os.path.join(out, name)):
            images.append((f"Per-layer cost by phase: {c.label} beside {base.label}", name))
    atomic_write_text(os.path.join(out, "report.json"), json.dumps(rep, indent=2))
    atomic_write_text(os.path.join(out, "report.md"), _markdown(rep, images))
    atomic_write_text(os.path.join(out, "report.html"), _html(rep, images, out))
    return [os.path.join(out, "report.md"), os.path.join(out, "report.html"), os.path.join(out, "report.json")] \
        + [os.path.join(out, n) for _, n in images]


def _tables(rep):
    """(title, header, rows) of the report's tables."""
    cols = [("final_test_acc", "test acc %"), ("best_test_acc", "best %"), ("wall_time_s", "wall s"),
            ("energy_j", "energy J"), ("macs", "MACs"), ("bytes", "bytes"), ("savings_macs", "MACs saved"),
            ("savings_bytes", "bytes saved"), ("savings_energy", "energy saved")]
    rows = []
    for c in rep["configs"]:
        st = c["stats"]
        status = ", ".join(f"{n} {k}" for k, n in st["status"].items())
        rows.append([c["label"], status] + [_ms(st[k], KINDS[k]) for k, _ in cols])
    tables = [("Configurations (mean ± std over seeds, completed runs)",
               ["configuration", "runs"] + [h for _, h in cols], rows)]
    rec_rows = [[c["label"], k, f"{v:.4g}"] for c in rep["configs"] for k, v in sorted(c["method_records"].items())]
    if rec_rows:
        tables.append(("Method records (summary.json method_records, mean over seeds)",
                       ["configuration", "record", "value"], rec_rows))
    cl_rows = [[cl["config"], cl["id"], cl["verdict"], _against(cl), cl["claim"], f"{cl['paper']}, {cl['source']}",
                cl["shape"], "; ".join(f"{x['metric']}: {x['why']}" for x in cl["checks"])] for cl in rep["claims"]]
    tables.append(("The papers' claims beside this sweep",
                   ["configuration", "claim", "verdict", "compared with", "the paper says", "source",
                    "shape a small run can show", "this sweep"],
                   cl_rows or [["(no configuration of this sweep matches a claim)"] + [""] * 7]))
    return tables


def _against(cl):
    """What a claim's configuration was compared with: its baseline, or the configuration at equal energy."""
    if cl.get("baseline") is None:
        return "none found"
    if cl.get("reference") == "equal-energy" and cl.get("energy_ratio"):
        return f"{cl['baseline']} (equal energy: ratio {cl['energy_ratio']:.2f})"
    return cl["baseline"]


def _note(rep):
    n = next((c["stats"].get("test_images") for c in rep["configs"] if c["stats"].get("test_images")), None)
    image = f"1/{n} = {100 / n:.2f} point on this sweep's {n} test images" if n else "one test image"
    return ("Noise: an accuracy difference counts only if it exceeds the larger seed spread of the two "
            f"configurations and at least one test image ({image}); smaller differences are 'within noise'. "
            "Savings are 1 - actual/dense over the training phases (minicnn's ledger; energy from the "
            "Horowitz 2014 table, not a measurement).")


def _markdown(rep, images):
    lines = ["# Sweep report", "", f"Sweep: `{rep['sweep']}`", ""]
    if rep["description"]:
        lines += [rep["description"], ""]
    for title, header, rows in _tables(rep):
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        lines += ["| " + " | ".join(str(x).replace("|", "/") for x in r) + " |" for r in rows]
        lines.append("")
    lines += [_note(rep), ""]
    for title, name in images:
        lines += [f"## {title}", "", f"![{title}]({name})", ""]
    return "\n".join(lines)


def _html(rep, images, out):
    e = html.escape
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>minicnn sweep report</title>",
             "<style>body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;"
             "margin:1em 0;font-size:13px}th,td{border:1px solid #bbb;padding:3px 7px;text-align:left;"
             "vertical-align:top}th{background:#eee}td.agrees{background:#dfd}td.disagrees{background:#fdd}"
             "img{max-width:100%;border:1px solid #ddd}</style></head><body>",
             "<h1>Sweep report</h1>", f"<p>Sweep: <code>{e(rep['sweep'])}</code></p>"]
    if rep["description"]:
        parts.append(f"<p>{e(rep['description'])}</p>")
    for title, header, rows in _tables(rep):
        parts.append(f"<h2>{e(title)}</h2><table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in header)
                     + "</tr></thead><tbody>")
        for r in rows:
            parts.append("<tr>" + "".join(
                f"<td class='{e(str(x))}'>{e(str(x))}</td>" if str(x) in ("agrees", "disagrees")
                else f"<td>{e(str(x))}</td>" for x in r) + "</tr>")
        parts.append("</tbody></table>")
    parts.append(f"<p>{e(_note(rep))}</p>")
    for title, name in images:
        with open(os.path.join(out, name), "rb") as f:
            data = base64.b64encode(f.read()).decode()
        parts.append(f"<h2>{e(title)}</h2><img alt='{e(title)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)
