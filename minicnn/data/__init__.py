"""Datasets for minicnn: CIFAR-10/100 loaders (both official formats), an embedded
synthetic dataset, normalisation statistics, augmentation and batch iteration.

Typical use::

    from minicnn.data import load_dataset, channel_stats, BatchIterator
    ds = load_dataset('cifar10', '../shared/data')
    mean, std = channel_stats(ds.train_x)
    train = BatchIterator(ds.train_x, ds.train_y, 128, augment=('crop', 'flip'), mean=mean, std=std, seed=0)
    for epoch in range(epochs):
        train.set_epoch(epoch)
        for x, y in train:          # x float32 (B, 3, 32, 32), y int64 (B,)
            ...

Every user-facing problem raises :class:`DataError` with a one-line message.
"""
from .augment import (AUGMENTATIONS, apply_augment, crop_with_offsets, flip_with_mask, normalize,
                      random_crop, random_flip)
from .cifar import find_cifar, load_cifar10, load_cifar100, save_cifar_binary, save_cifar_python
from .dataset import (CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, CIFAR100_COARSE_CLASSES,
                      CIFAR100_FINE_CLASSES, CIFAR100_MEAN, CIFAR100_STD, DataError, Dataset,
                      channel_stats, split_validation, subset)
from .iterator import BatchIterator
from .registry import DATASETS, load_dataset
from .safe_pickle import RestrictedUnpickler, safe_load, safe_loads
from .synthetic import synthetic

__all__ = [
    'AUGMENTATIONS', 'BatchIterator', 'CIFAR10_CLASSES', 'CIFAR10_MEAN', 'CIFAR10_STD',
    'CIFAR100_COARSE_CLASSES', 'CIFAR100_FINE_CLASSES', 'CIFAR100_MEAN', 'CIFAR100_STD', 'DATASETS',
    'DataError', 'Dataset', 'RestrictedUnpickler', 'apply_augment', 'channel_stats', 'crop_with_offsets',
    'find_cifar', 'flip_with_mask', 'load_cifar10', 'load_cifar100', 'load_dataset', 'normalize',
    'random_crop', 'random_flip', 'safe_load', 'safe_loads', 'save_cifar_binary', 'save_cifar_python',
    "subset", "split_validation", "synthetic",
]
