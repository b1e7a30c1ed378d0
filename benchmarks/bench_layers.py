"""Per-layer forward/backward timings at the shapes of convnet-small and resnet20.

    python benchmarks/bench_layers.py [--batch 128] [--repeat 5] [--only conv] [--model] [--threads N]
    /work/torchvenv/bin/python benchmarks/bench_layers.py --torch     # the same shapes in PyTorch

Prints, for every layer shape, the median forward and backward wall time (ms)
and, for convolutions, the GFLOP/s reached (forward 2*N*C_out*K*L flops with
K = C_in*kh*kw, L = H_out*W_out; backward twice that: dW and dx). Backward
is timed with every gradient on (dW, db, dx). ``--model`` also times a whole
forward+backward of convnet-small and resnet20 (needs minicnn.models), with
the process CPU time: CPU/wall shows how many cores were really used (on a
shared machine, less than the thread count). Kernels are compiled (or loaded
from the numba cache) before timing.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from minicnn.kernels import apply_speed_settings, thread_info, warmup
from minicnn.layers.activation import ReLU
from minicnn.layers.batchnorm import BatchNorm2d
from minicnn.layers.conv import Conv2d
from minicnn.layers.linear import Flatten, Linear
from minicnn.layers.pooling import GlobalAvgPool2d, MaxPool2d


def layer_cases():
    """(label, layer factory, input shape without batch)."""
    c = []
    # convnet-small
    for cin, cout, hw in [(3, 32, 32), (32, 32, 32), (32, 64, 16), (64, 64, 16)]:
        c.append((f"conv3x3 {cin:>2}->{cout:<2} {hw}x{hw}", lambda cin=cin, cout=cout: Conv2d(cin, cout, 3, padding=1, bias=False), (cin, hw, hw)))
    # resnet20
    for cin, cout, hw, s in [(3, 16, 32, 1), (16, 16, 32, 1), (16, 32, 32, 2), (32, 32, 16, 1), (32, 64, 16, 2), (64, 64, 8, 1)]:
        c.append((f"conv3x3 {cin:>2}->{cout:<2} {hw}x{hw} s{s}", lambda cin=cin, cout=cout, s=s: Conv2d(cin, cout, 3, stride=s, padding=1, bias=False), (cin, hw, hw)))
    for cin, cout, hw in [(16, 32, 32), (32, 64, 16)]:
        c.append((f"conv1x1 {cin:>2}->{cout:<2} {hw}x{hw} s2", lambda cin=cin, cout=cout: Conv2d(cin, cout, 1, stride=2, bias=False), (cin, hw, hw)))
    # pointwise (1x1, stride 1: the GEMM-only path of Conv2d), as in bottleneck blocks
    for cin, cout, hw in [(16, 32, 32), (64, 64, 16), (64, 256, 8)]:
        c.append((f"conv1x1 {cin:>2}->{cout:<3} {hw}x{hw} pw", lambda cin=cin, cout=cout: Conv2d(cin, cout, 1, bias=False), (cin, hw, hw)))
    for ch, hw in [(32, 32), (64, 16), (16, 32), (32, 16), (64, 8)]:
        c.append((f"bn {ch}ch {hw}x{hw}", lambda ch=ch: BatchNorm2d(ch), (ch, hw, hw)))
    for ch, hw in [(32, 32), (16, 32)]:
        c.append((f"relu {ch}ch {hw}x{hw}", ReLU, (ch, hw, hw)))
    for ch, hw in [(32, 32), (64, 16)]:
        c.append((f"maxpool2 {ch}ch {hw}x{hw}", lambda: MaxPool2d(2), (ch, hw, hw)))
    c.append(("gap 64ch 8x8", GlobalAvgPool2d, (64, 8, 8)))
    c.append(("flatten 64x8x8", Flatten, (64, 8, 8)))
    c.append(("linear 4096->10", lambda: Linear(4096, 10), (4096,)))
    return c


def conv_flops(layer, shape):
    N, C, H, W = shape
    _, O, Ho, Wo = layer.output_shape(shape)
    kh, kw = layer.kernel_size
    return 2.0 * N * O * C * kh * kw * Ho * Wo


def median_time(fn, repeat):
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


CLOCK = time.perf_counter


def bench_layer(layer, shape, repeat, rng):
    x = rng.standard_normal(shape, dtype=np.float32)
    y = layer.forward(x)
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    layer.backward(dy)  # warm: buffers allocated, kernels loaded
    fwd, bwd = [], []
    for _ in range(repeat):
        t0 = CLOCK()
        layer.forward(x)
        t1 = CLOCK()
        layer.backward(dy)
        t2 = CLOCK()
        fwd.append(t1 - t0)
        bwd.append(t2 - t1)
    return float(np.median(fwd)), float(np.median(bwd))


def torch_twin(layer):
    """The torch.nn module matching a minicnn layer (for --torch)."""
    import torch.nn as tnn
    if isinstance(layer, Conv2d):
        return tnn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                          bias="bias" in layer.params)
    if isinstance(layer, BatchNorm2d):
        return tnn.BatchNorm2d(layer.num_features)
    if isinstance(layer, ReLU):
        return tnn.ReLU()
    if isinstance(layer, MaxPool2d):
        return tnn.MaxPool2d(layer.kernel_size, layer.stride)
    if isinstance(layer, GlobalAvgPool2d):
        return tnn.Sequential(tnn.AdaptiveAvgPool2d(1), tnn.Flatten())
    if isinstance(layer, Flatten):
        return tnn.Flatten()
    return tnn.Linear(layer.in_features, layer.out_features)


def bench_torch(module, shape, repeat, rng):
    import torch
    x = torch.tensor(rng.standard_normal(shape, dtype=np.float32), requires_grad=True)
    y = module(x)
    dy = torch.tensor(rng.standard_normal(tuple(y.shape), dtype=np.float32))
    y.backward(dy)
    fwd, bwd = [], []
    for _ in range(repeat):
        t0 = CLOCK()
        y = module(x)
        t1 = CLOCK()
        y.backward(dy)
        t2 = CLOCK()
        fwd.append(t1 - t0)
        bwd.append(t2 - t1)
    return float(np.median(fwd)), float(np.median(bwd))


def bench_model(name, batch, repeat, rng):
    from minicnn.models import build
    model = build(name)
    x = rng.standard_normal((batch, 3, 32, 32), dtype=np.float32)
    model.train()
    y = model.forward(x)
    dy = rng.standard_normal(y.shape, dtype=np.float32) / batch
    model.backward(dy)
    fwd, bwd, cpu = [], [], []
    for _ in range(repeat):
        c0 = time.process_time()
        t0 = time.perf_counter()
        model.forward(x)
        t1 = time.perf_counter()
        model.backward(dy)
        t2 = time.perf_counter()
        fwd.append(t1 - t0)
        bwd.append(t2 - t1)
        cpu.append(time.process_time() - c0)
    f, b, c = float(np.median(fwd)), float(np.median(bwd)), float(np.median(cpu))
    print(f"{name:<16} fwd {f * 1e3:8.1f} ms  bwd {b * 1e3:8.1f} ms  fwd+bwd {batch / (f + b):7.1f} img/s"
          f"  (CPU {c * 1e3:.0f} ms = {c / (f + b):.2f} cores)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--only", default="", help="run only cases whose label contains this text")
    ap.add_argument("--model", action="store_true", help="also time whole models")
    ap.add_argument("--threads", type=int, default=None, help="threads (default: all cores)")
    ap.add_argument("--torch", action="store_true", help="time PyTorch's layers instead (needs torch)")
    ap.add_argument("--cpu", action="store_true",
                    help="time layers by process CPU time (with --threads 1: robust on a busy machine)")
    args = ap.parse_args(argv)
    global CLOCK
    if args.cpu:
        CLOCK = time.process_time
    apply_speed_settings(args.threads)     # as minicnn train has them (minicnn/kernels/process.py)
    if args.torch:
        import torch
        torch.set_num_threads(args.threads or torch.get_num_threads())
    warmup()
    rng = np.random.default_rng(0)
    who = "PyTorch" if args.torch else thread_info()
    print(f"batch {args.batch}, float32, median of {args.repeat}, {'CPU' if args.cpu else 'wall'} time; {who}")
    print(f"{'layer':<28} {'fwd ms':>8} {'bwd ms':>8} {'fwd GF/s':>9} {'bwd GF/s':>9}")
    tot_f = tot_b = 0.0
    for label, make, shape in layer_cases():
        if args.only not in label:
            continue
        layer = make()
        full = (args.batch,) + shape
        if args.torch:
            f, b = bench_torch(torch_twin(layer), full, args.repeat, rng)
        else:
            f, b = bench_layer(layer, full, args.repeat, rng)
        tot_f, tot_b = tot_f + f, tot_b + b
        extra = ""
        if isinstance(layer, Conv2d):
            fl = conv_flops(layer, full)
            extra = f" {fl / f / 1e9:9.1f} {2 * fl / b / 1e9:9.1f}"
        print(f"{label:<28} {f * 1e3:8.2f} {b * 1e3:8.2f}{extra}")
    print(f"{'sum':<28} {tot_f * 1e3:8.2f} {tot_b * 1e3:8.2f}")
    if args.model and not args.torch:
        for name in ("convnet-small", "resnet20"):
            bench_model(name, args.batch, args.repeat, rng)


if __name__ == "__main__":
    main()
