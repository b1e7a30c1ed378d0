"""Numerical parity of minicnn's leaf layers with PyTorch (not a test: needs torch).

    /work/torchvenv/bin/python benchmarks/torch_parity.py [--trials 20] [--seed 0]

(that venv needs ``pip install numba`` and ``pip install -e . --no-deps``).
For each layer type it draws random shapes / kernels / strides / paddings,
builds the minicnn layer in float64 (and float32), copies its parameters into
the matching torch module, runs forward and backward with the same random
upstream gradient, and prints the worst error over the trials of: the
output, dx, dW, db and (BatchNorm) the running statistics after several
training batches, then eval-mode forward/backward. Error = max|a - b| / max|b|.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from minicnn.layers.activation import ReLU
from minicnn.layers.batchnorm import BatchNorm2d
from minicnn.layers.conv import Conv2d
from minicnn.layers.linear import Flatten, Linear
from minicnn.layers.pooling import AvgPool2d, GlobalAvgPool2d, MaxPool2d

TORCH_DT = {np.float64: torch.float64, np.float32: torch.float32}


def err(a, b) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = b.detach().numpy().astype(np.float64) if isinstance(b, torch.Tensor) else np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = np.max(np.abs(b)) if b.size else 0.0
    return float(np.max(np.abs(a - b)) / scale) if scale > 0 else float(np.max(np.abs(a - b), initial=0.0))


class TorchPair:
    """A torch module in float64 (the reference) and, for a float32 run, its float32 twin."""

    def __init__(self, make, dtype):
        self.ref = make().to(torch.float64)
        self.twin = make().to(torch.float32) if dtype == np.float32 else None

    def modules(self):
        return [m for m in (self.ref, self.twin) if m is not None]


def _torch_grads(tmod, x, dy, params, tdt):
    for name, p in params.items():
        getattr(tmod, name).data = torch.tensor(p, dtype=tdt)
        getattr(tmod, name).grad = None
    xt = torch.tensor(x, dtype=tdt, requires_grad=True)
    yt = tmod(xt)
    yt.backward(torch.tensor(dy, dtype=tdt))
    out = {"y": yt, "dx": xt.grad}
    for name in params:
        out["d" + name] = getattr(tmod, name).grad
    return out


def run_pair(layer, pair, x, rng, dtype):
    """Forward/backward minicnn and torch; errors of y, dx and each param grad vs torch float64.

    For float32 the inputs and params are the same float32 values for everyone,
    and the float32 torch twin's own error vs float64 is reported as "torch32 ...".
    """
    y = layer.forward(x)
    dy = rng.standard_normal(y.shape).astype(dtype)
    params = {k: v.copy() for k, v in layer.params.items()}
    dx = layer.backward(dy)
    mine = {"y": y, "dx": dx}
    for name in layer.params:
        mine["d" + name] = layer.grads[name]
    ref = _torch_grads(pair.ref, x, dy, params, torch.float64)
    out = {k: err(v, ref[k]) for k, v in mine.items()}
    if pair.twin is not None:
        twin = _torch_grads(pair.twin, x, dy, params, torch.float32)
        out.update({"torch32 " + k: err(twin[k].detach().numpy(), ref[k]) for k in mine})
    return out


def rand_conv_case(rng):
    kh, kw = rng.integers(1, 6, 2)
    sh, sw = rng.integers(1, 4, 2)
    ph, pw = rng.integers(0, 3, 2)
    H = int(rng.integers(max(kh - 2 * ph, 1), 20))
    W = int(rng.integers(max(kw - 2 * pw, 1), 20))
    return dict(N=int(rng.integers(1, 6)), C=int(rng.integers(1, 8)), O=int(rng.integers(1, 9)), H=H, W=W,
                k=(int(kh), int(kw)), s=(int(sh), int(sw)), p=(int(ph), int(pw)), bias=bool(rng.integers(2)))


def merge(acc, new):
    for k, v in new.items():
        acc[k] = max(acc.get(k, 0.0), v)


def conv_trials(rng, trials, dtype):
    acc = {}
    for _ in range(trials):
        c = rand_conv_case(rng)
        layer = Conv2d(c["C"], c["O"], c["k"], c["s"], c["p"], bias=c["bias"], dtype=dtype, rng=rng)
        tmod = TorchPair(lambda: torch.nn.Conv2d(c["C"], c["O"], c["k"], c["s"], c["p"], bias=c["bias"]), dtype)
        merge(acc, run_pair(layer, tmod, rng.standard_normal((c["N"], c["C"], c["H"], c["W"])).astype(dtype), rng, dtype))
    return acc


def linear_trials(rng, trials, dtype):
    acc = {}
    for _ in range(trials):
        i, o, n, bias = int(rng.integers(1, 70)), int(rng.integers(1, 20)), int(rng.integers(1, 9)), bool(rng.integers(2))
        merge(acc, run_pair(Linear(i, o, bias=bias, dtype=dtype, rng=rng), TorchPair(lambda: torch.nn.Linear(i, o, bias=bias), dtype),
                            rng.standard_normal((n, i)).astype(dtype), rng, dtype))
    return acc


def pool_trials(rng, trials, dtype, kind):
    acc = {}
    for _ in range(trials):
        kh, kw = (int(v) for v in rng.integers(1, 5, 2))
        sh, sw = (int(v) for v in rng.integers(1, 5, 2))
        H, W = int(rng.integers(kh, 16)), int(rng.integers(kw, 16))
        x = rng.standard_normal((int(rng.integers(1, 5)), int(rng.integers(1, 5)), H, W)).astype(dtype)
        if kind == "max" and rng.integers(2):
            x = np.round(x * 2).astype(dtype)  # many ties: gradient must go to the first max
        if kind == "max":
            layer, tmod = MaxPool2d((kh, kw), (sh, sw), dtype=dtype), TorchPair(lambda: torch.nn.MaxPool2d((kh, kw), (sh, sw)), dtype)
        else:
            layer, tmod = AvgPool2d((kh, kw), (sh, sw), dtype=dtype), TorchPair(lambda: torch.nn.AvgPool2d((kh, kw), (sh, sw)), dtype)
        merge(acc, run_pair(layer, tmod, x, rng, dtype))
    return acc


def simple_trials(rng, trials, dtype, kind):
    acc = {}
    for _ in range(trials):
        shape = tuple(int(v) for v in rng.integers(1, 9, 4))
        x = rng.standard_normal(shape).astype(dtype)
        if kind == "relu":
            layer, tmod = ReLU(dtype=dtype), TorchPair(torch.nn.ReLU, dtype)
        elif kind == "gap":
            layer = GlobalAvgPool2d(dtype=dtype)
            tmod = TorchPair(lambda: torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()), dtype)
        else:
            layer, tmod = Flatten(dtype=dtype), TorchPair(torch.nn.Flatten, dtype)
        merge(acc, run_pair(layer, tmod, x, rng, dtype))
    return acc


def prefixed(prefix, errors):
    """Prefix error names, keeping a leading "torch32 " first."""
    return {("torch32 " + prefix + k[8:]) if k.startswith("torch32 ") else prefix + k: v for k, v in errors.items()}


def bn_trials(rng, trials, dtype):
    acc = {}
    for _ in range(trials):
        C = int(rng.integers(1, 9))
        mom = float(rng.choice([0.1, 0.01, 0.5]))
        layer = BatchNorm2d(C, momentum=mom, dtype=dtype)
        layer.params["weight"][:] = rng.standard_normal(C)
        layer.params["bias"][:] = rng.standard_normal(C)
        pair = TorchPair(lambda: torch.nn.BatchNorm2d(C, momentum=mom), dtype)
        for _ in range(int(rng.integers(1, 5))):  # several training batches
            # at least 8 values per channel: with n = 2 the input gradient is ~0 and ill-conditioned
            # (then torch's own float32 dx is off by percents too)
            shape = (int(rng.integers(2, 6)), C, int(rng.integers(2, 7)), int(rng.integers(2, 7)))
            x = (rng.standard_normal(shape) * rng.uniform(0.5, 3) + rng.standard_normal()).astype(dtype)
            merge(acc, prefixed("train ", run_pair(layer, pair, x, rng, dtype)))
        for name in ("running_mean", "running_var"):
            acc[name] = max(acc.get(name, 0.0), err(layer.buffers[name], getattr(pair.ref, name)))
            if pair.twin is not None:
                acc["torch32 " + name] = max(acc.get("torch32 " + name, 0.0),
                                             err(getattr(pair.twin, name).numpy(), getattr(pair.ref, name)))
        layer.eval()
        for m in pair.modules():
            m.eval()
        x = rng.standard_normal((3, C, 4, 4)).astype(dtype)
        merge(acc, prefixed("eval ", run_pair(layer, pair, x, rng, dtype)))
    return acc


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    worst = {np.float64: 0.0, np.float32: 0.0}
    ok = True
    for dtype in (np.float64, np.float32):
        rng = np.random.default_rng(args.seed)
        torch.manual_seed(args.seed)
        print(f"== {np.dtype(dtype).name}: worst max|a-b|/max|b| vs torch float64 over {args.trials} random configurations"
              + (" (torch32 = torch's own float32 error, for scale)" if dtype == np.float32 else ""))
        for label, fn in [("Conv2d", lambda: conv_trials(rng, args.trials, dtype)),
                          ("BatchNorm2d", lambda: bn_trials(rng, args.trials, dtype)),
                          ("ReLU", lambda: simple_trials(rng, args.trials, dtype, "relu")),
                          ("MaxPool2d", lambda: pool_trials(rng, args.trials, dtype, "max")),
                          ("AvgPool2d", lambda: pool_trials(rng, args.trials, dtype, "avg")),
                          ("GlobalAvgPool2d", lambda: simple_trials(rng, args.trials, dtype, "gap")),
                          ("Flatten", lambda: simple_trials(rng, args.trials, dtype, "flatten")),
                          ("Linear", lambda: linear_trials(rng, args.trials, dtype))]:
            acc = fn()
            mine = {k: v for k, v in acc.items() if not k.startswith("torch32")}
            theirs = {k[8:]: v for k, v in acc.items() if k.startswith("torch32")}
            # float32: within 10x of torch's own float32 error (or of 1e-6)
            bad = [k for k, v in mine.items()
                   if v > (1e-12 if dtype == np.float64 else 10 * max(theirs.get(k, 0.0), 1e-6))]
            worst[dtype] = max(worst[dtype], max(mine.values()))
            print(f"{label:<16} " + "  ".join(f"{k} {v:.1e}" + (f" [torch32 {theirs[k]:.1e}]" if k in theirs else "")
                                              for k, v in mine.items()) + (f"  MISMATCH: {bad}" if bad else ""))
            ok = ok and not bad
    print(f"worst: float64 {worst[np.float64]:.1e}, float32 {worst[np.float32]:.1e} -> {'PARITY OK' if ok else 'MISMATCH'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
