"""An embedded, procedurally generated 10-class image dataset (no files needed).

Each image is a *pattern* drawn in a random foreground colour over a random
background colour, plus Gaussian pixel noise. The class is the pattern's
shape; position, phase, scale, frequency and both colours are random
nuisances, so the classes cannot be told apart by mean colour and a
classifier has to look at spatial structure, which is what a convnet does.

With pixel grid coordinates (u, v) = (column, row) in [0, 32), and a soft mask
m(u, v) in [0, 1], the image is::

    img = 255 * clip( bg * (1 - m) + fg * m + noise, 0, 1 ),   noise ~ N(0, sigma^2) per pixel

Patterns (class index: name, mask before softening)::

    0    stripes-0deg     cos(2 pi <n, (u, v)> / P + phi) > 0: stripes running at angle theta
    1    stripes-90deg    (counter-clockwise from horizontal, +-5 deg jitter), n = (-sin theta,
    2    stripes-diag     -cos theta) in (u, v); theta = 0, 90, or 45/135 at random; P in [4, 8]
    3    checker          cos(2 pi u / P + phi_u) cos(2 pi v / P + phi_v) > 0
    4    rings            cos(2 pi r / P + phi) > 0, r = distance to a random centre
    5    disc             r < R,             R in [6, 11]
    6    annulus          |r - R| < T / 2,   R in [7, 12], T in [2.5, 4]
    7    square           max(|du|, |dv|) < S, S in [5, 9] (axis-aligned, filled)
    8    cross            (|du| < T and |dv| < L) or (|dv| < T and |du| < L), L in [8, 13], T in [1.5, 2.5]
    9    triangle         upright isosceles triangle, apex up, height 2H, H in [6, 9]

Every class is closed under the standard augmentations: a horizontal flip or
a small shift of an image of class k is still an image of class k (which is
why 45 and 135 degree stripes, mirror images of each other, share a class).

Edges are softened to ~1 pixel (``clip(0.5 + signed_distance, 0, 1)``). Colours
are uniform in [0, 1]^3, re-drawn as the complement of the background when
foreground and background are closer than 0.5 (Euclidean), so the pattern is
always visible. Labels are balanced (``i % K`` before a seeded shuffle).
Everything is vectorised (its speed: ``docs/measurements/timings.md``).
"""
from __future__ import annotations

import numpy as np

from .dataset import DataError, Dataset

CLASSES = ('stripes-0deg', 'stripes-90deg', 'stripes-diag', 'checker', 'rings',
           'disc', 'annulus', 'square', 'cross', 'triangle')
SIZE = 32
CHUNK = 500  # images generated per vectorised block (part of the definition: changing it changes the data)


def _soft(d):
    """Signed distance (positive inside) -> soft mask with ~1-pixel edges."""
    return np.clip(0.5 + d, 0.0, 1.0)


def _masks(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, 32, 32) float32 masks for the given class indices (all randomness from ``rng``)."""
    n = len(labels)
    v, u = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    u, v = u[None], v[None]                                    # (1, H, W)

    def r(lo, hi):                                             # per-image uniform draw, (N, 1, 1)
        return rng.uniform(lo, hi, size=(n, 1, 1)).astype(np.float32)

    # draw every nuisance parameter for every image, so the stream of random
    # numbers (hence the dataset) does not depend on how classes interleave
    period, phase, jitter = r(4, 8), r(0, 2 * np.pi), np.deg2rad(r(-5, 5))
    cu, cv = r(8, 24), r(8, 24)                                # pattern centre
    size_a, size_b = r(0, 1), r(0, 1)                          # shape sizes, mapped per class below
    phase2 = r(0, 2 * np.pi)
    diag = np.where(rng.random((n, 1, 1)) < 0.5, 45.0, 135.0).astype(np.float32)

    m = np.empty((n, SIZE, SIZE), dtype=np.float32)
    du, dv = u - cu, v - cv
    dist = np.sqrt(du * du + dv * dv)
    for k in range(len(CLASSES)):
        sel = labels == k
        if not sel.any():
            continue
        s = (sel,)
        if k < 3:                                              # stripes at 0 / 90 / 45-or-135 degrees
            theta = np.deg2rad(diag[s] if k == 2 else 90.0 * k) + jitter[s]
            proj = -np.sin(theta) * u - np.cos(theta) * v
            wave = np.cos(2 * np.pi * proj / period[s] + phase[s])
            m[s] = _soft(wave * period[s] / (2 * np.pi))       # wave ~ 2 pi d / P near an edge
        elif k == 3:                                           # checkerboard
            wave = np.cos(2 * np.pi * u / period[s] + phase[s]) * np.cos(2 * np.pi * v / period[s] + phase2[s])
            m[s] = _soft(wave * 4)
        elif k == 4:                                           # concentric rings
            wave = np.cos(2 * np.pi * dist[s] / period[s] + phase[s])
            m[s] = _soft(wave * period[s] / (2 * np.pi))
        elif k == 5:                                           # filled disc
            m[s] = _soft((6 + 5 * size_a[s]) - dist[s])
        elif k == 6:                                           # annulus (one ring)
            radius, half = 7 + 5 * size_a[s], (2.5 + 1.5 * size_b[s]) / 2
            m[s] = _soft(half - np.abs(dist[s] - radius))
        elif k == 7:                                           # filled square
            m[s] = _soft((5 + 4 * size_a[s]) - np.maximum(np.abs(du[s]), np.abs(dv[s])))
        elif k == 8:                                           # cross (plus sign)
            arm, half = 8 + 5 * size_a[s], 1.5 + 1.0 * size_b[s]
            a, b = np.abs(du[s]), np.abs(dv[s])
            m[s] = _soft(np.maximum(np.minimum(half - a, arm - b), np.minimum(half - b, arm - a)))
        else:                                                  # upright triangle, apex at (cu, cv - H)
            h = 6 + 3 * size_a[s]
            slope = 0.6                                        # half-width grows 0.6 px per px down
            below_apex = dv[s] + h
            side = (slope * below_apex - np.abs(du[s])) / np.sqrt(1 + slope * slope)
            m[s] = _soft(np.minimum(h - dv[s], side))
    return m


def _images(labels: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    n = len(labels)
    m = _masks(labels, rng)[:, None]                           # (N, 1, H, W)
    bg = rng.random((n, 3)).astype(np.float32)
    fg = rng.random((n, 3)).astype(np.float32)
    close = np.linalg.norm(fg - bg, axis=1) < 0.5
    fg[close] = 1.0 - bg[close]
    img = bg[:, :, None, None] * (1 - m) + fg[:, :, None, None] * m
    img += rng.normal(0.0, noise, size=img.shape).astype(np.float32)
    return np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)


def synthetic(n_train: int = 2000, n_test: int = 500, num_classes: int = 10, seed: int = 0,
              noise: float = 0.08) -> Dataset:
    """Generate the synthetic dataset: ``n_train`` + ``n_test`` images (3x32x32 uint8).

    ``num_classes`` (2..10) keeps the first patterns of :data:`CLASSES`.
    Deterministic for a given ``seed``; train and test are independent draws.
    ``noise`` is the per-pixel Gaussian noise std in [0, 1] units.
    """
    for name, val, lo in (('n_train', n_train, 1), ('n_test', n_test, 1), ('num_classes', num_classes, 2)):
        if isinstance(val, bool) or int(val) != val or val < lo:
            raise DataError(f"synthetic: {name} must be an integer >= {lo}, got {val!r}")
    if num_classes > len(CLASSES):
        raise DataError(f"synthetic: num_classes must be at most {len(CLASSES)}, got {num_classes}")
    if not 0 <= noise < 1:
        raise DataError(f"synthetic: noise must lie in [0, 1), got {noise!r}")
    rng = np.random.default_rng(seed)
    out = []
    for n in (int(n_train), int(n_test)):
        labels = rng.permutation(np.arange(n) % num_classes).astype(np.int64)
        # chunks of CHUNK images keep the float temporaries in cache-sized blocks
        images = np.concatenate([_images(labels[i:i + CHUNK], rng, noise) for i in range(0, n, CHUNK)])
        out.append((images, labels))
    (trx, try_), (tex, tey) = out
    return Dataset('synthetic', trx, try_, tex, tey, list(CLASSES[:num_classes]),
                   source=f"synthetic(seed={seed}, noise={noise})")
