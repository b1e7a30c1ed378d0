"""minicnn against PyTorch on this machine: training step, evaluation, memory, per-layer GFLOP/s, methods, cold start.

    python benchmarks/bench_vs_torch.py [--parts speed,memory,layers,methods,coldstart] [--quick] [--json FILE]

Run it with a Python that has minicnn *and* torch for the PyTorch columns
(torch is imported only here, never by minicnn), e.g. a separate venv::

    python -m venv /tmp/tv && /tmp/tv/bin/pip install torch==2.13.0 && /tmp/tv/bin/pip install -e .
    /tmp/tv/bin/python benchmarks/bench_vs_torch.py

Without torch the minicnn figures are printed alone. Every part prints the
machine (cores, CPU model), the date, and the thread counts.

Parts (each prints a table; ``--json`` writes every figure):

speed      Training step (forward + loss + backward + SGD with momentum and weight decay)
           of convnet-small, resnet20 and alexnet-ye at batch 128 and 32, random float32
           inputs, and evaluation throughput (eval mode, no gradients, batch 256). Both
           frameworks run *interleaved in one process*: rounds of a few minicnn steps then a
           few torch steps (the order alternating), so that a machine that slows down or
           speeds up affects both alike; figures are medians over all timed steps, and the
           ratio is minicnn img/s / torch img/s. Both use the same number of threads.
           ``--also-im2col`` adds minicnn with every conv on im2col (the code before the
           Winograd path) to the same interleaved rounds.
separate   The training step again with each framework alone in a child process, alternating
           (no library's idle threads beside the other's); the same ratio, the other way.
memory     Peak resident memory (VmHWM) of a child process per framework and model that
           builds the model and runs 3 training steps at batch 128; also the rise over the
           process's memory just before the first step (what training itself adds).
layers     Achieved GFLOP/s of one conv or linear layer's forward + backward (dW and dx) at
           batch 128 against NumPy's own GEMM (OpenBLAS on all threads) doing the same three
           products, (O,K)@(K,N*L), (O,N*L)@(N*L,K) and (K,O)@(O,N*L): stride-1 3x3,
           stride-2 3x3, stride-2 1x1 (the ResNet shortcut) and linear, ResNet-20 and
           alexnet-ye shapes. 2*MACs flops. With torch, the same layer in PyTorch beside it.
methods    Per-epoch training time (no evaluation) of resnet20 on the CIFAR slice with each
           method against plain runs (same seed, same batches) made just before and just after
           it, and the time spent inside the method's own hooks. WUS is forced into a WUS epoch (its controller
           scripted) so that one WUS epoch is timed against a normal one of the same run.
coldstart  Seconds from starting a Python process to the end of its first resnet20 training
           step (batch 128: import, build, forward, backward, SGD) with an empty numba cache
           (a fresh ``NUMBA_CACHE_DIR``), then twice again with that cache filled.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

# a child process that measures minicnn alone must not load torch (its memory, its threads)
_MINICNN_CHILD = ("--child-first-step" in sys.argv or sys.argv[-3:-2] == ["minicnn"]
                  or ("--child-speed" in sys.argv and sys.argv[sys.argv.index("--child-speed") + 1] == "minicnn"))
try:
    if _MINICNN_CHILD:
        raise ImportError
    import torch
    import torch.nn as nn
except ImportError:  # minicnn-only figures
    torch = None

MODELS = ("convnet-small", "resnet20", "alexnet-ye")


# -- machine ------------------------------------------------------------------------------------------
def machine() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    from minicnn.kernels import thread_info
    info = {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "cores": os.cpu_count(), "cpu": cpu,
            "python": platform.python_version(), "numpy": np.__version__, "minicnn_threads": thread_info(),
            "load_average": os.getloadavg()}
    if torch is not None:
        info["torch"] = f"{torch.__version__}, {torch.get_num_threads()} threads"
    return info


# -- the same models in PyTorch ----------------------------------------------------------------------
def torch_model(name: str):
    from torch_reference import convnet_small, init, resnet
    if name == "convnet-small":
        return init(convnet_small())
    if name == "resnet20":
        return init(resnet(3))
    if name == "alexnet-ye":    # minicnn.models.zoo.alexnet_ye
        def cr(i, o, p):
            return [nn.Conv2d(i, o, 3, 1, p), nn.ReLU()]
        return nn.Sequential(*cr(3, 64, 2), nn.MaxPool2d(2), *cr(64, 192, 2), nn.MaxPool2d(2), *cr(192, 384, 1),
                             *cr(384, 256, 1), *cr(256, 256, 1), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(4096, 2048), nn.ReLU(), nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 10))
    raise ValueError(name)


class MinicnnStep:
    def __init__(self, name, batch, seed=0):
        from minicnn.losses import SoftmaxCrossEntropy
        from minicnn.models import build
        from minicnn.training import SGD
        self.model = build(name, num_classes=10, seed=seed)
        self.opt = SGD(self.model, lr=0.01, momentum=0.9, weight_decay=5e-4)
        self.loss = SoftmaxCrossEntropy()
        rng = np.random.default_rng(seed)
        self.x = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
        self.y = rng.integers(0, 10, batch)

    def train_step(self):
        self.model.train()
        self.loss.forward(self.model.forward(self.x), self.y)
        self.model.zero_grad()
        self.model.backward(self.loss.backward())
        self.opt.step()

    def eval_step(self):
        self.model.eval()
        self.model.forward(self.x)


class MinicnnIm2colStep(MinicnnStep):
    """minicnn with every convolution forced onto im2col + GEMM (``conv2d.ALGORITHM = "im2col"``): the code
    before the Winograd path, for a before/after comparison in the same process and minutes."""

    def _forced(self, fn):
        from minicnn.kernels import conv2d
        before, conv2d.ALGORITHM = conv2d.ALGORITHM, "im2col"
        try:
            fn()
        finally:
            conv2d.ALGORITHM = before

    def train_step(self):
        self._forced(super().train_step)

    def eval_step(self):
        self._forced(super().eval_step)


class TorchStep:
    def __init__(self, name, batch, seed=0):
        torch.manual_seed(seed)
        self.model = torch_model(name)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        rng = np.random.default_rng(seed)
        self.x = torch.tensor(rng.standard_normal((batch, 3, 32, 32)).astype(np.float32))
        self.y = torch.tensor(rng.integers(0, 10, batch))

    def train_step(self):
        self.model.train()
        loss = nn.functional.cross_entropy(self.model(self.x), self.y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()

    def eval_step(self):
        self.model.eval()
        with torch.no_grad():
            self.model(self.x)


def interleaved(runners: dict, what: str, rounds: int, per_round: int) -> dict:
    """Median seconds per call of ``what`` for each runner, timed in alternating rounds."""
    for r in runners.values():          # warm-up: numba kernels, allocator, torch's thread pool
        for _ in range(2):
            getattr(r, what)()
    times = {k: [] for k in runners}
    names = list(runners)
    for i in range(rounds):
        for k in (names if i % 2 == 0 else names[::-1]):
            fn = getattr(runners[k], what)
            for _ in range(per_round):
                t = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t)
    return {k: float(np.median(v)) for k, v in times.items()}


def part_speed(quick: bool, models=MODELS, also_im2col=False) -> list[dict]:
    rows = []
    for name in models:
        for batch in (128, 32):
            big = name == "alexnet-ye"
            rounds, per = (2, 2) if quick else ((4, 2) if big else (5, 4))
            runners = {"minicnn": MinicnnStep(name, batch)}
            if also_im2col:
                runners["minicnn_im2col"] = MinicnnIm2colStep(name, batch)
            if torch is not None:
                runners["torch"] = TorchStep(name, batch)
            t = interleaved(runners, "train_step", rounds, per)
            row = {"model": name, "batch": batch, "what": "train step",
                   **{f"{k}_img_s": batch / v for k, v in t.items()}}
            if torch is not None:
                row["ratio"] = t["torch"] / t["minicnn"]
                if also_im2col:
                    row["ratio_im2col"] = t["torch"] / t["minicnn_im2col"]
            rows.append(row)
            print(fmt_row(row), flush=True)
        runners = {"minicnn": MinicnnStep(name, 256)}
        if torch is not None:
            runners["torch"] = TorchStep(name, 256)
        t = interleaved(runners, "eval_step", 2 if quick else 4, 2 if big else 4)
        row = {"model": name, "batch": 256, "what": "evaluation", **{f"{k}_img_s": 256 / v for k, v in t.items()}}
        if torch is not None:
            row["ratio"] = t["torch"] / t["minicnn"]
        rows.append(row)
        print(fmt_row(row), flush=True)
    return rows


def fmt_row(row) -> str:
    s = f"  {row['model']:>13} {row['what']:>10} batch {row['batch']:>3}: minicnn {row['minicnn_img_s']:7.1f} img/s"
    if "torch_img_s" in row:
        s += f"   torch {row['torch_img_s']:7.1f} img/s   ratio {row['ratio']:.2f}"
    if "minicnn_im2col_img_s" in row:
        s += f"   | im2col only: minicnn {row['minicnn_im2col_img_s']:7.1f} img/s"
        if "ratio_im2col" in row:
            s += f"   ratio {row['ratio_im2col']:.2f}"
    return s


def part_separate(quick: bool, models=MODELS) -> list[dict]:
    """The training step again, each framework alone in a child process of its own, alternating A B B A.

    The interleaved figures share one process, where one library's idle threads
    (PyTorch's OpenMP threads spin after each operation) may take a core from the
    other; here each runs alone, one child after the other in the same minutes.
    """
    rows = []
    frameworks = ["minicnn"] + (["torch"] if torch is not None else [])
    for name in models:
        for batch in (128, 32):
            times = {fw: [] for fw in frameworks}
            for r in range(1 if quick else 2):
                for fw in (frameworks if r % 2 == 0 else frameworks[::-1]):
                    out = subprocess.run([sys.executable, __file__, "--child-speed", fw, name, str(batch)],
                                         capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
                    times[fw] += json.loads(out)
            t = {fw: float(np.median(v)) for fw, v in times.items()}
            row = {"model": name, "batch": batch, "what": "train step (separate processes)",
                   **{f"{fw}_img_s": batch / v for fw, v in t.items()}}
            if torch is not None:
                row["ratio"] = t["torch"] / t["minicnn"]
            rows.append(row)
            print(fmt_row(row), flush=True)
    return rows


def child_speed(framework: str, name: str, batch: int) -> None:
    step = MinicnnStep(name, batch) if framework == "minicnn" else TorchStep(name, batch)
    for _ in range(2):
        step.train_step()
    ts = []
    for _ in range(4 if name == "alexnet-ye" else 10):
        t = time.perf_counter()
        step.train_step()
        ts.append(time.perf_counter() - t)
    print(json.dumps(ts))


# -- memory: one child process per framework and model ------------------------------------------------
def child_memory(framework: str, name: str, batch: int) -> None:
    import gc
    step = MinicnnStep(name, batch) if framework == "minicnn" else TorchStep(name, batch)
    gc.collect()
    before = _rss_now()
    for _ in range(3):
        step.train_step()
    print(json.dumps({"peak_mib": _status_mib("VmHWM"), "before_first_step_mib": before}))


def _rss_now() -> float:
    return _status_mib("VmRSS")


def _status_mib(key: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process, MiB. (Not ru_maxrss: Linux carries it over from the
    parent across fork and exec, so a child of a big benchmark process would report the parent's peak.)"""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def part_memory(quick: bool, models=MODELS) -> list[dict]:
    rows = []
    frameworks = ["minicnn"] + (["torch"] if torch is not None else [])
    for name in models:
        row = {"model": name, "batch": 128}
        for fw in frameworks:
            out = subprocess.run([sys.executable, __file__, "--child-memory", fw, name, "128"], capture_output=True,
                                 text=True, check=True).stdout.strip().splitlines()[-1]
            d = json.loads(out)
            row[f"{fw}_peak_mib"] = d["peak_mib"]
            row[f"{fw}_training_mib"] = d["peak_mib"] - d["before_first_step_mib"]
        rows.append(row)
        s = f"  {name:>13} batch 128: minicnn peak {row['minicnn_peak_mib']:6.0f} MiB (+{row['minicnn_training_mib']:5.0f} in training)"
        if torch is not None:
            s += f"   torch peak {row['torch_peak_mib']:6.0f} MiB (+{row['torch_training_mib']:5.0f} in training)"
        print(s, flush=True)
    return rows


# -- layers against NumPy's GEMM ----------------------------------------------------------------------
LAYER_SHAPES = [  # (label, kind, C_in, C_out, k, stride, pad, H) ; linear: (label, "linear", in, out)
    ("3x3 s1 16->16 @32", "conv", 16, 16, 3, 1, 1, 32),
    ("3x3 s1 32->32 @16", "conv", 32, 32, 3, 1, 1, 16),
    ("3x3 s1 64->64 @8", "conv", 64, 64, 3, 1, 1, 8),
    ("3x3 s1 64->192 @17 p2", "conv", 64, 192, 3, 1, 2, 17),
    ("3x3 s2 16->32 @32", "conv", 16, 32, 3, 2, 1, 32),
    ("3x3 s2 32->64 @16", "conv", 32, 64, 3, 2, 1, 16),
    ("1x1 s2 16->32 @32", "conv", 16, 32, 1, 2, 0, 32),
    ("1x1 s2 32->64 @16", "conv", 32, 64, 1, 2, 0, 16),
    ("linear 4096->2048", "linear", 4096, 2048),
    ("linear 2048->2048", "linear", 2048, 2048),
]


def _median_time(fn, reps):
    fn()
    fn()        # two warm-ups: the first calls fault in fresh memory
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def _layer_case(spec, batch, rng):
    """(minicnn layer, x, dy, (M, K, N) of its forward GEMM, a torch twin or None) for one LAYER_SHAPES entry."""
    from minicnn.layers import Conv2d, Linear
    kind = spec[1]
    if kind == "conv":
        _, _, C, O, k, s, p, H = spec
        layer = Conv2d(C, O, k, stride=s, padding=p, bias=False)
        x = rng.standard_normal((batch, C, H, H)).astype(np.float32)
        Ho = (H + 2 * p - k) // s + 1
        mkn = (O, C * k * k, batch * Ho * Ho)
        twin = nn.Conv2d(C, O, k, s, p, bias=False) if torch is not None else None
    else:
        _, _, I, O = spec
        layer = Linear(I, O)
        x = rng.standard_normal((batch, I)).astype(np.float32)
        mkn = (O, I, batch)
        twin = nn.Linear(I, O) if torch is not None else None
    layer.needs_input_grad = True
    dy = rng.standard_normal(layer.forward(x).shape).astype(np.float32)
    return layer, x, dy, mkn, twin


def part_layers(quick: bool, batch: int = 128) -> list[dict]:
    """Three passes, so that one library's idle threads never spin beside another's timing:
    every minicnn layer, then NumPy's GEMMs (OpenBLAS on every core), then every torch layer."""
    from minicnn.kernels import process, threads
    rng = np.random.default_rng(0)
    reps = 3 if quick else 9
    cases = [_layer_case(spec, batch, rng) for spec in LAYER_SHAPES]
    rows = []
    for spec, (layer, x, dy, (M, K, NL), _) in zip(LAYER_SHAPES, cases):
        def fwd_bwd():
            layer.forward(x)
            layer.backward(dy)
        rows.append({"layer": spec[0], "M": M, "K": K, "N": NL, "flops": 3 * 2 * M * K * NL,
                     "minicnn_s": _median_time(fwd_bwd, reps)})
    for _, fn in process._openblas_setters():      # NumPy as it comes: BLAS on every core
        fn(threads.num_threads())
    try:
        for row in rows:
            a = rng.standard_normal((row["M"], row["K"])).astype(np.float32)
            b = rng.standard_normal((row["K"], row["N"])).astype(np.float32)
            g = rng.standard_normal((row["M"], row["N"])).astype(np.float32)

            def gemms():        # forward, dW and dX as three plain GEMMs
                a @ b
                g @ b.T
                a.T @ g

            row["numpy_gemm_s"] = _median_time(gemms, reps)
    finally:
        for _, fn in process._openblas_setters():
            fn(1)
    if torch is not None:
        for row, (_, x, dy, _, twin) in zip(rows, cases):
            tx = torch.tensor(x, requires_grad=True)
            tdy = torch.tensor(dy)

            def torch_fwd_bwd():
                tx.grad = None
                twin.zero_grad()
                twin(tx).backward(tdy)

            row["torch_s"] = _median_time(torch_fwd_bwd, reps)
    for row in rows:
        for k in ("minicnn", "numpy_gemm", "torch"):
            if k + "_s" in row:
                row[k + "_gflops"] = row["flops"] / row[k + "_s"] / 1e9
        row["fraction_of_gemm"] = row["minicnn_gflops"] / row["numpy_gemm_gflops"]
        print(f"  {row['layer']:>22}: minicnn {row['minicnn_gflops']:6.1f} GFLOP/s   NumPy GEMM "
              f"{row['numpy_gemm_gflops']:6.1f} GFLOP/s   {row['fraction_of_gemm']:.2f} of GEMM"
              + (f"   torch {row['torch_gflops']:6.1f} GFLOP/s" if "torch_gflops" in row else ""), flush=True)
    return rows


# -- methods on resnet20 -------------------------------------------------------------------------------
class _Timed:
    """Wraps every hook method of one object to add up the seconds spent in it while training.

    A layer-level hook whose layer is in eval mode (the per-epoch evaluation) is
    not counted: the epoch times it is compared with leave evaluation out.
    """

    def __init__(self, obj):
        from minicnn.hooks import HOOK_POINTS, _overrides
        self.seconds = 0.0
        for name in HOOK_POINTS:
            if _overrides(obj, name):
                setattr(obj, name, self._wrap(getattr(obj, name)))

    def _wrap(self, fn):
        def timed(*a, **k):
            if a and getattr(a[0], "training", True) is False:
                return fn(*a, **k)
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.seconds += time.perf_counter() - t
        return timed


def _method_run(method: str, data_dir: str, epochs: int, train_images: int, wus_from: int | None = None,
                model: str = "resnet20"):
    from minicnn.training import Trainer
    from minicnn.training.setup import build_run
    job = build_run({"model": model, "dataset": "cifar10", "data_dir": data_dir, "epochs": epochs,
                     "train_images": train_images, "method": [method] if method != "baseline" else [], "seed": 0,
                     "lr": 0.05})
    timers = []
    for m in job["methods"]:
        if wus_from is not None:    # script the WUS controller: normal epochs, then WUS from epoch wus_from
            m.controller.kind_of = lambda e, lr_changed=False: "wus" if e >= wus_from else "normal"
        timers.append(_Timed(m))
    cfg = job["config"]
    tr = Trainer(job["model"], job["ds"], job["opt"], job["schedule"], job["epochs"], batch_size=cfg["batch_size"],
                 methods=job["methods"], ledger=job["ledger"], seed=0, progress=False, verbose=False, config=cfg)
    summary = tr.fit()
    per_epoch = [r["train_time_s"] for r in tr.state.history]
    summary["dropped_per_epoch"] = np.diff([0] + [r["batches_dropped_cum"] for r in tr.state.history]).tolist()
    return per_epoch, sum(t.seconds for t in timers), summary


#: (method, target ratio, what is compared) of the methods part (issue 16's targets)
METHOD_TARGETS = (("gradprune", 1.05, "step"), ("fixed8", 1.2, "step"), ("psg", 1.3, "step"),
                  ("slu:target=0.6", 0.75, "step"), ("smd:p=0.5", 0.55, "epoch"))


def part_methods(quick: bool, data_dir: str, only: str | None = None) -> list[dict]:
    """resnet20 epochs with each method against the same epochs without it.

    ``only``: a comma list of method names (``fixed8,psg,wus``) to run a subset.

    The machine drifts by 10-30% over minutes, so plain runs bracket every method run
    (baseline, method 1, baseline, method 2, ..., baseline) and each method is compared with the
    mean of the two plain runs just before and after it.
    """
    n_img = 1280 if quick else 2560
    epochs = 3 if quick else 4
    rows = []

    def baseline():
        ep, _, _ = _method_run("baseline", data_dir, epochs, n_img)
        b = float(np.mean(ep[1:]))          # epoch 1 includes the warm-up (allocator, first calls)
        print(f"  {'baseline':>15}: {b:.2f} s/epoch (epochs {', '.join(f'{t:.2f}' for t in ep)})", flush=True)
        return b

    wanted = None if not only else set(only.split(","))
    before = baseline()
    for method, target, what in METHOD_TARGETS:
        if wanted is not None and method.split(":")[0] not in wanted:
            continue
        ep, hook_s, summary = _method_run(method, data_dir, epochs, n_img)
        hook_s *= sum(ep[1:]) / sum(ep)     # the hooks' share of the timed epochs (an even spread assumed)
        m = float(np.mean(ep[1:]))
        after = baseline()
        b = (before + after) / 2
        row = {"method": method, "baseline_epoch_s": [before, after], "method_epoch_s": m, "ratio": m / b,
               "hook_share": hook_s / sum(ep[1:]), "target": target, "compare": what}
        rec = summary.get("method_records", {})
        if method.startswith("slu"):
            row["executed"] = [e["executed"] for e in rec["slu"]["per_epoch"]]
        if method.startswith("smd"):
            row["batches_dropped"] = int(sum(summary["dropped_per_epoch"][1:]))
        rows.append(row)
        print(f"  {method:>15}: {m:.2f} s/epoch vs {before:.2f} and {after:.2f} = {m / b:.2f}x the baseline {what} "
              f"(target <= {target}); {100 * row['hook_share']:.1f}% of its time in the method's hooks"
              + (f"; executed {', '.join(f'{e:.2f}' for e in row['executed'])}" if "executed" in row else "")
              + (f"; {row['batches_dropped']} of {(epochs - 1) * (n_img // 128)} timed batches dropped"
                 if "batches_dropped" in row else ""), flush=True)
        before = after
    if wanted is not None and "wus" not in wanted:
        return rows
    ep, hook_s, _ = _method_run("wus", data_dir, 4, n_img, wus_from=2)
    normal, wus = ep[1], float(np.mean(ep[2:]))
    rows.append({"method": "wus", "normal_epoch_s": normal, "wus_epoch_s": wus, "ratio": wus / normal, "target": 0.35,
                 "compare": "WUS epoch / normal epoch, same run"})
    print(f"  {'wus':>15}: WUS epoch {wus:.2f} s vs normal epoch {normal:.2f} s = {wus / normal:.2f}x (target <= 0.35)",
          flush=True)
    return rows


# -- cold start ----------------------------------------------------------------------------------------
def part_coldstart(quick: bool) -> list[dict]:
    """Seconds to the end of the first batch of `minicnn train`, empty numba cache then warm cache."""
    rows = []
    cache = tempfile.mkdtemp(prefix="minicnn-numba-cache-")
    env = dict(os.environ, NUMBA_CACHE_DIR=cache)
    try:
        for kind in ("cold (empty numba cache)", "warm (cache filled by the run before)", "warm again"):
            t = time.perf_counter()
            subprocess.run([sys.executable, __file__, "--child-first-step", "resnet20"], env=env, check=True,
                           capture_output=True, text=True)
            s = time.perf_counter() - t
            rows.append({"kind": kind, "seconds_to_first_batch": s})
            print(f"  {kind:>40}: {s:5.1f} s to the end of the first batch", flush=True)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", default="speed,separate,memory,layers,methods,coldstart")
    p.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    p.add_argument("--models", default=",".join(MODELS), help="for the speed and memory parts")
    p.add_argument("--data-dir", default=os.path.join(os.path.dirname(ROOT), "shared", "data", "cifar-10-batches-py"))
    p.add_argument("--also-im2col", action="store_true",
                   help="speed part: also time minicnn with every conv forced onto im2col (MINICNN_CONV_ALGO=im2col), "
                        "interleaved with the others: before/after the Winograd path in the same minutes")
    p.add_argument("--methods", help="methods part: only these (comma list of names, e.g. fixed8,psg)")
    p.add_argument("--json", help="write every figure here")
    p.add_argument("--child-memory", nargs=3, metavar=("FRAMEWORK", "MODEL", "BATCH"), help=argparse.SUPPRESS)
    p.add_argument("--child-first-step", metavar="MODEL", help=argparse.SUPPRESS)
    p.add_argument("--child-speed", nargs=3, metavar=("FRAMEWORK", "MODEL", "BATCH"), help=argparse.SUPPRESS)
    a = p.parse_args()
    from minicnn.kernels import apply_speed_settings, threads
    apply_speed_settings()              # as minicnn train has them (minicnn/kernels/process.py)
    if a.child_speed:
        fw, name, batch = a.child_speed
        if torch is not None:
            torch.set_num_threads(threads.num_threads())
        child_speed(fw, name, int(batch))
        return
    if a.child_first_step:
        MinicnnStep(a.child_first_step, 128).train_step()
        return
    if a.child_memory:
        fw, name, batch = a.child_memory
        child_memory(fw, name, int(batch))
        return
    if torch is not None:
        torch.set_num_threads(threads.num_threads())
    info = machine()
    print(" | ".join(f"{k}: {v}" for k, v in info.items()))
    if torch is None:
        print("torch is not installed in this Python: minicnn figures only")
    results = {"machine": info}
    models = a.models.split(",")
    parts = {"speed": lambda: part_speed(a.quick, models, a.also_im2col), "separate": lambda: part_separate(a.quick, models),
             "memory": lambda: part_memory(a.quick, models),
             "layers": lambda: part_layers(a.quick), "methods": lambda: part_methods(a.quick, a.data_dir, a.methods),
             "coldstart": lambda: part_coldstart(a.quick)}
    for name in a.parts.split(","):
        if name not in parts:
            sys.exit(f"unknown part {name!r}; choose from {', '.join(parts)}")
        print(f"\n== {name} ==", flush=True)
        results[name] = parts[name]()
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
