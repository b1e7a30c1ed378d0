"""The ``case`` grid axis: a method with the training settings its paper gives it, and the report's baseline for it.

E2-Train §4.1 trains PSG at lr 0.03 and every other configuration at 0.1; a
grid is a product, so "psg at 0.03 beside sgd at 0.1" needs configurations
whose flags are set together. The report must then compare PSG with the
baseline at *its* lr, not look for a baseline at lr 0.03 and find none.
"""
from __future__ import annotations

import pytest

from minicnn.sweep import SpecError, parse_spec
from minicnn.sweep.report import Config, baseline_of

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
