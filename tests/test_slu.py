"""SLU and stochastic depth (minicnn/methods/gating.py, slu.py, stochastic_depth.py):
the gate network's gradients with a fixed u and the straight-through estimator, the
cost term's sign flip, the task part of the gates' gradient against central
differences in a continuous m (exec=mask and exec=skip), stochastic depth's survival
rates (statistical) and evaluation scaling."""
import numpy as np
import pytest

from minicnn.gradcheck import numerical_gradient
from minicnn.hooks import Hook, HookList
from minicnn.layers import BasicBlock
from minicnn.losses import SoftmaxCrossEntropy
from minicnn.methods.gating import (CostTerm, GateDecision, GateNetwork, expected_executed_fraction,
                                    p_last_for_fraction, survival_probabilities)
from minicnn.methods.slu import SLU
from minicnn.methods.stochastic_depth import StochasticDepth
from minicnn.models import build


# -- the gate network and the decision ---------------------------------------------------------

@pytest.mark.parametrize("kind", ["rnn", "ff"])
def test_gates_forward_and_straight_through_backward(kind):
    """With a fixed u, m = 1[p > u]; straight-through: the gradient reaching the gates'
    parameters for dLoss/dm = dm equals d/dtheta sum_l <dm_l, p_l(theta)> (central differences)."""
    rng = np.random.default_rng(0)
    chans = [4, 6, 6]
    gates = GateNetwork(chans, kind, dtype=np.float64, rng=rng)
    xs = [rng.standard_normal((5, c, 3, 3)) for c in chans]
    us = [rng.random(5) for _ in chans]
    dms = [rng.standard_normal(5) for _ in chans]
    dec = GateDecision()

    def run():
        gates.reset()
        return np.stack([gates.forward_step(x) for x in xs])
    p = run()
    assert p.shape == (3, 5) and ((p > 0) & (p < 1)).all()
    for l in range(3):
        m = dec.decide(p[l], training=True, u=us[l])
        np.testing.assert_array_equal(m, p[l] > us[l])
    gates.backward([dec.backward(d) for d in dms])
    layers = [l for l in gates.layers() if l.params]
    analytic = {(id(l), k): l.grads[k].copy() for l in layers for k in l.params}
    for layer in layers:
        for k, arr in layer.params.items():
            num = numerical_gradient(lambda _: run(), arr, np.stack(dms), h=1e-5)
            # entries down to 1e-5 sit near the round-off of the difference (~1e-12): an
            # absolute floor beside the relative tolerance
            np.testing.assert_allclose(analytic[(id(layer), k)], num, rtol=1e-6, atol=1e-10,
                                       err_msg=f"{kind} {layer.name} {k}")
    names = [n for n, _ in gates.named_layers()]
    assert len(names) == len(set(names))
    with pytest.raises(ValueError, match="3 steps ran"):
        gates.backward(dms[:2])


def test_gate_decision_train_eval_and_sampling_at_eval():
    p = np.array([0.1, 0.49, 0.51, 0.9])
    dec = GateDecision()
    np.testing.assert_array_equal(dec.decide(p, training=False), [False, False, True, True])
    rng = np.random.default_rng(1)
    ms = np.array([dec.decide(p, True, rng) for _ in range(4000)])
    assert np.all(np.abs(ms.mean(0) - p) < 5 * np.sqrt(p * (1 - p) / 4000))
    sampled = GateDecision(sample_at_eval=True)
    ms = np.array([sampled.decide(p, False, rng) for _ in range(4000)])
    assert np.all(np.abs(ms.mean(0) - p) < 5 * np.sqrt(p * (1 - p) / 4000))


def test_cost_term_sign_flips_at_the_target_and_weights_by_macs():
    masks = [np.array([1, 1, 0, 0], bool), np.array([1, 1, 1, 0], bool)]
    cost = CostTerm(target=0.6, alpha=0.2)
    # C = (1*0.5 + 3*0.75) / 4 = 0.6875 > 0.6: s = +1, dm = alpha*w_l/N
    r = cost(masks, [1, 3])
    assert r.executed == pytest.approx(0.6875) and r.sign == 1 and r.value == pytest.approx(0.2 * 0.6875)
    np.testing.assert_allclose(r.dm[0], 0.2 * 0.25 / 4)
    np.testing.assert_allclose(r.dm[1], 0.2 * 0.75 / 4)
    assert r.fractions == [0.5, 0.75]
    r = cost(masks, [3, 1])                         # C = 0.5625 < 0.6: s = -1
    assert r.sign == -1 and (r.dm[0] < 0).all() and r.value == pytest.approx(-0.2 * 0.5625)
    r = CostTerm(target=0.6875, alpha=0.2)(masks, [1, 3])   # at the target: -1, as the official `<=`
    assert r.sign == -1
    # the official loss: beta * reg per gate and sample with uniform weights = alpha = beta*G*N
    beta, G, N = 1e-5, 2, 4
    r = CostTerm(target=0.0, alpha=beta * G * N)(masks, [1, 1])
    np.testing.assert_allclose(np.concatenate(r.dm), beta)
    with pytest.raises(ValueError):
        CostTerm(target=1.5)


# -- the task part of the gates' gradient: straight-through on y = relu(s + m F) ------------------

class ContinuousMask(Hook):
    """Reference: block l's residual output multiplied by a real m[l] (per sample); with
    ``gather`` the block also runs its branch on the rows with m > 0 only (exec=skip)."""

    def __init__(self, gated, ms, gather):
        self.idx = {id(b): l for l, b in enumerate(gated)}
        self.bn2 = {id(b.bn2): l for l, b in enumerate(gated)}
        self.ms, self.gather = ms, gather

    def _rows(self, l):
        m = self.ms[l]
        return (m[m > 0] if self.gather else m)[:, None, None, None]

    def block_gate(self, block, x):
        l = self.idx.get(id(block))
        return self.ms[l] > 0 if (l is not None and self.gather) else None

    def forward_output(self, layer, x, y):
        l = self.bn2.get(id(layer))
        return y if l is None else y * self._rows(l)

    def backward_output_grad(self, layer, dy):
        l = self.bn2.get(id(layer))
        return dy if l is None else dy * self._rows(l)


def _model_and_batch():
    model = build("resnet14", dtype=np.float64, seed=3)       # 6 blocks: 5 gates, identity and projection
    rng = np.random.default_rng(4)
    return model, rng.standard_normal((6, 3, 8, 8)), rng.integers(0, 10, 6)


@pytest.mark.parametrize("exec_mode", ["mask", "skip"])
def test_task_gradient_of_the_gates_is_the_straight_through_derivative(exec_mode):
    model, x, labels = _model_and_batch()
    slu = SLU(exec=exec_mode).attach(model)
    model.set_hooks(HookList([slu]))
    loss = SoftmaxCrossEntropy()
    slu.rng = np.random.default_rng(7)
    loss.forward(model.forward(x), labels)
    model.zero_grad()
    model.backward(loss.backward())
    ms = [m.astype(np.float64) for m in slu.m]
    assert 0 < np.mean(ms) < 1                        # some samples skipped, some run
    task = [t.copy() for t in slu.task_dm]
    if exec_mode == "skip":
        for l, b in enumerate(slu.gated):
            assert b.executed_count == int(ms[l].sum())
            assert (task[l][ms[l] == 0] == 0).all()   # no F(x): no task gradient for skipped samples

    # the same model (same weights; BN running statistics do not enter train-mode outputs)
    ref = ContinuousMask(slu.gated, [m.copy() for m in ms], gather=(exec_mode == "skip"))
    model.set_hooks(HookList([ref]))

    def L(_):
        return np.array(loss.forward(model.forward(x), labels))
    # At m = 0 an identity block's output relu(x + 0*F) sits on ReLU's kink wherever x = 0
    # (x comes out of a ReLU): not differentiable there, so those pairs are left out.
    checked = []
    for l, b in enumerate(slu.gated):
        for n in range(len(x)):
            if ms[l][n] == 0 and (exec_mode == "skip" or not b.projection):
                continue
            m_ln = ref.ms[l][n:n + 1]                        # a view: perturbed in place
            num = numerical_gradient(L, m_ln, np.array(1.0), h=1e-5)[0]
            assert abs(num - task[l][n]) <= 1e-6 * max(1.0, abs(num)), (exec_mode, l, n, num, task[l][n])
            checked.append(ms[l][n])
    assert 1.0 in checked and (exec_mode == "skip" or 0.0 in checked)


def test_gate_backward_gives_the_gates_gradients_and_skip_saves_work():
    model, x, labels = _model_and_batch()
    out = {}
    for exec_mode in ("skip", "mask"):
        model, x, labels = _model_and_batch()
        slu = SLU(exec=exec_mode, alpha=0.3).attach(model)
        model.set_hooks(HookList([slu]))
        slu.rng = np.random.default_rng(7)
        loss = SoftmaxCrossEntropy()
        loss.forward(model.forward(x), labels)
        model.zero_grad()
        model.backward(loss.backward())
        res = slu.gate_backward()
        assert all(l.grads[k] is not None for l in slu.gates.layers() for k in l.params)
        out[exec_mode] = (res, [b.executed_count for b in slu.gated], [m.copy() for m in slu.m])
    (rs, counts_skip, m_skip), (rm, counts_mask, m_mask) = out["skip"], out["mask"]
    # same seeds: same decisions; mask runs every sample, skip only the kept ones
    assert all(np.array_equal(a, b) for a, b in zip(m_skip, m_mask))
    assert counts_mask == [6] * 5 and counts_skip == [int(m.sum()) for m in m_skip]
    assert rs["executed"] == rm["executed"] and rs["sign"] == rm["sign"]


def test_slu_evaluation_thresholds_and_skips():
    model, x, _ = _model_and_batch()
    slu = SLU(exec="mask").attach(model)
    model.set_hooks(HookList([slu]))
    model.eval()
    model.forward(x)
    for l, b in enumerate(slu.gated):
        np.testing.assert_array_equal(slu.m[l], slu.p[l] > 0.5)
        assert b.executed_count == int(slu.m[l].sum())           # evaluation skips, also with exec=mask
    ran = slu.executed_blocks()
    assert ran.shape == (6, 6) and ran[:, 0].all()
    rec = slu.epoch_record()
    w = slu.block_macs / slu.block_macs.sum()
    assert rec["eval_executed"] == pytest.approx(float(np.dot(w, ran[:, 1:].mean(0))))
    a = model.forward(x)
    np.testing.assert_array_equal(a, model.forward(x))           # deterministic at evaluation


def test_slu_refuses_bad_options_and_models():
    with pytest.raises(ValueError, match="exec"):
        SLU(exec="both")
    with pytest.raises(ValueError, match="gate"):
        SLU(gate="gru")
    with pytest.raises(ValueError, match="at least 2 residual blocks"):
        SLU().attach(build("convnet-small"))


# -- stochastic depth -----------------------------------------------------------------------------

def test_survival_rule_and_p_last_for_a_target():
    np.testing.assert_allclose(survival_probabilities(4, 0.5), [0.875, 0.75, 0.625, 0.5])
    macs = [1, 1, 4, 4]
    for target in (0.5, 0.7, 0.95):
        p = p_last_for_fraction(macs, target)
        assert expected_executed_fraction(macs, p) == pytest.approx(target)
    assert p_last_for_fraction(macs, 1.0) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="cannot reach"):
        p_last_for_fraction(macs, 0.05)


def test_stochastic_depth_survival_rates_and_eval_scaling():
    model = build("resnet14", seed=0)
    sd = StochasticDepth(p_last=0.3).attach(model)
    model.set_hooks(HookList([sd]))
    sd.rng = np.random.default_rng(5)
    x = np.random.default_rng(6).standard_normal((2, 3, 8, 8)).astype(np.float32)
    T = 400
    ran = np.zeros((T, 6))
    for t in range(T):
        model.forward(x)
        ran[t] = [b.executed_count > 0 for b in sd.blocks]
        for b in sd.blocks:                      # whole mini-batch: all samples or none
            assert b.executed_count in (0, 2)
    s = survival_probabilities(6, 0.3)
    assert np.all(np.abs(ran.mean(0) - s) < 5 * np.sqrt(s * (1 - s) / T))
    rec = sd.epoch_record()
    np.testing.assert_allclose(rec["block_fractions"], ran.mean(0))
    assert rec["batches"] == T

    # evaluation: every block runs, residual output scaled by p_l -- the same as scaling bn2's affine
    model.eval()
    y = model.forward(x)
    assert all(b.executed_count == 2 for b in sd.blocks)
    ref = build("resnet14", seed=0)
    ref.load_state_dict(model.state_dict())
    for b, p in zip([m for m in ref.modules() if isinstance(m, BasicBlock)], s):
        b.bn2.params["weight"] *= p
        b.bn2.params["bias"] *= p
    ref.eval()
    np.testing.assert_allclose(y, ref.forward(x), rtol=1e-4, atol=1e-5)
    plain = build("resnet14", seed=0)
    plain.load_state_dict(model.state_dict())
    assert np.abs(y - plain.eval().forward(x)).max() > 1e-3          # without the scaling: different


def test_stochastic_depth_target_sets_p_last():
    model = build("resnet20")
    sd = StochasticDepth(target=0.7).attach(model)
    assert expected_executed_fraction(sd.block_macs, sd.p_last) == pytest.approx(0.7)
    assert sd.block_macs[0] == 2 * 32 * 32 * 16 * 16 * 9


# -- the methods under the contract: conformance, gates saved and reloaded, e2train --------------

def test_conformance():
    """Both methods in one run (their masks are and-ed): one conformance run checks each
    method's clauses (dense figure, actual <= dense + the gates, records, resume) at half the time."""
    from minicnn.training.conformance import check_method
    summ = check_method(["slu:exec=skip,alpha=1.0", "stochastic-depth:p_last=0.5"], train_images=64)
    for key in ("slu", "stochastic-depth"):
        rec = summ["method_records"][key]["per_epoch"]
        assert len(rec) == 2 and 0 < rec[-1]["executed"] < 1


def test_gates_are_trained_saved_reloaded_and_used_by_evaluate(tmp_path):
    from minicnn.training import Trainer, evaluate, load_checkpoint
    from minicnn.training.setup import build_run
    cfg = dict(model="resnet8", dataset="synthetic", epochs=1, batch_size=32, lr=0.05, train_images=64,
               method=["slu:alpha=1.0"], seed=0)
    job = build_run(cfg)
    model, ds = job["model"], job["ds"]
    slu = job["methods"][0]
    aux = {q: l.params[p].copy() for q, l, p in model.named_parameters() if q.startswith("aux.")}
    assert set(aux) == {"aux.slu.gate0.embed.weight", "aux.slu.gate1.embed.weight", "aux.slu.cell.weight_ih",
                        "aux.slu.cell.weight_hh", "aux.slu.cell.bias_ih", "aux.slu.cell.bias_hh",
                        "aux.slu.head.weight", "aux.slu.head.bias"}
    tr = Trainer(model, ds, job["opt"], job["schedule"], job["epochs"], batch_size=32, methods=job["methods"],
                 ledger=job["ledger"], run_dir=str(tmp_path / "run"), seed=0, progress=False, verbose=False,
                 config=cfg)
    tr.fit()
    trained = {q: l.params[p] for q, l, p in model.named_parameters() if q.startswith("aux.")}
    assert all(not np.array_equal(aux[q], trained[q]) for q in aux)          # the optimizer moved every gate param
    per = tr.ledger.per_layer()
    assert per["aux.slu.cell"]["forward"].macs > 0 and per["aux.slu.head"]["backward_weight"].macs > 0
    assert per["aux.slu.gate0.embed"]["backward_input"].macs == 0             # the gate input is detached
    r1 = evaluate(model, ds.test_x, ds.test_y, mean=tr.mean, std=tr.std)
    m1 = [m.copy() for m in slu.m]
    model2, meta, mean, std, methods = load_checkpoint(str(tmp_path / "run" / "model.npz"), with_methods=True)
    assert [m.key or m.name for m in methods] == ["slu"]
    for q, l, p in model2.named_parameters():
        if q.startswith("aux."):
            np.testing.assert_array_equal(l.params[p], trained[q])
    r2 = evaluate(model2, ds.test_x, ds.test_y, mean=mean, std=std)
    assert r1 == r2
    assert all(np.array_equal(a, b) for a, b in zip(m1, methods[0].m))        # the same blocks ran


def test_e2train_is_its_parts_built_by_name():
    from minicnn.methods import METHODS, Method, build_methods, register_method
    added = []
    for name in ("smd", "psg"):                     # stand-ins until the real parts are merged
        if name not in METHODS:
            class Stub(Method):
                def __init__(self, p: float = 0.5, epochs_scale: float = 1.0, beta: float = 0.0):
                    self.p, self.epochs_scale, self.beta = p, epochs_scale, beta
            register_method(name)(type(f"Stub_{name}", (Stub,), {}))
            added.append(name)
    try:
        parts = build_methods(["e2train:slu_target=0.4,exec=mask,gate=ff,smd_p=0.3,epochs_scale=1.25,psg_beta=0.1"])
        assert [p.name for p in parts] == ["smd", "slu", "psg"]
        smd, slu, psg = parts
        assert (smd.p, smd.epochs_scale, psg.beta) == (0.3, 1.25, 0.1)
        assert (slu.target, slu.exec, slu.gate) == (0.4, "mask", "ff")
        assert all(p.origin.startswith("e2train:") for p in parts)
    finally:
        for name in added:
            METHODS.pop(name)


def test_e2train_with_its_real_parts_passes_the_conformance_test():
    """smd + slu + psg composed by name: stretched dense figure, frozen params, records, resume identity."""
    from minicnn.training.conformance import check_method
    summary = check_method("e2train", train_images=64)
    assert sorted(summary["method_records"]) == ["psg", "slu", "smd"]
    assert summary["epochs"] == 3                        # 2 epochs stretched by 1.333
