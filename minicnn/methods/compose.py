"""A method made of methods: every hook point is passed on to the parts, in order.

``Composite(parts)`` is a :class:`Method` whose hook points call the parts' own, so a
named combination (``e2train`` = smd + slu + psg) runs through the ordinary hook points
with no special case in the trainer. Each part keeps its own key (its name: ``smd``,
``slu``, ``psg``), its own random stream (spawned from the composite's), its own
records and its own saved state; the composite's records and state are dicts keyed by
the parts' keys.

How each kind of hook point combines:

* trainer-level notifications (``on_train_begin`` ...): every part, in order;
* ``on_batch_begin``: every part is asked; the batch is dropped if any part says False;
* transforming hooks (``forward_input``, ``forward_output``, ``backward_output_grad``,
  ``backward_input_grad``, ``param_grad``): chained in order, as a HookList would;
* ``block_gate``: the masks of the parts that gate, and-ed (None = no opinion);
* ``supply_grads``: the parts' dicts merged (two parts supplying the same gradient is an error);
* observers (``observe_backward``, ``on_param_update``): every part.

Only the parts that override a hook are called for it.
"""
from __future__ import annotations

import numpy as np

from ..hooks import Hook
from .base import Method

_NOTIFY = ("on_train_begin", "on_epoch_begin", "on_after_backward", "on_batch_end", "on_epoch_end",
           "on_train_end")


def _overrides(obj, name: str) -> bool:
    fn = getattr(type(obj), name, None)
    return fn is not None and fn is not getattr(Hook, name, None) and fn is not getattr(Method, name, None)


class Composite(Method):
    """Runs ``parts`` (built Method objects) as one method."""

    name = "composite"

    def __init__(self, parts):
        self.parts = list(parts)
        keys = [getattr(p, "key", None) or p.name for p in self.parts]
        if len(set(keys)) != len(keys):
            raise ValueError(f"method {self.name}: parts with the same key: {keys}")
        for p, k in zip(self.parts, keys):
            p.key = k
        self._who = {}
        self.epochs_scale = float(np.prod([getattr(p, "epochs_scale", 1.0) for p in self.parts]))

    def _with(self, name: str) -> list:
        who = self._who.get(name)
        if who is None:
            who = self._who[name] = [p for p in self.parts if _overrides(p, name)]
        return who

    # -- set-up ---------------------------------------------------------------------------------
    @property
    def rng(self):
        return self._rng

    @rng.setter
    def rng(self, value):
        """Each part gets a stream of its own, spawned from the composite's."""
        self._rng = value
        if value is not None:
            for p, child in zip(self.parts, value.spawn(len(self.parts))):
                p.rng = child

    def attach(self, model):
        for p in self.parts:
            if hasattr(p, "attach"):
                p.attach(model)
        return self

    # -- trainer level ----------------------------------------------------------------------------
    def _notify(self, name, state):
        for p in self._with(name):
            getattr(p, name)(state)

    def on_train_begin(self, state): self._notify("on_train_begin", state)
    def on_epoch_begin(self, state): self._notify("on_epoch_begin", state)
    def on_after_backward(self, state): self._notify("on_after_backward", state)
    def on_batch_end(self, state): self._notify("on_batch_end", state)
    def on_epoch_end(self, state): self._notify("on_epoch_end", state)
    def on_train_end(self, state): self._notify("on_train_end", state)

    def on_batch_begin(self, state):
        keep = True
        for p in self._with("on_batch_begin"):
            if p.on_batch_begin(state) is False:
                keep = False
        return keep

    def param_grad(self, layer, name, grad):
        for p in self._with("param_grad"):
            grad = p.param_grad(layer, name, grad)
        return grad

    def on_param_update(self, layer, name, optimizer):
        for p in self._with("on_param_update"):
            p.on_param_update(layer, name, optimizer)

    # -- layer level ----------------------------------------------------------------------------------
    def forward_input(self, layer, x):
        for p in self._with("forward_input"):
            x = p.forward_input(layer, x)
        return x

    def forward_output(self, layer, x, y):
        for p in self._with("forward_output"):
            y = p.forward_output(layer, x, y)
        return y

    def block_gate(self, block, x):
        mask = None
        for p in self._with("block_gate"):
            m = p.block_gate(block, x)
            if m is not None:
                mask = m if mask is None else (mask & m)
        return mask

    def backward_output_grad(self, layer, dy):
        for p in self._with("backward_output_grad"):
            dy = p.backward_output_grad(layer, dy)
        return dy

    def supply_grads(self, layer, dy):
        out = {}
        for p in self._with("supply_grads"):
            got = p.supply_grads(layer, dy) or {}
            clash = set(out) & set(got)
            if clash:
                raise RuntimeError(f"method {self.name}: two parts supply the gradient of {layer.name}.{clash.pop()}")
            out.update(got)
        return out

    def backward_input_grad(self, layer, dx):
        for p in self._with("backward_input_grad"):
            dx = p.backward_input_grad(layer, dx)
        return dx

    def observe_backward(self, layer, dy, dx):
        for p in self._with("observe_backward"):
            p.observe_backward(layer, dy, dx)

    # -- records and state ------------------------------------------------------------------------------
    def epoch_record(self, state=None) -> dict:
        return {p.key: p.epoch_record(state) for p in self.parts if hasattr(p, "epoch_record")}

    def summary_record(self, state=None) -> dict:
        return {p.key: p.summary_record(state) for p in self.parts if hasattr(p, "summary_record")}

    def state_dict(self) -> dict:
        return {p.key: p.state_dict() for p in self.parts if hasattr(p, "state_dict")}

    def load_state_dict(self, d) -> None:
        for p in self.parts:
            if p.key in d and hasattr(p, "load_state_dict"):
                p.load_state_dict(d[p.key])
