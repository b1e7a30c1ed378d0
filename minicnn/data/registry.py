"""Load a dataset by name: the one entry point the trainer and the CLI use."""
from __future__ import annotations

from .cifar import load_cifar10, load_cifar100
from .dataset import DataError, Dataset
from .synthetic import synthetic

#: dataset names accepted by :func:`load_dataset`
DATASETS = ('synthetic', 'cifar10', 'cifar100')


def load_dataset(name: str, data_dir=None, **kw) -> Dataset:
    """Load dataset ``name`` ('synthetic' | 'cifar10' | 'cifar100').

    ``data_dir`` is required for CIFAR (the official folder or a parent of it)
    and ignored for 'synthetic'. Extra keywords go to the loader:
    :func:`~minicnn.data.synthetic` (n_train, n_test, num_classes, seed),
    :func:`~minicnn.data.load_cifar10` (format),
    :func:`~minicnn.data.load_cifar100` (label='fine'|'coarse', format).
    """
    key = str(name).lower().replace('-', '').replace('_', '')
    if key not in DATASETS:
        raise DataError(f"unknown dataset {name!r}: expected one of {', '.join(DATASETS)}")
    try:
        if key == 'synthetic':
            return synthetic(**kw)
        if data_dir is None:
            raise DataError(f"dataset {key!r} needs a data directory (--data-dir); "
                            f"see data_scripts/download_cifar.py to get one")
        return (load_cifar10 if key == 'cifar10' else load_cifar100)(data_dir, **kw)
    except TypeError as e:  # an option the chosen loader does not take
        raise DataError(f"dataset {key!r}: {e}") from None
