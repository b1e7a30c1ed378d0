"""Runs that survive: interruption and resume, locks, atomic files in the right order, divergence.

Each test drives ``minicnn train`` as a user would (a subprocess), on a tiny
synthetic configuration.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

TINY = ["--model", "convnet-small", "--train-images", "192", "--batch-size", "32", "--epochs", "3",
        "--augment", "flip,crop", "--no-progress", "--method", "freeze:layers=conv1,start=1,stop=2"]


def run(*args, **kw):
    return subprocess.run([sys.executable, "-m", "minicnn", *args], capture_output=True, text=True,
                          timeout=600, **kw)


def start(*args):
    return subprocess.Popen([sys.executable, "-m", "minicnn", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for_epochs(run_dir, n, proc, timeout=300):
    path = os.path.join(run_dir, "metrics.jsonl")
    t0 = time.time()
    while time.time() - t0 < timeout:
        if os.path.exists(path) and sum(1 for _ in open(path)) >= n:
            return
        if proc.poll() is not None:
            pytest.fail(f"run ended early: {proc.communicate()}")
        time.sleep(0.05)
    pytest.fail("timed out waiting for an epoch")


def metrics(run_dir):
    rows = [json.loads(l) for l in open(os.path.join(run_dir, "metrics.jsonl"))]
    for r in rows:
        r.pop("wall_time_s")
        r.pop("train_time_s")
    return rows


def weights(run_dir):
    with np.load(os.path.join(run_dir, "model.npz")) as z:
        return {k: z[k] for k in z.files if k.startswith("state/")}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ref") / "run")
    r = run("train", *TINY, "--out", out)
    assert r.returncode == 0, r.stderr
    return out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_an_interrupted_run_resumes_to_the_same_weights_and_metrics(tmp_path, reference, sig):
    out = str(tmp_path / "run")
    p = start("train", *TINY, "--out", out)
    wait_for_epochs(out, 1, p)
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    if sig == signal.SIGINT:
        assert p.returncode == 130, err
        assert f"resume with: minicnn train --resume {out}" in err
        assert json.load(open(os.path.join(out, "summary.json")))["status"] == "interrupted"
    else:
        assert p.returncode == -signal.SIGKILL
    r = run("train", "--resume", out, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert metrics(out) == metrics(reference)
    ref, got = weights(reference), weights(out)
    assert all(np.array_equal(ref[k], got[k]) for k in ref)            # bit for bit
    s = json.load(open(os.path.join(out, "summary.json")))
    assert s["status"] == "completed" and s["epochs"] == 3
    assert s["method_records"] == json.load(open(os.path.join(reference, "summary.json")))["method_records"]


def test_resume_refuses_what_it_cannot_do(tmp_path, reference):
    r = run("train", "--resume", reference)
    assert r.returncode == 1 and "completed" in r.stderr and "nothing to resume" in r.stderr
    r = run("train", "--resume", reference, "--lr", "0.5")
    assert r.returncode == 1 and "--lr cannot be combined with --resume" in r.stderr
    r = run("train", "--resume", str(tmp_path / "nope"))
    assert r.returncode == 1 and "does not exist" in r.stderr


def test_a_directory_holding_a_run_is_refused_unless_overwrite(tmp_path, reference):
    import shutil
    out = str(tmp_path / "copy")
    shutil.copytree(reference, out)
    r = run("train", "--epochs", "1", "--out", out, "--no-progress")
    assert r.returncode == 1 and "already holds a completed run" in r.stderr and "--overwrite" in r.stderr
    os.remove(os.path.join(out, "summary.json"))                       # an unfinished run
    r = run("train", "--epochs", "1", "--out", out, "--no-progress")
    assert r.returncode == 1 and "--resume" in r.stderr
    r = run("train", "--epochs", "1", "--train-images", "64", "--out", out, "--no-progress", "--overwrite")
    assert r.returncode == 0, r.stderr
    assert "--overwrite: deleted" in r.stdout and "checkpoint.npz" in r.stdout
    assert json.load(open(os.path.join(out, "summary.json")))["epochs"] == 1


def test_two_runs_cannot_share_a_directory(tmp_path):
    out = str(tmp_path / "dup")
    p = start("train", *TINY, "--out", out)
    try:
        t0 = time.time()
        while not os.path.exists(os.path.join(out, "config.json")) and time.time() - t0 < 120:
            time.sleep(0.05)
        r = run("train", "--epochs", "1", "--out", out, "--no-progress", "--overwrite")
        assert r.returncode == 1 and "in use by another run" in r.stderr
        assert not os.path.exists(os.path.join(out, "summary.json")) or p.poll() is not None
    finally:
        p.kill()
        p.communicate()
    # the killed run left its lock file, but not its lock: the directory can be resumed
    r = run("train", "--resume", out, "--no-progress")       # (killed before its first epoch: starts over)
    assert r.returncode == 0, r.stderr
    assert json.load(open(os.path.join(out, "summary.json")))["status"] == "completed"


def test_files_are_written_atomically_and_summary_last(tmp_path):
    out = tmp_path / "fin"
    (out / "model.npz").mkdir(parents=True)
    r = run("train", "--epochs", "1", "--out", str(out))
    assert r.returncode == 1 and "model.npz" in r.stderr and "is a directory" in r.stderr
    assert not (out / "summary.json").exists() and not (out / "config.json").exists()
    out = tmp_path / "ok"
    r = run("train", "--epochs", "1", "--train-images", "64", "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    order = sorted(os.listdir(out), key=lambda f: os.stat(out / f).st_mtime_ns)
    assert order[-1] == "summary.json"
    assert order.index("cost.json") < order.index("model.npz") < order.index("summary.json")
    assert not [f for f in os.listdir(out) if f.endswith(".tmp") or ".tmp." in f]


@pytest.mark.parametrize("value", ["5", "1", "-0.1"])
def test_momentum_must_lie_in_0_1(value):
    r = run("train", "--momentum", value)
    assert r.returncode == 2 and "momentum" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_evaluate_refuses_nan_weights(tmp_path):
    from minicnn.models import build
    from minicnn.training import save_checkpoint
    m = build("convnet-small")
    m.state_dict()["conv1.weight"][0, 0, 0, 0] = np.nan
    path = str(tmp_path / "nan.npz")
    save_checkpoint(m, path, dataset="synthetic")
    r = run("evaluate", "--checkpoint", path)
    assert r.returncode == 1 and "non-finite weights" in r.stderr and "conv1.weight" in r.stderr


def test_validation_split_and_milestones(tmp_path):
    out = tmp_path / "val"
    r = run("train", "--epochs", "3", "--train-images", "200", "--val-images", "50", "--schedule", "step",
            "--milestones", "1,2", "--gamma", "0.5", "--lr", "0.02", "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    s = json.load(open(out / "summary.json"))
    assert s["controller_metric"] == "val_acc" and s["val_images"] == 50 and s["train_images"] == 150
    rows = metrics(out)
    assert [r["lr"] for r in rows] == pytest.approx([0.02, 0.01, 0.005])
    assert all("val_acc" in r for r in rows)
    r = run("train", "--milestones", "1,2")
    assert r.returncode == 1 and "--schedule step" in r.stderr


def test_internal_errors_are_one_line_and_debug_shows_the_traceback(capsys):
    from minicnn.cli import main
    from minicnn.methods import METHODS, Method, register_method

    @register_method("test-buggy")
    class Buggy(Method):
        def on_train_begin(self, state):
            return 1 / 0
    try:
        assert main(["train", "--epochs", "1", "--train-images", "64", "--method", "test-buggy", "--no-progress",
                     "--out", os.path.join(os.environ.get("TMPDIR", "/tmp"), f"buggy-{os.getpid()}"),
                     "--overwrite"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "internal error: ZeroDivisionError" in err[0] and "--debug" in err[0]
        with pytest.raises(ZeroDivisionError):
            main(["train", "--epochs", "1", "--train-images", "64", "--method", "test-buggy", "--no-progress",
                  "--out", os.path.join(os.environ.get("TMPDIR", "/tmp"), f"buggy-{os.getpid()}"),
                  "--overwrite", "--debug"])
    finally:
        METHODS.pop("test-buggy")
