"""The stride-2 convolutions of ResNet-20 (im2col + GEMM), forward and backward (dW and dx), per layer shape.

    python benchmarks/bench_stride2_conv.py [--batch-size 128] [--reps 7]

Prints the median wall time (ms) of each phase on minicnn's threads (``MINICNN_NUM_THREADS=1`` for one).
To compare with an older minicnn in the same minutes, run it again on that version's package::

    git archive <commit> minicnn | tar -x -C /tmp/old && PYTHONPATH=/tmp/old python benchmarks/bench_stride2_conv.py
"""
import argparse
import datetime
import os
import time

import numpy as np

from minicnn.kernels import apply_speed_settings, conv2d

SHAPES = [(16, 32, 32, 3, 1), (32, 64, 16, 3, 1), (16, 32, 32, 1, 0), (32, 64, 16, 1, 0)]  # C, O, H, kernel, pad


def median_ms(fn, reps):
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    # as minicnn train has them (minicnn/kernels/process.py): BLAS on one thread. Without this the GEMMs ran on
    # OpenBLAS's own threads beside minicnn's, and a 16->32 forward took 12.4 ms instead of 8.1 (one minicnn thread,
    # AMD EPYC, 2026-12-08): the figures printed before that date are of that other setting
    apply_speed_settings()
    print(f"{datetime.datetime.now():%Y-%m-%d %H:%M}, minicnn from {os.path.dirname(conv2d.__file__)}, "
          f"load {os.getloadavg()[0]:.1f}")
    rng = np.random.default_rng(0)
    N = args.batch_size
    for C, O, H, k, p in SHAPES:
        x = rng.standard_normal((N, C, H, H)).astype(np.float32)
        w2 = rng.standard_normal((O, C * k * k)).astype(np.float32)
        geometry = (k, k, 2, 2, p, p)
        Ho = (H + 2 * p - k) // 2 + 1
        y = np.empty((N, O, Ho * Ho), np.float32)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        dx = np.empty_like(x)
        fwd = median_ms(lambda: conv2d.im2col_forward(x, w2, geometry, y), args.reps)
        bwd = median_ms(lambda: conv2d.im2col_backward(x, w2, geometry, dy, True, dx), args.reps)
        print(f"{C:>3}->{O:<3} @{H:<3} {k}x{k} pad {p}: forward {fwd:7.2f} ms   backward (dW + dx) {bwd:7.2f} ms")


if __name__ == "__main__":
    main()
