"""The PSG sign rule (E2-Train Eq. 2) on constructed inputs."""
import numpy as np
import pytest

from minicnn.methods._psg import psg_sign_rule, sign_agreement


def test_rule_on_a_constructed_layer():
    g_msb = np.array([1.0, -0.5, 0.04, -0.05, 0.0, 0.06, -0.01])
    g_full = np.array([0.9, 0.4, -0.03, 0.02, -0.2, 0.05, 0.01])
    r = psg_sign_rule(g_msb, g_full, beta=0.05)          # tau = 0.05 * 1.0
    assert r.tau == pytest.approx(0.05)
    np.testing.assert_array_equal(r.predicted, [True, True, False, True, False, True, False])
    # predictor where |g_msb| >= tau (even against the full sign: entries 1 and 3), full sign elsewhere
    np.testing.assert_array_equal(r.direction, [1, -1, -1, -1, -1, 1, 1])
    assert r.direction.dtype == g_full.dtype


def test_beta_extremes_and_per_layer_scale():
    rng = np.random.default_rng(0)
    g_msb = rng.standard_normal((8, 3, 3, 3))
    g_full = g_msb + 0.1 * rng.standard_normal(g_msb.shape)
    all_msb = psg_sign_rule(g_msb, g_full, 0.0)          # tau 0: the predictor decides everything
    assert all_msb.predicted.all()
    np.testing.assert_array_equal(all_msb.direction, np.sign(g_msb))
    only_max = psg_sign_rule(g_msb, g_full, 1.0)         # tau = max: only the largest entry is predicted
    assert only_max.predicted.sum() == 1
    np.testing.assert_array_equal(only_max.direction[~only_max.predicted], np.sign(g_full)[~only_max.predicted])
    # the threshold scales with the layer: same decisions for a gradient 1000x smaller
    small = psg_sign_rule(g_msb * 1e-3, g_full * 1e-3, 0.05)
    big = psg_sign_rule(g_msb, g_full, 0.05)
    np.testing.assert_array_equal(small.predicted, big.predicted)
    np.testing.assert_array_equal(small.direction, big.direction)


def test_agreement_and_errors():
    g_msb = np.array([1.0, -1.0, 2.0, 0.0])
    g_full = np.array([1.0, 1.0, 3.0, 0.0])
    assert sign_agreement(g_msb, g_full) == 0.75
    assert sign_agreement(g_msb, g_full, np.array([False, True, False, False])) == 0.0
    z = psg_sign_rule(np.zeros(3), np.array([1.0, -1.0, 0.0]), 0.05)
    assert z.tau == 0 and z.predicted.all() and np.all(z.direction == 0)
    with pytest.raises(ValueError):
        psg_sign_rule(np.zeros(3), np.zeros(4), 0.05)
    with pytest.raises(ValueError):
        psg_sign_rule(np.zeros(3), np.zeros(3), 1.5)


@pytest.mark.parametrize("k,s,p", [(3, 1, 1), (3, 2, 1), (1, 1, 0), (1, 2, 0)])
def test_conv_weight_grad_is_the_layers_dw(rng, k, s, p):
    from minicnn.layers.conv import Conv2d
    conv = Conv2d(3, 5, k, stride=s, padding=p, bias=False, dtype=np.float64, rng=rng)
    x = rng.standard_normal((2, 3, 7, 7))
    y = conv.forward(x)
    dy = rng.standard_normal(y.shape)
    conv.backward(dy)
    np.testing.assert_allclose(conv.weight_grad(x, dy), conv.grads["weight"], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("c,k,s,p", [(16, 3, 1, 1), (16, 3, 1, 0), (3, 3, 1, 1), (8, 1, 1, 0), (16, 3, 2, 1)])
@pytest.mark.parametrize("needs_input_grad", [True, False])
def test_weight_grad_is_bit_equal_to_backward_and_changes_nothing(rng, c, k, s, p, needs_input_grad):
    """float32, every algorithm (Winograd for 16 channels 3x3 stride 1, im2col, pointwise GEMM):
    Conv2d.weight_grad is the dW that backward computes, to the bit, with or without dx beside it."""
    from minicnn.layers.conv import Conv2d
    conv = Conv2d(c, 6, k, stride=s, padding=p, rng=rng)
    x = rng.standard_normal((5, c, 9, 8)).astype(np.float32)
    y = conv.forward(x)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    w = conv.params["weight"].copy()
    dw = conv.weight_grad(x, dy)
    assert conv.cache is not None and "weight" not in {n for n, g in conv.grads.items() if g is not None}
    conv.needs_input_grad = needs_input_grad
    conv.backward(dy)
    np.testing.assert_array_equal(dw, conv.grads["weight"])
    np.testing.assert_array_equal(conv.params["weight"], w)
    with pytest.raises(Exception, match="shape"):
        conv.weight_grad(x, dy[:, :3])
