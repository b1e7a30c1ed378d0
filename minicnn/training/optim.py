"""SGD and learning-rate schedules with PyTorch's semantics.

``SGD`` is ``torch.optim.SGD``: for each parameter p with gradient g (a
parameter with no gradient this step -- frozen, or not reached by backward --
is skipped entirely: no weight decay, no momentum update, exactly as PyTorch
skips ``p.grad is None``)::

    g   = g + weight_decay * p
    buf = g                                   (first step)
    buf = momentum * buf + (1 - dampening) * g   (later steps)
    g   = g + momentum * buf   if nesterov else   buf
    p   = p - lr * g

Schedules are epoch-based, like ``torch.optim.lr_scheduler`` stepped once per
epoch: ``lr_at(epoch)`` gives the learning rate of a 0-based epoch.
"""
from __future__ import annotations

import math

import numpy as np


class SGD:
    def __init__(self, model, lr: float, momentum: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False, dampening: float = 0.0):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD: lr, momentum and weight_decay must be >= 0 (got {lr}, {momentum}, {weight_decay})")
        if momentum >= 1:
            raise ValueError(f"SGD: momentum must lie in [0, 1), got {momentum} (a momentum >= 1 makes updates grow without bound)")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov momentum requires a momentum > 0 and zero dampening")
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.nesterov, self.dampening = nesterov, dampening
        #: (qualified name, layer, param name) of every parameter, in model order
        self.params = list(model.named_parameters())
        #: momentum buffers by qualified name, created on a parameter's first update
        self.state: dict[str, np.ndarray] = {}

    def step(self) -> list[tuple]:
        """Update every parameter that has a gradient; return the ``(layer, name)`` pairs updated."""
        updated = []
        for qname, layer, name in self.params:
            g = layer.grads.get(name)
            if g is None or not layer.requires_grad.get(name, False):
                continue
            p = layer.params[name]
            if self.weight_decay:
                g = g + self.weight_decay * p          # a new array: never touch layer.grads in place
            if self.momentum:
                buf = self.state.get(qname)
                if buf is None:
                    buf = self.state[qname] = np.array(g, dtype=p.dtype, copy=True)
                else:
                    buf *= self.momentum
                    buf += (1.0 - self.dampening) * g
                g = g + self.momentum * buf if self.nesterov else buf
            p -= self.lr * g
            updated.append((layer, name))
        return updated


class ConstantLR:
    def __init__(self, base_lr: float):
        self.base_lr = base_lr

    def lr_at(self, epoch: int) -> float:
        return self.base_lr


class StepLR:
    """``lr = base_lr * gamma ** (epoch // step_size)`` (torch StepLR)."""

    def __init__(self, base_lr: float, step_size: int, gamma: float = 0.1):
        if step_size < 1:
            raise ValueError(f"StepLR: step_size must be >= 1, got {step_size}")
        self.base_lr, self.step_size, self.gamma = base_lr, step_size, gamma

    def lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class CosineLR:
    """``lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2`` (torch CosineAnnealingLR)."""

    def __init__(self, base_lr: float, t_max: int, eta_min: float = 0.0):
        self.base_lr, self.t_max, self.eta_min = base_lr, max(1, t_max), eta_min

    def lr_at(self, epoch: int) -> float:
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * epoch / self.t_max)) / 2


class MultiStepLR:
    """``lr = base_lr * gamma ** (number of milestones <= epoch)`` (torch MultiStepLR, stepped per epoch).

    ``milestones`` are 0-based epoch indices at which the rate is multiplied by
    ``gamma``, in any order; a milestone given twice multiplies twice (PyTorch
    keeps them in a ``Counter`` and does the same). ``MultiStepLR(0.1, [2, 4])``
    gives 0.1, 0.1, 0.01, 0.01, 0.001, ...
    """

    def __init__(self, base_lr: float, milestones, gamma: float = 0.1):
        ms = [int(m) for m in milestones]
        if any(m != mm or m < 0 for m, mm in zip(ms, milestones)):
            raise ValueError(f"MultiStepLR: milestones must be non-negative whole epochs, got {list(milestones)}")
        if gamma <= 0:
            raise ValueError(f"MultiStepLR: gamma must be > 0, got {gamma}")
        self.base_lr, self.milestones, self.gamma = base_lr, sorted(ms), gamma

    def lr_at(self, epoch: int) -> float:
        passed = sum(1 for m in self.milestones if m <= epoch)
        return self.base_lr * self.gamma ** passed


def stretch_milestones(milestones, scale: float) -> list[int]:
    """Milestones of a run lengthened by ``scale`` (a method's ``epochs_scale``), rounded to the nearest epoch.

    Halves round up (``floor(m * scale + 0.5)``, not Python's round-half-to-even)
    so that stretching is monotone in ``scale``. E2-Train's official code
    stretches its iteration milestones by 4/3 with ``int(32000 * 4/3)``
    (truncation); at epoch granularity minicnn rounds to the nearest instead,
    so that milestone 3 at ``epochs_scale=1.333`` (as typed on the command
    line) lands on epoch 4 (3 * 1.333 = 3.999), not on epoch 3.
    """
    if not scale > 0 or not math.isfinite(scale):
        raise ValueError(f"stretch_milestones: scale must be a positive number, got {scale}")
    out = []
    for m in milestones:
        s = int(math.floor(m * scale + 0.5))
        out.append(max(1, s) if m >= 1 else s)     # a milestone after the first epoch stays after it
    return sorted(out)


def make_schedule(name: str, base_lr: float, epochs: int, step_size: int | None = None, gamma: float = 0.1,
                  milestones=None):
    """``name`` in {constant, step, cosine}; step decays by ``gamma`` every ``step_size`` (default epochs // 3)
    epochs, or at the given ``milestones`` (a multi-step schedule) when they are given."""
    if milestones:
        if name not in ("step", "multistep"):
            raise ValueError(f"milestones need a step schedule, not {name!r} (give --schedule step)")
        return MultiStepLR(base_lr, milestones, gamma)
    if name == "constant":
        return ConstantLR(base_lr)
    if name == "cosine":
        return CosineLR(base_lr, epochs)
    if name == "step":
        return StepLR(base_lr, step_size or max(1, epochs // 3), gamma)
    raise ValueError(f"unknown schedule {name!r}; choose constant, step or cosine")

