"""Tests for minicnn.data: loaders, restricted unpickling, formats, statistics, subsets,
the synthetic dataset, augmentation and batch iteration.

Tests that need the real CIFAR slice read it from ../shared/data (relative to the
repo root) and are skipped if it is absent. The slice is read with plain
``pickle`` here only as an independent reference (it is trusted data).
"""
from __future__ import annotations

import os
import pickle
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from minicnn.data import (CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, CIFAR100_COARSE_CLASSES, BatchIterator,
                          DataError, Dataset, channel_stats, crop_with_offsets, flip_with_mask, load_cifar10,
                          load_cifar100, load_dataset, normalize, random_crop, random_flip, safe_load,
                          safe_loads, save_cifar_binary, save_cifar_python, subset, synthetic)
from minicnn.data.cifar import _OfficialPickler

ROOT = Path(__file__).resolve().parents[1]
SHARED = (ROOT / '..' / 'shared' / 'data').resolve()
C10 = SHARED / 'cifar-10-batches-py'
C100 = SHARED / 'cifar-100-python'
needs_c10 = pytest.mark.skipif(not C10.is_dir(), reason='CIFAR-10 slice not present in ../shared/data')
needs_c100 = pytest.mark.skipif(not C100.is_dir(), reason='CIFAR-100 slice not present in ../shared/data')


def raw_pickle(path):
    """Trusted reference read of a shared-slice file (plain pickle, NOT what the loader does)."""
    with open(path, 'rb') as f:
        return pickle.load(f, encoding='bytes')


@pytest.fixture(scope='module')
def c10():
    return load_cifar10(SHARED)


@pytest.fixture(scope='module')
def c100():
    return load_cifar100(SHARED)


def tiny(n_train=40, n_test=20, k=4, seed=0, name='tiny'):
    """A small random dataset with balanced labels."""
    rng = np.random.default_rng(seed)
    return Dataset(name, rng.integers(0, 256, (n_train, 3, 32, 32), dtype=np.uint8), np.arange(n_train) % k,
                   rng.integers(0, 256, (n_test, 3, 32, 32), dtype=np.uint8), np.arange(n_test) % k,
                   [f'c{i}' for i in range(k)])


# ---------------------------------------------------------------------------- loaders
@needs_c10
def test_cifar10_slice_shapes_and_labels(c10):
    assert c10.name == 'cifar10'
    assert c10.train_x.shape == (4153, 3, 32, 32) and c10.train_x.dtype == np.uint8
    assert c10.test_x.shape == (1017, 3, 32, 32) and c10.test_x.dtype == np.uint8
    assert c10.train_y.shape == (4153,) and c10.train_y.dtype == np.int64
    assert c10.test_y.dtype == np.int64
    assert c10.classes == CIFAR10_CLASSES and c10.num_classes == 10
    for y in (c10.train_y, c10.test_y):
        assert y.min() >= 0 and y.max() <= 9
    assert set(np.unique(c10.train_y)) == set(range(10))


@needs_c10
def test_cifar10_pixels_and_labels_equal_raw_pickle_rows(c10):
    b1 = raw_pickle(C10 / 'data_batch_1')
    b4 = raw_pickle(C10 / 'data_batch_4')
    tb = raw_pickle(C10 / 'test_batch')
    np.testing.assert_array_equal(c10.train_x[0], b1[b'data'][0].reshape(3, 32, 32))
    np.testing.assert_array_equal(c10.train_x[-1], b4[b'data'][-1].reshape(3, 32, 32))
    np.testing.assert_array_equal(c10.test_x[5], tb[b'data'][5].reshape(3, 32, 32))
    # channel planes: the first 1024 bytes of a row are the red plane
    np.testing.assert_array_equal(c10.train_x[0, 0].ravel(), b1[b'data'][0][:1024])
    np.testing.assert_array_equal(c10.train_y[:len(b1[b'labels'])], b1[b'labels'])
    np.testing.assert_array_equal(c10.test_y, tb[b'labels'])


@needs_c10
def test_cifar10_accepts_folder_parent_and_load_dataset(c10):
    ds = load_cifar10(C10)
    np.testing.assert_array_equal(ds.train_x, c10.train_x)
    ds2 = load_dataset('cifar10', SHARED)
    np.testing.assert_array_equal(ds2.test_y, c10.test_y)
    assert load_dataset('CIFAR-10', str(SHARED)).train_x.shape == c10.train_x.shape


@needs_c100
def test_cifar100_slice_fine_and_coarse(c100):
    assert c100.train_x.shape == (486, 3, 32, 32) and c100.test_x.shape == (916, 3, 32, 32)
    assert c100.num_classes == 100 and c100.label_kind == 'fine'
    raw = raw_pickle(C100 / 'train')
    np.testing.assert_array_equal(c100.train_x[0], raw[b'data'][0].reshape(3, 32, 32))
    np.testing.assert_array_equal(c100.train_y, raw[b'fine_labels'])
    np.testing.assert_array_equal(c100.alt_labels['coarse'][0], raw[b'coarse_labels'])
    coarse = load_cifar100(C100, label='coarse')
    assert coarse.num_classes == 20 and coarse.classes == CIFAR100_COARSE_CLASSES
    np.testing.assert_array_equal(coarse.train_y, raw[b'coarse_labels'])
    assert coarse.test_y.max() < 20 and c100.test_y.max() < 100
    with pytest.raises(DataError, match="'fine' or 'coarse'"):
        load_cifar100(C100, label='medium')


@needs_c10
def test_wrong_cifar_kind_is_named():
    with pytest.raises(DataError, match='CIFAR-10 data, not CIFAR-100'):
        load_cifar100(C10)


def test_missing_directory_and_name_errors(tmp_path):
    missing = tmp_path / 'nope'
    with pytest.raises(DataError, match=f'{missing}.*does not exist'):
        load_cifar10(missing)
    with pytest.raises(DataError, match='no cifar10 data found'):
        load_cifar10(tmp_path)                        # exists but empty
    (tmp_path / 'file').write_text('x')
    with pytest.raises(DataError, match='not a directory'):
        load_cifar10(tmp_path / 'file')
    with pytest.raises(DataError, match='needs a data directory'):
        load_dataset('cifar10')
    with pytest.raises(DataError, match="unknown dataset 'mnist'"):
        load_dataset('mnist', tmp_path)
    assert load_dataset('synthetic', data_dir='/ignored', n_train=20, n_test=10).train_x.shape == (20, 3, 32, 32)
    with pytest.raises(DataError, match='synthetic'):
        load_dataset('synthetic', n_train=20, bogus=1)


@needs_c10
def test_missing_batches_are_tolerated_but_test_and_one_train_batch_required(tmp_path):
    d = tmp_path / 'cifar-10-batches-py'
    d.mkdir()
    shutil.copy(C10 / 'data_batch_3', d)
    shutil.copy(C10 / 'test_batch', d)            # no batches.meta either: default class names
    ds = load_cifar10(tmp_path)
    assert ds.train_x.shape == (1017, 3, 32, 32) and ds.classes == CIFAR10_CLASSES
    np.testing.assert_array_equal(ds.train_x[0], raw_pickle(C10 / 'data_batch_3')[b'data'][0].reshape(3, 32, 32))
    (d / 'test_batch').unlink()
    with pytest.raises(DataError, match='test_batch'):
        load_cifar10(d)
    shutil.copy(C10 / 'test_batch', d)
    (d / 'data_batch_3').unlink()
    with pytest.raises(DataError, match='no training batch'):
        load_cifar10(d)


def _dump(obj, path, protocol=2):
    with open(path, 'wb') as f:
        pickle.dump(obj, f, protocol=protocol)


@pytest.mark.parametrize('content, match', [
    (b'this is not a pickle', 'not a valid CIFAR pickle'),
    (b'\x80\x02}q\x00(', 'not a valid CIFAR pickle'),                   # truncated
    ([1, 2, 3], 'expected a pickled dict'),
    ({b'labels': [0]}, "missing key 'data'"),
    ({b'data': np.zeros((2, 100), np.uint8), b'labels': [0, 1]}, r'\(K, 3072\) uint8'),
    ({b'data': np.zeros((2, 3072), np.float32), b'labels': [0, 1]}, r'\(K, 3072\) uint8'),
    ({b'data': np.zeros((2, 3072), np.uint8), b'labels': [0]}, "'labels' must be 2 integers"),
    ({b'data': np.zeros((2, 3072), np.uint8), b'labels': [0, 10]}, r'labels must lie in \[0, 10\)'),
])
def test_malformed_python_batches(tmp_path, content, match):
    d = tmp_path / 'cifar-10-batches-py'
    d.mkdir()
    _dump({b'data': np.zeros((3, 3072), np.uint8), b'labels': [0, 1, 2]}, d / 'test_batch')
    if isinstance(content, bytes):
        (d / 'data_batch_1').write_bytes(content)
    else:
        _dump(content, d / 'data_batch_1')
    with pytest.raises(DataError, match=match) as e:
        load_cifar10(tmp_path)
    assert 'data_batch_1' in str(e.value) and '\n' not in str(e.value)


def test_malformed_binary_file(tmp_path):
    d = tmp_path / 'cifar-10-batches-bin'
    d.mkdir()
    (d / 'data_batch_1.bin').write_bytes(bytes(3073 * 2 + 5))         # not whole records
    (d / 'test_batch.bin').write_bytes(bytes(3073))
    with pytest.raises(DataError, match=r'data_batch_1\.bin.*multiple of the 3073-byte record'):
        load_cifar10(tmp_path)
    (d / 'data_batch_1.bin').write_bytes(bytes([12]) + bytes(3072))   # label 12 > 9
    with pytest.raises(DataError, match=r'labels must lie in \[0, 10\)'):
        load_cifar10(d)


def test_dataset_validates_its_arrays():
    x = np.zeros((4, 3, 32, 32), np.uint8)
    with pytest.raises(DataError, match='uint8'):
        Dataset('d', x.astype(np.float32), np.zeros(4, int), x, np.zeros(4, int), ['a'])
    with pytest.raises(DataError, match='labels must have shape'):
        Dataset('d', x, np.zeros(3, int), x, np.zeros(4, int), ['a'])
    with pytest.raises(DataError, match=r'in \[0, 2\)'):
        Dataset('d', x, np.array([0, 1, 2, 0]), x, np.zeros(4, int), ['a', 'b'])
    ds = Dataset('d', x, np.zeros(4, np.int32), x, np.zeros(4, np.uint8), ['a'])
    assert ds.train_y.dtype == np.int64 and ds.test_y.dtype == np.int64
    assert 'd: 4 train / 4 test' in repr(ds)


# ------------------------------------------------------------------ restricted unpickling
class _Reduce:
    """Pickles as ``func(*args)``: what a hostile file would contain."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _hostile_payloads(marker: Path):
    import builtins
    import subprocess
    return {
        'os.system': _Reduce(os.system, f'touch {marker}'),
        'builtins.open': _Reduce(builtins.open, str(marker), 'w'),
        'builtins.eval': _Reduce(builtins.eval, f"open({str(marker)!r}, 'w')"),
        'builtins.exec': _Reduce(builtins.exec, f"open({str(marker)!r}, 'w')"),
        'subprocess.call': _Reduce(subprocess.call, ['touch', str(marker)]),
        'numpy.save': _Reduce(np.save, str(marker), np.zeros(1)),       # numpy, but not an allowed name
    }


@pytest.mark.parametrize('which', ['os.system', 'builtins.open', 'builtins.eval', 'builtins.exec',
                                   'subprocess.call', 'numpy.save'])
def test_hostile_pickle_is_refused_without_side_effect(tmp_path, which):
    marker = tmp_path / 'pwned'
    payload = _hostile_payloads(marker)[which]
    d = tmp_path / 'cifar-10-batches-py'
    d.mkdir()
    _dump({b'data': np.zeros((3, 3072), np.uint8), b'labels': [0, 1, 2]}, d / 'test_batch')
    # hidden inside an otherwise well-formed batch, in the labels list
    _dump({b'data': np.zeros((2, 3072), np.uint8), b'labels': [0, payload]}, d / 'data_batch_1')
    with pytest.raises(DataError, match=r"refusing to unpickle .*data_batch_1: global '.*' is not allowed") as e:
        load_cifar10(tmp_path)
    assert not marker.exists(), 'the hostile pickle was executed'
    assert '\n' not in str(e.value)
    # and through the low-level API, at any protocol
    for proto in (0, 2, 4, 5):
        with pytest.raises(DataError, match='not allowed'):
            safe_loads(pickle.dumps(payload, protocol=proto))
    assert not marker.exists()


def test_refusal_message_names_the_global(tmp_path):
    path = tmp_path / 'evil'
    _dump(_Reduce(os.system, 'true'), path)
    with pytest.raises(DataError) as e:
        safe_load(path)
    msg = str(e.value)
    assert f'refusing to unpickle {path}' in msg
    assert f"global '{os.system.__module__}.system' is not allowed" in msg   # 'posix.system' on Linux


def test_codecs_encode_is_latin1_only():
    import codecs
    bad = pickle.dumps(_Reduce(codecs.encode, 'abc', 'rot13'), protocol=2)
    with pytest.raises(DataError):
        safe_loads(bad)
    good = pickle.dumps(_Reduce(codecs.encode, 'abc\xff', 'latin1'), protocol=2)
    assert safe_loads(good) == b'abc\xff'


@pytest.mark.parametrize('protocol', [0, 2, 3, 4, 5])
def test_numpy_arrays_load_at_every_protocol(protocol):
    a = np.arange(3072 * 2, dtype=np.uint32).astype(np.uint8).reshape(2, 3072)
    out = safe_loads(pickle.dumps({b'data': a, b'n': np.int64(7)}, protocol=protocol))
    np.testing.assert_array_equal(out[b'data'], a)
    assert out[b'n'] == 7


def test_both_numpy_module_spellings_load(tmp_path):
    import io
    import pickletools
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    new = pickle.dumps(a, protocol=2)                   # NumPy 2 names numpy._core.multiarray
    buf = io.BytesIO()
    _OfficialPickler(buf, protocol=2).dump(a)            # official files name numpy.core.multiarray
    old = buf.getvalue()
    globals_in = lambda raw: {arg for op, arg, _ in pickletools.genops(raw) if op.name == 'GLOBAL'}  # noqa: E731
    assert 'numpy._core.multiarray _reconstruct' in globals_in(new)
    assert 'numpy.core.multiarray _reconstruct' in globals_in(old)
    np.testing.assert_array_equal(safe_loads(new), a)
    np.testing.assert_array_equal(safe_loads(old), a)
    np.testing.assert_array_equal(pickle.loads(old), a)   # and the stock unpickler agrees


# ------------------------------------------------------------------------- writing formats
def _write_binary_by_hand(ds, root):
    """Independent writer of the official binary layout (for testing the reader)."""
    d = root / 'cifar-10-batches-bin'
    d.mkdir()
    rec = lambda x, y: np.concatenate([y.astype(np.uint8)[:, None], x.reshape(len(x), -1)], axis=1)  # noqa: E731
    half = len(ds.train_y) // 2
    rec(ds.train_x[:half], ds.train_y[:half]).tofile(d / 'data_batch_1.bin')
    rec(ds.train_x[half:], ds.train_y[half:]).tofile(d / 'data_batch_2.bin')
    rec(ds.test_x, ds.test_y).tofile(d / 'test_batch.bin')
    (d / 'batches.meta.txt').write_text('\n'.join(ds.classes) + '\n\n')
    return d


@needs_c10
def test_binary_format_reader_on_hand_written_slice(c10, tmp_path):
    small = subset(c10, 300, 100, seed=1)
    d = _write_binary_by_hand(small, tmp_path)
    ds = load_cifar10(tmp_path)                          # parent dir, format auto-detected
    assert ds.source.endswith('(binary format)')
    np.testing.assert_array_equal(ds.train_x, small.train_x)
    np.testing.assert_array_equal(ds.train_y, small.train_y)
    np.testing.assert_array_equal(ds.test_x, small.test_x)
    assert ds.classes == CIFAR10_CLASSES
    assert load_cifar10(d, format='binary').train_x.shape == (300, 3, 32, 32)


@needs_c10
def test_binary_round_trip_cifar10(c10, tmp_path):
    folder = save_cifar_binary(c10, tmp_path)
    assert folder == tmp_path / 'cifar-10-batches-bin'
    assert sorted(p.name for p in folder.iterdir()) == ['batches.meta.txt'] + [
        f'data_batch_{i}.bin' for i in range(1, 6)] + ['test_batch.bin']
    assert (folder / 'test_batch.bin').stat().st_size == 1017 * 3073
    ds = load_cifar10(folder)
    for a, b in ((ds.train_x, c10.train_x), (ds.train_y, c10.train_y), (ds.test_x, c10.test_x),
                 (ds.test_y, c10.test_y)):
        np.testing.assert_array_equal(a, b)
    assert ds.classes == c10.classes


@needs_c100
def test_binary_round_trip_cifar100_keeps_fine_and_coarse(c100, tmp_path):
    folder = save_cifar_binary(c100, tmp_path, kind='cifar100')
    raw = np.fromfile(folder / 'train.bin', np.uint8).reshape(-1, 3074)
    np.testing.assert_array_equal(raw[:, 0], c100.alt_labels['coarse'][0])   # <coarse><fine><pixels>
    np.testing.assert_array_equal(raw[:, 1], c100.train_y)
    for label in ('fine', 'coarse'):
        ds = load_cifar100(tmp_path, label=label)
        ref = load_cifar100(C100, label=label)
        np.testing.assert_array_equal(ds.train_x, ref.train_x)
        np.testing.assert_array_equal(ds.train_y, ref.train_y)
        np.testing.assert_array_equal(ds.test_y, ref.test_y)
        assert ds.classes == ref.classes


@needs_c10
def test_python_format_round_trip_and_official_reader_semantics(c10, tmp_path):
    small = subset(c10, 503, 97, seed=3)
    folder = save_cifar_python(small, tmp_path)
    assert folder == tmp_path / 'cifar-10-batches-py'
    names = sorted(p.name for p in folder.iterdir())
    assert names == ['batches.meta'] + [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']
    ds = load_cifar10(tmp_path)
    np.testing.assert_array_equal(ds.train_x, small.train_x)
    np.testing.assert_array_equal(ds.train_y, small.train_y)
    np.testing.assert_array_equal(ds.test_x, small.test_x)
    # what the official readers do: encoding='bytes' (byte keys) and encoding='latin1' (str keys, torchvision)
    b = raw_pickle(folder / 'data_batch_1')
    assert isinstance(b[b'data'], np.ndarray) and b[b'data'].dtype == np.uint8 and b[b'data'].shape[1] == 3072
    assert isinstance(b[b'labels'], list)
    with open(folder / 'data_batch_1', 'rb') as f:
        tv = pickle.load(f, encoding='latin1')
    np.testing.assert_array_equal(tv['data'], b[b'data'])
    with open(folder / 'batches.meta', 'rb') as f:
        assert pickle.load(f, encoding='latin1')['label_names'] == CIFAR10_CLASSES
    sizes = [len(raw_pickle(folder / f'data_batch_{i}')[b'labels']) for i in range(1, 6)]
    assert sum(sizes) == 503 and max(sizes) - min(sizes) <= 1
    # never clobbers, unless asked
    with pytest.raises(DataError, match='already exists'):
        save_cifar_python(small, tmp_path)
    save_cifar_python(subset(c10, 50, 10), tmp_path, overwrite=True)
    assert len(load_cifar10(tmp_path).train_y) == 50


@needs_c100
def test_python_format_round_trip_cifar100(c100, tmp_path):
    folder = save_cifar_python(c100, tmp_path, kind='cifar100')
    assert sorted(p.name for p in folder.iterdir()) == ['meta', 'test', 'train']
    raw = raw_pickle(folder / 'train')
    np.testing.assert_array_equal(raw[b'fine_labels'], c100.train_y)
    np.testing.assert_array_equal(raw[b'coarse_labels'], c100.alt_labels['coarse'][0])
    ds = load_cifar100(tmp_path, label='coarse')
    np.testing.assert_array_equal(ds.test_x, c100.test_x)
    np.testing.assert_array_equal(ds.test_y, c100.alt_labels['coarse'][1])


def test_cifar100_format_needs_both_labelings(tmp_path):
    with pytest.raises(DataError, match='fine and coarse'):
        save_cifar_python(tiny(), tmp_path, kind='cifar100')


def test_synthetic_saved_as_cifar10_reloads(tmp_path):
    ds = synthetic(30, 10, seed=5)
    save_cifar_python(ds, tmp_path)
    back = load_cifar10(tmp_path)
    np.testing.assert_array_equal(back.train_x, ds.train_x)
    assert back.classes == ds.classes


# ------------------------------------------------------------------------- statistics
def test_channel_stats_exact_against_float64():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (37, 3, 8, 8), dtype=np.uint8)
    x[:, 1] //= 3
    mean, std = channel_stats(x, chunk=5)
    f = x.astype(np.float64) / 255
    np.testing.assert_allclose(mean, f.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, f.std(axis=(0, 2, 3)), rtol=1e-12)
    with pytest.raises(DataError):
        channel_stats(x.astype(np.float32))


@needs_c10
def test_channel_stats_of_slice_near_published_constants(c10):
    mean, std = channel_stats(c10.train_x)
    np.testing.assert_allclose(mean, CIFAR10_MEAN, atol=0.01)   # a 4k-image slice of the 50k set
    np.testing.assert_allclose(std, CIFAR10_STD, atol=0.01)


# ---------------------------------------------------------------------------- subsets
def test_subset_is_balanced_seeded_and_order_preserving():
    n, k = 200, 5
    x = np.zeros((n, 3, 32, 32), np.uint8)
    x[:, 0, 0, 0] = np.arange(n)                  # image id in a pixel
    y = np.random.default_rng(1).integers(0, k, n)
    ds = Dataset('ids', x, y, x[:50], y[:50], list('abcde'))
    s1 = subset(ds, 52, 10, seed=7)
    ids = s1.train_x[:, 0, 0, 0].astype(int)
    assert np.all(np.diff(ids) > 0)               # original relative order kept
    np.testing.assert_array_equal(s1.train_y, y[ids])
    counts = np.bincount(s1.train_y, minlength=k)
    assert counts.tolist() == [11, 11, 10, 10, 10]
    assert np.bincount(s1.test_y, minlength=k).tolist() == [2] * 5
    s2 = subset(ds, 52, 10, seed=7)
    np.testing.assert_array_equal(s1.train_x, s2.train_x)
    s3 = subset(ds, 52, 10, seed=8)
    assert not np.array_equal(s1.train_x, s3.train_x)
    with pytest.raises(DataError, match='class .* has only'):
        subset(ds, 190, 10)
    whole = subset(ds, None, 50)                  # None or the split size: everything, unbalanced or not
    np.testing.assert_array_equal(whole.train_x, ds.train_x)
    np.testing.assert_array_equal(whole.test_y, ds.test_y)


@needs_c100
def test_cifar100_subset_keeps_coarse_labels_aligned(c100):
    s = subset(c100, None, 200, seed=0)
    assert len(s.train_y) == len(c100.train_y)
    assert np.bincount(s.test_y, minlength=100).tolist() == [2] * 100
    fine_to_coarse = dict(zip(c100.test_y.tolist(), c100.alt_labels['coarse'][1].tolist()))
    assert [fine_to_coarse[f] for f in s.test_y.tolist()] == s.alt_labels['coarse'][1].tolist()


# -------------------------------------------------------------------------- synthetic
def test_synthetic_deterministic_balanced_and_fast():
    t = time.process_time()
    a = synthetic(2000, 500, seed=3)
    assert time.process_time() - t < 1.0
    b = synthetic(2000, 500, seed=3)
    c = synthetic(2000, 500, seed=4)
    assert a.train_x.shape == (2000, 3, 32, 32) and a.train_x.dtype == np.uint8
    np.testing.assert_array_equal(a.train_x, b.train_x)
    np.testing.assert_array_equal(a.test_y, b.test_y)
    assert not np.array_equal(a.train_x, c.train_x)
    assert np.bincount(a.train_y).tolist() == [200] * 10 and np.bincount(a.test_y).tolist() == [50] * 10
    assert a.classes[0] == 'stripes-0deg' and len(set(a.classes)) == 10
    odd = synthetic(23, 7, num_classes=4)
    assert odd.num_classes == 4 and np.ptp(np.bincount(odd.train_y)) <= 1
    for bad in (dict(num_classes=11), dict(num_classes=1), dict(n_train=0), dict(noise=-0.1)):
        with pytest.raises(DataError):
            synthetic(**bad)


def _nearest_centroid_accuracy(ftr, ytr, fte, yte, k):
    cent = np.stack([ftr[ytr == c].mean(0) for c in range(k)])
    pred = ((fte[:, None] - cent[None]) ** 2).sum(-1).argmin(1)
    return (pred == yte).mean()


def test_synthetic_needs_spatial_structure_not_colour():
    ds = synthetic(2000, 1000, seed=0)
    colour = lambda x: x.reshape(len(x), 3, -1).mean(-1)            # noqa: E731
    acc_colour = _nearest_centroid_accuracy(colour(ds.train_x), ds.train_y, colour(ds.test_x), ds.test_y, 10)
    assert acc_colour < 0.2                                         # chance is 0.1

    def spectrum(x):  # shift-invariant structure: log power spectrum of the contrast-normalised grey image
        g = x.astype(np.float32).mean(1)
        g = (g - g.mean((1, 2), keepdims=True)) / (g.std((1, 2), keepdims=True) + 1e-6)
        return np.log1p(np.abs(np.fft.rfft2(g))).reshape(len(x), -1)
    acc_struct = _nearest_centroid_accuracy(spectrum(ds.train_x), ds.train_y, spectrum(ds.test_x), ds.test_y, 10)
    assert acc_struct > 0.5                                         # measured 0.70


# ------------------------------------------------------------------- augmentation
def _naive_crop(img, t, l, p=4):
    return np.pad(img, ((0, 0), (p, p), (p, p)))[:, t:t + img.shape[1], l:l + img.shape[2]]


def test_crop_with_offsets_equals_padded_shift():
    rng = np.random.default_rng(0)
    x = rng.integers(1, 256, (16, 3, 32, 32), dtype=np.uint8)
    top, left = rng.integers(0, 9, 16), rng.integers(0, 9, 16)
    out = crop_with_offsets(x, top, left)
    assert out.shape == x.shape and out.dtype == np.uint8
    for i in range(16):
        np.testing.assert_array_equal(out[i], _naive_crop(x[i], top[i], left[i]))
    # offset (0, 0): image moved 4 down and 4 right, zeros enter at the top and left
    o = crop_with_offsets(x[:1], [0], [0])[0]
    np.testing.assert_array_equal(o[:, 4:, 4:], x[0, :, :28, :28])
    assert not o[:, :4, :].any() and not o[:, :, :4].any()
    # offset (4, 4) is the identity; (8, 8) moves up-left with zeros at the bottom/right
    np.testing.assert_array_equal(crop_with_offsets(x, np.full(16, 4), np.full(16, 4)), x)
    o = crop_with_offsets(x[:1], [8], [8])[0]
    np.testing.assert_array_equal(o[:, :28, :28], x[0, :, 4:, 4:])
    assert not o[:, 28:, :].any() and not o[:, :, 28:].any()
    with pytest.raises(DataError):
        crop_with_offsets(x, np.full(16, 9), left)


def test_random_crop_draws_all_81_offsets_uniformly():
    rng = np.random.default_rng(0)
    x = rng.integers(1, 256, (1, 3, 32, 32), dtype=np.uint8).repeat(810, axis=0)
    out = random_crop(x, np.random.default_rng(1))
    shifts = {(t, l): _naive_crop(x[0], t, l) for t in range(9) for l in range(9)}
    counts = {}
    for o in out:
        match = [k for k, ref in shifts.items() if np.array_equal(o, ref)]
        assert len(match) == 1
        counts[match[0]] = counts.get(match[0], 0) + 1
    assert len(counts) == 81 and max(counts.values()) < 30       # expected 10 each
    np.testing.assert_array_equal(out, random_crop(x, np.random.default_rng(1)))


def test_flip_reverses_width_with_probability_half():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (2000, 3, 4, 5), dtype=np.uint8)
    mask = np.arange(2000) % 3 == 0
    out = flip_with_mask(x, mask)
    np.testing.assert_array_equal(out[mask], x[mask][:, :, :, ::-1])
    np.testing.assert_array_equal(out[~mask], x[~mask])
    np.testing.assert_array_equal(out[0, :, :, 0], x[0, :, :, 4])
    r = random_flip(x, np.random.default_rng(5))
    flipped = np.array([np.array_equal(r[i], x[i, :, :, ::-1]) for i in range(2000)])
    kept = np.array([np.array_equal(r[i], x[i]) for i in range(2000)])
    assert np.all(flipped | kept) and 0.45 < flipped.mean() < 0.55
    np.testing.assert_array_equal(r, random_flip(x, np.random.default_rng(5)))


def test_normalize_matches_formula():
    x = np.random.default_rng(0).integers(0, 256, (4, 3, 2, 2), dtype=np.uint8)
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    ref = (x / 255.0 - np.reshape(mean, (1, 3, 1, 1))) / np.reshape(std, (1, 3, 1, 1))
    out = normalize(x, mean, std)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(normalize(x), x / 255.0, rtol=1e-7)
    with pytest.raises(DataError):
        normalize(x, (0.1, 0.2), std)
    with pytest.raises(DataError):
        normalize(x, mean, (0.1, 0.0, 0.1))


# ----------------------------------------------------------------- batch iteration
def _ids(n=10, k=3):
    x = np.zeros((n, 3, 32, 32), np.uint8)
    x[:, 0, 0, 0] = np.arange(n)
    return x, np.arange(n) % k


def test_iterator_lengths_and_last_batch():
    x, y = _ids(10)
    it = BatchIterator(x, y, 4, shuffle=False)
    assert len(it) == 3 and it.num_samples == 10
    sizes = [len(yb) for _, yb in it]
    assert sizes == [4, 4, 2]
    it = BatchIterator(x, y, 4, drop_last=True)
    assert len(it) == 2 and [len(yb) for _, yb in it] == [4, 4] and it.num_samples == 8
    assert len(BatchIterator(x, y, 20)) == 1
    for bad in (0, -1, 2.5, True):
        with pytest.raises(DataError, match='batch_size'):
            BatchIterator(x, y, bad)
    with pytest.raises(DataError, match="unknown augmentation 'rotate'"):
        BatchIterator(x, y, 4, augment=('flip', 'rotate'))
    with pytest.raises(DataError):
        BatchIterator(x.astype(np.float32), y, 4)
    with pytest.raises(DataError):
        BatchIterator(x, y[:5], 4)


def test_iterator_dtypes_shapes_and_normalization():
    ds = synthetic(50, 10, seed=0)
    mean, std = channel_stats(ds.train_x)
    it = BatchIterator(ds.train_x, ds.train_y, 16, shuffle=False, mean=mean, std=std)
    batches = list(it)
    xb, yb = batches[0]
    assert xb.dtype == np.float32 and xb.shape == (16, 3, 32, 32) and xb.flags['C_CONTIGUOUS']
    assert yb.dtype == np.int64 and yb.shape == (16,)
    ref = (ds.train_x[:16] / 255.0 - mean[None, :, None, None]) / std[None, :, None, None]
    np.testing.assert_allclose(xb, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), ds.train_y)
    whole = np.concatenate([b[0] for b in batches])
    np.testing.assert_allclose(whole.mean(axis=(0, 2, 3)), 0, atol=1e-4)   # normalised by its own stats
    np.testing.assert_allclose(whole.std(axis=(0, 2, 3)), 1, atol=1e-3)


def _epoch(it):
    return np.concatenate([xb[:, 0, 0, 0] for xb, _ in it])


def test_iterator_determinism_and_epochs():
    x, y = _ids(100)
    a = BatchIterator(x, y, 32, seed=1)
    b = BatchIterator(x, y, 32, seed=1)
    e0 = _epoch(a)
    np.testing.assert_array_equal(e0, _epoch(b))                    # same seed, same batches
    assert sorted(np.rint(e0 * 255).astype(int)) == list(range(100))  # each image exactly once
    e1 = _epoch(a)                                                  # next pass = epoch 1
    assert not np.array_equal(e0, e1)
    b.set_epoch(1)
    np.testing.assert_array_equal(_epoch(b), e1)
    a.set_epoch(0)
    np.testing.assert_array_equal(_epoch(a), e0)
    a.set_epoch(7)
    b.set_epoch(7)
    np.testing.assert_array_equal(_epoch(a), _epoch(b))
    assert not np.array_equal(e0, _epoch(BatchIterator(x, y, 32, seed=2)))
    # labels travel with their images
    for xb, yb in BatchIterator(x, y, 32, seed=3):
        np.testing.assert_array_equal(yb, np.rint(xb[:, 0, 0, 0] * 255).astype(int) % 3)
    # evaluation order never changes
    ev = BatchIterator(x, y, 32, shuffle=False)
    np.testing.assert_array_equal(_epoch(ev), _epoch(ev))


def test_iterator_augmentation_is_seeded_and_label_preserving():
    rng = np.random.default_rng(0)
    x = rng.integers(1, 256, (40, 3, 32, 32), dtype=np.uint8)
    y = np.arange(40)
    run = lambda seed, epoch: [(xb.copy(), yb) for xb, yb in                      # noqa: E731
                               _set(BatchIterator(x, y, 16, augment=('crop', 'flip'), seed=seed), epoch)]
    r1, r2, r3 = run(0, 0), run(0, 0), run(0, 1)
    for (x1, y1), (x2, y2) in zip(r1, r2):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(r1, r3))
    # flip only: every image is its original or its mirror
    for xb, yb in BatchIterator(x, y, 16, augment=['flip'], seed=0):
        raw = np.rint(xb * 255).astype(np.uint8)
        for img, i in zip(raw, yb):
            assert np.array_equal(img, x[i]) or np.array_equal(img, x[i][:, :, ::-1])
    # crop: black padding enters in raw pixel space, so it normalises to -mean/std
    it = BatchIterator(x, y, 40, augment='crop', mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), seed=0)
    xb, _ = next(iter(it))
    assert np.isclose(xb.min(), -2.0) and (np.isclose(xb, -2.0).mean() > 0.01)


def _set(it, epoch):
    it.set_epoch(epoch)
    return it


def test_unofficially_named_folder(tmp_path):
    ds = synthetic(20, 10, seed=2)
    folder = save_cifar_python(ds, tmp_path)
    mine = folder.rename(tmp_path / 'my-copy')
    np.testing.assert_array_equal(load_cifar10(mine).train_x, ds.train_x)
    with pytest.raises(DataError, match='holds CIFAR-10 data, not CIFAR-100'):
        load_cifar100(mine)
