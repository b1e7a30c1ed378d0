"""Checkpoints, written and read: ``model.npz`` (the trained model) and ``checkpoint.npz`` (a run to resume).

``model.npz`` is read defensively: a damaged or hostile file is one ``ValueError``, never more.
``checkpoint.npz`` (:func:`save_train_checkpoint` / :func:`restore_train_checkpoint`) is the
trainer's own file, written after every epoch and read by ``--resume``; see those functions.

A model checkpoint (written by :func:`save_checkpoint` with ``np.savez``,
atomically) is an uncompressed zip archive of ``.npy`` members::

    meta.npy           0-d unicode array: JSON {"arch": str, "config": {...}, "methods": [...],
                       "method_states": {key: {...}}, ...}
    state/<name>.npy   one float array per parameter and buffer (model.state_dict())
    method/<key>/<path>.npy  arrays of a method's saved state, if it has any (see below)
    norm_mean.npy      (C,) per-channel input mean   } optional, together
    norm_std.npy       (C,) per-channel input std    }

:func:`read_checkpoint` reads it member by member and checks, in this order,
before it allocates anything a member *declares* (``np.load`` allocates the
declared array first, so a header claiming 10^12 elements would ask for
terabytes):

=========================  ==================================================
what                       checked
=========================  ==================================================
the archive                a zip (``zipfile``: bad structure, bad CRC-32,
                           unsupported compression are errors); member names
                           unique, each ``<key>.npy``
each member's header       ``.npy`` format 1.0-3.0 (NumPy's own parser, header
                           <= 10,000 bytes); no object dtype (nothing is ever
                           unpickled); declared shape x item size + header ==
                           the member's real size, else refused unread
``meta``                   a 0-d unicode array holding a JSON object with
                           ``arch`` (a model of :data:`minicnn.models.MODELS`)
                           and ``config`` (see :func:`check_meta`)
``state/*``                real floating-point arrays (values are not judged:
                           NaN weights load, and :func:`nonfinite_entries`
                           names them)
``norm_mean`` / ``norm_std``  both or neither; 1-D float, same length, finite,
                           std > 0
``method_states``          an object of objects, one per method key; the
                           method's own ``load_state_dict`` checks the values
=========================  ==================================================

Methods (:func:`load_checkpoint`): the methods ``meta["methods"]`` records
are rebuilt and attached (their own layers: SLU's gates), and those that act
at evaluation (``Method.acts_in_eval``) get their hooks. A method whose state
is part of the trained model (``Method.eval_state``: PSG's and fixed8's
running activation ranges) is given the state saved under its key in
``method_states`` (with the arrays of ``method/<key>/``); a checkpoint
without it (written before minicnn saved it) is refused: evaluating
without it would score another network than the one the run trained.

Every failure is ``ValueError("<path> is not a readable minicnn checkpoint:
<reason>")`` on one line; a missing path is ``FileNotFoundError`` and a
directory ``IsADirectoryError`` (as before). The fuzz test
(``tests/test_fuzz.py``) flips, truncates and extends bytes of a real
checkpoint, raw and member by member with valid CRCs, and holds every case to
"this error or a correct load".

Config limits (:func:`check_meta`): ``num_classes`` an integer in
[1, MAX_CLASSES] and ``width`` a finite number in (0, MAX_WIDTH]. The model is
built from the config *before* the arrays are matched against it, so these
bound what a tampered config can make the loader allocate: vgg11-cifar at width
8 is ~590 M parameters (2.4 GB), the most a CPU run could train; no minicnn
dataset has more than 100 classes.
"""
from __future__ import annotations

import inspect
import json
import math
import os
import struct
import zipfile
import zlib

import numpy as np

from .runfiles import atomic_savez, finite

#: largest ``num_classes`` a checkpoint may declare
MAX_CLASSES = 10_000
#: largest ``width`` multiplier a checkpoint may declare
MAX_WIDTH = 8.0
#: largest .npy header accepted (NumPy's own default limit)
MAX_HEADER = 10_000

_FORMAT_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, KeyError, TypeError, OSError, EOFError,
                  NotImplementedError, MemoryError, OverflowError, struct.error, zlib.error)


class _Bad(ValueError):
    """A reason the file is not a checkpoint (becomes the one-line message)."""


def _one_line(e) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 300 else text[:297] + "..."


# -- writing ------------------------------------------------------------------------------------------------
def _split_arrays(obj, prefix=""):
    """(JSON part, {path: ndarray}) of a nested dict: arrays are stored in the .npz, the rest as JSON."""
    arrays = {}

    def walk(o, path):
        if isinstance(o, np.ndarray):
            arrays[path] = o
            return {"__array__": path}
        if isinstance(o, dict):
            return {str(k): walk(v, f"{path}/{k}" if path else str(k)) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [walk(v, f"{path}/{i}" if path else str(i)) for i, v in enumerate(o)]
        if isinstance(o, np.generic):
            return o.item()
        return o
    return walk(obj, prefix), arrays


def _join_arrays(obj, arrays: dict, prefix: str):
    """Inverse of :func:`_split_arrays` for one saved state (``prefix`` = "<its name>/")."""
    if isinstance(obj, dict):
        if set(obj) == {"__array__"}:
            return arrays[prefix + obj["__array__"]].copy()
        return {k: _join_arrays(v, arrays, prefix) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_join_arrays(v, arrays, prefix) for v in obj]
    return obj


def save_checkpoint(model, path, mean=None, std=None, method_states=None, **meta):
    """Weights, BatchNorm buffers, method-owned layers, the architecture, the methods and the
    normalization, in one .npz (written atomically).

    ``method_states``: {method key: state_dict()} of the methods whose state is part of the
    trained model (``Method.eval_state``: PSG's running activation ranges); JSON values go to
    ``meta["method_states"]``, arrays to members ``method/<key>/<path>``.
    """
    arrays = {f"state/{k}": v for k, v in model.state_dict().items()}
    info = {"arch": getattr(model, "arch", None), "config": getattr(model, "config", {}), **meta}
    if method_states:
        info["method_states"] = {}
        for key, st in method_states.items():
            js, arrs = _split_arrays(st)
            info["method_states"][key] = js
            arrays.update({f"method/{key}/{k}": v for k, v in arrs.items()})
    arrays["meta"] = np.array(json.dumps(finite(info)))
    if mean is not None:
        arrays["norm_mean"], arrays["norm_std"] = np.asarray(mean), np.asarray(std)
    atomic_savez(path, **arrays)


def save_train_checkpoint(path, model, optimizer, info: dict) -> None:
    """The trainer's ``checkpoint.npz``: model and optimizer state plus ``info`` (written atomically).

    Members::

        state/<name>.npy        model.state_dict()
        opt/<name>.npy          optimizer.state (momentum buffers)
        hook/<hook>/<path>.npy  the arrays of each hook's saved state
        trainer.npy             0-d unicode array: JSON ``info``, with ``info["hooks"]`` ({hook name:
                                nested dict}) stored as JSON whose arrays are ``{"__array__": path}``
                                references to the ``hook/`` members

    ``info`` is the trainer's (epochs done, counters, history, random streams, method records,
    wall time, hook states); this function only decides how it is stored.
    """
    arrays = {f"state/{k}": v for k, v in model.state_dict().items()}
    arrays.update({f"opt/{k}": v for k, v in optimizer.state.items()})
    hooks = {}
    for name, h in info["hooks"].items():
        js, arrs = _split_arrays(h)
        hooks[name] = js
        arrays.update({f"hook/{name}/{k}": v for k, v in arrs.items()})
    info = dict(info, hooks=hooks)              # same key order as given
    arrays["trainer"] = np.array(json.dumps(finite(info)))
    atomic_savez(path, **arrays)


def restore_train_checkpoint(path, model, optimizer) -> dict:
    """Read a ``checkpoint.npz`` (:func:`save_train_checkpoint`): load the model's and the optimizer's state
    from it and return its ``info``, ``info["hooks"]`` with the arrays put back.

    An unreadable file, or weights that do not fit the model, is ``ValueError("<path> is not a readable
    checkpoint: ...")``. This is the trainer's own file, read on ``--resume``; it is not checked member by
    member as ``model.npz`` is (:func:`read_checkpoint`).
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            info = json.loads(str(z["trainer"]))
            model.load_state_dict({k[6:]: z[k] for k in z.files if k.startswith("state/")})
            optimizer.state = {k[4:]: z[k].copy() for k in z.files if k.startswith("opt/")}
            hook_arrays = {k[5:]: z[k] for k in z.files if k.startswith("hook/")}
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path} is not a readable checkpoint: {e}") from None
    info["hooks"] = {name: _join_arrays(h, hook_arrays, f"{name}/") for name, h in info["hooks"].items()}
    return info


# -- reading model.npz ----------------------------------------------------------------------------------------
def read_checkpoint(path) -> tuple[dict, dict[str, np.ndarray], np.ndarray | None, np.ndarray | None]:
    """``(meta, state, mean, std)`` of the checkpoint at ``path``, every part checked (see module docstring).

    ``meta`` has passed :func:`check_meta`; ``state`` maps state_dict names to
    arrays; mean/std are None when the file holds no normalization.
    """
    return _read_checkpoint(path)[:4]


def _read_checkpoint(path):
    """:func:`read_checkpoint` and the arrays of the methods' saved states (``{"<key>/<path>": array}``)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"checkpoint {path} is a directory; give the model.npz inside a run directory")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        arrays = _read_members(path)
        meta = check_meta(_meta(arrays))
        state = {k[len("state/"):]: v for k, v in arrays.items() if k.startswith("state/")}

        for k, v in state.items():
            if v.dtype.kind != "f":
                raise _Bad(f"entry {k} has dtype {v.dtype}, expected floating point")
        mean, std = _normalization(arrays)
        method_arrays = {k[len("method/"):]: v for k, v in arrays.items() if k.startswith("method/")}
    except _FORMAT_ERRORS as e:
        raise ValueError(f"{path} is not a readable minicnn checkpoint: {_one_line(e)}") from None
    return meta, state, mean, std, method_arrays


def _read_members(path: str) -> dict[str, np.ndarray]:
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":               # every .npz is a zip archive
            raise _Bad("not an .npz archive")
    out = {}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            name = info.filename
            if not name.endswith(".npy") or len(name) == 4:
                raise _Bad(f"member {name!r} is not an .npy array")
            key = name[:-4]
            if key in out:
                raise _Bad(f"member {name!r} appears twice")
            with zf.open(info) as f:
                out[key] = _read_npy(f, info.file_size, key)
    return out


def _read_npy(f, size: int, key: str) -> np.ndarray:
    """One .npy member: header parsed and its declared size matched to the real size before reading data."""
    fmt = np.lib.format
    version = fmt.read_magic(f)
    if version not in ((1, 0), (2, 0), (3, 0)):
        raise _Bad(f"member {key}.npy has unsupported .npy version {version}")
    read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    try:
        shape, fortran, dtype = read_header(f, max_header_size=MAX_HEADER)
    except Exception as e:  # NumPy parses the header text with tokenize/ast: TokenError, SyntaxError, ... escape
        raise _Bad(f"member {key}.npy has an unreadable header ({type(e).__name__}: {_one_line(e)})") from None
    if dtype.hasobject:
        raise _Bad(f"member {key}.npy holds Python objects (refused: they would need unpickling)")
    if any(not isinstance(d, int) or d < 0 for d in shape):
        raise _Bad(f"member {key}.npy declares an invalid shape {shape}")
    header = f.tell()
    need = math.prod(shape) * dtype.itemsize              # Python ints: no overflow
    if header + need != size:
        raise _Bad(f"member {key}.npy declares {shape} {dtype} ({need:,} bytes) but holds {size - header:,}")
    data = f.read()                                       # to the end: zipfile checks the CRC-32 here
    if len(data) != need:
        raise _Bad(f"member {key}.npy is truncated")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C").copy()


def _meta(arrays: dict) -> dict:
    if "meta" not in arrays:
        raise _Bad("it holds no meta entry (which model it is)")
    m = arrays["meta"]
    if m.shape != () or m.dtype.kind != "U":
        raise _Bad(f"its meta entry is not a JSON string (got {m.dtype} {m.shape})")
    try:
        meta = json.loads(str(m))
    except (ValueError, RecursionError) as e:
        raise _Bad(f"its meta entry is not valid JSON ({_one_line(e)})") from None
    return meta


def check_meta(meta) -> dict:
    """Check the checkpoint metadata the model is rebuilt from; returns it (ValueError if unusable)."""
    from ..models import MODELS
    if not isinstance(meta, dict):
        raise _Bad(f"its meta entry is a JSON {type(meta).__name__}, expected an object")
    arch = meta.get("arch")
    if not isinstance(arch, str) or not arch:
        raise _Bad("it does not record which model it holds")
    if arch not in MODELS:
        raise _Bad(f"it holds an unknown model {arch!r} (known: {', '.join(MODELS)})")
    states = meta.get("method_states", {})
    if not isinstance(states, dict) or not all(isinstance(v, dict) for v in states.values()):
        raise _Bad("its method_states entry is not an object of objects (one per method)")
    config = meta.get("config", {})
    if not isinstance(config, dict):
        raise _Bad(f"its model config is a JSON {type(config).__name__}, expected an object")
    takes = set(inspect.signature(MODELS[arch]).parameters) - {"dtype", "rng"}
    unknown = sorted(set(config) - takes)
    if unknown:
        raise _Bad(f"its model config has option(s) {arch} does not take: {', '.join(map(repr, unknown))}")
    nc = config.get("num_classes", 10)
    if isinstance(nc, bool) or not isinstance(nc, int) or not 1 <= nc <= MAX_CLASSES:
        raise _Bad(f"its num_classes {nc!r} is not an integer in [1, {MAX_CLASSES}]")
    if "width" in config:
        w = config["width"]
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 < w <= MAX_WIDTH:
            raise _Bad(f"its width {w!r} is not a number in (0, {MAX_WIDTH:g}]")
    return meta


def _normalization(arrays: dict):
    has = ("norm_mean" in arrays, "norm_std" in arrays)
    if not any(has):
        return None, None
    if not all(has):
        raise _Bad("it holds only one of norm_mean and norm_std")
    mean, std = arrays["norm_mean"], arrays["norm_std"]
    for name, a in (("norm_mean", mean), ("norm_std", std)):
        if a.dtype.kind != "f" or a.ndim != 1 or a.size == 0 or not np.all(np.isfinite(a)):
            raise _Bad(f"its {name} is not a finite 1-D float array (got {a.dtype} {a.shape})")
    if mean.shape != std.shape:
        raise _Bad(f"norm_mean {mean.shape} and norm_std {std.shape} differ in length")
    if not np.all(std > 0):
        raise _Bad("its norm_std has a value <= 0")
    return mean, std


def load_checkpoint(path, with_methods: bool = False):
    """Rebuild the model of a checkpoint: ``(model, meta, mean, std)`` (what ``trainer.load_checkpoint`` returns).

    :func:`read_checkpoint` checks the file; the model is then built from its
    meta, the methods it records are rebuilt and attached (their own layers,
    and their hooks when they act at evaluation: ``Method.acts_in_eval``),
    and the model must take every array, with the right names and shapes.
    ``with_methods=True`` also returns the methods.
    """
    from ..hooks import HookList
    from ..models import build
    meta, state, mean, std, method_arrays = _read_checkpoint(path)
    methods = []
    try:
        model = build(meta["arch"], **meta.get("config", {}))
        specs = meta.get("methods") or []
        if not isinstance(specs, list) or not all(isinstance(x, str) for x in specs):
            raise ValueError("its methods are not a list of strings")
        if specs:
            from ..methods import attach, build_methods
            from .trainer import method_keys
            methods = build_methods(specs)
            attach(model, methods)          # before the keys are set, as in training (build_run)
            for key, m in zip(method_keys(methods), methods):
                m.key = key                 # the key the trainer filed its records and state under
            saved = meta.get("method_states", {})
            for m in methods:
                if not getattr(m, "eval_state", False):
                    continue
                if m.key not in saved:
                    raise ValueError(f"it holds no saved state for method {m.key} (written before minicnn saved "
                                     "it in model.npz); evaluating without it would score another network "
                                     "than the one trained: train the run again")
                m.load_state_dict(_join_arrays(saved[m.key], method_arrays, f"{m.key}/"))
            acting = [m for m in methods if m.acts_in_eval]
            if acting:
                model.set_hooks(HookList(acting))
        model.load_state_dict(state)
    except (KeyError, ValueError, TypeError) as e:
        reason = e.args[0] if isinstance(e, KeyError) and e.args else e     # KeyError's str() adds quotes
        raise ValueError(f"{os.fspath(path)} is not a readable minicnn checkpoint: {_one_line(reason)}") from None
    return (model, meta, mean, std, methods) if with_methods else (model, meta, mean, std)


def nonfinite_entries(state: dict[str, np.ndarray]) -> list[str]:
    """Names of the state entries holding NaN or infinity (a diverged run's weights), in order."""
    return [k for k, v in state.items() if not np.all(np.isfinite(v))]
