"""Running a sweep on a Dask distributed cluster (``minicnn sweep --scheduler tcp://HOST:PORT``).

Dask (``scheduler="tcp://HOST:PORT"``): each run is one task. The task runs the
same child process in a temporary directory on the worker and returns the run
directory's files; the client writes them into DIR/runs/<id>/ (summary.json
last), so workers need no shared file system for results. An interrupted run
resumed on Dask ships its directory's files to the worker. The data must be at
the same path on every worker (``data-dir`` is resolved to an absolute path on
the client). Each run gets the client's threads per run
(``MINICNN_NUM_THREADS``), so the results equal the local pool's.

The sweep directory, the child process of a run and its outcome are the
local engine's (:mod:`.engine`); only where the child runs differs.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid

from ..fileio import atomic_write_bytes
from .engine import SweepDir, SweepError, _mark_running, _record, _Stop, _tail, outcome, start_child, stop_child, \
    train_argv


# -- the task a worker runs ----------------------------------------------------------

def remote_run(task: dict, stop_event: str | None = None) -> dict:
    """Run one `minicnn train` on a Dask worker in a temporary directory; return its files.

    ``task``: ``{"id", "argv", "action", "threads", "files": {relpath: bytes}}``
    (files: the run directory to resume from). Polls the Dask ``Event`` named
    ``stop_event``: when the client sets it, the run is stopped with SIGTERM (it
    checkpoints and exits 130) and what it wrote is returned all the same.
    """
    ev = None
    if stop_event:
        from dask.distributed import Event
        ev = Event(stop_event)
        if ev.is_set():
            return {"id": task["id"], "not_started": True}
    with tempfile.TemporaryDirectory(prefix="minicnn-sweep-") as tmp:
        run_dir = os.path.join(tmp, task["id"])
        os.makedirs(run_dir)
        for rel, data in task.get("files", {}).items():
            _write_file(run_dir, rel, data)
        log_path = os.path.join(tmp, "run.log")
        p = start_child(train_argv(task["argv"], run_dir, task["action"]), log_path, task["threads"])
        stopped = False
        while p.poll() is None:
            time.sleep(0.2)
            if ev is not None and not stopped:
                try:
                    stopped = ev.is_set()
                except Exception:   # the client went away: stop the run
                    stopped = True
                if stopped:
                    stop_child(p)
        rc = p.wait()
        return {"id": task["id"], "exit_code": rc, "files": read_run_files(run_dir),
                "log": _tail(log_path)}


def read_run_files(run_dir: str) -> dict:
    out = {}
    for root, _, files in os.walk(run_dir):
        for name in files:
            if name == ".lock" or ".tmp" in name:
                continue
            full = os.path.join(root, name)
            with open(full, "rb") as f:
                out[os.path.relpath(full, run_dir)] = f.read()
    return out


def _write_file(root, rel, data):
    path = os.path.normpath(os.path.join(root, rel))
    if not path.startswith(os.path.abspath(root) + os.sep):
        raise SweepError(f"refusing to write {rel!r} outside {root}")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write_bytes(path, data)


def write_run_files(run_dir: str, files: dict):
    """Replace a run directory's contents by ``files``; summary.json is written last."""
    if os.path.isdir(run_dir):
        shutil.rmtree(run_dir)
    os.makedirs(run_dir)
    for rel in sorted(files, key=lambda r: r == "summary.json"):
        _write_file(run_dir, rel, files[rel])


# -- the client -----------------------------------------------------------------------

def run_dask(sd: SweepDir, todo: list, scheduler: str, threads: int, bar, echo):
    try:
        from dask.distributed import Client, Event
    except ImportError:
        raise SweepError('--scheduler needs dask.distributed: pip install "minicnn[dask]"') from None
    try:
        client = Client(scheduler, timeout="20s")
    except (OSError, TimeoutError, ValueError) as e:
        raise SweepError(f"cannot reach the Dask scheduler at {scheduler}: {e}") from None
    tag = uuid.uuid4().hex[:8]
    stop_name = f"minicnn-sweep-stop-{tag}"
    try:
        stop_ev = Event(stop_name, client=client)
        futures = {}
        for rid, act in todo:
            files = read_run_files(sd.run_dir(rid)) if act == "resume" else {}
            task = {"id": rid, "argv": sd.records[rid]["argv"], "action": act if act == "resume" else "fresh",
                    "threads": threads, "files": files}
            _mark_running(sd, rid, act)
            fut = client.submit(remote_run, task, stop_name, key=f"minicnn-run-{rid}-{tag}", pure=False)
            futures[fut] = rid
        left = dict(futures)
        with _Stop() as stop:
            while left:
                if stop.signum is not None and not stop_ev.is_set():
                    stop_ev.set()       # running tasks stop their runs; queued ones do not start
                done = [f for f in left if f.done()]
                if not done:
                    time.sleep(0.2)
                    continue
                for fut in done:
                    rid = left.pop(fut)
                    try:
                        r = fut.result()
                    except Exception as e:      # the task itself failed (worker lost, ...)
                        _record(sd, rid, {"status": "failed", "exit_code": None,
                                          "error": f"dask task failed: {type(e).__name__}: {e}"}, bar, echo)
                        continue
                    if r.get("not_started"):
                        sd.records[rid]["status"] = "interrupted" if sd.action(rid) == "resume" else "pending"
                        sd.records[rid]["attempts"] -= 1
                        continue
                    run_dir = sd.run_dir(rid)
                    write_run_files(run_dir, r["files"])
                    os.makedirs(os.path.dirname(sd.log_path(rid)), exist_ok=True)
                    with open(sd.log_path(rid), "a") as f:
                        f.write(r["log"])
                    _record(sd, rid, outcome(run_dir, r["exit_code"], r["log"]), bar, echo)
    finally:
        client.close()
