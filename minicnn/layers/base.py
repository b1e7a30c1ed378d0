"""The contract every minicnn layer follows.

A layer is a small object with an explicit forward and backward pass::

    y  = layer.forward(x)      # caches exactly what backward needs
    dx = layer.backward(dy)    # fills layer.grads, returns dL/dx (or None)

State lives in three dicts, keyed by name (PyTorch's names: ``weight``,
``bias``, ``running_mean``, ...):

* ``params``        trainable ndarrays, updated in place by the optimizer;
* ``grads``         the gradient of the loss w.r.t. each param, same keys and
                    shapes, written by ``backward`` (a param whose gradient was
                    not computed this step has ``grads[name] is None``);
* ``buffers``       non-trainable state that must be saved with the model
                    (BatchNorm's running statistics).

Two flags let a caller ask for *less* work, and every layer honours them, so
the work skipped is really not done (that is what the cost ledger counts):

* ``requires_grad[name]`` (like ``param.requires_grad`` in PyTorch): False
  means backward does not compute ``grads[name]`` and the optimizer skips it;
* ``needs_input_grad``: False means backward does not compute dL/dx and
  returns None. Containers set it: the first layer of a model never needs it,
  and neither does any layer below which nothing is trained.

Layers know nothing of training methods. Methods act through the hook points
that containers (``minicnn.layers.container``) call around each layer.
"""
from __future__ import annotations

import numpy as np


class ShapeError(ValueError):
    """An input whose shape a layer cannot take; the message names the layer."""


class Layer:
    """Base class: params/grads/buffers dicts, train/eval, freezing, a summary."""

    #: containers (Sequential, BasicBlock) set this True; leaves leave it False
    is_container = False

    def __init__(self, dtype=np.float32):
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray | None] = {}
        self.buffers: dict[str, np.ndarray] = {}
        self.requires_grad: dict[str, bool] = {}
        self.needs_input_grad = True
        self.training = True
        self.name = type(self).__name__  # qualified name, set by the container
        self.cache = None

    # -- parameters -------------------------------------------------------
    def add_param(self, name: str, value: np.ndarray) -> None:
        """Register a trainable parameter (its own array: never shared by reference)."""
        self.params[name] = np.ascontiguousarray(value, dtype=self.dtype).copy()
        self.grads[name] = None
        self.requires_grad[name] = True

    def add_buffer(self, name: str, value: np.ndarray) -> None:
        self.buffers[name] = np.ascontiguousarray(value, dtype=self.dtype).copy()

    def wants_grad(self, name: str) -> bool:
        """True if backward must compute the gradient of param ``name``."""
        return name in self.params and self.requires_grad.get(name, False)

    def trainable(self) -> bool:
        """True if any parameter of this layer (or of its children) is trained."""
        return any(self.requires_grad.values()) or any(c.trainable() for c in self.children())

    def freeze(self, *names: str) -> None:
        """Stop training the named params (all of them when no name is given)."""
        for n in names or tuple(self.params):
            self.requires_grad[n] = False
            self.grads[n] = None
        if not names:
            for c in self.children():
                c.freeze()

    def unfreeze(self, *names: str) -> None:
        for n in names or tuple(self.params):
            self.requires_grad[n] = True
        if not names:
            for c in self.children():
                c.unfreeze()

    def zero_grad(self) -> None:
        for n in self.grads:
            self.grads[n] = None
        for c in self.children():
            c.zero_grad()

    # -- structure ----------------------------------------------------------
    def children(self) -> list["Layer"]:
        """Sub-layers, in forward order (empty for a leaf layer)."""
        return []

    def train(self) -> "Layer":
        self.training = True
        for c in self.children():
            c.train()
        return self

    def eval(self) -> "Layer":
        self.training = False
        for c in self.children():
            c.eval()
        return self

    def num_params(self) -> int:
        return sum(p.size for p in self.params.values()) + sum(c.num_params() for c in self.children())

    # -- shapes -------------------------------------------------------------
    def output_shape(self, input_shape: tuple) -> tuple:
        """The output shape for an input of ``input_shape`` (raises ShapeError)."""
        raise NotImplementedError

    # -- the contract ---------------------------------------------------------
    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dy: np.ndarray) -> np.ndarray | None:
        raise NotImplementedError

    __call__ = forward

    # -- summary --------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"
