"""``minicnn report SWEEP_DIR``: one table and a few plots per sweep, beside the papers' claims.

What it computes, all from the runs' own files (``summary.json``,
``metrics.jsonl``, ``cost.json``), never from sweep.json's copies:

* configurations: the runs of ``sweep.json`` grouped by all their arguments
  but the seed; per configuration, over its completed runs (diverged and
  failed runs are counted, not averaged): mean and sample standard deviation
  (ddof=1; 0 for one seed) of final and best test accuracy, wall time, total
  training MACs, bytes and energy, and the savings against the dense run;
* method records: every number in ``summary.json``'s ``method_records``,
  averaged over seeds; per-epoch records become epoch means (numbers) and
  counts (strings, e.g. WUS epoch kinds);
* claims (``claims.toml`` in this package): each claim whose method matches a
  configuration is checked against that configuration's baseline (the same
  arguments with ``method = "baseline"``). Accuracy differences are compared
  with the *noise*: the larger of the two configurations' seed spreads, and
  at least one test image (1/1017 = 0.1 point on the CIFAR-10 slice). A
  difference smaller than the noise is reported as "within noise", never as
  a win or a loss. Verdicts: ``agrees``, ``disagrees``, ``not testable``;
* plots: accuracy against energy and against wall time (error bars: the seeds'
  standard deviation; the Pareto front of high accuracy at low cost marked),
  test accuracy per epoch per configuration (mean over seeds), and per-layer
  training cost by phase of each method beside its baseline (first seed);
* ``report.md`` with the PNGs beside it, ``report.html`` (the same, images
  inlined, no script, opens from a file), ``report.json`` (every number).
"""
from __future__ import annotations

import base64
import html
import json
import math
import os
import tomllib
from dataclasses import dataclass, field

import numpy as np

from .engine import SweepError, _read_json

METRICS = (  # (key, label, path into summary.json)
    ("final_test_acc", "final test acc", ("final_test_acc",)),
    ("best_test_acc", "best test acc", ("best_test_acc",)),
    ("wall_time_s", "wall time (s)", ("wall_time_s",)),
    ("train_time_s", "train time (s)", ("train_time_s",)),
    ("macs", "train MACs", ("macs", "total")),
    ("bytes", "train bytes", ("bytes", "total")),
    ("energy_j", "train energy (J)", ("energy_j", "total")),
    ("savings_macs", "MACs saved", ("savings", "macs")),
    ("savings_bytes", "bytes saved", ("savings", "bytes")),
    ("savings_energy", "energy saved", ("savings", "energy")),
)
TRAIN_PHASES = ("forward", "backward_input", "backward_weight", "update")


def _get(d, path):
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def mean_std(values):
    """Mean and sample standard deviation (ddof=1; 0.0 for a single value); (None, None) if empty."""
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    if not v:
        return None, None
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0


@dataclass
class Config:
    key: str
    label: str
    args: dict
    methods: list
    runs: list = field(default_factory=list)      # (record, summary, metrics, run_dir)
    stats: dict = field(default_factory=dict)
    records: dict = field(default_factory=dict)

    @property
    def done(self):
        return [r for r in self.runs if r[1] is not None and r[1].get("status", "completed") == "completed"]

    @property
    def is_baseline(self):
        return self.methods in ([], ["baseline"])


def load_sweep(sweep_dir: str) -> tuple[dict, list]:
    """sweep.json and the configurations with their runs' files."""
    doc = _read_json(os.path.join(sweep_dir, "sweep.json"))
    if not isinstance(doc, dict) or "runs" not in doc:
        raise SweepError(f"{sweep_dir} is not a sweep directory (no readable sweep.json)")
    axes = [k for k in doc.get("grid", {}) if k != "seed"]
    configs: dict[str, Config] = {}
    for rec in doc["runs"]:
        args = dict(rec["args"])
        args.pop("seed", None)
        key = json.dumps(args, sort_keys=True)
        if key not in configs:
            label = ", ".join(_show(k, rec["axes"][k]) for k in axes if k in rec["axes"]) or "all runs"
            configs[key] = Config(key, label, args, list(args.get("method", [])))
        run_dir = os.path.join(sweep_dir, rec["dir"])
        summary = _read_json(os.path.join(run_dir, "summary.json"))
        metrics = _read_jsonl(os.path.join(run_dir, "metrics.jsonl"))
        configs[key].runs.append((rec, summary if isinstance(summary, dict) else None, metrics, run_dir))
    for c in configs.values():
        _summarise(c)
    return doc, list(configs.values())


def _show(k, v):
    if isinstance(v, dict):           # a case (spec.CASE): its method, then its own settings
        return ", ".join(_show(kk, vv) for kk, vv in sorted(v.items(), key=lambda kv: kv[0] != "method"))
    if isinstance(v, list):
        v = "+".join(map(str, v))
    return f"{v}" if k == "method" else f"{k}={v}"


def _read_jsonl(path):
    out = []
    try:
        with open(path) as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    except OSError:
        pass
    return out


def _summarise(c: Config):
    done = [s for _, s, _, _ in c.done]
    for key, _, path in METRICS:
        m, s = mean_std([_get(x, path) for x in done])
        c.stats[key] = {"mean": m, "std": s, "n": len(done)}
    c.stats["seeds"] = [r[0]["args"].get("seed", 0) for r in c.done]
    c.stats["status"] = {st: sum(1 for r in c.runs if r[0]["status"] == st)
                         for st in ("completed", "diverged", "failed", "interrupted", "pending", "running")
                         if any(r[0]["status"] == st for r in c.runs)}
    c.stats["test_images"] = next((x.get("test_images") for x in done if x.get("test_images")), None)
    flat: dict[str, list] = {}
    for x in done:
        for k, v in _flatten(x.get("method_records") or {}).items():
            flat.setdefault(k, []).append(v)
    c.records = {k: mean_std(v)[0] for k, v in flat.items()}


def _flatten(d, prefix=""):
    """Numbers of a method record, by dotted name; a ``per_epoch`` list becomes the epoch mean of
    each numeric field (``per_epoch.FIELD (epoch mean)``) and the count of each string value
    (``per_epoch.FIELD=VALUE (epochs)``, e.g. WUS's epoch kinds)."""
    out = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if k == "per_epoch" and isinstance(v, list):
            out.update(_per_epoch(v, name))
        elif isinstance(v, dict):
            out.update(_flatten(v, name + "."))
        elif isinstance(v, bool):
            out[name] = float(v)
        elif isinstance(v, (int, float)) and math.isfinite(v):
            out[name] = float(v)
    return out


def _per_epoch(epochs, name):
    nums, counts = {}, {}
    for rec in epochs:
        if not isinstance(rec, dict):
            continue
        for k, v in rec.items():
            if k == "epoch":                 # the epoch number itself is not a record
                continue
            if isinstance(v, bool) or isinstance(v, str):
                key = f"{name}.{k}={str(v).lower() if isinstance(v, bool) else v} (epochs)"
                counts[key] = counts.get(key, 0) + 1
            elif isinstance(v, (int, float)) and math.isfinite(v):
                nums.setdefault(f"{name}.{k} (epoch mean)", []).append(float(v))
    return {**{k: float(np.mean(v)) for k, v in nums.items()}, **{k: float(c) for k, c in counts.items()}}


# -- claims -------------------------------------------------------------------------------

def load_claims(path: str | None = None) -> list:
    path = path or os.path.join(os.path.dirname(__file__), "claims.toml")
    with open(path, "rb") as f:
        return tomllib.load(f).get("claim", [])


def _method_options(methods: list) -> dict | None:
    """{name: options} of a method combination (defaults included); None if a method is unknown."""
    from ..methods import build_methods
    try:
        built = build_methods(methods)
    except (ValueError, TypeError):
        return None
    return {m.name: m.options() for m in built}


def matches(claim: dict, config: Config) -> bool:
    if config.is_baseline:
        return False
    names = sorted(m.partition(":")[0].strip() for m in config.methods)
    if names != sorted(claim["methods"]):
        return False
    want = claim.get("options") or {}
    if want:
        opts = _method_options(config.methods)
        if opts is None:
            return False
        for name, kv in want.items():
            if any(opts.get(name, {}).get(k) != v for k, v in kv.items()):
                return False
    return True


def _case_keys(config: Config) -> set:
    """The flags a configuration's ``case`` (spec.CASE) set itself: its method and its own settings."""
    case = config.runs[0][0].get("axes", {}).get("case") if config.runs else None
    return set(case) if isinstance(case, dict) else set()


def baseline_of(config: Config, configs: list) -> Config | None:
    """The baseline run with the same arguments but the method.

    With ``case`` configurations (a method with the paper's own settings, e.g. PSG at lr 0.03 against
    SGD at 0.1, E2-Train §4.1) the arguments that either case sets itself are not compared: the baseline
    is the one that agrees on everything else. An exact match is preferred."""
    def rest(c, drop):
        return {k: v for k, v in c.args.items() if k not in drop}
    for c in configs:
        if c.is_baseline and rest(c, {"method"}) == rest(config, {"method"}):
            return c
    for c in configs:
        drop = {"method"} | _case_keys(config) | _case_keys(c)
        if c.is_baseline and rest(c, drop) == rest(config, drop):
            return c
    return None


def noise(config: Config, base: Config) -> float:
    """The accuracy difference to beat: the larger seed spread, at least one test image."""
    n_test = config.stats.get("test_images") or base.stats.get("test_images") or 1017
    spreads = [x.stats["final_test_acc"]["std"] or 0.0 for x in (config, base)]
    return max(max(spreads), 1.0 / n_test)


def metric_value(metric: str, config: Config, base: Config | None):
    done = [s for _, s, _, _ in config.done]
    if metric.startswith("savings."):
        return mean_std([_get(s, ("savings", metric.split(".", 1)[1])) for s in done])[0]
    if metric.startswith("phase_saving."):
        _, phase, what = metric.split(".")
        vals = []
        for s in done:
            a, d = _get(s, (what, phase)), _get(s, (f"dense_{what}", phase))
            if a is not None and d:
                vals.append(1.0 - a / d)
        return mean_std(vals)[0]
    if base is None or not base.done:
        return None
    if metric == "acc_delta":
        a, b = config.stats["final_test_acc"]["mean"], base.stats["final_test_acc"]["mean"]
        return None if a is None or b is None else a - b
    if metric == "wall_time_ratio":
        a, b = config.stats["wall_time_s"]["mean"], base.stats["wall_time_s"]["mean"]
        return None if a is None or not b else a / b
    raise SweepError(f"claims: unknown metric {metric!r}")


def check_claim(claim: dict, config: Config, configs: list) -> dict:
    base = baseline_of(config, configs)
    out = {"id": claim["id"], "config": config.label, "paper": claim["paper"], "source": claim["source"],
           "claim": claim["claim"], "shape": claim["shape"], "checks": [],
           "baseline": base.label if base else None}
    nz = noise(config, base) if base is not None and base.done and config.done else None
    out["noise"] = nz
    verdicts = []
    for chk in claim.get("checks", []):
        m = chk["metric"]
        v = metric_value(m, config, base) if config.done else None
        row = {"metric": m, "value": v}
        if v is None:
            row["verdict"] = "not testable"
            row["why"] = "no completed baseline run of this configuration" if base is None or not base.done \
                else "no completed run"
        else:
            ok, why = True, []
            loose = nz if m == "acc_delta" and nz is not None else 0.0
            if chk.get("not_worse"):
                ok &= v >= -loose
                why.append(f"{_pts(v)} vs noise {100 * loose:.1f} pt: "
                           + ("within noise" if abs(v) <= loose else ("better" if v > 0 else "worse")))
            if "above" in chk:
                met = v + loose > chk["above"]
                ok &= met
                why.append(f"{_fmt_metric(m, v)}, needs > {_fmt_metric(m, chk['above'])}"
                           + (f" (noise {100 * loose:.1f} pt)" if loose else "") + (": met" if met else ": NOT met"))
            if "below" in chk:
                met = v - loose < chk["below"]
                ok &= met
                why.append(f"{_fmt_metric(m, v)}, needs < {_fmt_metric(m, chk['below'])}" + (": met" if met else ": NOT met"))
            row["verdict"] = "agrees" if ok else "disagrees"
            row["why"] = "; ".join(why)
        out["checks"].append(row)
        verdicts.append(row["verdict"])
    out["verdict"] = "disagrees" if "disagrees" in verdicts else \
        ("not testable" if "not testable" in verdicts or not verdicts else "agrees")
    return out


def _pts(x):
    return f"{100 * x:+.1f} pt" if x is not None else "n/a"


def _fmt_metric(metric, v):
    if metric == "acc_delta":
        return _pts(v)
    if metric == "wall_time_ratio":
        return f"{v:.2f}x"
    return f"{100 * v:.1f}%"


# -- plots ------------------------------------------------------------------------------------

def pareto_front(points):
    """Indices of the points (cost, acc) no other point beats: cost <= and acc >=, one strictly."""
    front = []
    for i, (c, a) in enumerate(points):
        if not any((c2 <= c and a2 >= a) and (c2 < c or a2 > a) for j, (c2, a2) in enumerate(points) if j != i):
            front.append(i)
    return front


def _colors(n):
    import matplotlib
    cmap = matplotlib.colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def plot_tradeoff(configs, cost_key, xlabel, path):
    from matplotlib.figure import Figure
    pts = [(c, c.stats[cost_key], c.stats["final_test_acc"]) for c in configs
           if c.stats[cost_key]["mean"] is not None and c.stats["final_test_acc"]["mean"] is not None]
    if not pts:
        return None
    fig = Figure(figsize=(7, 4.6), layout="constrained")
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
    ax.legend(fontsize=7, loc="best")
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


def build_report(sweep_dir: str) -> dict:
    """Every number of the report (also written as report.json)."""
    doc, configs = load_sweep(sweep_dir)
    claims = load_claims()
    checked = [check_claim(cl, c, configs) for c in configs for cl in claims if matches(cl, c)]
    return {"sweep": os.path.abspath(sweep_dir), "description": doc.get("description", ""),
            "threads_per_run": doc.get("threads_per_run"),
            "configs": [{"label": c.label, "args": c.args, "methods": c.methods, "stats": c.stats,
                         "method_records": c.records} for c in configs],
            "claims": checked, "_configs": configs}


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
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(rep, f, indent=2)
    md = _markdown(rep, images)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(md)
    with open(os.path.join(out, "report.html"), "w") as f:
        f.write(_html(rep, images, out))
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
    cl_rows = [[cl["config"], cl["id"], cl["verdict"], cl["claim"], f"{cl['paper']}, {cl['source']}", cl["shape"],
                "; ".join(f"{x['metric']}: {x['why']}" for x in cl["checks"])] for cl in rep["claims"]]
    tables.append(("The papers' claims beside this sweep",
                   ["configuration", "claim", "verdict", "the paper says", "source", "shape a small run can show",
                    "this sweep"], cl_rows or [["(no configuration of this sweep matches a claim)"] + [""] * 6]))
    return tables


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
