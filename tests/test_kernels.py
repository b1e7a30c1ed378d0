"""Fast numba kernels == naive loop references (minicnn.kernels.reference)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minicnn.kernels import (avgpool2d_backward, avgpool2d_forward, channel_mean_var, col2im, im2col,
                             maxpool2d_backward, maxpool2d_forward, relu_backward, relu_forward)
from minicnn.kernels import reference as R
from minicnn.layers.batchnorm import BatchNorm2d
from minicnn.layers.conv import Conv2d

FEW = settings(max_examples=20, deadline=None)


@st.composite
def conv_case(draw):
    """A small conv problem whose output is not empty."""
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    H = draw(st.integers(max(1, kh - 2 * ph), 8))
    W = draw(st.integers(max(1, kw - 2 * pw), 8))
    N, C, O = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**31))
    return dict(N=N, C=C, O=O, H=H, W=W, k=(kh, kw), s=(sh, sw), p=(ph, pw), seed=seed)


@st.composite
def pool_case(draw):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    H, W = draw(st.integers(kh, 9)), draw(st.integers(kw, 9))
    N, C = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return dict(shape=(N, C, H, W), k=(kh, kw), s=(sh, sw), seed=draw(st.integers(0, 2**31)))


# -- im2col / col2im -------------------------------------------------------------------
@FEW
@given(conv_case(), st.sampled_from([np.float32, np.float64]))
def test_im2col_matches_naive(case, dtype):
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((case["N"], case["C"], case["H"], case["W"])).astype(dtype)
    (kh, kw), (sh, sw), (ph, pw) = case["k"], case["s"], case["p"]
    want = R.im2col_naive(x, kh, kw, (sh, sw), (ph, pw))
    cols = np.full(want.shape, np.nan, dtype=dtype)  # every entry must be written
    im2col(x, kh, kw, sh, sw, ph, pw, cols)
    np.testing.assert_array_equal(cols, want)


@FEW
@given(conv_case())
def test_col2im_is_adjoint_of_im2col(case):
    """<im2col(x), c> == <x, col2im(c)> for all x, c: col2im is im2col transposed."""
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((case["N"], case["C"], case["H"], case["W"]))
    (kh, kw), (sh, sw), (ph, pw) = case["k"], case["s"], case["p"]
    cols = R.im2col_naive(x, kh, kw, (sh, sw), (ph, pw))
    c = rng.standard_normal(cols.shape)
    dx = col2im(c, kh, kw, sh, sw, ph, pw, np.full(x.shape, np.nan))
    assert np.isclose(np.sum(cols * c), np.sum(x * dx), rtol=1e-12, atol=1e-12)


@st.composite
def stride2_case(draw):
    """A stride-2 problem on im2col's parity sub-plane path (kernel >= 2, pad >= kernel - 2), odd and even sizes."""
    kh, kw = draw(st.integers(2, 4)), draw(st.integers(2, 4))
    ph, pw = draw(st.integers(max(0, kh - 2), 3)), draw(st.integers(max(0, kw - 2), 3))
    H = draw(st.integers(max(1, kh - 2 * ph), 11))
    W = draw(st.integers(max(1, kw - 2 * pw), 11))
    return dict(N=draw(st.integers(1, 3)), C=draw(st.integers(1, 3)), H=H, W=W, k=(kh, kw), s=(2, 2),
                p=(ph, pw), seed=draw(st.integers(0, 2**31)))


@FEW
@given(stride2_case(), st.sampled_from([np.float32, np.float64]))
def test_stride2_im2col_and_col2im_match_naive(case, dtype):
    """The parity sub-plane path: im2col equal to the naive copy; col2im equal to the naive scatter-add."""
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((case["N"], case["C"], case["H"], case["W"])).astype(dtype)
    (kh, kw), (ph, pw) = case["k"], case["p"]
    want = R.im2col_naive(x, kh, kw, (2, 2), (ph, pw))
    cols = np.full(want.shape, np.nan, dtype=dtype)
    im2col(x, kh, kw, 2, 2, ph, pw, cols)
    np.testing.assert_array_equal(cols, want)
    c = rng.standard_normal(want.shape).astype(dtype)
    ref = np.zeros(x.shape)        # dx[n, ch, h, w] = sum of the column entries copied from (h, w), in float64
    Ho, Wo = (x.shape[2] + 2 * ph - kh) // 2 + 1, (x.shape[3] + 2 * pw - kw) // 2 + 1
    for ch in range(x.shape[1]):
        for i in range(kh):
            for j in range(kw):
                for ho in range(Ho):
                    for wo in range(Wo):
                        h, w = 2 * ho - ph + i, 2 * wo - pw + j
                        if 0 <= h < x.shape[2] and 0 <= w < x.shape[3]:
                            ref[:, ch, h, w] += c[:, (ch * kh + i) * kw + j, ho * Wo + wo]
    dx = col2im(c.copy(), kh, kw, 2, 2, ph, pw, np.full(x.shape, np.nan, dtype=dtype))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(dx, ref, rtol=tol, atol=tol)


# -- convolution: layer (im2col + GEMM) vs naive loops -----------------------------------
@FEW
@given(conv_case(), st.booleans())
def test_conv_forward_backward_match_naive(case, bias):
    rng = np.random.default_rng(case["seed"])
    conv = Conv2d(case["C"], case["O"], case["k"], case["s"], case["p"], bias=bias, dtype=np.float64, rng=rng)
    x = rng.standard_normal((case["N"], case["C"], case["H"], case["W"]))
    w, b = conv.params["weight"], conv.params.get("bias")
    y = conv.forward(x)
    np.testing.assert_allclose(y, R.conv2d_forward_naive(x, w, b, case["s"], case["p"]), rtol=1e-10, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dx = conv.backward(dy)
    dx_ref, dw_ref, db_ref = R.conv2d_backward_naive(x, w, dy, case["s"], case["p"])
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(conv.grads["weight"], dw_ref, rtol=1e-10, atol=1e-12)
    if bias:
        np.testing.assert_allclose(conv.grads["bias"], db_ref, rtol=1e-10, atol=1e-12)


def test_conv_float32_close_to_float64(rng):
    x = rng.standard_normal((4, 3, 9, 9))
    c64 = Conv2d(3, 5, 3, stride=2, padding=1, dtype=np.float64, rng=np.random.default_rng(1))
    c32 = Conv2d(3, 5, 3, stride=2, padding=1, dtype=np.float32, rng=np.random.default_rng(1))
    y64, y32 = c64.forward(x), c32.forward(x)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, y64, rtol=1e-4, atol=1e-5)
    dy = rng.standard_normal(y64.shape)
    np.testing.assert_allclose(c32.backward(dy), c64.backward(dy), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(c32.grads["weight"], c64.grads["weight"], rtol=1e-4, atol=1e-4)


# -- pooling ----------------------------------------------------------------------------------
@FEW
@given(pool_case(), st.sampled_from([np.float32, np.float64]))
def test_maxpool_matches_naive(case, dtype):
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal(case["shape"]).astype(dtype)
    if case["seed"] % 2:  # few distinct values: many ties inside windows
        x = np.round(x).astype(dtype)
    (kh, kw), (sh, sw) = case["k"], case["s"]
    y_ref, arg_ref = R.maxpool2d_forward_naive(x, case["k"], case["s"])
    y = np.empty(y_ref.shape, dtype=dtype)
    arg = np.empty(y_ref.shape, dtype=np.int32)
    maxpool2d_forward(x, kh, kw, sh, sw, y, arg)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(arg, arg_ref)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = maxpool2d_backward(dy, arg, np.full(x.shape, np.nan, dtype=dtype))
    np.testing.assert_allclose(dx, R.maxpool2d_backward_naive(x, dy, case["k"], case["s"]), rtol=1e-6)


def test_maxpool_ties_go_to_first_max():
    x = np.zeros((1, 1, 4, 4))
    y = np.empty((1, 1, 2, 2))
    arg = np.empty((1, 1, 2, 2), dtype=np.int32)
    maxpool2d_forward(x, 2, 2, 2, 2, y, arg)
    np.testing.assert_array_equal(arg.ravel(), [0, 2, 8, 10])  # the top-left of each window
    dx = maxpool2d_backward(np.ones((1, 1, 2, 2)), arg, np.empty_like(x))
    want = np.zeros((4, 4))
    want[::2, ::2] = 1
    np.testing.assert_array_equal(dx[0, 0], want)


def test_maxpool_propagates_nan():
    x = np.array([[[[1.0, np.nan], [3.0, 2.0]]]])
    y = np.empty((1, 1, 1, 1))
    arg = np.empty((1, 1, 1, 1), dtype=np.int32)
    maxpool2d_forward(x, 2, 2, 2, 2, y, arg)
    assert np.isnan(y[0, 0, 0, 0]) and arg[0, 0, 0, 0] == 1


@pytest.mark.parametrize("k", [2, 3])             # the unrolled 2x2 loop and the general one
def test_maxpool_nan_rule_first_nan_wins_over_later_numbers_and_nans(k):
    """A NaN beats a number before it and is not replaced by a later number or a later NaN (the kernels'
    branch-free comparison keeps what the short-circuit one did)."""
    x = np.zeros((1, 1, k, k), dtype=np.float32)
    x[0, 0, 0, 1] = np.nan
    x[0, 0, k - 1, 0] = 5.0                # a larger number after the NaN
    x[0, 0, k - 1, k - 1] = np.nan         # and a second NaN
    y = np.empty((1, 1, 1, 1), dtype=np.float32)
    arg = np.empty((1, 1, 1, 1), dtype=np.int32)
    maxpool2d_forward(x, k, k, 2, 2, y, arg)
    assert np.isnan(y[0, 0, 0, 0]) and arg[0, 0, 0, 0] == 1
    x[0, 0, 0, 1] = 1.0                    # no NaN before the 5: the 5 wins, then the last NaN beats it
    maxpool2d_forward(x, k, k, 2, 2, y, arg)
    assert np.isnan(y[0, 0, 0, 0]) and arg[0, 0, 0, 0] == k * k - 1


def test_maxpool_2x2_every_window_of_nans_signed_zeros_and_ties_equals_the_naive_scan():
    """The 2x2 loop picks each row's winner, then row 1's only if it beats row 0's; the naive reference scans the
    four entries in row-major order. Every window over {NaN, -0, +0, 1, 2} (5^4, one per plane): the same index,
    and the same value bit for bit (the sign of a zero)."""
    import itertools
    vals = np.array([np.nan, -0.0, 0.0, 1.0, 2.0], dtype=np.float32)
    x = np.array(list(itertools.product(vals, repeat=4)), dtype=np.float32).reshape(-1, 1, 2, 2)
    y_ref, arg_ref = R.maxpool2d_forward_naive(x, (2, 2), (2, 2))
    y = np.empty(y_ref.shape, dtype=np.float32)
    arg = np.empty(y_ref.shape, dtype=np.int64)
    maxpool2d_forward(x, 2, 2, 2, 2, y, arg)
    np.testing.assert_array_equal(arg, arg_ref)
    np.testing.assert_array_equal(y.view(np.int32), y_ref.view(np.int32))


def test_maxpool_backward_refuses_a_non_contiguous_dx():
    arg = np.zeros((1, 1, 1, 1), dtype=np.int32)
    with pytest.raises(ValueError, match="C-contiguous"):
        maxpool2d_backward(np.ones((1, 1, 1, 1)), arg, np.zeros((1, 1, 4, 4))[:, :, :, ::2])


@FEW
@given(pool_case())
def test_avgpool_matches_naive(case):
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal(case["shape"])
    (kh, kw), (sh, sw) = case["k"], case["s"]
    y_ref = R.avgpool2d_forward_naive(x, case["k"], case["s"])
    y = avgpool2d_forward(x, kh, kw, sh, sw, np.empty(y_ref.shape))
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-14)
    dy = rng.standard_normal(y.shape)
    dx = avgpool2d_backward(dy, kh, kw, sh, sw, np.full(x.shape, np.nan))
    np.testing.assert_allclose(dx, R.avgpool2d_backward_naive(x.shape, dy, case["k"], case["s"]),
                               rtol=1e-12, atol=1e-14)


# -- batch norm -----------------------------------------------------------------------------
@FEW
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 5), st.integers(1, 5), st.integers(0, 2**31))
def test_batchnorm_train_matches_naive(N, C, H, W, seed):
    if N * H * W < 2:
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)) * 3 + rng.standard_normal((1, C, 1, 1))
    bn = BatchNorm2d(C, dtype=np.float64)
    bn.params["weight"][:] = rng.standard_normal(C)
    bn.params["bias"][:] = rng.standard_normal(C)
    y = bn.forward(x)
    y_ref, mean, var = R.batchnorm2d_forward_naive(x, bn.params["weight"], bn.params["bias"], bn.eps)
    np.testing.assert_allclose(y, y_ref, rtol=1e-9, atol=1e-9)
    m, v = channel_mean_var(x)
    np.testing.assert_allclose(m, mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(v, var, rtol=1e-10, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dx = bn.backward(dy)
    dx_ref, dg_ref, db_ref = R.batchnorm2d_backward_naive(x, bn.params["weight"], dy, bn.eps)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(bn.grads["weight"], dg_ref, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(bn.grads["bias"], db_ref, rtol=1e-9, atol=1e-10)


def test_channel_stats_accurate_with_large_mean(rng):
    """The shifted one-pass variance does not cancel catastrophically (|mean| >> std)."""
    x = (1e4 + rng.standard_normal((8, 2, 6, 6)).astype(np.float32)).astype(np.float32)
    mean, var = channel_mean_var(x)
    xd = x.astype(np.float64)
    np.testing.assert_allclose(mean, xd.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(var, xd.var(axis=(0, 2, 3)), rtol=1e-6)


# -- relu --------------------------------------------------------------------------------------
def test_relu_kernels(rng):
    x = rng.standard_normal(50000)  # several parallel chunks
    x[:3] = [0.0, -0.0, np.nan]
    y = relu_forward(x, np.empty_like(x))
    np.testing.assert_array_equal(y[3:], np.maximum(x[3:], 0))
    assert y[0] == 0 and y[1] == 0 and np.isnan(y[2])
    dy = rng.standard_normal(x.shape)
    dx = relu_backward(y, dy, np.empty_like(x))
    np.testing.assert_array_equal(dx[3:], np.where(x[3:] > 0, dy[3:], 0))
    assert dx[0] == 0 and dx[2] == 0


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 2, 7, 9)])
def test_maxpool_2x2_fast_path_matches_naive(shape, rng):
    """The unrolled 2x2 stride-2 path (odd sizes drop the last row/column), ties included."""
    x = np.round(rng.standard_normal(shape)).astype(np.float32)
    y_ref, arg_ref = R.maxpool2d_forward_naive(x, 2, 2)
    y = np.empty(y_ref.shape, dtype=np.float32)
    arg = np.empty(y_ref.shape, dtype=np.int32)
    maxpool2d_forward(x, 2, 2, 2, 2, y, arg)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(arg, arg_ref)


def test_gemm_thread_slices_cover_the_batch_in_order():
    from minicnn.kernels import gemm, threads
    assert threads._slices(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert threads._slices(1, 4) == [(0, 1)]
    out = threads.run_slices(lambda k, s, e: (k, s, e), 7)
    assert [r[1:] for r in out] == threads._slices(7, len(out)) and [r[0] for r in out] == list(range(len(out)))
    a = np.arange(6.0).reshape(2, 3)
    b = np.random.default_rng(0).standard_normal((5, 3, 4))
    np.testing.assert_allclose(gemm.matmul_batched(a, b, np.empty((5, 2, 4))), a @ b)
    d = np.random.default_rng(1).standard_normal((5, 2, 4))
    np.testing.assert_allclose(gemm.matmul_batched_sum_bt(d, b), np.einsum("nml,nkl->mk", d, b))


def _on_1_and_2_threads(fn):
    """[fn() on 1 thread, fn() on 2 threads] (whatever MINICNN_NUM_THREADS says); the thread count is restored."""
    from minicnn.kernels import process, threads
    before = threads.num_threads()
    try:
        if process.configure_threads(2) != 2:
            pytest.skip("numba has only one thread here: nothing to compare")
        results = []
        for n in (1, 2):
            assert process.configure_threads(n) == n
            results.append(fn())
        return results
    finally:
        process.configure_threads(before)


@pytest.mark.parametrize("kernel, stride, padding", [(3, 1, 1), (3, 2, 1), (1, 1, 0), (1, 2, 0)],
                         ids=["3x3", "3x3-s2", "1x1-pointwise", "1x1-s2"])
def test_conv_numbers_do_not_depend_on_the_thread_count(kernel, stride, padding, rng):
    """1 thread == 2 threads, bitwise, for y, dx and dW (dW is a sum over the batch: the order matters).

    The im2col path sums dW over chunks sized by the shapes; the pointwise
    (1x1 stride-1) path over chunks of ``gemm.SUM_CHUNK_BYTES``, also sized by
    the shapes. Both add the chunk sums in chunk order, whatever thread made them.
    Always compares 1 with 2 threads (whatever MINICNN_NUM_THREADS says).
    """
    conv = Conv2d(8, 16, kernel, stride=stride, padding=padding, rng=rng)
    x = rng.standard_normal((67, 8, 16, 16)).astype(np.float32)    # 67: chunks of unequal size
    dy = rng.standard_normal(conv.output_shape(x.shape)).astype(np.float32)

    def step():
        y = conv.forward(x)
        return y, conv.backward(dy), conv.grads["weight"].copy()

    for a, b in zip(*_on_1_and_2_threads(step)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("chunk_bytes", [1, 3000, 1 << 30], ids=["1-sample", "a-few-samples", "one-chunk"])
def test_batched_sum_is_the_same_for_any_thread_count(chunk_bytes, monkeypatch):
    """matmul_batched_sum_bt: equal to the float64 einsum, and bitwise equal on 1 and 2 threads."""
    from minicnn.kernels import gemm
    monkeypatch.setattr(gemm, "SUM_CHUNK_BYTES", chunk_bytes)
    r = np.random.default_rng(3)
    a = r.standard_normal((37, 6, 20)).astype(np.float32)
    b = r.standard_normal((37, 5, 20)).astype(np.float32)
    got = _on_1_and_2_threads(lambda: gemm.matmul_batched_sum_bt(a, b))
    np.testing.assert_array_equal(got[0], got[1])
    np.testing.assert_allclose(got[0], np.einsum("nml,nkl->mk", a.astype(np.float64), b.astype(np.float64)),
                               rtol=1e-4, atol=1e-4)


def test_ordered_sum_adds_in_number_order_whatever_the_arrival_order():
    """threads.OrderedSum: ((a0 + a1) + a2) + ... bitwise, for any arrival order, keeping only what waits."""
    from minicnn.kernels.threads import OrderedSum
    r = np.random.default_rng(5)
    parts = [r.standard_normal(50).astype(np.float32) * 10.0 ** r.integers(-3, 4) for _ in range(9)]
    expected = parts[0].copy()
    for p in parts[1:]:
        expected += p
    for order in ([8, 7, 6, 5, 4, 3, 2, 1, 0], list(r.permutation(9)), list(range(9))):
        s = OrderedSum()
        for k in order:
            s.add(int(k), parts[k].copy())
            assert len(s._waiting) <= 8
        assert not s._waiting
        np.testing.assert_array_equal(s.total, expected)


def test_batchnorm_relu_pool_numbers_do_not_depend_on_the_thread_count(rng):
    """The per-thread ranges of channels / planes give bitwise the same results on 1 and 2 threads."""
    from minicnn.layers import BatchNorm2d, MaxPool2d, ReLU
    x = rng.standard_normal((9, 5, 6, 6)).astype(np.float32)

    def passes():
        out = []
        for layer in (BatchNorm2d(5), ReLU(), MaxPool2d(2)):
            y = layer.forward(x)
            out += [y, layer.backward(np.linspace(-1, 1, y.size, dtype=np.float32).reshape(y.shape))]
            out += [g.copy() for g in layer.grads.values()]
        return out

    for a, b in zip(*_on_1_and_2_threads(passes)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shape", [(128, 300, 70), (3, 4, 5), (1, 2048, 2048)])
def test_threaded_matmul_equals_numpy_and_any_thread_count(shape, monkeypatch):
    """gemm.matmul: a @ b, bitwise the same on 1 and 2 threads (rows split, each row one BLAS call's)."""
    from minicnn.kernels import gemm
    monkeypatch.setattr(gemm, "MATMUL_SPLIT_MACS", 0)       # split even the small ones
    M, K, N = shape
    r = np.random.default_rng(8)
    a = r.standard_normal((K, M)).astype(np.float32).T      # a transposed view, as Linear passes dy.T
    b = r.standard_normal((K, N)).astype(np.float32)
    got = _on_1_and_2_threads(lambda: gemm.matmul(a, b))
    np.testing.assert_array_equal(got[0], got[1])
    np.testing.assert_allclose(got[0], a.astype(np.float64) @ b, rtol=1e-4, atol=1e-3)


_PROCESS_PROBE = r"""
import json, os, threading
def blas():
    from minicnn.kernels.process import _openblas_threads
    return [n for _, n in _openblas_threads()]
def state():
    from minicnn.kernels import threads
    import numba
    return {"omp": os.environ.get("OMP_WAIT_POLICY"), "blas": blas(), "pool": threads.num_threads(),
            "pool_threads": sum(t.name.startswith("minicnn-gemm") for t in threading.enumerate())}
import numpy as np
before = {"omp": os.environ.get("OMP_WAIT_POLICY"), "blas": blas()}
import minicnn, minicnn.kernels, minicnn.layers, minicnn.models, minicnn.training, minicnn.cli
from minicnn.models import build
model = build("convnet-small", seed=0)
model.forward(np.zeros((4, 3, 32, 32), np.float32))            # layers run without any setting applied
after_import = state()
from minicnn.kernels.process import speed_settings
with speed_settings(2):
    model.forward(np.zeros((4, 3, 32, 32), np.float32))
    inside = state()
after_block = state()
from minicnn.data import synthetic
from minicnn.training import SGD, ConstantLR, Trainer
m = build("convnet-small", seed=0)
Trainer(m, synthetic(n_train=32, n_test=16), SGD(m, 0.01), ConstantLR(0.01), 1, batch_size=16, progress=False).fit()
after_fit = state()
print(json.dumps({"before": before, "after_import": after_import, "inside": inside, "after_block": after_block,
                  "after_fit": after_fit}))
"""


def test_importing_minicnn_changes_no_process_wide_setting_and_the_trainer_puts_them_back():
    """No BLAS, malloc, environment or thread change at import; speed_settings (the CLI's, the Trainer's) undoes
    the thread counts and the environment variable it set. In a fresh process (this one runs under the settings)."""
    import json
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "MINICNN_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", _PROCESS_PROBE], env=env, capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    untouched = {"omp": None, "blas": r["before"]["blas"]}
    assert r["before"]["omp"] is None and r["before"]["blas"], r
    assert r["after_import"] == {**untouched, "pool": 1, "pool_threads": 0}
    assert r["inside"]["omp"] == "PASSIVE" and set(r["inside"]["blas"]) == {1}
    assert r["inside"]["pool"] == min(2, os.cpu_count() or 1)
    for when in ("after_block", "after_fit"):
        assert {k: r[when][k] for k in ("omp", "blas", "pool")} == {**untouched, "pool": 1}, (when, r)


def test_the_thread_pool_still_imports_from_gemm_for_one_release():
    from minicnn.kernels import gemm, process, threads
    assert gemm.run_slices is threads.run_slices and gemm.for_chunks is threads.for_chunks
    assert gemm.OrderedSum is threads.OrderedSum and gemm.run_on_threads is threads.run_on_threads
    assert gemm.configure_threads is process.configure_threads and gemm._threads == threads.num_threads()


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 70_000), st.floats(0.0, 1.0), st.sampled_from([np.float32, np.float64]),
       st.integers(-2, 70_001), st.booleans(), st.integers(0, 2**31))
def test_nonzero_counts_equal_numpy(n, density, dtype, limit, strided, seed):
    """count_nonzero == np.count_nonzero; fewer_nonzeros_than(a, limit) == (np.count_nonzero(a) < limit),
    across the early stop at every block boundary, for contiguous and non-contiguous arrays (NumPy's fallback)."""
    from minicnn.kernels.elementwise import count_nonzero, fewer_nonzeros_than
    rng = np.random.default_rng(seed)
    a = np.where(rng.random(2 * n) < density, rng.standard_normal(2 * n), 0.0).astype(dtype)
    a = a[::2] if strided else a[:n]
    want = int(np.count_nonzero(a))
    assert count_nonzero(a) == want
    assert fewer_nonzeros_than(a, limit) == (want < limit)
    assert fewer_nonzeros_than(a, want) is False and fewer_nonzeros_than(a, want + 1) is True
