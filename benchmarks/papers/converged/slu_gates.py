"""What SLU's learned gates decide on the test set (issue 18, step 4: why SLU costs accuracy here).

    python benchmarks/papers/converged/slu_gates.py RUN_DIR/model.npz [...] [--data-dir DIR] [--draws 3]

For each model trained with ``slu`` (or ``e2train``, which contains it): every gate's probability p over the
test images (mean, spread across images, range, share above 0.5), and the test accuracy with the gates as
minicnn evaluates them (m = 1[p > 0.5], deterministic) and as the official code does (m = 1[p > u], sampled;
``--draws`` draws). E2-Train's SLU is meant to learn *which* inputs may skip a block (§3.2: "input-adaptive");
gates whose p is the same for every image skip at random, at the target rate, like per-image stochastic depth.
"""
import argparse
import sys

import numpy as np

from minicnn.cli import _load_data
from minicnn.methods.gating import GateDecision
from minicnn.methods.slu import SLU
from minicnn.training import evaluate
from minicnn.training.checkpoint_io import load_checkpoint


def gate_summary(p: np.ndarray) -> dict:
    """One gate's probabilities over the images: mean, spread across images, range, share above 0.5."""
    p = np.asarray(p, dtype=np.float64).ravel()
    return {"mean": float(p.mean()), "sd": float(p.std()), "min": float(p.min()), "max": float(p.max()),
            "above_half": float((p > 0.5).mean())}


def find_slu(methods):
    """The SLU among a checkpoint's methods (a combination such as e2train is rebuilt as its parts)."""
    return next((m for m in methods if isinstance(m, SLU)), None)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--data-dir", default="../shared/data/cifar-10-batches-py")
    ap.add_argument("--draws", type=int, default=3)
    a = ap.parse_args(argv)
    ds = _load_data("cifar10", a.data_dir)
    for path in a.models:
        model, meta, mean, std, methods = load_checkpoint(path, with_methods=True)
        slu = find_slu(methods)
        if slu is None:
            print(f"{path}: no slu gates in this model", file=sys.stderr)
            continue
        seen = []
        step = slu.gates.forward_step

        def recording(x, runner, _step=step):
            p = _step(x, runner)
            seen.append(np.asarray(p).ravel().copy())
            return p
        slu.gates.forward_step = recording
        model.eval()
        det = evaluate(model, ds.test_x, ds.test_y, 256, mean, std)["accuracy"]
        G = len(slu.gated)
        print(f"{path}: test accuracy {100 * det:.1f}% with deterministic gates (minicnn's evaluation)")
        for g in range(G):
            s = gate_summary(np.concatenate(seen[g::G]))
            print(f"  gate {g}: p mean {s['mean']:.3f}, sd across images {s['sd']:.3f}, range {s['min']:.3f}-"
                  f"{s['max']:.3f}, share above 0.5 {s['above_half']:.3f}")
        slu.gates.forward_step = step
        slu.decision = GateDecision(True)            # the official evaluation: sample m = 1[p > u]
        accs = []
        for k in range(a.draws):
            slu.rng = np.random.default_rng(1000 + k)
            accs.append(evaluate(model, ds.test_x, ds.test_y, 256, mean, std)["accuracy"])
        print(f"  sampled gates (the official evaluation), {a.draws} draws: "
              + ", ".join(f"{100 * x:.1f}%" for x in accs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
