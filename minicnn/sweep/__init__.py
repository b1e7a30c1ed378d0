"""Sweeps: many ``minicnn train`` runs from one spec, locally or on Dask; reports beside the papers' claims.

* ``spec``    -- the TOML spec: parsing, validation, the grid of runs
* ``engine``  -- running a sweep: sweep.json, resuming, each run a child process, the local worker pool
* ``dask_backend`` -- the same runs as tasks on a Dask cluster (``--scheduler``)
* ``results`` -- the report's numbers: configurations, seed statistics, the claims checked
* ``report``  -- plots and tables of those numbers: report.md / report.html / report.json
* ``presets`` -- ``minicnn reproduce NAME``: one preset per paper
* ``claims.toml`` -- the papers' headline claims and the shape a small run can show
"""
from .engine import SweepError, exit_code, run_sweep
from .presets import PRESETS, reproduce
from .report import write_report
from .results import build_report
from .spec import Spec, SpecError, load_spec, parse_spec

__all__ = ["PRESETS", "Spec", "SpecError", "SweepError", "build_report", "exit_code", "load_spec",
           "parse_spec", "reproduce", "run_sweep", "write_report"]
