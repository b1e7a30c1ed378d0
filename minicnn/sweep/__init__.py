"""Sweeps: many ``minicnn train`` runs from one spec, locally or on Dask; reports beside the papers' claims.

* ``spec``    -- the TOML spec: parsing, validation, the grid of runs
* ``engine``  -- running a sweep (local worker pool or Dask), resuming, sweep.json
* ``report``  -- tables, plots, claims: report.md / report.html / report.json
* ``presets`` -- ``minicnn reproduce NAME``: one preset per paper
* ``claims.toml`` -- the papers' headline claims and the shape a small run can show
"""
from .engine import SweepError, exit_code, run_sweep
from .presets import PRESETS, reproduce
from .report import build_report, write_report
from .spec import Spec, SpecError, load_spec, parse_spec

__all__ = ["PRESETS", "Spec", "SpecError", "SweepError", "build_report", "exit_code", "load_spec",
           "parse_spec", "reproduce", "run_sweep", "write_report"]
