"""Where a training step's time goes: seconds per leaf layer type and phase (forward, backward).

    python benchmarks/profile_step.py [--model resnet20] [--batch-size 128] [--steps 10]

Times every leaf layer's forward and backward call (wall clock, medians over
steps), groups them by type and shape class (conv 3x3 stride 1 / stride 2,
conv 1x1, BatchNorm, ReLU, ...), and prints each group's share of the step;
the rest is the loss, zero_grad and the SGD update.
"""
import argparse
import collections
import time

import numpy as np

from minicnn.kernels import apply_speed_settings
from minicnn.losses import SoftmaxCrossEntropy
from minicnn.models import build
from minicnn.training import SGD


def kind(layer) -> str:
    name = type(layer).__name__
    if name == "Conv2d":
        k, s = layer.kernel_size, layer.stride
        return f"Conv2d {k[0]}x{k[1]} stride {s[0]}"
    return name


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--by-layer", action="store_true", help="one line per layer instead of per layer type")
    a = p.parse_args()
    apply_speed_settings()              # as minicnn train has them (minicnn/kernels/process.py)
    model = build(a.model, num_classes=10, seed=0)
    opt = SGD(model, lr=0.01, momentum=0.9, weight_decay=5e-4)
    loss = SoftmaxCrossEntropy()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((a.batch_size, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, a.batch_size)
    spent = collections.defaultdict(float)

    def wrap(layer, phase):  # noqa: C901
        fn = getattr(layer, phase)
        key = (f"{layer.name} ({kind(layer)})" if a.by_layer else kind(layer), phase)

        def timed(*args, **kw):
            t = time.perf_counter()
            out = fn(*args, **kw)
            spent[key] += time.perf_counter() - t
            return out
        setattr(layer, phase, timed)

    for layer in model.modules():
        if not layer.is_container:
            wrap(layer, "forward")
            wrap(layer, "backward")
    steps, per_step = [], []
    for i in range(a.steps + 2):
        spent.clear()
        t = time.perf_counter()
        loss.forward(model.forward(x), y)
        model.zero_grad()
        model.backward(loss.backward())
        opt.step()
        if i >= 2:
            steps.append(time.perf_counter() - t)
            per_step.append(dict(spent))
    step = float(np.median(steps))
    keys = sorted(per_step[0], key=lambda k: -np.median([d[k] for d in per_step]))
    print(f"{a.model}, batch {a.batch_size}: step {step * 1e3:.1f} ms (median of {a.steps}), {a.batch_size / step:.0f} img/s")
    total = 0.0
    for k in keys:
        t = float(np.median([d[k] for d in per_step]))
        total += t
        print(f"  {k[0]:>40} {k[1]:>8}: {t * 1e3:7.1f} ms  {100 * t / step:5.1f}%")
    print(f"  {'rest (loss, zero_grad, SGD, containers)':>31}: {(step - total) * 1e3:7.1f} ms  {100 * (step - total) / step:5.1f}%")


if __name__ == "__main__":
    main()
