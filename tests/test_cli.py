"""The command line as a user runs it: the default job, CIFAR training,
evaluate, cost, plot, inspect, and one-line errors for bad input."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

CIFAR10 = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "cifar-10-batches-py")
needs_cifar = pytest.mark.skipif(not os.path.isdir(CIFAR10), reason="../shared/data CIFAR-10 slice not present")


def run(*args, cwd=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "minicnn", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


def test_default_train_runs_on_synthetic_data_and_writes_the_run(tmp_path):
    r = run("train", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "run written to" in r.stdout
    run_dir = r.stdout.strip().splitlines()[-1].split("run written to ")[1]
    run_dir = os.path.join(tmp_path, run_dir)
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    for key in ("model", "dataset", "epochs", "methods", "train_images", "final_test_acc", "best_test_acc",
                "wall_time_s", "macs", "bytes", "energy_j", "dense_macs", "savings"):
        assert key in summary, key
    assert summary["dataset"] == "synthetic" and summary["methods"] == ["baseline"]
    assert 0.0 <= summary["final_test_acc"] <= 1.0
    assert summary["final_test_acc"] > 0.5            # learnable: far above chance (0.1)
    lines = [json.loads(l) for l in open(os.path.join(run_dir, "metrics.jsonl"))]
    assert [l["epoch"] for l in lines] == [1, 2, 3, 4, 5]
    for key in ("epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "wall_time_s",
                "macs_cum", "energy_j_cum"):
        assert key in lines[0]
    assert lines[1]["macs_cum"] == 2 * lines[0]["macs_cum"]     # same work every epoch
    # the checkpoint evaluates to the same accuracy
    e = run("evaluate", "--checkpoint", os.path.join(run_dir, "model.npz"), "--dataset", "synthetic", "--json")
    assert e.returncode == 0, e.stderr
    ev = json.loads(e.stdout.strip().splitlines()[-1])
    assert set(ev) == {"accuracy", "loss", "images"}
    assert ev["accuracy"] == pytest.approx(summary["final_test_acc"], abs=1e-9)


@pytest.mark.parametrize("args, message", [
    (["train", "--model", "resnet21"], "unknown model 'resnet21'"),
    (["train", "--dataset", "cifar10"], "needs a data directory (--data-dir)"),
    (["train", "--dataset", "cifar10", "--data-dir", "/nonexistent/dir"], "/nonexistent/dir"),
    (["train", "--dataset", "imagenet"], "unknown dataset"),
    (["train", "--method", "nosuch"], "unknown method 'nosuch'"),
    (["train", "--method", "freeze:layers=conv1,bogus=3"], "unknown option 'bogus'"),
    (["train", "--augment", "rotate", "--epochs", "1"], "rotate"),
    (["evaluate", "--checkpoint", "/nonexistent/model.npz"], "does not exist"),
    (["cost", "--model", "lenet"], "unknown model 'lenet'"),
    (["train", "--model", "vgg11-cifar", "--width", "0.001"], "leaves a layer with no channels"),
    (["train", "--width", "0"], "expected a finite number > 0"),
    (["train", "--seed", "-3"], "expected an integer >= 0"),
    (["train", "--train-images", "5"], "fewer than the 10 classes"),
    (["train", "--method", "freeze:layers=nosuch"], "no layer matches 'nosuch'"),
    (["evaluate", "--checkpoint", "."], "is a directory"),
    (["plot", "/nonexistent/run"], "does not exist"),
    (["inspect", "/nonexistent/run"], "does not exist"),
])
def test_bad_input_is_one_line_and_nonzero(tmp_path, args, message):
    r = run(*args, cwd=tmp_path)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert message in lines[0]


def test_malformed_data_dir_is_a_clear_error(tmp_path):
    bad = tmp_path / "cifar-10-batches-py"
    bad.mkdir()
    (bad / "data_batch_1").write_bytes(b"not a pickle")
    (bad / "test_batch").write_bytes(b"not a pickle")
    r = run("train", "--dataset", "cifar10", "--data-dir", str(bad), cwd=tmp_path)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_existing_run_is_not_overwritten(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    r = run("train", "--out", str(out), cwd=tmp_path)
    assert r.returncode == 1 and "already holds" in r.stderr
    assert (out / "summary.json").read_text() == "{}"


def test_cost_prints_the_resnet20_table():
    r = run("cost", "--model", "resnet20", "--batch-size", "2")
    assert r.returncode == 0, r.stderr
    assert "layer1.0.conv1" in r.stdout and "fc" in r.stdout
    assert "81626368" in r.stdout.replace(",", "")          # 2 images x 40,813,184 forward MACs


def test_same_seed_same_numbers(tmp_path):
    outs = []
    for k in range(2):
        r = run("train", "--epochs", "1", "--no-progress", "--seed", "3", "--out", str(tmp_path / f"r{k}"))
        assert r.returncode == 0, r.stderr
        m = json.loads(open(tmp_path / f"r{k}" / "metrics.jsonl").readline())
        outs.append({k2: v for k2, v in m.items() if k2 not in ("wall_time_s", "train_time_s")})
    assert outs[0] == outs[1]
    w0 = np.load(tmp_path / "r0" / "model.npz")
    w1 = np.load(tmp_path / "r1" / "model.npz")
    assert all(np.array_equal(w0[k], w1[k]) for k in w0.files)


@needs_cifar
def test_stats_plot_inspect_on_a_cifar_run(tmp_path):
    out = tmp_path / "run"
    r = run("train", "--model", "resnet8", "--dataset", "cifar10", "--data-dir", CIFAR10, "--epochs", "2",
            "--train-images", "512", "--stats", "--stats-every", "2", "--no-progress", "--out", str(out),
            "--method", "freeze:layers=conv1+bn1,stop=1")
    assert r.returncode == 0, r.stderr
    summary = json.load(open(out / "summary.json"))
    assert summary["methods"] == ["freeze:layers=conv1+bn1,params=all,start=0,stop=1"]
    assert 0 < summary["savings"]["macs"] < 1
    p = run("plot", str(out))
    assert p.returncode == 0, p.stderr
    pngs = [l for l in p.stdout.splitlines() if l.endswith(".png")]
    assert len(pngs) >= 4 and all(os.path.getsize(f) > 5000 for f in pngs)
    i = run("inspect", str(out))
    assert i.returncode == 0 and "layer1.0.conv1" in i.stdout
    i = run("inspect", str(out), "--layer", "nosuch")
    assert i.returncode == 1 and "nosuch" in i.stderr
    # evaluate without --dataset uses the dataset the checkpoint records (cifar10), not synthetic data
    e = run("evaluate", "--checkpoint", str(out / "model.npz"), "--data-dir", CIFAR10, "--json")
    assert e.returncode == 0, e.stderr
    assert json.loads(e.stdout)["images"] == 1017 and abs(json.loads(e.stdout)["accuracy"] -
                                                          summary["final_test_acc"]) < 1e-12


@needs_cifar
def test_accuracy_gate_convnet_small_on_the_cifar_slice(tmp_path):
    """The issue's recipe; PyTorch 2.13 reaches 43.2% (issue) on this slice. Gate: >= 40%."""
    out = tmp_path / "run"
    r = run("train", "--model", "convnet-small", "--dataset", "cifar10", "--data-dir", CIFAR10, "--epochs", "4",
            "--lr", "0.01", "--schedule", "cosine", "--augment", "flip", "--no-progress", "--out", str(out))
    assert r.returncode == 0, r.stderr
    summary = json.load(open(out / "summary.json"))
    assert summary["final_test_acc"] >= 0.40, summary["final_test_acc"]


def test_energy_table_can_be_overridden(tmp_path):
    def energy(*extra):
        r = run("cost", "--model", "convnet-small", "--batch-size", "4", *extra)
        assert r.returncode == 0, r.stderr
        line = next(l for l in r.stdout.splitlines() if l.startswith("energy per step"))
        return line
    dram, sram = energy(), energy("--memory-level", "cache_1mb")
    assert dram != sram
    table = tmp_path / "table.json"
    table.write_text('{"fp32_mult": 0.0, "fp32_add": 0.0}')
    assert "(arithmetic 0, " in energy("--energy-table", str(table))
    table.write_text('{"fp32_mul": 1.0}')
    r = run("cost", "--model", "convnet-small", "--energy-table", str(table))
    assert r.returncode == 1 and "unknown entries fp32_mul" in r.stderr


@pytest.mark.parametrize("content", [b"not a checkpoint", b"PK\x03\x04 truncated zip", None])
def test_unreadable_checkpoints_are_one_line_errors(tmp_path, content):
    path = tmp_path / "model.npz"
    if content is None:                      # a real .npy file, not an .npz
        np.save(tmp_path / "model.npy", np.zeros(3))
        path = tmp_path / "model.npy"
    else:
        path.write_bytes(content)
    r = run("evaluate", "--checkpoint", str(path))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "not a readable minicnn checkpoint" in r.stderr


def test_out_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "afile"
    f.write_text("keep me")
    r = run("train", "--out", str(f), "--epochs", "1")
    assert r.returncode == 1 and "is a file" in r.stderr and f.read_text() == "keep me"


def test_a_diverged_run_stops_with_status_and_exit_3(tmp_path):
    """--lr 1e9: stop at the first non-finite loss, say where, exit 3, keep finite weights, valid JSON."""
    out = tmp_path / "run"
    r = run("train", "--lr", "1e9", "--epochs", "2", "--no-progress", "--out", str(out))
    assert r.returncode == 3, r.stderr
    err = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(err) == 1 and "diverged" in err[0] and "epoch 1, batch" in err[0], r.stderr
    summary = json.load(open(out / "summary.json"), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert summary["status"] == "diverged"
    assert summary["diverged_at"]["epoch"] == 1 and summary["diverged_at"]["batch"] >= 1
    with np.load(out / "model.npz") as z:        # the last finite weights (here: the initial ones)
        assert all(np.all(np.isfinite(z[k])) for k in z.files if k.startswith("state/"))
    assert open(out / "metrics.jsonl").read() == ""      # no epoch finished


def test_train_says_once_that_e2train_trains_psg_at_lr_0_03(tmp_path):
    """Without --lr, a run with psg (or e2train, whose part it is) gets one line naming the paper's lr;
    the run keeps its --lr (config.json records what ran). With --lr given, or without psg, no line."""
    base = ["train", "--model", "convnet-small", "--epochs", "1", "--train-images", "32", "--no-progress"]
    r = run(*base, "--method", "psg", "--out", str(tmp_path / "a"))
    assert r.returncode == 0, r.stderr
    notes = [line for line in r.stdout.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "lr 0.03" in notes[0] and "E2-Train §4.1" in notes[0], r.stdout
    assert json.load(open(tmp_path / "a" / "config.json"))["lr"] == 0.01
    for extra in (["--method", "psg", "--lr", "0.03"], ["--method", "swa"]):
        r = run(*base, *extra, "--out", str(tmp_path / extra[-1]))
        assert r.returncode == 0, r.stderr
        assert not any(line.startswith("note:") for line in r.stdout.splitlines()), r.stdout


def test_swa_run_evaluates_to_its_summary(tmp_path):
    """With --method swa, summary.json's final accuracy is the averaged model's, and so is model.npz."""
    out = tmp_path / "swa"
    r = run("train", "--model", "resnet8", "--epochs", "2", "--train-images", "64", "--method", "swa:start=1",
            "--no-progress", "--out", str(out))
    assert r.returncode == 0, r.stderr
    summary = json.load(open(out / "summary.json"))
    assert summary["final_eval"]["weights_from"] == "swa"
    e = run("evaluate", "--checkpoint", str(out / "model.npz"), "--json")
    assert e.returncode == 0, e.stderr
    ev = json.loads(e.stdout.strip().splitlines()[-1])
    assert ev["accuracy"] == summary["final_test_acc"] and ev["images"] == summary["test_images"]
