"""Data augmentation and normalisation of a batch, vectorised over the batch.

Augmentation acts on raw uint8 pixels, before normalisation, as in the usual
torchvision pipeline ``RandomCrop(32, padding=4) -> RandomHorizontalFlip() ->
ToTensor() -> Normalize(mean, std)``; in particular the padding is *black*
(pixel 0), which after normalisation is ``-mean/std``, not 0.

Random crop with padding p (``RandomCrop(H, padding=p)``)
    Pad each image with p zero pixels on every side, to (H+2p, W+2p), then
    cut out an H x W window whose top-left corner (t, l) is drawn uniformly
    from {0..2p}^2, independently per image. Equivalently::

        out[c, y, x] = img[c, y + t - p, x + l - p]   if that index is inside the image,
                       0                              otherwise,

    i.e. the image shifted by (p - t, p - l) with zeros filling the gap.

Random horizontal flip (``RandomHorizontalFlip(p=0.5)``)
    With probability 0.5, independently per image: ``out[c, y, x] = img[c, y, W-1-x]``.

Normalisation (``ToTensor`` then ``Normalize``), in float32 like PyTorch::

    out[n, c] = (img[n, c] / 255 - mean[c]) / std[c]
"""
from __future__ import annotations

import numpy as np

from .dataset import DataError

#: augmentation names understood by :class:`~minicnn.data.BatchIterator`
AUGMENTATIONS = ('crop', 'flip')


def crop_with_offsets(x: np.ndarray, top: np.ndarray, left: np.ndarray, padding: int = 4) -> np.ndarray:
    """Crop each image of ``x`` (N, C, H, W) from its zero-padded copy at (top[n], left[n]).

    ``top``, ``left`` are integer arrays of shape (N,) with values in [0, 2*padding].
    Returns a new array of the same shape and dtype (one gather, no Python loop).
    """
    n, c, h, w = x.shape
    top = np.asarray(top, dtype=np.intp)
    left = np.asarray(left, dtype=np.intp)
    if top.shape != (n,) or left.shape != (n,):
        raise DataError(f"crop offsets must have shape ({n},), got {top.shape} and {left.shape}")
    if n and (top.min() < 0 or left.min() < 0 or top.max() > 2 * padding or left.max() > 2 * padding):
        raise DataError(f"crop offsets must lie in [0, {2 * padding}]")
    padded = np.zeros((n, c, h + 2 * padding, w + 2 * padding), dtype=x.dtype)
    padded[:, :, padding:padding + h, padding:padding + w] = x
    rows = top[:, None] + np.arange(h)        # (N, H)
    cols = left[:, None] + np.arange(w)       # (N, W)
    return padded[np.arange(n)[:, None, None, None], np.arange(c)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


def random_crop(x: np.ndarray, rng: np.random.Generator, padding: int = 4) -> np.ndarray:
    """``RandomCrop(H, padding)``: a uniform offset in {0..2p}^2 per image (see module docstring)."""
    n = len(x)
    top = rng.integers(0, 2 * padding + 1, size=n)
    left = rng.integers(0, 2 * padding + 1, size=n)
    return crop_with_offsets(x, top, left, padding)


def flip_with_mask(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Reverse the W axis of the images where ``mask`` (N,) is True; returns a new array."""
    out = x.copy()
    mask = np.asarray(mask, dtype=bool)
    out[mask] = x[mask][..., ::-1]
    return out


def random_flip(x: np.ndarray, rng: np.random.Generator, p: float = 0.5) -> np.ndarray:
    """``RandomHorizontalFlip(p)``: flip each image independently with probability p."""
    return flip_with_mask(x, rng.random(len(x)) < p)


def apply_augment(x: np.ndarray, names, rng: np.random.Generator) -> np.ndarray:
    """Apply the named augmentations in the order given (e.g. ('crop', 'flip'))."""
    for name in names:
        if name == 'crop':
            x = random_crop(x, rng)
        elif name == 'flip':
            x = random_flip(x, rng)
        else:
            raise DataError(f"unknown augmentation {name!r}: expected some of {', '.join(AUGMENTATIONS)}")
    return x


def check_augment(augment) -> tuple[str, ...]:
    """Validate an augmentation list (None, a name, a comma-separated string or a sequence)."""
    if augment is None:
        return ()
    if isinstance(augment, str):
        augment = [a for a in (s.strip() for s in augment.split(',')) if a and a != 'none']
    names = tuple(augment)
    for name in names:
        if name not in AUGMENTATIONS:
            raise DataError(f"unknown augmentation {name!r}: expected some of {', '.join(AUGMENTATIONS)}")
    return names


def _per_channel(v, c: int, what: str) -> np.ndarray:
    a = np.asarray(v, dtype=np.float32).reshape(-1)
    if a.size == 1:
        a = np.repeat(a, c)
    if a.size != c:
        raise DataError(f"normalisation {what} must have 1 or {c} values, got {a.size}")
    if what == 'std' and np.any(a <= 0):
        raise DataError(f"normalisation std must be positive, got {a.tolist()}")
    return a.reshape(1, c, 1, 1)


def normalize(x_uint8: np.ndarray, mean=None, std=None) -> np.ndarray:
    """float32 ``(x/255 - mean)/std`` per channel (mean 0 / std 1 when None), as PyTorch computes it."""
    c = x_uint8.shape[1]
    out = x_uint8.astype(np.float32)
    out /= np.float32(255.0)
    if mean is not None:
        out -= _per_channel(mean, c, 'mean')
    if std is not None:
        out /= _per_channel(std, c, 'std')
    return out
