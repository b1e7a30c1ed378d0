"""The in-memory dataset every loader returns, and what is computed from it.

A :class:`Dataset` is four arrays and a list of class names::

    train_x  (N, 3, 32, 32) uint8    raw pixels, NCHW, channel order R, G, B
    train_y  (N,)           int64    class index in [0, num_classes)
    test_x   (M, 3, 32, 32) uint8
    test_y   (M,)           int64
    classes  list[str]               classes[k] is the name of label k

Pixels stay ``uint8`` until a batch is drawn: augmentation works on raw pixels
(as torchvision does, on the PIL image) and :mod:`minicnn.data.augment` turns
a batch into normalised float32 at the last moment, so a 50,000-image
training set costs 150 MB rather than 600 MB.

Normalisation statistics
------------------------
:func:`channel_stats` gives, per channel c, over every pixel of every image
(in [0, 1] units, x = pixel / 255)::

    mean_c = (1 / (N H W)) * sum_{n,h,w} x[n, c, h, w]
    std_c  = sqrt( (1 / (N H W)) * sum_{n,h,w} (x[n, c, h, w] - mean_c)^2 )   (population std)

The constants below are these numbers for the full official training sets.
The often-copied CIFAR-10 "std" (0.2023, 0.1994, 0.2010) is a different
quantity (the average of per-image standard deviations); we use the true
population std, which is what ``channel_stats`` returns.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class DataError(Exception):
    """A user-facing data problem: missing/malformed file, unknown name, bad checksum.

    The message is one line and names the path (or value) and what was expected.
    """


# --- well-known constants ---------------------------------------------------
#: per-channel mean / population std of the 50,000 CIFAR-10 training images, in [0, 1] units
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
#: the same for the 50,000 CIFAR-100 training images
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)

CIFAR10_CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer',
                   'dog', 'frog', 'horse', 'ship', 'truck']
CIFAR100_FINE_CLASSES = [
    'apple', 'aquarium_fish', 'baby', 'bear', 'beaver', 'bed', 'bee', 'beetle', 'bicycle', 'bottle',
    'bowl', 'boy', 'bridge', 'bus', 'butterfly', 'camel', 'can', 'castle', 'caterpillar', 'cattle',
    'chair', 'chimpanzee', 'clock', 'cloud', 'cockroach', 'couch', 'crab', 'crocodile', 'cup', 'dinosaur',
    'dolphin', 'elephant', 'flatfish', 'forest', 'fox', 'girl', 'hamster', 'house', 'kangaroo', 'keyboard',
    'lamp', 'lawn_mower', 'leopard', 'lion', 'lizard', 'lobster', 'man', 'maple_tree', 'motorcycle', 'mountain',
    'mouse', 'mushroom', 'oak_tree', 'orange', 'orchid', 'otter', 'palm_tree', 'pear', 'pickup_truck', 'pine_tree',
    'plain', 'plate', 'poppy', 'porcupine', 'possum', 'rabbit', 'raccoon', 'ray', 'road', 'rocket',
    'rose', 'sea', 'seal', 'shark', 'shrew', 'skunk', 'skyscraper', 'snail', 'snake', 'spider',
    'squirrel', 'streetcar', 'sunflower', 'sweet_pepper', 'table', 'tank', 'telephone', 'television', 'tiger', 'tractor',
    'train', 'trout', 'tulip', 'turtle', 'wardrobe', 'whale', 'willow_tree', 'wolf', 'woman', 'worm']
CIFAR100_COARSE_CLASSES = [
    'aquatic_mammals', 'fish', 'flowers', 'food_containers', 'fruit_and_vegetables',
    'household_electrical_devices', 'household_furniture', 'insects', 'large_carnivores',
    'large_man-made_outdoor_things', 'large_natural_outdoor_scenes', 'large_omnivores_and_herbivores',
    'medium_mammals', 'non-insect_invertebrates', 'people', 'reptiles', 'small_mammals', 'trees',
    'vehicles_1', 'vehicles_2']


@dataclass(repr=False)
class Dataset:
    """Train and test images (uint8 NCHW) with int64 labels and class names.

    ``label_kind`` is ``'fine'`` or ``'coarse'`` for CIFAR-100 (None otherwise);
    ``alt_labels`` keeps the *other* labelling of the same images, keyed by its
    kind, as ``(train_y, test_y, classes)`` (CIFAR-100 has both), so a subset or
    a re-save in the official format loses nothing. ``source`` is where the
    data came from (a path, or a description).
    """

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: list[str]
    label_kind: str | None = None
    alt_labels: dict = field(default_factory=dict)
    source: str | None = None

    def __post_init__(self):
        self.classes = [str(c) for c in self.classes]
        if not self.classes:
            raise DataError(f"dataset {self.name!r}: empty class list")
        self.train_x, self.train_y = _check_split(self.name, 'train', self.train_x, self.train_y, len(self.classes))
        self.test_x, self.test_y = _check_split(self.name, 'test', self.test_x, self.test_y, len(self.classes))
        if self.train_x.shape[1:] != self.test_x.shape[1:]:
            raise DataError(f"dataset {self.name!r}: train images are {self.train_x.shape[1:]} "
                            f"but test images are {self.test_x.shape[1:]}")
        for kind, (tr, te, cls) in list(self.alt_labels.items()):
            _, tr = _check_split(self.name, f'train ({kind} labels)', self.train_x, tr, len(cls))
            _, te = _check_split(self.name, f'test ({kind} labels)', self.test_x, te, len(cls))
            self.alt_labels[kind] = (tr, te, [str(c) for c in cls])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.train_x.shape[1:])

    def summary(self) -> str:
        """One line: name, sizes, classes, image shape."""
        kind = f" ({self.label_kind} labels)" if self.label_kind else ""
        c, h, w = self.image_shape
        return (f"{self.name}{kind}: {len(self.train_y)} train / {len(self.test_y)} test images, "
                f"{self.num_classes} classes, {c}x{h}x{w} uint8")

    def __repr__(self) -> str:
        return f"Dataset({self.summary()})"


def _check_split(name, split, x, y, num_classes):
    """Validate one split; return (x, y) as C-contiguous uint8 / int64 arrays."""
    x = np.asarray(x)
    y = np.asarray(y)
    if x.dtype != np.uint8 or x.ndim != 4:
        raise DataError(f"dataset {name!r}: {split} images must be a uint8 array (N, C, H, W), "
                        f"got {x.dtype} {x.shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"dataset {name!r}: {split} labels must have shape ({len(x)},), got {y.shape}")
    if len(y) and not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"dataset {name!r}: {split} labels must be integers, got {y.dtype}")
    y = y.astype(np.int64, copy=False)
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise DataError(f"dataset {name!r}: {split} labels must lie in [0, {num_classes}), "
                        f"found [{y.min()}, {y.max()}]")
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


# --- statistics ---------------------------------------------------------------
def channel_stats(x_uint8: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and population std of uint8 images (N, C, H, W), in [0, 1] units.

    Computed exactly from integer sums S_c = sum p and Q_c = sum p^2 of the raw
    pixels p (accumulated in int64 over chunks of ``chunk`` images, so memory
    stays small)::

        mean_c = S_c / (n 255),   var_c = (n Q_c - S_c^2) / (n^2 255^2),   n = N H W

    Returns two float64 arrays of shape (C,).
    """
    x = np.asarray(x_uint8)
    if x.dtype != np.uint8 or x.ndim != 4 or len(x) == 0:
        raise DataError(f"channel_stats needs a non-empty uint8 array (N, C, H, W), got {x.dtype} {x.shape}")
    n_img, c = x.shape[:2]
    s = np.zeros(c, dtype=np.int64)
    q = np.zeros(c, dtype=np.int64)
    for i in range(0, n_img, chunk):
        block = x[i:i + chunk].astype(np.int64)
        s += block.sum(axis=(0, 2, 3))
        q += (block * block).sum(axis=(0, 2, 3))
    n = n_img * x.shape[2] * x.shape[3]
    mean = np.array([int(sc) / (n * 255) for sc in s])
    var = np.array([(n * int(qc) - int(sc) ** 2) / (n * n * 255 ** 2) for sc, qc in zip(s, q)])
    return mean, np.sqrt(np.maximum(var, 0.0))


# --- subsets ------------------------------------------------------------------
def _balanced_indices(y: np.ndarray, n: int, num_classes: int, rng: np.random.Generator, split: str,
                      name: str) -> np.ndarray:
    """``n`` indices into ``y`` with n // K per class (the first n % K classes get one more)."""
    if n is None or (not isinstance(n, bool) and n == len(y)):
        return np.arange(len(y))                      # the whole split, balanced or not
    if int(n) != n or n < 0:
        raise DataError(f"subset of {name!r}: {split} size must be a non-negative integer, got {n!r}")
    n = int(n)
    base, extra = divmod(n, num_classes)
    chosen = []
    for k in range(num_classes):
        want = base + (1 if k < extra else 0)
        idx = np.flatnonzero(y == k)
        if len(idx) < want:
            raise DataError(f"subset of {name!r}: {split} class {k} has only {len(idx)} images, "
                            f"a balanced subset of {n} needs {want}")
        chosen.append(rng.choice(idx, size=want, replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def subset(ds: Dataset, n_train: int | None, n_test: int | None, seed: int = 0) -> Dataset:
    """A class-balanced, seeded subset: ``n_train // K`` training images per class
    (the first ``n_train % K`` classes get one more), likewise for test.

    ``None`` (or the split's own size) keeps the whole split as it is.
    Images keep their original relative order.
    The same seed always picks the same images. Raises DataError if a class is
    too small.
    """
    rng = np.random.default_rng(seed)
    itr = _balanced_indices(ds.train_y, n_train, ds.num_classes, rng, 'train', ds.name)
    ite = _balanced_indices(ds.test_y, n_test, ds.num_classes, rng, 'test', ds.name)
    alt = {k: (tr[itr], te[ite], cls) for k, (tr, te, cls) in ds.alt_labels.items()}
    return Dataset(ds.name, ds.train_x[itr], ds.train_y[itr], ds.test_x[ite], ds.test_y[ite],
                   list(ds.classes), label_kind=ds.label_kind, alt_labels=alt,
                   source=f"subset(seed={seed}) of {ds.source}" if ds.source else f"subset(seed={seed})")


def split_validation(ds: Dataset, n_val: int, seed: int = 0) -> tuple[Dataset, np.ndarray, np.ndarray]:
    """Carve a class-balanced validation set of ``n_val`` images out of the training images.

    Returns ``(train_ds, val_x, val_y)``: ``train_ds`` keeps the other
    training images (their order kept) and the whole test split. The same
    seed carves the same images (a stream of its own, so it does not depend
    on ``subset``'s draws). Methods that decide from accuracy (WUS, LARS
    skipping) read the validation accuracy, never the test accuracy.
    """
    if n_val is None or n_val == 0:
        return ds, ds.train_x[:0], ds.train_y[:0]
    if int(n_val) != n_val or n_val < ds.num_classes:
        raise DataError(f"validation set: give at least one image per class ({ds.num_classes}), got {n_val!r}")
    if n_val >= len(ds.train_y):
        raise DataError(f"validation set of {n_val} images leaves no training images (there are {len(ds.train_y)})")
    rng = np.random.default_rng([seed, 0x76616C])            # "val"
    iv = _balanced_indices(ds.train_y, int(n_val), ds.num_classes, rng, 'validation', ds.name)
    keep = np.ones(len(ds.train_y), dtype=bool)
    keep[iv] = False
    it = np.flatnonzero(keep)
    alt = {k: (tr[it], te, cls) for k, (tr, te, cls) in ds.alt_labels.items()}
    train = Dataset(ds.name, ds.train_x[it], ds.train_y[it], ds.test_x, ds.test_y, list(ds.classes),
                    label_kind=ds.label_kind, alt_labels=alt, source=ds.source)
    return train, ds.train_x[iv], ds.train_y[iv]
