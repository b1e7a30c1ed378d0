"""The training cost ledger: MACs, elementwise ops, bytes and energy, per layer and phase.

* :class:`Ledger` (``ledger.py``) -- a hook that counts what training really
  did, next to the dense count of a plain fp32 run; module docstring: what
  is counted where, the bytes model, the cost.json schema.
* :func:`static_cost`, :func:`format_cost_table` (``static.py``) -- the
  dense cost of one training step from a shape walk (``minicnn cost``).
* ``rules.py`` -- the per-layer formulas, one small class per layer type.
* :class:`EnergyTable` (``energy.py``) -- THE energy table (Horowitz,
  ISSCC 2014, 45 nm) and how entries it lacks are derived.
* :class:`Counts` (``counts.py``) -- macs, ops, bytes, energy_pj.
"""
from .counts import PHASES, TRAIN_PHASES, Counts, Tensor
from .energy import EnergyTable
from .ledger import Ledger
from .static import format_cost_table, static_cost

__all__ = ["Counts", "EnergyTable", "Ledger", "PHASES", "TRAIN_PHASES", "Tensor", "format_cost_table",
           "static_cost"]
