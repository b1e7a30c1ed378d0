"""3x3 stride-1 convolution: im2col + GEMM against Winograd F(2x2, 3x3), per layer shape, batch and thread count.

    python benchmarks/bench_conv_algos.py [--batches 128,32] [--threads 1,2] [--reps 7] [--shapes resnet20]
                                          [--json FILE]

For every shape (C_in -> C_out at H x W, padding p) prints the median wall
time (ms) of forward, dL/dW and dL/dx with each algorithm (the kernels alone,
no layer), and Winograd's speed-up ``im2col / winograd`` per phase and for
the three together. The two algorithms are timed alternately, rep by rep, so
a machine that slows down affects both alike. Both backwards compute dW and dx in
one pass (im2col: one im2col for both; Winograd: one dy transform for both),
timed so ("dW+dx") and each alone as well. Shapes: ResNet-20's (16/32/64 channels at
32/16/8 px), convnet-small's and alexnet-ye's 3x3 stride-1 layers.

``--cpu-time`` reports the process's CPU time instead of wall time: on a
machine shared with other jobs, with one thread, it is what the kernels cost
without the waits for a core (caches are still shared).

The dispatch rule in ``minicnn.kernels.conv2d`` (:func:`use_winograd`) was
set from these figures.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import time

import numpy as np

from minicnn.kernels import conv2d, gemm, winograd

SHAPES = {  # (C_in, C_out, H, pad)
    "resnet20": [(3, 16, 32, 1), (16, 16, 32, 1), (32, 32, 16, 1), (64, 64, 8, 1)],
    "convnet-small": [(3, 32, 32, 1), (32, 32, 32, 1), (32, 64, 16, 1), (64, 64, 16, 1)],
    "alexnet-ye": [(3, 64, 32, 2), (64, 192, 17, 2), (192, 384, 9, 1), (384, 256, 9, 1), (256, 256, 9, 1)],
}


def _cases(x, w, dy, p):
    """{(algorithm, phase): fn} for one shape."""
    N, C, H, W = x.shape
    O = w.shape[0]
    w2 = w.reshape(O, -1)
    geom = (3, 3, 1, 1, p, p)
    y = np.empty(dy.shape, dtype=x.dtype)
    y3 = y.reshape(N, O, -1)
    dy3 = dy.reshape(N, O, -1)
    dx = np.empty_like(x)
    return {
        ("im2col", "forward"): lambda: conv2d.im2col_forward(x, w2, geom, y3),
        ("im2col", "dW"): lambda: conv2d.im2col_backward(x, w2, geom, dy3, True, None),
        ("im2col", "dx"): lambda: conv2d.im2col_backward(x, w2, geom, dy3, False, dx),
        ("im2col", "dW+dx"): lambda: conv2d.im2col_backward(x, w2, geom, dy3, True, dx),
        ("winograd", "forward"): lambda: winograd.winograd_forward(x, w, p, p, y),
        ("winograd", "dW"): lambda: winograd.winograd_weight_grad(x, dy, p, p),
        ("winograd", "dx"): lambda: winograd.winograd_input_grad(dy, w, p, p, dx),
        ("winograd", "dW+dx"): lambda: winograd.winograd_backward(x, w, dy, p, p, True, dx),
    }


def measure(C, O, H, p, batch, reps, rng, use_cpu_time=False):
    x = rng.standard_normal((batch, C, H, H)).astype(np.float32)
    w = rng.standard_normal((O, C, 3, 3)).astype(np.float32)
    Ho = H + 2 * p - 2
    dy = rng.standard_normal((batch, O, Ho, Ho)).astype(np.float32)
    cases = _cases(x, w, dy, p)
    for fn in cases.values():       # compile / fault in memory
        fn()
        fn()
    times = {k: [] for k in cases}
    cpu = {k: [] for k in cases}
    keys = list(cases)
    for r in range(reps):
        for k in (keys if r % 2 == 0 else keys[::-1]):
            t, c = time.perf_counter(), time.process_time()
            cases[k]()
            times[k].append(time.perf_counter() - t)
            cpu[k].append(time.process_time() - c)
    clock = cpu if use_cpu_time else times
    med = {k: float(np.median(v)) for k, v in clock.items()}
    im2col_total = med[("im2col", "forward")] + med[("im2col", "dW+dx")]
    wino_total = med[("winograd", "forward")] + med[("winograd", "dW+dx")]
    return {"C": C, "O": O, "H": H, "pad": p, "batch": batch, "threads": gemm._threads,
            "clock": "process CPU time" if use_cpu_time else "wall",
            "ms": {f"{a} {ph}": 1e3 * v for (a, ph), v in med.items()},
            "speedup": {ph: med[("im2col", ph)] / med[("winograd", ph)] for ph in ("forward", "dW", "dx", "dW+dx")}
            | {"fwd+bwd": im2col_total / wino_total}}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", default="128,32")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--shapes", default=",".join(SHAPES))
    p.add_argument("--cpu-time", action="store_true",
                   help="report process CPU time instead of wall time (on a busy machine, with --threads 1)")
    p.add_argument("--json")
    a = p.parse_args()
    print(f"{datetime.datetime.now():%Y-%m-%d %H:%M}, {os.cpu_count()} cores, load {os.getloadavg()}")
    rng = np.random.default_rng(0)
    rows = []
    before = gemm._threads
    try:
        for threads in map(int, a.threads.split(",")):
            gemm.configure_threads(threads)
            for batch in map(int, a.batches.split(",")):
                for model in a.shapes.split(","):
                    for C, O, H, pad in SHAPES[model]:
                        r = measure(C, O, H, pad, batch, a.reps, rng, a.cpu_time)
                        r["model"] = model
                        rows.append(r)
                        ms, s = r["ms"], r["speedup"]
                        print(f"{threads}t b{batch:<3} {model:>13} {C:>3}->{O:<3} @{H:<2} p{pad}: "
                              f"im2col fwd {ms['im2col forward']:7.2f} dW {ms['im2col dW']:7.2f} "
                              f"dx {ms['im2col dx']:7.2f} dW+dx {ms['im2col dW+dx']:7.2f} | "
                              f"winograd fwd {ms['winograd forward']:7.2f} dW {ms['winograd dW']:7.2f} "
                              f"dx {ms['winograd dx']:7.2f} dW+dx {ms['winograd dW+dx']:7.2f} | speed-up fwd {s['forward']:.2f} dW {s['dW']:.2f} "
                              f"dx {s['dx']:.2f} all {s['fwd+bwd']:.2f}", flush=True)
    finally:
        gemm.configure_threads(before)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
