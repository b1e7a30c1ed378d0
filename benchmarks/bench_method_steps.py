"""Method overheads per training step, interleaved step by step in one process (issue 16's method targets).

    python benchmarks/bench_method_steps.py [--methods fixed8,psg] [--model resnet20] [--batch-size 128]
                                           [--rounds 3] [--cycles 4] [--parts]

Builds one trainer per method (and one without: the fp32 step) on the same model and seed, warms each
up, then runs ``rounds`` x ``cycles`` cycles; a cycle is one training step of every trainer, in an order
rotated from cycle to cycle, on the same random batch. On a shared machine whose load drifts over
minutes this compares like with like far better than whole runs one after the other. Per round it
prints the median step time of each and the median of the per-cycle ratios to the fp32 step.
``--parts``: also the seconds per step in PSG's own parts (quantization, the predictor pass).
(``bench_vs_torch.py --parts methods`` measures the same ratios on whole epochs, bracketed by plain runs.)
"""
import argparse
import collections
import os
import time

import numpy as np

from minicnn.kernels.process import speed_settings
from minicnn.training import Trainer
from minicnn.training.setup import build_run


def trainer(method: str, model: str, batch: int) -> Trainer:
    job = build_run({"model": model, "dataset": "synthetic", "epochs": 1, "train_images": batch, "batch_size": batch,
                     "method": [method] if method != "fp32" else [], "seed": 0, "lr": 0.05})
    tr = Trainer(job["model"], job["ds"], job["opt"], job["schedule"], 1, batch_size=batch, methods=job["methods"],
                 ledger=job["ledger"], seed=0, progress=False, verbose=False, config=job["config"])
    tr.fit()                                   # warm-up (compilation, buffers) and on_train_begin
    tr.model.train()
    for m in job["methods"]:
        m.on_epoch_begin(tr.state)
    return tr


def time_psg_parts(spent):
    import minicnn.methods.psg as psg
    from minicnn.layers.conv import Conv2d

    def wrap(owner, name, key):
        fn = getattr(owner, name)

        def timed(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:          # per method class (fixed8 and psg share the quantization code)
                who = type(a[0]).__name__ if a and not isinstance(a[0], Conv2d) else "PSG"
                spent[f"{who}: {key}"] += time.perf_counter() - t
        setattr(owner, name, timed)
    wrap(psg.PSG, "_sign_gradient", "predictor pass + sign rule (the finisher)")
    wrap(Conv2d, "weight_grad", "  of which Conv2d.weight_grad (the predictor dW)")
    wrap(psg._FixedPointConvs, "_quantize_input", "quantize conv inputs (range+sign pass, value(+MSB) pass)")
    wrap(psg._FixedPointConvs, "_quantize_weight", "quantize weights (copy the master, range, value)")
    wrap(psg.PSG, "backward_output_grad", "quantize g_y (range pass, value+MSB pass)")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", default="fixed8,psg")
    p.add_argument("--model", default="resnet20")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cycles", type=int, default=4, help="cycles per round")
    p.add_argument("--parts", action="store_true")
    a = p.parse_args()
    names = ["fp32"] + a.methods.split(",")
    with speed_settings():
        spent = collections.defaultdict(float)
        if a.parts:                # before the trainers: their hook lists bind the methods' hooks once
            time_psg_parts(spent)
        trs = {m: trainer(m, a.model, a.batch_size) for m in names}
        spent.clear()              # the warm-up does not count
        rng = np.random.default_rng(0)
        x = rng.standard_normal((a.batch_size, 3, 32, 32)).astype(np.float32)
        y = rng.integers(0, 10, a.batch_size)
        times = {m: [] for m in names}
        for r in range(a.rounds):
            for c in range(a.cycles):
                k = (r * a.cycles + c) % len(names)
                for m in names[k:] + names[:k]:
                    t = time.perf_counter()
                    trs[m].train_step(x, y)
                    times[m].append(time.perf_counter() - t)
            sl = slice(r * a.cycles, (r + 1) * a.cycles)
            base = np.array(times["fp32"][sl])
            print(f"round {r + 1}: " + "  ".join(
                f"{m} {np.median(times[m][sl]):.3f} s ({np.median(np.array(times[m][sl]) / base):.2f}x)" for m in names)
                + f"  | load {os.getloadavg()[0]:.1f}", flush=True)
        base = np.array(times["fp32"])
        print("all cycles: " + "  ".join(f"{m} {np.median(np.array(times[m]) / base):.2f}x" for m in names[1:]))
        if a.parts:
            n, step = len(base), float(np.median(base))
            for k, v in spent.items():
                print(f"  {k:58s} {v / n:.3f} s/step = {100 * v / n / step:.1f}% of the fp32 step")


if __name__ == "__main__":
    main()
