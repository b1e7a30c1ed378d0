"""The run directories of the converged sweeps, by state: the one definition of "finished" that
``lanes.sh``, ``commit_finished.sh`` and ``controllers.py`` share.

    python benchmarks/papers/converged/runs_state.py finished [SWEEP_DIR...]    # one run directory per line
    python benchmarks/papers/converged/runs_state.py unfinished [SWEEP_DIR...]  # with "(N/E epochs, ...left)"
    python benchmarks/papers/converged/runs_state.py prepare SPEC SWEEP_DIR      # sweep.json, nothing run
    python benchmarks/papers/converged/runs_state.py adopt FROM_SWEEP SWEEP_DIR  # copy finished runs in

``prepare`` writes SWEEP_DIR/sweep.json for SPEC (every run pending) when it is not there yet, so that
finished runs of the same configuration made by another sweep can be copied in before the sweep starts (it
refuses a folder with runs and no sweep.json, and skips finished runs once it has one). ``adopt`` copies into SWEEP_DIR (which has its sweep.json) the small files of
every finished run of FROM_SWEEP that is one of SWEEP_DIR's runs: the same arguments, so the same hash at the end
of the run id (the id's axis part may differ, ``method-baseline__seed-0-1a07d143`` and
``seed-0__case-baseline-1a07d143``); the copy takes SWEEP_DIR's name, and the sweep then skips that run.

A run is finished when the sweep engine says so (:func:`minicnn.sweep.engine.dir_state`: its summary says
completed or diverged); anything else with a ``metrics.jsonl`` is in progress or interrupted (a sweep
restarts it). Default SWEEP_DIRs: every folder of ``docs/measurements/converged``.
"""
import glob
import json
import os
import shutil
import sys

from minicnn.sweep.engine import DONE, dir_state

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "docs", "measurements", "converged")


def run_dirs(sweeps=None):
    sweeps = sweeps or sorted(glob.glob(os.path.join(ROOT, "*", "")))
    for sweep in sweeps:
        yield from sorted(d for d in glob.glob(os.path.join(sweep, "runs", "*")) if os.path.isdir(d))


def planned(run_dir: str) -> int | None:
    """The epochs a run's config.json says it runs (after any method's scaling), or None."""
    try:
        with open(os.path.join(run_dir, "config.json")) as f:
            return int(json.load(f)["epochs_run"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def pace(records: list, total: int | None) -> str:
    """", about S s an epoch, M min left" for a run of ``total`` epochs whose metrics lines are ``records``: the
    median of up to ten epoch-to-epoch differences of their ``wall_time_s`` (positive ones only: a guard against
    a clock that restarted); "" when there are none or the total is unknown. At the pace of the last epochs:
    an interrupted run's "left" is what it would need once restarted."""
    walls = [r.get("wall_time_s") for r in records[-11:]]
    steps = sorted(b - a for a, b in zip(walls, walls[1:]) if a is not None and b is not None and b > a)
    if not steps or total is None:
        return ""
    per = steps[len(steps) // 2]
    return f", about {per:.0f} s an epoch, {per * (total - len(records)) / 60:.0f} min left"


def finished(run_dir: str) -> bool:
    return dir_state(run_dir) in DONE


def prepare(spec_path: str, out: str) -> None:
    from minicnn.sweep.engine import SweepDir
    from minicnn.sweep.spec import load_spec
    if not os.path.isfile(os.path.join(out, "sweep.json")):
        os.makedirs(out, exist_ok=True)
        SweepDir(out, load_spec(spec_path)).save()


SMALL_FILES = ("summary.json", "metrics.jsonl", "config.json", "cost.json")


def adopt(src_sweep: str, out: str) -> list:
    """Copy ``src_sweep``'s finished runs that ``out``'s sweep.json also lists (matched by the arguments' hash)."""
    with open(os.path.join(out, "sweep.json")) as f:
        wanted = {r["id"].rsplit("-", 1)[-1]: r["id"] for r in json.load(f)["runs"]}
    copied = []
    for d in run_dirs([src_sweep]):
        name = wanted.get(os.path.basename(d).rsplit("-", 1)[-1])
        dst = os.path.join(out, "runs", name) if name else None
        if dst and finished(d) and not os.path.exists(dst):
            os.makedirs(dst)
            for f in SMALL_FILES:
                if os.path.isfile(os.path.join(d, f)):
                    shutil.copy(os.path.join(d, f), dst)
            copied.append(name)
    return copied


def main(argv):
    if argv[:1] == ["prepare"] and len(argv) == 3:
        prepare(argv[1], argv[2])
        return 0
    if argv[:1] == ["adopt"] and len(argv) == 3:
        for name in adopt(argv[1], argv[2]):
            print(f"adopted {name}")
        return 0
    if not argv or argv[0] not in ("finished", "unfinished"):
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    want = argv[0] == "finished"
    for d in run_dirs(argv[1:]):
        if finished(d) == want:
            if want:
                print(os.path.relpath(d))
            elif os.path.isfile(os.path.join(d, "metrics.jsonl")):
                with open(os.path.join(d, "metrics.jsonl")) as f:
                    records = [json.loads(line) for line in f if line.strip()]
                total = planned(d)
                of = f"/{total}" if total is not None else ""
                print(f"{os.path.relpath(d)} ({len(records)}{of} epochs{pace(records, total)})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
