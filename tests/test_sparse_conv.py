"""The sparse-dy conv backward (minicnn.kernels.sparse_conv) equals the dense path on the same pruned dy."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minicnn.kernels import reference as R
from minicnn.kernels.conv2d import conv2d_backward
from minicnn.kernels.sparse_conv import sparse_conv2d_backward
from minicnn.methods._dbtd import dbtd_prune


@st.composite
def case(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    H = draw(st.integers(max(1, kh - 2 * ph), 9))
    W = draw(st.integers(max(1, kw - 2 * pw), 9))
    return dict(N=draw(st.integers(1, 3)), C=draw(st.integers(1, 5)), O=draw(st.integers(1, 4)), H=H, W=W,
                k=(kh, kw), s=(sh, sw), p=(ph, pw), seed=draw(st.integers(0, 2**31)),
                density=draw(st.sampled_from([0.0, 0.05, 0.3, 1.0])))


def dense(x, w, dy, s, p):
    N, O = dy.shape[:2]
    kh, kw = w.shape[2:]
    dx = np.empty_like(x)
    dw2 = conv2d_backward(x, w.reshape(O, -1), (kh, kw, *s, *p), dy.reshape(N, O, -1), True, dx)
    return dw2.reshape(w.shape), dx


@settings(max_examples=40, deadline=None)
@given(case(), st.sampled_from([np.float64, np.float32]))
def test_sparse_equals_dense_and_naive(c, dtype):
    rng = np.random.default_rng(c["seed"])
    x = rng.standard_normal((c["N"], c["C"], c["H"], c["W"])).astype(dtype)
    w = rng.standard_normal((c["O"], c["C"], *c["k"])).astype(dtype)
    Ho = (c["H"] + 2 * c["p"][0] - c["k"][0]) // c["s"][0] + 1
    Wo = (c["W"] + 2 * c["p"][1] - c["k"][1]) // c["s"][1] + 1
    dy = rng.standard_normal((c["N"], c["O"], Ho, Wo)).astype(dtype)
    dy[rng.random(dy.shape) >= c["density"]] = 0
    dw, dx = sparse_conv2d_backward(x, w, dy, c["s"], c["p"])
    dw_d, dx_d = dense(x, w, dy, c["s"], c["p"])
    dx_n, dw_n, _ = R.conv2d_backward_naive(x.astype(np.float64), w.astype(np.float64), dy.astype(np.float64),
                                             c["s"], c["p"])
    tol = dict(rtol=1e-11, atol=1e-11) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-4)
    np.testing.assert_allclose(dw, dw_d, **tol)
    np.testing.assert_allclose(dx, dx_d, **tol)
    np.testing.assert_allclose(dw, dw_n, **tol)
    np.testing.assert_allclose(dx, dx_n, **tol)
    assert dw.dtype == dx.dtype == dtype and dw.shape == w.shape and dx.shape == x.shape


@pytest.mark.parametrize("shape,k,s,p", [((4, 16, 16, 16), 3, 1, 1), ((4, 16, 16, 16), 3, 2, 1),
                                         ((2, 8, 10, 10), 3, 1, 2), ((3, 8, 8, 8), 1, 2, 0)])
def test_on_a_dbtd_pruned_gradient(rng, shape, k, s, p):
    """The real use: dy pruned by DBTD (values 0, +-tau, or large), one-sided options."""
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((12, shape[1], k, k)).astype(np.float32)
    Ho = (shape[2] + 2 * p - k) // s + 1
    dy, tau, _, nnz = dbtd_prune(rng.standard_normal((shape[0], 12, Ho, Ho)).astype(np.float32), 0.95, 5)
    assert 0 < nnz < dy.size
    dw_d, dx_d = dense(x, w, dy, (s, s), (p, p))
    dw, none = sparse_conv2d_backward(x, w, dy, (s, s), (p, p), want_dx=False)
    assert none is None
    np.testing.assert_allclose(dw, dw_d, rtol=1e-4, atol=1e-4)
    none, dx = sparse_conv2d_backward(x, w, dy, (s, s), (p, p), want_dw=False)
    assert none is None
    np.testing.assert_allclose(dx, dx_d, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("stride,padding,bias", [(1, 1, False), (2, 1, True), (1, 0, True)])
def test_conv2d_layer_takes_the_sparse_path_below_its_threshold(rng, stride, padding, bias):
    """Conv2d.sparse_backward_below switches the path; the gradients stay those of the layer
    (float64 numerical gradient with a random sparse upstream gradient)."""
    from minicnn.gradcheck import numerical_gradient, rel_error
    from minicnn.layers.conv import Conv2d

    conv = Conv2d(3, 4, 3, stride=stride, padding=padding, bias=bias, dtype=np.float64, rng=rng)
    conv.needs_input_grad = True
    x = rng.standard_normal((2, 3, 6, 6))
    y = conv.forward(x)
    dy = rng.standard_normal(y.shape) * (rng.random(y.shape) < 0.2)      # density ~0.2
    dense_dx = conv.backward(dy)
    dense_dw = conv.grads["weight"].copy()
    conv.sparse_backward_below = 0.5
    calls = []
    import minicnn.layers.conv as conv_module
    original = conv_module.sparse_conv2d_backward
    conv_module.sparse_conv2d_backward = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        conv.forward(x)
        dx = conv.backward(dy)
        assert calls == [1]                        # the sparse path ran
        conv.forward(x)
        conv.backward(rng.standard_normal(y.shape))  # a dense dy: density 1 >= 0.5, the GEMM path
        assert calls == [1]
        conv.forward(x)
        conv.backward(dy)
    finally:
        conv_module.sparse_conv2d_backward = original
    np.testing.assert_allclose(dx, dense_dx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv.grads["weight"], dense_dw, rtol=1e-12, atol=1e-12)
    num_dx = numerical_gradient(lambda v: conv.forward(v), x, dy, h=1e-5)
    num_dw = numerical_gradient(lambda _: conv.forward(x), conv.params["weight"], dy, h=1e-5)
    assert rel_error(dx, num_dx) < 1e-7 and rel_error(conv.grads["weight"], num_dw) < 1e-7
    if bias:
        np.testing.assert_allclose(conv.grads["bias"], dy.sum(axis=(0, 2, 3)), rtol=1e-12)


def test_crossover_table_is_monotone_in_channels():
    from minicnn.kernels.sparse_conv import sparse_crossover
    values = [sparse_crossover(c) for c in (1, 3, 16, 17, 32, 64, 128, 192, 256, 4096)]
    assert values == sorted(values) and values[0] == 0.0 and all(0 <= v < 1 for v in values)
