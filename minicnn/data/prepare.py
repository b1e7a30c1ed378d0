"""Getting CIFAR onto disk: download + verify + unpack, and class-balanced subsets.

These are the functions behind ``data_scripts/download_cifar.py`` and
``data_scripts/make_subset.py``.

Downloads come from the dataset authors' site and are checked against the
official MD5 sums published there (the same sums torchvision checks). The
archive is unpacked only after it verifies, member by member: absolute paths,
``..`` components, links and device files are refused, so a doctored archive
cannot write outside the output directory. Nothing existing is overwritten: a
good copy already in place is reported and kept; a broken one is an error
that asks to remove it.

For tests and air-gapped machines two environment variables override the
defaults (both are also function parameters):

* ``MINICNN_CIFAR_URL``: base URL to fetch archives from (e.g. ``file:///mirror/``);
* ``MINICNN_CIFAR_MD5``: the MD5 sum to expect instead of the official one.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .cifar import FOLDERS, find_cifar, load_cifar10, load_cifar100, save_cifar_binary, save_cifar_python
from .dataset import DataError, subset
from .registry import load_dataset


@dataclass(frozen=True)
class Archive:
    filename: str
    md5: str
    folder: str


#: the official archives and their MD5 sums (https://www.cs.toronto.edu/~kriz/cifar.html)
ARCHIVES = {
    ('cifar10', 'python'): Archive('cifar-10-python.tar.gz', 'c58f30108f718f92721af3b95e74349a',
                                   FOLDERS[('cifar10', 'python')]),
    ('cifar10', 'binary'): Archive('cifar-10-binary.tar.gz', 'c32a1d4ab5d03f1284b67883e8d87530',
                                   FOLDERS[('cifar10', 'binary')]),
    ('cifar100', 'python'): Archive('cifar-100-python.tar.gz', 'eb9058c3a382ffc7106e4002c42a8d85',
                                    FOLDERS[('cifar100', 'python')]),
    ('cifar100', 'binary'): Archive('cifar-100-binary.tar.gz', '03b5dce01913d631647c71ecec9e9cb8',
                                    FOLDERS[('cifar100', 'binary')]),
}
BASE_URL = 'https://www.cs.toronto.edu/~kriz/'
ENV_URL = 'MINICNN_CIFAR_URL'
ENV_MD5 = 'MINICNN_CIFAR_MD5'


def _archive(dataset: str, fmt: str) -> Archive:
    try:
        return ARCHIVES[(dataset, fmt)]
    except KeyError:
        raise DataError(f"unknown dataset/format {dataset!r}/{fmt!r}: expected cifar10|cifar100 and "
                        f"python|binary") from None


def md5_file(path, chunk: int = 1 << 20) -> str:
    """Hex MD5 of a file, read in 1 MiB chunks."""
    h = hashlib.md5()
    try:
        with open(path, 'rb') as f:
            for block in iter(lambda: f.read(chunk), b''):
                h.update(block)
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    return h.hexdigest()


def verify_md5(path, expected: str) -> None:
    """DataError unless the file's MD5 equals ``expected``."""
    got = md5_file(path)
    if got != expected.lower():
        raise DataError(f"checksum mismatch for {path}: expected md5 {expected}, got {got} "
                        f"(corrupt or not the official archive)")


def safe_extract(archive, dest) -> None:
    """Unpack a tar archive into ``dest``, refusing any member that could escape it.

    Refused: absolute names, names with a '..' component, symbolic and hard
    links, device/FIFO members. Only regular files and directories are written.
    """
    archive = Path(archive)
    try:
        with tarfile.open(archive, 'r:*') as tar:
            members = tar.getmembers()
            for m in members:
                parts = PurePosixPath(m.name).parts
                if m.name.startswith(('/', '\\')) or os.path.isabs(m.name) or '..' in parts \
                        or (parts and ':' in parts[0]):
                    raise DataError(f"refusing to unpack {archive}: member {m.name!r} has an unsafe path")
                if not (m.isfile() or m.isdir()):
                    raise DataError(f"refusing to unpack {archive}: member {m.name!r} is not a regular "
                                    f"file or directory")
            if hasattr(tarfile, 'data_filter'):
                tar.extractall(dest, members=members, filter='data')
            else:  # pragma: no cover - Python < 3.11.4
                tar.extractall(dest, members=members)
    except DataError:
        raise
    except (tarfile.TarError, EOFError, OSError, ValueError) as e:
        raise DataError(f"cannot unpack {archive}: {e}") from None


def _loads(folder: Path, dataset: str, fmt: str):
    """Load ``folder`` as ``dataset`` in ``fmt`` (DataError if it is not a usable copy)."""
    return (load_cifar10 if dataset == 'cifar10' else load_cifar100)(folder, format=fmt)


def _install(src_folder: Path, target: Path, dataset: str, fmt: str, move: bool) -> None:
    """Validate ``src_folder`` then put it at ``target`` (copy or move, via a temp name)."""
    _loads(src_folder, dataset, fmt)
    tmp = target.with_name(f'.{target.name}.partial')
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        if move:
            os.replace(src_folder, tmp)
        else:  # copy the files only (not the source's permissions: it may be read-only)
            tmp.mkdir()
            for f in sorted(src_folder.iterdir()):
                if f.is_file():
                    shutil.copyfile(f, tmp / f.name)
        os.replace(tmp, target)
    except OSError as e:
        raise DataError(f"cannot write {target}: {e.strerror or e}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _unpack_archive(archive: Path, arc: Archive, target: Path, dataset: str, fmt: str, md5: str,
                    log) -> None:
    verify_md5(archive, md5)
    log(f"verified md5 of {archive}")
    with tempfile.TemporaryDirectory(prefix='.unpack-', dir=target.parent) as tmp:
        safe_extract(archive, tmp)
        inner = Path(tmp) / arc.folder
        if not inner.is_dir():
            raise DataError(f"{archive} does not contain the folder {arc.folder}/")
        _install(inner, target, dataset, fmt, move=True)


def download(url: str, dest: Path, timeout: float = 60.0, log=print) -> None:
    """Stream ``url`` to ``dest`` (via ``dest.part``); DataError with an offline hint on failure."""
    part = dest.with_name(dest.name + '.part')
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, open(part, 'wb') as f:
            total = int(r.headers.get('Content-Length') or 0)
            done, last = 0, -1
            while block := r.read(1 << 20):
                f.write(block)
                done += len(block)
                pct = int(100 * done / total) if total else -1
                if total and pct // 10 != last // 10:
                    log(f"  {done >> 20} / {total >> 20} MiB ({pct}%)")
                    last = pct
        os.replace(part, dest)
    except urllib.error.HTTPError as e:
        raise DataError(f"cannot download {url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as e:
        reason = getattr(e, 'reason', None) or getattr(e, 'strerror', None) or e
        raise DataError(f"cannot reach {url} ({reason}): are you offline? "
                        f"use --from-dir with a copy of {dest.name}") from None
    except OSError as e:
        raise DataError(f"cannot download {url} to {dest}: {e.strerror or e}") from None
    finally:
        if part.exists():
            part.unlink()


def fetch_cifar(dataset: str = 'cifar10', out='data', format: str = 'python', from_dir=None,
                md5: str | None = None, base_url: str | None = None, timeout: float = 60.0,
                log=print) -> Path:
    """Put the official ``dataset`` ('cifar10'|'cifar100') in ``format`` under ``out``; return its folder.

    Sources, in order: an existing good copy at ``out/<folder>`` (kept, nothing
    done); ``from_dir`` (the archive file, a directory holding the archive, or
    an unpacked copy: the folder or its parent); the archive already at
    ``out/<archive>``; a download from ``base_url`` (default: the official site).
    Archives are verified against ``md5`` (default: the official sum, or
    $MINICNN_CIFAR_MD5) before unpacking.
    """
    arc = _archive(dataset, format)
    md5 = (md5 or os.environ.get(ENV_MD5) or arc.md5).lower()
    out = Path(out).expanduser()
    target = out / arc.folder
    if target.exists():
        try:
            ds = _loads(target, dataset, format)
        except DataError as e:
            raise DataError(f"{target} exists but is not a usable copy ({e}); remove it and run again") from None
        log(f"already present: {target} ({ds.summary()}); nothing to do")
        return target
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create output directory {out}: {e.strerror or e}") from None

    if from_dir is not None:
        src = Path(from_dir).expanduser()
        if not src.exists():
            raise DataError(f"--from-dir {src} does not exist")
        if src.is_file():
            _unpack_archive(src, arc, target, dataset, format, md5, log)
        elif (src / arc.filename).is_file():
            _unpack_archive(src / arc.filename, arc, target, dataset, format, md5, log)
        else:
            try:
                folder, _ = find_cifar(src, dataset, format)
            except DataError:
                raise DataError(f"--from-dir {src} holds neither {arc.filename} nor an unpacked "
                                f"{arc.folder}/") from None
            _install(folder, target, dataset, format, move=False)
            log(f"copied {folder} -> {target}")
        return target

    archive = out / arc.filename
    if not archive.is_file():
        base = base_url or os.environ.get(ENV_URL) or BASE_URL
        url = base if base.endswith('.tar.gz') else base.rstrip('/') + '/' + arc.filename
        log(f"downloading {url}")
        download(url, archive, timeout=timeout, log=log)
    else:
        log(f"using existing archive {archive}")
    _unpack_archive(archive, arc, target, dataset, format, md5, log)
    log(f"unpacked {target}")
    return target


def make_subset(dataset: str, data_dir, n_train: int, n_test: int, seed: int, out,
                format: str = 'python', overwrite: bool = False) -> Path:
    """Write a class-balanced seeded subset of ``dataset`` in the official ``format`` under ``out``.

    ``dataset`` may also be 'synthetic' (written as CIFAR-10-style files). CIFAR-100
    subsets are balanced over the fine labels and keep the coarse ones.
    Returns the folder written.
    """
    if format not in ('python', 'binary'):
        raise DataError(f"unknown format {format!r}: expected python or binary")
    ds = load_dataset(dataset, data_dir)
    sub = subset(ds, n_train, n_test, seed=seed)
    kind = 'cifar100' if ds.name == 'cifar100' else 'cifar10'
    save = save_cifar_python if format == 'python' else save_cifar_binary
    return save(sub, out, kind=kind, overwrite=overwrite)


class OneLineParser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one line (plus exit status 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def run_cli(main, argv=None) -> int:
    """Run a script's ``main(argv)``; turn errors into one line on stderr and an exit code.

    DataError / OSError -> 1, KeyboardInterrupt -> 130, anything else -> 2
    (set MINICNN_DEBUG=1 to see the traceback instead).
    """
    prog = Path(sys.argv[0]).name or 'minicnn'
    try:
        main(argv)
        return 0
    except DataError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"{prog}: error: {e.strerror or e}{': ' + str(e.filename) if e.filename else ''}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: still one line unless debugging
        if os.environ.get('MINICNN_DEBUG'):
            raise
        print(f"{prog}: internal error: {type(e).__name__}: {e} (set MINICNN_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return 2
