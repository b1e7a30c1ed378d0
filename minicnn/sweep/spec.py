"""Sweep specifications: a TOML file that names a grid of ``minicnn train`` runs.

::

    [train]                  # any `minicnn train` flag, without its leading dashes
    model = "resnet8"
    dataset = "cifar10"
    data-dir = "../shared/data/cifar-10-batches-py"
    epochs = 3
    [grid]                   # axes: every combination is one run
    method = ["baseline", "smd:p=0.5", ["smd:p=0.5", "wus"]]   # a list inside = a combination
    seed = [0, 1, 2]

Rules (each broken rule is a one-line :class:`SpecError` before anything runs):

* keys are the long flag names of ``minicnn train`` with their hyphens
  (``data-dir``, ``batch-size``); an unknown key is refused with the list of
  known ones;
* a flag without a value (``nesterov``, ``stats``) takes ``true`` (``false``
  leaves it out);
* ``method`` is a string or a list of strings; in ``[train]`` a list is a
  combination; in ``[grid]`` each entry is one axis value, itself a string or
  a list (a combination); ``"baseline"`` means no method;
* the grid axis ``case`` takes tables: each is one *configuration*, a method
  with the training settings the paper gives it, set together (E2-Train
  §4.1 trains PSG at lr 0.03 and everything else at 0.1)::

      [grid]
      case = [{method = "baseline"}, {method = "psg", lr = 0.03}]
      seed = [0, 1, 2]

  a case's keys override ``[train]`` (they are that configuration's own
  settings); they may not also be axes; ``minicnn report`` compares a case
  with the baseline whose arguments agree on everything that neither case
  sets (see :func:`minicnn.sweep.report.baseline_of`);
* ``out``, ``resume``, ``overwrite`` are refused (the sweep owns the run
  directories), and so are ``no-progress`` and ``debug`` (it sets them); a key
  given in both ``[train]`` and ``[grid]`` is refused;
* every value is checked with the same type and choices as on the command
  line; methods (and their options) against the method registry, models
  against the model zoo, datasets against the known ones;
* relative paths (``data-dir``, ``energy-table``) resolve against the folder
  of the spec file, not the current directory;
* an optional top-level ``description = "..."`` is kept in ``sweep.json``.

A run's identity is its full argument set: :func:`run_id` gives a readable
slug of its axis values plus a short hash of all its arguments, so a rerun of
the same spec finds the same run directories.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from itertools import product

#: keys the sweep refuses: it owns the run directory and the process's flags
RESERVED = {"out": "the sweep chooses each run's directory (DIR/runs/<id>)",
            "resume": "a rerun of the sweep resumes interrupted runs itself",
            "overwrite": "the sweep decides when a run directory is started afresh",
            "no-progress": "the sweep turns each run's progress bar off itself",
            "debug": "not a run setting"}
#: train flags whose value is a file system path (resolved against the spec's folder)
PATH_KEYS = ("data-dir", "energy-table")
#: the grid axis whose values are tables of flags set together (one configuration each)
CASE = "case"


class SpecError(ValueError):
    """A problem in a sweep spec; printed as one line."""


@dataclass
class RunSpec:
    """One configuration of the grid: a run."""
    id: str
    args: dict                      # flag name (with hyphens) -> value; method is a list of strings
    axes: dict                      # the grid axes' values for this run
    argv: list = field(default_factory=list)   # the `minicnn train` arguments (without --out)

    @property
    def group_key(self) -> str:
        """All arguments but the seed: the runs of one configuration share it."""
        return canonical({k: v for k, v in self.args.items() if k != "seed"})


@dataclass
class Spec:
    path: str
    train: dict
    grid: dict
    runs: list
    description: str = ""

    @property
    def digest(self) -> str:
        return hashlib.sha256(canonical({"train": self.train, "grid": self.grid}).encode()).hexdigest()[:12]


# -- the train command's flags ----------------------------------------------------------

def train_flags() -> dict:
    """``{flag-name: Flag}`` of ``minicnn train``'s run flags (``minicnn.training.flags``: the one list)."""
    from ..training.flags import train_flags as flags
    return {f.name: f for f in flags()}


def _check_value(key: str, value, flag, where: str):
    """Check one scalar value as the command line would; return it (booleans for switches)."""
    if flag.switch:
        if not isinstance(value, bool):
            raise SpecError(f"{where}: {key} is a flag without a value; write {key} = true")
        return value
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise SpecError(f"{where}: {key} must be a string or a number, got {value!r}")
    if flag.parse is not None:
        try:
            flag.parse(str(value))
        except (argparse.ArgumentTypeError, ValueError, TypeError) as e:
            raise SpecError(f"{where}: {key} = {value!r}: {e}") from None
    if flag.choices is not None and str(value) not in [str(c) for c in flag.choices]:
        raise SpecError(f"{where}: {key} = {value!r}; choose one of: {', '.join(map(str, flag.choices))}")
    return value


def _method_list(value, where: str) -> list:
    """``"smd:p=0.5"`` -> ``["smd:p=0.5"]``; a list of strings stays a list (a combination)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(s, str) and s.strip() for s in items):
        raise SpecError(f"{where}: method must be a string or a non-empty list of strings, got {value!r}")
    return [s.strip() for s in items]


def check_methods(methods: list, where: str):
    """Every method exists and takes its options (one line naming the first that does not)."""
    from ..methods import METHODS, build_methods
    for m in methods:
        name = m.partition(":")[0].strip()
        if name != "baseline" and name not in METHODS:
            raise SpecError(f"{where}: unknown method {name!r}: this minicnn has "
                            f"{', '.join(['baseline', *sorted(METHODS)])}")
        try:
            build_methods([m])
        except (ValueError, TypeError) as e:
            raise SpecError(f"{where}: method {m!r}: {e}") from None


def _check_entry(key: str, value, flags: dict, where: str, spec_dir: str):
    """Validate one (key, value) of the train table or one grid axis value; return the normalised value."""
    if key in RESERVED:
        raise SpecError(f"{where}: {key} cannot be set in a sweep ({RESERVED[key]})")
    if key not in flags:
        known = ", ".join(k for k in flags if k not in RESERVED)
        raise SpecError(f"{where}: unknown key {key!r}; minicnn train takes: {known}")
    if key == "method":
        methods = _method_list(value, where)
        check_methods(methods, where)
        return methods
    value = _check_value(key, value, flags[key], where)
    if key == "model":
        from ..models import MODELS
        if value not in MODELS:
            raise SpecError(f"{where}: unknown model {value!r}; choose one of: {', '.join(MODELS)}")
    if key == "dataset":
        from ..data.registry import DATASETS
        if value not in DATASETS:
            raise SpecError(f"{where}: unknown dataset {value!r}; choose one of: {', '.join(DATASETS)}")
    if key in PATH_KEYS and isinstance(value, str):
        value = os.path.normpath(os.path.join(spec_dir, os.path.expanduser(value)))
    return value


def _check_case(value, flags: dict, where: str, spec_dir: str, other_axes: set) -> dict:
    """One entry of the ``case`` axis: a non-empty table of train flags, each checked like any other."""
    if not isinstance(value, dict) or not value:
        raise SpecError(f"{where}: a case is a table of train flags, e.g. {{method = \"psg\", lr = 0.03}}; "
                        f"got {value!r}")
    clash = sorted(set(value) & other_axes)
    if clash:
        raise SpecError(f"{where}: {clash[0]} is also a grid axis; set it in one place")
    return {k: _check_entry(k, v, flags, where, spec_dir) for k, v in value.items()}


# -- loading -------------------------------------------------------------------------

def load_spec(path: str, data_dir: str | None = None) -> Spec:
    """Read and validate a spec file; expand its grid into runs.

    ``data_dir`` (``minicnn sweep --data-dir``), an existing directory, replaces ``[train] data-dir``: a spec
    written on one machine runs on another without editing. The runs' arguments, and so their ids, change
    with it.
    """
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise SpecError(f"spec file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{path} is not valid TOML: {e}") from None
    if data_dir is not None:
        if not os.path.isdir(data_dir):
            raise SpecError(f"--data-dir {data_dir} is not a directory")
        if not isinstance(raw.get("train", {}), dict):
            raise SpecError(f"{os.path.basename(path)}: [train] must be a table")
        raw.setdefault("train", {})["data-dir"] = os.path.abspath(data_dir)
    return parse_spec(raw, path)


def parse_spec(raw: dict, path: str = "<spec>") -> Spec:
    """Validate a parsed TOML document (``path`` locates relative paths and names errors)."""
    name = os.path.basename(path)
    spec_dir = os.path.dirname(os.path.abspath(path))
    unknown = set(raw) - {"train", "grid", "description"}
    if unknown:
        raise SpecError(f"{name}: unknown top-level key {sorted(unknown)[0]!r}; "
                        "a spec has [train], [grid] and an optional description")
    train_raw, grid_raw = raw.get("train", {}), raw.get("grid", {})
    if not isinstance(train_raw, dict) or not isinstance(grid_raw, dict):
        raise SpecError(f"{name}: [train] and [grid] must be tables (one [grid]: a configuration with settings "
                        f"of its own is a {CASE!r} entry)")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise SpecError(f"{name}: description must be a string")
    both = sorted(set(train_raw) & set(grid_raw))
    if both:
        raise SpecError(f"{name}: {both[0]} is given in both [train] and [grid]; give it in one")
    flags = train_flags()
    train = {k: _check_entry(k, v, flags, f"{name} [train]", spec_dir) for k, v in train_raw.items()}
    grid = _check_grid(grid_raw, flags, f"{name} [grid]", spec_dir)
    runs = expand(train, grid)
    return Spec(path=os.path.abspath(path), train=train, grid=grid, runs=runs, description=description)


def _check_grid(table: dict, flags: dict, where_table: str, spec_dir: str) -> dict:
    grid = {}
    for key, values in table.items():
        where = f"{where_table} {key}"
        if not isinstance(values, list) or not values:
            raise SpecError(f"{where}: an axis is a non-empty list of values, got {values!r}")
        if key == CASE:
            checked = [_check_case(v, flags, f"{where}[{i}]", spec_dir, set(table) - {CASE})
                       for i, v in enumerate(values)]
        elif key != "method" and any(isinstance(v, (list, dict)) for v in values):
            raise SpecError(f"{where}: axis values must be single values (only method entries may be lists; "
                            f"tables go in the {CASE!r} axis)")
        else:
            checked = [_check_entry(key, v, flags, where, spec_dir) for v in values]
        if len({canonical(v) for v in checked}) != len(checked):
            raise SpecError(f"{where}: the axis repeats a value")
        grid[key] = checked
    return grid


# -- the grid -----------------------------------------------------------------------------

def canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _slug_value(v) -> str:
    if isinstance(v, dict):             # a case: its method first, then its own settings
        items = sorted(v.items(), key=lambda kv: (kv[0] != "method", kv[0]))
        return "_".join(_slug_value(x) if k == "method" else f"{k}{_slug_value(x)}" for k, x in items)
    if isinstance(v, list):
        return "+".join(_slug_value(x) for x in v)
    s = str(v).replace(":", "-").replace("=", "").replace(",", "-")
    return re.sub(r"[^A-Za-z0-9.+_-]", "-", s)


def run_id(axes: dict, args: dict) -> str:
    """``method-smd-p0.5__seed-1-3fa2c91b``: axis values, then a hash of all the arguments."""
    digest = hashlib.sha256(canonical(args).encode()).hexdigest()[:8]
    slug = "__".join(f"{k}-{_slug_value(v)}" for k, v in axes.items())[:80]
    return f"{slug}-{digest}" if slug else digest


def to_argv(args: dict) -> list:
    """The ``minicnn train`` arguments of one run (``--out`` is added by the engine)."""
    argv = []
    for key, value in args.items():
        if key == "method":
            for m in value:
                argv += ["--method", m]
        elif value is True:
            argv.append(f"--{key}")
        elif value is False:
            continue
        else:
            argv += [f"--{key}", str(value)]
    return argv


def expand(train: dict, grid: dict) -> list:
    """Every combination of the grid's axes over the train table, in the spec's order."""
    runs = []
    keys = list(grid)
    for combo in product(*(grid[k] for k in keys)) if keys else [()]:
        axes = dict(zip(keys, combo))
        merged = {**train, **{k: v for k, v in axes.items() if k != CASE}, **axes.get(CASE, {})}
        args = {k: merged[k] for k in sorted(merged)}
        runs.append(RunSpec(id=run_id(axes, args), args=args, axes=axes, argv=to_argv(args)))
    ids = [r.id for r in runs]
    if len(set(ids)) != len(ids):   # only if two axis values normalise to the same arguments
        raise SpecError("two grid combinations give the same run; remove the duplicate axis value")
    return runs
