"""``inspect_run``: the statistics of a run as text tables (``minicnn inspect``).

Epochs are shown counted from 1, as in ``metrics.jsonl`` and the trainer's
output (``stats.jsonl`` stores the trainer's 0-based ``state.epoch``).
"""
from __future__ import annotations

import math

from .store import Stats, load_stats

#: at most this many epoch columns in the per-epoch overview tables (the latest ones)
MAX_EPOCH_COLUMNS = 10


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if v == 0:
            return "0"
        if 1e-3 <= abs(v) < 1e5:
            return f"{v:.4g}"
        return f"{v:.3e}"
    return str(v)


def table(headers: list[str], rows: list[list], left: int = 1) -> str:
    """A plain-text table; the first ``left`` columns are left-aligned, the rest right-aligned."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for j, r in enumerate(cells):
        parts = [c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))]
        lines.append("  ".join(parts).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _main_param(st: Stats, layer: str):
    ps = st.params(layer)
    return "weight" if "weight" in ps else (ps[0] if ps else None)


def _lars(rec: dict | None):
    """The record's LARS ratio; inf when the param did not move (stored as null)."""
    if not rec:
        return None
    if rec.get("lars") is not None:
        return rec["lars"]
    return math.inf if rec.get("update_norm") == 0 else None


def _overview(st: Stats, run_dir: str) -> str:
    layers = st.layers()
    epochs = st.epochs()
    last = epochs[-1] if epochs else None
    shown_last = last + 1 if epochs else "-"
    out = [f"statistics of {run_dir}: {len(layers)} layers, epochs {epochs[0] + 1 if epochs else '-'}.."
           f"{shown_last}, a batch recorded every {st.meta.get('every')} trained batches "
           f"({len(st.batch)} batch records)",
           f"columns: mean over the recorded batches of epoch {shown_last} (act = layer output, dy = dL/d(output), "
           f"dW = weight gradient; dens = fraction non-zero); ||W||, ||dW_ep|| (update over the epoch) and "
           f"LARS = ||W||/||dW_ep|| (Miyauchi et al. eq. 1-3) of the weight at the end of epoch {shown_last}", ""]
    rows = []
    for name in layers:
        p = _main_param(st, name)
        # latest epoch that has records of each tensor
        def lat(tensor, field):
            m = st.epoch_mean(name, tensor, field)
            return m.get(last) if last in m else None
        ep = [r for r in st.epoch_records(name, p) if r["epoch"] == last] if p else []
        er = ep[-1] if ep else {}
        gw = "grad_" + p if p else None
        rows.append([name, st.layer_type(name),
                     lat("activation", "mean"), lat("activation", "std"), lat("activation", "density"),
                     lat("grad_output", "mean_abs"), lat("grad_output", "density"),
                     lat(gw, "mean_abs") if gw else None, lat(gw, "density") if gw else None,
                     er.get("norm"), er.get("update_norm"), _lars(er)])
    out.append(table(["layer", "type", "act mean", "act std", "act dens", "|dy| mean", "dy dens",
                      "|dW| mean", "dW dens", "||W||", "||dW_ep||", "LARS"], rows, left=2))

    # per-epoch tables: LARS ratio and dL/dy density
    shown = epochs[-MAX_EPOCH_COLUMNS:]
    if shown:
        note = f" (last {len(shown)} of {len(epochs)} epochs)" if len(shown) < len(epochs) else ""
        lars_rows, dens_rows = [], []
        for name in layers:
            p = _main_param(st, name)
            if p is not None and st.epoch_records(name, p):
                by = {r["epoch"]: r for r in st.epoch_records(name, p)}
                lars_rows.append([f"{name}.{p}"] + [_lars(by.get(e)) for e in shown])
            d = st.epoch_mean(name, "grad_output", "density")
            if d:
                dens_rows.append([name] + [d.get(e) for e in shown])
        if lars_rows:
            out += ["", f"LARS ratio ||W||/||dW_ep|| per epoch{note}; inf = the param did not move (frozen)",
                    table(["param"] + [f"ep {e + 1}" for e in shown], lars_rows)]
        if dens_rows:
            out += ["", f"density of dL/dy (fraction non-zero) per epoch{note}",
                    table(["layer"] + [f"ep {e + 1}" for e in shown], dens_rows)]
    return "\n".join(out)


def _detail(st: Stats, layer: str) -> str:
    ps = {l["name"]: l.get("params", {}) for l in st.meta.get("layers", [])}.get(layer, {})
    shapes = ", ".join(f"{k} {tuple(v)}" for k, v in ps.items()) or "no parameters"
    out = [f"layer {layer} ({st.layer_type(layer) or '?'}): {shapes}", ""]
    rows = []
    for tensor in st.tensors(layer):
        recs = st.batch_records(layer, tensor)
        for e in sorted({r["epoch"] for r in recs}):
            er = [r for r in recs if r["epoch"] == e]
            def m(field):
                v = [r[field] for r in er if r.get(field) is not None]
                return sum(v) / len(v) if v else None
            rows.append([e + 1, tensor, len(er), m("mean"), m("std"), m("mean_abs"), m("density"),
                         min((r["density"] for r in er if r.get("density") is not None), default=None)])
    if rows:
        rows.sort(key=lambda r: (r[0], st.tensors(layer).index(r[1])))
        out += ["per epoch, mean over the recorded batches (dens = fraction non-zero):",
                table(["epoch", "tensor", "records", "mean", "std", "mean |.|", "dens", "min dens"], rows, left=2)]
    else:
        out.append("no batch records for this layer")
    prow = []
    for r in st.init:
        if r["layer"] == layer:
            prow.append(["init", r["param"], r.get("norm"), None, None, r.get("mean"), r.get("std"),
                         r.get("value_lo"), r.get("value_hi"), None])
    for r in st.epoch:
        if r["layer"] == layer:
            prow.append([r["epoch"] + 1, r["param"], r.get("norm"), r.get("update_norm"), _lars(r), r.get("mean"),
                         r.get("std"), r.get("value_lo"), r.get("value_hi"), r.get("trained")])
    if prow:
        out += ["", "parameters at the end of each epoch (||dw_ep|| = ||w_end - w_begin||, "
                    "LARS = ||w||/||dw_ep||, Miyauchi et al. eq. 1-3):",
                table(["epoch", "param", "||w||", "||dw_ep||", "LARS", "mean", "std", "min", "max", "trained"],
                      prow, left=2)]
    return "\n".join(out)


def inspect_run(run_dir: str, layer: str | None = None) -> str:
    """A text report of ``run_dir/stats.jsonl``: an overview of every layer, or one layer in detail.

    Raises ValueError (one line) if the run has no stats.jsonl or ``layer`` is unknown.
    """
    st = load_stats(run_dir)
    if layer is None:
        return _overview(st, run_dir)
    known = st.layers()
    if layer not in known:
        raise ValueError(f"unknown layer {layer!r}; layers of this run: {', '.join(known)}")
    return _detail(st, layer)
