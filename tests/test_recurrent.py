"""LSTMCell and GateHead (minicnn/layers/recurrent.py): PyTorch's conventions,
float64 gradient checks of one step with explicit state and of BPTT through
several steps with shared weights."""
import numpy as np
import pytest

from minicnn.gradcheck import check_layer_gradients, numerical_gradient, rel_error
from minicnn.layers.recurrent import GateHead, LSTMCell


def naive_lstm_step(p, x, h, c):
    """torch.nn.LSTMCell, one sample at a time, gates in the order i, f, g, o."""
    H = h.shape[1]
    hs, cs = np.empty_like(h), np.empty_like(c)
    sig = lambda z: 1 / (1 + np.exp(-z))
    for n in range(x.shape[0]):
        a = p["weight_ih"] @ x[n] + p["bias_ih"] + p["weight_hh"] @ h[n] + p["bias_hh"]
        i, f, g, o = sig(a[:H]), sig(a[H:2 * H]), np.tanh(a[2 * H:3 * H]), sig(a[3 * H:])
        cs[n] = f * c[n] + i * g
        hs[n] = o * np.tanh(cs[n])
    return hs, cs


def test_lstm_cell_shapes_and_reference():
    cell = LSTMCell(3, 5, dtype=np.float64, rng=np.random.default_rng(0))
    assert {k: v.shape for k, v in cell.params.items()} == {
        "weight_ih": (20, 3), "weight_hh": (20, 5), "bias_ih": (20,), "bias_hh": (20,)}
    assert np.abs(cell.params["weight_hh"]).max() <= 1 / np.sqrt(5)
    rng = np.random.default_rng(1)
    x, h, c = rng.standard_normal((4, 3)), rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    h1, c1 = cell.step(x, (h, c))
    rh, rc = naive_lstm_step(cell.params, x, h, c)
    np.testing.assert_allclose(h1, rh, rtol=1e-12)
    np.testing.assert_allclose(c1, rc, rtol=1e-12)
    cell.reset()
    h0, c0 = cell.step(x)                                  # no state: zeros
    np.testing.assert_allclose(h0, naive_lstm_step(cell.params, x, 0 * h, 0 * c)[0], rtol=1e-12)
    assert cell.step(x.astype(np.float32))[0].dtype == np.float64


def test_lstm_step_gradients_explicit_state():
    rng = np.random.default_rng(2)
    cell = LSTMCell(3, 4, dtype=np.float64, rng=rng)
    cell.needs_input_grad = True
    x, h, c = rng.standard_normal((5, 3)), rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    dh, dc = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    cell.reset()
    cell.step(x, (h, c))
    dx, dh0, dc0 = cell.backward_step(dh, dc)
    grads = {k: v.copy() for k, v in cell.grads.items()}
    dy = np.concatenate([dh, dc], axis=1)

    def f(x_, h_, c_):
        cell.reset()
        return np.concatenate(cell.step(x_, (h_, c_)), axis=1)
    assert rel_error(dx, numerical_gradient(lambda v: f(v, h, c), x.copy(), dy, h=1e-5)) < 1e-6
    assert rel_error(dh0, numerical_gradient(lambda v: f(x, v, c), h.copy(), dy, h=1e-5)) < 1e-6
    assert rel_error(dc0, numerical_gradient(lambda v: f(x, h, v), c.copy(), dy, h=1e-5)) < 1e-6
    for name, p in cell.params.items():
        assert rel_error(grads[name], numerical_gradient(lambda _: f(x, h, c), p, dy, h=1e-5)) < 1e-6, name


def test_lstm_bptt_through_steps_with_shared_weights():
    """T stateful forward() steps from zero state, then T backward() calls in reverse:
    dL/dx_t and the parameter gradients (summed over steps) against central differences
    of L = sum_t <dh_t, h_t>."""
    rng = np.random.default_rng(3)
    T, N = 4, 3
    cell = LSTMCell(2, 3, dtype=np.float64, rng=rng)
    cell.needs_input_grad = True
    xs = rng.standard_normal((T, N, 2))
    dhs = rng.standard_normal((T, N, 3))

    def run(xs_):
        cell.reset()
        return np.stack([cell.forward(xs_[t]) for t in range(T)])
    run(xs)
    assert cell.steps_cached == T
    dxs = np.stack([cell.backward(dhs[t]) for t in reversed(range(T))][::-1])
    assert cell.steps_cached == 0
    grads = {k: v.copy() for k, v in cell.grads.items()}
    assert rel_error(dxs, numerical_gradient(run, xs.copy(), dhs, h=1e-5)) < 1e-6
    for name, p in cell.params.items():
        assert rel_error(grads[name], numerical_gradient(lambda _: run(xs), p, dhs, h=1e-5)) < 1e-6, name
    # a new forward pass starts from zero state and drops the old gradients
    cell.reset()
    assert all(g is None for g in cell.grads.values()) and cell.state is None
    np.testing.assert_allclose(cell.forward(xs[0]), run(xs)[0])


def test_lstm_misuse_is_a_clear_error():
    cell = LSTMCell(2, 3)
    cell.forward(np.zeros((1, 2), np.float32))
    cell.backward(np.zeros((1, 3), np.float32))
    with pytest.raises(RuntimeError, match="more times than forward"):
        cell.backward(np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match="expected input"):
        cell.forward(np.zeros((1, 3), np.float32))


def test_gate_head_gradients_and_steps():
    rng = np.random.default_rng(4)
    head = GateHead(5, dtype=np.float64, rng=rng)
    head.needs_input_grad = True
    x = rng.standard_normal((6, 5))
    p = head.forward(x)
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-(x @ head.params["weight"][0] + head.params["bias"][0]))))
    head.reset()
    errs = check_layer_gradients(head, x, rng)
    assert set(errs) == {"x", "weight", "bias"} and max(errs.values()) < 1e-7
    # two steps: gradients add up
    head.reset()
    x2 = rng.standard_normal((6, 5))
    head.forward(x); head.forward(x2)
    d1, d2 = rng.standard_normal(6), rng.standard_normal(6)
    head.backward(d2); head.backward(d1)
    g = head.grads["weight"].copy()
    one = GateHead(5, dtype=np.float64, rng=np.random.default_rng(4))
    one.params["weight"][...] = head.params["weight"]; one.params["bias"][...] = head.params["bias"]
    one.forward(x); one.backward(d1); g1 = one.grads["weight"].copy()
    one.reset(); one.forward(x2); one.backward(d2)
    np.testing.assert_allclose(g, g1 + one.grads["weight"], rtol=1e-12)


def test_sigmoid_is_stable():
    from minicnn.layers.recurrent import sigmoid
    z = np.array([-1000.0, -30.0, 0.0, 30.0, 1000.0])
    with np.errstate(over="raise"):
        s = sigmoid(z)
    np.testing.assert_allclose(s, [0, 1 / (1 + np.exp(30)), 0.5, 1 / (1 + np.exp(-30)), 1], atol=1e-300)


def test_counting_rules_of_one_step():
    """LSTMCell and GateHead as the ledger counts them (numbers from the table in rules.py)."""
    from minicnn.cost import Ledger
    from minicnn.hooks import HookList
    from minicnn.layers import Linear, Sequential
    MAC, OP, BYTE = 4.6, 0.9, 162.5
    model = Sequential(("fc", Linear(3, 4)), ("lstm", LSTMCell(4, 5)), ("head", GateHead(5)))
    led = Ledger(model)
    model.set_hooks(HookList([led]))
    rng = np.random.default_rng(0)
    p = model.forward(rng.normal(size=(2, 3)).astype(np.float32))
    model.zero_grad()
    model.backward(rng.normal(size=p.shape).astype(np.float32))
    per = led.per_layer()

    def check(c, macs, ops, values):
        assert (c.macs, c.ops, c.bytes) == (macs, ops, 4 * values)
        assert c.energy_pj == pytest.approx(macs * MAC + ops * OP + 4 * values * BYTE)
    # N=2, I=4, H=5: N*4H = 40 gate pre-activations, N*H = 10
    check(per["lstm"]["forward"], 40 * 9, 36 * 10, 8 + 10 + 10 + 80 + 100 + 40 + 10 + 10 + 40 + 10)
    check(per["lstm"]["backward_input"], 40 * 4 + 40 * 5, 23 * 10, (40 + 80 + 8) + (10 + 20 + 40 + 20 + 100 + 20))
    check(per["lstm"]["backward_weight"], 40 * 4 + 40 * 5, 40, (40 + 8 + 80) + (40 + 10 + 100) + (40 + 20) + 20)
    check(per["head"]["forward"], 10, 10, 10 + 5 + 1 + 2)
    check(per["head"]["backward_input"], 10, 6, (2 + 5 + 10) + (2 + 2 + 2))
    check(per["head"]["backward_weight"], 10, 2, (2 + 10 + 5) + (2 + 1))
    # first layer: no dL/dx, so the per-step work (dh_prev GEMM, elementwise) goes to dW_ih
    model = Sequential(("lstm", LSTMCell(4, 5)), ("head", GateHead(5)))
    led = Ledger(model)
    model.set_hooks(HookList([led]))
    p = model.forward(rng.normal(size=(2, 4)).astype(np.float32))
    model.zero_grad()
    model.backward(rng.normal(size=p.shape).astype(np.float32))
    per = led.per_layer()
    check(per["lstm"]["backward_input"], 0, 0, 0)
    check(per["lstm"]["backward_weight"], 40 * 4 + 40 * 5 + 40 * 5, 40 + 230,
          (40 + 8 + 80) + (40 + 10 + 100) + (40 + 20) + 20 + (10 + 20 + 40 + 20 + 100 + 20))
