"""plot_runs on fake run directories (metrics.jsonl, summary.json, cost.json, and a
stats.jsonl recorded from a tiny real model)."""
import json
import os
from types import SimpleNamespace

import numpy as np
import pytest

from minicnn.hooks import HookList
from minicnn.layers import Linear, ReLU, Sequential
from minicnn.plots import load_run, plot_runs
from minicnn.plots.figures import _rebin_values
from minicnn.stats import StatsRecorder

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PHASES = ("forward", "backward_input", "backward_weight", "update", "eval")


def write_metrics(run, epochs=3, with_cost=True, scale=1.0):
    rows = []
    for e in range(1, epochs + 1):
        r = {"epoch": e, "lr": 0.1, "train_loss": 2.0 / e, "train_acc": 0.3 + 0.1 * e, "test_loss": 2.2 / e,
             "test_acc": 0.25 + 0.1 * e, "wall_time_s": 1.5 * e}
        if with_cost:
            r.update(macs_cum=int(1e9 * e * scale), energy_j_cum=4.6e-3 * e * scale, bytes_cum=2e9 * e,
                     dense_macs_cum=int(1e9 * e), dense_energy_j_cum=4.6e-3 * e)
        rows.append(r)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_summary(run, methods):
    (run / "summary.json").write_text(json.dumps({"model": "mlp", "dataset": "fake", "epochs": 3,
                                                  "methods": methods, "final_test_acc": 0.55}))


def write_cost(run, names, skip_weight=()):
    def ph(macs):
        return {"macs": int(macs), "ops": int(macs), "bytes": macs * 0.5, "energy_pj": macs * 4.6}
    layers, dense = {}, {}
    for i, n in enumerate(names):
        base = 0 if n.startswith("relu") else 1e8 * (i + 1)
        dense[n] = {p: ph(base) for p in PHASES}
        layers[n] = {p: ph(0 if (p == "backward_weight" and n in skip_weight) else base) for p in PHASES}
    (run / "cost.json").write_text(json.dumps({"layers": layers, "dense_layers": dense, "order": list(names)}))


def write_stats(run, epochs=3, batches=6):
    rng = np.random.default_rng(0)
    model = Sequential(("fc1", Linear(8, 16, rng=rng)), ("relu1", ReLU()), ("fc2", Linear(16, 4, rng=rng)))
    rec = StatsRecorder(model, every=2)
    hooks = HookList([rec])
    model.set_hooks(hooks)
    rec.attach(str(run))
    st = SimpleNamespace(epoch=0, batch=0, global_step=0)
    for e in range(epochs):
        st.epoch = e
        hooks.call("on_epoch_begin", st)
        if e == epochs - 1:
            model["fc1"].freeze()
        for b in range(batches):
            st.batch = b
            hooks.batch_begin(st)
            y = model.forward(rng.normal(size=(10, 8)).astype(np.float32))
            model.zero_grad()
            model.backward(rng.normal(size=y.shape).astype(np.float32))
            hooks.call("on_after_backward", st)
            for layer in model.leaves():
                for k, g in layer.grads.items():
                    if g is not None:
                        layer.params[k] -= 0.05 * g
            hooks.call("on_batch_end", st)
            st.global_step += 1
        hooks.call("on_epoch_end", st)
    rec.save(str(run))
    return [l.name for l in model.leaves()]


def assert_pngs(paths):
    for p in paths:
        with open(p, "rb") as f:
            assert f.read(8) == PNG_MAGIC, p
        assert os.path.getsize(p) > 5000, p


@pytest.fixture
def full_run(tmp_path):
    run = tmp_path / "wus_run"
    run.mkdir()
    names = write_stats(run)
    write_metrics(run, scale=0.7)
    write_summary(run, ["wus:win=2"])
    write_cost(run, names, skip_weight=("fc1",))
    return run


def test_one_full_run_draws_every_figure_into_run_plots(full_run):
    paths = plot_runs([str(full_run)])
    names = sorted(os.path.basename(p) for p in paths)
    assert names == sorted(["curves.png", "accuracy_vs_cost.png", "cost_by_layer.png", "param_distributions.png",
                            "activation_grad_distributions.png", "density.png", "lars.png"])
    assert all(os.path.dirname(p) == str(full_run / "plots") for p in paths)
    assert_pngs(paths)


def test_two_runs_overlay_and_prefix_per_run_figures(full_run, tmp_path):
    other = tmp_path / "baseline_run"      # metrics, summary and cost only: no stats figures for it
    other.mkdir()
    write_metrics(other)
    write_summary(other, ["baseline"])
    write_cost(other, ["fc1", "relu1", "fc2"])
    out = tmp_path / "cmp"
    paths = plot_runs([str(full_run), str(other)], str(out))
    names = {os.path.basename(p) for p in paths}
    assert {"curves.png", "accuracy_vs_cost.png", "wus_run_cost_by_layer.png", "baseline_run_cost_by_layer.png",
            "wus_run_param_distributions.png", "wus_run_density.png", "wus_run_lars.png"} <= names
    assert not any(n.startswith("baseline_run_") and "cost" not in n for n in names)
    assert all(os.path.dirname(p) == str(out) for p in paths)
    assert_pngs(paths)


def test_missing_files_skip_their_figures(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    write_metrics(run, with_cost=False)
    (run / "cost.json").write_text("not json")   # unreadable: skipped, not fatal
    paths = plot_runs([str(run)], str(tmp_path / "out"))
    assert [os.path.basename(p) for p in paths] == ["curves.png"]
    assert_pngs(paths)


def test_same_basename_runs_get_distinct_file_names(tmp_path):
    dirs = []
    for parent in ("a", "b"):
        run = tmp_path / parent / "run"
        run.mkdir(parents=True)
        write_metrics(run)
        write_cost(run, ["fc1", "relu1", "fc2"])
        dirs.append(str(run))
    paths = plot_runs(dirs, str(tmp_path / "out"))
    names = {os.path.basename(p) for p in paths}
    assert {"run_cost_by_layer.png", "run-2_cost_by_layer.png"} <= names


def test_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        plot_runs([str(tmp_path / "nosuch")])
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_runs([str(tmp_path)])


def test_rebinning_of_value_histograms_conserves_mass():
    w0 = np.random.default_rng(0).normal(size=2000)
    recs = []
    for scale in (1.0, 2.0):
        counts, edges = np.histogram(w0 * scale, bins=64)
        recs.append({"kind": "epoch", "epoch": 0, "numel": 2000, "value_lo": float(edges[0]),
                     "value_hi": float(edges[-1]), "value_hist": counts.tolist()})
    recs.append({"kind": "init", "epoch": 0, "numel": 2000, "value_lo": 0.0, "value_hi": 0.0,
                 "value_hist": [0] * 32 + [2000] + [0] * 31})
    grid, frac = _rebin_values(recs)
    assert np.allclose(frac.sum(axis=1), 1.0)
    # the wider distribution spreads over more of the common grid
    assert np.count_nonzero(frac[1] > 1e-3) > np.count_nonzero(frac[0] > 1e-3)
    # the point mass at 0 lands in the one bin that holds 0
    k = np.searchsorted(grid, 0.0, side="right") - 1
    assert frac[2, k] == pytest.approx(1.0)


@pytest.mark.parametrize("nlayers", [5, 60], ids=["few-layers", "over-40-layers"])
def test_cost_by_layer_draws_the_share_labels_its_axis_promises(nlayers, tmp_path, monkeypatch):
    """The x label says "label: share of the run total": every non-zero row carries its share, at any layer count."""
    from minicnn.plots import figures
    drawn = []
    monkeypatch.setattr(figures, "_save", lambda fig, path: drawn.append(fig) or path)
    run = tmp_path / "r"
    run.mkdir()
    names = [f"conv{i}" for i in range(nlayers)]
    write_cost(run, names)
    figures.plot_cost_breakdown(load_run(str(run)), str(tmp_path / "c.png"))
    (fig,) = drawn
    for ax in fig.axes:
        assert "share of the run total" in ax.get_xlabel()
        shares = [float(t.get_text().strip().rstrip("%")) for t in ax.texts if t.get_text().endswith("%")]
        assert len(shares) == nlayers
        assert sum(shares) == pytest.approx(100.0, abs=0.05 * nlayers)
