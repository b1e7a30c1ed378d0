"""Winograd F(2x2, 3x3) (minicnn.kernels.winograd) == the naive convolution, within its derived error bound."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minicnn.kernels import conv2d, gemm
from minicnn.kernels import reference as R
from minicnn.kernels import winograd as Wg
from minicnn.layers.conv import Conv2d

FEW = settings(max_examples=25, deadline=None)


@st.composite
def case(draw):
    """A stride-1 3x3 problem (padding 0-3 per axis, odd and even sizes) whose output is not empty."""
    ph, pw = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    H = draw(st.integers(max(1, 3 - 2 * ph), 9))
    W = draw(st.integers(max(1, 3 - 2 * pw), 9))
    return dict(N=draw(st.integers(1, 4)), C=draw(st.integers(1, 5)), O=draw(st.integers(1, 5)), H=H, W=W,
                p=(ph, pw), seed=draw(st.integers(0, 2**31)))


def _arrays(c, dtype):
    rng = np.random.default_rng(c["seed"])
    x = rng.standard_normal((c["N"], c["C"], c["H"], c["W"])).astype(dtype)
    w = rng.standard_normal((c["O"], c["C"], 3, 3)).astype(dtype)
    Ho, Wo = c["H"] + 2 * c["p"][0] - 2, c["W"] + 2 * c["p"][1] - 2
    dy = rng.standard_normal((c["N"], c["O"], Ho, Wo)).astype(dtype)
    return x, w, dy


def _winograd(x, w, dy, p):
    y = np.full(dy.shape, np.nan, dtype=x.dtype)       # every output must be written
    Wg.winograd_forward(x, w, p[0], p[1], y)
    dx = np.full(x.shape, np.nan, dtype=x.dtype)
    Wg.winograd_input_grad(dy, w, p[0], p[1], dx)
    return y, dx, Wg.winograd_weight_grad(x, dy, p[0], p[1])


# -- the fast kernels against the naive convolution, at the bound of the module docstring -----------------------
@FEW
@given(case(), st.sampled_from([np.float32, np.float64]))
def test_winograd_matches_naive_within_the_error_bound(c, dtype):
    x, w, dy = _arrays(c, dtype)
    got = _winograd(x, w, dy, c["p"])
    x64, w64, dy64 = (a.astype(np.float64) for a in (x, w, dy))
    y_ref = R.conv2d_forward_naive(x64, w64, None, 1, c["p"])
    dx_ref, dw_ref, _ = R.conv2d_backward_naive(x64, w64, dy64, 1, c["p"])
    bounds = Wg.error_bound(x, w, dy, c["p"], dtype)
    for name, a, ref, bound in zip(("y", "dx", "dW"), got, (y_ref, dx_ref, dw_ref), bounds):
        assert a.dtype == dtype and a.shape == ref.shape
        err = np.abs(a.astype(np.float64) - ref)
        # the naive reference's own float64 rounding, next to the float32 bound (it matters for float64 only)
        slack = 1e-13 * (1 + np.abs(ref))
        assert np.all(err <= bound + slack), f"{name}: error {err.max():.3g} above its bound"


def test_error_bound_is_tight_enough_to_catch_a_wrong_transform(rng, monkeypatch):
    """The bound is loose (worst case) but far below what a wrong transform entry does."""
    x = rng.standard_normal((2, 16, 8, 8)).astype(np.float32)
    w = rng.standard_normal((4, 16, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    bound = Wg.error_bound(x, w, dy, 1, np.float32)[0]
    wrong = Wg.G.copy()
    wrong[1, 1] *= 1 + 1e-3
    monkeypatch.setattr(Wg, "G", wrong)
    y = np.empty(dy.shape, dtype=np.float32)
    Wg.winograd_forward(x, w, 1, 1, y)
    err = np.abs(y - R.conv2d_forward_naive(x.astype(np.float64), w.astype(np.float64), None, 1, 1))
    assert np.any(err > bound)


@pytest.mark.parametrize("shape,pad", [((3, 16, 32, 32), 1), ((2, 32, 16, 16), 1), ((2, 64, 8, 8), 1),
                                       ((2, 64, 17, 17), 2), ((2, 24, 9, 9), 1)],
                         ids=["resnet-16@32", "resnet-32@16", "resnet-64@8", "alexnet-64@17p2", "odd-9x9"])
def test_winograd_at_the_models_shapes(shape, pad, rng):
    """Real layer shapes in float32 (several chunks, both paddings of the models) == float64 im2col.

    (im2col in float64 stands in for the naive loops here, too slow at these sizes; test_kernels holds the
    two equal.) Kaiming-scaled weights as in training: errors of a few 1e-6, inside 1e-4 relative.
    """
    N, C, H, W = shape
    O = 8
    x = rng.standard_normal(shape).astype(np.float32)
    w = (rng.standard_normal((O, C, 3, 3)) / np.sqrt(9 * C)).astype(np.float32)
    dy = rng.standard_normal((N, O, H + 2 * pad - 2, W + 2 * pad - 2)).astype(np.float32)
    x64, w64, dy64 = (a.astype(np.float64) for a in (x, w, dy))
    y, dx, dw = _winograd(x, w, dy, (pad, pad))
    geom = (3, 3, 1, 1, pad, pad)
    y_ref = conv2d.im2col_forward(x64, w64.reshape(O, -1), geom, np.empty((N, O, dy.shape[2] * dy.shape[3])))
    dx_ref = np.empty_like(x64)
    dw_ref = conv2d.im2col_backward(x64, w64.reshape(O, -1), geom, dy64.reshape(N, O, -1), True, dx_ref)
    np.testing.assert_allclose(y, y_ref.reshape(y.shape), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dw, dw_ref.reshape(dw.shape), rtol=1e-4, atol=1e-4)


# -- the pieces: each numba transform is its matrix; the tile-by-tile reference is the convolution ----------
def test_transform_kernels_are_the_matrices(rng):
    """Integer-valued inputs: B^T d B, A^T m A and A dY A^T are exact, so the kernels equal the matrix products,
    at every real tile of the numbering t = (n*th + ty)*(tw + 1) + tx; dy's padding tiles (tx = tw) are 0.
    Scratch buffers start as NaN: a kernel that read one before writing it would show."""
    b, C, H, W, ph, pw = 2, 3, 7, 6, 1, 2
    x = rng.integers(-8, 9, (b, C, H, W)).astype(np.float64)
    Ho, Wo = H + 2 * ph - 2, W + 2 * pw - 2
    th, tw = Wg.tiles(Ho, Wo)
    T = b * th * (tw + 1)
    Wp = 2 * tw + 2

    def scratch():
        return np.full((4, b * th * Wp + 2), np.nan), np.zeros(Wp)
    V = np.full((16, C, T), np.nan)
    Wg.winograd_input_nogil(x, ph, pw, th, tw, V, *scratch())
    xp = np.zeros((b, C, 2 * th + 2, 2 * tw + 2))
    xp[:, :, ph:ph + H, pw:pw + W] = x
    dy = rng.integers(-8, 9, (b, C, Ho, Wo)).astype(np.float64)
    dyp = np.zeros((b, C, 2 * th, 2 * tw))
    dyp[:, :, :Ho, :Wo] = dy
    dM = np.full((16, C, T), np.nan)
    Wg.winograd_dy_nogil(dy, th, tw, dM, *scratch())
    M = rng.integers(-8, 9, (16, C, T)).astype(np.float64)
    y = np.full((b, C, Ho, Wo), np.nan)
    Wg.winograd_output_nogil(M, th, tw, y, scratch()[0])
    assert np.isfinite(V).all()                  # padding tiles too: dW multiplies them by dM's zeros
    for n in range(b):
        for c in range(C):
            for ty in range(th):
                np.testing.assert_array_equal(dM[:, c, (n * th + ty) * (tw + 1) + tw], 0)   # the padding tile
                for tx in range(tw):
                    t = (n * th + ty) * (tw + 1) + tx         # the tile numbering of the module docstring
                    d = xp[n, c, 2 * ty:2 * ty + 4, 2 * tx:2 * tx + 4]
                    np.testing.assert_array_equal(V[:, c, t].reshape(4, 4), Wg.BT @ d @ Wg.BT.T)
                    g = dyp[n, c, 2 * ty:2 * ty + 2, 2 * tx:2 * tx + 2]
                    np.testing.assert_array_equal(dM[:, c, t].reshape(4, 4), Wg.AT.T @ g @ Wg.AT)
                    Y = Wg.AT @ M[:, c, t].reshape(4, 4) @ Wg.AT.T
                    rows, cols = min(2, Ho - 2 * ty), min(2, Wo - 2 * tx)
                    np.testing.assert_array_equal(y[n, c, 2 * ty:2 * ty + rows, 2 * tx:2 * tx + cols],
                                                  Y[:rows, :cols])


def test_input_grad_kernel_is_the_adjoint_of_the_input_transform(rng):
    """<V(x), dV> == <x, V^T(dV)> for dV zero at the padding tiles (as dL/dx receives it): the two kernels are
    transposes of each other, at integer values exactly, over paddings 0-2 and odd and even sizes."""
    for (H, W, ph, pw) in [(7, 6, 1, 2), (8, 8, 1, 1), (5, 9, 0, 2), (6, 3, 2, 0)]:
        b, C = 2, 3
        Ho, Wo = H + 2 * ph - 2, W + 2 * pw - 2
        th, tw = Wg.tiles(Ho, Wo)
        T = b * th * (tw + 1)
        Wp = 2 * tw + 2
        x = rng.integers(-8, 9, (b, C, H, W)).astype(np.float64)
        dV = rng.integers(-8, 9, (16, C, b, th, tw + 1)).astype(np.float64)
        dV[..., tw] = 0
        dV = dV.reshape(16, C, T)
        V = np.empty((16, C, T))
        Wg.winograd_input_nogil(x, ph, pw, th, tw, V, np.full((4, b * th * Wp + 2), np.nan), np.zeros(Wp))
        dx = np.full(x.shape, np.nan)
        Wg.winograd_input_grad_nogil(dV, ph, pw, th, tw, dx, np.full((4, b * th * Wp + 2), np.nan), np.zeros(Wp))
        assert np.sum(V * dV) == np.sum(x * dx), (H, W, ph, pw)


def test_weight_transform_is_g_w_gt_per_filter(rng):
    """U[:, o, c] is G w[o, c] G^T as a 4x4 (xi = 4a + b), and dW[o, c] is G^T dU[:, o, c] G, filter by filter."""
    w = rng.standard_normal((3, 2, 3, 3))
    dU = rng.standard_normal((16, 3, 2))
    U, dW = Wg.weight_transform(w, np.float64), Wg.weight_grad_transform(dU)
    for o in range(3):
        for c in range(2):
            np.testing.assert_allclose(U[:, o, c].reshape(4, 4), Wg.G @ w[o, c] @ Wg.G.T, rtol=1e-14, atol=1e-15)
            np.testing.assert_allclose(dW[o, c], Wg.G.T @ dU[:, o, c].reshape(4, 4) @ Wg.G, rtol=1e-14, atol=1e-15)


def test_weight_transform_in_float32_is_the_float64_product_rounded_once(rng):
    """float32 U (and U^T for dL/dx) = G w G^T formed per filter in float64, then rounded: bit for bit."""
    w = (rng.standard_normal((5, 4, 3, 3)) * rng.choice([1e-3, 1.0, 30.0], size=(5, 4, 1, 1))).astype(np.float32)
    want = np.stack([[(Wg.G @ w[o, c].astype(np.float64) @ Wg.G.T).reshape(16) for c in range(4)] for o in range(5)])
    want = want.transpose(2, 0, 1).astype(np.float32)                       # (16, O, C)
    np.testing.assert_array_equal(Wg.weight_transform(w, np.float32), want)
    np.testing.assert_array_equal(Wg.weight_transform(w, np.float32, transposed=True), want.transpose(0, 2, 1))
    dU = rng.standard_normal((16, 5, 4)).astype(np.float32)
    want_dw = np.stack([[Wg.G.T @ dU[:, o, c].astype(np.float64).reshape(4, 4) @ Wg.G for c in range(4)]
                        for o in range(5)]).astype(np.float32)
    np.testing.assert_array_equal(Wg.weight_grad_transform(dU), want_dw)


def test_weight_transforms_are_adjoint(rng):
    """<G w G^T, dU> == <w, G^T dU G>: the weight-gradient transform is the transpose of the weight transform."""
    w = rng.standard_normal((3, 2, 3, 3))
    dU = rng.standard_normal((16, 3, 2))
    lhs = np.sum(Wg.weight_transform(w, np.float64) * dU)
    assert np.isclose(lhs, np.sum(w * Wg.weight_grad_transform(dU)), rtol=1e-12)


@settings(max_examples=10, deadline=None)
@given(case())
def test_tile_by_tile_reference_is_the_convolution(c):
    x, w, dy = _arrays(c, np.float64)
    np.testing.assert_allclose(R.winograd_conv2d_naive(x, w, c["p"], Wg.BT, Wg.G, Wg.AT),
                               R.conv2d_forward_naive(x, w, None, 1, c["p"]), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(R.winograd_weight_grad_naive(x, dy, c["p"], Wg.BT, Wg.G, Wg.AT),
                               R.conv2d_backward_naive(x, w, dy, 1, c["p"])[1], rtol=1e-12, atol=1e-12)


# -- dispatch, determinism ---------------------------------------------------------------------------------------
def test_dispatch_takes_winograd_only_where_it_applies(monkeypatch):
    monkeypatch.setattr(conv2d, "ALGORITHM", "auto")
    assert conv2d.use_winograd((128, 16, 32, 32), 16, (3, 3, 1, 1, 1, 1))
    assert not conv2d.use_winograd((128, 16, 32, 32), 32, (3, 3, 2, 2, 1, 1))      # stride 2
    assert not conv2d.use_winograd((128, 16, 32, 32), 16, (1, 1, 1, 1, 0, 0))      # 1x1
    assert conv2d.use_winograd((128, 16, 32, 32), 16, (3, 3, 1, 1, 3, 0))          # any padding
    assert not conv2d.use_winograd((128, 3, 32, 32), 16, (3, 3, 1, 1, 1, 1))       # 3 input channels: slower
    monkeypatch.setattr(conv2d, "ALGORITHM", "im2col")
    assert not conv2d.use_winograd((128, 16, 32, 32), 16, (3, 3, 1, 1, 1, 1))
    monkeypatch.setattr(conv2d, "ALGORITHM", "winograd")
    assert conv2d.use_winograd((128, 3, 32, 32), 16, (3, 3, 1, 1, 1, 1))
    assert not conv2d.use_winograd((128, 16, 32, 32), 32, (3, 3, 2, 2, 1, 1))
    monkeypatch.setattr(conv2d, "ALGORITHM", "fft")
    with pytest.raises(ValueError, match="auto, im2col or winograd"):
        conv2d.use_winograd((128, 16, 32, 32), 16, (3, 3, 1, 1, 1, 1))


def test_env_variable_sets_the_default(monkeypatch):
    import importlib
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", "from minicnn.kernels import conv2d; print(conv2d.ALGORITHM)"],
                         capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "MINICNN_CONV_ALGO": "im2col"}).stdout.strip()
    assert out == "im2col"
    assert importlib.import_module("minicnn.kernels.conv2d").ALGORITHM in ("auto", "im2col", "winograd")


@pytest.mark.parametrize("algorithm", ["im2col", "winograd"])
def test_layer_on_either_path_equals_naive(algorithm, rng, monkeypatch):
    """Conv2d forward/backward (bias, dW, dx) on the forced path == the naive reference (float64)."""
    monkeypatch.setattr(conv2d, "ALGORITHM", algorithm)
    conv = Conv2d(5, 4, 3, padding=(1, 2), dtype=np.float64, rng=rng)
    conv.needs_input_grad = True
    x = rng.standard_normal((3, 5, 7, 6))
    y = conv.forward(x)
    w, b = conv.params["weight"], conv.params["bias"]
    np.testing.assert_allclose(y, R.conv2d_forward_naive(x, w, b, 1, (1, 2)), rtol=1e-10, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dx = conv.backward(dy)
    dx_ref, dw_ref, db_ref = R.conv2d_backward_naive(x, w, dy, 1, (1, 2))
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(conv.grads["weight"], dw_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(conv.grads["bias"], db_ref, rtol=1e-10, atol=1e-12)


def test_weight_grad_alone_equals_the_full_backward(rng, monkeypatch):
    """conv2d_weight_grad (the one weight-gradient function) == the dW of conv2d_backward, bitwise, both paths."""
    x = rng.standard_normal((5, 16, 8, 8)).astype(np.float32)
    dy = rng.standard_normal((5, 8, 8, 8)).astype(np.float32)
    w2 = rng.standard_normal((8, 16 * 9)).astype(np.float32)
    geom = (3, 3, 1, 1, 1, 1)
    for algorithm in ("im2col", "winograd"):
        monkeypatch.setattr(conv2d, "ALGORITHM", algorithm)
        full = conv2d.conv2d_backward(x, w2, geom, dy.reshape(5, 8, 64), True, np.empty_like(x))
        alone = conv2d.conv2d_weight_grad(x, dy.reshape(5, 8, 64), geom, 8)
        np.testing.assert_array_equal(full, alone)


def test_winograd_numbers_do_not_depend_on_the_thread_count(rng, monkeypatch):
    """1 thread == 2 threads, bitwise, for y, dx and dW: the chunks (and dW's sum order) depend on the shapes only."""
    monkeypatch.setattr(conv2d, "ALGORITHM", "winograd")
    monkeypatch.setattr(Wg, "MIN_CHUNK_TILES", 1)
    monkeypatch.setattr(Wg, "CHUNK_BYTES", 100_000)          # several chunks, of unequal size (67 images)
    conv = Conv2d(16, 8, 3, padding=1, rng=rng)
    conv.needs_input_grad = True
    x = rng.standard_normal((67, 16, 12, 12)).astype(np.float32)
    dy = rng.standard_normal(conv.output_shape(x.shape)).astype(np.float32)

    def step():
        y = conv.forward(x)
        return y, conv.backward(dy), conv.grads["weight"].copy()

    before = gemm._threads
    try:
        if gemm.configure_threads(2) != 2:
            pytest.skip("numba has only one thread here: nothing to compare")
        results = [(gemm.configure_threads(n), step())[1] for n in (1, 2)]
    finally:
        gemm.configure_threads(before)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
