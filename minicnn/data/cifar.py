"""CIFAR-10 / CIFAR-100 in their two official on-disk formats: read, and write back.

Python format (``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``)
    Protocol-2 pickles of dicts with byte-string keys, read here with the
    restricted unpickler of :mod:`minicnn.data.safe_pickle` (never plain
    ``pickle.load``)::

        cifar-10-batches-py/data_batch_1..5, test_batch   {b'data': (K, 3072) uint8, b'labels': [K ints], ...}
        cifar-10-batches-py/batches.meta                  {b'label_names': [10 bytes], ...}
        cifar-100-python/train, test                      {b'data', b'fine_labels', b'coarse_labels', ...}
        cifar-100-python/meta                             {b'fine_label_names', b'coarse_label_names'}

Binary format (``cifar-10-binary.tar.gz`` / ``cifar-100-binary.tar.gz``)
    Fixed-size records, no header::

        cifar-10-batches-bin/data_batch_1..5.bin, test_batch.bin   records of <1 label byte><3072 pixel bytes>
        cifar-10-batches-bin/batches.meta.txt                      one class name per line
        cifar-100-binary/train.bin, test.bin                       records of <coarse byte><fine byte><3072 pixel bytes>
        cifar-100-binary/fine_label_names.txt, coarse_label_names.txt

In both, a row of 3072 bytes is the R plane, then G, then B, each 32x32 in
row-major order, so ``row.reshape(3, 32, 32)`` is the CHW image.

The loaders accept the data folder itself or any parent holding it, detect the
format, and tolerate short batches, a missing ``filenames`` key and missing
training batches (at least one training batch and the test batch are needed).
"""
from __future__ import annotations

import os
import pickle
import re
import shutil
import struct
from pathlib import Path

import numpy as np

from .dataset import (CIFAR10_CLASSES, CIFAR100_COARSE_CLASSES, CIFAR100_FINE_CLASSES, DataError,
                      Dataset)
from .safe_pickle import _multiarray, safe_load

ROW = 3 * 32 * 32  # bytes per image

#: official folder names, per (dataset, format)
FOLDERS = {
    ('cifar10', 'python'): 'cifar-10-batches-py',
    ('cifar10', 'binary'): 'cifar-10-batches-bin',
    ('cifar100', 'python'): 'cifar-100-python',
    ('cifar100', 'binary'): 'cifar-100-binary',
}
_NUMBERED = re.compile(r'^data_batch_(\d+)(\.bin)?$')


# --- locating the data ----------------------------------------------------------
def _looks_like(d: Path, kind: str, fmt: str) -> bool:
    """True if directory ``d`` holds files of ``kind`` in format ``fmt``."""
    if kind == 'cifar10':
        test = 'test_batch.bin' if fmt == 'binary' else 'test_batch'
        batches = [m for m in (_NUMBERED.match(p.name) for p in d.iterdir())
                   if m and bool(m.group(2)) == (fmt == 'binary')]
        return (d / test).is_file() or bool(batches) or \
            (d / ('batches.meta.txt' if fmt == 'binary' else 'batches.meta')).is_file()
    names = ('train.bin', 'test.bin') if fmt == 'binary' else ('train', 'test', 'meta')
    return any((d / n).is_file() for n in names)


def find_cifar(path, kind: str, fmt: str | None = None) -> tuple[Path, str]:
    """Locate the CIFAR folder for ``kind`` ('cifar10'|'cifar100') at or under ``path``.

    Returns ``(folder, format)`` with format 'python' or 'binary'. ``fmt`` (None
    = auto) restricts the search; the python format wins when both are present.
    """
    try:
        return _find_cifar(path, kind, fmt)
    except OSError as e:  # unreadable directory and the like
        raise DataError(f"cannot read {e.filename or path}: {e.strerror or e}") from None


def _find_cifar(path, kind, fmt):
    if kind not in ('cifar10', 'cifar100'):
        raise DataError(f"unknown CIFAR kind {kind!r}: expected 'cifar10' or 'cifar100'")
    if fmt not in (None, 'auto', 'python', 'binary'):
        raise DataError(f"unknown CIFAR format {fmt!r}: expected 'python' or 'binary'")
    fmts = ('python', 'binary') if fmt in (None, 'auto') else (fmt,)
    if path is None:
        raise DataError(f"{kind} needs a data directory (e.g. --data-dir path/to/{FOLDERS[(kind, 'python')]})")
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"data directory {p} does not exist (expected a {FOLDERS[(kind, 'python')]}/ "
                        f"or {FOLDERS[(kind, 'binary')]}/ folder or its parent)")
    if not p.is_dir():
        raise DataError(f"{p} is not a directory (expected a {FOLDERS[(kind, 'python')]}/ "
                        f"or {FOLDERS[(kind, 'binary')]}/ folder or its parent)")
    # the official folder itself
    for f in fmts:
        if p.name == FOLDERS[(kind, f)]:
            return p, f
    # a parent holding the official folder
    for f in fmts:
        child = p / FOLDERS[(kind, f)]
        if child.is_dir():
            return child, f
    # a folder with another name that holds the files directly
    if p.name not in FOLDERS.values() and not _looks_like_other(p, kind):
        for f in fmts:
            if _looks_like(p, kind, f):
                return p, f
    other = 'cifar100' if kind == 'cifar10' else 'cifar10'
    for f in ('python', 'binary'):
        if p.name == FOLDERS[(other, f)] or (p / FOLDERS[(other, f)]).is_dir() or _looks_like(p, other, f):
            raise DataError(f"{p} holds {other.upper().replace('CIFAR', 'CIFAR-')} data, not "
                            f"{kind.upper().replace('CIFAR', 'CIFAR-')}: use dataset '{other}' or another directory")
    wanted = ' or '.join(FOLDERS[(kind, f)] for f in fmts)
    raise DataError(f"no {kind} data found in {p}: expected {wanted}/ (or its files) there")


def _looks_like_other(p: Path, kind: str) -> bool:
    """For an unofficially named folder: does it look more like the other CIFAR?"""
    if kind == 'cifar10':
        return (p / 'train').is_file() or (p / 'train.bin').is_file()
    return (p / 'test_batch').is_file() or (p / 'test_batch.bin').is_file()


# --- python format ----------------------------------------------------------------
def _get(d: dict, key: str, path: Path):
    """``d[b'key']`` (official files) or ``d['key']`` (files pickled with str keys)."""
    if key.encode() in d:
        return d[key.encode()]
    if key in d:
        return d[key]
    have = ', '.join(sorted(k.decode('latin1') if isinstance(k, bytes) else str(k) for k in d))
    raise DataError(f"malformed CIFAR file {path}: missing key '{key}' (has: {have})")


def _read_batch(path: Path, label_keys: tuple[str, ...]):
    """(data (K, 3, 32, 32) uint8, [labels (K,) int64 for each key]) from one python-format batch."""
    d = safe_load(path)
    if not isinstance(d, dict):
        raise DataError(f"malformed CIFAR file {path}: expected a pickled dict, got {type(d).__name__}")
    data = _get(d, 'data', path)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != ROW:
        shape = getattr(data, 'shape', None)
        raise DataError(f"malformed CIFAR file {path}: 'data' must be a (K, {ROW}) uint8 array, "
                        f"got {type(data).__name__} {getattr(data, 'dtype', '')} {shape}")
    labels = []
    for key in label_keys:
        lab = _get(d, key, path)
        try:
            lab = np.asarray(lab)
            ok = lab.ndim == 1 and len(lab) == len(data) and (len(lab) == 0 or np.issubdtype(lab.dtype, np.integer))
        except Exception:
            ok = False
        if not ok:
            raise DataError(f"malformed CIFAR file {path}: '{key}' must be {len(data)} integers")
        labels.append(lab.astype(np.int64))
    return data.reshape(-1, 3, 32, 32), labels


def _names(raw, path: Path, key: str) -> list[str]:
    if not isinstance(raw, (list, tuple)):
        raise DataError(f"malformed CIFAR file {path}: '{key}' must be a list of names")
    return [n.decode('utf-8', 'replace') if isinstance(n, bytes) else str(n) for n in raw]


def _check_labels(labels: np.ndarray, n_classes: int, path: Path):
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataError(f"malformed CIFAR file {path}: labels must lie in [0, {n_classes}), "
                        f"found [{labels.min()}, {labels.max()}]")


def _cifar10_train_files(folder: Path, suffix: str) -> list[Path]:
    found = []
    for p in folder.iterdir():
        m = _NUMBERED.match(p.name)
        if m and (m.group(2) or '') == suffix and p.is_file():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def _cifar10_batches(folder: Path, suffix: str) -> tuple[list[Path], Path]:
    """The training batches present (at least one) and the test batch (required) of either format."""
    train_files = _cifar10_train_files(folder, suffix)
    if not train_files:
        raise DataError(f"no training batch in {folder}: expected data_batch_1{suffix} .. data_batch_5{suffix}")
    test_file = folder / f'test_batch{suffix}'
    if not test_file.is_file():
        raise DataError(f"missing file {test_file} (the CIFAR-10 test batch)")
    return train_files, test_file


def _load_cifar10_python(folder: Path) -> Dataset:
    train_files, test_file = _cifar10_batches(folder, '')
    classes = list(CIFAR10_CLASSES)
    meta = folder / 'batches.meta'
    if meta.is_file():
        m = safe_load(meta)
        if not isinstance(m, dict):
            raise DataError(f"malformed CIFAR file {meta}: expected a pickled dict")
        classes = _names(_get(m, 'label_names', meta), meta, 'label_names')
    xs, ys = [], []
    for f in train_files:
        x, (y,) = _read_batch(f, ('labels',))
        _check_labels(y, len(classes), f)
        xs.append(x)
        ys.append(y)
    tx, (ty,) = _read_batch(test_file, ('labels',))
    _check_labels(ty, len(classes), test_file)
    return Dataset('cifar10', np.concatenate(xs), np.concatenate(ys), tx, ty, classes,
                   source=f"{folder} (python format)")


def _load_cifar100_python(folder: Path, label: str) -> Dataset:
    files = {n: folder / n for n in ('train', 'test')}
    for n, f in files.items():
        if not f.is_file():
            raise DataError(f"missing file {f} (the CIFAR-100 {n} set)")
    fine, coarse = list(CIFAR100_FINE_CLASSES), list(CIFAR100_COARSE_CLASSES)
    meta = folder / 'meta'
    if meta.is_file():
        m = safe_load(meta)
        if not isinstance(m, dict):
            raise DataError(f"malformed CIFAR file {meta}: expected a pickled dict")
        fine = _names(_get(m, 'fine_label_names', meta), meta, 'fine_label_names')
        coarse = _names(_get(m, 'coarse_label_names', meta), meta, 'coarse_label_names')
    out = {}
    for n, f in files.items():
        x, (yf, yc) = _read_batch(f, ('fine_labels', 'coarse_labels'))
        _check_labels(yf, len(fine), f)
        _check_labels(yc, len(coarse), f)
        out[n] = (x, yf, yc)
    return _cifar100_dataset(out, fine, coarse, label, f"{folder} (python format)")


def _cifar100_dataset(out, fine, coarse, label, source) -> Dataset:
    (trx, trf, trc), (tex, tef, tec) = out['train'], out['test']
    if label == 'fine':
        return Dataset('cifar100', trx, trf, tex, tef, fine, label_kind='fine',
                       alt_labels={'coarse': (trc, tec, coarse)}, source=source)
    return Dataset('cifar100', trx, trc, tex, tec, coarse, label_kind='coarse',
                   alt_labels={'fine': (trf, tef, fine)}, source=source)


# --- binary format ----------------------------------------------------------------
def _read_records(path: Path, n_label_bytes: int):
    """(data (K, 3, 32, 32) uint8, labels (K, n_label_bytes) int64) from a binary-format file."""
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"missing file {path}") from None
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    rec = n_label_bytes + ROW
    if raw.size == 0 or raw.size % rec:
        raise DataError(f"malformed CIFAR binary file {path}: {raw.size} bytes is not a positive multiple "
                        f"of the {rec}-byte record ({n_label_bytes} label byte(s) + {ROW} pixels)")
    raw = raw.reshape(-1, rec)
    return np.ascontiguousarray(raw[:, n_label_bytes:]).reshape(-1, 3, 32, 32), raw[:, :n_label_bytes].astype(np.int64)


def _read_names(path: Path, default: list[str]) -> list[str]:
    if not path.is_file():
        return list(default)
    try:
        names = [ln.strip() for ln in path.read_text(encoding='utf-8', errors='replace').splitlines()]
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    names = [n for n in names if n]
    if not names:
        raise DataError(f"malformed CIFAR file {path}: expected one class name per line, found none")
    return names


def _load_cifar10_binary(folder: Path) -> Dataset:
    train_files, test_file = _cifar10_batches(folder, '.bin')
    classes = _read_names(folder / 'batches.meta.txt', CIFAR10_CLASSES)
    xs, ys = [], []
    for f in train_files:
        x, y = _read_records(f, 1)
        _check_labels(y[:, 0], len(classes), f)
        xs.append(x)
        ys.append(y[:, 0])
    tx, ty = _read_records(test_file, 1)
    _check_labels(ty[:, 0], len(classes), test_file)
    return Dataset('cifar10', np.concatenate(xs), np.concatenate(ys), tx, ty[:, 0], classes,
                   source=f"{folder} (binary format)")


def _load_cifar100_binary(folder: Path, label: str) -> Dataset:
    fine = _read_names(folder / 'fine_label_names.txt', CIFAR100_FINE_CLASSES)
    coarse = _read_names(folder / 'coarse_label_names.txt', CIFAR100_COARSE_CLASSES)
    out = {}
    for n in ('train', 'test'):
        f = folder / f'{n}.bin'
        if not f.is_file():
            raise DataError(f"missing file {f} (the CIFAR-100 {n} set)")
        x, y = _read_records(f, 2)  # <coarse><fine>
        _check_labels(y[:, 1], len(fine), f)
        _check_labels(y[:, 0], len(coarse), f)
        out[n] = (x, np.ascontiguousarray(y[:, 1]), np.ascontiguousarray(y[:, 0]))
    return _cifar100_dataset(out, fine, coarse, label, f"{folder} (binary format)")


# --- public loaders -----------------------------------------------------------------
def load_cifar10(path, format: str | None = None) -> Dataset:
    """Load CIFAR-10 from ``path``: ``cifar-10-batches-py/``, ``cifar-10-batches-bin/`` or a parent.

    ``format`` ('python' | 'binary' | None = auto) forces one format.
    Returns a :class:`Dataset` with 10 classes (names from batches.meta).
    """
    folder, fmt = find_cifar(path, 'cifar10', format)
    return _load_cifar10_python(folder) if fmt == 'python' else _load_cifar10_binary(folder)


def load_cifar100(path, label: str = 'fine', format: str | None = None) -> Dataset:
    """Load CIFAR-100 from ``path``: ``cifar-100-python/``, ``cifar-100-binary/`` or a parent.

    ``label`` picks the labelling: 'fine' (100 classes) or 'coarse' (20
    superclasses); the other one is kept in ``Dataset.alt_labels``.
    """
    if label not in ('fine', 'coarse'):
        raise DataError(f"CIFAR-100 label must be 'fine' or 'coarse', got {label!r}")
    folder, fmt = find_cifar(path, 'cifar100', format)
    return _load_cifar100_python(folder, label) if fmt == 'python' else _load_cifar100_binary(folder, label)


# --- writing ---------------------------------------------------------------------------
class _OfficialPickler(pickle._Pickler):
    """Pure-Python protocol-2 pickler that writes what the official (Python 2) files hold.

    * ``bytes`` become Python-2 ``str`` opcodes (SHORT_BINSTRING / BINSTRING),
      so readers get ``b'data'`` with ``encoding='bytes'`` and ``'data'`` with
      ``encoding='latin1'`` (what torchvision uses), exactly as for the official files;
    * the NumPy reconstructor is named ``numpy.core.multiarray._reconstruct``,
      which NumPy 1.x and 2.x both resolve.
    """

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: bytes):
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack('<i', n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str

    def save_global(self, obj, name=None):
        if obj is _multiarray._reconstruct or obj is _multiarray.scalar:
            self.write(pickle.GLOBAL + b'numpy.core.multiarray\n' + obj.__name__.encode() + b'\n')
            self.memoize(obj)
            return
        super().save_global(obj, name)


def _dump(obj, path: Path):
    with open(path, 'wb') as f:
        _OfficialPickler(f, protocol=2).dump(obj)


def _check_writable(ds: Dataset, kind: str, label_limit: int | None = None):
    if kind not in ('cifar10', 'cifar100'):
        raise DataError(f"kind must be 'cifar10' or 'cifar100', got {kind!r}")
    if ds.image_shape != (3, 32, 32):
        raise DataError(f"the CIFAR formats hold 3x32x32 images, dataset {ds.name!r} has {ds.image_shape}")
    if len(ds.train_y) == 0 or len(ds.test_y) == 0:
        raise DataError(f"dataset {ds.name!r} needs at least one train and one test image to be saved")
    if label_limit is not None and ds.num_classes > label_limit:
        raise DataError(f"the binary format stores labels in one byte: {ds.num_classes} classes is too many")


def _cifar100_labels(ds: Dataset):
    """(train_fine, test_fine, fine_names, train_coarse, test_coarse, coarse_names)."""
    if ds.label_kind == 'fine' and 'coarse' in ds.alt_labels:
        trc, tec, coarse = ds.alt_labels['coarse']
        return ds.train_y, ds.test_y, ds.classes, trc, tec, coarse
    if ds.label_kind == 'coarse' and 'fine' in ds.alt_labels:
        trf, tef, fine = ds.alt_labels['fine']
        return trf, tef, fine, ds.train_y, ds.test_y, ds.classes
    raise DataError(f"cannot write dataset {ds.name!r} as cifar100: it needs both fine and coarse labels "
                    f"(load it with load_cifar100), or save it as kind='cifar10'")


def _atomic_folder(out_dir, folder_name: str, overwrite: bool, writer) -> Path:
    """Run ``writer(tmp_dir)`` then move tmp_dir to out_dir/folder_name (never half-written)."""
    out = Path(out_dir).expanduser()
    target = out / folder_name
    if target.exists() and not overwrite:
        raise DataError(f"{target} already exists: remove it or choose another output directory")
    tmp = out / f'.{folder_name}.{os.getpid()}.partial'
    try:
        out.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    except OSError as e:
        raise DataError(f"cannot create output directory {out}: {e.strerror or e}") from None
    try:
        writer(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except OSError as e:
        raise DataError(f"cannot write {target}: {e.strerror or e}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def save_cifar_python(ds: Dataset, out_dir, kind: str = 'cifar10', overwrite: bool = False) -> Path:
    """Write ``ds`` in the official python format under ``out_dir``; return the folder written.

    kind='cifar10': ``out_dir/cifar-10-batches-py/`` with data_batch_1..5 (the
    training set split in 5 near-equal consecutive parts, fewer if N < 5),
    test_batch and batches.meta. kind='cifar100': ``out_dir/cifar-100-python/``
    with train, test and meta (needs fine and coarse labels). Pickles are
    protocol 2 with byte-string keys, readable by the official loaders.
    An existing folder is an error unless ``overwrite``.
    """
    _check_writable(ds, kind)
    flat = lambda x: np.ascontiguousarray(x.reshape(len(x), ROW))  # noqa: E731

    if kind == 'cifar10':
        def write(tmp: Path):
            parts = np.array_split(np.arange(len(ds.train_y)), min(5, len(ds.train_y)))
            for i, idx in enumerate(parts, 1):
                _dump({b'batch_label': f'training batch {i} of {len(parts)}'.encode(),
                       b'labels': [int(v) for v in ds.train_y[idx]],
                       b'data': flat(ds.train_x[idx])}, tmp / f'data_batch_{i}')
            _dump({b'batch_label': b'testing batch 1 of 1', b'labels': [int(v) for v in ds.test_y],
                   b'data': flat(ds.test_x)}, tmp / 'test_batch')
            _dump({b'num_cases_per_batch': int(len(parts[0])),
                   b'label_names': [c.encode() for c in ds.classes], b'num_vis': ROW}, tmp / 'batches.meta')
        return _atomic_folder(out_dir, FOLDERS[('cifar10', 'python')], overwrite, write)

    trf, tef, fine, trc, tec, coarse = _cifar100_labels(ds)

    def write(tmp: Path):
        for n, x, yf, yc in (('train', ds.train_x, trf, trc), ('test', ds.test_x, tef, tec)):
            _dump({b'batch_label': f'{"training" if n == "train" else "testing"} batch 1 of 1'.encode(),
                   b'fine_labels': [int(v) for v in yf], b'coarse_labels': [int(v) for v in yc],
                   b'data': flat(x)}, tmp / n)
        _dump({b'fine_label_names': [c.encode() for c in fine],
               b'coarse_label_names': [c.encode() for c in coarse]}, tmp / 'meta')
    return _atomic_folder(out_dir, FOLDERS[('cifar100', 'python')], overwrite, write)


def save_cifar_binary(ds: Dataset, out_dir, kind: str = 'cifar10', overwrite: bool = False) -> Path:
    """Write ``ds`` in the official binary format under ``out_dir``; return the folder written.

    kind='cifar10': ``cifar-10-batches-bin/`` with data_batch_1..5.bin,
    test_batch.bin, batches.meta.txt. kind='cifar100': ``cifar-100-binary/``
    with train.bin, test.bin (records <coarse><fine><pixels>),
    fine_label_names.txt, coarse_label_names.txt.
    """
    _check_writable(ds, kind, label_limit=256)

    def records(x, *labels):
        rec = np.empty((len(x), len(labels) + ROW), dtype=np.uint8)
        for j, lab in enumerate(labels):
            rec[:, j] = lab
        rec[:, len(labels):] = x.reshape(len(x), ROW)
        return rec

    if kind == 'cifar10':
        def write(tmp: Path):
            parts = np.array_split(np.arange(len(ds.train_y)), min(5, len(ds.train_y)))
            for i, idx in enumerate(parts, 1):
                records(ds.train_x[idx], ds.train_y[idx]).tofile(tmp / f'data_batch_{i}.bin')
            records(ds.test_x, ds.test_y).tofile(tmp / 'test_batch.bin')
            (tmp / 'batches.meta.txt').write_text(''.join(c + '\n' for c in ds.classes) + '\n')
        return _atomic_folder(out_dir, FOLDERS[('cifar10', 'binary')], overwrite, write)

    trf, tef, fine, trc, tec, coarse = _cifar100_labels(ds)

    def write(tmp: Path):
        records(ds.train_x, trc, trf).tofile(tmp / 'train.bin')
        records(ds.test_x, tec, tef).tofile(tmp / 'test.bin')
        (tmp / 'fine_label_names.txt').write_text(''.join(c + '\n' for c in fine))
        (tmp / 'coarse_label_names.txt').write_text(''.join(c + '\n' for c in coarse))
    return _atomic_folder(out_dir, FOLDERS[('cifar100', 'binary')], overwrite, write)
