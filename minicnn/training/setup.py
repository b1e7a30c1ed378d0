"""A run from its configuration: the one place that turns ``minicnn train``'s flags into objects.

``build_run(cfg)`` takes the train flags as a dict (``config.json`` of a run
directory holds exactly this dict, so ``--resume`` rebuilds the same run)
and returns the model (with method-owned layers attached before the
optimizer is built), dataset, optimizer, schedule, methods, ledger and
statistics recorder. It validates everything before any work is done:
a bad flag raises ValueError with a one-line message.

Run length: methods with an ``epochs_scale`` (SMD) multiply ``epochs``;
the schedule is built for the stretched run, milestones stretched too.
"""
from __future__ import annotations

#: the train flags and their defaults (what ``minicnn train`` with no flags uses)
DEFAULTS = dict(model=None, dataset="synthetic", data_dir=None, epochs=None, batch_size=128, lr=0.01, momentum=0.9,
                weight_decay=5e-4, nesterov=False, schedule="cosine", milestones=None, gamma=0.1, augment="none",
                width=None, train_images=None, val_images=0, method=[], stats=False, stats_every=10,
                energy_table=None, memory_level=None, seed=0)


def energy_table(path=None, memory_level=None):
    from ..cost import EnergyTable
    table = EnergyTable.from_json(path) if path else EnergyTable()
    if memory_level:
        table = EnergyTable(**{**table.to_dict(), "memory_level": memory_level})
    return table


def build_run(cfg: dict) -> dict:
    """Everything a run needs, from its configuration (the train flags as a dict); validates all of it."""
    cfg = {**DEFAULTS, **cfg}
    from ..cost import Ledger
    from ..data import load_dataset, subset
    from ..data.augment import check_augment
    from ..methods import attach, build_methods, epochs_scale, run_length
    from ..models import MODELS, build
    from .optim import SGD, make_schedule, stretch_milestones

    model_name = cfg.get("model") or "convnet-small"
    if model_name not in MODELS:
        raise ValueError(f"unknown model {model_name!r}; choose one of: {', '.join(MODELS)}")
    options = {"width": cfg["width"]} if cfg.get("width") is not None else {}
    if options and model_name not in ("alexnet-cifar", "alexnet-ye", "vgg11-cifar"):
        raise ValueError(f"--width applies to alexnet-cifar, alexnet-ye and vgg11-cifar, not {model_name}")
    methods = build_methods(cfg.get("method") or [])
    if cfg.get("milestones") and cfg.get("schedule") != "step":
        raise ValueError("--milestones needs --schedule step")
    base_epochs = cfg.get("epochs") or (5 if cfg["dataset"] == "synthetic" else 4)
    epochs = run_length(base_epochs, methods)
    scale = epochs_scale(methods)
    milestones = stretch_milestones(cfg["milestones"], scale) if cfg.get("milestones") else None
    check_augment(cfg.get("augment", "none"))
    energy = energy_table(cfg.get("energy_table"), cfg.get("memory_level"))   # a bad table fails before any work
    ds = load_dataset(cfg["dataset"], cfg.get("data_dir"))
    if cfg.get("train_images"):
        n = cfg["train_images"]
        if n < ds.num_classes:
            raise ValueError(f"--train-images {n} is fewer than the {ds.num_classes} classes")
        if n > len(ds.train_y):
            print(f"note: --train-images {n} exceeds the {len(ds.train_y)} training images; using all")
        ds = subset(ds, min(n, len(ds.train_y)), len(ds.test_y), seed=cfg["seed"])
    nval = cfg.get("val_images") or 0
    if nval and nval >= len(ds.train_y):
        raise ValueError(f"--val-images {nval} leaves no training images (there are {len(ds.train_y)})")
    if nval and nval < ds.num_classes:
        raise ValueError(f"--val-images {nval} is fewer than the {ds.num_classes} classes")
    model = build(model_name, num_classes=ds.num_classes, seed=cfg["seed"], **options)
    attach(model, methods)                              # method-owned layers, before the optimizer
    opt = SGD(model, lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"],
              nesterov=cfg["nesterov"])
    schedule = make_schedule(cfg["schedule"], cfg["lr"], epochs, gamma=cfg.get("gamma", 0.1), milestones=milestones)
    ledger = Ledger(model, energy=energy)
    stats = None
    if cfg.get("stats"):
        from ..stats import StatsRecorder
        stats = StatsRecorder(model, every=cfg["stats_every"])
    config = dict(cfg, model=model_name, epochs=base_epochs, epochs_run=epochs,
                  milestones_run=milestones)
    return dict(model=model, ds=ds, opt=opt, schedule=schedule, epochs=epochs, methods=methods, ledger=ledger,
                stats=stats, config=config, name=model_name)


