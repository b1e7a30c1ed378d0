"""Running a sweep: its directory and state, each run a child process, the local pool of workers.

Every run is an ordinary ``minicnn train`` child process (``python -m minicnn
train ... --out DIR/runs/<id> --no-progress``), so a sweep's run directories
are the same as hand-made ones, and killing a sweep ends its runs:

* each child runs in its own process group; on SIGINT or SIGTERM the sweep
  sends SIGTERM to every child's group, waits for them to checkpoint and exit
  (status ``interrupted``), records them and exits with status 130;
* each child is started through a two-line launcher that asks the kernel to
  send it SIGTERM when the sweep dies (``prctl(PR_SET_PDEATHSIG)``, Linux), so
  even ``kill -9`` of the sweep leaves no orphan holding a run's lock.

State lives in ``DIR/sweep.json`` (written atomically after every change) and,
authoritatively, in the run directories: a rerun reads each run's
``summary.json`` status. Completed and diverged runs are skipped; interrupted
runs (``summary.json`` says so, or a killed run left ``config.json`` and
``checkpoint.npz`` without a summary) continue with ``minicnn train --resume``;
failed runs and runs killed before their first checkpoint start again with
``--overwrite``. A second sweep on the same DIR is refused (``DIR/.sweep.lock``).

If the spec changed since DIR was made, the runs of the new spec are added
(runs whose arguments did not change keep their directories, since a run's id
hashes its arguments); runs no longer in the spec move to ``"retired"`` in
sweep.json, their directories are left alone, and ``minicnn report`` ignores
them.

Dask (``scheduler="tcp://HOST:PORT"``): the same runs as tasks on a cluster,
in :mod:`.dask_backend` (imported only when a scheduler is given: dask is
an optional dependency).
"""
from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import signal
import subprocess
import sys
import time

from ..fileio import atomic_write_json
from .spec import Spec, SpecError

#: run statuses in sweep.json
STATUSES = ("pending", "running", "completed", "diverged", "failed", "interrupted")
DONE = ("completed", "diverged")

# A child is started through this launcher: it asks Linux to SIGTERM it when the
# sweep process dies (PR_SET_PDEATHSIG = 1), then becomes `python -m minicnn train`.
_LAUNCHER = (
    "import ctypes,os,signal,sys\n"
    "try:\n ctypes.CDLL(None).prctl(1, signal.SIGTERM)\nexcept Exception:\n pass\n"
    "if os.getppid() != int(sys.argv[1]): sys.exit(130)\n"
    "os.execv(sys.executable, [sys.executable, '-m', 'minicnn', 'train', *sys.argv[2:]])\n"
)


class SweepError(ValueError):
    """A problem with a sweep directory or its options; printed as one line."""


# -- threads and workers ------------------------------------------------------------------

def threads_per_run() -> int:
    """``MINICNN_NUM_THREADS`` if set, else what a run would use by default (every core)."""
    v = os.environ.get("MINICNN_NUM_THREADS")
    if v:
        try:
            n = int(v)
        except ValueError:
            raise SweepError(f"MINICNN_NUM_THREADS={v!r} is not an integer") from None
        if n < 1:
            raise SweepError(f"MINICNN_NUM_THREADS={v!r} must be >= 1")
        return n
    return os.cpu_count() or 1


def default_workers() -> int:
    return max(1, (os.cpu_count() or 1) // threads_per_run())


# -- the state of a run directory -----------------------------------------------------------

def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def dir_state(run_dir: str) -> str:
    """What a run directory holds: completed / diverged / interrupted / resumable / dirty / empty."""
    summary = _read_json(os.path.join(run_dir, "summary.json"))
    if isinstance(summary, dict):
        status = summary.get("status", "completed")
        if status in ("completed", "diverged"):
            return status
        return "resumable" if _resumable(run_dir) else "dirty"
    if _resumable(run_dir):
        return "resumable"        # killed (no summary) after at least one checkpoint
    if os.path.isdir(run_dir) and os.listdir(run_dir):
        return "dirty"
    return "empty"


def _resumable(run_dir):
    return all(os.path.isfile(os.path.join(run_dir, f)) for f in ("config.json", "checkpoint.npz"))


# -- the sweep directory ---------------------------------------------------------------

class SweepDir:
    """DIR/sweep.json, DIR/runs/<id>/, DIR/logs/<id>.log; the state of every run."""

    def __init__(self, out: str, spec: Spec):
        self.out, self.spec = os.path.abspath(out), spec
        self.path = os.path.join(self.out, "sweep.json")
        old = _read_json(self.path) if os.path.isfile(self.path) else None
        self._saved = old         # what is on disk: save() leaves the file alone while nothing but the clock changed
        if os.path.exists(self.out) and not os.path.isdir(self.out):
            raise SweepError(f"--out {out} is a file, not a directory")
        if old is None and os.path.isdir(self.out) and set(os.listdir(self.out)) - {".sweep.lock"}:
            raise SweepError(f"{out} is not empty and holds no sweep.json; choose another --out")
        old_runs = {r["id"]: r for r in (old or {}).get("runs", []) + (old or {}).get("retired", [])}
        now = _now()
        self.doc = {"schema": "minicnn.sweep/1", "spec": spec.path, "spec_digest": spec.digest,
                    "description": spec.description, "created": (old or {}).get("created", now),
                    "updated": now, "train": spec.train, "grid": spec.grid, "runs": [], "retired": []}
        self.changed = old is not None and old.get("spec_digest") != spec.digest
        ids = {r.id for r in spec.runs}
        self.retired = [r for rid, r in old_runs.items() if rid not in ids]
        self.doc["retired"] = self.retired
        self.records = {}
        for run in spec.runs:
            prev = old_runs.get(run.id, {})
            rec = {"id": run.id, "dir": f"runs/{run.id}", "axes": run.axes, "args": run.args,
                   "argv": run.argv, "status": "pending", "error": prev.get("error"),
                   "exit_code": prev.get("exit_code"), "attempts": prev.get("attempts", 0),
                   "wall_time_s": prev.get("wall_time_s")}
            if "action" in prev:
                rec["action"] = prev["action"]      # how the last attempt started (fresh, resume, overwrite)
            st = dir_state(self.run_dir(run.id))
            if st in DONE:
                rec["status"] = st
                # the run's own summary is the record of a finished run (also one copied in from another sweep)
                summary = _read_json(os.path.join(self.run_dir(run.id), "summary.json"))
                rec["final_test_acc"] = summary.get("final_test_acc")
                rec["wall_time_s"] = summary.get("wall_time_s", rec["wall_time_s"])
            elif st == "resumable":
                rec["status"] = "interrupted"
            elif prev.get("status") == "failed":
                rec["status"] = "failed"
            self.records[run.id] = rec
            self.doc["runs"].append(rec)
        self.added = sum(1 for r in spec.runs if r.id not in old_runs) if old is not None else len(spec.runs)

    def run_dir(self, rid):
        return os.path.join(self.out, "runs", rid)

    def log_path(self, rid):
        return os.path.join(self.out, "logs", f"{rid}.log")

    def action(self, rid) -> str | None:
        """None (done), "resume", "overwrite" or "fresh"."""
        st = dir_state(self.run_dir(rid))
        if st in DONE:
            return None
        if st == "resumable":
            return "resume"
        return "overwrite" if st == "dirty" else "fresh"

    def save(self):
        """Write sweep.json, unless it would differ from the file on disk only in its "updated" time
        (reopening a finished sweep leaves its file, and a commit of it, untouched)."""
        if self._saved is not None:
            unchanged = json.loads(json.dumps(dict(self.doc, updated=self._saved.get("updated")), allow_nan=True))
            if unchanged == self._saved:
                return
        self.doc["updated"] = _now()
        atomic_write_json(self.path, self.doc, indent=2, allow_nan=True)
        self._saved = json.loads(json.dumps(self.doc, allow_nan=True))


def _now():
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# -- one run -------------------------------------------------------------------------

def train_argv(argv: list, run_dir: str, action: str) -> list:
    """The `minicnn train` arguments for a run directory and an action."""
    if action == "resume":
        return ["--resume", run_dir, "--no-progress"]
    extra = ["--overwrite"] if action == "overwrite" else []
    return [*argv, "--out", run_dir, "--no-progress", *extra]


def _child_env(threads: int) -> dict:
    env = dict(os.environ)
    env["MINICNN_NUM_THREADS"] = str(threads)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_child(argv: list, log_path: str, threads: int, cwd: str | None = None) -> subprocess.Popen:
    """Start `minicnn train ARGV` in its own process group, output appended to log_path."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    log = open(log_path, "ab")
    log.write(f"\n$ minicnn train {' '.join(argv)}   [{_now()}]\n".encode())
    log.flush()
    try:
        return subprocess.Popen([sys.executable, "-c", _LAUNCHER, str(os.getpid()), *argv],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=_child_env(threads), cwd=cwd, start_new_session=True)
    finally:
        log.close()


def stop_child(p: subprocess.Popen, sig=signal.SIGTERM):
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def error_line(log_text: str) -> str | None:
    """The last `minicnn: error: ...` line of a run's output (else its last line)."""
    lines = [ln.strip() for ln in log_text.splitlines() if ln.strip()]
    errs = [ln for ln in lines if ln.startswith("minicnn: error:")]
    if errs:
        return errs[-1][len("minicnn: error:"):].strip()
    return lines[-1] if lines else None


def outcome(run_dir: str, rc: int, log_text: str) -> dict:
    """Status of a finished child from its exit code and its directory."""
    summary = _read_json(os.path.join(run_dir, "summary.json"))
    status = summary.get("status", "completed") if isinstance(summary, dict) else None
    res = {"exit_code": rc, "error": None}
    if rc == 0 and status in (None, "completed"):
        res["status"] = "completed" if summary is not None else "failed"
        if summary is None:
            res["error"] = "exit status 0 but no summary.json"
    elif rc == 3 or status == "diverged":
        res["status"] = "diverged"
    elif rc in (130, -signal.SIGTERM, -signal.SIGINT) or status == "interrupted":
        res["status"] = "interrupted"
    else:
        res["status"] = "failed"
        res["error"] = error_line(log_text) or f"exit status {rc}"
        if rc < 0:
            res["error"] = f"killed by signal {-rc}"
    if isinstance(summary, dict):
        res["final_test_acc"] = summary.get("final_test_acc")
        res["wall_time_s"] = summary.get("wall_time_s")
    return res


def _tail(path, n=20000):
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - n))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


# -- the sweep -------------------------------------------------------------------------

class _Stop:
    """SIGINT/SIGTERM during a sweep: remember it; children are stopped by the loop."""

    def __init__(self):
        self.signum = None

    def __call__(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt   # a second Ctrl-C: stop waiting
        self.signum = signum

    def __enter__(self):
        self._old = {s: signal.signal(s, self) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


def run_sweep(spec: Spec, out: str, workers: int | None = None, scheduler: str | None = None,
              dry_run: bool = False, progress: bool = True, echo=print) -> dict:
    """Run (or continue) every run of ``spec`` into ``out``. Returns the sweep.json document.

    Raises SweepError (one line) for bad options; the caller maps the result's
    statuses to an exit code (:func:`exit_code`).
    """
    if workers is not None and scheduler is not None:
        raise SweepError("--workers and --scheduler exclude each other (a Dask cluster has its own workers)")
    if workers is not None and workers < 1:
        raise SweepError(f"--workers must be >= 1, got {workers}")
    threads = threads_per_run()
    if dry_run:
        sd = SweepDir(out, spec)
        for rec in sd.doc["runs"]:
            act = sd.action(rec["id"])
            echo(f"{rec['id']:<60} {rec['status']:<11} -> {act or 'skip'}: minicnn train "
                 f"{' '.join(train_argv(rec['argv'], sd.run_dir(rec['id']), act or 'fresh'))}")
        echo(f"{len(sd.doc['runs'])} runs, {sum(sd.action(r['id']) is not None for r in sd.doc['runs'])} to do "
             f"(dry run: nothing started)")
        return sd.doc
    os.makedirs(out, exist_ok=True)
    lock = open(os.path.join(out, ".sweep.lock"), "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise SweepError(f"another sweep is running in {out}") from None
    try:
        sd = SweepDir(out, spec)
        sd.doc["threads_per_run"] = threads
        if sd.changed:
            echo(f"note: the spec changed since {out} was made: {sd.added} new runs added, "
                 f"{len(sd.retired)} runs no longer in it kept under 'retired' in sweep.json")
        os.makedirs(os.path.join(sd.out, "runs"), exist_ok=True)
        todo = [(rec["id"], sd.action(rec["id"])) for rec in sd.doc["runs"]]
        todo = [(rid, act) for rid, act in todo if act is not None]
        sd.save()
        n_all, n_done = len(sd.doc["runs"]), len(sd.doc["runs"]) - len(todo)
        where = f"Dask scheduler {scheduler}" if scheduler else \
            f"{workers or default_workers()} local workers"
        echo(f"sweep: {n_all} runs, {n_done} already done, {len(todo)} to run on {where}, "
             f"{threads} threads per run")
        bar = _bar(n_all, n_done, progress)
        try:
            if scheduler:
                from .dask_backend import run_dask
                run_dask(sd, todo, scheduler, threads, bar, echo)
            else:
                _run_local(sd, todo, workers or default_workers(), threads, bar, echo)
        finally:
            if bar is not None:
                bar.close()
            sd.save()
        return sd.doc
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


def exit_code(doc: dict) -> int:
    st = [r["status"] for r in doc["runs"]]
    if "interrupted" in st or "pending" in st or "running" in st:
        return 130
    return 1 if "failed" in st else 0


def _bar(total, initial, progress):
    if not progress:
        return None
    from tqdm.auto import tqdm
    tqdm.monitor_interval = 0      # no monitor thread (children are forked)
    return tqdm(total=total, initial=initial, desc="sweep", unit="run", dynamic_ncols=True)


def _record(sd: SweepDir, rid: str, res: dict, bar, echo):
    rec = sd.records[rid]
    rec.update(status=res["status"], exit_code=res["exit_code"], error=res.get("error"))
    rec.pop("pid", None)
    for k in ("final_test_acc", "wall_time_s"):
        if res.get(k) is not None:
            rec[k] = res[k]
    sd.save()
    msg = f"{rid}: {res['status']}"
    if res.get("final_test_acc") is not None:
        msg += f" (test acc {res['final_test_acc']:.4f}, {res.get('wall_time_s') or 0:.1f}s)"
    if res.get("error"):
        msg += f": {res['error']}"
    if bar is not None:
        if res["status"] in DONE or res["status"] == "failed":
            bar.update(1)
        bar.write(msg)
    else:
        echo(msg)


def _mark_running(sd, rid, action):
    rec = sd.records[rid]
    rec.update(status="running", attempts=rec.get("attempts", 0) + 1, error=None, action=action)
    sd.save()


def _run_local(sd: SweepDir, todo: list, workers: int, threads: int, bar, echo):
    queue, running = list(todo), {}
    with _Stop() as stop:
        try:
            while queue or running:
                if stop.signum is None:
                    while queue and len(running) < workers:
                        rid, act = queue.pop(0)
                        run_dir = sd.run_dir(rid)
                        if act == "fresh" and os.path.isdir(run_dir):
                            os.rmdir(run_dir)        # empty (dir_state said so)
                        _mark_running(sd, rid, act)
                        p = start_child(train_argv(sd.records[rid]["argv"], run_dir, act),
                                        sd.log_path(rid), threads)
                        running[rid] = p
                        sd.records[rid]["pid"] = p.pid
                        sd.save()
                elif not getattr(stop, "forwarded", False):
                    for p in running.values():
                        stop_child(p)
                    stop.forwarded = True
                    queue.clear()
                for rid, p in list(running.items()):
                    rc = p.poll()
                    if rc is not None:
                        del running[rid]
                        _record(sd, rid, outcome(sd.run_dir(rid), rc, _tail(sd.log_path(rid))), bar, echo)
                time.sleep(0.05)
        except KeyboardInterrupt:     # a second Ctrl-C: do not wait for the runs' last checkpoint
            for p in running.values():
                stop_child(p, signal.SIGKILL)
            for rid, p in running.items():
                p.wait()
                _record(sd, rid, {"status": "interrupted", "exit_code": p.returncode}, bar, echo)
