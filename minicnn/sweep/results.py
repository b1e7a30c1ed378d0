"""The numbers of a sweep report: configurations, their statistics, the papers' claims checked against them.

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
  arguments with ``method = "baseline"``), or, where the paper compares at
  equal energy (``reference = "equal-energy"``: E2-Train's SMD against SMB,
  SLU against stochastic depth), against the configuration of the named
  methods whose training energy is within 10% of its own. Accuracy differences are compared
  with the *noise*: the larger of the two configurations' seed spreads, and
  at least one test image (1/1017 = 0.1 point on the CIFAR-10 slice). A
  difference smaller than the noise is reported as "within noise", never as
  a win or a loss. Verdicts: ``agrees``, ``disagrees``, ``not testable``;
* the Pareto front of high accuracy at low cost (:func:`pareto_front`).

:func:`build_report` returns all of it (``report.json``); :mod:`.report` draws and writes it.
"""
from __future__ import annotations

import json
import math
import os
import re
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
    (``per_epoch.FIELD=VALUE (epochs)``, e.g. WUS's epoch kinds). A string's numbers are folded to ``#``
    first (:func:`_kind`): LARS-skip's reason "l* = conv4 (nw 41.5 > 40)" counts as "l* = conv4 (nw # > #)",
    one row per kind of decision rather than one per value."""
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


#: a number standing alone in a string (not the digit of a name such as conv4 or layer1.0)
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.])")


def _kind(text: str) -> str:
    """A per-epoch string record with its numbers folded to ``#`` (the kind of decision it names)."""
    return _NUMBER.sub("#", text)


def _per_epoch(epochs, name):
    nums, counts = {}, {}
    for rec in epochs:
        if not isinstance(rec, dict):
            continue
        for k, v in rec.items():
            if k == "epoch":                 # the epoch number itself is not a record
                continue
            if isinstance(v, bool) or isinstance(v, str):
                key = f"{name}.{k}={str(v).lower() if isinstance(v, bool) else _kind(v)} (epochs)"
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


def _names(config: Config) -> list:
    return sorted(m.partition(":")[0].strip() for m in config.methods)


def matches(claim: dict, config: Config) -> bool:
    if config.is_baseline:
        return False
    if _names(config) != sorted(claim["methods"]):
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


ENERGY_TOLERANCE = 0.10   # "equal energy": mean training energies within 10% of each other


def equal_energy_reference(config: Config, configs: list, against: list | None = None):
    """The configuration to compare ``config`` with at equal training energy, and its energy ratio.

    E2-Train compares at equal energy, not at equal epochs: SMD for 4/3 of the iterations against SMB for 2/3
    (Sec. 4.2, Fig. 3a), SLU against stochastic depth at the same energy (Sec. 4.3, Fig. 4). The candidates are
    the configurations of the ``against`` methods (names; the baseline when None) that agree with ``config`` on
    every argument neither case sets itself (so a case's own epochs and milestones may differ); of those with
    completed runs, the one whose mean training energy (the ledger's, ``energy_j.total``) is nearest to
    ``config``'s. Returns ``(reference, ratio)`` with ratio = config's energy / the reference's, or
    ``(None, nearest ratio or None)`` when no candidate lies within :data:`ENERGY_TOLERANCE`."""
    def rest(c, drop):
        return {k: v for k, v in c.args.items() if k not in drop}
    mine = config.stats.get("energy_j", {}).get("mean")
    if not mine:
        return None, None
    best, best_ratio = None, None
    for c in configs:
        if c is config or not (c.is_baseline if against is None else _names(c) == sorted(against)):
            continue
        drop = {"method"} | _case_keys(config) | _case_keys(c)
        theirs = c.stats.get("energy_j", {}).get("mean")
        if rest(c, drop) != rest(config, drop) or not c.done or not theirs:
            continue
        ratio = mine / theirs
        if best_ratio is None or abs(math.log(ratio)) < abs(math.log(best_ratio)):
            best, best_ratio = c, ratio
    if best is None or abs(best_ratio - 1.0) > ENERGY_TOLERANCE:
        return None, best_ratio
    return best, best_ratio


def check_claim(claim: dict, config: Config, configs: list) -> dict:
    """One claim checked against ``config``: against its baseline (the same arguments, method "baseline"), or,
    for a claim with ``reference = "equal-energy"``, against the configuration of the claim's ``against``
    methods at equal training energy (:func:`equal_energy_reference`)."""
    ratio = None
    if claim.get("reference") == "equal-energy":
        base, ratio = equal_energy_reference(config, configs, claim.get("against"))
        what = "+".join(claim.get("against") or ["baseline"])
        missing = f"no completed {what} configuration at equal training energy (within " \
                  f"{100 * ENERGY_TOLERANCE:.0f}%" + (f"; the nearest is at {ratio:.2f}x" if ratio else "") + ")"
    else:
        base = baseline_of(config, configs)
        missing = "no completed baseline run of this configuration"
    out = {"id": claim["id"], "config": config.label, "paper": claim["paper"], "source": claim["source"],
           "claim": claim["claim"], "shape": claim["shape"], "checks": [],
           "baseline": base.label if base else None,
           "reference": claim.get("reference", "same arguments"), "energy_ratio": ratio}
    nz = noise(config, base) if base is not None and base.done and config.done else None
    out["noise"] = nz
    verdicts = []
    for chk in claim.get("checks", []):
        m = chk["metric"]
        v = metric_value(m, config, base) if config.done else None
        row = {"metric": m, "value": v}
        if v is None:
            row["verdict"] = "not testable"
            row["why"] = missing if base is None or not base.done else "no completed run"
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


# -- the Pareto front -----------------------------------------------------------------------

def pareto_front(points):
    """Indices of the points (cost, acc) no other point beats: cost <= and acc >=, one strictly."""
    front = []
    for i, (c, a) in enumerate(points):
        if not any((c2 <= c and a2 >= a) and (c2 < c or a2 > a) for j, (c2, a2) in enumerate(points) if j != i):
            front.append(i)
    return front


# -- the report's numbers ---------------------------------------------------------------------

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
