"""The figures of ``plot_runs``, one function each; each returns the PNG path or None.

Figures are built with ``matplotlib.figure.Figure`` and saved through the Agg
renderer, never through pyplot, so plotting changes no global matplotlib state
and needs no display.
"""
from __future__ import annotations

import math

import numpy as np
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import EngFormatter

from .rundata import TRAIN_PHASES, Run, accuracy_percent

DPI = 110
PHASE_COLORS = {"forward": "#4c72b0", "backward_input": "#dd8452", "backward_weight": "#c44e52",
                "update": "#55a868"}
PHASE_LABELS = {"forward": "forward", "backward_input": "backward dL/dx", "backward_weight": "backward dL/dW",
                "update": "weight update"}


def _colors(n):
    import matplotlib
    cmap = matplotlib.colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def _save(fig: Figure, path: str) -> str:
    fig.savefig(path, dpi=DPI)
    return path


# -- training curves ----------------------------------------------------------------------------------
def plot_curves(runs: list[Run], path: str):
    """Loss and accuracy (train solid, test dashed) vs epoch, one colour per run."""
    runs = [r for r in runs if r.metrics]
    if not runs:
        return None
    fig = Figure(figsize=(12, 4.6), layout="constrained")
    ax_l, ax_a = fig.subplots(1, 2)
    for run, c in zip(runs, _colors(len(runs))):
        for key, ls in (("train_loss", "-"), ("test_loss", "--")):
            x, y = run.column(key)
            if x:
                ax_l.plot(x, y, ls, color=c, marker="o", ms=3)
        for key, ls in (("train_acc", "-"), ("test_acc", "--")):
            x, y = run.column(key)
            if x:
                ax_a.plot(x, accuracy_percent(y), ls, color=c, marker="o", ms=3)
    ax_l.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss")
    ax_a.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    for ax in (ax_l, ax_a):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    runs_legend = [Line2D([], [], color=c, lw=2, label=r.label) for r, c in zip(runs, _colors(len(runs)))]
    style_legend = [Line2D([], [], color="k", ls="-", label="train"), Line2D([], [], color="k", ls="--", label="test")]
    ax_l.legend(handles=runs_legend + style_legend, fontsize=8, loc="best")
    ax_a.legend(handles=style_legend, fontsize=8, loc="lower right")
    fig.suptitle("Training curves", fontweight="bold")
    return _save(fig, path)


def plot_accuracy_vs_cost(runs: list[Run], path: str):
    """Test accuracy vs cumulative training energy (J) and vs cumulative MACs.

    When the metrics also hold the dense cost (``dense_energy_j_cum``,
    ``dense_macs_cum``: the same epochs without any method), an x marks where
    the last point would sit at dense cost.
    """
    panels = [("energy_j_cum", "cumulative training energy (J)", "J", "Test accuracy vs energy"),
              ("macs_cum", "cumulative MACs", "", "Test accuracy vs MACs")]
    panels = [p for p in panels if any(r.has(p[0]) and r.has("test_acc") for r in runs)]
    if not panels:
        return None
    fig = Figure(figsize=(6 * len(panels), 4.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    colors = _colors(len(runs))
    for ax, (key, xlabel, unit, title) in zip(axes, panels):
        dense_shown = False
        for run, c in zip(runs, colors):
            pts = [(m[key], m["test_acc"], m.get("dense_" + key)) for m in run.metrics
                   if m.get(key) is not None and m.get("test_acc") is not None]
            if not pts:
                continue
            x, y, d = zip(*pts)
            y = accuracy_percent(list(y))
            ax.plot(x, y, "-o", color=c, ms=4, label=run.label)
            if d[-1] is not None and d[-1] > x[-1] * (1 + 1e-9):
                ax.plot([d[-1]], [y[-1]], marker="x", color=c, ms=9, mew=2, ls="none")
                dense_shown = True
        ax.xaxis.set_major_formatter(EngFormatter(unit=unit))
        ax.xaxis.get_major_locator().set_params(nbins=6)
        ax.set(xlabel=xlabel, ylabel="test accuracy (%)", title=title)
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3)
        handles, _ = ax.get_legend_handles_labels()
        if dense_shown:
            handles.append(Line2D([], [], marker="x", color="0.3", mew=2, ls="none",
                                  label="same epochs at dense cost (no method)"))
        ax.legend(handles=handles, fontsize=8, loc="lower right")
    fig.suptitle("Accuracy for the training cost spent", fontweight="bold")
    return _save(fig, path)


# -- per-layer cost ledger -------------------------------------------------------------------------------
def _cost_table(cost: dict, key: str, which: str = "layers"):
    """layers (forward order, zero rows dropped later) -> {phase: value}."""
    layers = cost.get(which) or {}
    order = [n for n in cost.get("order", []) if n in layers] + \
            [n for n in layers if n not in set(cost.get("order", []))]
    return order, {n: {p: float((layers[n].get(p) or {}).get(key, 0) or 0) for p in TRAIN_PHASES}
                   for n in order}


def plot_cost_breakdown(run: Run, path: str):
    """Per-layer stacked bars of the training phases, in MACs and in energy (J)."""
    if not run.cost:
        return None
    order, macs = _cost_table(run.cost, "macs")
    _, energy = _cost_table(run.cost, "energy_pj")
    _, dmacs = _cost_table(run.cost, "macs", "dense_layers")
    _, denergy = _cost_table(run.cost, "energy_pj", "dense_layers")
    keep = [n for n in order if sum(macs[n].values()) + sum(energy[n].values()) > 0
            or sum(dmacs.get(n, {}).values()) + sum(denergy.get(n, {}).values()) > 0]
    if not keep:
        return None
    h = max(3.5, 0.26 * len(keep) + 1.8)
    fig = Figure(figsize=(13, h), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(keep))
    for ax, table, dense, scale, unit, title, what in (
            (axes[0], macs, dmacs, 1.0, "", "MACs", "MACs"),
            (axes[1], energy, denergy, 1e-12, "J", "Energy", "energy (J)")):
        left = np.zeros(len(keep))
        for p in TRAIN_PHASES:
            v = np.array([table[n][p] for n in keep]) * scale
            ax.barh(y, v, left=left, color=PHASE_COLORS[p], label=PHASE_LABELS[p], height=0.75)
            left += v
        dtot = np.array([sum(dense.get(n, {}).values()) for n in keep]) * scale
        if dense and np.any(dtot > left * (1 + 1e-9)):
            ax.barh(y, dtot, fill=False, edgecolor="k", lw=0.8, height=0.75, label="dense cost (no method)")
        total = left.sum()
        if total > 0:  # each layer's share of the run's training cost (rows are 0.26 in high: room at any count)
            for yi, v, d in zip(y, left, np.maximum(dtot, left)):
                if v > 0:
                    ax.text(d, yi, f" {100 * v / total:.1f}%", va="center", fontsize=7 if len(keep) < 40 else 6,
                            color="0.25")
        top = float(np.max(np.maximum(dtot, left))) if len(keep) else 0.0
        ax.set_xlim(0, top * 1.14 if top > 0 else 1.0)  # room for the share labels
        ax.xaxis.set_major_formatter(EngFormatter(unit=unit))
        ax.xaxis.get_major_locator().set_params(nbins=6)
        ax.set(xlabel=f"{what} over the run; label: share of the run total",
               title=f"{title} per layer and phase")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, keep, fontsize=8 if len(keep) < 40 else 6)
    axes[0].set_ylim(len(keep) - 0.5, -0.5)  # first layer on top, no empty rows below the last
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle(f"Training cost by layer: {run.label} (eval excluded)", fontweight="bold")
    return _save(fig, path)


# -- distributions (WUS Fig. 1) ------------------------------------------------------------------------------
def _rebin_values(recs: list[dict], nbins: int | None = None):
    """Re-bin per-epoch value histograms (each on its own [lo, hi]) onto one grid.

    The cumulative count is interpolated linearly inside each recorded bin
    (values spread uniformly within a bin). Returns (grid_edges, fractions
    (records, nbins)) or None. Default nbins: 2 sqrt(numel) clipped to 12..80
    (a 64-value bias gets 16 bins, not a comb of empty ones).
    """
    recs = [r for r in recs if r.get("value_lo") is not None and sum(r["value_hist"]) > 0]
    if not recs:
        return None
    if nbins is None:
        nbins = int(np.clip(2 * math.sqrt(max(r.get("numel", 0) for r in recs)), 12, 80))
    lo = min(r["value_lo"] for r in recs)
    hi = max(r["value_hi"] for r in recs)
    if hi <= lo:
        pad = max(abs(lo) * 0.1, 1e-3)
        lo, hi = lo - pad, hi + pad
    grid = np.linspace(lo, hi, nbins + 1)
    out = np.zeros((len(recs), nbins))
    for i, r in enumerate(recs):
        counts = np.asarray(r["value_hist"], dtype=np.float64)
        total = counts.sum()
        if r["value_hi"] > r["value_lo"]:
            edges = np.linspace(r["value_lo"], r["value_hi"], len(counts) + 1)
            cdf = np.interp(grid, edges, np.concatenate([[0.0], np.cumsum(counts)]))
        else:  # a constant tensor: a point mass
            cdf = np.where(grid >= r["value_lo"], total, 0.0)
            cdf[-1] = total
        out[i] = np.diff(cdf) / total
    return grid, out


def _quantile(grid, frac_row, q):
    cdf = np.concatenate([[0.0], np.cumsum(frac_row)])
    return float(np.interp(q, cdf, grid))


def _value_panel(ax, fig, recs: list[dict], title: str):
    """Distribution of a parameter's values after each epoch: curves (few epochs) or a heatmap."""
    rb = _rebin_values(recs)
    if rb is None:
        ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes, color="0.4")
        ax.set(title=title, xticks=[], yticks=[])
        return
    grid, frac = rb
    xs = [0 if r["kind"] == "init" else r["epoch"] + 1 for r in recs if r.get("value_lo") is not None
          and sum(r["value_hist"]) > 0]
    centers = 0.5 * (grid[1:] + grid[:-1])
    if len(xs) <= 6:
        import matplotlib
        cmap = matplotlib.colormaps["viridis"]
        kept = [r for r in recs if r.get("value_lo") is not None and sum(r["value_hist"]) > 0]
        for i, (x, r) in enumerate(zip(xs, kept)):
            c = cmap(i / max(len(xs) - 1, 1))
            label = "init" if x == 0 else f"epoch {x}"
            if r["value_hi"] == r["value_lo"]:  # a constant tensor (zero bias at init): a vertical line
                ax.axvline(r["value_lo"], color=c, lw=1.4, ls="--", label=f"{label}: all {r['value_lo']:.3g}")
            else:
                ax.plot(centers, frac[i], color=c, lw=1.4, label=label)
        ax.set(xlabel="value", ylabel="fraction of values", title=title)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        return
    x_edges = np.concatenate([[xs[0] - 0.5], 0.5 * (np.array(xs[1:]) + np.array(xs[:-1])), [xs[-1] + 0.5]])
    data = np.ma.masked_less_equal(frac.T, 0)
    vmax = max(float(frac.max()), 1e-6)
    m = ax.pcolormesh(x_edges, grid, data, cmap="magma", norm=LogNorm(vmin=max(vmax * 1e-4, 1e-7), vmax=vmax),
                      shading="flat")
    for q, ls in ((0.5, "-"), (0.01, "--"), (0.99, "--")):
        ax.plot(xs, [_quantile(grid, f, q) for f in frac], ls, color="cyan", lw=1.3)
    ax.set(xlabel="epochs completed (0 = init)", ylabel="value", title=title + "  (cyan: median, 1%, 99%)")
    fig.colorbar(m, ax=ax, label="fraction of values", pad=0.01)


def _signed_log_layout(edges: np.ndarray, pos: np.ndarray, neg: np.ndarray):
    """Rows of the signed log-magnitude axis, trimmed to the bins that hold any value.

    Returns (kmin, kmax) of the magnitude bins kept (inclusive) or None.
    """
    used = np.nonzero((pos.sum(axis=0) + neg.sum(axis=0)) > 0)[0]
    if used.size == 0:
        return None
    return int(used.min()), int(used.max())


def _signed_log_heatmap(ax, fig, edges, steps, pos, neg, zeros, n, title, epochs=None, xlim=None):
    """Heatmap over records (x: training step) of the signed log-magnitude histogram.

    y: negative magnitudes below the middle row (larger further down), the
    exact-zero row in the middle, positive magnitudes above. Colour: fraction
    of the histogrammed values in each bin.
    """
    lay = _signed_log_layout(edges, pos, neg)
    if lay is None or len(steps) == 0:
        zero_only = len(steps) > 0 and zeros.sum() > 0
        ax.text(0.5, 0.5, "all zeros" if zero_only else "not recorded", ha="center", va="center",
                transform=ax.transAxes, color="0.4")
        ax.set(title=title, xticks=[], yticks=[])
        return
    kmin, kmax = lay
    nb = kmax - kmin + 1
    tot = np.maximum(n, 1)[:, None].astype(np.float64)
    rows = np.concatenate([neg[:, kmin:kmax + 1][:, ::-1] / tot, zeros[:, None] / tot,
                           pos[:, kmin:kmax + 1] / tot], axis=1)           # (records, 2*nb+1)
    y_edges = np.arange(-nb - 0.5, nb + 1.5 - 1e-9, 1.0)
    s = np.asarray(steps, dtype=np.float64)
    if len(s) == 1:
        x_edges = np.array([s[0] - 0.5, s[0] + 0.5])
    else:
        mid = 0.5 * (s[1:] + s[:-1])
        x_edges = np.concatenate([[s[0] - (mid[0] - s[0])], mid, [s[-1] + (s[-1] - mid[-1])]])
    data = np.ma.masked_less_equal(rows.T, 0)
    m = ax.pcolormesh(x_edges, y_edges, data, cmap="viridis", norm=LogNorm(vmin=1e-4, vmax=1), shading="flat")
    # ticks at decade edges: positive edge j sits at y = 0.5 + (j - kmin)
    logs = np.log10(edges)
    j_all = [j for j in range(kmin, kmax + 2) if abs(logs[j] - round(logs[j])) < 1e-6]
    stride = max(1, math.ceil(len(j_all) / 4))
    # the decade labels closest to the zero row would collide with its "0"
    j_tick = [j for j in j_all[::-1][::stride] if (j - kmin) >= max(2.0, (2 * nb + 1) / 12) or nb < 6]
    ticks, labels = [0.0], ["0"]
    for j in j_tick:
        lab = f"1e{int(round(logs[j]))}"
        ticks += [0.5 + (j - kmin), -(0.5 + (j - kmin))]
        labels += [lab, "-" + lab]
    ax.set_yticks(ticks, labels, fontsize=7)
    ax.axhline(0.5, color="w", lw=0.4, alpha=0.6)
    ax.axhline(-0.5, color="w", lw=0.4, alpha=0.6)
    if epochs is not None and len(epochs) > 1:
        for i in np.nonzero(np.diff(epochs))[0]:
            ax.axvline(x_edges[i + 1], color="w", lw=0.6, ls="--", alpha=0.7)
    if xlim is not None:
        ax.set_xlim(*xlim)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set(xlabel="training step (batch); dashed: epoch boundary", ylabel="gradient value (signed, log |.|)",
           title=title)
    fig.colorbar(m, ax=ax, label="fraction of values", pad=0.01)


def _step_range(st):
    """x limits covering every batch record of the run (so a layer whose gradients stop shows it)."""
    steps = [r["step"] for r in st.batch]
    if not steps:
        return None
    lo, hi = min(steps), max(steps)
    every = max(int(st.meta.get("every", 1)), 1)
    return lo - every / 2, hi + every / 2


def _interesting_layers(st, limit: int = 4) -> list[str]:
    """Up to ``limit`` layers with a weight, in forward order: the first, the one with the most
    weights, the last convolution (WUS Fig. 1 shows VGG-11's last conv) and the last layer,
    then evenly spaced others."""
    cands = [l for l in st.layers() if st.epoch_records(l, "weight") or st.batch_records(l, "grad_weight")]
    if len(cands) <= limit:
        return cands
    size = {l["name"]: int(np.prod(l["params"].get("weight", [0]))) for l in st.meta.get("layers", [])}
    convs = [l for l in cands if "conv" in st.layer_type(l).lower()]
    pick = [cands[0], max(cands, key=lambda l: size.get(l, 0))]
    if convs:
        pick.append(convs[-1])
    pick.append(cands[-1])
    for i in np.linspace(0, len(cands) - 1, limit + 2).round().astype(int):
        pick.append(cands[i])
    out = []
    for l in pick:
        if l not in out:
            out.append(l)
    out = out[:limit]
    return [l for l in cands if l in out]


def plot_param_distributions(run: Run, path: str, layers: list[str] | None = None):
    """WUS Fig. 1 style: per layer, weight and bias value distributions after each epoch and the
    distributions of their gradients over training."""
    st = run.stats
    if st is None or not (st.epoch or st.batch):
        return None
    layers = layers or _interesting_layers(st)
    if not layers:
        return None
    fig = Figure(figsize=(20, 3.6 * len(layers) + 0.8), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(layers), 4))
    edges = st.bin_edges
    for row, name in zip(axes, layers):
        for col, param in ((0, "weight"), (1, "bias")):
            recs = [r for r in st.init if r["layer"] == name and r["param"] == param] + st.epoch_records(name, param)
            if not recs and param not in st.params(name):
                row[col].set_visible(False)  # e.g. a conv without bias (followed by BatchNorm)
                continue
            _value_panel(row[col], fig, recs, f"{name}.{param} values")
        for col, param in ((2, "weight"), (3, "bias")):
            steps, epochs, pos, neg, zeros, n = st.hist(name, "grad_" + param)
            if len(steps) == 0 and param not in st.params(name):
                row[col].set_visible(False)
                continue
            _signed_log_heatmap(row[col], fig, edges, steps, pos, neg, zeros, n, f"{name}: dL/d{param}", epochs,
                                _step_range(st))
    fig.suptitle(f"Parameter values and gradients over training (WUS Fig. 1 style): {run.label}",
                 fontweight="bold")
    return _save(fig, path)


def plot_activation_grad_distributions(run: Run, path: str, limit: int = 12):
    """dL/dy (the gradient each layer's backward receives) distribution over training, one panel per layer."""
    st = run.stats
    if st is None:
        return None
    layers = [l for l in st.layers() if st.hist(l, "grad_output")[0].size > 0]
    if not layers:
        return None
    if len(layers) > limit:
        layers = [layers[i] for i in np.unique(np.linspace(0, len(layers) - 1, limit).round().astype(int))]
    ncol = min(3, len(layers))
    nrow = math.ceil(len(layers) / ncol)
    fig = Figure(figsize=(6.2 * ncol, 3.3 * nrow + 0.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrow, ncol)).ravel()
    for ax, name in zip(axes, layers):
        steps, epochs, pos, neg, zeros, n = st.hist(name, "grad_output")
        _signed_log_heatmap(ax, fig, st.bin_edges, steps, pos, neg, zeros, n, f"{name}: dL/dy", epochs,
                            _step_range(st))
    for ax in axes[len(layers):]:
        ax.set_visible(False)
    fig.suptitle(f"Activation-gradient distributions over training: {run.label}", fontweight="bold")
    return _save(fig, path)


# -- densities and LARS ratios ----------------------------------------------------------------------------------
def plot_density(run: Run, path: str):
    """Fraction of non-zero values per layer: mean over the run (bars) and dL/dy over steps (heatmap)."""
    st = run.stats
    if st is None or not st.batch:
        return None
    layers = [l for l in st.layers() if st.tensors(l)]
    if not layers:
        return None
    kinds = [("activation", "activation y", "#4c72b0"), ("grad_output", "dL/dy", "#dd8452"),
             ("grad_weight", "dL/dW", "#c44e52")]
    h = max(3.5, 0.26 * len(layers) + 1.8)
    fig = Figure(figsize=(14, h), layout="constrained")
    ax_b, ax_h = fig.subplots(1, 2, width_ratios=[1, 1.4])
    y = np.arange(len(layers))
    bh = 0.8 / len(kinds)
    for i, (tensor, label, c) in enumerate(kinds):
        vals = []
        for l in layers:
            _, v = st.series(l, tensor, "density")
            vals.append(np.nanmean(v) * 100 if v.size and np.any(np.isfinite(v)) else np.nan)
        ax_b.barh(y - 0.4 + bh * (i + 0.5), vals, height=bh, color=c, label=label)
    ax_b.set_yticks(y, layers, fontsize=8 if len(layers) < 40 else 6)
    ax_b.invert_yaxis()
    ax_b.set(xlabel="density: non-zero values (%), mean over recorded batches", xlim=(0, 105),
             title="Density per layer")
    ax_b.grid(axis="x", alpha=0.3)
    ax_b.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13 * 4.0 / h), ncol=3, frameon=False)
    # heatmap of dL/dy density, layers x steps
    steps = sorted({r["step"] for r in st.batch if r["tensor"] == "grad_output"})
    if steps:
        idx = {s: i for i, s in enumerate(steps)}
        grid = np.full((len(layers), len(steps)), np.nan)
        for li, l in enumerate(layers):
            for r in st.batch_records(l, "grad_output"):
                if r.get("density") is not None:
                    grid[li, idx[r["step"]]] = 100 * r["density"]
        s = np.asarray(steps, dtype=np.float64)
        if len(s) == 1:
            xe = np.array([s[0] - 0.5, s[0] + 0.5])
        else:
            mid = 0.5 * (s[1:] + s[:-1])
            xe = np.concatenate([[s[0] - (mid[0] - s[0])], mid, [s[-1] + (s[-1] - mid[-1])]])
        m = ax_h.pcolormesh(xe, np.arange(len(layers) + 1) - 0.5, np.ma.masked_invalid(grid), cmap="viridis",
                            norm=Normalize(0, 100), shading="flat")
        ax_h.set_yticks(y, layers, fontsize=8 if len(layers) < 40 else 6)
        ax_h.invert_yaxis()
        ax_h.set(xlabel="training step (batch)", title="Density of dL/dy over training (blank: not computed)")
        ax_h.xaxis.get_major_locator().set_params(integer=True)
        fig.colorbar(m, ax=ax_h, label="non-zero values (%)", pad=0.01)
    else:
        ax_h.set_visible(False)
    fig.suptitle(f"Activation and gradient density: {run.label}", fontweight="bold")
    return _save(fig, path)


def plot_lars(run: Run, path: str):
    """LARS ratio ||W||/||ΔW_epoch|| (Miyauchi et al. eq. 1) per layer and epoch, as a heatmap."""
    st = run.stats
    if st is None or not st.epoch:
        return None
    layers = [l for l in st.layers() if st.epoch_records(l, "weight")]
    epochs = sorted({r["epoch"] for r in st.epoch})
    if not layers or not epochs:
        return None
    grid = np.full((len(layers), len(epochs)), np.nan)
    frozen = np.zeros_like(grid, dtype=bool)
    for i, l in enumerate(layers):
        for r in st.epoch_records(l, "weight"):
            j = epochs.index(r["epoch"])
            if r.get("lars") is not None:
                grid[i, j] = r["lars"]
            elif r.get("update_norm") == 0:
                frozen[i, j] = True
    h = max(3.5, 0.28 * len(layers) + 1.8)
    fig = Figure(figsize=(max(7.0, 0.6 * len(epochs) + 4), h), layout="constrained")
    ax = fig.subplots()
    finite = grid[np.isfinite(grid) & (grid > 0)]
    norm = LogNorm(vmin=finite.min(), vmax=max(finite.max(), finite.min() * 1.01)) if finite.size else None
    m = ax.pcolormesh(np.arange(len(epochs) + 1) - 0.5, np.arange(len(layers) + 1) - 0.5,
                      np.ma.masked_invalid(grid), cmap="viridis", norm=norm, shading="flat")
    fz = np.ma.masked_where(~frozen, np.ones_like(grid))
    ax.pcolormesh(np.arange(len(epochs) + 1) - 0.5, np.arange(len(layers) + 1) - 0.5, fz, cmap="Greys",
                  vmin=0, vmax=3, shading="flat")
    if grid.size <= 300:
        for i in range(len(layers)):
            for j in range(len(epochs)):
                v = grid[i, j]
                txt = "frozen" if frozen[i, j] else ("" if np.isnan(v) else (f"{v:.0f}" if v >= 100 else f"{v:.3g}"))
                if txt:
                    dark = norm is not None and np.isfinite(v) and norm(v) < 0.5
                    ax.text(j, i, txt, ha="center", va="center", fontsize=7, color="w" if dark else "k")
    ax.set_yticks(np.arange(len(layers)), [f"{l}.weight" for l in layers], fontsize=8 if len(layers) < 40 else 6)
    ax.set_xticks(np.arange(len(epochs)), [str(e + 1) for e in epochs])
    ax.invert_yaxis()
    ax.set(xlabel="epoch", title="LARS ratio ||W|| / ||W_end - W_begin|| per epoch\n"
                                  "(Miyauchi et al. eq. 1-3; large = the layer barely moved)")
    if norm is not None:
        fig.colorbar(m, ax=ax, label="||W|| / ||ΔW|| (log scale)", pad=0.01)
    fig.suptitle(f"{run.label}", fontsize=9)
    return _save(fig, path)
