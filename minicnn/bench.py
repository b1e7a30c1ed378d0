"""Training throughput: images per second of forward + backward + SGD step.

Used by ``minicnn bench`` and ``benchmarks/bench_training.py``. Random
float32 inputs at batch ``batch_size``; two warm-up steps (numba compiles on
first use), then the median step time of ``steps`` timed steps.
"""
from __future__ import annotations

import time

import numpy as np


def bench_training(model_name: str, batch_size: int = 128, steps: int = 10, seed: int = 0) -> dict:
    from .kernels.process import speed_settings
    from .losses import SoftmaxCrossEntropy
    from .models import build
    from .training import SGD

    model = build(model_name, num_classes=10, seed=seed)
    opt = SGD(model, lr=0.01, momentum=0.9, weight_decay=5e-4)
    loss_fn = SoftmaxCrossEntropy()
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch_size, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, batch_size)

    def step():
        logits = model.forward(x)
        loss_fn.forward(logits, y)
        model.zero_grad()
        model.backward(loss_fn.backward())
        opt.step()

    times = []
    with speed_settings():                  # as a training run has them (minicnn/kernels/process.py)
        for _ in range(2):
            step()
        for _ in range(steps):
            t = time.perf_counter()
            step()
            times.append(time.perf_counter() - t)
    med = float(np.median(times))
    return {"model": model_name, "batch_size": batch_size, "steps": steps, "step_ms": med * 1e3,
            "images_per_s": batch_size / med}
