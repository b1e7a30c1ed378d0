"""The ``case`` grid axis: a method with the training settings its paper gives it, and the report's baseline for it.

E2-Train §4.1 trains PSG at lr 0.03 and every other configuration at 0.1; a
grid is a product, so "psg at 0.03 beside sgd at 0.1" needs configurations
whose flags are set together. The report must then compare PSG with the
baseline at *its* lr, not look for a baseline at lr 0.03 and find none.
"""
from __future__ import annotations

import os

import pytest

from minicnn.sweep import SpecError, parse_spec
from minicnn.sweep.results import Config, baseline_of

TRAIN = {"model": "convnet-small", "train-images": 100, "batch-size": 50, "lr": 0.1}


def spec(grid, train=TRAIN):
    return parse_spec({"train": dict(train), "grid": grid}, "/tmp/spec.toml")


def test_case_sets_its_flags_together_and_overrides_train():
    s = spec({"case": [{"method": "baseline"}, {"method": "psg", "lr": 0.03}], "seed": [0, 1]})
    assert len(s.runs) == 4
    by = {(tuple(r.args["method"]), r.args["seed"]): r for r in s.runs}
    assert by[(("baseline",), 0)].args["lr"] == 0.1                 # [train]'s value
    assert by[(("psg",), 1)].args["lr"] == 0.03                     # the case's own
    assert "--lr" in by[(("psg",), 1)].argv and "0.03" in by[(("psg",), 1)].argv
    assert "case" not in by[(("psg",), 1)].args                     # a case is not a train flag
    assert by[(("psg",), 0)].id.startswith("case-psg_lr0.03__seed-0-")
    assert len({r.id for r in s.runs}) == 4
    assert len({r.group_key for r in s.runs}) == 2                  # the seeds of a case are one configuration


@pytest.mark.parametrize("grid, message", [
    ({"case": ["psg"]}, "a case is a table of train flags"),
    ({"case": [{}]}, "a case is a table of train flags"),
    ({"case": [{"method": "psg", "lrr": 0.03}]}, "unknown key 'lrr'"),
    ({"case": [{"method": "psg", "lr": "fast"}]}, "lr = 'fast'"),
    ({"case": [{"method": "psg", "seed": 1}], "seed": [0]}, "seed is also a grid axis"),
    ({"method": [{"method": "psg"}]}, "method must be a string"),
    ({"epochs": [{"x": 1}]}, "tables go in the 'case' axis"),
])
def test_case_errors_are_one_line(grid, message):
    with pytest.raises(SpecError, match=message):
        spec(grid)


def _config(run, method, **args):
    rec = {"axes": run.axes, "args": run.args}
    full = {k: v for k, v in run.args.items() if k != "seed"}
    return Config(key=str(full), label=method, args=full, methods=list(full["method"]), runs=[(rec, None, [], "")])


def test_report_compares_a_case_with_the_baseline_at_its_own_settings():
    s = spec({"case": [{"method": "baseline"}, {"method": "psg", "lr": 0.03}, {"method": "smd:p=0.5"}],
              "seed": [0]})
    configs = [_config(r, r.args["method"][0]) for r in s.runs]
    base, psg, smd = configs
    assert baseline_of(psg, configs) is base            # lr differs, and only the case set it
    assert baseline_of(smd, configs) is base
    # a setting that is not the case's own still has to agree: no baseline at another epoch count
    other = spec({"case": [{"method": "baseline"}]}, train={**TRAIN, "epochs": 2})
    far = _config(other.runs[0], "baseline")
    assert baseline_of(psg, [far, psg]) is None


def test_an_exact_baseline_is_preferred():
    s = spec({"case": [{"method": "baseline"}, {"method": "baseline", "lr": 0.03}, {"method": "psg", "lr": 0.03}],
              "seed": [0]})
    base01, base003, psg = [_config(r, r.args["method"][0]) for r in s.runs]
    assert baseline_of(psg, [base01, base003, psg]) is base003


def test_converged_e2train_preset_end_to_end_on_synthetic_data(tmp_path, monkeypatch):
    """The converged preset's own grid (a few of its cases), shrunk to synthetic data: it runs, and the report finds
    each case's baseline (signSGD at lr 0.03 against SGD at 0.1), and SMD's stretched run is left to equal energy."""
    import tomllib

    from minicnn.sweep import run_sweep
    from minicnn.sweep.presets import CONVERGED
    from minicnn.sweep.results import build_report
    with open(os.path.join(CONVERGED, "e2train.toml"), "rb") as f:
        raw = tomllib.load(f)
    keep = {"baseline", "smd:p=0.5,epochs_scale=1.333", "signsgd"}
    cases = [c for c in raw["grid"]["case"]
             if isinstance(c["method"], str) and c["method"] in keep and "epochs" not in c]
    assert len(cases) == 3 and any(c.get("lr") == 0.03 for c in cases)
    raw["train"].update({"dataset": "synthetic", "model": "convnet-small", "epochs": 2, "milestones": "1",
                         "train-images": 64, "batch-size": 32})
    raw["grid"] = {"seed": [0], "case": cases}
    s = parse_spec(raw, str(tmp_path / "e2train.toml"))
    monkeypatch.setenv("MINICNN_NUM_THREADS", "1")
    doc = run_sweep(s, str(tmp_path / "out"), workers=2, progress=False, echo=lambda *a: None)
    assert [r["status"] for r in doc["runs"]] == ["completed"] * 3
    rep = build_report(str(tmp_path / "out"))
    claims = {c["id"]: c for c in rep["claims"]}
    assert claims["signsgd"]["baseline"] == "baseline"
    # SMD's stretched run is an equal-energy comparison (Fig. 3a); its SMB partner (2/3 of the iterations) is not in
    # this shrunk grid, so the report says so rather than comparing it with the full baseline
    eq = claims["smd-equal-energy"]
    assert eq["verdict"] == "not testable" and "nearest is at" in eq["checks"][0]["why"] and "smd" not in claims
    assert all(ch["verdict"] != "not testable" for i, c in claims.items() if i != "smd-equal-energy"
               for ch in c["checks"])


def _done(label, methods, energy, acc, sd=0.0, **args):
    """A configuration with completed runs: its mean training energy and final accuracy (stats as results computes)."""
    full = {"model": "resnet8", "lr": 0.1, "epochs": 64, "method": methods, **args}
    case = {"method": methods[0], **args}
    rec = {"axes": {"case": case}, "args": {**full, "seed": 0}, "status": "completed"}
    summary = {"status": "completed", "final_test_acc": acc, "test_images": 1017}
    c = Config(key=label, label=label, args=full, methods=methods, runs=[(rec, summary, [], "")])
    c.stats = {"energy_j": {"mean": energy, "std": 0.0, "n": 1}, "final_test_acc": {"mean": acc, "std": sd, "n": 1},
               "test_images": 1017}
    return c


def test_equal_energy_claims_pick_the_reference_at_the_same_energy():
    """E2-Train Fig. 3a compares SMD for 4/3 of the iterations with SMB for 2/3 (equal energy), not with the full
    baseline; Fig. 4 compares SLU with stochastic depth at equal energy. The report must pick those references."""
    from minicnn.sweep.results import check_claim, equal_energy_reference, load_claims, matches
    claims = {c["id"]: c for c in load_claims()}
    full = _done("baseline", ["baseline"], 100.0, 0.67)
    smb = _done("smb 2/3", ["baseline"], 67.0, 0.64, epochs=43, milestones="22,32")
    smd43 = _done("smd 4/3", ["smd:p=0.5,epochs_scale=1.333"], 66.0, 0.645)
    smd2 = _done("smd 2x", ["smd:p=0.5,epochs_scale=2"], 101.0, 0.60)
    smd1 = _done("smd 1x", ["smd:p=0.5"], 50.0, 0.62)
    sd = _done("sd", ["stochastic-depth:target=0.88"], 85.0, 0.60)
    slu = _done("slu", ["slu:target=0.8"], 88.0, 0.61)
    configs = [full, smb, smd43, smd2, smd1, sd, slu]
    assert equal_energy_reference(smd43, configs)[0] is smb           # not the full baseline: 66 J is near 67 J
    assert equal_energy_reference(smd2, configs)[0] is full
    ref, ratio = equal_energy_reference(smd1, configs)                # 50 J: nothing within 10%
    assert ref is None and ratio == pytest.approx(50 / 67)
    assert equal_energy_reference(slu, configs, ["stochastic-depth"])[0] is sd
    # the plain smd claim is about SMD at the baseline's epochs only; the equal-energy claim takes the stretched runs
    assert matches(claims["smd"], smd1) and not matches(claims["smd"], smd43)
    assert matches(claims["smd-equal-energy"], smd43) and matches(claims["smd-equal-energy"], smd2)
    ok = check_claim(claims["smd-equal-energy"], smd43, configs)
    assert ok["baseline"] == "smb 2/3" and ok["verdict"] == "agrees"  # +0.5 pt against SMB at equal energy
    bad = check_claim(claims["smd-equal-energy"], smd2, configs)
    assert bad["baseline"] == "baseline" and bad["verdict"] == "disagrees"   # -7 pt at equal energy
    lone = check_claim(claims["smd-equal-energy"], smd1, configs)
    assert lone["verdict"] == "not testable" and "nearest is at 0.75x" in lone["checks"][0]["why"]
    vs = check_claim(claims["slu-vs-stochastic-depth"], slu, configs)
    assert vs["baseline"] == "sd" and vs["verdict"] == "agrees" and vs["energy_ratio"] == pytest.approx(88 / 85)
