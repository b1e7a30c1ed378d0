"""``freeze``: keep chosen layers fixed for all or part of training.

Not from a paper: the smallest useful method, and the pattern every
layer-skipping method (WUS, LARS skipping) follows. At the start of each
epoch in [start, stop) it sets ``requires_grad`` to False on the named layers'
params (``layers`` is a ``+``-separated list of qualified names or prefixes,
e.g. ``conv1+layer1``; ``params=bias`` or ``weight`` restricts it to one kind).
The containers then stop backward at the lowest layer that still trains and
the optimizer skips the frozen params, so the saved work shows in the ledger.
"""
from __future__ import annotations

from .base import FrozenParams, Method, register_method


@register_method("freeze")
class Freeze(Method):

    def __init__(self, layers: str = "", params: str = "all", start: int = 0, stop: int = 10**9):
        if not layers:
            raise ValueError("method freeze: give layers=NAME[+NAME...]")
        if params not in ("all", "weight", "bias"):
            raise ValueError(f"method freeze: params must be all, weight or bias, got {params!r}")
        self.layers, self.params, self.start, self.stop = layers, params, start, stop
        self._prefixes = [p for p in layers.split("+") if p]

    def _targets(self, model):
        hit = [m for m in model.leaves()
               if any(m.name == p or m.name.startswith(p + ".") for p in self._prefixes)]
        return hit

    def on_train_begin(self, state):
        found = self._targets(state.model)
        if not found:
            raise ValueError(f"method freeze: no layer matches {self.layers!r}")
        self._found = [m for m in found if m.params]
        self._frozen = FrozenParams()

    def on_epoch_begin(self, state):
        if self.start <= state.epoch < self.stop:
            self._frozen.freeze((layer, name) for layer in self._found for name in layer.params
                                if self.params in ("all", name))
        else:   # give back only what this method froze, not what another method froze
            self._frozen.release()

    def epoch_record(self, state):
        """Which params this method kept frozen in the epoch that just ended."""
        return {"frozen": sorted(f"{layer.name}.{name}" for layer, name in self._frozen.pairs)}
