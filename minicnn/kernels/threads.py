"""minicnn's own threads: the pool every kernel's ranges and every GEMM slice run on.

The batch (or a tensor's channels, or its elements) is cut into contiguous
ranges, and each range runs on a thread of this pool; the kernels release
the GIL (``nogil`` numba loops, ``np.matmul``), so the threads really run in
parallel. Idle pool threads sleep on a queue: they never spin, so they
never steal a core from the thread that has work (which OpenBLAS's and
OpenMP's spinning threads do: see :mod:`.process`).

* :func:`run_slices`     fn(slot, start, stop) on one contiguous slice per thread (static split)
* :func:`for_chunks`     fn(slot, k, start, stop) on fixed-size chunks, each thread taking the next free
                         one (dynamic split: a thread the OS delays does fewer chunks)
* :func:`run_on_threads` fn(slot) on n threads at once
* :class:`OrderedSum`    arrays numbered 0, 1, 2, ... added in that order whatever thread hands them in,
                         so a sum over chunks has the same bits for any thread count

The pool has one thread until :func:`set_threads` (called by
:func:`minicnn.kernels.process.configure_threads`, which the CLI and the
Trainer use) gives it more: a bare ``import minicnn`` starts no thread.
Results never depend on the thread count: slices are independent, and
chunks depend on the shapes alone.
"""
from __future__ import annotations

import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

_pool: ThreadPoolExecutor | None = None
_threads = 1


def num_threads() -> int:
    """Threads the kernels use now (the calling thread included)."""
    return _threads


def set_threads(n: int) -> int:
    """Run the kernels on ``n`` threads (the caller plus ``n - 1`` pool threads); returns n."""
    global _pool, _threads
    n = max(1, int(n))
    if n == _threads and (_pool is not None) == (n > 1):
        return n
    if _pool is not None:
        _pool.shutdown(wait=True)
    _pool = ThreadPoolExecutor(max_workers=n - 1, thread_name_prefix="minicnn-gemm") if n > 1 else None
    _threads = n
    return n


def _after_fork_in_child() -> None:
    """A forked child has no pool threads (only the forking thread survives): start afresh."""
    global _pool
    _pool = ThreadPoolExecutor(max_workers=_threads - 1, thread_name_prefix="minicnn-gemm") if _threads > 1 else None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _slices(N: int, parts: int):
    parts = max(1, min(parts, N))
    bounds = [N * k // parts for k in range(parts + 1)]
    return [(bounds[k], bounds[k + 1]) for k in range(parts)]


def run_slices(fn, N: int):
    """Run fn(slot, start, stop) over contiguous batch slices, one per thread; results in slice order.

    ``slot`` numbers the slices 0.. (use it to pick per-slice scratch memory); the
    last slice runs on the calling thread. fn must release the GIL to gain anything
    (np.matmul and the ``nogil`` numba kernels do).
    """
    sl = _slices(N, _threads)
    if len(sl) == 1 or _pool is None:
        return [fn(0, 0, N)]
    futures = [_pool.submit(fn, k, s, e) for k, (s, e) in enumerate(sl[:-1])]
    last = fn(len(sl) - 1, *sl[-1])
    return [f.result() for f in futures] + [last]


def run_on_threads(fn, n: int | None = None):
    """Run fn(slot) on ``n`` threads at once (default: all), slot = 0..n-1; results in slot order."""
    n = _threads if n is None else max(1, min(n, _threads))
    if n == 1 or _pool is None:
        return [fn(0)]
    futures = [_pool.submit(fn, k) for k in range(n - 1)]
    last = fn(n - 1)
    return [f.result() for f in futures] + [last]


def for_chunks(N: int, b: int, fn) -> None:
    """Call fn(slot, k, start, stop) for every chunk k of ``b`` samples of a batch of N, on all threads.

    Dynamic schedule: each thread takes the next chunk when it is free, so a
    thread the OS delays (a shared machine) does fewer chunks instead of
    holding up the others. ``slot`` identifies the thread (e.g. its scratch
    buffer). The chunks depend on N and b only, never on the thread count.
    """
    nchunks = -(-N // b)
    counter = itertools.count()  # next() on it is atomic under the GIL

    def worker(slot):
        while True:
            k = next(counter)
            if k >= nchunks:
                return
            fn(slot, k, k * b, min(N, (k + 1) * b))

    run_on_threads(worker, nchunks)


class OrderedSum:
    """Adds arrays numbered 0, 1, 2, ... in that order, whatever order the threads hand them in.

    ``add(k, a)`` parks ``a`` until every array before it has been added, so
    the floating-point sum is ``((a0 + a1) + a2) + ...`` for any thread count
    and schedule, while at most a few arrays wait at a time (keeping all of
    them, then summing, held 128 per-sample weight gradients at once: 0.45 GB
    for one AlexNet conv at batch 128).
    """

    def __init__(self):
        self.total = None
        self._next = 0
        self._waiting: dict = {}
        self._lock = threading.Lock()

    def add(self, k: int, a) -> None:
        with self._lock:
            self._waiting[k] = a
            while self._next in self._waiting:
                part = self._waiting.pop(self._next)
                if self.total is None:
                    self.total = part
                else:
                    self.total += part
                self._next += 1
