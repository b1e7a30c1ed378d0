"""The converged-regime helper scripts (issue 18) read finished runs only, and sum what they claim to sum.

``benchmarks/papers/converged/tables.py`` (the README's per-paper tables, with each sweep's wall time from its report) and
``controllers.py`` (what each method decided per run) are scripts, not package code; these tests load them by
path and drive them with a small synthetic sweep directory (two finished runs and one interrupted) or report.
"""
import importlib.util
import json
import os

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.join(HERE, "..", "benchmarks", "papers", "converged")


def load(name):
    spec = importlib.util.spec_from_file_location(f"converged_{name}", os.path.join(SCRIPTS, f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def write_run(sweep, name, status, wall, method, rho=None, acc=0.5):
    d = os.path.join(sweep, "runs", name)
    os.makedirs(d)
    with open(os.path.join(d, "summary.json"), "w") as f:
        json.dump({"status": status, "wall_time_s": wall, "train_time_s": wall / 2, "final_test_acc": acc,
                   "best_test_acc": acc}, f)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"method": method, "seed": 0}, f)
    with open(os.path.join(d, "metrics.jsonl"), "w") as f:
        for e, r in enumerate(rho or [None]):
            rec = {"gradprune": {"rho_nnz": r}} if r is not None else {}
            f.write(json.dumps({"epoch": e + 1, "train_time_s": 1.0, "method_records": rec}) + "\n")


@pytest.fixture
def sweep(tmp_path):
    s = str(tmp_path / "gradprune")
    write_run(s, "seed-0__baseline", "completed", 1800.0, [])
    write_run(s, "seed-0__p0.9", "completed", 3600.0, ["gradprune:p=0.9"], rho=[0.4, 0.3, 0.2])
    write_run(s, "seed-1__p0.9", "interrupted", 7200.0, ["gradprune:p=0.9"], rho=[0.9])
    return s


def test_wall_time_sums_the_reports_finished_runs():
    rep = {"configs": [{"stats": {"wall_time_s": {"mean": 900.0, "n": 2}}},        # two runs of 900 s
                       {"stats": {"wall_time_s": {"mean": 3600.0, "n": 1}}},
                       {"stats": {"wall_time_s": {"n": 0}}},                        # nothing finished yet
                       {"stats": {}}]}
    n, hours = load("tables").wall_time(rep)
    assert n == 3
    assert hours == pytest.approx(1.5)          # 2 * 900 + 3600 s


def test_controllers_reads_finished_runs_and_gradprune_density(sweep):
    ctl = load("controllers")
    rs = ctl.runs(sweep)
    assert sorted(ctl.label(c) for c, _, _ in rs) == ["baseline", "gradprune:p=0.9"]
    c, _, m = next(r for r in rs if ctl.label(r[0]) != "baseline")
    cell = ctl.controller_cells(c, m)
    assert "mean over epochs 0.300" in cell and "epoch 1 0.400" in cell and "last 0.200" in cell


def test_runs_state_is_the_one_definition_of_finished(sweep, capsys):
    """lanes.sh and commit_finished.sh list runs through runs_state.py: completed and diverged are finished,
    an interrupted run is not (a sweep restarts it), and its epochs are shown."""
    rs = load("runs_state")
    write_run(sweep, "seed-2__baseline", "diverged", 60.0, [])
    assert rs.main(["finished", sweep]) == 0
    done = capsys.readouterr().out.split()
    assert sorted(os.path.basename(d) for d in done) == ["seed-0__baseline", "seed-0__p0.9", "seed-2__baseline"]
    assert rs.main(["unfinished", sweep]) == 0
    assert capsys.readouterr().out.strip().endswith("seed-1__p0.9 (1 epochs)")       # no epochs_run: no "/N"
    with open(os.path.join(sweep, "runs", "seed-1__p0.9", "config.json"), "w") as f:
        json.dump({"method": ["gradprune:p=0.9"], "epochs": 8, "epochs_run": 16}, f)
    rs.main(["unfinished", sweep])
    assert capsys.readouterr().out.strip().endswith("seed-1__p0.9 (1/16 epochs)")
    with open(os.path.join(sweep, "runs", "seed-1__p0.9", "metrics.jsonl"), "w") as f:   # 4 epochs, 10 s each but
        for e, wall in enumerate((10.0, 20.0, 5.0, 15.0)):                               # a resume's clock restart
            f.write(json.dumps({"epoch": e + 1, "wall_time_s": wall}) + "\n")
    rs.main(["unfinished", sweep])
    assert capsys.readouterr().out.strip().endswith("seed-1__p0.9 (4/16 epochs, about 10 s an epoch, 2 min left)")
    assert rs.main(["bogus"]) == 2


def test_runs_state_prepare_writes_sweep_json_once(tmp_path):
    """``prepare`` gives a new sweep folder its sweep.json (every run pending) so that another sweep's finished
    baseline runs can be copied in first; an existing sweep.json is left as it is."""
    rs = load("runs_state")
    spec = tmp_path / "spec.toml"
    spec.write_text('[train]\nmodel = "convnet-small"\ndataset = "synthetic"\nepochs = 1\n'
                    '[grid]\nmethod = ["baseline", "smd"]\nseed = [0, 1]\n')
    out = tmp_path / "out"
    assert rs.main(["prepare", str(spec), str(out)]) == 0
    doc = json.loads((out / "sweep.json").read_text())
    assert len(doc["runs"]) == 4 and {r["status"] for r in doc["runs"]} == {"pending"}
    (out / "sweep.json").write_text('{"runs": []}')
    rs.main(["prepare", str(spec), str(out)])
    assert json.loads((out / "sweep.json").read_text()) == {"runs": []}


def test_slu_gates_summary_tells_constant_gates_from_selective_ones():
    sg = load("slu_gates")
    flat = sg.gate_summary(np.full(1000, 0.8) + np.random.default_rng(0).normal(0, 0.001, 1000))
    assert flat["sd"] < 0.01 and flat["above_half"] == 1.0 and abs(flat["mean"] - 0.8) < 0.01
    split = sg.gate_summary(np.r_[np.full(600, 0.95), np.full(400, 0.1)])       # runs 60% of the images
    assert split["above_half"] == pytest.approx(0.6) and split["sd"] > 0.4
    assert split["min"] == pytest.approx(0.1) and split["max"] == pytest.approx(0.95)
    from minicnn.methods import parse_method_spec
    slu, smd = parse_method_spec("slu:target=0.8"), parse_method_spec("smd")
    assert sg.find_slu([smd, slu]) is slu and sg.find_slu([smd]) is None


def test_runs_state_adopt_copies_finished_runs_with_the_same_arguments(tmp_path):
    """``adopt`` copies another sweep's finished runs in under this sweep's run ids, matched by the arguments'
    hash (not by name): a run with other arguments, or one not finished, is not copied."""
    rs = load("runs_state")
    spec = tmp_path / "spec.toml"
    spec.write_text('[train]\nmodel = "convnet-small"\ndataset = "synthetic"\nepochs = 1\n'
                    '[grid]\nseed = [0]\ncase = [{method = "baseline"}, {method = "smd"}]\n')
    out = tmp_path / "out"
    rs.main(["prepare", str(spec), str(out)])
    ids = [r["id"] for r in json.loads((out / "sweep.json").read_text())["runs"]]
    base = next(i for i in ids if "baseline" in i)
    src = str(tmp_path / "src")
    write_run(src, "method-baseline__seed-0-" + base.rsplit("-", 1)[1], "completed", 10.0, [])     # same hash
    write_run(src, "method-baseline__seed-1-0badc0de", "completed", 10.0, [])                      # not wanted
    write_run(src, "method-smd__seed-0-" + ids[1].rsplit("-", 1)[1], "interrupted", 10.0, ["smd"])  # unfinished
    assert rs.adopt(src, str(out)) == [base]
    assert sorted(os.listdir(out / "runs" / base)) == ["config.json", "metrics.jsonl", "summary.json"]
    assert rs.adopt(src, str(out)) == []                  # already there: nothing copied twice


def test_paired_differences_are_per_seed_and_skip_unfinished_runs(tmp_path):
    """paired.py subtracts the same seed's reference (not the means), labels configurations by their run ids
    without seed and hash, and leaves out runs that did not complete."""
    pd = load("paired")
    assert pd.label("seed-0__case-slu-target0.8-6e5d4e6e") == "slu-target0.8"
    assert pd.label("method-baseline__seed-2-bd54d054") == "baseline"
    s = tmp_path / "sw"
    runs = []
    for seed, (b, m) in enumerate([(0.70, 0.65), (0.60, 0.58), (0.80, None)]):
        for name, acc in (("baseline", b), ("slu", m)):
            rid = f"seed-{seed}__case-{name}-0000000{seed}"
            status = "completed" if acc else "interrupted"
            runs.append({"id": rid, "dir": f"runs/{rid}", "args": {"seed": seed}, "status": status})
            write_run(str(s), rid, status, 1.0, [], acc=acc or 0.1)
    (s / "sweep.json").write_text(json.dumps({"runs": runs}))
    cfg = pd.configs(str(s))
    assert cfg["slu"] == pytest.approx({0: 65.0, 1: 58.0})
    assert pd.paired(cfg["slu"], cfg["baseline"]) == pytest.approx([-5.0, -2.0])   # seed 2 unfinished: left out
    assert "-5.0, -2.0 (-3.5 ± 2.1)" in pd.table(str(s))
    assert pd.train_accs(str(s)) == {"baseline": {}, "slu": {}}      # write_run records no train_acc
    for seed, acc in ((0, 0.9), (1, 0.8)):
        with open(s / "runs" / f"seed-{seed}__case-slu-0000000{seed}" / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"epoch": 2, "train_acc": acc}) + "\n")
    assert pd.train_accs(str(s))["slu"] == pytest.approx({0: 90.0, 1: 80.0})   # the last epoch's
    assert "| 85.0 ± 7.1 |" in pd.table(str(s))
    fv = load("fit_vs_test")          # its points: a run's last-epoch training accuracy beside its test accuracy
    assert fv.points(str(s)) == {"slu": [(0, pytest.approx(90.0), pytest.approx(65.0)),
                                         (1, pytest.approx(80.0), pytest.approx(58.0))]}
    assert "| slu | x | 2 | 85.0 | 61.5 | +23.5 |" in fv.table([(str(s), "x")])


def resnet8_with_masks():
    """An untrained resnet8 with an SLU, set up by slu_oracle.masked_slu: (oracle module, model, slu, override)."""
    from minicnn.methods.slu import SLU
    from minicnn.models import build
    so = load("slu_oracle")
    model = build("resnet8", num_classes=10, seed=0)
    slu = SLU(target=0.8).attach(model)
    return (so, model, *so.masked_slu("test.npz", model, [slu]))


def test_slu_oracle_masks_skip_exactly_the_chosen_images():
    """slu_oracle.py's override makes gated block b skip the images its mask says: skipping block b for every
    image gives the network whose block b has a zero residual (bn2's weight and bias 0), and a mask that skips
    half the images changes those images' outputs only."""
    so, model, slu, over = resnet8_with_masks()
    assert so.top_mask(np.array([0.1, 0.9, 0.5, 0.9]), 2).tolist() == [False, True, False, True]
    x = np.random.default_rng(1).standard_normal((6, 3, 32, 32)).astype(np.float32)
    G = len(slu.gated)
    over.masks = np.ones((G, 6), dtype=bool)
    full = model.forward(x)
    over.masks[1] = [True, False, True, False, True, False]
    half = model.forward(x)
    over.masks[1] = False
    skipped = model.forward(x)
    over.masks = None
    bn2 = slu.gated[1].bn2
    bn2.params["weight"][:] = 0.0
    bn2.params["bias"][:] = 0.0
    zero_residual = model.forward(x)
    np.testing.assert_allclose(skipped, zero_residual, rtol=1e-5, atol=1e-5)
    assert np.abs(skipped - full).max() > 1e-3                       # the block mattered
    np.testing.assert_allclose(half[0::2], full[0::2], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(half[1::2], skipped[1::2], rtol=1e-5, atol=1e-6)


def test_slu_signal_spearman_and_task_signal_shapes():
    """slu_signal.py: Spearman is the rank correlation (1 for any increasing map, -1 for a decreasing one), and
    the task signal has one finite, non-zero dL/dm per gate and image over batches of uneven size (SLU's own
    per-sample gradient is tested in test_slu.py)."""
    ss = load("slu_signal")
    a = np.random.default_rng(0).standard_normal(50)
    assert ss.spearman(a, np.exp(a)) == pytest.approx(1.0)
    assert ss.spearman(a, -a ** 3) == pytest.approx(-1.0)
    _, model, slu, _ = resnet8_with_masks()
    rng = np.random.default_rng(1)
    images = ss.Images(rng.integers(0, 256, (10, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, 10))
    dm = ss.task_signal(model, slu, images, None, None, batch=4)        # batches of 4, 4 and 2
    assert dm.shape == (len(slu.gated), 10) and np.isfinite(dm).all() and np.abs(dm).max() > 0


def test_slu_oracle_block_by_block_kl_is_measured_from_the_choices_already_made():
    """kl_of_skipping scores skipping block b *given* the masks chosen so far: when block b contributes nothing
    (its residual zeroed), skipping it changes nothing, whatever the other blocks do, so the KL is 0; measured
    from the all-blocks-run output instead, it would count block 0's skip too. A method other than SLU that acts
    at evaluation is refused."""
    so, model, slu, over = resnet8_with_masks()
    for q in ("weight", "bias"):
        slu.gated[1].bn2.params[q][:] = 0.0                    # gate 1's block: a zero residual
    rng = np.random.default_rng(2)
    images = load("slu_signal").Images(rng.integers(0, 256, (6, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, 6))
    lp_all = so.log_softmax(so.forward_all(model, images, None, None, over, None)[0])
    masks = np.ones((len(slu.gated), 6), dtype=bool)
    masks[0] = False                                           # block 1 (gate 0) skipped for every image
    assert np.abs(so.kl_of_skipping(model, images, None, None, over, masks, 1, lp_all)).max() < 1e-6
    assert so.kl_of_skipping(model, images, None, None, over, np.ones_like(masks), 0, lp_all).max() > 1e-4

    class PSGLike:
        name, acts_in_eval = "psg", True
    with pytest.raises(SystemExit, match="also uses psg"):
        so.refuse_other_eval_methods("m.npz", [slu, PSGLike()], slu)
    so.refuse_other_eval_methods("m.npz", [slu], slu)         # SLU alone: fine


def test_every_converged_spec_and_every_sweep_lanes_sh_names_is_valid():
    """The specs beside the scripts parse (the presets' --dry-run is tested in test_sweep.py), and every sweep the
    background lanes run is a converged preset or one of these specs (a typo would end a lane hours later)."""
    import glob
    import re

    from minicnn.sweep import load_spec
    from minicnn.sweep.presets import PRESETS
    specs = sorted(glob.glob(os.path.join(SCRIPTS, "*.toml")))
    assert specs
    for path in specs:
        spec = load_spec(path, data_dir=HERE)              # any folder: only the parsing is tested
        assert spec.runs and spec.description, path
    with open(os.path.join(SCRIPTS, "lanes.sh")) as f:
        text = f.read().replace("\\\n", " ")                # continued lines joined
    calls = [ln.split()[2:] for ln in text.splitlines() if re.match(r"\s+lane lane\d ", ln)]   # lane NAME WORKERS ...
    assert len(calls) == 1                                  # start: one lane
    for workers, *_ in calls:
        assert workers.isdigit() or re.fullmatch(r'"\$\{\w+:-\d+\}"', workers), workers
    lanes = [c[1:] for c in calls]
    assert sum(map(len, lanes)) >= 10
    specs_named = {n for lane in lanes for n in lane if n.endswith(".toml")}
    assert {"plateau_resnet20_e128.toml", "headline_e2train_e256.toml"} <= specs_named     # what is left to run
    for name in (n for lane in lanes for n in lane):
        if name.endswith(".toml"):
            assert os.path.isfile(os.path.join(SCRIPTS, name)), name
        else:
            assert name in PRESETS, name


def test_plateau_projection_is_labelled_and_only_made_from_shrinking_gains():
    """plateau.py's projection: gains of 4 then 1.6 points (ratio 0.4) project 0.64 and 0.256 for the next
    doublings, so the first doubling under 0.5 point is 64 -> 128 and the plateau is near 64."""
    pl = load("plateau")
    finals = {8: ([0.50], [1.0]), 16: ([0.54], [1.0]), 32: ([0.556], [1.0])}
    text = pl.projection(finals)
    assert "Projection (not measured)" in text and "0.40x" in text and "(+0.3)" in text
    assert "from 64 to 128 epochs" in text and "near 64 epochs" in text
    assert pl.projection({8: ([0.50], [1.0]), 16: ([0.52], [1.0]), 32: ([0.56], [1.0])}) == ""   # gains grew
    assert pl.projection({16: ([0.5], [1.0]), 32: ([0.6], [1.0])}) == ""                          # one gain only


def test_plateau_reads_completed_lengths_only_and_draws_its_figure(tmp_path, monkeypatch):
    """plateau.py --plot: run-length sweeps of synthetic runs (one interrupted, left out) give a PNG, and the table's
    gain is the difference of the completed runs' seed means."""
    pl = load("plateau")
    monkeypatch.setattr(pl, "OUT", str(tmp_path))

    def plateau_run(epochs, seed, status, acc):
        d = tmp_path / f"plateau_resnet8_e{epochs}" / "runs" / f"seed-{seed}"
        d.mkdir(parents=True)
        (d / "summary.json").write_text(json.dumps({"status": status, "final_test_acc": acc, "wall_time_s": 60.0}))
        (d / "config.json").write_text(json.dumps({"seed": seed}))
        (d / "metrics.jsonl").write_text("".join(json.dumps({"epoch": i + 1, "test_acc": acc * (i + 1) / epochs})
                                                 + "\n" for i in range(epochs)))

    for e, accs in ((16, (0.50, 0.52)), (32, (0.60, 0.62))):
        for seed, acc in enumerate(accs):
            plateau_run(e, seed, "completed", acc)
    plateau_run(32, 2, "interrupted", 0.1)
    assert sorted(len(v) for v in pl.lengths("resnet8").values()) == [2, 2]
    assert "| 32 | 2 | 61.0 ± 1.4 |" in pl.lengths_table("resnet8") and "+10.0 pt" in pl.lengths_table("resnet8")
    png = tmp_path / "plateau.png"
    assert pl.main(["--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pl.main(["--bogus"]) == 2


def test_updates_counts_gated_block_updates_and_reads_the_same_lr_baseline_curve(tmp_path):
    """updates.py: a run's updates per gated block are its batches trained per epoch times the fraction of gated
    blocks executed; a method is compared with the same-lr baseline curve at those updates (linear in log2 of the
    updates between the lengths around it, "outside" beyond them); a run adopted into two sweeps counts once."""
    up = load("updates")

    def run(sweep, rid, seed, method, lr, epochs, acc, batches, executed=None):
        d = tmp_path / sweep / "runs" / rid
        d.mkdir(parents=True)
        (d / "summary.json").write_text(json.dumps({"status": "completed", "final_test_acc": acc, "epochs": epochs}))
        with open(d / "metrics.jsonl", "w") as f:
            for e in range(epochs):
                rec = {"slu": {"executed": executed}} if executed is not None else {}
                f.write(json.dumps({"epoch": e + 1, "batches_cum": batches * (e + 1), "method_records": rec}) + "\n")
        return {"id": rid, "dir": f"runs/{rid}", "status": "completed",
                "args": {"seed": seed, "model": "resnet8", "lr": lr, "method": method}}

    a = [run("a", "b1", 0, ["baseline"], 0.1, 2, 0.60, 50),        # 100 updates
         run("a", "b4", 0, ["baseline"], 0.1, 8, 0.70, 50),        # 400
         run("a", "slu", 0, ["slu:target=0.5"], 0.1, 8, 0.66, 50, executed=0.5),    # 200: between them
         run("a", "slu_lo", 0, ["slu:target=0.1"], 0.1, 2, 0.40, 50, executed=0.25)]  # 25: below the curve
    (tmp_path / "a" / "sweep.json").write_text(json.dumps({"runs": a}))
    b = [run("b", "b1", 0, ["baseline"], 0.1, 2, 0.60, 50)]        # the same run id, adopted: counts once
    (tmp_path / "b" / "sweep.json").write_text(json.dumps({"runs": b}))
    data = up.runs(str(tmp_path))
    assert data[("slu:target=0.5", 0.1, 8)] == {0: (pytest.approx(200.0), pytest.approx(66.0))}
    assert data[("baseline", 0.1, 2)] == {0: (pytest.approx(100.0), pytest.approx(60.0))}
    curve = up.baseline_curve(data, 0.1)
    assert curve == [(100.0, pytest.approx(60.0)), (400.0, pytest.approx(70.0))]
    assert up.on_curve(curve, 200.0) == pytest.approx(65.0)          # halfway in log2: 100 -> 200 -> 400
    assert up.on_curve(curve, 25.0) is None and up.baseline_curve(data, 0.03) == []
    t = up.table(data)
    assert "| slu:target=0.5 | 0.1 | 8 | 1 | 200 | 66.0 | 65.0 | +1.0 |" in t
    assert "| slu:target=0.1 | 0.1 | 2 | 1 | 25 | 40.0 | outside the measured lengths |  |" in t
    png = tmp_path / "u.png"
    up.main([str(png), "--root", str(tmp_path)])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
