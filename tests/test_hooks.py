"""Hook points: dispatch order, backward stopping early, frozen params, SLU
gating, and a tiny method written without touching minicnn/layers whose saved
work shows in the ledger."""
import numpy as np
import pytest

from minicnn.hooks import Hook, HookList
from minicnn.layers import BasicBlock, Conv2d, ReLU, Sequential
from minicnn.losses import SoftmaxCrossEntropy
from minicnn.models import build


class Spy(Hook):
    """Records which layers the containers ran, forward and backward."""

    def __init__(self):
        self.fwd, self.bwd, self.dx = [], [], {}

    def forward_output(self, layer, x, y):
        self.fwd.append(layer.name)
        return y

    def observe_backward(self, layer, dy, dx):
        self.bwd.append(layer.name)
        self.dx[layer.name] = dx


def step(model, n=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3, 32, 32)).astype(np.float32)
    loss = SoftmaxCrossEntropy()
    loss.forward(model.forward(x), rng.integers(0, 10, n))
    model.zero_grad()
    model.backward(loss.backward())


def test_transform_hooks_chain_in_order():
    class Add(Hook):
        def __init__(self, k): self.k = k
        def backward_output_grad(self, layer, dy): return dy * 10 + self.k
    hl = HookList([Add(1), Add(2)])
    assert hl.backward_output_grad(None, np.array(0.0)) == pytest.approx(12.0)   # (0*10+1)*10+2


def test_batch_begin_false_drops_and_every_hook_is_asked():
    asked = []

    class Drop(Hook):
        def on_batch_begin(self, state): asked.append("drop"); return False

    class Keep(Hook):
        def on_batch_begin(self, state): asked.append("keep")
    assert HookList([Drop(), Keep()]).batch_begin(None) is False and asked == ["drop", "keep"]


def test_every_layer_seen_and_first_layer_computes_no_input_gradient():
    model = build("convnet-small")
    spy = Spy()
    model.set_hooks(HookList([spy]))
    step(model)
    leaves = [l.name for l in model.leaves()]
    assert spy.fwd == leaves
    assert spy.bwd == leaves[::-1]
    assert spy.dx["conv1"] is None and spy.dx["bn1"] is not None


def test_backward_stops_at_the_lowest_trained_layer():
    model = build("convnet-small")
    spy = Spy()
    model.set_hooks(HookList([spy]))
    for name in ["conv1", "bn1", "conv2", "bn2"]:
        model[name].freeze()
    step(model)
    # nothing below conv3 trains: conv3 is the last layer visited and computes no dL/dx
    assert spy.bwd[-1] == "conv3" and "relu2" not in spy.bwd and "conv1" not in spy.bwd
    assert spy.dx["conv3"] is None
    assert model["conv1"].grads["weight"] is None and model["conv3"].grads["weight"] is not None


def test_bias_only_training_of_the_last_layer_visits_only_it():
    """WUS 1L (Safayenikoo & Akturk §3.3): only the last layer's bias trains."""
    model = build("convnet-small")
    spy = Spy()
    model.set_hooks(HookList([spy]))
    model.freeze()
    model["fc"].unfreeze("bias")
    step(model)
    assert spy.bwd == ["fc"] and spy.dx["fc"] is None
    assert model["fc"].grads["weight"] is None and model["fc"].grads["bias"] is not None


def test_frozen_middle_layer_still_passes_gradient_down():
    model = build("resnet8")
    model["layer2"].freeze()
    step(model)
    assert model["layer2"][0].conv1.grads["weight"] is None
    assert model["layer1"][0].conv1.grads["weight"] is not None


def test_block_gate_runs_the_residual_branch_on_kept_samples_only():
    rng = np.random.default_rng(0)
    block = BasicBlock(4, 4, 1, dtype=np.float64, rng=rng)
    x = rng.standard_normal((5, 4, 6, 6))
    mask = np.array([True, False, True, False, False])

    class Gate(Hook):
        def block_gate(self, b, xx): return mask
    spy = Spy()
    block.set_hooks(HookList([Gate(), spy]))
    y = block.forward(x)
    # skipped samples: y = relu(x); kept samples: what the block computes on them alone
    np.testing.assert_allclose(y[~mask], np.maximum(x[~mask], 0))
    ref = BasicBlock(4, 4, 1, dtype=np.float64, rng=np.random.default_rng(0))
    np.testing.assert_allclose(y[mask], ref.forward(x[mask]), rtol=1e-12)
    block.needs_input_grad = True
    dy = rng.standard_normal(y.shape)
    dx = block.backward(dy)
    np.testing.assert_allclose(dx[~mask], dy[~mask] * (x[~mask] > 0))
    # kept samples: input and parameter gradients equal the block's on those samples alone
    ref.needs_input_grad = True
    np.testing.assert_allclose(dx[mask], ref.backward(dy[mask]), rtol=1e-10, atol=1e-12)
    for name in ("conv1", "bn1", "conv2", "bn2"):
        for p in getattr(block, name).params:
            np.testing.assert_allclose(getattr(block, name).grads[p], getattr(ref, name).grads[p],
                                       rtol=1e-10, atol=1e-12)
    assert spy.fwd.count("conv1") == 1


class FreezeNamed(Hook):
    """A complete training method in six lines: freeze the named layers."""

    def __init__(self, *names):
        self.names = names

    def on_epoch_begin(self, state):
        for n in self.names:
            state.model[n].freeze()


def test_a_method_outside_layers_saves_work_in_the_ledger():
    from minicnn.cost import Ledger
    from minicnn.data import synthetic
    from minicnn.training import SGD, ConstantLR, Trainer

    ds = synthetic(n_train=64, n_test=32, seed=0)

    def run(methods):
        model = build("convnet-small", seed=0)
        ledger = Ledger(model)
        Trainer(model, ds, SGD(model, 0.01, momentum=0.9), ConstantLR(0.01), epochs=1, batch_size=32,
                methods=methods, ledger=ledger, progress=False).fit()
        return ledger

    base, frozen = run([]), run([FreezeNamed("conv1", "bn1", "conv2", "bn2")])
    tb, tf = base.totals(), frozen.totals()
    assert tb["forward"].macs == tf["forward"].macs == 2 * 32 * 24_518_656
    # no longer computed: conv3's dL/dx (nothing below it trains), conv2's dL/dx and dL/dW, conv1's dL/dW
    saved = 2 * 32 * (4_718_592 + 9_437_184 + 9_437_184 + 884_736)
    assert tb["backward_input"].macs + tb["backward_weight"].macs - \
        (tf["backward_input"].macs + tf["backward_weight"].macs) == saved
    # the dense reference is the same for both runs, so the saving shows
    assert frozen.dense_totals()["total"].macs == base.dense_totals()["total"].macs
    assert frozen.summary()["savings"]["macs"] > 0.15
    assert base.summary()["savings"]["macs"] == pytest.approx(0.0, abs=1e-12)


def test_duplicate_child_names_are_refused():
    from minicnn.layers import Linear
    with pytest.raises(ValueError, match="two children are named 'a'"):
        Sequential(("a", Linear(2, 2)), ("a", Linear(2, 2)))


def test_freeze_method_gives_back_only_what_it_froze():
    from types import SimpleNamespace
    from minicnn.methods import build_methods
    model = build("convnet-small")
    model["conv2"].freeze()                                   # frozen by someone else
    (method,) = build_methods(["freeze:layers=conv1+conv2,start=0,stop=1"])
    state = SimpleNamespace(model=model, epoch=0)
    method.on_train_begin(state)
    method.on_epoch_begin(state)
    assert not model["conv1"].requires_grad["weight"] and not model["conv2"].requires_grad["weight"]
    state.epoch = 1
    method.on_epoch_begin(state)
    assert model["conv1"].requires_grad["weight"] and not model["conv2"].requires_grad["weight"]


def test_ledger_follows_the_optimizer_so_a_plain_run_saves_nothing():
    from minicnn.cost import Ledger
    from minicnn.data import synthetic
    from minicnn.training import SGD, ConstantLR, Trainer
    ds = synthetic(n_train=64, n_test=16, seed=0)
    for momentum, wd in [(0.0, 0.0), (0.9, 5e-4)]:
        model = build("convnet-small")
        ledger = Ledger(model)                                # defaults differ from this optimizer
        Trainer(model, ds, SGD(model, 0.01, momentum=momentum, weight_decay=wd), ConstantLR(0.01), 1,
                batch_size=32, ledger=ledger, progress=False).fit()
        assert all(v == pytest.approx(0.0, abs=1e-12) for v in ledger.summary()["savings"].values())


def test_an_epoch_with_every_batch_dropped_reports_no_train_figures(tmp_path, capsys):
    import json
    from minicnn.data import synthetic
    from minicnn.training import SGD, ConstantLR, Trainer

    class DropAll(Hook):
        def on_batch_begin(self, state):
            return False
    ds = synthetic(n_train=64, n_test=16, seed=0)
    model = build("convnet-small")
    Trainer(model, ds, SGD(model, 0.01), ConstantLR(0.01), 1, batch_size=32, methods=[DropAll()],
            run_dir=str(tmp_path), progress=False, verbose=True).fit()
    assert "train loss n/a" in capsys.readouterr().out
    rec = json.loads(open(tmp_path / "metrics.jsonl").readline())
    assert rec["train_loss"] is None and rec["batches_dropped_cum"] == 2
