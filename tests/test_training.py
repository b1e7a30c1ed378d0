"""SGD, schedules and the loss against figures computed once with PyTorch 2.13
(torch.optim.SGD, CosineAnnealingLR, F.cross_entropy; the script that made
them is benchmarks/torch_reference_numbers.py)."""
import numpy as np
import pytest

from minicnn.layers import Layer
from minicnn.losses import SoftmaxCrossEntropy
from minicnn.training import SGD, CosineLR, StepLR, make_schedule


class OneParam(Layer):
    def __init__(self, values):
        super().__init__(np.float64)
        self.add_param("weight", np.array(values))

    def named_parameters(self):
        yield "p.weight", self, "weight"


GRADS = [[0.3, -0.1, 0.2], [0.0, 0.5, -0.4], [1.0, 1.0, 1.0]]


@pytest.mark.parametrize("nesterov, expected", [
    (False, [0.8132087689999999, -2.156677588, 0.4190333795]),
    (True, [0.6991036353710001, -2.274962213692, 0.3456638733905]),
])
def test_sgd_matches_pytorch(nesterov, expected):
    m = OneParam([1.0, -2.0, 0.5])
    opt = SGD(m, lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=nesterov)
    for g in GRADS:
        m.grads["weight"] = np.array(g)
        opt.step()
    np.testing.assert_allclose(m.params["weight"], expected, rtol=1e-12)


def test_sgd_skips_params_without_gradient_like_pytorch():
    m = OneParam([1.0])
    opt = SGD(m, lr=0.1, momentum=0.9, weight_decay=0.01)
    m.grads["weight"] = np.array([0.3]); assert len(opt.step()) == 1
    m.grads["weight"] = None; assert opt.step() == []      # no decay, no momentum step
    m.grads["weight"] = np.array([0.3]); opt.step()
    np.testing.assert_allclose(m.params["weight"], [0.910131], rtol=1e-12)


def test_sgd_skips_frozen_params_and_does_not_mutate_grads():
    m = OneParam([1.0, 2.0, 3.0])
    opt = SGD(m, lr=0.1, momentum=0.9, weight_decay=0.1)
    g = np.array([1.0, 1.0, 1.0])
    m.grads["weight"] = g
    m.requires_grad["weight"] = False
    assert opt.step() == []
    np.testing.assert_array_equal(m.params["weight"], [1.0, 2.0, 3.0])
    m.requires_grad["weight"] = True
    opt.step()
    np.testing.assert_array_equal(g, [1.0, 1.0, 1.0])


def test_cosine_and_step_schedules():
    np.testing.assert_allclose([CosineLR(0.01, 4).lr_at(e) for e in range(4)],
                               [0.01, 0.008535533905932738, 0.005, 0.0014644660940672626], rtol=1e-12)
    assert [StepLR(1.0, 2, 0.1).lr_at(e) for e in range(5)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    with pytest.raises(ValueError, match="unknown schedule"):
        make_schedule("linear", 0.1, 3)


Z = np.array([[-6.931235400702528, -1.119752583773293, -3.1824500356388588, 2.998528064343528, -0.05989425272328796],
              [0.6308996703050841, 0.5315680541809975, -2.491530153025347, 0.7161541745045119, 2.2005851055818524],
              [-3.9656454874264133, 3.94443409559137, -2.061011082130639, 4.464222947432017, -1.3452474141343533],
              [-2.6730091055122127, 2.0245726307820116, 3.1405961309443966, 0.46288553593976844, -2.2496745685175825]])
Y = np.array([0, 3, 4, 1])


def test_cross_entropy_matches_pytorch_and_is_stable():
    loss = SoftmaxCrossEntropy()
    assert loss.forward(Z, Y) == pytest.approx(4.925452336296189, rel=1e-12)
    big = loss.forward(Z * 1e4, Y)                     # huge logits: no overflow, finite
    assert np.isfinite(big) and np.all(np.isfinite(loss.backward()))


def test_cross_entropy_gradient_numerically():
    from minicnn.gradcheck import numerical_gradient, rel_error
    rng = np.random.default_rng(0)
    z = rng.standard_normal((6, 4))
    y = rng.integers(0, 4, 6)
    loss = SoftmaxCrossEntropy()
    loss.forward(z, y)
    analytic = loss.backward()
    numeric = numerical_gradient(lambda v: np.array(loss.forward(v, y)), z.copy(), np.array(1.0))
    assert rel_error(analytic, numeric) < 1e-7


def test_cross_entropy_rejects_bad_labels():
    loss = SoftmaxCrossEntropy()
    with pytest.raises(ValueError, match="labels must lie"):
        loss.forward(Z, np.array([0, 1, 2, 5]))
