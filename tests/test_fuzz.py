"""Fuzzing the two file readers: a CIFAR python-format batch and a ``model.npz`` checkpoint.

Property (issue 6, Part B.5): whatever bytes are flipped, overwritten,
deleted, inserted, cut off or appended, loading ends in a clear error --
``DataError`` for CIFAR, ``ValueError`` for a checkpoint, with a one-line
message -- or in a correct load (every invariant of a Dataset / a model that
takes the file's arrays), never another exception type, a hang, or code
execution. Hangs: every example runs under a SIGALRM watchdog (Linux) besides
hypothesis's deadline. Code execution: the restricted unpickler's allow-list is
spied on, and only its NumPy reconstructors may ever be resolved.

The checkpoint is fuzzed twice: raw bytes of the zip (mostly caught by the
zip's CRC-32), and member by member with the archive re-packed with valid CRCs
(reaching the .npy headers, the meta JSON and the arrays behind them).
"""
from __future__ import annotations

import io
import json
import os
import signal
import zipfile
from contextlib import contextmanager

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from minicnn.data import DataError, load_cifar10, save_cifar_python, synthetic  # noqa: E402
from minicnn.models import build  # noqa: E402
from minicnn.training import load_checkpoint, save_checkpoint  # noqa: E402

#: examples per fuzz test; MINICNN_FUZZ_EXAMPLES=5000 for a deeper hunt (the suite keeps it quick)
EXAMPLES = int(os.environ.get("MINICNN_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=5000, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
WATCHDOG_S = 10


@contextmanager
def watchdog(seconds=WATCHDOG_S):
    """Fail (instead of hanging the suite) if the body runs longer than ``seconds``."""
    if not hasattr(signal, "setitimer"):
        yield
        return

    def fire(signum, frame):
        raise TimeoutError(f"loader still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# -- mutations -----------------------------------------------------------------------------------
def mutation(max_len_hint=4096):
    """One edit of a byte string, as (kind, relative position in [0, 1], payload)."""
    pos = st.floats(0.0, 1.0, allow_nan=False)
    return st.one_of(
        st.tuples(st.just("flip"), pos, st.integers(0, 7)),                     # flip one bit
        st.tuples(st.just("set"), pos, st.binary(min_size=1, max_size=8)),      # overwrite a few bytes
        st.tuples(st.just("truncate"), pos, st.none()),                         # cut the tail off
        st.tuples(st.just("extend"), pos, st.binary(min_size=1, max_size=64)),  # append garbage
        st.tuples(st.just("insert"), pos, st.binary(min_size=1, max_size=8)),   # shift everything after
        st.tuples(st.just("delete"), pos, st.integers(1, 16)),                  # remove a few bytes
    )


def apply(data: bytes, edits, head: int | None = None) -> bytes:
    """Apply the edits in order. ``head`` (if given) confines positions to the first ``head`` bytes
    for half of the edits: headers are where the parsing happens."""
    b = bytearray(data)
    for i, (kind, rel, payload) in enumerate(edits):
        span = len(b) if head is None or i % 2 else min(len(b), head)
        p = min(int(rel * span), max(len(b) - 1, 0))
        if kind == "flip" and b:
            b[p] ^= 1 << payload
        elif kind == "set" and b:
            b[p:p + len(payload)] = payload
        elif kind == "truncate":
            del b[p:]
        elif kind == "extend":
            b += payload
        elif kind == "insert":
            b[p:p] = payload
        elif kind == "delete":
            del b[p:p + payload]
    return bytes(b)


def one_line(msg: str):
    assert msg and "\n" not in msg.strip() and "Traceback" not in msg, repr(msg)


# -- CIFAR python-format batches -------------------------------------------------------------------
@pytest.fixture(scope="module")
def cifar_files(tmp_path_factory):
    """A valid cifar-10-batches-py folder written by minicnn's own writer (2 train batches, tiny)."""
    ds = synthetic(n_train=2, n_test=2, seed=0)
    folder = save_cifar_python(ds, tmp_path_factory.mktemp("c10"))
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def no_plain_unpickling(monkeypatch):
    """Make pickle.load / pickle.loads (which run any global a file names) fail the test if called."""
    import pickle

    def refuse(*args, **kwargs):
        raise AssertionError("a loader called plain pickle.load(s) on a data file")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)


def check_dataset(ds):
    """Invariants of a correct CIFAR-10 load."""
    for x, y in ((ds.train_x, ds.train_y), (ds.test_x, ds.test_y)):
        assert x.dtype == np.uint8 and x.ndim == 4 and x.shape[1:] == (3, 32, 32)
        assert y.dtype == np.int64 and y.shape == (len(x),)
        assert len(y) == 0 or (0 <= y.min() and y.max() < ds.num_classes)
    assert len(ds.train_y) > 0 and len(ds.test_y) > 0
    assert all(isinstance(c, str) for c in ds.classes) and ds.num_classes == len(ds.classes)


@FUZZ
@given(target=st.sampled_from(["data_batch_1", "test_batch", "batches.meta"]),
       edits=st.lists(mutation(), min_size=1, max_size=4))
def test_fuzzed_cifar_batch_is_a_clear_error_or_a_correct_load(cifar_files, tmp_path_factory, monkeypatch,
                                                                target, edits):
    folder = tmp_path_factory.mktemp("fuzz") / "cifar-10-batches-py"
    folder.mkdir()
    for name, data in cifar_files.items():
        (folder / name).write_bytes(apply(data, edits, head=120) if name == target else data)
    no_plain_unpickling(monkeypatch)
    with watchdog():
        try:
            ds = load_cifar10(folder)
        except DataError as e:
            one_line(str(e))
            ds = None
    if ds is not None:
        check_dataset(ds)


def _pickle_calling(callable_ref: bytes, args_pickle: bytes) -> bytes:
    """A protocol-2 pickle ``{b'data': <callable>(*args), b'labels': []}`` built by hand
    (``args_pickle`` pushes the argument tuple)."""
    return (b"\x80\x02}q\x00(U\x04dataq\x01c" + callable_ref + b"\nq\x02" + args_pickle + b"R"
            + b"U\x06labelsq\x03]q\x04u.")


@pytest.mark.parametrize("data, message", [
    # a valid pickle whose data has the wrong length
    ("short_rows", "'data' must be a (K, 3072) uint8 array"),
    ("labels_out_of_range", "labels must lie in [0, 10), found [0, 10]"),
    ("labels_negative", "labels must lie in [0, 10), found [-1, 3]"),
    ("data_missing", "missing key 'data' (has: labels)"),
    ("data_float", "'data' must be a (K, 3072) uint8 array, got ndarray float32"),
    ("labels_too_few", "'labels' must be 2 integers"),
    ("labels_not_ints", "'labels' must be 2 integers"),
    ("not_a_dict", "expected a pickled dict"),
    ("hostile_global", "global 'os.system' is not allowed"),
    ("huge_array", "cannot read"),
])
def test_corrupt_but_valid_cifar_pickles_are_one_clear_line(data, message, cifar_files, tmp_path):
    """Hand-made batches that unpickle fine (or nearly) but are not CIFAR: one DataError line each."""
    import pickle
    rows = np.zeros((2, 3072), np.uint8)
    payload = {
        "short_rows": {b"data": np.zeros((2, 3000), np.uint8), b"labels": [0, 1]},
        "labels_out_of_range": {b"data": rows, b"labels": [0, 10]},
        "labels_negative": {b"data": rows, b"labels": [-1, 3]},
        "data_missing": {b"labels": [0, 1]},
        "data_float": {b"data": rows.astype(np.float32), b"labels": [0, 1]},
        "labels_too_few": {b"data": rows, b"labels": [0]},
        "labels_not_ints": {b"data": rows, b"labels": [0.5, 1.0]},
        "not_a_dict": [rows, [0, 1]],
    }.get(data)
    if payload is not None:
        raw = pickle.dumps(payload, protocol=2)
    elif data == "hostile_global":
        raw = _pickle_calling(b"os\nsystem", b"X\x04\x00\x00\x00true\x85")
    else:  # numpy.ndarray((10**13,), 'f8'): 80 TB asked of the allocator by a 60-byte file
        raw = _pickle_calling(b"numpy\nndarray", b"\x8a\x06\x00\xa0\x72\x4e\x18\x09\x85X\x02\x00\x00\x00f8\x86")
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name, b in cifar_files.items():
        (folder / name).write_bytes(raw if name == "data_batch_1" else b)
    with watchdog(), pytest.raises(DataError) as e:
        load_cifar10(folder)
    one_line(str(e.value))
    assert message in str(e.value) and "data_batch_1" in str(e.value)


def test_a_huge_memo_index_costs_no_memory(cifar_files, tmp_path):
    """Found by the fuzzer: one LONG_BINPUT with index 175,399,797 in a 3 KB batch made the C unpickler
    allocate a 1.4 GB memo (and take ~9 s). The reader's memo is a dict now: that index costs one entry."""
    import tracemalloc
    good = cifar_files["data_batch_1"]
    i = good.index(b"q\x05")                     # BINPUT 5 after the 'data' key: same meaning, huge index
    raw = good[:i] + b"r" + (175_399_797).to_bytes(4, "little") + good[i + 2:]
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name, b in cifar_files.items():
        (folder / name).write_bytes(raw if name == "data_batch_1" else b)
    tracemalloc.start()
    try:
        with watchdog():
            ds = load_cifar10(folder)                # still a valid pickle: it loads
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    check_dataset(ds)
    assert peak < 50 * 2 ** 20, f"peak {peak / 2 ** 20:.0f} MiB"


def test_an_array_larger_than_its_file_is_refused(cifar_files, tmp_path):
    """numpy's reconstructor asked (by a 100-byte file) for a 1 GB array: refused before allocation."""
    raw = _pickle_calling(b"numpy.core.multiarray\n_reconstruct",
                          b"cnumpy\nndarray\n\x4a\x00\x00\x00\x40\x85U\x01b\x87")
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name, b in cifar_files.items():
        (folder / name).write_bytes(raw if name == "data_batch_1" else b)
    with watchdog(), pytest.raises(DataError, match=r"shape \(1073741824,\) .* is larger than the file"):
        load_cifar10(folder)


# -- model.npz checkpoints -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A real model.npz (resnet8: convs, BatchNorm buffers, a classifier) and the model it came from."""
    model = build("resnet8", seed=0)
    path = tmp_path_factory.mktemp("ckpt") / "model.npz"
    save_checkpoint(model, str(path), mean=np.array([0.49, 0.48, 0.45]), std=np.array([0.25, 0.24, 0.26]),
                    dataset="synthetic", classes=[str(i) for i in range(10)])
    return path.read_bytes(), model


def repack(data: bytes, member: str, edits) -> bytes:
    """The archive with one member's bytes edited and every CRC recomputed (structure-aware fuzzing)."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            body = src.read(info)
            dst.writestr(info.filename, apply(body, edits, head=128) if info.filename == member else body)
    return out.getvalue()


def check_loaded(result, original):
    """Invariants of a correct checkpoint load: the architecture's own shapes, a usable normalization."""
    model, meta, mean, std = result
    assert meta["arch"] == "resnet8"
    fresh = build(meta["arch"], **meta.get("config", {}))
    got, want = model.state_dict(), fresh.state_dict()
    assert got.keys() == want.keys() and all(got[k].shape == want[k].shape for k in got)
    assert (mean is None) == (std is None)
    if mean is not None:
        assert mean.shape == std.shape and np.all(np.isfinite(mean)) and np.all(std > 0)
    return model


def load_or_error(path):
    with watchdog():
        try:
            return load_checkpoint(str(path))
        except ValueError as e:
            one_line(str(e))
            assert "is not a readable minicnn checkpoint" in str(e)
            return None


@FUZZ
@given(edits=st.lists(mutation(), min_size=1, max_size=4))
def test_fuzzed_checkpoint_bytes_are_a_clear_error_or_a_correct_load(checkpoint, tmp_path_factory, edits):
    data, model = checkpoint
    path = tmp_path_factory.mktemp("npz") / "model.npz"
    path.write_bytes(apply(data, edits))
    result = load_or_error(path)
    if result is not None:
        check_loaded(result, model)


MEMBERS = ["meta.npy", "norm_mean.npy", "norm_std.npy", "state/conv1.weight.npy", "state/bn1.running_var.npy",
           "state/fc.weight.npy"]


@FUZZ
@given(member=st.sampled_from(MEMBERS), edits=st.lists(mutation(), min_size=1, max_size=3))
def test_fuzzed_checkpoint_members_are_a_clear_error_or_a_correct_load(checkpoint, tmp_path_factory, member, edits):
    data, model = checkpoint
    assert member in zipfile.ZipFile(io.BytesIO(data)).namelist()
    path = tmp_path_factory.mktemp("npz") / "model.npz"
    path.write_bytes(repack(data, member, edits))
    result = load_or_error(path)
    if result is not None:
        check_loaded(result, model)


def test_the_unedited_checkpoint_loads_bit_for_bit(checkpoint, tmp_path):
    """The fuzz baseline: with no edit (raw, and re-packed), the load is exact."""
    data, model = checkpoint
    for raw in (data, repack(data, "meta.npy", [])):
        path = tmp_path / "model.npz"
        path.write_bytes(raw)
        loaded, meta, mean, std = load_checkpoint(str(path))
        for k, v in model.state_dict().items():
            np.testing.assert_array_equal(loaded.state_dict()[k], v)
        np.testing.assert_array_equal(mean, [0.49, 0.48, 0.45])
        assert meta["dataset"] == "synthetic"


def _npz(tmp_path, **arrays) -> str:
    path = tmp_path / "model.npz"
    np.savez(path, **arrays)
    return str(path)


@pytest.mark.parametrize("case, message", [
    ("huge_header", "declares (1000000000000,) float32"),
    ("object_array", "holds Python objects"),
    ("meta_not_json", "not valid JSON"),
    ("meta_list", "expected an object"),
    ("unknown_arch", "unknown model 'lenet'"),
    ("huge_classes", "num_classes 1000000000 is not an integer"),
    ("huge_width", "width 1000.0 is not a number"),
    ("bad_option", "resnet8 does not take: 'depth'"),
    ("int_weights", "expected floating point"),
    ("wrong_shape", "has shape"),
    ("missing_entry", "checkpoint lacks"),
    ("std_zero", "norm_std has a value <= 0"),
    ("mean_only", "only one of norm_mean and norm_std"),
])
def test_hand_made_bad_checkpoints_are_one_clear_line(case, message, checkpoint, tmp_path):
    data, model = checkpoint
    z = zipfile.ZipFile(io.BytesIO(data))
    arrays = {n[:-4]: np.load(io.BytesIO(z.read(n))) for n in z.namelist()}
    meta = json.loads(str(arrays["meta"]))
    if case == "huge_header":
        hdr = io.BytesIO()
        np.lib.format.write_array_header_1_0(hdr, {"descr": "<f4", "fortran_order": False,
                                                   "shape": (10 ** 12,)})
        with zipfile.ZipFile(tmp_path / "model.npz", "w") as out:
            for n in z.namelist():
                out.writestr(n, hdr.getvalue() + b"\0" * 16 if n == "state/fc.bias.npy" else z.read(n))
        path = str(tmp_path / "model.npz")
    else:
        if case == "object_array":
            arrays["state/fc.bias"] = np.array([{"a": 1}], dtype=object)
        elif case == "meta_not_json":
            arrays["meta"] = np.array("{arch: resnet8")
        elif case == "meta_list":
            arrays["meta"] = np.array("[1, 2]")
        elif case in ("unknown_arch", "huge_classes", "huge_width", "bad_option"):
            meta = {"unknown_arch": {**meta, "arch": "lenet"},
                    "huge_classes": {**meta, "config": {"num_classes": 10 ** 9}},
                    "huge_width": {**meta, "arch": "vgg11-cifar", "config": {"num_classes": 10, "width": 1000.0}},
                    "bad_option": {**meta, "config": {"num_classes": 10, "depth": 3}}}[case]
            arrays["meta"] = np.array(json.dumps(meta))
        elif case == "int_weights":
            arrays["state/fc.bias"] = arrays["state/fc.bias"].astype(np.int32)
        elif case == "wrong_shape":
            arrays["state/fc.bias"] = np.zeros(11, np.float32)
        elif case == "missing_entry":
            del arrays["state/fc.bias"]
        elif case == "std_zero":
            arrays["norm_std"] = np.zeros(3)
        elif case == "mean_only":
            del arrays["norm_std"]
        if case == "object_array":
            path = str(tmp_path / "model.npz")
            np.savez(path, **arrays)       # savez pickles the object array; the loader must not unpickle it
        else:
            path = _npz(tmp_path, **arrays)
    with watchdog(), pytest.raises(ValueError) as e:
        load_checkpoint(path)
    one_line(str(e.value))
    assert message in str(e.value), str(e.value)
