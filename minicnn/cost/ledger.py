"""The training cost ledger: a hook that counts, layer by layer, the work training really did.

Attach it as the *last* hook (an observer: it sees the tensors after every
method transformed them). It is an ordinary hook: the trainer treats it like
any other, and everything it counts it learns from hook points::

    on_train_begin      reads the optimizer (momentum, weight decay) for the update counts
    on_batch_begin      adds one dense step per batch of the schedule (dropped ones too)
    forward_output      forward work, counted as ``eval`` when ``layer.training`` is False
    observe_backward    dL/dx and the dL/dW the layer computed
    on_param_update     one optimizer update of one parameter

Used by hand (no trainer)::

    ledger = Ledger(model, momentum=True)
    model.set_hooks(HookList([*methods, ledger]))
    ledger.add_dense_step(len(y), x.shape[1:])   # per batch: what a plain run would cost
    logits = model.forward(x); model.backward(dlogits)
    for layer, name in optimizer.step(): ledger.count_update(layer, name, n_state=1)
    ledger.summary()                      # -> summary.json;  ledger.save("cost.json")

Work the rules cannot see (a method's own computation: PSG's MSB
weight-gradient pass, SLU's gate bookkeeping) is added by the method with
the public call :meth:`Ledger.add_work`::

    m = ledger.meter(layer)
    ledger.add_work(layer, "backward_weight",
                    m.counts(macs=n, mac_fmt=TensorFormat(bits=10, fixed=True), moved=[("input", t)]))

What is counted, and where (phases):

* ``forward``         ``forward_output`` of every leaf layer, and of every
                      BasicBlock for its residual add, in train mode;
* ``eval``            the same for layers in eval mode (``layer.training``
                      False); never part of the training ``total``, so a
                      method that calls ``evaluate()`` itself is counted
                      as evaluation, never as training;
* ``backward_input``  ``observe_backward`` of a layer that computed dL/dx
                      (dx is not None: the containers set
                      ``needs_input_grad`` and layers honour it, so the
                      first layer and layers below the lowest trained one
                      are not counted); a BasicBlock's dx_main + dx_shortcut;
* ``backward_weight`` the same call, per parameter whose gradient was
                      computed (``requires_grad`` True): dW and db apart;
* ``update``          ``on_param_update``, called per parameter the
                      optimizer actually updated.

Layers that backward never visited (it stops at the lowest trained layer)
are simply not counted. Shapes are the actual ones (a smaller last batch,
the kept samples of an SLU-gated block). The per-layer formulas are in
``minicnn.cost.rules``, the energy table in ``minicnn.cost.energy``.

Bytes model: compulsory traffic with no cache reuse between layers or
kernels. Each counted piece of work (a layer's forward; its dL/dx; each
parameter's gradient; each parameter's update) reads every tensor it needs
once and writes every result once: inputs, outputs, weights, cached
activations, gradients, optimizer state. Each tensor is charged at the
format a method declared for its (layer, role) in the FormatTable (FP32
otherwise): b bits per value, i.e. fp32 = 4 bytes and b-bit fixed point =
b/8 bytes; a sparse tensor costs nnz * (value bits + index bits) / 8 bytes,
nnz counted on the actual tensor (``np.count_nonzero``, only for sparse
formats). A role is the layer's own: ``grad_output`` is what its backward
reads, ``grad_input`` what its backward writes. A method that changes a
tensor between two layers (prunes or quantizes dx in
``backward_input_grad``, dy in ``backward_output_grad``) runs a pass of its
own, which it counts with :meth:`add_work` (read the tensor as the layer
wrote it, write its result in the result's format); it declares the result's
format for the layer that reads it, not for the one that wrote the input
(gradprune at a Conv-ReLU input site: the conv's ``grad_input`` stays fp32,
the ReLU below reads ``grad_output`` sparse). The ledger sees dx after the
transforms: only its shape counts for a dense role. Master weights,
optimizer state and BatchNorm statistics are fp32. A MAC runs at the wider of its two operands' formats; a sparse
grad_output makes backward_input and backward_weight MACs scale with its
nnz (only stored non-zeros are multiplied).

The dense count (``add_dense_step``, once per batch of the schedule,
processed or dropped): what a plain fp32 run with every layer trained
would have cost, from a static shape walk (``minicnn.cost.static``),
cached per batch size. ``savings = 1 - actual/dense`` over training phases.

cost.json schema (``to_json()`` / ``save(path)``), version "minicnn.cost/1"::

    {
      "schema": "minicnn.cost/1",
      "model": "resnet20",
      "units": {"macs": "multiply-accumulates", "ops": "elementwise operations",
                "bytes": "bytes read + written", "energy_pj": "picojoules"},
      "phases": ["forward", "backward_input", "backward_weight", "update", "eval"],
      "train_phases": ["forward", "backward_input", "backward_weight", "update"],
      "energy_table": {<EnergyTable entries>},
      "momentum": true, "weight_decay": false,
      "dense_steps": 391, "dense_images": 50000,
      "order": ["conv1", "bn1", ..., "layer1.0", ...],   # sites in forward order
      "types": {"conv1": "Conv2d", "layer1.0": "add", ...},  # "add" = a block's residual add
      "params": {"conv1": 432, "layer1.0": 0, ...},
      "layers": {"conv1": {<phase>: {"macs": int, "ops": int, "bytes": number,
                                     "energy_pj": float}, ...}, ...},   # actual counts
      "dense_layers": {"conv1": {<phase>: {...}}, ...},  # the dense count; its eval = actual eval
      "totals": {<phase>: {...}, "total": {...}},
      "dense_totals": {<phase>: {...}, "total": {...}},
      "summary": {<summary(), below>}
    }

``summary()`` (merged into summary.json)::

    {"macs": {<phase>: int, "total": int}, "bytes": {...}, "energy_j": {...},
     "elementwise_ops": {...},
     "dense_macs": {<phase>: int, "total": int}, "dense_bytes": {...},   # the same, dense
     "dense_energy_j": {...}, "dense_elementwise_ops": {...},
     "savings": {"macs": float, "bytes": float, "energy": float, "ops": float},
     "dense_steps": int, "dense_images": int}
"""
from __future__ import annotations

import json

from ..fileio import atomic_write_json
from ..hooks import Hook
from .formats import FormatTable
from .counts import PHASES, TRAIN_PHASES, Counts, Meter, Tensor
from .energy import EnergyTable
from .rules import Work, residual_rows, rule_for, update_counts
from .static import check_rules, is_residual_block, ordered_sites, shape_walk, site_cost, total

SCHEMA = "minicnn.cost/1"


class Ledger(Hook):
    """Counts MACs, elementwise ops, bytes and energy per layer and phase (see the module docstring).

    model:        the model whose hooks fire (used for the dense count and the layer order)
    formats:      the FormatTable methods write to (the trainer may assign ``ledger.formats``
                  later); None = all fp32
    energy:       an EnergyTable; None = the Horowitz 45 nm defaults
    momentum:     the optimizer keeps one momentum buffer per param (for the dense update count)
    weight_decay: the optimizer applies weight decay (2 more ops per element per update)
    """

    def __init__(self, model, formats: FormatTable | None = None, energy: EnergyTable | None = None,
                 momentum: bool = True, weight_decay: bool = False):
        check_rules(model)
        self.model = model
        self.formats = formats if formats is not None else FormatTable()
        self.energy = energy if energy is not None else EnergyTable()
        self.momentum, self.weight_decay = bool(momentum), bool(weight_decay)
        self._dense_cache: dict = {}
        self._input_shape_hint = (3, 32, 32)
        self.reset()

    # -- state -----------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget everything counted (actual and dense)."""
        self._actual: dict[str, dict[str, Counts]] = {}
        self._dense: dict[str, dict[str, Counts]] = {}
        self._seen: dict[str, tuple[Tensor, Tensor, bool]] = {}   # last forward (x, y, training) per layer
        self._types: dict[str, str] = {}
        self._extra: dict[str, Counts] = {p: Counts() for p in PHASES}
        self.dense_steps = 0
        self.dense_images = 0

    def add_work(self, layer, phase: str, counts: Counts, kind: str | None = None, extra: bool = False) -> None:
        """Add ``counts`` of work to ``layer`` (a layer or a site name) in ``phase``.

        The public way for a method to count work the rules cannot see: its
        own computation (PSG's MSB weight-gradient pass and its fallback
        pass, priced at their bit widths), or the work of a layer whose
        backward it replaced (``supply_grads``: the layer did not compute
        dW, so the rules did not count it; the method counts what it did
        instead). ``phase`` is one of ``PHASES``. Work added here is actual
        work; the dense count never includes it. ``extra=True`` marks work a
        plain run would not do at all (SLU's gate bookkeeping, PSG's
        predictor): it is also tallied in :meth:`extra_totals`, which the
        method conformance test allows on top of the dense count.
        """
        if phase not in PHASES:
            raise ValueError(f"cost ledger: unknown phase {phase!r}; choose one of {', '.join(PHASES)}")
        if isinstance(layer, str):
            layer = _Named(layer)
        self._add(layer, phase, counts, kind)
        if extra:
            self._extra[phase] += counts

    def extra_totals(self) -> dict[str, Counts]:
        """{phase: Counts} of the work added with ``add_work(..., extra=True)``."""
        return {p: c.copy() for p, c in self._extra.items()}

    def meter(self, layer) -> Meter:
        """A :class:`Meter` for ``layer``: builds Counts at the formats methods declared."""
        return Meter(self.formats, self.energy, layer)

    def _add(self, layer, phase: str, c: Counts, kind: str | None = None) -> None:
        per = self._actual.get(layer.name)
        if per is None:
            per = self._actual[layer.name] = {p: Counts() for p in PHASES}
            self._types[layer.name] = kind or type(layer).__name__
        per[phase] += c


    # -- trainer-level hooks -----------------------------------------------------------------
    def on_train_begin(self, state):
        """Count updates the way this optimizer does them; use the trainer's format table."""
        opt = state.optimizer
        self.momentum, self.weight_decay = bool(opt.momentum), bool(opt.weight_decay)
        self.formats = state.formats
        self._input_shape_hint = tuple(state.input_shape)

    def on_batch_begin(self, state):
        """Every batch of the schedule, processed or dropped, costs one dense step."""
        self.add_dense_step(len(state.y), state.input_shape)
        return True

    def on_param_update(self, layer, name, optimizer):
        self.count_update(layer, name, 1 if optimizer.momentum else 0)

    # -- layer-level hooks ---------------------------------------------------------------------
    def forward_output(self, layer, x, y):
        phase = "forward" if layer.training else "eval"
        if not layer.is_container:
            m = self.meter(layer)
            xt, yt = Tensor.of(x, m.fmt("input")), Tensor.of(y, m.fmt("output"))
            self._add(layer, phase, rule_for(layer).forward(m, layer, Work(xt, yt, training=layer.training)))
            if phase == "forward":
                self._seen[layer.name] = (xt, yt, layer.training)
        elif is_residual_block(layer):
            rows = residual_rows(layer, y.shape[0])
            if rows:
                t = Tensor((rows,) + tuple(y.shape[1:]))
                self._add(layer, phase, rule_for(layer).forward(self.meter(layer), layer, Work(t, t)), kind="add")
        return y

    def observe_backward(self, layer, dy, dx):
        if layer.is_container:
            if is_residual_block(layer) and dx is not None:
                rows = residual_rows(layer, dx.shape[0])
                if rows:
                    t = Tensor((rows,) + tuple(dx.shape[1:]))
                    self._add(layer, "backward_input",
                              rule_for(layer).backward_input(self.meter(layer), layer, Work(t, t, t, t)), kind="add")
            return
        m, rule = self.meter(layer), rule_for(layer)
        xt, yt, training = self._forward_tensors(layer, dy, dx)
        grads = frozenset(p for p in layer.params
                          if layer.requires_grad.get(p, False) and layer.grads.get(p) is not None)
        w = Work(xt, yt, Tensor.of(dy, m.fmt("grad_output")),
                 Tensor.of(dx, m.fmt("grad_input")), training, grads)
        if dx is not None:
            self._add(layer, "backward_input", rule.backward_input(m, layer, w))
        for p in layer.params:
            if p in grads:
                self._add(layer, "backward_weight", rule.backward_weight(m, layer, w, p))

    def _forward_tensors(self, layer, dy, dx):
        """(x, y, training) of the forward this backward belongs to (dense shapes if it was not seen)."""
        seen = self._seen.get(layer.name)
        if seen is not None and seen[1].shape == tuple(dy.shape):
            return seen
        yt = Tensor(tuple(dy.shape))
        if dx is not None:
            return Tensor(tuple(dx.shape)), yt, layer.training
        for s in shape_walk(self.model, dy.shape[0], self._input_shape()):
            if s.layer is layer:
                return Tensor(s.in_shape), yt, layer.training
        raise RuntimeError(f"cost ledger: backward of {layer.name} without a forward it could see")

    def _input_shape(self):
        return next(iter(self._dense_cache))[1] if self._dense_cache else self._input_shape_hint

    # -- trainer calls -------------------------------------------------------------------------
    def count_update(self, layer, param_name: str, n_state: int) -> None:
        """The optimizer updated ``layer.params[param_name]`` touching ``n_state`` state tensors."""
        if param_name not in layer.params:
            raise KeyError(f"cost ledger: {layer.name} has no parameter {param_name!r}")
        m = self.meter(layer)
        role = "grad_weight" if param_name == "weight" else "grad_bias"
        g = layer.grads.get(param_name)
        gt = Tensor.of(g, m.fmt(role)) if g is not None else None
        self._add(layer, "update", update_counts(m, layer, param_name, int(n_state), self.weight_decay, gt))

    def add_dense_step(self, batch_size: int, input_shape=(3, 32, 32)) -> None:
        """Add one dense fp32 training step on a batch of ``batch_size`` (call it for every batch)."""
        key = (int(batch_size), tuple(int(d) for d in input_shape))
        step = self._dense_cache.get(key)
        if step is None:
            step = self._dense_cache[key] = {
                s.name: (s.type, {p: c for p, c in site_cost(s, self.energy, self.momentum, self.weight_decay).items()
                                  if p in TRAIN_PHASES})
                for s in shape_walk(self.model, key[0], key[1])}
        for name, (kind, per) in step.items():
            acc = self._dense.get(name)
            if acc is None:
                acc = self._dense[name] = {p: Counts() for p in TRAIN_PHASES}
                self._types.setdefault(name, kind)
            for p, c in per.items():
                acc[p] += c
        self.dense_steps += 1
        self.dense_images += key[0]

    # -- results -------------------------------------------------------------------------------
    def _names(self) -> list[str]:
        """Site names in forward order, then anything else counted."""
        names = [s.name for s in ordered_sites(self.model)]
        known = set(names)
        for n in list(self._actual) + list(self._dense):
            if n not in known:
                names.append(n)
                known.add(n)
        return names

    def per_layer(self, dense: bool = False) -> dict[str, dict[str, Counts]]:
        """{site name: {phase: Counts}} in forward order (``dense=True``: the dense count; its eval = actual eval)."""
        out = {}
        for n in self._names():
            act = self._actual.get(n, {})
            if dense:
                per = {p: self._dense.get(n, {}).get(p, Counts()).copy() for p in TRAIN_PHASES}
                per["eval"] = act.get("eval", Counts()).copy()
            else:
                per = {p: act.get(p, Counts()).copy() for p in PHASES}
            out[n] = per
        return out

    def totals(self) -> dict[str, Counts]:
        """{phase: Counts} summed over layers, plus ``total`` over the training phases (not eval)."""
        return total(self.per_layer())

    def dense_totals(self) -> dict[str, Counts]:
        """The same for the dense count (eval = actual eval)."""
        return total(self.per_layer(dense=True))

    def summary(self) -> dict:
        """JSON-able figures for summary.json (schema in the module docstring)."""
        a, d = self.totals(), self.dense_totals()
        keys = PHASES + ("total",)
        da = d["total"]

        def saving(x, y):
            return 1.0 - x / y if y else 0.0

        t = a["total"]
        return {
            "macs": {k: int(a[k].macs) for k in keys},
            "bytes": {k: a[k].bytes for k in keys},
            "energy_j": {k: a[k].energy_pj * 1e-12 for k in keys},
            "elementwise_ops": {k: int(a[k].ops) for k in keys},
            "dense_macs": {k: int(d[k].macs) for k in keys},
            "dense_bytes": {k: d[k].bytes for k in keys},
            "dense_energy_j": {k: d[k].energy_pj * 1e-12 for k in keys},
            "dense_elementwise_ops": {k: int(d[k].ops) for k in keys},
            "savings": {"macs": saving(t.macs, da.macs), "bytes": saving(t.bytes, da.bytes),
                        "energy": saving(t.energy_pj, da.energy_pj), "ops": saving(t.ops, da.ops)},
            "dense_steps": self.dense_steps,
            "dense_images": self.dense_images,
        }

    def to_json(self) -> dict:
        """The per-layer record saved as cost.json (schema in the module docstring)."""
        act, den = self.per_layer(), self.per_layer(dense=True)
        sites = {s.name: s for s in ordered_sites(self.model)}
        return {
            "schema": SCHEMA,
            "model": getattr(self.model, "arch", type(self.model).__name__),
            "units": {"macs": "multiply-accumulates", "ops": "elementwise operations",
                      "bytes": "bytes read + written", "energy_pj": "picojoules"},
            "phases": list(PHASES),
            "train_phases": list(TRAIN_PHASES),
            "energy_table": self.energy.to_dict(),
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "dense_steps": self.dense_steps,
            "dense_images": self.dense_images,
            "order": list(act),
            "types": {n: self._type_of(n, sites.get(n)) for n in act},
            "params": {n: 0 if n not in sites or sites[n].is_container else int(sites[n].num_params()) for n in act},
            "layers": {n: {p: c.to_dict() for p, c in per.items()} for n, per in act.items()},
            "dense_layers": {n: {p: c.to_dict() for p, c in per.items()} for n, per in den.items()},
            "totals": {p: c.to_dict() for p, c in self.totals().items()},
            "dense_totals": {p: c.to_dict() for p, c in self.dense_totals().items()},
            "summary": self.summary(),
        }

    def _type_of(self, name, layer) -> str:
        if layer is not None:
            return "add" if layer.is_container else type(layer).__name__
        return self._types.get(name, "?")

    def save(self, path: str) -> None:
        """Write :meth:`to_json` to ``path`` (atomically: a temporary file, then a rename)."""
        atomic_write_json(path, self.to_json(), indent=1)

    # -- resuming --------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything counted so far, JSON-able (floats round-trip exactly), for checkpoints."""
        def dump(table):
            return {n: {p: c.to_dict() for p, c in per.items()} for n, per in table.items()}
        return {"actual": dump(self._actual), "dense": dump(self._dense), "types": dict(self._types),
                "extra": {p: c.to_dict() for p, c in self._extra.items()},
                "dense_steps": self.dense_steps, "dense_images": self.dense_images}

    def load_state_dict(self, d: dict) -> None:
        def load(table):
            return {n: {p: Counts.from_dict(c) for p, c in per.items()} for n, per in table.items()}
        self._actual, self._dense = load(d["actual"]), load(d["dense"])
        self._types = dict(d["types"])
        self._extra = {p: Counts.from_dict(c) for p, c in d["extra"].items()}
        self.dense_steps, self.dense_images = int(d["dense_steps"]), int(d["dense_images"])


class _Named:
    """Stands for a site known only by name (``Ledger.add_work("gates", ...)``)."""

    def __init__(self, name: str):
        self.name = name
