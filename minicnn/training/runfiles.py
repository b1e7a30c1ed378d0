"""The run directory: what is in it, how it is written, and who may write it.

A run directory holds (in the order they are written)::

    config.json      the run's full configuration, written when it starts (``--resume`` reads it)
    .lock            held (flock) by the process training into the directory
    metrics.jsonl    one JSON line per finished epoch
    stats.jsonl      with --stats
    checkpoint.npz   after every epoch: everything resuming needs (weights, optimizer state,
                     schedule position, random streams, method state, ledger totals, statistics position)
    cost.json        the ledger per layer           } at the end, in this order,
    model.npz        weights and buffers            } each written to a temporary
    summary.json     status and figures: LAST       } name and renamed into place

so a directory with a ``summary.json`` is finished (completed, diverged or
interrupted: its ``status`` says which) and has everything it promises.

Writes are atomic (``minicnn.fileio``: a temporary file in the same
directory, flushed and fsync-ed, then ``os.replace``): a killed process
leaves the previous version or the new one, never half a file. The writers
are re-exported here, where the trainer has always imported them.
``metrics.jsonl`` is the exception: a finished epoch appends its line (a
killed run may leave half a line, which resuming drops: it rewrites the file
from the checkpoint's history, :func:`rewrite_metrics`).

The trainer writes the run's JSON files through the functions below
(:func:`start_run_files`, :func:`append_metrics`, :func:`rewrite_metrics`,
:func:`write_summary`); the two ``.npz`` files are written and read in
:mod:`.checkpoint_io`. JSON has no NaN or infinity: :func:`finite` writes
them as null, so a diverged run's files stay readable.

The lock is ``fcntl.flock`` on ``.lock``: the kernel releases it when the
process dies, however it dies, so a killed run never leaves a stale lock.
"""
from __future__ import annotations

import fcntl
import json
import math
import os
import shutil

import numpy as np

from ..fileio import atomic_file, atomic_savez, atomic_write_bytes, atomic_write_json, atomic_write_text  # noqa: F401

#: files a run writes (``--overwrite`` deletes exactly these, and the ``plots/`` folder)
RUN_FILES = ("config.json", "metrics.jsonl", "stats.jsonl", "checkpoint.npz", "cost.json", "model.npz",
             "summary.json")
RUN_DIRS = ("plots",)
LOCK_FILE = ".lock"


def finite(obj):
    """JSON has no NaN or infinity: write them as null (a diverged run stays readable)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def jsonable(obj):
    """NumPy scalars and small arrays to plain Python (method records)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def start_run_files(run_dir: str, config: dict) -> None:
    """A new run: ``config.json`` (what ``--resume`` rebuilds the run from) and an empty ``metrics.jsonl``."""
    os.makedirs(run_dir, exist_ok=True)
    atomic_write_json(os.path.join(run_dir, "config.json"), finite(config))
    atomic_write_text(os.path.join(run_dir, "metrics.jsonl"), "")


def append_metrics(run_dir: str, record: dict) -> None:
    """One finished epoch's line of ``metrics.jsonl``."""
    with open(os.path.join(run_dir, "metrics.jsonl"), "a") as f:
        f.write(json.dumps(finite(record), allow_nan=False) + "\n")


def rewrite_metrics(run_dir: str, history: list) -> None:
    """``metrics.jsonl`` as exactly these epochs (a resumed run: the checkpoint's history, already JSON)."""
    atomic_write_text(os.path.join(run_dir, "metrics.jsonl"),
                      "".join(json.dumps(r, allow_nan=False) + "\n" for r in history))


def write_summary(run_dir: str, summary: dict) -> None:
    """``summary.json``, the run's last file (its presence says the run ended)."""
    atomic_write_json(os.path.join(run_dir, "summary.json"), finite(summary))


class RunDirError(Exception):
    """A run directory that cannot be used as asked (a one-line message for the user)."""


class RunLock:
    """An exclusive lock on a run directory for as long as this object is held."""

    def __init__(self, run_dir: str):
        self.path = os.path.join(run_dir, LOCK_FILE)
        self._fd = None

    def acquire(self) -> "RunLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            who = _read_owner(self.path)
            raise RunDirError(f"run directory {os.path.dirname(self.path)} is in use by another run{who}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _read_owner(path: str) -> str:
    try:
        with open(path) as f:
            pid = f.read().strip()
        return f" (pid {pid})" if pid else ""
    except OSError:
        return ""


def is_locked(run_dir: str) -> bool:
    """True if some live process holds the run directory's lock."""
    path = os.path.join(run_dir, LOCK_FILE)
    if not os.path.exists(path):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def holds_run(run_dir: str) -> bool:
    """True if ``run_dir`` holds (part of) a run: any of the files a run writes."""
    return os.path.isdir(run_dir) and any(os.path.exists(os.path.join(run_dir, f)) for f in RUN_FILES)


def read_summary(run_dir: str) -> dict | None:
    p = os.path.join(run_dir, "summary.json")
    if not os.path.exists(p):
        return None
    try:
        with open(p) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def clear_run(run_dir: str) -> list[str]:
    """Delete the files and folders a run writes (``RUN_FILES``, ``RUN_DIRS``); return what was deleted."""
    gone = []
    for f in RUN_FILES:
        p = os.path.join(run_dir, f)
        if os.path.isfile(p) or os.path.islink(p):
            os.unlink(p)
            gone.append(f)
        elif os.path.isdir(p):
            raise RunDirError(f"{p} is a directory where a run writes a file; remove it by hand")
    for d in RUN_DIRS:
        p = os.path.join(run_dir, d)
        if os.path.isdir(p):
            shutil.rmtree(p)
            gone.append(d + "/")
    return gone


def check_writable(run_dir: str) -> None:
    """Refuse a directory where a run could not write its files (e.g. ``model.npz`` is a folder)."""
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise RunDirError(f"--out {run_dir} is a file, not a directory")
    for f in RUN_FILES:
        p = os.path.join(run_dir, f)
        if os.path.isdir(p):
            raise RunDirError(f"cannot write {p}: it is a directory")
