"""Methods II: gradprune (Ye et al. 2019), psg (E2-Train §3.3), fixed8 and signsgd, on real (small) runs."""
import numpy as np
import pytest

from minicnn.cost.formats import TensorFormat
from minicnn.layers import BatchNorm2d, Conv2d, Linear
from minicnn.methods import Method, build_methods
from minicnn.training.conformance import check_method
from minicnn.quant import fixed_point, weight_range
from minicnn.training import Trainer
from minicnn.training.setup import build_run


def run(specs, model="resnet8", epochs=1, images=64, batch=32, seed=0, **cfg):
    job = build_run(dict(model=model, dataset="synthetic", epochs=epochs, batch_size=batch, lr=0.02,
                         train_images=images, method=list(specs), seed=seed, **cfg))
    tr = Trainer(job["model"], job["ds"], job["opt"], job["schedule"], job["epochs"], batch_size=batch,
                 methods=job["methods"], ledger=job["ledger"], seed=seed, progress=False, verbose=False)
    return tr, tr.fit()


# -- conformance (minicnn.training.conformance: dense figure, actual <= dense + declared extra, resume) --
@pytest.mark.parametrize("spec", ["psg", ["gradprune:p=0.9", "fixed8", "signsgd"]])
def test_conformance(spec):
    """psg alone; gradprune, fixed8 and signsgd together (they compose: one run checks all three, to save time)."""
    summary = check_method(spec, train_images=128)
    assert summary["status"] == "completed"
    if not isinstance(spec, str):
        assert set(summary["method_records"]) == {"gradprune"}       # fixed8 and signsgd record nothing


# -- gradprune ------------------------------------------------------------------------------------
def test_gradprune_dy_density_equals_an_independent_count():
    """rho_nnz per conv (gradprune reuses the pruning kernel's count when the conv consumes the pruned array)
    equals what an observer counting every conv's dy with np.count_nonzero sees."""
    from minicnn.hooks import Hook

    class Count(Hook):
        def __init__(self):
            self.seen = {}

        def observe_backward(self, layer, dy, dx):
            if isinstance(layer, Conv2d) and layer.training:
                e = self.seen.setdefault(layer.name, [0, 0])
                e[0] += dy.size
                e[1] += int(np.count_nonzero(dy))

    for model, width in (("resnet8", None), ("alexnet-ye", 0.125)):     # Conv-BN (reused) and Conv-ReLU (counted)
        count = Count()
        job = build_run(dict(model=model, dataset="synthetic", epochs=1, batch_size=32, lr=0.02, train_images=64,
                             method=["gradprune:p=0.95"], seed=0, width=width))
        tr = Trainer(job["model"], job["ds"], job["opt"], job["schedule"], 1, batch_size=32, methods=job["methods"],
                     ledger=job["ledger"], seed=0, progress=False, verbose=False, stats=count)
        tr.fit()
        rec = tr.state.history[0]["method_records"]["gradprune"]["dy_density"]
        assert rec and set(rec) <= set(count.seen)
        for name, d in rec.items():
            assert d == count.seen[name][1] / count.seen[name][0], (model, name)


def test_gradprune_sites_follow_the_block_structure():
    from minicnn.models import build
    m = build_methods(["gradprune"])[0]
    sites, sparse_out, sparse_in = m._plan(build("resnet8"))
    assert set(sites.values()) == {"output"}                        # Conv-BN-ReLU: every conv's dy
    assert "layer2.0.shortcut_conv" in sites and sparse_out == set(sites)
    sites, sparse_out, sparse_in = m._plan(build("alexnet-ye", width=0.125))
    assert set(sites.values()) == {"input"}                         # Conv-ReLU: each conv's dx ...
    # ... which reaches the conv below through its ReLU (and pool): their gradients are sparse too
    assert {"conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "conv3"} <= sparse_out
    assert "conv5" not in sparse_out and "pool1" in sparse_in
    # a pruning conv writes its dx dense (the pruning pass then writes it sparse): its grad_input is fp32
    assert not {"conv2", "conv3", "conv4", "conv5"} & sparse_in


def test_gradprune_records_and_ledger_counts_by_nonzeros():
    tr, s = run(["gradprune:p=0.95"], epochs=2)
    recs = [h["method_records"]["gradprune"] for h in tr.state.history]
    assert len(recs) == 2
    for r in recs:
        assert r["density_after"] < r["density_before"] <= 1.0
        assert len(r["layers"]) == 9                                  # resnet8's convs, shortcut included
        for name, v in r["layers"].items():
            assert 0 < v["density_after"] < v["density_before"] and v["tau_mean"] > 0
            assert r["dy_density"][name] == v["density_after"]       # Conv-BN: the conv consumes the pruned dy
    assert [{k: v for k, v in r.items() if k != "epoch"} for r in s["method_records"]["gradprune"]["per_epoch"]] == recs
    led = tr.ledger
    act, dense = led.totals(), led.dense_totals()
    assert act["backward_weight"].macs < 0.75 * dense["backward_weight"].macs
    assert act["backward_input"].macs < dense["backward_input"].macs
    assert led.extra_totals()["backward_input"].ops > 0              # the DBTD pass, declared extra
    assert led.formats.get(tr.model.leaves()[0], "grad_output") == TensorFormat(sparse=True)


def test_gradprune_at_p_one_half_prunes_nothing_and_trains_like_the_baseline():
    """p = 0.5 gives tau = sigma_hat * Phi^-1(0.5) = 0: the same weights as a baseline run, bit for bit."""
    tr, s = run(["gradprune:p=0.5"])
    btr, bs = run([])
    w, bw = tr.model.state_dict(), btr.model.state_dict()
    assert all(np.array_equal(w[k], bw[k]) for k in bw)
    rec = s["method_records"]["gradprune"]["per_epoch"][0]
    assert rec["density_after"] == rec["density_before"] == rec["rho_nnz"] == 1.0


def test_gradprune_conv_relu_uses_the_sparse_path(monkeypatch):
    import minicnn.layers.conv as conv_module
    calls = []
    original = conv_module.sparse_conv2d_backward
    monkeypatch.setattr(conv_module, "sparse_conv2d_backward", lambda *a, **k: calls.append(1) or original(*a, **k))
    tr, s = run(["gradprune:p=0.995,sparse_below=1.0"], model="alexnet-ye", images=32, batch=16, width=0.125)
    assert calls                                                      # density < 1: the sparse kernel ran
    rec = s["method_records"]["gradprune"]["per_epoch"][0]
    assert set(rec["layers"]) == {"conv2", "conv3", "conv4", "conv5"}  # conv1 computes no dx
    assert rec["density_after"] < rec["density_before"]
    # what each conv consumed: the pruned dx of the conv above, through a ReLU (and a pool): sparser still
    assert rec["dy_density"]["conv4"] <= rec["layers"]["conv5"]["density_after"] < 1


def test_gradprune_puts_the_sparse_path_flag_back_at_train_end(monkeypatch):
    """A model trained with gradprune and then used without it takes the dense backward again (issue 17):
    every conv's sparse_backward_below is back to what it was before training (0: the class default,
    or a value the user set), and a conv fed a 99%-zero dy runs the dense kernel, not the sparse one."""
    import minicnn.layers.conv as conv_module
    job = build_run(dict(model="alexnet-ye", width=0.125, dataset="synthetic", epochs=1, batch_size=16, lr=0.02,
                         train_images=32, method=["gradprune:p=0.9,sparse_below=1.0"], seed=0))
    convs = [m for m in job["model"].leaves() if isinstance(m, Conv2d)]
    convs[0].sparse_backward_below = 0.25                            # a user's own setting survives too
    seen = []

    class During(Method):
        def on_epoch_end(self, state):
            seen.extend(c.sparse_backward_below for c in convs)
    tr = Trainer(job["model"], job["ds"], job["opt"], job["schedule"], 1, batch_size=16,
                 methods=job["methods"] + [During()], ledger=job["ledger"], seed=0, progress=False, verbose=False)
    assert tr.fit()["status"] == "completed"
    assert 1.0 in seen                                                # gradprune did set it while training
    assert [c.sparse_backward_below for c in convs] == [0.25] + [0.0] * (len(convs) - 1)
    calls = []
    original = conv_module.sparse_conv2d_backward
    monkeypatch.setattr(conv_module, "sparse_conv2d_backward", lambda *a, **k: calls.append(1) or original(*a, **k))
    conv = convs[1]
    x = np.random.default_rng(0).standard_normal((2, conv.in_channels, 8, 8)).astype(np.float32)
    y = conv.forward(x)
    dy = np.zeros_like(y)
    dy.reshape(-1)[::100] = 1.0
    conv.backward(dy)
    assert not calls                                                  # the dense path


# -- psg, fixed8, signsgd ----------------------------------------------------------------------------
def test_psg_supplies_sign_gradients_and_the_layers_dw_is_its_fallback(monkeypatch):
    """The conv's backward computes g_w = dW(x_8, g_y16) in the same pass as dx (the fallback, handed to PSG's
    finisher: one fused call per conv), PSG computes only the predictor pass itself (one weight_grad per conv),
    and what the optimizer sees is the sign direction. (Until issue 16 PSG computed both weight gradients and
    the layer ran backward for dx only; the results are bit-identical.)"""
    import minicnn.layers.conv as conv_module
    in_backward, fused, own = [], [], []
    original = conv_module.conv2d_backward
    monkeypatch.setattr(conv_module, "conv2d_backward",
                        lambda x, w2, g, dy, want_dw, dx: (in_backward and fused.append((want_dw, dx is not None)))
                        or original(x, w2, g, dy, want_dw, dx))
    original_backward, original_wg = Conv2d.backward, Conv2d.weight_grad

    def backward(self, dy):
        in_backward.append(1)
        try:
            return original_backward(self, dy)
        finally:
            in_backward.pop()

    def weight_grad(self, x, dy):
        own.append(self.name)
        return original_wg(self, x, dy)
    monkeypatch.setattr(Conv2d, "backward", backward)
    monkeypatch.setattr(Conv2d, "weight_grad", weight_grad)
    seen = {}

    class Spy(Method):
        def on_after_backward(self, state):
            for layer in state.model.leaves():
                if layer.params and "weight" in layer.grads and layer.grads["weight"] is not None:
                    seen[layer.name] = (type(layer), layer.grads["weight"].copy())

    methods = build_methods(["psg"]) + [Spy()]
    job = build_run(dict(model="resnet8", dataset="synthetic", epochs=1, batch_size=32, lr=0.03, train_images=32,
                         method=[], seed=0))
    tr = Trainer(job["model"], job["ds"], job["opt"], job["schedule"], 1, batch_size=32, methods=methods,
                 ledger=job["ledger"], seed=0, progress=False, verbose=False)
    tr.fit()
    assert fused and all(w for w, _ in fused)           # every conv's backward computed its dW ...
    assert sum(d for _, d in fused) == len(fused) - 1   # ... with dx, but the stem's (no dx needed)
    assert sorted(own) == sorted(n for n, (t, _) in seen.items() if t is Conv2d)   # one predictor pass per conv
    convs = [g for t, g in seen.values() if t is Conv2d]
    others = [g for t, g in seen.values() if t in (BatchNorm2d, Linear)]
    assert len(convs) == 9 and others
    assert all(set(np.unique(g)) <= {-1.0, 0.0, 1.0} for g in convs)
    assert all(len(np.unique(g)) > 3 for g in others)               # BN and Linear train normally


def test_psg_ledger_counts_the_predictor_and_the_fallback_at_their_widths():
    tr, s = run(["psg"], images=64, batch=32)                         # 2 steps of 32 images
    led = tr.ledger
    rec = s["method_records"]["psg"]["per_epoch"][0]
    actual, dense = led.per_layer(), led.per_layer(dense=True)
    total_pred = 0
    for layer in tr.model.leaves():
        if not isinstance(layer, Conv2d):
            continue
        every = dense[layer.name]["backward_weight"].macs                # N*Ho*Wo MACs per weight, every weight
        total_pred += every
        fallback = actual[layer.name]["backward_weight"].macs - every
        frac = 1 - rec["layers"][layer.name]["predicted"]             # steps have equal batches: the mean is exact
        assert fallback == pytest.approx(frac * every, rel=1e-9, abs=1)
        assert 0 <= fallback < every
        assert led.formats.get(layer, "input") == TensorFormat(bits=8, fixed=True)
        assert led.formats.get(layer, "weight") == TensorFormat(bits=8, fixed=True)
        assert led.formats.get(layer, "grad_output") == TensorFormat(bits=16, fixed=True)
    extra = led.extra_totals()["backward_weight"]
    assert extra.macs == total_pred                                   # the predictor pass, over every weight
    e = led.energy
    int10, int16 = e.mac_pj(TensorFormat(bits=10, fixed=True)), e.mac_pj(TensorFormat(bits=16, fixed=True))
    assert int10 < int16 < e.mac_pj()
    assert extra.energy_pj >= extra.macs * int10                      # 10-bit MACs plus the bytes read
    assert 0 < rec["predicted"] <= 1 and 0.5 < rec["agree"] <= 1
    assert s["savings"]["energy"] > 0


def test_fixed8_computes_with_8_bit_weights_and_keeps_fp32_masters():
    outs = {}

    class Grab(Method):
        def forward_output(self, layer, x, y):
            if layer.name == "conv1" and layer.training and "y" not in outs:
                outs.update(x=x.copy(), y=y.copy(), w=layer.params["weight"].copy())
            return y

    methods = build_methods(["fixed8"]) + [Grab()]
    job = build_run(dict(model="resnet8", dataset="synthetic", epochs=1, batch_size=32, lr=0.02, train_images=32,
                         method=[], seed=0))
    w0 = job["model"].leaves()[0].params["weight"].copy()
    tr = Trainer(job["model"], job["ds"], job["opt"], job["schedule"], 1, batch_size=32, methods=methods,
                 ledger=job["ledger"], seed=0, progress=False, verbose=False)
    tr.fit()
    np.testing.assert_array_equal(outs["w"], fixed_point(w0, 8, weight_range(w0), True).value)   # 8-bit in forward
    codes = (outs["x"] - outs["x"].min()) / np.diff(np.unique(outs["x"]))[:1].min()
    assert len(np.unique(outs["x"])) <= 256 and np.allclose(codes, np.round(codes), atol=1e-2)
    w_end = tr.model.leaves()[0].params["weight"]
    assert not np.array_equal(w_end, fixed_point(w_end, 8, weight_range(w_end), True).value)  # master is fp32
    assert tr.ledger.formats.get(tr.model.leaves()[0], "grad_output") == TensorFormat()        # 32-bit gradients


def test_signsgd_signs_conv_gradients_only():
    from minicnn.models import build
    m = build_methods(["signsgd"])[0]
    net = build("resnet8")
    conv, fc = net.leaves()[0], net.leaves()[-1]
    g = np.array([[-0.3, 0.0, 2.0]], dtype=np.float32)
    np.testing.assert_array_equal(m.param_grad(conv, "weight", g), [[-1.0, 0.0, 1.0]])
    assert m.param_grad(fc, "weight", g) is g
    assert build_methods(["signsgd:layers=all"])[0].param_grad(fc, "weight", g).tolist() == [[-1.0, 0.0, 1.0]]
    with pytest.raises(ValueError):
        build_methods(["signsgd:layers=some"])


def test_bad_options_are_clear_errors():
    for spec, msg in (("gradprune:p=1.0", "p must be"), ("gradprune:where=middle", "where"),
                      ("psg:beta=2", "beta"), ("psg:msb_x=9", "msb_x"), ("fixed8:bits_x=0", "bits_x")):
        with pytest.raises(ValueError, match=msg):
            build_methods([spec])
