"""What the statistics recorder costs: training wall time with it off and on.

    python benchmarks/bench_stats_overhead.py [--model convnet-small] [--data-dir ../shared/data/cifar-10-batches-py]
                                              [--epochs 2] [--every 10] [--repeats 3]

Runs the same seeded training (Trainer, ledger attached as in ``minicnn
train``) in three configurations, interleaved ``repeats`` times so that
machine noise hits all of them alike, and prints the median wall time of
each: ``off`` (no recorder: the hook is not registered, so no code of it
runs), ``off again`` (the same configuration, to show the noise level), and
``on`` (``StatsRecorder(every=k)``).
"""
import argparse
import os
import tempfile
import time

import numpy as np

from minicnn.cost import Ledger
from minicnn.data import load_dataset, subset
from minicnn.models import build
from minicnn.stats import StatsRecorder
from minicnn.training import SGD, Trainer, make_schedule


def one_run(ds, model_name, epochs, every, seed=0):
    model = build(model_name, num_classes=ds.num_classes, seed=seed)
    opt = SGD(model, lr=0.01, momentum=0.9, weight_decay=5e-4)
    stats = StatsRecorder(model, every=every) if every else None
    with tempfile.TemporaryDirectory() as run_dir:
        t = time.perf_counter()
        Trainer(model, ds, opt, make_schedule("cosine", 0.01, epochs), epochs, batch_size=128, augment=("flip",),
                ledger=Ledger(model), stats=stats, run_dir=run_dir, seed=seed, progress=False).fit()
        return time.perf_counter() - t


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="convnet-small")
    p.add_argument("--data-dir", default=os.path.join(here, "..", "..", "shared", "data", "cifar-10-batches-py"))
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--every", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--train-images", type=int, default=None)
    a = p.parse_args()
    ds = load_dataset("cifar10", a.data_dir) if os.path.isdir(a.data_dir) else load_dataset("synthetic")
    if a.train_images:
        ds = subset(ds, a.train_images, len(ds.test_y))
    print(f"{a.model} on {ds.name} ({len(ds.train_y)} images), {a.epochs} epochs, stats every {a.every} batches")
    one_run(ds, a.model, 1, a.every)  # warm-up: numba kernels compiled/loaded
    times = {"off": [], "off again": [], "on": []}
    for r in range(a.repeats):
        for name, every in (("off", 0), ("on", a.every), ("off again", 0)):
            times[name].append(one_run(ds, a.model, a.epochs, every))
    base = float(np.median(times["off"]))
    for name, ts in times.items():
        med = float(np.median(ts))
        print(f"  {name:>9}: median {med:6.2f} s  ({(med / base - 1) * 100:+5.1f}% vs off)  runs: "
              + ", ".join(f"{t:.2f}" for t in ts))
