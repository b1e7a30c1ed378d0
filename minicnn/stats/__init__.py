"""Per-layer training statistics: record them, read them back, print them.

``StatsRecorder``  a hook that records activation / gradient / weight statistics
                   into ``stats.jsonl`` (schema in ``recorder.py``);
``load_stats``     parse a run's ``stats.jsonl`` into a :class:`Stats`;
``inspect_run``    a text table of a run's statistics (``minicnn inspect``).
"""
from .inspect import inspect_run
from .recorder import STATS_FILE, StatsRecorder, default_bin_edges, moments, signed_log_hist, value_hist
from .store import Stats, load_stats

__all__ = ["StatsRecorder", "Stats", "load_stats", "inspect_run", "default_bin_edges", "moments",
           "signed_log_hist", "value_hist", "STATS_FILE"]
