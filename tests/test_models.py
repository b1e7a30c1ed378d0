"""Models: shapes, names, MACs from first principles, gradients of a whole
block and a whole model, checkpoints."""
import numpy as np
import pytest

from minicnn.gradcheck import numerical_gradient, rel_error
from minicnn.layers import BasicBlock, Conv2d, Linear, Sequential
from minicnn.losses import SoftmaxCrossEntropy
from minicnn.models import MODELS, build


def first_principles_macs(model, hw=32):
    """Forward MACs per image: conv = Ho*Wo*Cout*Cin*kh*kw, linear = in*out."""
    macs, shape = 0, (1, 3, hw, hw)
    # walk with shapes: each leaf's input shape is the previous leaf's output shape
    def walk(container, shape):
        nonlocal macs
        for child in container.children():
            if isinstance(child, BasicBlock):
                s = shape
                for l in child.main_branch():
                    s = visit(l, s)
                t = shape
                for l in child.shortcut_branch():
                    t = visit(l, t)
                shape = s
            elif isinstance(child, Sequential):
                shape = walk(child, shape)
            else:
                shape = visit(child, shape)
        return shape

    def visit(layer, shape):
        nonlocal macs
        out = layer.output_shape(shape)
        if isinstance(layer, Conv2d):
            kh, kw = layer.kernel_size
            macs += out[2] * out[3] * layer.out_channels * layer.in_channels * kh * kw
        elif isinstance(layer, Linear):
            macs += layer.in_features * layer.out_features
        return out

    walk(model, shape)
    return macs


@pytest.mark.parametrize("name, macs", [("convnet-small", 24_518_656), ("resnet20", 40_813_184)])
def test_forward_macs_per_image(name, macs):
    assert first_principles_macs(build(name)) == macs


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_builds_and_runs(name):
    kw = {"width": 0.25} if name in ("alexnet-cifar", "vgg11-cifar") else {}
    model = build(name, num_classes=7, **kw)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    y = model.forward(x)
    assert y.shape == (2, 7) and y.dtype == np.float32
    assert model.output_shape((2, 3, 32, 32)) == (2, 7)
    names = [q for q, _, _ in model.named_parameters()]
    assert len(names) == len(set(names))
    loss = SoftmaxCrossEntropy()
    loss.forward(y, np.array([0, 1]))
    assert model.backward(loss.backward()) is None           # the input needs no gradient
    assert all(layer.grads[p] is not None for _, layer, p in model.named_parameters())


def test_qualified_names_and_seeded_init():
    m = build("resnet20")
    names = [q for q, _, _ in m.named_parameters()]
    assert "layer2.0.shortcut_conv.weight" in names and "layer3.2.bn2.bias" in names and "fc.weight" in names
    assert not any(n.startswith("layer1.0.shortcut") for n in names)   # identity shortcut
    a, b, c = build("resnet8", seed=1), build("resnet8", seed=1), build("resnet8", seed=2)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(np.array_equal(sa[k], sb[k]) for k in sa)
    assert not np.array_equal(sa["conv1.weight"], sc["conv1.weight"])
    # Kaiming-normal, fan_out: std = sqrt(2 / (out*kh*kw))
    w = build("resnet20").state_dict()["layer3.1.conv2.weight"]
    assert w.std() == pytest.approx(np.sqrt(2 / (64 * 9)), rel=0.05)


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model 'resnet21'.*convnet-small"):
        build("resnet21")


def _param_gradcheck(model, x, labels, qname, rng, n_entries=6):
    """Check a few entries of d(loss)/d(param) against central differences."""
    loss = SoftmaxCrossEntropy()
    layer, pname = next((l, p) for q, l, p in model.named_parameters() if q == qname)
    model.forward(x); loss.forward(model.forward(x), labels)
    model.zero_grad(); model.backward(loss.backward())
    analytic = layer.grads[pname].copy()
    p = layer.params[pname]
    idx = [tuple(rng.integers(0, s) for s in p.shape) for _ in range(n_entries)]
    h = 1e-6
    for i in idx:
        old = p[i]
        p[i] = old + h; lp = loss.forward(model.forward(x), labels)
        p[i] = old - h; lm = loss.forward(model.forward(x), labels)
        p[i] = old
        num = (lp - lm) / (2 * h)
        assert abs(num - analytic[i]) <= 1e-6 * max(1.0, abs(num) + abs(analytic[i])), (qname, i, num, analytic[i])


@pytest.mark.parametrize("cin, cout, stride", [(4, 4, 1), (3, 6, 2)])
def test_basic_block_gradients_float64(cin, cout, stride):
    rng = np.random.default_rng(0)
    block = BasicBlock(cin, cout, stride, dtype=np.float64, rng=rng)
    block.needs_input_grad = True
    x = rng.standard_normal((3, cin, 6, 6))
    dy = rng.standard_normal(block.output_shape(x.shape))       # random upstream gradient
    block.forward(x)
    dx = block.backward(dy)
    num = numerical_gradient(lambda v: block.forward(v), x.copy(), dy, h=1e-5)
    # tolerance 1e-5 (not 1e-6 as for single layers): a composite of BN on 3x3
    # maps and two ReLUs has entries near 0 where float64 round-off dominates
    assert rel_error(dx, num) < 1e-5
    # parameters of both branches
    for layer, pname in [(block.conv1, "weight"), (block.bn2, "weight"), (block.bn1, "bias")] + \
            ([(block.shortcut_conv, "weight")] if block.projection else []):
        block.forward(x); block.backward(dy)
        analytic = layer.grads[pname].copy()
        p = layer.params[pname]

        def f(v, p=p):
            saved = p.copy(); p[...] = v
            out = block.forward(x); p[...] = saved
            return out
        num = numerical_gradient(f, p.copy(), dy, h=1e-5)
        assert rel_error(analytic, num) < 1e-5, (layer.name, pname)


def test_whole_model_gradients_float64():
    rng = np.random.default_rng(1)
    model = build("resnet8", num_classes=5, dtype=np.float64, seed=3)
    x = rng.standard_normal((4, 3, 8, 8))
    labels = np.array([0, 1, 4, 2])
    for q in ["conv1.weight", "layer1.0.conv2.weight", "layer2.0.shortcut_bn.weight", "layer3.0.bn1.bias",
              "fc.weight", "fc.bias"]:
        _param_gradcheck(model, x, labels, q, rng)


def test_checkpoint_round_trip(tmp_path):
    from minicnn.training import load_checkpoint, save_checkpoint
    m = build("resnet8", num_classes=10, seed=5)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    m.forward(x)                                # move the BN running statistics
    m.eval()
    want = m.forward(x)
    save_checkpoint(m, tmp_path / "model.npz", mean=np.zeros(3), std=np.ones(3))
    m2, meta, mean, std = load_checkpoint(str(tmp_path / "model.npz"))
    assert meta["arch"] == "resnet8"
    np.testing.assert_array_equal(m2.eval().forward(x), want)


@pytest.mark.parametrize("depth", [8, 14, 20, 38, 56, 74, 110])
def test_resnet_family_by_name(depth):
    """resnet{6n+2}: 3 stages of n blocks, 6n+2 layers with weights (convs + fc, shortcuts aside)."""
    from minicnn.layers import BasicBlock as BB
    name = f"resnet{depth}"
    assert name in MODELS
    m = build(name)
    blocks = [l for l in m.modules() if isinstance(l, BB)]
    n = (depth - 2) // 6
    assert len(blocks) == 3 * n and m.arch == name
    weighted = [q for q, l, p in m.named_parameters() if p == "weight" and isinstance(l, (Conv2d, Linear))
                and "shortcut" not in q]
    assert len(weighted) == depth
    assert [b.projection for b in blocks] == [False] * n + ([True] + [False] * (n - 1)) * 2
    assert m.output_shape((2, 3, 32, 32)) == (2, 10)


@pytest.mark.parametrize("name", ["resnet21", "resnet2", "resnet0", "resnet", "resnet08", "resnet-4"])
def test_not_a_resnet_depth(name):
    assert name not in MODELS
    with pytest.raises(ValueError, match="unknown model"):
        build(name)
    with pytest.raises(KeyError):
        MODELS[name]
