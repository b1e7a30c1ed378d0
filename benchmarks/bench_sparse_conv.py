"""When does the sparse-dy conv backward beat the dense im2col + BLAS backward?

    python benchmarks/bench_sparse_conv.py [--batch 64] [--repeat 3] [--threads 1 2] [--model resnet20 alexnet-ye]

For every conv shape of the chosen models, times one backward (dW and dx)
of the dense path (``minicnn.kernels.conv2d.conv2d_backward``, the one
Conv2d uses) and of the sparse path (``minicnn.kernels.sparse_conv``) on an
output gradient with a given fraction of non-zeros (random positions,
N(0, 1) values), and prints the ratio dense/sparse (> 1: sparse is faster)
and the crossover density (the largest density measured at which sparse is
still faster). Also times the DBTD pruning kernel on the same dy (what
gradprune pays to make dy sparse). Median of ``--repeat`` interleaved runs,
after a warm-up call. Wall-clock numbers depend on the machine and its load: the
result is a measurement, never a test assertion.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from minicnn.kernels import apply_speed_settings, configure_threads, warmup
from minicnn.kernels.conv2d import conv2d_backward
from minicnn.kernels.sparse_conv import sparse_conv2d_backward
from minicnn.methods._dbtd import dbtd_prune

DENSITIES = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5)

#: (label, C_in, C_out, H=W of the input, kernel, stride, padding)
SHAPES = {
    "resnet20": [("conv1 3->16 32", 3, 16, 32, 3, 1, 1), ("3x3 16->16 32", 16, 16, 32, 3, 1, 1),
                 ("3x3 16->32 32 s2", 16, 32, 32, 3, 2, 1), ("3x3 32->32 16", 32, 32, 16, 3, 1, 1),
                 ("3x3 32->64 16 s2", 32, 64, 16, 3, 2, 1), ("3x3 64->64 8", 64, 64, 8, 3, 1, 1)],
    "alexnet-ye": [("conv1 3->64 32 p2", 3, 64, 32, 3, 1, 2), ("conv2 64->192 17 p2", 64, 192, 17, 3, 1, 2),
                   ("conv3 192->384 9", 192, 384, 9, 3, 1, 1), ("conv4 384->256 9", 384, 256, 9, 3, 1, 1),
                   ("conv5 256->256 9", 256, 256, 9, 3, 1, 1)],
}


def bench_shape(batch, cin, cout, hw, k, s, p, repeat, rng):
    """Median times (s) of dense backward, DBTD pruning and sparse backward per density.

    The runs are interleaved (one dense, one prune, one sparse per density, then
    again), so that load from other processes on a shared machine hits all of
    them alike and the ratios stay meaningful even when the absolute times are not.
    """
    x = rng.standard_normal((batch, cin, hw, hw), dtype=np.float32)
    w = rng.standard_normal((cout, cin, k, k), dtype=np.float32)
    ho = (hw + 2 * p - k) // s + 1
    full = rng.standard_normal((batch, cout, ho, ho), dtype=np.float32)
    dx = np.empty_like(x)
    w2 = w.reshape(cout, -1)
    dys = {d: np.where(rng.random(full.shape) < d, full, np.float32(0)) for d in DENSITIES}
    runs = {"dense": lambda: conv2d_backward(x, w2, (k, k, s, s, p, p), full.reshape(batch, cout, -1), True, dx),
            "prune": lambda: dbtd_prune(full, 0.9, 1)}
    for d, dy in dys.items():
        runs[d] = lambda dy=dy: sparse_conv2d_backward(x, w, dy, (s, s), (p, p))
    times = {key: [] for key in runs}
    for key, fn in runs.items():      # warm-up
        fn()
    for _ in range(repeat):
        for key, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)
    med = {key: float(np.median(v)) for key, v in times.items()}
    return med["dense"], med["prune"], {d: med[d] for d in DENSITIES}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--model", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    args = ap.parse_args()
    apply_speed_settings()              # as minicnn train has them (minicnn/kernels/process.py)
    warmup()
    rng = np.random.default_rng(0)
    for threads in args.threads:
        n = configure_threads(threads)
        print(f"\n== {n} thread(s), batch {args.batch}; ratio = dense time / sparse time (> 1: sparse faster)")
        print(f"{'shape':<24}{'dense ms':>9}{'prune ms':>9}" + "".join(f"{d:>7}" for d in DENSITIES) + "  crossover")
        for model in args.model:
            for label, cin, cout, hw, k, s, p in SHAPES[model]:
                dense, prune, sparse = bench_shape(args.batch, cin, cout, hw, k, s, p, args.repeat, rng)
                ratios = [dense / sparse[d] for d in DENSITIES]
                faster = [d for d, r in zip(DENSITIES, ratios) if r > 1]
                cross = f"{max(faster):g}" if faster else f"< {DENSITIES[0]:g}"
                print(f"{model[:4] + ' ' + label:<24}{dense * 1e3:>9.1f}{prune * 1e3:>9.1f}"
                      + "".join(f"{r:>7.2f}" for r in ratios) + f"  {cross}")


if __name__ == "__main__":
    main()
