"""Where SWA's final accuracy comes from: the average, the BatchNorm update, or both (issue 18, step 4).

    python benchmarks/papers/converged/swa_ablation.py RUN_DIR [RUN_DIR ...]

RUN_DIR is a finished ``minicnn train`` run that used ``--method swa`` and still has its ``checkpoint.npz``
(written after the last epoch, before SWA swapped the average in: it holds the last epoch's weights, BatchNorm
statistics and SWA's running average). Nothing in RUN_DIR is changed: the run is rebuilt from its
``config.json`` in memory and scored six ways on the test set:

    last                the last epoch's weights and BatchNorm statistics (what metrics.jsonl's last line scored)
    last + bn plain     the last epoch's weights, BatchNorm statistics recomputed by SWA's pass over the training
                        images in order, not augmented (``swa:bn_augment=false``, minicnn's pass until 2026-12-06)
    last + bn aug       the same, the pass shuffled and augmented as training (``bn_augment=true``, the default)
    swa                 SWA's average with the last epoch's BatchNorm statistics (``swa:bn_update=false``)
    swa + bn plain      SWA's average, statistics recomputed by the plain pass
    swa + bn aug        SWA's average, statistics recomputed by the augmented pass (what a run reports now)

The committed converged runs keep no checkpoint (they are large); rerun one (``minicnn train`` with the run's
flags and ``--out``) to have it.
"""
import json
import os
import sys


def ablate(run_dir: str) -> dict:
    from minicnn.methods.swa import SWA
    from minicnn.training import Trainer, evaluate
    from minicnn.training.checkpoint_io import restore_train_checkpoint
    from minicnn.training.setup import build_run

    with open(os.path.join(run_dir, "config.json")) as f:
        cfg = json.load(f)
    job = build_run(cfg)
    ds = job["ds"]
    tr = Trainer(job["model"], ds, job["opt"], job["schedule"], job["epochs"], batch_size=cfg["batch_size"],
                 augment=cfg.get("augment", "none"), methods=job["methods"], ledger=None, run_dir=None,
                 seed=cfg["seed"], progress=False, config=cfg, val_images=cfg.get("val_images") or 0)
    info = restore_train_checkpoint(os.path.join(run_dir, "checkpoint.npz"), tr.model, tr.optimizer)
    for key, m in zip(tr.keys, tr.methods):
        m.load_state_dict(info["hooks"][f"method:{key}"]["state"])
    swa = next(m for m in tr.methods if isinstance(m, SWA))
    s = tr.state

    def score():
        return evaluate(tr.model, ds.test_x, ds.test_y, 256, tr.mean, tr.std)["accuracy"]

    last = {k: v.copy() for k, v in tr.model.state_dict().items()}
    out = {"epochs_done": int(info["epochs_done"]), "snapshots": swa.average.count,
           "metrics_last_test_acc": info["history"][-1]["test_acc"]}
    rng_at_end = swa.rng.bit_generator.state         # as the checkpoint left it: the run's own pass draws from it
    for weights in ("last", "swa"):
        tr.model.load_state_dict(last)
        if weights == "swa":
            swa.swap_in(tr.model)
        swapped = {k: v.copy() for k, v in tr.model.state_dict().items()}
        out[weights] = score()
        for kind, augment in (("plain", False), ("aug", True)):
            tr.model.load_state_dict(swapped)
            swa.bn_augment = augment
            swa.rng.bit_generator.state = rng_at_end    # every augmented pass is the run's (same order, same crops)
            swa.update_batchnorm(s)
            out[f"{weights} + bn {kind}"] = score()
    return out


def main(argv):
    if not argv:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    for d in argv:
        if not os.path.isfile(os.path.join(d, "checkpoint.npz")):
            print(f"swa_ablation: {d} has no checkpoint.npz", file=sys.stderr)
            return 2
    cols = ["last", "last + bn plain", "last + bn aug", "swa", "swa + bn plain", "swa + bn aug"]
    print("| run | epochs | snapshots | last (metrics.jsonl) | " + " | ".join(cols) + " |")
    print("| --- " * (4 + len(cols)) + "|")
    for d in argv:
        r = ablate(d)
        pct = lambda v: f"{100 * v:.1f}"   # noqa: E731
        print(f"| {os.path.basename(os.path.normpath(d))} | {r['epochs_done']} | {r['snapshots']} | "
              f"{pct(r['metrics_last_test_acc'])} | " + " | ".join(pct(r[c]) for c in cols) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
