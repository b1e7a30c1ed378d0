"""Hook points: the one mechanism through which methods, the cost ledger and
the statistics recorder act on training, without touching layer code.

A *hook object* is any object with some of the methods of :class:`Hook`
(subclass it and override what you need; everything else is a no-op). A
:class:`HookList` holds hook objects in order and is what the trainer and the
containers call. There are two kinds of hook points.

Trainer level (called by ``minicnn.training.Trainer`` with a ``TrainState``; its fields, who writes
each and what a method may do with it: ``minicnn/training/state.py``)::

    on_train_begin(state)        once, before the first epoch (and again after a resume)
    on_epoch_begin(state)        before each epoch's first batch (freeze layers here: WUS, LARS)
    on_batch_begin(state)        before a batch is loaded; return False to drop it (SMD, E2-Train §3.1).
                                 state.indices and state.y are this batch's; state.x is loaded
                                 (augmented, normalized) on first access, so a dropped batch
                                 that nobody looked at costs nothing
    on_after_backward(state)     grads are computed, the optimizer has not run yet
    param_grad(layer, name, grad) -> grad
                                 transform a computed gradient before the update (signSGD)
    on_param_update(layer, name, optimizer)
                                 the optimizer has just updated ``layer.params[name]`` (the ledger counts it)
    on_batch_end(state)          after the optimizer step
    on_epoch_end(state)          after validation; state.history[-1] has this epoch's record
                                 (val_acc with --val-images, test_acc): WUS §3, LARS Eq. 1
    on_train_end(state)

Layer level (called by containers around every child layer, leaf or container)::

    forward_input(layer, x) -> x        before layer.forward (quantize inputs; swap in quantized weights)
    forward_output(layer, x, y) -> y    after layer.forward
    block_gate(block, x) -> mask|None   a residual block asks whether to run its residual
                                        branch, per sample (SLU, E2-Train §3.2); None = all
    backward_output_grad(layer, dy) -> dy
                                        before layer.backward (prune dL/dy: Ye et al. §3.2,
                                        Algorithm 1; quantize gradients)
    supply_grads(layer, dy) -> {param: grad | finisher}
                                        gradients a method computes itself (PSG, E2-Train §3.3):
                                        the layer's backward then does *not* compute them. A
                                        *finisher* (a callable ``grad -> grad``) instead lets the
                                        layer compute that gradient as usual, in the same pass as
                                        dL/dx (sharing, e.g., Winograd's dy transform), and is
                                        called with it right after layer.backward; what it returns
                                        becomes the gradient. Either way the observers see the
                                        param as supplied (requires_grad off) and the rules do not
                                        count it: the method counts its work (``ledger.add_work``)
    backward_input_grad(layer, dx) -> dx
                                        after layer.backward produced dL/dx (None if not computed)
    observe_backward(layer, dy, dx)     after the transforms; observers only (ledger, stats)

Whether a forward is training or evaluation is ``layer.training`` (the
ledger counts evaluation forwards apart by that flag alone).

Freezing is not a hook: a method sets ``layer.requires_grad[name] = False``
(or calls ``layer.freeze()``) and the containers then stop backward at the
lowest layer that still trains, and the optimizer skips frozen params.

Methods declare the *format* of the tensors they produce (a fixed-point
precision, sparsity) with ``state.formats.set(layer, role, TensorFormat(...))``
(``minicnn.cost.formats``) so that the ledger counts that work at its real size.

Layer-level hooks see containers too (a BasicBlock, a stage): test
``layer.is_container`` to act on leaves only. ``block_gate`` is asked in
evaluation too: a gate that should only act in training tests
``block.training``.

A hook object whose class defines an ``on_*`` method that is not a hook
point (``on_epoch_ends``) is refused when it is added to a HookList, and
calling a trainer-level point by a name that does not exist raises: a
misspelt hook never silently does nothing.

Recipes (each is tested in ``tests/test_hook_patterns.py``):

* fixed-point weights (PSG's 8-bit weights): in ``forward_input`` keep a copy
  of ``layer.params["weight"]`` and overwrite it in place with its quantized
  value -- the layer's forward *and* backward then use it -- and put the fp32
  master back in ``on_after_backward`` (and in ``forward_output`` when
  ``not layer.training``: evaluation has no backward), so the optimizer
  updates the master;
* dropping a batch (SMD): ``on_batch_begin`` returns False;
* pruning dL/dy (Ye et al.): ``backward_output_grad`` returns the sparse
  tensor and declares ``TensorFormat(sparse=True)`` for ``grad_output``;
* skipping layers for an epoch (WUS, LARS): ``on_epoch_begin`` sets
  ``requires_grad``; ``on_epoch_end`` reads ``state.control_acc()``.
"""
from __future__ import annotations


class Hook:
    """Base class for anything that plugs into training. All methods are no-ops."""

    # trainer level
    def on_train_begin(self, state): pass
    def on_epoch_begin(self, state): pass
    def on_batch_begin(self, state): return True
    def on_after_backward(self, state): pass
    def param_grad(self, layer, name, grad): return grad
    def on_param_update(self, layer, name, optimizer): pass
    def on_batch_end(self, state): pass
    def on_epoch_end(self, state): pass
    def on_train_end(self, state): pass

    # layer level
    def forward_input(self, layer, x): return x
    def forward_output(self, layer, x, y): return y
    def block_gate(self, block, x): return None
    def backward_output_grad(self, layer, dy): return dy
    def supply_grads(self, layer, dy): return None
    def backward_input_grad(self, layer, dx): return dx
    def observe_backward(self, layer, dy, dx): pass


#: trainer-level hook points called with the TrainState (``HookList.call``)
TRAINER_HOOKS = ("on_train_begin", "on_epoch_begin", "on_after_backward", "on_batch_end",
                 "on_epoch_end", "on_train_end")
#: every hook point a hook object may define
HOOK_POINTS = frozenset(n for n in vars(Hook) if not n.startswith("_"))

# the hook names resolved once per list, to skip objects that do not override them
_BOUND = ("forward_input", "forward_output", "block_gate", "backward_output_grad", "supply_grads",
          "backward_input_grad", "observe_backward", "param_grad", "on_param_update")


def _overrides(obj, name: str) -> bool:
    """True if ``obj`` defines ``name`` itself rather than inheriting Hook's no-op."""
    fn = getattr(type(obj), name, None)
    return fn is not None and fn is not getattr(Hook, name, None)


def check_hook(obj) -> None:
    """Raise TypeError if ``obj``'s class defines an ``on_*`` method that is no hook point (a typo)."""
    for cls in type(obj).__mro__:
        for name, value in vars(cls).items():
            if name.startswith("on_") and callable(value) and name not in HOOK_POINTS:
                raise TypeError(f"{type(obj).__name__}.{name} is not a hook point; "
                                f"known: {', '.join(sorted(n for n in HOOK_POINTS if n.startswith('on_')))}")


class HookList:
    """An ordered list of hook objects, dispatched in order.

    Transforming hooks chain: each gets the previous one's result. Calls are
    resolved once when the list changes, so an unused hook point costs one
    empty loop per layer.
    """

    def __init__(self, hooks=()):
        self._hooks: list = []
        for h in hooks:
            check_hook(h)
            self._hooks.append(h)
        self._resolve()

    def add(self, hook) -> None:
        check_hook(hook)
        self._hooks.append(hook)
        self._resolve()

    def remove(self, hook) -> None:
        self._hooks.remove(hook)
        self._resolve()

    def __iter__(self):
        return iter(self._hooks)

    def __len__(self):
        return len(self._hooks)

    def _resolve(self) -> None:
        self._bound = {name: [getattr(h, name) for h in self._hooks if _overrides(h, name)] for name in _BOUND}

    # -- trainer level ------------------------------------------------------
    def call(self, name: str, state) -> None:
        """Call trainer-level hook point ``name`` on every hook (an unknown name raises)."""
        if name not in TRAINER_HOOKS:
            raise ValueError(f"unknown trainer hook point {name!r}; known: {', '.join(TRAINER_HOOKS)}")
        for h in self._hooks:
            fn = getattr(h, name, None)
            if fn is not None:
                fn(state)

    def batch_begin(self, state) -> bool:
        """True unless some hook asks to drop the batch (every hook is asked)."""
        keep = True
        for h in self._hooks:
            fn = getattr(h, "on_batch_begin", None)
            if fn is not None and fn(state) is False:
                keep = False
        return keep

    def param_grad(self, layer, name, grad):
        for fn in self._bound["param_grad"]:
            grad = fn(layer, name, grad)
        return grad

    def param_update(self, layer, name, optimizer) -> None:
        for fn in self._bound["on_param_update"]:
            fn(layer, name, optimizer)

    # -- layer level ----------------------------------------------------------
    def forward_input(self, layer, x):
        for fn in self._bound["forward_input"]:
            x = fn(layer, x)
        return x

    def forward_output(self, layer, x, y):
        for fn in self._bound["forward_output"]:
            y = fn(layer, x, y)
        return y

    def block_gate(self, block, x):
        mask = None
        for fn in self._bound["block_gate"]:
            m = fn(block, x)
            if m is not None:
                mask = m if mask is None else (mask & m)
        return mask

    def backward_output_grad(self, layer, dy):
        for fn in self._bound["backward_output_grad"]:
            dy = fn(layer, dy)
        return dy

    def supply_grads(self, layer, dy) -> dict:
        """{param name: gradient or finisher} supplied by hooks (empty if none); two hooks may not supply the same one."""
        out = {}
        for fn in self._bound["supply_grads"]:
            got = fn(layer, dy)
            if got:
                for name in got:
                    if name in out:
                        raise ValueError(f"two hooks supply the gradient of {layer.name}.{name}")
                    if name not in layer.params:
                        raise KeyError(f"a hook supplies a gradient for {layer.name}.{name}, which does not exist")
                out.update(got)
        return out

    def backward_input_grad(self, layer, dx):
        for fn in self._bound["backward_input_grad"]:
            dx = fn(layer, dx)
        return dx

    def observe_backward(self, layer, dy, dx):
        for fn in self._bound["observe_backward"]:
            fn(layer, dy, dx)


#: a list with no hooks: what a model uses when nobody attached any
NO_HOOKS = HookList()
