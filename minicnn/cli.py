"""The ``minicnn`` command line.

    minicnn train     [--model M --dataset D --data-dir DIR --epochs E ... --method NAME:k=v --stats]
    minicnn train     --resume RUN_DIR                 (continue an interrupted run)
    minicnn evaluate  --checkpoint RUN/model.npz [--dataset D --data-dir DIR] [--split test|train] [--json]
    minicnn cost      --model M [--batch-size B]
    minicnn plot      RUN_DIR [RUN_DIR ...] [--out DIR]
    minicnn inspect   RUN_DIR [--layer NAME]
    minicnn bench     [--models convnet-small,resnet20] [--batch-size 128]

Every user error ends in one line on stderr, ``minicnn: error: ...``, and
exit status 1 (2 for a malformed command line), never a traceback; a bug
inside minicnn (or a method) says ``minicnn: internal error: ...`` and
``--debug`` shows its traceback. ``train`` exits 3 when the run diverged
and 130 when it was interrupted (Ctrl-C or SIGTERM; it prints how to resume).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


class UserError(Exception):
    """A problem the user can fix; printed as one line."""


def _energy_args(p):
    from .training.flags import ENERGY_FLAGS
    for flag in ENERGY_FLAGS:
        flag.add_to(p)


def _energy_table(a):
    from .training.setup import energy_table
    return energy_table(a.energy_table, a.memory_level)


class _Parser(argparse.ArgumentParser):
    """argparse, but a malformed command line gets one line (and --help the full usage, defaults shown)."""

    def __init__(self, *args, **kw):
        kw.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kw)

    def error(self, message):
        self.exit(2, f"minicnn: error: {message} (see: {self.prog} --help)\n")


def _parser():
    from .training.flags import positive_int, train_flags
    from .training.runfiles import RUN_FILES
    p = _Parser(prog="minicnn", description="Train CNNs in NumPy+numba and count the cost of training.")
    sub = p.add_subparsers(dest="command", required=True)

    from .training.setup import DEFAULTS
    t = sub.add_parser("train", help="train a model; with no arguments, a quick run on synthetic data")
    for flag in train_flags():          # the run's flags: one list for this parser and sweep specs
        flag.add_to(t)
    # one source of truth for the defaults: what build_run uses when a flag is absent (a sweep spec, --resume)
    t.set_defaults(**DEFAULTS)
    t.add_argument("--out", default=None, help="run directory (default runs/<model>-<dataset>-<time>)")
    t.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue the interrupted run in RUN_DIR with its recorded configuration")
    t.add_argument("--overwrite", action="store_true",
                   help=f"replace a previous run in --out (deletes {', '.join(RUN_FILES)} and plots/ there)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--debug", action="store_true", help="show the traceback of an error")

    e = sub.add_parser("evaluate", help="accuracy and loss of a checkpoint")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--dataset", default=None, help="default: the dataset the checkpoint was trained on")
    e.add_argument("--data-dir", default=None)
    e.add_argument("--split", default="test", choices=("test", "train"))
    e.add_argument("--batch-size", type=positive_int, default=256)
    e.add_argument("--json", action="store_true", help="print one JSON line")
    e.add_argument("--debug", action="store_true", help="show the traceback of an error")

    c = sub.add_parser("cost", help="per-layer MACs, bytes and energy of one training step")
    c.add_argument("--model", required=True)
    c.add_argument("--batch-size", type=positive_int, default=128)
    c.add_argument("--num-classes", type=positive_int, default=10)
    _energy_args(c)

    pl = sub.add_parser("plot", help="draw the plots of one or more runs (PNG)")
    pl.add_argument("runs", nargs="+")
    pl.add_argument("--out", default=None, help="output directory (default: <first run>/plots)")

    i = sub.add_parser("inspect", help="print a run's per-layer statistics")
    i.add_argument("run")
    i.add_argument("--layer", default=None)

    b = sub.add_parser("bench", help="training throughput (images/s, fwd+bwd+SGD, float32)")
    b.add_argument("--models", default="convnet-small,resnet20")
    b.add_argument("--batch-size", type=positive_int, default=128)
    b.add_argument("--steps", type=positive_int, default=10)
    _sweep_parsers(sub)
    return p


# -- commands ----------------------------------------------------------------------

def _load_data(name, data_dir, **kw):
    from .data import load_dataset         # refuses an unknown name in one line (DataError)
    return load_dataset(name, data_dir, **kw)


#: ``train`` flags that may accompany ``--resume`` (everything else comes from the run's config.json)
RESUME_FLAGS = ("resume", "no_progress", "debug", "command")


def cmd_train(a):
    from .training.setup import build_run
    from .training.runfiles import RunDirError, check_writable, clear_run, holds_run, is_locked, read_summary
    if a.resume:
        return _resume(a)
    out = a.out or os.path.join("runs", f"{a.model or 'convnet-small'}-{a.dataset}-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        check_writable(out)
    except RunDirError as e:
        raise UserError(str(e)) from None
    cfg = {k: v for k, v in vars(a).items() if k not in RESUME_FLAGS + ("overwrite", "out")}
    job = build_run(cfg)                       # validates everything before touching the directory
    from .training.setup import DEFAULTS
    if a.lr == DEFAULTS["lr"]:                 # --lr not given: say once if the method's paper uses another
        from .methods import paper_lr_note
        note = paper_lr_note(job["methods"], a.lr)
        if note:
            print(note, flush=True)
    if holds_run(out):
        if is_locked(out):
            raise UserError(f"run directory {out} is in use by another run")
        if not a.overwrite:
            summ = read_summary(out)
            what = (f"a {summ.get('status', 'finished')} run" if summ else "an unfinished run (resume it with "
                    f"minicnn train --resume {out})")
            raise UserError(f"run directory {out} already holds {what}; choose another --out or add --overwrite")
        gone = clear_run(out)
        print(f"--overwrite: deleted {', '.join(gone)} in {out}")
    return _run(job, out, resume=False, progress=not a.no_progress)


def _resume(a):
    from .training.setup import build_run
    from .training.runfiles import read_summary
    defaults = vars(_parser().parse_args(["train"]))
    given = [k for k, v in vars(a).items() if k not in RESUME_FLAGS and v != defaults.get(k)]
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise UserError(f"{flag} cannot be combined with --resume (a resumed run keeps its recorded configuration)")
    out = a.resume
    cfg_path = os.path.join(out, "config.json")
    if not os.path.isdir(out):
        raise UserError(f"run directory {out} does not exist")
    if not os.path.exists(cfg_path):
        raise UserError(f"{out} has no config.json: it is not a minicnn run directory (or predates --resume)")
    summ = read_summary(out)
    if summ and summ.get("status") in ("completed", "diverged"):
        raise UserError(f"the run in {out} is {summ['status']}; there is nothing to resume")
    with open(cfg_path) as f:
        cfg = json.load(f)
    job = build_run(cfg)
    return _run(job, out, resume=True, progress=not a.no_progress)


def _run(job, out, resume, progress):
    import warnings
    from .kernels import cache_is_warm
    # a diverging run overflows in the GEMM threads, where np.errstate (thread-local) does not reach:
    # the trainer reports divergence once, in one line, so NumPy's warnings would only repeat it
    warnings.filterwarnings("ignore", category=RuntimeWarning, message=r"(overflow|invalid value)")
    from .training import Trainer, TrainingInterrupted
    ds, cfg = job["ds"], job["config"]
    trainer = Trainer(job["model"], ds, job["opt"], job["schedule"], job["epochs"], batch_size=cfg["batch_size"],
                      augment=cfg.get("augment", "none"), methods=job["methods"], ledger=job["ledger"],
                      stats=job["stats"], run_dir=out, seed=cfg["seed"], progress=progress, verbose=True,
                      config=cfg, val_images=cfg.get("val_images") or 0)
    n_ep = job["epochs"]
    val = f" / {len(trainer.val_y)} validation" if len(trainer.val_y) else ""
    print(f"{'resuming' if resume else 'training'} {job['name']} on {ds.name} ({len(trainer.dataset.train_y)} train"
          f"{val} / {len(ds.test_y)} test images), {n_ep} epoch{'s' if n_ep != 1 else ''}, methods: "
          f"{', '.join(m.describe() for m in job['methods']) or 'baseline'}", flush=True)
    if not cache_is_warm():
        print("compiling kernels (first run only, about 8 s)...", flush=True)
    try:
        summary = trainer.fit(resume=resume)
    except TrainingInterrupted as e:
        done = e.summary["epochs"]
        print(f"minicnn: interrupted after {done} finished epoch{'s' if done != 1 else ''}; "
              f"resume with: minicnn train --resume {out}", file=sys.stderr)
        return 130
    sv = summary.get("savings", {})
    if summary["final_test_acc"] is not None:
        print(f"final test accuracy {summary['final_test_acc']:.4f} (best {summary['best_test_acc']:.4f}), "
              f"{summary['wall_time_s']:.1f}s; training MACs {summary['macs']['total']:.4g}, "
              f"energy {summary['energy_j']['total']:.4g} J (savings vs dense: MACs {sv.get('macs', 0):.1%}, "
              f"energy {sv.get('energy', 0):.1%})")
    print(f"run written to {out}")
    if summary["status"] == "diverged":
        d = summary["diverged_at"]
        print(f"minicnn: error: training diverged (non-finite loss) in epoch {d['epoch']}, batch {d['batch']}; "
              "try a smaller --lr", file=sys.stderr)
        return 3
    return 0


def cmd_evaluate(a):
    from .training import evaluate, load_checkpoint
    # the methods that act at evaluation come back with their hooks (and saved state: PSG's and fixed8's
    # running activation ranges), so this scores the network the run's own evaluation scored
    model, meta, mean, std, methods = load_checkpoint(a.checkpoint, with_methods=True)
    bad = [k for k, v in model.state_dict().items() if not np.all(np.isfinite(v))]
    if bad:
        raise UserError(f"checkpoint {a.checkpoint} holds non-finite weights (e.g. {bad[0]}); "
                        "the run that wrote it diverged")
    dataset = a.dataset or meta.get("dataset") or "synthetic"
    ds = _load_data(dataset, a.data_dir)
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
    if not np.isfinite(r["loss"]):
        raise UserError(f"the model gives a non-finite loss on {ds.name} {a.split}")
    if a.json:
        print(json.dumps(r))
    else:
        acting = [m.key for m in methods if m.acts_in_eval]
        how = f", with {', '.join(acting)} acting as in training's evaluation" if acting else ""
        print(f"{meta['arch']} on {ds.name} {a.split}: accuracy {r['accuracy']:.4f}, loss {r['loss']:.4f} "
              f"({r['images']} images{how})")
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
    from .training.flags import positive_int
    def run_flags(q):
        q.add_argument("--workers", type=positive_int, default=None,
                       help="local worker processes (default: cores // MINICNN_NUM_THREADS)")
        q.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="run on a Dask cluster, e.g. tcp://host:8786 (pip install \"minicnn[dask]\")")
        q.add_argument("--no-progress", action="store_true", help="no progress bar")

    plain = {"formatter_class": argparse.HelpFormatter}    # the help texts say their defaults
    s = sub.add_parser("sweep", **plain, help="run a grid of training runs from a TOML spec (resumable)")
    s.add_argument("spec", help="the spec file (TOML: [train] and [grid]; see minicnn.sweep.spec)")
    s.add_argument("--out", required=True, help="sweep directory (DIR/sweep.json, DIR/runs/<id>/)")
    s.add_argument("--data-dir", default=None,
                   help="dataset directory, replacing the spec's [train] data-dir (default: the spec's)")
    run_flags(s)
    s.add_argument("--dry-run", action="store_true", help="list the runs and what would be done; run nothing")

    r = sub.add_parser("report", **plain, help="tables and plots of a sweep, beside the papers' claims")
    r.add_argument("sweep_dir")
    r.add_argument("--out", default=None, help="output directory (default SWEEP_DIR/report)")

    from .sweep.presets import PRESETS
    rp = sub.add_parser("reproduce", **plain, help="run a paper's preset sweep on the CIFAR-10 slice, then its report")
    rp.add_argument("name", choices=(*PRESETS, "all"))
    rp.add_argument("--data-dir", default=None, help="CIFAR-10 directory (default: $MINICNN_CIFAR10, "
                    "../shared/data/cifar-10-batches-py or data/cifar-10-batches-py)")
    rp.add_argument("--out", default=None, help="sweep directory (default runs/reproduce-NAME[-converged])")
    rp.add_argument("--converged", action="store_true",
                    help="the paper's headline comparison trained to the baseline's plateau, 3 to 5 seeds (hours; resumable)")
    run_flags(rp)
    rp.add_argument("--dry-run", action="store_true", help="list the runs; run nothing")


def cmd_sweep(a):
    from .sweep import exit_code, load_spec, run_sweep
    doc = run_sweep(load_spec(a.spec, a.data_dir), a.out, workers=a.workers, scheduler=a.scheduler,
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
                                  scheduler=a.scheduler, dry_run=a.dry_run, progress=not a.no_progress,
                                  converged=a.converged)
    for path in reports:
        print(path)
    return 0 if a.dry_run else _sweep_exit(doc, out, exit_code(doc))


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "cost": cmd_cost, "plot": cmd_plot,
            "inspect": cmd_inspect, "bench": cmd_bench,
            "sweep": cmd_sweep, "report": cmd_report, "reproduce": cmd_reproduce}


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _stop_handler(signum, frame):
    """First Ctrl-C / SIGTERM: stop training cleanly at the next batch; a second one: stop now."""
    from .training.trainer import STOP_REQUESTED
    if STOP_REQUESTED.is_set():
        raise KeyboardInterrupt
    STOP_REQUESTED.set()


def main(argv=None) -> int:
    import signal
    args = _parser().parse_args(argv)
    from .data import DataError
    from .layers import ShapeError
    from .training.runfiles import RunDirError
    debug = getattr(args, "debug", False)
    # Ctrl-C and SIGTERM (a sweep ending its runs) both stop a run cleanly, even when this
    # process was started with SIGINT ignored (as background jobs of a shell are)
    handler = _stop_handler if args.command == "train" else _raise_interrupt
    old = signal.signal(signal.SIGTERM, handler)
    old_int = signal.signal(signal.SIGINT, handler)
    from .kernels.process import speed_settings
    try:
        with speed_settings():          # BLAS on one thread, minicnn's own pool (minicnn/kernels/process.py)
            return COMMANDS[args.command](args)
    except (UserError, DataError, ShapeError, RunDirError, ValueError, KeyError, OSError) as e:
        if debug:
            raise
        # KeyError's str() is the repr of its argument: use the argument itself
        msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        msg = msg.strip() or type(e).__name__
        print(f"minicnn: error: {msg.splitlines()[0]}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("minicnn: interrupted", file=sys.stderr)
        return 130
    except Exception as e:   # a bug in minicnn or in a method, not the user's doing
        if debug:
            raise
        msg = (str(e).strip().splitlines() or [""])[0]
        print(f"minicnn: internal error: {type(e).__name__}: {msg} (run with --debug for the traceback)",
              file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, old)
        signal.signal(signal.SIGINT, old_int)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
