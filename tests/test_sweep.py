"""minicnn sweep / report / reproduce: spec validation, the local pool, failures, Dask, the report.

The runs are real ``minicnn train`` child processes on tiny synthetic
configurations (1 epoch, 100 training images). Tests that need Dask or
Chromium skip when they are missing, and fail instead in CI (``CI=true`` or
``MINICNN_REQUIRE_DATA=1``; ``.ci/run`` installs both).
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from minicnn.sweep import SpecError, SweepError, build_report, exit_code, load_spec, parse_spec, run_sweep
from minicnn.sweep.engine import SweepDir, dir_state
from minicnn.sweep.results import mean_std, pareto_front

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STRICT = os.environ.get("CI") == "true" or os.environ.get("MINICNN_REQUIRE_DATA") == "1"

TINY_TRAIN = {"model": "convnet-small", "epochs": 1, "train-images": 100, "batch-size": 50}


def need(ok: bool, why: str):
    """Skip locally, fail in CI."""
    if not ok:
        (pytest.fail if STRICT else pytest.skip)(why)


def write_spec(folder, train=None, grid=None, extra=""):
    lines = [extra, "[train]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in (TINY_TRAIN if train is None else train).items()]
    lines += ["[grid]"] + [f"{k} = {json.dumps(v)}" for k, v in (grid or {}).items()]
    path = os.path.join(folder, "spec.toml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def env():
    e = dict(os.environ)
    e["PYTHONPATH"] = ROOT + os.pathsep + e.get("PYTHONPATH", "")
    e.setdefault("MINICNN_NUM_THREADS", "1")
    return e


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "minicnn", *args], capture_output=True, text=True,
                          env=env(), timeout=timeout)


# -- the spec ----------------------------------------------------------------------------------

def spec_of(tmp_path, **kw):
    return load_spec(write_spec(str(tmp_path), **kw))


@pytest.mark.parametrize("train,grid,message", [
    ({"modle": "resnet8"}, {}, "unknown key 'modle'"),
    ({"out": "x"}, {}, "out cannot be set"),
    ({"resume": "x"}, {}, "resume cannot be set"),
    ({"overwrite": True}, {}, "overwrite cannot be set"),
    ({"seed": 1}, {"seed": [0, 1]}, "seed is given in both"),
    ({"model": "resnet9"}, {}, "unknown model 'resnet9'"),
    ({}, {"method": ["baseline", "nosuchmethod:p=1"]}, "unknown method 'nosuchmethod'"),
    ({}, {"method": ["freeze:layers=conv1,bogus=1"]}, "unknown option 'bogus'"),
    ({"epochs": 0}, {}, "epochs = 0"),
    ({"epochs": "many"}, {}, "epochs = 'many'"),
    ({"schedule": "linear"}, {}, "choose one of: constant, step, cosine"),
    ({"nesterov": "yes"}, {}, "write nesterov = true"),
    ({"dataset": "mnist"}, {}, "unknown dataset 'mnist'"),
    ({}, {"seed": 3}, "an axis is a non-empty list"),
    ({}, {"seed": []}, "an axis is a non-empty list"),
    ({}, {"seed": [0, 0]}, "repeats a value"),
    ({}, {"lr": [[0.1]]}, "only method entries may be lists"),
    ({}, {"modle": ["resnet8"]}, "unknown key 'modle'"),
])
def test_spec_errors_are_one_clear_line(tmp_path, train, grid, message):
    with pytest.raises(SpecError) as e:
        spec_of(tmp_path, train={**TINY_TRAIN, **train}, grid=grid)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_spec_unknown_table_and_bad_toml(tmp_path):
    with pytest.raises(SpecError, match="unknown top-level key 'trian'"):
        spec_of(tmp_path, extra="[trian]\nmodel = 'resnet8'")
    p = tmp_path / "bad.toml"
    p.write_text("[train\nmodel=")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(str(p))
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(str(tmp_path / "missing.toml"))


def test_sweep_data_dir_replaces_the_specs(tmp_path):
    """``minicnn sweep --data-dir``: an existing directory replaces [train] data-dir (absolute, so the runs'
    ids change with it); a missing one is a one-line error, before anything runs."""
    path = write_spec(str(tmp_path), train={**TINY_TRAIN, "data-dir": "../elsewhere"}, grid={"seed": [0]})
    (tmp_path / "cifar").mkdir()
    spec = load_spec(path, str(tmp_path / "cifar"))
    assert spec.runs[0].args["data-dir"] == str(tmp_path / "cifar")
    assert spec.runs[0].id != load_spec(path).runs[0].id
    with pytest.raises(SpecError, match="--data-dir .*nowhere is not a directory"):
        load_spec(path, str(tmp_path / "nowhere"))
    r = cli("sweep", path, "--out", str(tmp_path / "out"), "--data-dir", str(tmp_path / "nowhere"), "--dry-run")
    assert r.returncode != 0 and "is not a directory" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_spec_grid_expansion_flags_paths_and_combinations(tmp_path):
    spec = spec_of(tmp_path, train={**TINY_TRAIN, "data-dir": "../data", "nesterov": True, "stats": False},
                   grid={"method": ["baseline", ["freeze:layers=conv1", "freeze:layers=fc"]], "seed": [0, 1, 2]})
    assert len(spec.runs) == 6
    combo = [r for r in spec.runs if len(r.args["method"]) == 2][0]
    assert combo.argv.count("--method") == 2 and "freeze:layers=fc" in combo.argv
    r = spec.runs[0]
    assert r.args["data-dir"] == os.path.normpath(os.path.join(str(tmp_path), "..", "data"))   # spec-relative
    assert "--nesterov" in r.argv and "--stats" not in r.argv and "--out" not in r.argv
    i = r.argv.index("--epochs")
    assert r.argv[i + 1] == "1"
    # ids: readable, distinct, stable across re-reading, and hash all the arguments
    assert len({x.id for x in spec.runs}) == 6
    assert [x.id for x in spec_of(tmp_path, train={**TINY_TRAIN, "data-dir": "../data", "nesterov": True,
                                                   "stats": False},
                                  grid={"method": ["baseline", ["freeze:layers=conv1", "freeze:layers=fc"]],
                                        "seed": [0, 1, 2]}).runs] == [x.id for x in spec.runs]
    assert re.fullmatch(r"method-baseline__seed-0-[0-9a-f]{8}", spec.runs[0].id)
    other = spec_of(tmp_path, train={**TINY_TRAIN, "epochs": 2}, grid={"method": ["baseline"], "seed": [0]})
    assert other.runs[0].id.startswith("method-baseline__seed-0-") and other.runs[0].id != spec.runs[0].id
    # group key: everything but the seed
    assert len({x.group_key for x in spec.runs}) == 2


def test_the_e2train_preset_runs_psg_as_section_4_1_does():
    """lr 0.03 and SWA for every PSG configuration, each compared with the baseline at [train]'s lr (a case)."""
    from minicnn.sweep.presets import preset_spec
    from minicnn.sweep.results import Config, baseline_of, load_claims, matches
    spec = preset_spec("e2train", "/nonexistent")
    by_method = {}
    for r in spec.runs:
        by_method.setdefault(tuple(r.args["method"]), set()).add(r.args["lr"])
    psg_like = [m for m in by_method if any(x.split(":")[0] in ("psg", "e2train") for x in m)]
    assert psg_like and all(by_method[m] == {0.03} and "swa" in m for m in psg_like)
    assert by_method[("baseline",)] == {0.05}
    configs = []
    for r in spec.runs:
        args = {k: v for k, v in r.args.items() if k != "seed"}
        if not any(c.args == args for c in configs):
            rec = {"axes": r.axes, "args": r.args}
            configs.append(Config(json.dumps(args), "", args, list(args["method"]), runs=[(rec, None, [], "")]))
    claims = {c["id"]: c for c in load_claims()}
    for m in psg_like:
        c = next(c for c in configs if tuple(c.methods) == m)
        assert baseline_of(c, configs) is not None
        assert any(matches(claims[k], c) for k in ("psg", "e2train"))


# -- a tiny real sweep on the local pool, shared by the tests below -----------------------------

FIX_TRAIN = {**TINY_TRAIN, "epochs": 3}   # the kill comes after epoch 1: two epochs of margin
GRID = {"method": ["baseline", "freeze:layers=conv1", "freeze:layers=nosuchlayer"], "seed": [0, 1]}


def _pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"     # a zombie has ended
    except OSError:
        return False


def _wait_for(cond, timeout=180.0, step=0.05):
    import time
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        v = cond()
        if v:
            return v
        time.sleep(step)
    raise AssertionError("timed out")


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    """A sweep of six 3-epoch runs on 2 workers (two of them fail), killed with SIGKILL once the
    first runs completed and a later one finished epoch 1, then run again to the end."""
    import signal
    d = tmp_path_factory.mktemp("sweep")
    spec = write_spec(str(d), train=FIX_TRAIN, grid=GRID, extra='description = "tiny test sweep"')
    out = os.path.join(str(d), "out")
    p = subprocess.Popen([sys.executable, "-m", "minicnn", "sweep", spec, "--out", out, "--workers", "2",
                          "--no-progress"], env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def one_done_one_in_epoch_2():
        try:
            runs = list(_runs(out).values())
        except (OSError, ValueError, KeyError):
            return None
        if not any(r["status"] == "completed" for r in runs):
            return None
        for r in runs:
            m = os.path.join(out, r["dir"], "metrics.jsonl")
            if r["status"] == "running" and "pid" in r and os.path.exists(m) and \
                    os.path.exists(os.path.join(out, r["dir"], "checkpoint.npz")):
                with open(m) as f:
                    if len(f.read().splitlines()) == 1:
                        return runs
        return None
    try:
        runs = _wait_for(one_done_one_in_epoch_2)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        children = [r["pid"] for r in runs if r["status"] == "running"]
        _wait_for(lambda: not any(_pid_alive(c) for c in children), timeout=60)     # no orphans
    finally:
        if p.poll() is None:
            p.kill()
    before = {r["id"]: {"state": dir_state(os.path.join(out, r["dir"])),
                        "stamp": _stamp(os.path.join(out, r["dir"], "summary.json"))} for r in runs}
    r = cli("sweep", spec, "--out", out, "--workers", "2", "--no-progress")
    return spec, out, r, before


def _stamp(path):
    return os.stat(path).st_mtime_ns if os.path.exists(path) else None


def _runs(out):
    with open(os.path.join(out, "sweep.json")) as f:
        return {r["id"]: r for r in json.load(f)["runs"]}


def test_killed_sweep_leaves_no_orphan_and_resumes_without_redoing_or_losing_runs(local_sweep):
    spec, out, r, before = local_sweep
    states = [b["state"] for b in before.values()]
    assert "completed" in states and "resumable" in states, states   # the kill came mid-sweep
    assert "nosuchlayer" not in " ".join(k for k, b in before.items() if b["state"] != "empty")
    after = _runs(out)
    n_done = states.count("completed")
    assert f"6 runs, {n_done} already done, {6 - n_done} to run" in r.stdout
    for rid, b in before.items():
        x = after[rid]
        if b["state"] == "completed":          # not done again
            assert x["attempts"] == 1 and _stamp(os.path.join(out, x["dir"], "summary.json")) == b["stamp"]
        elif b["state"] == "resumable":        # resumed, not restarted
            assert x["attempts"] == 2 and x["status"] == "completed"
            with open(os.path.join(out, "logs", f"{rid}.log")) as f:
                assert f.read().count("$ minicnn train --resume") == 1   # the command the sweep ran
        if x["status"] == "completed":         # every epoch exactly once, none lost
            with open(os.path.join(out, x["dir"], "metrics.jsonl")) as f:
                assert [json.loads(ln)["epoch"] for ln in f if ln.strip()] == [1, 2, 3]
            with open(os.path.join(out, x["dir"], "summary.json")) as f:
                assert json.load(f)["status"] == "completed"


def test_sweep_runs_every_configuration_and_records_a_failing_one(local_sweep):
    spec, out, r, _ = local_sweep
    runs = _runs(out)
    assert len(runs) == 6
    bad = [x for x in runs.values() if "nosuchlayer" in x["id"]]
    good = [x for x in runs.values() if "nosuchlayer" not in x["id"]]
    assert all(x["status"] == "failed" for x in bad), bad
    assert all("no layer matches" in x["error"] for x in bad)
    assert all(x["status"] == "completed" for x in good), good
    for x in good:            # ordinary run directories
        with open(os.path.join(out, x["dir"], "summary.json")) as f:
            s = json.load(f)
        assert s["config"]["seed"] == x["args"]["seed"]
        assert s["methods"][0].startswith(x["args"]["method"][0])
    # exit status 1 and one error line naming a failed run
    assert r.returncode == 1, r.stderr
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("minicnn: error:")]
    assert len(err) == 1 and "2 of 6 runs failed" in err[0] and "no layer matches" in err[0]


def test_rerun_skips_done_runs_and_retries_failed_ones(local_sweep):
    spec, out, _, _ = local_sweep
    before = _runs(out)
    assert exit_code({"runs": list(before.values())}) == 1
    stamps = {rid: os.stat(os.path.join(out, x["dir"], "summary.json")).st_mtime_ns
              for rid, x in before.items() if x["status"] == "completed"}
    r = cli("sweep", spec, "--out", out, "--workers", "2", "--no-progress")
    assert r.returncode == 1
    assert "6 runs, 4 already done, 2 to run" in r.stdout
    after = _runs(out)
    for rid, st in stamps.items():
        assert os.stat(os.path.join(out, after[rid]["dir"], "summary.json")).st_mtime_ns == st
        assert after[rid]["attempts"] == before[rid]["attempts"]
    assert all(x["attempts"] == 2 for x in after.values() if x["status"] == "failed")


def test_reopening_a_sweep_keeps_its_records_and_leaves_an_unchanged_file_alone(local_sweep, tmp_path):
    spec, out, _, _ = local_sweep
    copy = str(tmp_path / "copy")
    shutil.copytree(out, copy)
    path = os.path.join(copy, "sweep.json")
    with open(path, "rb") as f:
        before = f.read()
    doc = json.loads(before)
    sd = SweepDir(copy, load_spec(spec))
    sd.doc["threads_per_run"] = doc["threads_per_run"]
    sd.save()
    with open(path, "rb") as f:
        assert f.read() == before            # nothing changed but the clock: the file is untouched
    done = [dict(r) for r in doc["runs"] if r["status"] == "completed"]
    # every finished run keeps the action that made it: fresh, resume, or overwrite (a run killed with the
    # fixture's sweep before its first checkpoint leaves a dirty folder, which the rerun starts over; whether
    # the second worker's run got that far depends on the machine's load)
    odd = [(r["id"], r.get("action"), r.get("final_test_acc")) for r in done
           if r.get("action") not in ("fresh", "resume", "overwrite") or r.get("final_test_acc") is None]
    assert done and not odd, odd
    # a file that lacks a finished run's accuracy (an older sweep.json, or a run copied in from another sweep)
    # gets it from the run's own summary.json, and the file is then written
    for r in doc["runs"]:
        r.pop("final_test_acc", None)
    with open(path, "w") as f:
        json.dump(doc, f)
    sd = SweepDir(copy, load_spec(spec))
    sd.doc["threads_per_run"] = doc["threads_per_run"]
    sd.save()
    after = _runs(copy)
    for r in done:
        with open(os.path.join(copy, r["dir"], "summary.json")) as f:
            assert after[r["id"]]["final_test_acc"] == json.load(f)["final_test_acc"] == r["final_test_acc"]
        assert after[r["id"]]["action"] == r["action"]


def test_dry_run_lists_without_running(local_sweep, tmp_path):
    spec, out, _, _ = local_sweep
    lines = []
    run_sweep(load_spec(spec), str(tmp_path / "dry"), dry_run=True, echo=lines.append)
    assert lines[-1].startswith("6 runs, 6 to do") and not (tmp_path / "dry").exists()
    lines = []
    run_sweep(load_spec(spec), out, dry_run=True, echo=lines.append)
    assert lines[-1].startswith("6 runs, 2 to do") and sum("-> skip" in ln for ln in lines) == 4


def test_sweep_errors(local_sweep, tmp_path):
    spec, out, _, _ = local_sweep
    with pytest.raises(SweepError, match="exclude each other"):
        run_sweep(load_spec(spec), str(tmp_path / "x"), workers=2, scheduler="tcp://127.0.0.1:1")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    with pytest.raises(SweepError, match="holds no sweep.json"):
        run_sweep(load_spec(spec), str(tmp_path / "busy"), progress=False)
    # on the command line: one line, exit 1, nothing ran
    bad = write_spec(str(tmp_path), grid={"method": ["baseline", "wus-typo"]})
    r = cli("sweep", bad, "--out", str(tmp_path / "y"))
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "unknown method 'wus-typo'" in r.stderr
    assert not (tmp_path / "y").exists()
    with pytest.raises(SweepError, match="not a sweep directory"):
        build_report(str(tmp_path))


def test_changed_spec_adds_new_runs_and_retires_old_ones(local_sweep, tmp_path):
    spec, out, _, _ = local_sweep
    copy = str(tmp_path / "copy")
    shutil.copytree(out, copy)
    grid2 = {"method": ["baseline"], "seed": [0, 1]}
    spec2 = load_spec(write_spec(str(tmp_path), train=FIX_TRAIN, grid=grid2))
    doc = run_sweep(spec2, copy, dry_run=True, echo=lambda *_: None)
    assert [r["status"] for r in doc["runs"]] == ["completed", "completed"]   # same arguments, same directories
    assert len(doc["retired"]) == 4


# -- the report ----------------------------------------------------------------------------------

def test_report_numbers_equal_those_from_the_runs_summaries(local_sweep):
    _, out, _, _ = local_sweep
    rep = build_report(out)
    rep.pop("_configs")
    runs = _runs(out)
    summaries = {}
    for x in runs.values():
        p = os.path.join(out, x["dir"], "summary.json")
        if x["status"] == "completed":
            with open(p) as f:
                summaries.setdefault(json.dumps(x["args"]["method"]), []).append(json.load(f))
    labels = {c["label"]: c for c in rep["configs"]}
    assert set(labels) == {"baseline", "freeze:layers=conv1", "freeze:layers=nosuchlayer"}
    assert labels["freeze:layers=nosuchlayer"]["stats"]["status"] == {"failed": 2}
    assert labels["freeze:layers=nosuchlayer"]["stats"]["final_test_acc"]["mean"] is None
    for label, method in (("baseline", ["baseline"]), ("freeze:layers=conv1", ["freeze:layers=conv1"])):
        ss = summaries[json.dumps(method)]
        st = labels[label]["stats"]
        assert len(ss) == 2 and st["final_test_acc"]["n"] == 2
        for key, path in (("final_test_acc", ("final_test_acc",)), ("wall_time_s", ("wall_time_s",)),
                          ("energy_j", ("energy_j", "total")), ("macs", ("macs", "total")),
                          ("bytes", ("bytes", "total")), ("savings_energy", ("savings", "energy"))):
            vals = []
            for s in ss:
                v = s
                for k in path:
                    v = v[k]
                vals.append(v)
            assert st[key]["mean"] == pytest.approx(sum(vals) / 2, rel=1e-12, abs=1e-15)
            assert st[key]["std"] == pytest.approx(abs(vals[0] - vals[1]) / math.sqrt(2), rel=1e-9, abs=1e-15)
    # freeze saved work against the dense run, the baseline none
    assert labels["freeze:layers=conv1"]["stats"]["savings_macs"]["mean"] > 0
    assert labels["baseline"]["stats"]["savings_macs"]["mean"] == 0


def test_method_records_are_flattened():
    from minicnn.sweep.results import _flatten
    rec = {"wus": {"per_epoch": [{"epoch": 1, "kind": "normal", "density": 1.0},
                                 {"epoch": 2, "kind": "wus", "density": 0.5},
                                 {"epoch": 3, "kind": "wus", "density": 0.0}],
                   "switches": 2, "frozen": True, "layers": ["fc"], "nw": {"conv1": 0.5}}}
    assert _flatten(rec) == {"wus.per_epoch.kind=normal (epochs)": 1.0, "wus.per_epoch.kind=wus (epochs)": 2.0,
                             "wus.per_epoch.density (epoch mean)": 0.5, "wus.switches": 2.0,
                             "wus.frozen": 1.0, "wus.nw.conv1": 0.5}


def test_a_string_record_counts_by_its_kind_with_numbers_folded():
    """LARS-skip's reasons carry the nw value of the epoch: one row per kind of decision, not one per value."""
    from minicnn.sweep.results import _flatten
    reasons = ["l* = conv4 (nw 41.5 > 40)", "l* = conv4 (nw 1.2e+03 > 40)", "l* = conv2 (nw 40.6 > 40)",
               "accuracy fell: full epoch (\u00a7IV)", "l* = layer1.0.conv2 (nw 3 > 2)"]
    rec = {"lars-skip": {"per_epoch": [{"epoch": i + 1, "reason": r} for i, r in enumerate(reasons)]}}
    assert _flatten(rec) == {"lars-skip.per_epoch.reason=l* = conv4 (nw # > #) (epochs)": 2.0,
                             "lars-skip.per_epoch.reason=l* = conv2 (nw # > #) (epochs)": 1.0,
                             "lars-skip.per_epoch.reason=accuracy fell: full epoch (\u00a7IV) (epochs)": 1.0,
                             "lars-skip.per_epoch.reason=l* = layer1.0.conv2 (nw # > #) (epochs)": 1.0}


def test_mean_std_and_pareto():
    assert mean_std([1.0, 3.0]) == (2.0, pytest.approx(math.sqrt(2)))
    assert mean_std([5.0]) == (5.0, 0.0) and mean_std([None]) == (None, None)
    #            cheap/bad   dear/good   dominated   equal-cost better
    pts = [(1.0, 0.5), (3.0, 0.9), (3.0, 0.4), (2.0, 0.7)]
    assert pareto_front(pts) == [0, 1, 3]


def test_claims_file_is_complete_and_checks_run():
    from minicnn.sweep.results import Config, check_claim, load_claims
    claims = load_claims()
    assert len({c["id"] for c in claims}) == len(claims) >= 12
    for c in claims:
        assert {"methods", "paper", "source", "claim", "shape", "checks"} <= set(c), c["id"]
        assert re.search(r"(Sec\.|Table|Fig\.)", c["source"]), c["id"]
    # a synthetic check: 50% MACs saved and accuracy 0.5 point down with 1 point seed spread -> agrees
    def cfg(methods, acc, sd, saving):
        s = {"status": "completed", "final_test_acc": acc, "savings": {"macs": saving}, "test_images": 1017}
        c = Config("k" + str(methods), "+".join(methods), {"method": methods}, methods,
                   runs=[({"args": {"seed": 0}, "status": "completed"}, s, [], None)])
        c.stats = {"final_test_acc": {"mean": acc, "std": sd, "n": 2}, "test_images": 1017}
        return c
    smd = next(c for c in claims if c["id"] == "smd")
    base = cfg(["baseline"], 0.60, 0.01, 0.0)
    ok = check_claim(smd, cfg(["smd:p=0.5"], 0.595, 0.01, 0.5), [base])
    assert ok["verdict"] == "agrees" and "within noise" in ok["checks"][1]["why"]
    worse = check_claim(smd, cfg(["smd:p=0.5"], 0.55, 0.01, 0.5), [base])
    assert worse["verdict"] == "disagrees"
    lone = check_claim(smd, cfg(["smd:p=0.5"], 0.6, 0.0, 0.5), [])
    assert lone["verdict"] == "not testable"


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


def test_report_html_renders_in_headless_chromium(local_sweep, tmp_path):
    _, out, _, _ = local_sweep
    from minicnn.sweep import write_report
    write_report(out, str(tmp_path / "rep"))
    files = set(os.listdir(tmp_path / "rep"))
    assert {"report.md", "report.html", "report.json", "acc_vs_energy.png", "acc_vs_time.png",
            "curves.png"} <= files
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "![Accuracy against training energy (J)](acc_vs_energy.png)" in md
    browser = _chromium()
    need(browser is not None, "chromium is not installed (apt-get install chromium)")
    # the report has no script; a copy gets one that writes what the browser decoded into the DOM
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "<script" not in page and "src='acc_vs_energy.png'" not in page   # images are inlined
    probe = page.replace("</body>", "<script>window.addEventListener('load', () => { document.body.setAttribute("
                         "'data-probe', [...document.images].map(i => i.complete + ':' + i.naturalWidth + 'x' + "
                         "i.naturalHeight).join(' ') + ' tables:' + document.querySelectorAll('table').length + "
                         "' rows:' + document.querySelectorAll('tbody tr').length); });</script></body>")
    probe_path = tmp_path / "probe.html"
    probe_path.write_text(probe)
    profile = tempfile.mkdtemp()
    try:
        res = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                              "--disable-background-networking", "--disable-component-update", "--no-first-run",
                              f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom",
                              probe_path.as_uri()], capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    m = re.search(r'data-probe="([^"]*)"', res.stdout)
    assert m, res.stderr[-2000:]
    probe_text = m.group(1)
    images = re.findall(r"(true|false):(\d+)x(\d+)", probe_text)
    n_png = len([f for f in files if f.endswith(".png")])
    assert len(images) == n_png >= 4
    assert all(c == "true" and int(w) > 300 and int(h) > 200 for c, w, h in images), probe_text
    tables = int(re.search(r"tables:(\d+)", probe_text).group(1))
    rows = int(re.search(r"rows:(\d+)", probe_text).group(1))
    assert tables >= 2 and rows >= 3 + 1   # three configurations, at least one claims row
    assert "freeze:layers=conv1" in res.stdout and "energy saved" in res.stdout


# -- Dask ------------------------------------------------------------------------------------------

def _strip_times(obj):
    if isinstance(obj, dict):
        return {k: _strip_times(v) for k, v in obj.items()
                if "wall_time" not in k and "train_time" not in k and k != "out"}
    if isinstance(obj, list):
        return [_strip_times(v) for v in obj]
    return obj


def test_dask_local_cluster_gives_the_local_pools_results(local_sweep, tmp_path):
    try:
        from dask.distributed import LocalCluster
    except ImportError:
        need(False, 'dask.distributed is not installed (pip install "minicnn[dask]")')
        return
    spec, out, _, _ = local_sweep
    grid = {"method": ["baseline", "freeze:layers=conv1"], "seed": [1]}
    sub = load_spec(write_spec(str(tmp_path), train=FIX_TRAIN, grid=grid))
    dout = str(tmp_path / "dask")
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = env()["PYTHONPATH"]        # the workers (and their runs) import this minicnn
    try:
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl:
            doc = run_sweep(sub, dout, scheduler=cl.scheduler_address, progress=False, echo=lambda *_: None)
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = old
    assert exit_code(doc) == 0 and [r["status"] for r in doc["runs"]] == ["completed", "completed"]
    local = _runs(out)
    for r in doc["runs"]:
        assert r["id"] in local          # same arguments -> same run id as the local pool's run
        a, b = os.path.join(dout, r["dir"]), os.path.join(out, local[r["id"]]["dir"])
        assert sorted(os.listdir(a)) == sorted(set(os.listdir(b)) - {".lock"})   # the lock stays on the worker
        for name in ("summary.json", "cost.json"):
            with open(os.path.join(a, name)) as fa, open(os.path.join(b, name)) as fb:
                ja, jb = json.load(fa), json.load(fb)
            if name == "summary.json":
                ja.pop("config"), jb.pop("config")
            assert _strip_times(ja) == _strip_times(jb)
        with open(os.path.join(a, "metrics.jsonl")) as fa, open(os.path.join(b, "metrics.jsonl")) as fb:
            assert [_strip_times(json.loads(x)) for x in fa] == [_strip_times(json.loads(x)) for x in fb]
        za, zb = np.load(os.path.join(a, "model.npz")), np.load(os.path.join(b, "model.npz"))
        for k in zb.files:
            if k != "meta":
                np.testing.assert_array_equal(za[k], zb[k])
    assert dir_state(os.path.join(dout, doc["runs"][0]["dir"])) == "completed"


# -- presets ---------------------------------------------------------------------------------------

def test_presets_validate_or_name_the_missing_method(tmp_path):
    from minicnn.methods import METHODS
    from minicnn.sweep import PRESETS, reproduce
    (tmp_path / "data").mkdir()
    for name, converged in [(n, c) for c in (False, True) for n in (*PRESETS, "all")]:
        try:
            lines = []
            reproduce(name, data_dir=str(tmp_path / "data"), out=str(tmp_path / f"{name}-{converged}"),
                      dry_run=True, echo=lines.append, converged=converged)
        except SpecError as e:        # a method that has not landed yet: one line naming it
            missing = re.search(r"unknown method '([^']+)'", str(e))
            assert missing and missing.group(1) not in METHODS and "\n" not in str(e), str(e)
        else:
            assert lines[-1].endswith("to do (dry run: nothing started)")
    with pytest.raises(SweepError, match="is not a directory"):
        reproduce("wus", data_dir=str(tmp_path / "nothere"))

