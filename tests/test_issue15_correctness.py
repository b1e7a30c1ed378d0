"""Issue 15, method correctness: each test here failed before its fix and passes after.

1. ``minicnn evaluate`` scores the network the run's own evaluation scored (PSG, fixed8, e2train: the
   fixed-point forward with the running activation ranges, which model.npz now holds).
2. gradprune at input-gradient sites (Conv-ReLU nets): the ledger's bytes equal an independent observer's.
3. WUS beside SLU: the targets are the backbone's (fc.bias), SLU's gates are not WUS's to freeze or count,
   and Eq. 1's fraction equals a hand count.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from minicnn.training import Trainer
from minicnn.training.setup import build_run


def _run(tmp_path, specs, model="resnet8", epochs=1, images=128, batch=32, seed=0, lr=0.02, **cfg):
    job = build_run(dict(model=model, dataset="synthetic", epochs=epochs, batch_size=batch, lr=lr,
                         train_images=images, method=list(specs), seed=seed, **cfg))
    out = str(tmp_path / "run")
    tr = Trainer(job["model"], job["ds"], job["opt"], job["schedule"], job["epochs"], batch_size=batch,
                 methods=job["methods"], ledger=job["ledger"], seed=seed, progress=False, verbose=False,
                 run_dir=out)
    return tr, tr.fit(), out


def _cli_evaluate(path):
    r = subprocess.run([sys.executable, "-m", "minicnn", "evaluate", "--checkpoint", path, "--json"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


# -- 1. evaluate scores the trained (fixed-point) network --------------------------------------------------
@pytest.mark.parametrize("spec, key", [("psg", "psg"), ("fixed8", "fixed8"), ("e2train", "psg")])
def test_evaluate_scores_the_fixed_point_network_the_run_scored(tmp_path, spec, key):
    from minicnn.training import evaluate, load_checkpoint
    tr, summary, out = _run(tmp_path, [spec])
    path = os.path.join(out, "model.npz")
    last = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))][-1]
    ev = _cli_evaluate(path)
    assert ev["images"] == summary["test_images"]
    assert ev["accuracy"] == summary["final_test_acc"]                 # to the last image
    assert ev["loss"] == pytest.approx(last["test_loss"], rel=1e-6)   # the same network, not just the same count
    # the running activation ranges are in model.npz: one per conv, those the trainer's method held
    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
    method = next(m for m in tr.methods if m.key == key)
    saved = meta["method_states"][key]["running"]
    assert set(saved) == method._convs and saved == method._running
    assert all(r > 0 for r in saved.values())
    # and the fp32 master weights are another network: without the hooks the loss differs
    model, _, mean, std = load_checkpoint(path)
    from minicnn.hooks import HookList
    model.set_hooks(HookList([]))
    fp32 = evaluate(model, tr.dataset.test_x, tr.dataset.test_y, 256, mean, std)
    assert fp32["loss"] != pytest.approx(last["test_loss"], rel=1e-6)


def test_a_model_npz_without_the_running_ranges_is_refused(tmp_path):
    """A PSG checkpoint written before the ranges were saved: one line, not a silent fp32 score."""
    import zipfile
    tr, summary, out = _run(tmp_path, ["fixed8"], images=64)
    path = os.path.join(out, "model.npz")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
    del meta["method_states"]
    arrays["meta"] = np.array(json.dumps(meta))
    old = str(tmp_path / "old.npz")
    np.savez(old, **arrays)
    assert zipfile.is_zipfile(old)
    r = subprocess.run([sys.executable, "-m", "minicnn", "evaluate", "--checkpoint", old], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert "no saved state for method fixed8" in r.stderr

