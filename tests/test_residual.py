"""BasicBlock under per-sample gating (SLU, stochastic depth): gradient checks
of gated identity and projection blocks, the published executed_mask /
executed_count, and gather/scatter execution against masked execution
("compute all, mask after", the official E2-Train code) on the same mask."""
import numpy as np
import pytest

from minicnn.gradcheck import numerical_gradient, rel_error
from minicnn.hooks import Hook, HookList
from minicnn.layers import BasicBlock


class FixedGate(Hook):
    """block_gate: always the same mask (gather/scatter execution)."""

    def __init__(self, mask):
        self.mask = mask

    def block_gate(self, block, x):
        return self.mask


class MaskAfter(Hook):
    """Masked execution: the residual branch runs on every sample and its output
    (bn2's) is multiplied by m; the gradient into bn2 is multiplied by m too."""

    def __init__(self, mask):
        self.m = np.asarray(mask, dtype=np.float64)[:, None, None, None]

    def forward_output(self, layer, x, y):
        return y * self.m.astype(y.dtype) if layer.name == "bn2" else y

    def backward_output_grad(self, layer, dy):
        return dy * self.m.astype(dy.dtype) if layer.name == "bn2" else dy


class RecordBn2(Hook):
    def forward_output(self, layer, x, y):
        if layer.name == "bn2":
            self.out = y.copy()
        return y


def block_and_input(cin, cout, stride, n=5, seed=0):
    rng = np.random.default_rng(seed)
    block = BasicBlock(cin, cout, stride, dtype=np.float64, rng=np.random.default_rng(seed + 1))
    # non-trivial BN affine params, so that gamma/beta gradients are not symmetric
    for bn in [block.bn1, block.bn2] + ([block.shortcut_bn] if block.projection else []):
        bn.params["weight"][...] = rng.uniform(0.5, 1.5, bn.num_features)
        bn.params["bias"][...] = rng.normal(0, 0.3, bn.num_features)
    block.needs_input_grad = True
    return block, rng.standard_normal((n, cin, 6, 6)), rng


def params_of(block):
    return [(name, p) for name, layer in block.named_children() for p in layer.params]


@pytest.mark.parametrize("cin, cout, stride", [(3, 3, 1), (3, 4, 2)])
def test_gated_block_gradients_float64(cin, cout, stride):
    """A fixed mask: dL/dx and every parameter's gradient against central differences."""
    block, x, rng = block_and_input(cin, cout, stride)
    mask = np.array([True, False, True, True, False])
    block.set_hooks(HookList([FixedGate(mask)]))
    y = block.forward(x)
    assert block.executed_count == 3 and np.array_equal(block.executed_mask, mask)
    dy = rng.standard_normal(y.shape)                      # random upstream gradient
    block.zero_grad()
    dx = block.backward(dy)
    grads = {(n, p): getattr(block, n).grads[p].copy() for n, p in params_of(block)}
    num = numerical_gradient(lambda v: block.forward(v), x.copy(), dy, h=1e-5)
    assert rel_error(dx, num) < 1e-5
    for (n, p), g in grads.items():
        arr = getattr(block, n).params[p]
        num = numerical_gradient(lambda _: block.forward(x), arr, dy, h=1e-5)
        assert rel_error(g, num) < 1e-5, (n, p)
    # skipped samples reach dx through the shortcut only
    if not block.projection:
        np.testing.assert_allclose(dx[~mask], dy[~mask] * (x[~mask] > 0))


def test_projection_block_skipped_sample_takes_the_shortcut():
    block, x, _ = block_and_input(3, 4, 2)
    mask = np.array([True, False, False, True, False])
    block.set_hooks(HookList([FixedGate(mask)]))
    y = block.forward(x)
    ref, _, _ = block_and_input(3, 4, 2)
    s = ref.shortcut_bn.forward(ref.shortcut_conv.forward(x))   # the projection sees every sample
    np.testing.assert_allclose(y[~mask], np.maximum(s[~mask], 0), rtol=1e-12)
    assert not np.allclose(y[mask], np.maximum(s[mask], 0))


def test_executed_mask_and_count_are_published():
    block, x, _ = block_and_input(3, 3, 1)
    block.forward(x)
    assert block.executed_mask is None and block.executed_count == 5        # no gate: all ran
    block.set_hooks(HookList([FixedGate(np.ones(5, bool))]))
    block.forward(x)
    assert block.executed_mask is None and block.executed_count == 5        # an all-True mask: all ran
    block.set_hooks(HookList([FixedGate(np.zeros(5, bool))]))
    block.zero_grad()
    y = block.forward(x)
    assert block.executed_count == 0 and not block.executed_mask.any()
    np.testing.assert_allclose(y, np.maximum(x, 0))
    dx = block.backward(np.ones_like(y))
    np.testing.assert_allclose(dx, (x > 0).astype(float))
    assert block.conv1.grads["weight"] is None                              # the branch did no work
    block.set_hooks(HookList([FixedGate(np.ones(4, bool))]))
    with pytest.raises(ValueError, match="mask of shape"):
        block.forward(x)


@pytest.mark.parametrize("cin, cout, stride", [(3, 3, 1), (3, 4, 2)])
def test_gather_scatter_equals_masked_execution_in_eval_mode(cin, cout, stride):
    """With running statistics BN is per-sample: skipping rows == computing them and masking."""
    mask = np.array([False, True, True, False, True])
    out = []
    for hook in (FixedGate(mask), MaskAfter(mask)):
        block, x, rng = block_and_input(cin, cout, stride)
        for bn in [block.bn1, block.bn2]:
            bn.buffers["running_mean"][...] = rng.normal(0, 0.5, bn.num_features)
            bn.buffers["running_var"][...] = rng.uniform(0.5, 2, bn.num_features)
        block.eval()
        block.set_hooks(HookList([hook]))
        y = block.forward(x)
        block.zero_grad()
        dx = block.backward(rng.standard_normal(y.shape))
        out.append((y, dx, {k: getattr(block, k[0]).grads[k[1]] for k in params_of(block)}))
    (y1, dx1, g1), (y2, dx2, g2) = out
    np.testing.assert_allclose(y1, y2, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dx1, dx2, rtol=1e-12, atol=1e-14)
    for k in g1:
        np.testing.assert_allclose(g1[k], g2[k], rtol=1e-10, atol=1e-14, err_msg=str(k))


@pytest.mark.parametrize("cin, cout, stride", [(3, 3, 1), (3, 4, 2)])
def test_gather_scatter_in_train_mode_is_the_block_on_the_kept_sub_batch(cin, cout, stride):
    """In train mode BN normalizes over the kept samples only: gather/scatter equals the
    block run on x[m] alone (outputs, gradients, running statistics), and differs from
    masking a block run on the whole batch (BN statistics over all N samples)."""
    mask = np.array([True, True, False, False, True])
    gs, x, rng = block_and_input(cin, cout, stride)
    rec_gs, rec_sub = RecordBn2(), RecordBn2()
    gs.set_hooks(HookList([FixedGate(mask), rec_gs]))
    sub, _, _ = block_and_input(cin, cout, stride)
    sub.set_hooks(HookList([rec_sub]))
    masked, _, _ = block_and_input(cin, cout, stride)
    masked.set_hooks(HookList([MaskAfter(mask)]))
    y, y_sub, y_masked = gs.forward(x), sub.forward(x[mask]), masked.forward(x)
    # the residual branch's output (bn2's) on the kept rows is the sub-batch's; with an identity
    # shortcut so is y (a projection's BN normalizes over the whole batch in gs, over x[m] in sub)
    np.testing.assert_allclose(rec_gs.out, rec_sub.out, rtol=1e-12)
    if not gs.projection:
        np.testing.assert_allclose(y[mask], y_sub, rtol=1e-12)
    assert np.abs(y[mask] - y_masked[mask]).max() > 1e-3            # BN saw other statistics
    np.testing.assert_allclose(y[~mask], y_masked[~mask], rtol=1e-12)   # skipped rows: the shortcut
    for name in ("bn1", "bn2"):
        np.testing.assert_allclose(getattr(gs, name).buffers["running_mean"],
                                   getattr(sub, name).buffers["running_mean"], rtol=1e-12)
        assert not np.allclose(getattr(gs, name).buffers["running_mean"],
                               getattr(masked, name).buffers["running_mean"])
    if gs.projection:       # y differs through the shortcut's BN, so the gradients do too
        return
    # identity shortcut: the kept samples' dx and the branch's parameter gradients are the sub-batch's
    dy = rng.standard_normal(y.shape)
    gs.zero_grad(); sub.zero_grad()
    sub.needs_input_grad = True
    dx = gs.backward(dy)
    np.testing.assert_allclose(dx[mask], sub.backward(dy[mask]), rtol=1e-10, atol=1e-13)
    for name in ("conv1", "bn1", "conv2", "bn2"):
        for p in getattr(gs, name).params:
            np.testing.assert_allclose(getattr(gs, name).grads[p], getattr(sub, name).grads[p],
                                       rtol=1e-10, atol=1e-13)
