"""Leaf layers: gradient checks (float64, central differences, random upstream
gradient), BatchNorm semantics, the requires_grad / needs_input_grad contract,
shapes, dtypes and error messages."""
import numpy as np
import pytest

from minicnn.gradcheck import check_layer_gradients, numerical_gradient, rel_error
from minicnn.layers.activation import ReLU
from minicnn.layers.base import ShapeError
from minicnn.layers.batchnorm import BatchNorm2d
from minicnn.layers.conv import Conv2d
from minicnn.layers.linear import Flatten, Linear
from minicnn.layers.pooling import AvgPool2d, GlobalAvgPool2d, MaxPool2d

TOL = 1e-6  # max CS231n relative error for float64 central differences, h = 1e-5
F64 = np.float64


def _bn(C, rng, dtype=F64):
    bn = BatchNorm2d(C, dtype=dtype)
    bn.params["weight"][:] = rng.uniform(0.5, 1.5, C) * rng.choice([-1, 1], C)
    bn.params["bias"][:] = rng.standard_normal(C)
    return bn


# (layer factory, input shape): every leaf, the awkward configurations included
CASES = {
    "conv3x3_s1_p1": (lambda r: Conv2d(3, 4, 3, padding=1, dtype=F64, rng=r), (2, 3, 5, 5)),
    "conv_nonsquare_stride_pad": (lambda r: Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 2), dtype=F64, rng=r),
                                  (2, 2, 7, 6)),
    "conv1x1_s2_nobias": (lambda r: Conv2d(3, 4, 1, stride=2, bias=False, dtype=F64, rng=r), (2, 3, 5, 6)),
    "conv1x1_pointwise": (lambda r: Conv2d(3, 2, 1, dtype=F64, rng=r), (2, 3, 4, 3)),
    "conv_k_gt_stride": (lambda r: Conv2d(2, 2, 4, stride=3, padding=2, dtype=F64, rng=r), (1, 2, 7, 8)),
    "bn_train": (lambda r: _bn(3, r), (4, 3, 3, 2)),
    "relu": (lambda r: ReLU(dtype=F64), (2, 3, 4, 4)),
    "maxpool2": (lambda r: MaxPool2d(2, dtype=F64), (2, 2, 6, 5)),
    "maxpool3_s2_overlap": (lambda r: MaxPool2d(3, stride=2, dtype=F64), (2, 2, 7, 7)),
    "maxpool_nonsquare": (lambda r: MaxPool2d((2, 3), stride=(1, 2), dtype=F64), (1, 2, 5, 7)),
    "avgpool2": (lambda r: AvgPool2d(2, dtype=F64), (2, 2, 4, 5)),
    "avgpool3_s2_overlap": (lambda r: AvgPool2d(3, stride=2, dtype=F64), (2, 2, 7, 6)),
    "gap": (lambda r: GlobalAvgPool2d(dtype=F64), (2, 3, 3, 4)),
    "flatten": (lambda r: Flatten(dtype=F64), (2, 3, 2, 2)),
    "linear": (lambda r: Linear(6, 4, dtype=F64, rng=r), (3, 6)),
    "linear_nobias": (lambda r: Linear(5, 3, bias=False, dtype=F64, rng=r), (4, 5)),
    "linear_3d": (lambda r: Linear(5, 3, dtype=F64, rng=r), (2, 4, 5)),   # (N, *, in) like PyTorch
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradients_match_central_differences(case, rng):
    make, shape = CASES[case]
    layer = make(rng)
    errors = check_layer_gradients(layer, rng.standard_normal(shape), rng)
    assert set(errors) == {"x"} | set(layer.params)
    assert max(errors.values()) < TOL, errors


def test_batchnorm_eval_gradients(rng):
    bn = _bn(3, rng)
    bn.buffers["running_mean"][:] = rng.standard_normal(3)
    bn.buffers["running_var"][:] = rng.uniform(0.5, 2, 3)
    bn.eval()
    errors = check_layer_gradients(bn, rng.standard_normal((3, 3, 2, 2)), rng)
    assert max(errors.values()) < TOL, errors


def test_gradcheck_detects_a_wrong_gradient(rng):
    """The checker is not a tautology: a layer with a broken backward fails it."""
    class Broken(ReLU):
        def backward(self, dy):
            return super().backward(dy) * 1.001
    errors = check_layer_gradients(Broken(dtype=F64), rng.standard_normal((2, 3)), rng)
    assert errors["x"] > 1e-4


def test_numerical_gradient_and_rel_error(rng):
    x = rng.standard_normal(5)
    dy = rng.standard_normal(5)
    g = numerical_gradient(lambda v: v ** 3, x, dy)
    assert rel_error(g, 3 * x ** 2 * dy) < 1e-7
    assert rel_error(np.ones(3), np.ones(3)) == 0.0
    assert rel_error([1.0], [3.0]) == pytest.approx(0.5)


# -- BatchNorm semantics -----------------------------------------------------------------------
def test_batchnorm_running_stats_follow_torch_rule(rng):
    bn = BatchNorm2d(3, momentum=0.2, dtype=F64)
    rm, rv = np.zeros(3), np.ones(3)
    for _ in range(4):
        x = rng.standard_normal((5, 3, 2, 3)) * 2 + 1
        bn.forward(x)
        n = 5 * 2 * 3
        mean = x.mean(axis=(0, 2, 3))
        unbiased = ((x - mean[None, :, None, None]) ** 2).sum(axis=(0, 2, 3)) / (n - 1)
        rm = 0.8 * rm + 0.2 * mean
        rv = 0.8 * rv + 0.2 * unbiased
    np.testing.assert_allclose(bn.buffers["running_mean"], rm, rtol=1e-12)
    np.testing.assert_allclose(bn.buffers["running_var"], rv, rtol=1e-12)


def test_batchnorm_train_normalizes_with_biased_batch_variance(rng):
    x = rng.standard_normal((6, 2, 3, 3)) * 4 - 2
    y = BatchNorm2d(2, eps=0.0 + 1e-12, dtype=F64).forward(x)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1, rtol=1e-9)  # np.var is biased


def test_batchnorm_eval_uses_running_stats_and_updates_nothing(rng):
    bn = _bn(2, rng)
    bn.buffers["running_mean"][:] = [0.5, -1.0]
    bn.buffers["running_var"][:] = [4.0, 0.25]
    bn.eval()
    x = rng.standard_normal((3, 2, 2, 2))
    y = bn.forward(x)
    g, b = bn.params["weight"], bn.params["bias"]
    want = (g[None, :, None, None] * (x - np.array([0.5, -1.0])[None, :, None, None])
            / np.sqrt(np.array([4.0, 0.25]) + bn.eps)[None, :, None, None] + b[None, :, None, None])
    np.testing.assert_allclose(y, want, rtol=1e-12)
    np.testing.assert_array_equal(bn.buffers["running_mean"], [0.5, -1.0])
    np.testing.assert_array_equal(bn.buffers["running_var"], [4.0, 0.25])


def test_batchnorm_rejects_single_value_per_channel_in_training():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        BatchNorm2d(2).forward(np.ones((1, 2, 1, 1)))


def test_batchnorm_buffers_updated_in_place(rng):
    bn = BatchNorm2d(2)
    rm = bn.buffers["running_mean"]
    bn.forward(rng.standard_normal((4, 2, 3, 3)).astype(np.float32))
    assert bn.buffers["running_mean"] is rm and rm.dtype == np.float32 and np.any(rm != 0)


# -- the contract: no input mutation, requires_grad, needs_input_grad ---------------------------
@pytest.mark.parametrize("case", sorted(CASES))
def test_inputs_and_upstream_grads_not_mutated(case, rng):
    make, shape = CASES[case]
    layer = make(rng)
    x = rng.standard_normal(shape)
    x0 = x.copy()
    y = layer.forward(x)
    dy = rng.standard_normal(y.shape)
    dy0 = dy.copy()
    layer.backward(dy)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(dy, dy0)


@pytest.mark.parametrize("case", sorted(CASES))
def test_needs_input_grad_false_returns_none(case, rng):
    make, shape = CASES[case]
    layer = make(rng)
    layer.needs_input_grad = False
    y = layer.forward(rng.standard_normal(shape))
    assert layer.backward(rng.standard_normal(y.shape)) is None
    for name in layer.params:  # params still get their gradients
        assert layer.grads[name] is not None


@pytest.mark.parametrize("case", [c for c in sorted(CASES) if c.startswith(("conv", "linear", "bn"))])
def test_frozen_params_get_no_grads(case, rng):
    make, shape = CASES[case]
    layer = make(rng)
    layer.freeze("weight")
    y = layer.forward(rng.standard_normal(shape))
    assert layer.backward(rng.standard_normal(y.shape)) is not None
    assert layer.grads["weight"] is None
    if "bias" in layer.params:
        assert layer.grads["bias"] is not None
    layer.freeze()
    y = layer.forward(rng.standard_normal(shape))
    layer.backward(rng.standard_normal(y.shape))
    assert all(g is None for g in layer.grads.values())


def test_conv_skips_the_work_it_is_not_asked_for(rng, monkeypatch):
    """requires_grad False skips the dW GEMM; needs_input_grad False skips the dx GEMM and col2im."""
    import minicnn.kernels.conv2d as k
    calls = set()
    real_matmul, real_col2im, real_im2col = np.matmul, k.col2im_nogil, k.im2col_nogil

    def matmul(*a, **kw):
        calls.add("dcols" if "out" in kw and a[1].shape[1] == 3 else "dW" if "out" not in kw else "fwd")
        return real_matmul(*a, **kw)
    monkeypatch.setattr(k.np, "matmul", matmul)
    monkeypatch.setattr(k, "col2im_nogil", lambda *a: calls.add("col2im") or real_col2im(*a))
    monkeypatch.setattr(k, "im2col_nogil", lambda *a: calls.add("im2col") or real_im2col(*a))
    conv = Conv2d(2, 3, 3, padding=1, rng=rng)
    x = rng.standard_normal((4, 2, 5, 5)).astype(np.float32)
    dy = rng.standard_normal((4, 3, 5, 5)).astype(np.float32)

    def backward_calls():
        conv.forward(x)
        calls.clear()
        conv.backward(dy)
        return calls.copy()

    assert backward_calls() == {"im2col", "dW", "dcols", "col2im"}
    conv.freeze("weight")
    assert backward_calls() == {"im2col", "dcols", "col2im"}
    conv.needs_input_grad = False
    assert backward_calls() == set()                   # only db (a sum)
    assert conv.grads["weight"] is None and conv.grads["bias"] is not None


def test_backward_before_forward_is_a_clear_error(rng):
    for layer in (Conv2d(1, 1, 1), BatchNorm2d(1), ReLU(), MaxPool2d(2), AvgPool2d(2),
                  GlobalAvgPool2d(), Linear(1, 1), Flatten()):
        layer.name = "layerX"
        with pytest.raises(RuntimeError, match="layerX: backward.*before forward"):
            layer.backward(np.zeros((1, 1, 1, 1)))


def test_backward_twice_is_a_clear_error(rng):
    conv = Conv2d(1, 1, 3)
    y = conv.forward(np.ones((1, 1, 4, 4)))
    conv.backward(np.ones_like(y))
    with pytest.raises(RuntimeError, match="before forward"):
        conv.backward(np.ones_like(y))


# -- shapes, dtypes, messages --------------------------------------------------------------------
@pytest.mark.parametrize("case", sorted(CASES))
def test_output_shape_matches_forward(case, rng):
    make, shape = CASES[case]
    layer = make(rng)
    assert layer.output_shape(shape) == layer.forward(rng.standard_normal(shape)).shape


@pytest.mark.parametrize("case", sorted(CASES))
def test_output_dtype_is_layer_dtype(case, rng):
    make, shape = CASES[case]
    layer = make(rng)
    assert layer.forward(rng.standard_normal(shape).astype(np.float32)).dtype == np.float64
    y = layer.forward(rng.standard_normal(shape))
    assert layer.backward(rng.standard_normal(y.shape).astype(np.float32)).dtype == np.float64


def test_float32_layers_return_float32(rng):
    x = rng.standard_normal((2, 3, 6, 6))  # float64 input is cast
    for layer in (Conv2d(3, 4, 3), BatchNorm2d(3), ReLU(), MaxPool2d(2), AvgPool2d(2), GlobalAvgPool2d()):
        y = layer.forward(x)
        assert y.dtype == np.float32
        assert layer.backward(np.ones_like(y)).dtype == np.float32
        assert all(g is None or g.dtype == np.float32 for g in layer.grads.values())


def test_shape_errors_name_layer_and_shapes():
    fc = Linear(4096, 10)
    fc.name = "fc"
    with pytest.raises(ShapeError, match=r"^fc: expected 4096 input features \(last dim\), got input of shape \(8, 1024\)$"):
        fc.forward(np.zeros((8, 1024), np.float32))
    conv = Conv2d(3, 8, 3)
    conv.name = "stage1.0.conv1"
    with pytest.raises(ShapeError, match=r"stage1\.0\.conv1: expected 3 input channels.*\(2, 4, 8, 8\)"):
        conv.forward(np.zeros((2, 4, 8, 8)))
    with pytest.raises(ShapeError, match=r"stage1\.0\.conv1: expected a 4-D input.*\(3, 8, 8\)"):
        conv.forward(np.zeros((3, 8, 8)))
    with pytest.raises(ShapeError, match=r"stage1\.0\.conv1: input of shape \(1, 3, 2, 2\) gives an empty output"):
        conv.output_shape((1, 3, 2, 2))
    pool = MaxPool2d(3)
    pool.name = "pool2"
    with pytest.raises(ShapeError, match=r"pool2: input of shape \(1, 1, 2, 5\) gives an empty output"):
        pool.forward(np.zeros((1, 1, 2, 5)))
    bn = BatchNorm2d(16)
    bn.name = "bn1"
    with pytest.raises(ShapeError, match=r"bn1: expected 16 input channels.*\(2, 8, 4, 4\)"):
        bn.forward(np.zeros((2, 8, 4, 4)))
    with pytest.raises(ShapeError, match="bn1: backward expected a gradient of shape"):
        bn.forward(np.ones((2, 16, 2, 2)))
        bn.backward(np.ones((2, 16, 2, 3)))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="kernel_size"):
        Conv2d(3, 4, 0)
    with pytest.raises(ValueError, match="padding"):
        Conv2d(3, 4, 3, padding=-1)
    with pytest.raises(ValueError, match="stride"):
        MaxPool2d(2, stride=(1, 2, 3))
    with pytest.raises(ValueError, match="momentum"):
        BatchNorm2d(4, momentum=1.5)
    with pytest.raises(ValueError, match="dtype"):
        Linear(2, 3, dtype=np.int32)


def test_default_init_is_pytorch_uniform():
    conv = Conv2d(16, 32, 3, rng=np.random.default_rng(0))
    bound = 1 / np.sqrt(16 * 9)
    w = conv.params["weight"]
    assert w.shape == (32, 16, 3, 3) and w.dtype == np.float32
    assert np.abs(w).max() <= bound and np.abs(conv.params["bias"]).max() <= bound
    assert w.std() == pytest.approx(bound / np.sqrt(3), rel=0.05)  # U(-b, b) has std b/sqrt(3)
    fc = Linear(100, 10)
    assert np.abs(fc.params["weight"]).max() <= 0.1 and fc.params["weight"].std() == pytest.approx(0.1 / np.sqrt(3), rel=0.1)
    a, b = Conv2d(3, 4, 3, rng=np.random.default_rng(7)), Conv2d(3, 4, 3, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a.params["weight"], b.params["weight"])


def test_extra_repr_like_pytorch():
    assert repr(Conv2d(3, 16, 3, padding=1, bias=False)) == \
        "Conv2d(3, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)"
    assert repr(Linear(64, 10)) == "Linear(in_features=64, out_features=10, bias=True)"
    assert repr(BatchNorm2d(16)) == \
        "BatchNorm2d(16, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)"
    assert repr(MaxPool2d(2)) == "MaxPool2d(kernel_size=(2, 2), stride=(2, 2), padding=0)"


def test_conv_batch_size_changes_and_chunking(rng, monkeypatch):
    """Shared scratch buffers are reused across batch sizes; tiny chunks (1-2 samples) give the same numbers."""
    import minicnn.kernels.conv2d as k
    from minicnn.kernels.reference import conv2d_forward_naive
    conv = Conv2d(2, 3, (3, 2), stride=(1, 2), padding=1, dtype=F64, rng=rng)
    for chunk_bytes in (k.CHUNK_BYTES, 2 * 12 * 24 * 8, 1):   # default, 2 samples, 1 sample
        monkeypatch.setattr(k, "CHUNK_BYTES", chunk_bytes)
        for n in (5, 2, 1):
            x = rng.standard_normal((n, 2, 6, 7))
            y = conv.forward(x)
            np.testing.assert_allclose(y, conv2d_forward_naive(x, conv.params["weight"], conv.params["bias"],
                                                               (1, 2), 1), rtol=1e-12, atol=1e-12)
            assert max(check_layer_gradients(conv, x, rng).values()) < TOL
    assert k.chunk_samples(5, 12, 24, np.float64) == 1


def test_conv_eval_mode_gradients(rng):
    conv = Conv2d(2, 3, 3, stride=2, padding=1, dtype=F64, rng=rng).eval()
    errors = check_layer_gradients(conv, rng.standard_normal((3, 2, 5, 6)), rng)
    assert max(errors.values()) < TOL, errors
