"""gradprune's training step against the plain step, interleaved in one process (issue 16's overhead target).

    python benchmarks/bench_gradprune_step.py [--model resnet20] [--batch-size 128] [--rounds 3] [--steps 6]
                                              [--method gradprune] [--profile]

Two Trainers on the same real CIFAR slice batch (each with the ledger, as ``minicnn train`` runs):
one plain, one with ``--method`` (default gradprune, p = 0.9). Each round times ``--steps``
training steps of each, alternating step by step, and reports the medians and their ratio;
the machine's load drifts over minutes, so only the ratio within a round is meaningful.
``--profile`` then runs cProfile over a few steps of each and prints the top functions.
"""
import argparse
import cProfile
import os
import platform
import pstats
import time

import numpy as np

from minicnn.kernels.process import speed_settings
from minicnn.training import Trainer
from minicnn.training.setup import build_run


def trainer(model, method, batch, data_dir):
    job = build_run({"model": model, "dataset": "cifar10", "data_dir": data_dir, "epochs": 1,
                     "train_images": 1024, "method": [method] if method else [], "seed": 0, "lr": 0.05,
                     "batch_size": batch})
    tr = Trainer(job["model"], job["ds"], job["opt"], job["schedule"], 1, batch_size=batch, methods=job["methods"],
                 ledger=job["ledger"], seed=0, progress=False, verbose=False)
    s = tr.state
    tr.hooks.call("on_train_begin", s)
    tr.optimizer.lr = 0.05          # the state's epoch is 0 (its default), as in the first epoch
    tr.model.train()
    tr.hooks.call("on_epoch_begin", s)
    idx = tr.train_iter.plan(0)[0]
    x, y = tr.train_iter.load(idx, 0, 0), tr.train_iter.y[idx]
    s._set_batch(idx, y, lambda: x)
    return tr, x, y


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--method", default="gradprune")
    p.add_argument("--data-dir", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    p.add_argument("--profile", action="store_true")
    a = p.parse_args()
    print(f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d %H:%M')}, load {os.getloadavg()[0]:.2f}")
    with speed_settings():
        runs = {"plain": trainer(a.model, None, a.batch_size, a.data_dir),
                a.method: trainer(a.model, a.method, a.batch_size, a.data_dir)}
        for tr, x, y in runs.values():          # warm-up: compile, allocator
            for _ in range(2):
                tr.train_step(x, y)
        for r in range(a.rounds):
            times = {k: [] for k in runs}
            cpu = {k: [] for k in runs}
            for _ in range(a.steps):
                for k, (tr, x, y) in runs.items():
                    t, c = time.perf_counter(), time.process_time()
                    tr.train_step(x, y)
                    times[k].append(time.perf_counter() - t)
                    cpu[k].append(time.process_time() - c)
            med = {k: float(np.median(v)) for k, v in times.items()}
            cmed = {k: float(np.median(v)) for k, v in cpu.items()}
            pairs = float(np.median(np.array(times[a.method]) / np.array(times["plain"])))
            print(f"round {r + 1}: wall: plain {med['plain'] * 1e3:.0f} ms, {a.method} {med[a.method] * 1e3:.0f} ms: "
                  f"{med[a.method] / med['plain']:.3f}x (median of step-by-step ratios {pairs:.3f}x); "
                  f"CPU time: plain {cmed['plain'] * 1e3:.0f} ms, {a.method} {cmed[a.method] * 1e3:.0f} ms: "
                  f"{cmed[a.method] / cmed['plain']:.3f}x; load {os.getloadavg()[0]:.2f}", flush=True)
        if a.profile:
            for k, (tr, x, y) in runs.items():
                prof = cProfile.Profile()
                prof.enable()
                for _ in range(4):
                    tr.train_step(x, y)
                prof.disable()
                print(f"\n--- {k}: cProfile over 4 steps (tottime) ---")
                st = pstats.Stats(prof).sort_stats("tottime")
                st.print_stats(18)
                print(f"--- {k}: the pruning and the non-zero counts (all calls) ---")
                st.print_stats("_dbtd|count_nonzero|elementwise.py.*(count|fewer)|gradprune.py|counts.py")


if __name__ == "__main__":
    main()
