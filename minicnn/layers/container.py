"""Containers: layers made of layers, and the place where hook points fire.

``Sequential`` runs its children in order. Around each child it calls the
hook points of ``minicnn.hooks`` (``forward_input``, ``forward_output``,
``backward_output_grad``, ``backward_input_grad``, ``observe_backward``),
so that methods, the ledger and the statistics recorder see every layer
without any layer knowing about them.

Backward stops as early as possible: a child is visited only if it, or some
child before it, still trains something, and a child computes dL/dx only if
some child before it trains (or the caller asked for the input gradient).
"""
from __future__ import annotations

import numpy as np

from ..hooks import NO_HOOKS, HookList
from .base import Layer


class Container(Layer):
    """Shared machinery of Sequential and BasicBlock: naming, hooks, recursion."""

    is_container = True

    def __init__(self, dtype=np.float32):
        super().__init__(dtype)
        self.hooks: HookList = NO_HOOKS
        self.needs_input_grad = False  # a model's input needs no gradient

    def named_children(self) -> list[tuple[str, Layer]]:
        raise NotImplementedError

    def children(self) -> list[Layer]:
        return [c for _, c in self.named_children()]

    def _name_children(self, prefix: str = "") -> None:
        """Give every descendant its qualified name ("layer1.0.conv1"); names must be unique.

        Called with no prefix by a container on its own children; a parent
        calls it again with the child's name when the child is placed in it.
        """
        seen = set()
        for short, child in self.named_children():
            if short in seen:
                raise ValueError(f"{self.name}: two children are named {short!r}")
            seen.add(short)
            child.name = f"{prefix}.{short}" if prefix else short
            if child.is_container:
                child._name_children(child.name)

    def set_hooks(self, hooks: HookList) -> None:
        """Attach a HookList to this container and every container inside it."""
        self.hooks = hooks
        for c in self.children():
            if c.is_container:
                c.set_hooks(hooks)

    # -- iteration over everything ---------------------------------------------
    def modules(self):
        """Every layer below this one, depth first, containers before their children."""
        for c in self.children():
            yield c
            if c.is_container:
                yield from c.modules()

    def leaves(self):
        return [m for m in self.modules() if not m.is_container]

    def named_parameters(self):
        """Yield ``(qualified_name, layer, param_name)`` for every parameter."""
        for m in self.modules():
            for p in m.params:
                yield f"{m.name}.{p}", m, p

    def state_dict(self) -> dict[str, np.ndarray]:
        """Params and buffers by qualified name (what ``model.npz`` holds)."""
        out = {}
        for m in self.modules():
            for k, v in list(m.params.items()) + list(m.buffers.items()):
                out[f"{m.name}.{k}"] = v
        return out

    def load_state_dict(self, state: dict) -> None:
        own = self.state_dict()
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing:
            raise KeyError(f"checkpoint lacks {len(missing)} entries, e.g. {missing[0]}")
        if unexpected:
            raise KeyError(f"checkpoint has {len(unexpected)} entries this model lacks, e.g. {unexpected[0]}")
        for k, v in own.items():
            if tuple(state[k].shape) != v.shape:
                raise ValueError(f"checkpoint entry {k} has shape {tuple(state[k].shape)}, model expects {v.shape}")
            v[...] = state[k]

    # -- forward/backward of one child, with the hook points ---------------------
    def forward_child(self, child: Layer, x: np.ndarray) -> np.ndarray:
        """``child.forward(x)`` with the forward hook points around it."""
        hooks = self.hooks
        x = hooks.forward_input(child, x)
        y = child.forward(x)
        return hooks.forward_output(child, x, y)

    def backward_child(self, child: Layer, dy: np.ndarray):
        """``child.backward(dy)`` with the backward hook points around it.

        Gradients that hooks supply (``supply_grads``) are not computed by the
        child: their ``requires_grad`` is off during its backward (and while
        observers look, so the ledger does not count a dW nobody computed),
        then the supplied arrays become ``child.grads``. A hook may instead
        supply a *finisher* (a callable): the child then computes that gradient
        as usual, in the same pass as dL/dx, and ``finisher(child's gradient)``
        becomes the gradient; observers see it as supplied (``requires_grad``
        off), so the rules do not count it either (see ``minicnn.hooks``).
        """
        hooks = self.hooks
        dy = hooks.backward_output_grad(child, dy)
        supplied = hooks.supply_grads(child, dy) if not child.is_container else {}
        supplied = {n: g for n, g in supplied.items() if child.requires_grad.get(n, False)}
        finishers = {n: f for n, f in supplied.items() if callable(f)}
        for n in supplied:
            if n not in finishers:
                child.requires_grad[n] = False
        try:
            dx = child.backward(dy)
            for n, finish in finishers.items():
                supplied[n] = finish(child.grads.get(n))      # the child's gradient -> the one used
                child.requires_grad[n] = False                 # observers see it as supplied
            dx = hooks.backward_input_grad(child, dx)
            hooks.observe_backward(child, dy, dx)
        finally:
            for n in supplied:
                child.requires_grad[n] = True
        for n, g in supplied.items():
            child.grads[n] = g
        return dx

    def _backward_chain(self, chain: list[Layer], dy: np.ndarray, need_input_grad: bool):
        """Backward through ``chain`` (forward order), stopping as early as possible.

        Returns dL/d(input of chain[0]) if ``need_input_grad`` else None.
        """
        # lowest = the first child (in forward order) that trains: nothing below it is visited
        if need_input_grad:
            lowest = 0
        else:
            lowest = next((i for i, c in enumerate(chain) if c.trainable()), len(chain))
        for i in range(len(chain) - 1, lowest - 1, -1):
            child = chain[i]
            # dL/dx of child i feeds child i-1: needed if some child below i trains, i.e. i > lowest
            child.needs_input_grad = need_input_grad or i > lowest
            dy = self.backward_child(child, dy)
        return dy if need_input_grad and chain else None


class Sequential(Container):
    """An ordered container of named layers: ``Sequential(("conv1", Conv2d(...)), ...)``.

    Plain layers may be passed too; they are named by their index.
    """

    def __init__(self, *layers, dtype=np.float32):
        super().__init__(dtype)
        self._children: list[tuple[str, Layer]] = []
        for i, item in enumerate(layers):
            name, layer = item if isinstance(item, tuple) else (str(i), item)
            self._children.append((name, layer))
        self._name_children()

    def named_children(self):
        return list(self._children)

    def __getitem__(self, key):
        if isinstance(key, str):
            for n, c in self._children:
                if n == key:
                    return c
            raise KeyError(key)
        return self._children[key][1]

    def __len__(self):
        return len(self._children)

    def output_shape(self, input_shape):
        for c in self.children():
            input_shape = c.output_shape(input_shape)
        return input_shape

    def forward(self, x: np.ndarray) -> np.ndarray:
        for child in self.children():
            x = self.forward_child(child, x)
        return x

    def backward(self, dy: np.ndarray) -> np.ndarray | None:
        """Backward through all children; returns dL/dx only if ``needs_input_grad``."""
        return self._backward_chain(self.children(), dy, self.needs_input_grad)

    def extra_repr(self):
        return "\n" + "\n".join(f"  ({n}): {c!r}".replace("\n", "\n  ") for n, c in self._children) + "\n"
