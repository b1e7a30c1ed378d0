"""Atomic file writes: the one implementation every part of minicnn uses.

A file written here is either its old version or its complete new one, never
half a file, even if the process is killed mid-write: the bytes go to a
temporary file in the same directory (``.<name>.<random>.tmp``), which is
flushed, ``fsync``-ed and then renamed over the target with ``os.replace``
(atomic on POSIX within one file system). If the writing code raises, the
temporary file is removed and the target is untouched; after a kill the
temporary file may remain, under a name nothing reads (names containing
``.tmp`` are skipped by the sweep's file shipping too).

Users: the run directory (``training.runfiles``: config, metrics,
checkpoints, summary), the cost ledger's ``cost.json``, the sweep's
``sweep.json`` and the run files it ships back from Dask workers, and the
sweep report. This module imports nothing from minicnn (it sits at the
bottom of the layer order in ``minicnn.LAYERS``).
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_file(path: str):
    """Open a temporary file beside ``path`` for writing (binary); on success it replaces ``path``.

    If the block raises (or the process dies), ``path`` keeps its old content and the temporary
    file is removed (or, after a kill, left as ``.<name>.*.tmp``, never read).
    """
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=d)
    os.chmod(tmp, _umask_mode())       # mkstemp makes 0600; these are ordinary files
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str, data: bytes) -> None:
    with atomic_file(path) as f:
        f.write(data)


def atomic_write_text(path: str, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str, obj, indent=2, allow_nan: bool = False) -> None:
    """``obj`` as JSON plus a newline. NaN and infinity are refused unless ``allow_nan`` (they are not JSON)."""
    atomic_write_bytes(path, (json.dumps(obj, indent=indent, allow_nan=allow_nan) + "\n").encode())


def atomic_savez(path: str, **arrays) -> None:
    """``np.savez`` to a temporary file, then rename it to ``path``."""
    import numpy as np
    with atomic_file(path) as f:
        np.savez(f, **arrays)
