"""Mini-batches for training and evaluation: shuffle, augment, normalise.

Randomness is a pure function of ``(seed, epoch, batch)``: pass ``epoch``
takes its permutation from ``np.random.default_rng([seed, epoch])`` and batch
``b`` of it takes its augmentation draws from a stream of its own,
``np.random.default_rng([seed, epoch, b])``. So the same seed gives the same
batches in every run, each epoch gets a different order, and a batch that is
never loaded (dropped by SMD before loading) does not shift the crops and
flips of any later batch.

The trainer uses the two halves separately: :meth:`BatchIterator.plan` gives
the indices of every batch of an epoch (cheap), :meth:`BatchIterator.load`
turns one of them into a normalized float32 batch (the work).

Epoch bookkeeping mirrors ``DistributedSampler.set_epoch`` but is forgiving:
``set_epoch(e)`` makes the *next* pass use epoch e, and every pass advances
the epoch by one, so a trainer that never calls ``set_epoch`` still sees
epochs 0, 1, 2, ... and one that calls it every epoch gets exactly what it
asked for.
"""
from __future__ import annotations

import math

import numpy as np

from .augment import _per_channel, apply_augment, check_augment, normalize
from .dataset import DataError


class BatchIterator:
    """Iterate ``(x, y)`` batches: x float32 (B, C, H, W) normalised, y int64 (B,).

    Args:
        x_uint8: images (N, C, H, W) uint8 (kept by reference, never modified).
        y: labels (N,), any integer dtype.
        batch_size: B; the last batch is smaller unless ``drop_last``.
        shuffle: new seeded permutation every epoch (False: dataset order).
        augment: names from {'crop', 'flip'}, applied in that order to uint8 pixels.
        mean, std: per-channel normalisation in [0, 1] units (None: x/255 only).
        seed: base seed; see the module docstring.
        drop_last: drop the final incomplete batch.
    """

    def __init__(self, x_uint8, y, batch_size, shuffle=True, augment=(), mean=None, std=None, seed=0,
                 drop_last=False):
        x = np.asarray(x_uint8)
        if x.dtype != np.uint8 or x.ndim != 4:
            raise DataError(f"BatchIterator needs uint8 images (N, C, H, W), got {x.dtype} {x.shape}")
        y = np.asarray(y)
        if y.shape != (len(x),) or (len(y) and not np.issubdtype(y.dtype, np.integer)):
            raise DataError(f"BatchIterator needs {len(x)} integer labels, got {y.dtype} {y.shape}")
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
            raise DataError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.x = x
        self.y = y.astype(np.int64, copy=False)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.augment = check_augment(augment)
        c = x.shape[1]
        self.mean = None if mean is None else _per_channel(mean, c, 'mean')
        self.std = None if std is None else _per_channel(std, c, 'std')
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.epoch = 0

    @property
    def num_samples(self) -> int:
        """Images served per pass (N, or fewer with drop_last)."""
        return len(self) * self.batch_size if self.drop_last else len(self.y)

    def __len__(self) -> int:
        n = len(self.y)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass use ``epoch`` (different epochs: different order and augmentation)."""
        self.epoch = int(epoch)

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        return self._batches(epoch)

    def plan(self, epoch: int) -> list[np.ndarray]:
        """The dataset indices of every batch of pass ``epoch``, in order (no pixels touched)."""
        n = len(self.y)
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
        return [order[b * self.batch_size:(b + 1) * self.batch_size] for b in range(len(self))]

    def load(self, idx: np.ndarray, epoch: int, batch: int) -> np.ndarray:
        """Batch ``batch`` of pass ``epoch``: the images ``idx``, augmented with the batch's own stream, normalized."""
        xb = self.x[idx]
        if self.augment:
            xb = apply_augment(xb, self.augment, np.random.default_rng([self.seed, epoch, batch]))
        return normalize(xb, self.mean, self.std)

    def _batches(self, epoch):
        for b, idx in enumerate(self.plan(epoch)):
            yield self.load(idx, epoch, b), self.y[idx]

    def __repr__(self) -> str:
        return (f"BatchIterator(n={len(self.y)}, batch_size={self.batch_size}, batches={len(self)}, "
                f"shuffle={self.shuffle}, augment={self.augment}, seed={self.seed}, epoch={self.epoch})")
