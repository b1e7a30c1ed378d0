"""Read CIFAR pickles without letting them run code.

A pickle is a small program: its GLOBAL / STACK_GLOBAL opcodes name any
importable callable and REDUCE calls it, so ``pickle.load`` on a hostile file
can run ``os.system(...)``. The CIFAR python-format files only ever need the
few globals that rebuild a NumPy array, so :class:`RestrictedUnpickler`
overrides ``find_class`` (the single place every global lookup goes through,
including the EXT opcodes) and admits exactly these:

=====================================  =========================================
global named in the file               what it resolves to
=====================================  =========================================
numpy.core.multiarray._reconstruct      ``ndarray`` reconstructor (NumPy 1 files:
numpy._core.multiarray._reconstruct     the official archives; NumPy 2 files)
numpy.ndarray, numpy.dtype              the array and dtype classes
numpy.core.multiarray.scalar            NumPy scalar reconstructor (both spellings)
numpy._core.multiarray.scalar
numpy.core.numeric._frombuffer          array from a buffer (protocol-5 pickles,
numpy._core.numeric._frombuffer         both spellings)
_codecs.encode                          a wrapper that only does ``str.encode('latin1')``
=====================================  =========================================

``_codecs.encode`` is in the list because NumPy 2 writing a protocol-2 pickle
(as the shared slice was written) stores the array bytes as a latin-1 str and
rebuilds them with ``_codecs.encode(s, 'latin1')``; our stand-in refuses any
other codec. Both spellings of the NumPy module map to whichever exists in the
running NumPy, so official (``numpy.core``) and NumPy-2 (``numpy._core``) files
both load under NumPy 2 without touching the deprecated ``numpy.core``.

Anything else raises :class:`DataError` *before* it is looked up, so nothing
named in the file is ever imported or called.

Resources: a few bytes of a pickle must not make the reader allocate
gigabytes. The unpickler is Python's pure-Python one, whose memo is a dict:
with the C unpickler a memo index in the file (``LONG_BINPUT 175399797``,
found by ``tests/test_fuzz.py`` in a 3 KB fuzzed batch) sized its memo array
to that index -- 1.4 GB. The array reconstructor is wrapped so that an
array it creates may not be larger than the file (NumPy's own pickles ask it
for shape ``(0,)`` and fill the array from the file's bytes afterwards).
Reading a batch is as fast either way (``docs/measurements/timings.md``).
"""
from __future__ import annotations

import io
import math
import pickle
from pathlib import Path

import numpy as np

from .dataset import DataError

try:  # NumPy >= 2
    from numpy._core import multiarray as _multiarray, numeric as _numeric
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core import multiarray as _multiarray, numeric as _numeric


def _latin1_encode(obj, encoding='utf-8', errors='strict'):
    """Stand-in for ``_codecs.encode`` that only performs str -> bytes in latin-1."""
    if str(encoding).lower().replace('_', '-') not in ('latin1', 'latin-1') or not isinstance(obj, str):
        raise pickle.UnpicklingError(f"_codecs.encode is only allowed for str with latin1, got {encoding!r}")
    return obj.encode('latin1', errors)


_ALLOWED = {
    ('numpy.core.multiarray', '_reconstruct'): _multiarray._reconstruct,
    ('numpy._core.multiarray', '_reconstruct'): _multiarray._reconstruct,
    ('numpy.core.multiarray', 'scalar'): _multiarray.scalar,
    ('numpy._core.multiarray', 'scalar'): _multiarray.scalar,
    ('numpy.core.numeric', '_frombuffer'): _numeric._frombuffer,
    ('numpy._core.numeric', '_frombuffer'): _numeric._frombuffer,
    ('numpy', 'ndarray'): np.ndarray,
    ('numpy', 'dtype'): np.dtype,
    ('_codecs', 'encode'): _latin1_encode,
}


class _RefusedGlobal(pickle.UnpicklingError):
    """Raised by find_class for a global outside the allow-list."""

    def __init__(self, module, name):
        super().__init__(f"global '{module}.{name}' is not allowed")
        self.qualname = f"{module}.{name}"


class RestrictedUnpickler(pickle._Unpickler):
    """Pure-Python unpickler that resolves only the NumPy globals listed in the module docstring.

    ``max_bytes`` (default: no limit) caps the size of an array the
    reconstructor may create; :func:`safe_loads` passes the length of the data.
    """

    def __init__(self, file, *, max_bytes: int | None = None, **kwargs):
        super().__init__(file, **kwargs)
        self._max_bytes = max_bytes

    def find_class(self, module, name):
        try:
            found = _ALLOWED[(module, name)]
        except (KeyError, TypeError):
            raise _RefusedGlobal(module, name) from None
        return self._reconstruct if found is _multiarray._reconstruct else found

    def _reconstruct(self, subtype, shape, dtype):
        dims = shape if isinstance(shape, tuple) else (shape,)
        if self._max_bytes is not None and all(isinstance(d, int) for d in dims):
            size = math.prod(max(d, 0) for d in dims) * np.dtype(dtype).itemsize
            if size > self._max_bytes:
                raise pickle.UnpicklingError(f"an array of shape {shape} ({size:,} bytes) is larger than the file")
        return _multiarray._reconstruct(subtype, shape, dtype)

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not allowed")


def safe_loads(data: bytes, what: str = '<bytes>'):
    """Unpickle ``data`` (protocol <= 5, Python 2 strings kept as bytes) with the restricted unpickler.

    ``what`` names the source in error messages. Raises DataError on a refused
    global or on any malformed content.
    """
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding='bytes', max_bytes=len(data)).load()
    except _RefusedGlobal as e:
        raise DataError(f"refusing to unpickle {what}: global '{e.qualname}' is not allowed "
                        f"(only the NumPy array globals are)") from None
    except Exception as e:  # malformed/truncated pickles raise many types
        raise DataError(f"cannot read {what}: not a valid CIFAR pickle ({type(e).__name__}: {e})") from None


def safe_load(path) -> object:
    """Read and restrictedly unpickle the file at ``path`` (DataError if missing or refused)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"missing file {path}") from None
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    return safe_loads(data, str(path))
