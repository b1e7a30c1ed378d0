"""Tests for data_scripts/download_cifar.py and make_subset.py and the functions behind them.

No test touches the network: the offline path points at a closed local port,
the "download" path at a file:// URL, and fake archives are built in tmp dirs
with the checksum override (MINICNN_CIFAR_MD5 / the md5= parameter).
"""
from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from minicnn.data import DataError, load_cifar10, load_cifar100, save_cifar_python, synthetic
from minicnn.data.prepare import ARCHIVES, ENV_MD5, ENV_URL, fetch_cifar, make_subset, safe_extract, verify_md5

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / 'data_scripts'
SHARED = (ROOT / '..' / 'shared' / 'data').resolve()
needs_shared = pytest.mark.skipif(not (SHARED / 'cifar-10-batches-py').is_dir(), reason='no ../shared/data slice')


def run(script, *args, env=None):
    e = dict(os.environ)
    e.pop(ENV_MD5, None)
    e.pop(ENV_URL, None)
    # the scripts must import the minicnn of THIS checkout (not another one installed in the venv)
    e['PYTHONPATH'] = os.pathsep.join([str(ROOT), *filter(None, [e.get('PYTHONPATH')])])
    e.update(env or {})
    return subprocess.run([sys.executable, str(SCRIPTS / script), *map(str, args)], capture_output=True, text=True,
                          env=e, timeout=120)


def assert_one_line_error(r, code=1):
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert 'Traceback' not in r.stderr and 'error' in lines[0]
    return lines[0]


@pytest.fixture(scope='module')
def fake(tmp_path_factory):
    """A fake cifar-10-python.tar.gz (synthetic images in the official layout) and its md5."""
    d = tmp_path_factory.mktemp('fake')
    ds = synthetic(50, 20, seed=9)
    save_cifar_python(ds, d / 'src')
    archive = d / 'mirror' / 'cifar-10-python.tar.gz'
    archive.parent.mkdir()
    with tarfile.open(archive, 'w:gz') as tar:
        tar.add(d / 'src' / 'cifar-10-batches-py', arcname='cifar-10-batches-py')
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    return ds, archive, md5


def test_official_md5_table():
    # the published sums (cs.toronto.edu/~kriz/cifar.html; also torchvision's tgz_md5)
    assert {k: a.md5 for k, a in ARCHIVES.items()} == {
        ('cifar10', 'python'): 'c58f30108f718f92721af3b95e74349a',
        ('cifar10', 'binary'): 'c32a1d4ab5d03f1284b67883e8d87530',
        ('cifar100', 'python'): 'eb9058c3a382ffc7106e4002c42a8d85',
        ('cifar100', 'binary'): '03b5dce01913d631647c71ecec9e9cb8',
    }


def test_offline_download_is_a_one_line_error(tmp_path):
    out = tmp_path / 'out'
    r = run('download_cifar.py', '--dataset', 'cifar10', '--out', out, '--timeout', 5,
            env={ENV_URL: 'http://127.0.0.1:9/'})                  # closed port: connection refused
    line = assert_one_line_error(r)
    assert 'cannot reach http://127.0.0.1:9/cifar-10-python.tar.gz' in line
    assert 'are you offline? use --from-dir' in line
    assert not (out / 'cifar-10-python.tar.gz').exists() and not (out / 'cifar-10-python.tar.gz.part').exists()
    assert not (out / 'cifar-10-batches-py').exists()


def test_from_dir_with_fake_archive_and_md5_override(tmp_path, fake):
    ds, archive, md5 = fake
    out = tmp_path / 'out'
    # without the override the fake archive fails the official checksum, and nothing is unpacked
    r = run('download_cifar.py', '--dataset', 'cifar10', '--out', out, '--from-dir', archive)
    line = assert_one_line_error(r)
    assert 'checksum mismatch' in line and 'c58f30108f718f92721af3b95e74349a' in line and md5 in line
    assert not (out / 'cifar-10-batches-py').exists()
    # with it, the archive file (or its directory) is verified and unpacked
    r = run('download_cifar.py', '--dataset', 'cifar10', '--out', out, '--from-dir', archive.parent,
            env={ENV_MD5: md5})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == str(out / 'cifar-10-batches-py')
    back = load_cifar10(out)
    np.testing.assert_array_equal(back.train_x, ds.train_x)
    np.testing.assert_array_equal(back.test_y, ds.test_y)
    # a second run keeps the good copy untouched
    stamp = (out / 'cifar-10-batches-py' / 'test_batch').stat().st_mtime_ns
    r = run('download_cifar.py', '--dataset', 'cifar10', '--out', out, '--from-dir', archive, env={ENV_MD5: md5})
    assert r.returncode == 0 and 'already present' in r.stdout
    assert (out / 'cifar-10-batches-py' / 'test_batch').stat().st_mtime_ns == stamp


def test_download_path_via_file_url(tmp_path, fake):
    ds, archive, md5 = fake
    logs = []
    folder = fetch_cifar('cifar10', tmp_path, base_url=archive.parent.as_uri() + '/', md5=md5, log=logs.append)
    assert folder == tmp_path / 'cifar-10-batches-py'
    assert (tmp_path / 'cifar-10-python.tar.gz').is_file()          # archive kept next to the data
    assert any('downloading file://' in m for m in logs) and any('verified md5' in m for m in logs)
    np.testing.assert_array_equal(load_cifar10(folder).train_x, ds.train_x)


def test_broken_existing_copy_is_not_clobbered(tmp_path, fake):
    _, archive, md5 = fake
    broken = tmp_path / 'cifar-10-batches-py'
    broken.mkdir()
    (broken / 'data_batch_1').write_bytes(b'garbage')
    r = run('download_cifar.py', '--dataset', 'cifar10', '--out', tmp_path, '--from-dir', archive,
            env={ENV_MD5: md5})
    line = assert_one_line_error(r)
    assert 'exists but is not a usable copy' in line and 'remove it' in line
    assert (broken / 'data_batch_1').read_bytes() == b'garbage'


@needs_shared
def test_from_dir_unpacked_copy(tmp_path):
    r = run('download_cifar.py', '--dataset', 'cifar100', '--out', tmp_path, '--from-dir', SHARED)
    assert r.returncode == 0, r.stderr
    assert load_cifar100(tmp_path).train_x.shape == (486, 3, 32, 32)
    assert os.access(tmp_path / 'cifar-100-python', os.W_OK)        # not the read-only source's mode
    r = run('download_cifar.py', '--dataset', 'cifar100', '--out', tmp_path / 'x', '--from-dir',
            SHARED / 'cifar-10-batches-py')
    assert 'holds neither cifar-100-python.tar.gz nor an unpacked cifar-100-python/' in assert_one_line_error(r)


def _tar_with(path, name, *, kind='file', linkname=''):
    with tarfile.open(path, 'w:gz') as tar:
        info = tarfile.TarInfo(name)
        if kind == 'file':
            info.size = 5
            tar.addfile(info, io.BytesIO(b'pwned'))
        else:
            info.type = tarfile.SYMTYPE if kind == 'symlink' else tarfile.LNKTYPE
            info.linkname = linkname
            tar.addfile(info)


@pytest.mark.parametrize('name, kind, linkname', [
    ('../escaped', 'file', ''),
    ('cifar-10-batches-py/../../escaped', 'file', ''),
    ('/tmp/minicnn-absolute-escape', 'file', ''),
    ('cifar-10-batches-py/link', 'symlink', '../../escaped'),
    ('cifar-10-batches-py/hard', 'hardlink', '/etc/passwd'),
])
def test_unsafe_archive_members_are_refused(tmp_path, name, kind, linkname):
    arc = tmp_path / 'evil.tar.gz'
    _tar_with(arc, name, kind=kind, linkname=linkname)
    dest = tmp_path / 'a' / 'b'
    dest.mkdir(parents=True)
    with pytest.raises(DataError, match='refusing to unpack'):
        safe_extract(arc, dest)
    assert not (tmp_path / 'escaped').exists() and not (tmp_path / 'a' / 'escaped').exists()
    assert not Path('/tmp/minicnn-absolute-escape').exists()
    assert list(dest.iterdir()) == []


def test_unsafe_archive_via_script(tmp_path):
    arc = tmp_path / 'cifar-10-python.tar.gz'
    _tar_with(arc, '../escaped')
    md5 = hashlib.md5(arc.read_bytes()).hexdigest()
    r = run('download_cifar.py', '--dataset', 'cifar10', '--out', tmp_path / 'out', '--from-dir', arc,
            env={ENV_MD5: md5})
    assert "member '../escaped' has an unsafe path" in assert_one_line_error(r)
    assert not (tmp_path / 'escaped').exists()


def test_verify_md5_and_corrupt_archive(tmp_path):
    f = tmp_path / 'x.tar.gz'
    f.write_bytes(b'not a tar')
    verify_md5(f, hashlib.md5(b'not a tar').hexdigest())
    with pytest.raises(DataError, match='checksum mismatch'):
        verify_md5(f, '0' * 32)
    with pytest.raises(DataError, match='cannot unpack'):
        safe_extract(f, tmp_path)


def test_script_usage_errors_are_one_line(tmp_path):
    assert 'invalid choice' in assert_one_line_error(run('download_cifar.py', '--dataset', 'cifar9', '--out', tmp_path), 2)
    assert 'required' in assert_one_line_error(run('download_cifar.py', '--dataset', 'cifar10'), 2)
    assert 'does not exist' in assert_one_line_error(
        run('download_cifar.py', '--dataset', 'cifar10', '--out', tmp_path, '--from-dir', tmp_path / 'missing'))
    assert 'invalid int value' in assert_one_line_error(
        run('make_subset.py', '--dataset', 'cifar10', '--train', 'many', '--test', 1, '--out', tmp_path), 2)
    line = assert_one_line_error(run('make_subset.py', '--dataset', 'cifar10', '--data-dir', tmp_path / 'nope',
                                     '--train', 10, '--test', 10, '--out', tmp_path / 'o'))
    assert str(tmp_path / 'nope') in line and 'does not exist' in line


@needs_shared
def test_make_subset_script(tmp_path):
    args = ('--dataset', 'cifar10', '--data-dir', SHARED, '--train', 1000, '--test', 200, '--seed', 4,
            '--out', tmp_path)
    r = run('make_subset.py', *args)
    assert r.returncode == 0, r.stderr
    ds = load_cifar10(tmp_path)
    assert np.bincount(ds.train_y).tolist() == [100] * 10 and np.bincount(ds.test_y).tolist() == [20] * 10
    # same as the library call with the same seed
    same = make_subset('cifar10', SHARED, 1000, 200, 4, tmp_path / 'again')
    np.testing.assert_array_equal(load_cifar10(same).train_x, ds.train_x)
    r = run('make_subset.py', *args)
    assert 'already exists' in assert_one_line_error(r)
    r = run('make_subset.py', '--dataset', 'cifar10', '--data-dir', SHARED, '--train', 4150, '--test', 10,
            '--out', tmp_path / 'big')
    assert 'has only' in assert_one_line_error(r)


def test_make_subset_synthetic_binary(tmp_path):
    folder = make_subset('synthetic', None, 30, 10, 0, tmp_path, format='binary')
    assert folder.name == 'cifar-10-batches-bin'
    ds = load_cifar10(tmp_path)
    assert len(ds.train_y) == 30 and np.bincount(ds.train_y).tolist() == [3] * 10
