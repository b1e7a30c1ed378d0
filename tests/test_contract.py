"""The method contract (minicnn/methods/README.md), clause by clause, on small real runs."""
from __future__ import annotations

import json

import numpy as np
import pytest

from minicnn.cost import Ledger
from minicnn.data import BatchIterator, synthetic
from minicnn.hooks import Hook, HookList
from minicnn.layers import Linear
from minicnn.methods import METHODS, Method, attach, build_methods, register_method, run_length
from minicnn.training.conformance import ConformanceError, check_method
from minicnn.models import build
from minicnn.training import SGD, ConstantLR, Trainer, evaluate, load_checkpoint
from minicnn.training.setup import build_run


def tiny_data(n_train=96, n_test=32):
    from minicnn.data import subset
    return subset(synthetic(), n_train, n_test, seed=0)


def trainer(methods=(), model="convnet-small", epochs=1, run_dir=None, ledger=True, **kw):
    m = build(model, seed=0)
    attach(m, methods)
    opt = SGD(m, lr=0.01, momentum=0.9)
    led = Ledger(m) if ledger else None
    return Trainer(m, tiny_data(), opt, ConstantLR(0.01), epochs, batch_size=32, methods=list(methods),
                   ledger=led, run_dir=run_dir, progress=False, verbose=False, **kw)


# -- 8. registration and typos ------------------------------------------------------------------------

def test_a_misspelt_hook_point_is_refused():
    class Typo(Method):
        def on_epoch_ends(self, state):
            pass
    with pytest.raises(TypeError, match="on_epoch_ends is not a hook point"):
        HookList([Typo()])
    with pytest.raises(ValueError, match="unknown trainer hook point"):
        HookList().call("on_epoch_ends", None)


def test_methods_register_with_a_decorator():
    @register_method("test-registered")
    class Registered(Method):
        def __init__(self, k: int = 1):
            self.k = k
    try:
        (m,) = build_methods(["test-registered:k=3"])
        assert isinstance(m, Registered) and m.k == 3 and m.name == "test-registered"
        with pytest.raises(ValueError, match="registered twice"):
            register_method("test-registered")(type("Other", (Method,), {}))
    finally:
        METHODS.pop("test-registered")


# -- 1. records ---------------------------------------------------------------------------------------

class Counter(Method):
    """Records how many batches it saw, per epoch; keyed by name (twice: counter, counter#2)."""
    name = "counter"

    def __init__(self):
        self.n = 0

    def on_batch_end(self, state):
        self.n += 1

    def epoch_record(self, state):
        return {"batches": self.n, "draw": float(self.rng.random())}

    def summary_record(self, state):
        return {"total": self.n}

    def state_dict(self):
        return {"n": self.n}

    def load_state_dict(self, d):
        self.n = d["n"]


def test_records_land_in_metrics_and_summary_after_the_method_decided(tmp_path):
    tr = trainer([Counter(), Counter()], epochs=2, run_dir=str(tmp_path / "r"))
    summary = tr.fit()
    lines = [json.loads(l) for l in open(tmp_path / "r" / "metrics.jsonl")]
    assert [l["method_records"]["counter"]["batches"] for l in lines] == [3, 6]
    assert set(lines[0]["method_records"]) == {"counter", "counter#2"}
    rec = summary["method_records"]["counter#2"]
    assert rec["total"] == 6 and [e["epoch"] for e in rec["per_epoch"]] == [1, 2]
    # the two have different streams (keyed by their record keys)
    assert lines[0]["method_records"]["counter"]["draw"] != lines[0]["method_records"]["counter#2"]["draw"]
    assert json.load(open(tmp_path / "r" / "summary.json"))["method_records"] == summary["method_records"]


# -- 5. randomness ------------------------------------------------------------------------------------

class Drawer(Method):
    name = "drawer"

    def __init__(self):
        self.draws = []

    def on_batch_begin(self, state):
        self.draws.append(float(self.rng.random()))
        return True


def test_a_methods_stream_does_not_change_when_another_method_is_added():
    a = Drawer()
    trainer([a], ledger=False).fit()
    b = Drawer()
    trainer([Counter(), b, Counter()], ledger=False).fit()
    assert a.draws == b.draws and len(a.draws) == 3


def test_augmentation_of_a_batch_depends_only_on_seed_epoch_and_batch():
    ds = tiny_data()
    it = BatchIterator(ds.train_x, ds.train_y, 32, augment="flip,crop", seed=5)
    batches = list(it)                          # epoch 0, batch after batch
    plan = it.plan(0)
    # load batch 2 alone (batches 0 and 1 never loaded): the same crops and flips
    assert np.array_equal(it.load(plan[2], 0, 2), batches[2][0])
    assert not np.array_equal(it.load(plan[2], 1, 2), batches[2][0])


# -- 6. order -----------------------------------------------------------------------------------------

class DropOdd(Method):
    """Drops odd batches without looking at them; checks state.y is the current batch's."""
    name = "drop-odd"

    def __init__(self):
        self.seen_y = []
        self.trained_y = []

    def on_batch_begin(self, state):
        self.seen_y.append(state.y.copy())
        return state.batch % 2 == 0

    def on_after_backward(self, state):
        self.trained_y.append(state.y.copy())


def test_a_dropped_batch_is_never_loaded_and_hooks_see_the_current_batch(monkeypatch):
    tr = trainer([DropOdd()], epochs=1)
    loads = []
    real = tr.train_iter.load
    monkeypatch.setattr(tr.train_iter, "load", lambda idx, e, b: loads.append(b) or real(idx, e, b))
    m = tr.methods[0]
    tr.fit()
    assert loads == [0, 2]                       # batch 1 was dropped: never augmented or normalized
    assert np.array_equal(m.seen_y[0], m.trained_y[0]) and np.array_equal(m.seen_y[2], m.trained_y[1])
    assert tr.state.batches_dropped == 1


# -- 4. gradients supplied by a method ------------------------------------------------------------------

class SupplyFirstConvGrad(Method):
    name = "supply"

    def supply_grads(self, layer, dy):
        if layer.name == "conv2":
            return {"weight": np.full_like(layer.params["weight"], 0.5)}


def test_a_supplied_gradient_is_not_computed_by_the_layer_and_is_used_by_sgd():
    tr = trainer([SupplyFirstConvGrad()])
    conv = next(m for m in tr.model.leaves() if m.name == "conv2")
    asked = []
    real = conv.backward

    def spy(dy):
        asked.append(conv.wants_grad("weight"))
        return real(dy)
    conv.backward = spy
    w0 = conv.params["weight"].copy()
    tr.fit()
    assert asked and not any(asked)              # the layer was never asked for dW
    assert conv.requires_grad["weight"]          # ... and trains
    assert not np.array_equal(conv.params["weight"], w0)
    per = tr.ledger.per_layer()
    assert per["conv2"]["backward_weight"].macs == 0    # nobody computed a dense dW to count
    assert per["conv3"]["backward_weight"].macs > 0


class FinishConvGrad(Method):
    """Supplies conv2's weight gradient as a finisher of the layer's own: 0.5 * sign(the computed dW)."""
    name = "finish"

    def __init__(self):
        self.got, self.seen_by_observers = [], []

    def supply_grads(self, layer, dy):
        if layer.name == "conv2":
            return {"weight": self.finish}

    def finish(self, g):
        self.got.append(g.copy())
        return 0.5 * np.sign(g)

    def observe_backward(self, layer, dy, dx):
        if layer.name == "conv2":
            self.seen_by_observers.append((layer.requires_grad["weight"], layer.grads["weight"].copy()))


def test_a_finisher_gets_the_layers_own_gradient_and_its_result_is_used_uncounted():
    plain, fin = trainer(), FinishConvGrad()
    tr = trainer([fin])
    conv, conv_plain = (next(m for m in t.model.leaves() if m.name == "conv2") for t in (tr, plain))
    computed, asked = [], []
    real, real_plain = conv.backward, conv_plain.backward

    def spy(dy):
        asked.append(conv.wants_grad("weight"))
        return real(dy)

    def spy_plain(dy):
        dx = real_plain(dy)
        computed.append(conv_plain.grads["weight"].copy())
        return dx
    conv.backward, conv_plain.backward = spy, spy_plain
    used = []
    real_step = tr.optimizer.step

    def step():
        used.append(conv.grads["weight"].copy())
        return real_step()
    tr.optimizer.step = step
    plain.fit()
    tr.fit()
    assert asked and all(asked)                                   # the layer computed dW itself
    np.testing.assert_array_equal(fin.got[0], computed[0])        # the finisher got the layer's dW (first step)
    np.testing.assert_array_equal(used[0], 0.5 * np.sign(computed[0]))   # and its result is the gradient used
    assert all(not rg for rg, _ in fin.seen_by_observers)        # observers see the param as supplied ...
    assert conv.requires_grad["weight"]                           # ... and it trains afterwards
    per = tr.ledger.per_layer()
    assert per["conv2"]["backward_weight"].macs == 0              # the rules did not count it (the method would)
    assert per["conv3"]["backward_weight"].macs > 0


# -- 7. the ledger is an ordinary hook ------------------------------------------------------------------

class EvaluatesItself(Method):
    name = "evaluates"

    def on_epoch_end(self, state):
        ds = tiny_data()
        evaluate(state.model, ds.test_x, ds.test_y)


def test_a_method_that_evaluates_is_counted_as_eval_not_training():
    plain, extra = trainer([]), trainer([EvaluatesItself()])
    plain.fit(), extra.fit()
    a, b = plain.ledger.totals(), extra.ledger.totals()
    assert a["total"].to_dict() == b["total"].to_dict()
    assert b["eval"].macs == 2 * a["eval"].macs


def test_ledger_add_work_is_public_and_tallies_extra():
    from minicnn.cost import Counts
    m = build("convnet-small")
    led = Ledger(m)
    led.add_work("gates", "forward", Counts(macs=10, ops=2, bytes=8, energy_pj=1.0), extra=True)
    assert led.per_layer()["gates"]["forward"].macs == 10
    assert led.extra_totals()["forward"].macs == 10 and led.totals()["total"].macs == 10
    with pytest.raises(ValueError, match="unknown phase"):
        led.add_work("gates", "sideways", Counts())


# -- 3. parameters owned by a method --------------------------------------------------------------------

@register_method("test-aux")
class AuxHead(Method):
    """Owns a Linear layer that reads the logits and is trained by the same optimizer."""
    acts_in_eval = True

    def attach(self, model):
        self.head = model.add_aux("test-aux.head", Linear(10, 10, rng=np.random.default_rng(1)))
        self.model = model

    def forward_output(self, layer, x, y):
        if layer.name == "fc":
            self._h = self.model.aux.forward_child(self.head, y)
        return y

    def on_after_backward(self, state):
        # a toy objective for the head alone: push its outputs towards zero
        self.head.zero_grad()
        self.model.aux.backward_child(self.head, self._h)


def test_method_owned_parameters_are_trained_saved_reloaded_and_counted(tmp_path):
    (m,) = build_methods(["test-aux"])
    tr = trainer([m], epochs=1, run_dir=str(tmp_path / "r"))
    w0 = m.head.params["weight"].copy()
    tr.fit()
    assert not np.array_equal(m.head.params["weight"], w0)          # trained by the same optimizer
    assert tr.ledger.per_layer()["aux.test-aux.head"]["forward"].macs > 0   # counted
    assert "aux.test-aux.head" not in tr.ledger.per_layer(dense=True) or \
        tr.ledger.per_layer(dense=True)["aux.test-aux.head"]["forward"].macs == 0   # not in the dense model
    model, meta, _, _, methods = load_checkpoint(str(tmp_path / "r" / "model.npz"), with_methods=True)
    assert meta["methods"] == ["test-aux"]
    head = next(l for l in model.modules() if l.name == "aux.test-aux.head")
    assert np.array_equal(head.params["weight"], m.head.params["weight"])   # saved and reloaded
    assert methods[0].head is head


# -- 9. run length ---------------------------------------------------------------------------------------

@register_method("test-longer")
class Longer(Method):
    def __init__(self, epochs_scale: float = 1.5):
        self.epochs_scale = epochs_scale


def test_epochs_scale_lengthens_the_run_and_stretches_the_milestones():
    assert run_length(4, [Longer()]) == 6 and run_length(3, [Longer(1.333)]) == 4
    job = build_run(dict(method=["test-longer"], epochs=4, schedule="step", milestones=[2, 3], lr=0.1))
    assert job["epochs"] == 6 and job["config"]["milestones_run"] == [3, 5]      # 4.5 rounds half up
    assert [job["schedule"].lr_at(e) for e in range(6)] == pytest.approx([0.1, 0.1, 0.1, 0.01, 0.01, 0.001])


# -- 10. conformance ---------------------------------------------------------------------------------------

def test_freeze_passes_the_conformance_test():
    summary = check_method("freeze:layers=conv1+layer1,start=1", train_images=128)
    assert summary["method_records"]["freeze"]["per_epoch"][1]["frozen"]


@register_method("test-cheats")
class Cheats(Method):
    """Freezes conv1 and then moves it anyway: the conformance test must catch it."""

    def on_epoch_begin(self, state):
        self.conv = next(l for l in state.model.leaves() if l.name == "conv1")
        self.conv.requires_grad["weight"] = False

    def on_batch_end(self, state):
        self.conv.params["weight"] *= 0.999


def test_the_conformance_test_catches_a_method_that_moves_frozen_weights():
    with pytest.raises(ConformanceError, match="frozen conv1.weight changed"):
        check_method("test-cheats", train_images=64)


# -- 11. TrainState: methods read it and assign only stop_training ------------------------------------------

class _SetsLr(Method):
    name = "_sets-lr"

    def on_epoch_begin(self, state):
        state.lr = 0.5


class _StopsEarly(Method):
    name = "_stops-early"

    def on_epoch_end(self, state):
        state.stop_training = True


def test_a_method_writing_a_read_only_field_of_the_state_is_refused():
    with pytest.raises(AttributeError) as e:
        trainer([_SetsLr()]).fit()
    assert str(e.value) == "TrainState.lr is read-only for methods (written by the Trainer at each epoch start)"


def test_a_misspelt_field_is_refused_and_stop_training_is_the_one_a_method_may_set():
    from minicnn.training import TrainState
    s = TrainState(None, None, 3, 10, None)
    with pytest.raises(AttributeError, match="no field 'stop_trainig' a method may set; .* only stop_training"):
        s.stop_trainig = True
    with pytest.raises(AttributeError, match=r"^TrainState.history is read-only for methods \(written by the "):
        s.history = []
    tr = trainer([_StopsEarly()], epochs=3)
    assert tr.fit()["epochs"] == 1 and tr.state.stop_training


def test_the_state_table_in_the_methods_readme_is_the_dataclass_s():
    import dataclasses
    import os
    from minicnn.training.state import FIELDS, TrainState, contract_table
    readme = open(os.path.join(os.path.dirname(__file__), "..", "minicnn", "methods", "README.md")).read()
    assert contract_table() in readme
    assert dataclasses.is_dataclass(TrainState)
    assert all(f.metadata["writer"] and f.metadata["valid"] and f.metadata["methods"] for f in FIELDS)
