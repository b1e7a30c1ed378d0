"""The ``minicnn`` command line.

    minicnn train     [--model M --dataset D --data-dir DIR --epochs E ... --method NAME:k=v --stats]
    minicnn evaluate  --checkpoint RUN/model.npz --dataset D --data-dir DIR [--split test|train] [--json]
    minicnn cost      --model M [--batch-size B]
    minicnn plot      RUN_DIR [RUN_DIR ...] [--out DIR]
    minicnn inspect   RUN_DIR [--layer NAME]
    minicnn bench     [--models convnet-small,resnet20] [--batch-size 128]

Every user error ends in one line on stderr, ``minicnn: error: ...``, and
exit status 1 (2 for a malformed command line), never a traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

DATASETS = ("synthetic", "cifar10", "cifar100")


class UserError(Exception):
    """A problem the user can fix; printed as one line."""


def _number(kind, low, strict=False):
    """An argparse type: ``kind`` (int or float), finite, >= low (> low if strict)."""
    what = ("an integer" if kind is int else "a finite number") + (f" > {low}" if strict else f" >= {low}")

    def parse(s):
        try:
            v = kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {s!r}") from None
        if not np.isfinite(v) or v < low or (strict and v == low):
            raise argparse.ArgumentTypeError(f"expected {what}, got {s!r}")
        return v
    return parse


_positive_int = _number(int, 1)
_nonneg_int = _number(int, 0)
_nonneg_float = _number(float, 0)
_positive_float = _number(float, 0, strict=True)


def _energy_args(p):
    p.add_argument("--energy-table", default=None, metavar="FILE",
                   help="JSON object overriding entries of the Horowitz 2014 energy table (see minicnn.cost.energy)")
    p.add_argument("--memory-level", default=None, choices=("dram", "cache_1mb", "cache_32kb", "cache_8kb"),
                   help="memory level every counted byte comes from (default dram)")


def _energy_table(a):
    from .cost import EnergyTable
    table = EnergyTable.from_json(a.energy_table) if a.energy_table else EnergyTable()
    if a.memory_level:
        table = EnergyTable(**{**table.to_dict(), "memory_level": a.memory_level})
    return table


class _Parser(argparse.ArgumentParser):
    """argparse, but a malformed command line gets one line (and --help the full usage)."""

    def error(self, message):
        self.exit(2, f"minicnn: error: {message} (see: {self.prog} --help)\n")


def _parser():
    from .models import MODELS
    p = _Parser(prog="minicnn", description="Train CNNs in NumPy+numba and count the cost of training.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model; with no arguments, a quick run on synthetic data")
    t.add_argument("--model", default=None, help=f"one of {', '.join(MODELS)} (default: convnet-small)")
    t.add_argument("--dataset", default="synthetic", help="synthetic (default, built in), cifar10 or cifar100")
    t.add_argument("--data-dir", default=None, help="CIFAR directory (python or binary format)")
    t.add_argument("--epochs", type=_positive_int, default=None, help="default 5 on synthetic data (about 15 s), 4 otherwise")
    t.add_argument("--batch-size", type=_positive_int, default=128)
    t.add_argument("--lr", type=_nonneg_float, default=0.01)
    t.add_argument("--momentum", type=_nonneg_float, default=0.9)
    t.add_argument("--weight-decay", type=_nonneg_float, default=5e-4)
    t.add_argument("--nesterov", action="store_true")
    t.add_argument("--schedule", default="cosine", choices=("constant", "step", "cosine"))
    t.add_argument("--augment", default="none", help="comma-separated: flip,crop, or none (default)")
    t.add_argument("--width", type=_positive_float, default=None, help="channel multiplier for alexnet-cifar/vgg11-cifar")
    t.add_argument("--train-images", type=_positive_int, default=None, help="train on a class-balanced subset")
    t.add_argument("--method", action="append", default=[], metavar="NAME[:key=value,...]",
                   help="a training method (repeatable); 'baseline' adds none")
    t.add_argument("--stats", action="store_true", help="record per-layer statistics (stats.jsonl)")
    t.add_argument("--stats-every", type=_positive_int, default=10, help="record statistics every k batches")
    _energy_args(t)
    t.add_argument("--seed", type=_nonneg_int, default=0)
    t.add_argument("--out", default=None, help="run directory (default runs/<model>-<dataset>-<time>)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")

    e = sub.add_parser("evaluate", help="accuracy and loss of a checkpoint")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--dataset", default="synthetic")
    e.add_argument("--data-dir", default=None)
    e.add_argument("--split", default="test", choices=("test", "train"))
    e.add_argument("--batch-size", type=_positive_int, default=256)
    e.add_argument("--json", action="store_true", help="print one JSON line")

    c = sub.add_parser("cost", help="per-layer MACs, bytes and energy of one training step")
    c.add_argument("--model", required=True)
    c.add_argument("--batch-size", type=_positive_int, default=128)
    c.add_argument("--num-classes", type=_positive_int, default=10)
    _energy_args(c)

    pl = sub.add_parser("plot", help="draw the plots of one or more runs (PNG)")
    pl.add_argument("runs", nargs="+")
    pl.add_argument("--out", default=None, help="output directory (default: <first run>/plots)")

    i = sub.add_parser("inspect", help="print a run's per-layer statistics")
    i.add_argument("run")
    i.add_argument("--layer", default=None)

    b = sub.add_parser("bench", help="training throughput (images/s, fwd+bwd+SGD, float32)")
    b.add_argument("--models", default="convnet-small,resnet20")
    b.add_argument("--batch-size", type=_positive_int, default=128)
    b.add_argument("--steps", type=_positive_int, default=10)
    _sweep_parsers(sub)
    return p


# -- commands ----------------------------------------------------------------------

def _load_data(name, data_dir, **kw):
    from .data import load_dataset
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    return load_dataset(name, data_dir, **kw)


def cmd_train(a):
    from .cost import Ledger
    from .data import subset
    from .methods import build_methods
    from .models import MODELS, build
    from .training import SGD, Trainer, make_schedule

    model_name = a.model or "convnet-small"
    if model_name not in MODELS:
        raise UserError(f"unknown model {model_name!r}; choose one of: {', '.join(MODELS)}")
    epochs = a.epochs or (5 if a.dataset == "synthetic" else 4)
    ds = _load_data(a.dataset, a.data_dir)
    if a.train_images:
        if a.train_images < ds.num_classes:
            raise UserError(f"--train-images {a.train_images} is fewer than the {ds.num_classes} classes")
        if a.train_images > len(ds.train_y):
            print(f"note: --train-images {a.train_images} exceeds the {len(ds.train_y)} training images; using all")
        ds = subset(ds, min(a.train_images, len(ds.train_y)), len(ds.test_y), seed=a.seed)
    augment = a.augment
    options = {"width": a.width} if a.width is not None else {}
    if options and model_name not in ("alexnet-cifar", "vgg11-cifar"):
        raise UserError(f"--width applies to alexnet-cifar and vgg11-cifar, not {model_name}")
    model = build(model_name, num_classes=ds.num_classes, seed=a.seed, **options)
    methods = build_methods(a.method)
    opt = SGD(model, lr=a.lr, momentum=a.momentum, weight_decay=a.weight_decay, nesterov=a.nesterov)
    schedule = make_schedule(a.schedule, a.lr, epochs)
    out = a.out or os.path.join("runs", f"{model_name}-{ds.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--out {out} is a file, not a directory")
    if os.path.isdir(out) and os.path.exists(os.path.join(out, "summary.json")):
        raise UserError(f"run directory {out} already holds a finished run; choose another --out")
    ledger = Ledger(model, energy=_energy_table(a), momentum=a.momentum > 0, weight_decay=a.weight_decay > 0)
    stats = None
    if a.stats:
        from .stats import StatsRecorder
        stats = StatsRecorder(model, every=a.stats_every)
    config = {k: v for k, v in vars(a).items() if k not in ("command", "no_progress")}
    config.update(model=model_name, epochs=epochs)
    trainer = Trainer(model, ds, opt, schedule, epochs, batch_size=a.batch_size, augment=augment,
                      methods=methods, ledger=ledger, stats=stats, run_dir=out, seed=a.seed,
                      progress=not a.no_progress, verbose=True, config=config)
    print(f"training {model_name} on {ds.name} ({len(ds.train_y)} train / {len(ds.test_y)} test images), "
          f"{epochs} epochs, methods: {', '.join(m.describe() for m in methods) or 'baseline'}", flush=True)
    summary = trainer.fit()
    sv = summary.get("savings", {})
    print(f"final test accuracy {summary['final_test_acc']:.4f} (best {summary['best_test_acc']:.4f}), "
          f"{summary['wall_time_s']:.1f}s; training MACs {summary['macs']['total']:.4g}, "
          f"energy {summary['energy_j']['total']:.4g} J (savings vs dense: MACs {sv.get('macs', 0):.1%}, "
          f"energy {sv.get('energy', 0):.1%})")
    print(f"run written to {out}")
    return 0


def cmd_evaluate(a):
    from .training import evaluate, load_checkpoint
    model, meta, mean, std = load_checkpoint(a.checkpoint)
    ds = _load_data(a.dataset, a.data_dir)
    n_out = model.output_shape((1, 3, 32, 32))[1]
    if n_out != ds.num_classes:
        raise UserError(f"checkpoint has {n_out} classes but dataset {ds.name} has {ds.num_classes}")
    if meta.get("dataset") and meta["dataset"] != ds.name:
        print(f"minicnn: warning: the checkpoint was trained on {meta['dataset']}, evaluating on {ds.name}",
              file=sys.stderr)
    x, y = (ds.test_x, ds.test_y) if a.split == "test" else (ds.train_x, ds.train_y)
    if mean is None:
        from .data import channel_stats
        mean, std = channel_stats(ds.train_x)
    r = evaluate(model, x, y, a.batch_size, mean, std)
    if a.json:
        print(json.dumps(r))
    else:
        print(f"{meta['arch']} on {ds.name} {a.split}: accuracy {r['accuracy']:.4f}, loss {r['loss']:.4f} "
              f"({r['images']} images)")
    return 0


def cmd_cost(a):
    from .cost import format_cost_table
    from .models import MODELS, build
    if a.model not in MODELS:
        raise UserError(f"unknown model {a.model!r}; choose one of: {', '.join(MODELS)}")
    model = build(a.model, num_classes=a.num_classes)
    print(format_cost_table(model, a.batch_size, energy=_energy_table(a)))
    return 0


def _check_run_dir(path):
    if not os.path.isdir(path):
        raise UserError(f"run directory {path} does not exist")
    if not os.path.exists(os.path.join(path, "metrics.jsonl")):
        raise UserError(f"{path} is not a minicnn run directory (no metrics.jsonl)")


def cmd_plot(a):
    from .plots import plot_runs
    for r in a.runs:
        _check_run_dir(r)
    if a.out and os.path.exists(a.out) and not os.path.isdir(a.out):
        raise UserError(f"--out {a.out} is a file, not a directory")
    paths = plot_runs(a.runs, a.out)
    for p in paths:
        print(p)
    return 0


def cmd_inspect(a):
    from .stats import inspect_run
    _check_run_dir(a.run)
    print(inspect_run(a.run, layer=a.layer))
    return 0


def cmd_bench(a):
    from .bench import bench_training
    for name in a.models.split(","):
        r = bench_training(name.strip(), a.batch_size, a.steps)
        print(f"{r['model']:>14}: {r['images_per_s']:7.1f} img/s  (batch {r['batch_size']}, fwd+bwd+SGD, float32, "
              f"median of {r['steps']} steps: {r['step_ms']:.1f} ms/step)")
    return 0


# -- sweeps: minicnn sweep / report / reproduce (the engine is minicnn.sweep) --------------

def _sweep_parsers(sub):
    def run_flags(q):
        q.add_argument("--workers", type=_positive_int, default=None,
                       help="local worker processes (default: cores // MINICNN_NUM_THREADS)")
        q.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="run on a Dask cluster, e.g. tcp://host:8786 (pip install \"minicnn[dask]\")")
        q.add_argument("--no-progress", action="store_true", help="no progress bar")

    s = sub.add_parser("sweep", help="run a grid of training runs from a TOML spec (resumable)")
    s.add_argument("spec", help="the spec file (TOML: [train] and [grid]; see minicnn.sweep.spec)")
    s.add_argument("--out", required=True, help="sweep directory (DIR/sweep.json, DIR/runs/<id>/)")
    run_flags(s)
    s.add_argument("--dry-run", action="store_true", help="list the runs and what would be done; run nothing")

    r = sub.add_parser("report", help="tables and plots of a sweep, beside the papers' claims")
    r.add_argument("sweep_dir")
    r.add_argument("--out", default=None, help="output directory (default SWEEP_DIR/report)")

    from .sweep.presets import PRESETS
    rp = sub.add_parser("reproduce", help="run a paper's preset sweep on the CIFAR-10 slice, then its report")
    rp.add_argument("name", choices=(*PRESETS, "all"))
    rp.add_argument("--data-dir", default=None, help="CIFAR-10 directory (default: $MINICNN_CIFAR10, "
                    "../shared/data/cifar-10-batches-py or data/cifar-10-batches-py)")
    rp.add_argument("--out", default=None, help="sweep directory (default runs/reproduce-NAME)")
    run_flags(rp)
    rp.add_argument("--dry-run", action="store_true", help="list the runs; run nothing")


def cmd_sweep(a):
    from .sweep import exit_code, load_spec, run_sweep
    doc = run_sweep(load_spec(a.spec), a.out, workers=a.workers, scheduler=a.scheduler,
                    dry_run=a.dry_run, progress=not a.no_progress)
    return 0 if a.dry_run else _sweep_exit(doc, a.out, exit_code(doc))


def _sweep_exit(doc, out, code):
    if code == 1:
        failed = [r for r in doc["runs"] if r["status"] == "failed"]
        print(f"minicnn: error: {len(failed)} of {len(doc['runs'])} runs failed (first: {failed[0]['id']}: "
              f"{failed[0]['error']}); see {out}/sweep.json", file=sys.stderr)
    elif code == 130:
        print(f"minicnn: interrupted; run the same command again to continue the sweep", file=sys.stderr)
    return code


def cmd_report(a):
    from .sweep import write_report
    for path in write_report(a.sweep_dir, a.out):
        print(path)
    return 0


def cmd_reproduce(a):
    from .sweep import exit_code, reproduce
    doc, out, reports = reproduce(a.name, data_dir=a.data_dir, out=a.out, workers=a.workers,
                                  scheduler=a.scheduler, dry_run=a.dry_run, progress=not a.no_progress)
    for path in reports:
        print(path)
    return 0 if a.dry_run else _sweep_exit(doc, out, exit_code(doc))


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "cost": cmd_cost, "plot": cmd_plot,
            "inspect": cmd_inspect, "bench": cmd_bench,
            "sweep": cmd_sweep, "report": cmd_report, "reproduce": cmd_reproduce}


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    from .data import DataError
    from .layers import ShapeError
    try:
        return COMMANDS[args.command](args)
    except (UserError, DataError, ShapeError, ValueError, KeyError, OSError) as e:
        # KeyError's str() is the repr of its argument: use the argument itself
        msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        msg = msg.strip() or type(e).__name__
        print(f"minicnn: error: {msg.splitlines()[0]}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("minicnn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
