"""plot_runs on the run directories a real training writes.

Every run here is a real (tiny) ``Trainer.fit`` on synthetic data: its
``metrics.jsonl``, ``summary.json``, ``cost.json`` (the ledger's own output)
and ``stats.jsonl`` are exactly what ``minicnn train`` writes, so a change of
what the trainer or the ledger writes cannot leave the plots tested against a
format nobody produces any more.
"""
import json
import os
import shutil

import numpy as np
import pytest

from minicnn.cost import Ledger
from minicnn.data import synthetic
from minicnn.layers import BatchNorm2d, Conv2d, GlobalAvgPool2d, Linear, ReLU, Sequential
from minicnn.methods import build_methods
from minicnn.models import build
from minicnn.plots import load_run, plot_runs
from minicnn.plots.figures import _rebin_values
from minicnn.stats import StatsRecorder
from minicnn.training import SGD, ConstantLR, Trainer

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def tiny_cnn():
    """Five layers (few panels to draw: the stats figures cost time per layer)."""
    rng = np.random.default_rng(0)
    return Sequential(("conv1", Conv2d(3, 4, 3, stride=2, padding=1, rng=rng)), ("bn1", BatchNorm2d(4)),
                      ("relu1", ReLU()), ("pool", GlobalAvgPool2d()), ("fc", Linear(4, 10, rng=rng)))


def train_run(run_dir, model="tiny", methods=(), stats=False, ledger=True, epochs=3, n_train=40,
              n_test=20, batch_size=10):
    """A real training run written to run_dir (well under a second of training); returns the summary."""
    ds = synthetic(n_train=n_train, n_test=n_test, seed=0)
    net = tiny_cnn() if model == "tiny" else build(model)
    opt = SGD(net, lr=0.05, momentum=0.9, weight_decay=5e-4)
    led = Ledger(net, momentum=True, weight_decay=True) if ledger else None
    rec = StatsRecorder(net, every=2) if stats else None
    tr = Trainer(net, ds, opt, ConstantLR(0.05), epochs, batch_size=batch_size, methods=build_methods(methods),
                 ledger=led, stats=rec, run_dir=str(run_dir), progress=False)
    return tr.fit()


def captured_figures(monkeypatch, write=False):
    """Figures handed to figures._save, by file name, to read what was drawn.

    write=False skips rendering the PNG (the slow part), for tests that check content, not files.
    """
    from minicnn.plots import figures
    drawn, save = {}, figures._save

    def capture(fig, path):
        drawn[os.path.basename(path)] = fig
        return save(fig, path) if write else path

    monkeypatch.setattr(figures, "_save", capture)
    return drawn


def assert_pngs(paths):
    for p in paths:
        with open(p, "rb") as f:
            assert f.read(8) == PNG_MAGIC, p
        assert os.path.getsize(p) > 5000, p


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """Stats recorded; conv1 frozen from the third epoch (its dW skipped: actual < dense)."""
    run = tmp_path_factory.mktemp("runs") / "freeze_run"
    train_run(run, methods=["freeze:layers=conv1,start=2"], stats=True)
    return run


@pytest.fixture(scope="module")
def baseline_run(tmp_path_factory):
    """Metrics, summary, cost and model only (no stats)."""
    run = tmp_path_factory.mktemp("runs") / "baseline_run"
    train_run(run)
    return run


TRAIN_PHASES = ("forward", "backward_input", "backward_weight", "update")


def train_shares(cost: dict, key: str) -> dict:
    """Each layer's share (%) of the run's training total, computed from cost.json directly."""
    per = {n: sum(float(ph.get(p, {}).get(key, 0) or 0) for p in TRAIN_PHASES) for n, ph in cost["layers"].items()}
    total = sum(per.values())
    return {n: 100 * v / total for n, v in per.items() if v > 0}


def drawn_shares(ax) -> list:
    return [float(t.get_text().strip().rstrip("%")) for t in ax.texts if t.get_text().endswith("%")]


@pytest.fixture(scope="module")
def full_plots(full_run):
    """plot_runs on full_run once (PNGs written): (paths, {file name: Figure})."""
    with pytest.MonkeyPatch.context() as mp:
        drawn = captured_figures(mp, write=True)
        paths = plot_runs([str(full_run)])
    return paths, drawn


def test_one_full_run_draws_every_figure_into_run_plots(full_run, full_plots):
    paths, _ = full_plots
    names = sorted(os.path.basename(p) for p in paths)
    assert names == sorted(["curves.png", "accuracy_vs_cost.png", "cost_by_layer.png", "param_distributions.png",
                            "activation_grad_distributions.png", "density.png", "lars.png"])
    assert all(os.path.dirname(p) == str(full_run / "plots") for p in paths)
    assert_pngs(paths)


def test_cost_by_layer_shows_what_the_ledger_wrote(full_run, full_plots):
    """Bars, share labels and the dense outline of the figure agree with the real cost.json."""
    fig = full_plots[1]["cost_by_layer.png"]
    cost = json.loads((full_run / "cost.json").read_text())
    conv1 = cost["layers"]["conv1"]
    assert conv1["backward_weight"]["macs"] < cost["dense_layers"]["conv1"]["backward_weight"]["macs"]  # frozen
    for ax, key in zip(fig.axes, ("macs", "energy_pj")):
        want = train_shares(cost, key)
        assert drawn_shares(ax) == pytest.approx([round(want[n], 1) for n in cost["order"] if n in want], abs=0.051)
        assert "dense cost (no method)" in ax.get_legend_handles_labels()[1]   # conv1's skipped dW shows
    rows = train_shares(cost, "macs") | train_shares(cost, "energy_pj")
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == [n for n in cost["order"] if n in rows]


def test_accuracy_vs_cost_and_curves_plot_the_metrics_lines(full_run, full_plots):
    drawn = full_plots[1]
    metrics = [json.loads(l) for l in (full_run / "metrics.jsonl").read_text().splitlines()]
    ys = [np.asarray(line.get_ydata(), float) for ax in drawn["curves.png"].axes for line in ax.get_lines()]
    assert any(np.allclose(y, [m["train_loss"] for m in metrics]) for y in ys)
    xs = [np.asarray(line.get_xdata(), float) for ax in drawn["accuracy_vs_cost.png"].axes
          for line in ax.get_lines()]
    assert any(len(x) == len(metrics) and np.allclose(x / x[-1], [m["macs_cum"] / metrics[-1]["macs_cum"]
                                                                 for m in metrics]) for x in xs) or \
        any(len(x) == len(metrics) and np.allclose(x / x[-1], [m["energy_j_cum"] / metrics[-1]["energy_j_cum"]
                                                              for m in metrics]) for x in xs)


def test_two_runs_overlay_and_prefix_per_run_figures(full_run, baseline_run, tmp_path, monkeypatch):
    drawn = captured_figures(monkeypatch)     # PNG writing is tested above; here only what is drawn, and where
    out = tmp_path / "cmp"
    paths = plot_runs([str(full_run), str(baseline_run)], str(out))
    names = {os.path.basename(p) for p in paths}
    assert {"curves.png", "accuracy_vs_cost.png", "freeze_run_cost_by_layer.png", "baseline_run_cost_by_layer.png",
            "freeze_run_param_distributions.png", "freeze_run_density.png", "freeze_run_lars.png"} <= names
    assert not any(n.startswith("baseline_run_") and "cost" not in n for n in names)   # no stats: no such figures
    assert all(os.path.dirname(p) == str(out) for p in paths)
    assert set(drawn) == names
    legend = [t.get_text() for t in drawn["curves.png"].axes[0].get_legend().get_texts()]
    assert any(t.startswith("freeze_run") for t in legend) and any(t.startswith("baseline_run") for t in legend)


def test_missing_files_skip_their_figures(tmp_path):
    run = tmp_path / "r"
    train_run(run, ledger=False, epochs=1)           # no ledger: no cost columns, no cost.json
    assert not (run / "cost.json").exists()
    (run / "cost.json").write_text("not json")   # unreadable: skipped, not fatal
    paths = plot_runs([str(run)], str(tmp_path / "out"))
    assert [os.path.basename(p) for p in paths] == ["curves.png"]
    assert_pngs(paths)


def test_same_basename_runs_get_distinct_file_names(baseline_run, tmp_path, monkeypatch):
    captured_figures(monkeypatch)
    dirs = []
    for parent in ("a", "b"):
        run = tmp_path / parent / "run"
        shutil.copytree(baseline_run, run)
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


@pytest.mark.parametrize("model", ["tiny", "resnet20"])
def test_cost_by_layer_draws_the_share_labels_its_axis_promises(model, tmp_path, monkeypatch):
    """The x label says "label: share of the run total": every non-zero row carries its share, at any
    layer count (resnet20 has over 40 rows; the labels once stopped at 40)."""
    run = tmp_path / model
    train_run(run, model=model, epochs=1, n_train=4, n_test=2, batch_size=4)
    cost = json.loads((run / "cost.json").read_text())
    drawn = captured_figures(monkeypatch)
    plot_runs([str(run)], str(tmp_path / "out"))
    fig = drawn["cost_by_layer.png"]
    rows = len(train_shares(cost, "macs") | train_shares(cost, "energy_pj"))
    assert (rows > 40) == (model == "resnet20")
    for ax, key in zip(fig.axes, ("macs", "energy_pj")):
        assert "share of the run total" in ax.get_xlabel()
        assert len(drawn_shares(ax)) == len(train_shares(cost, key))
        assert sum(drawn_shares(ax)) == pytest.approx(100.0, abs=0.05 * rows)
