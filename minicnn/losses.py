"""Loss functions with an explicit forward and backward.

SoftmaxCrossEntropy is ``torch.nn.CrossEntropyLoss()`` (mean reduction) on
raw logits z of shape (N, C) and integer labels y of shape (N,)::

    p_ij  = exp(z_ij - max_k z_ik) / sum_k exp(z_ik - max_k z_ik)   (stable softmax)
    loss  = -(1/N) sum_i log p_{i, y_i}
    dL/dz = (p - onehot(y)) / N

Subtracting the row maximum before exponentiating keeps every exponent <= 0,
so large logits cannot overflow; the log-probabilities are formed as
``(z - max) - log(sum(exp(z - max)))`` so a tiny p never becomes log(0).
"""
from __future__ import annotations

import numpy as np

from .layers.base import ShapeError


class SoftmaxCrossEntropy:
    def __init__(self):
        self.cache = None

    def forward(self, logits: np.ndarray, labels: np.ndarray) -> float:
        if logits.ndim != 2:
            raise ShapeError(f"loss: expected logits of shape (N, C), got {tuple(logits.shape)}")
        labels = np.asarray(labels)
        if labels.shape != (logits.shape[0],):
            raise ShapeError(f"loss: expected labels of shape ({logits.shape[0]},), got {tuple(labels.shape)}")
        if labels.size and (labels.min() < 0 or labels.max() >= logits.shape[1]):
            raise ValueError(f"loss: labels must lie in [0, {logits.shape[1]}), got range "
                             f"[{labels.min()}, {labels.max()}]")
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_sum = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        log_p = shifted - log_sum
        n = logits.shape[0]
        self.cache = (log_p, labels)
        return float(-log_p[np.arange(n), labels].mean())

    __call__ = forward

    def backward(self) -> np.ndarray:
        if self.cache is None:
            raise RuntimeError("loss: backward() called before forward()")
        log_p, labels = self.cache
        n = log_p.shape[0]
        dlogits = np.exp(log_p)
        dlogits[np.arange(n), labels] -= 1.0
        dlogits /= n
        return dlogits
