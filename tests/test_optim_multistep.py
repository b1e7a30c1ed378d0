"""MultiStepLR (PyTorch semantics) and the stretching of milestones by a method's epochs_scale."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minicnn.training.optim import MultiStepLR, StepLR, stretch_milestones


def test_multistep_matches_pytorch_table():
    # torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[2, 4], gamma=0.1), stepped once per epoch
    s = MultiStepLR(0.1, [2, 4], gamma=0.1)
    assert [s.lr_at(e) for e in range(6)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


def test_multistep_order_and_duplicates():
    assert MultiStepLR(1.0, [4, 2]).lr_at(3) == pytest.approx(0.1)
    # a milestone given twice multiplies twice (PyTorch's Counter of milestones)
    assert MultiStepLR(1.0, [2, 2], gamma=0.5).lr_at(2) == pytest.approx(0.25)
    assert MultiStepLR(1.0, [0], gamma=0.5).lr_at(0) == pytest.approx(0.5)
    assert MultiStepLR(1.0, []).lr_at(100) == 1.0


@given(st.integers(1, 5), st.floats(0.05, 0.9), st.integers(0, 30))
@settings(max_examples=50, deadline=None)
def test_multistep_with_even_milestones_is_steplr(step, gamma, epoch):
    ms = list(range(step, 40, step))
    assert MultiStepLR(0.3, ms, gamma).lr_at(epoch) == pytest.approx(StepLR(0.3, step, gamma).lr_at(epoch))


@pytest.mark.parametrize("bad", [[-1], [1.5], ["x"]])
def test_multistep_rejects_bad_milestones(bad):
    with pytest.raises((ValueError, TypeError)):
        MultiStepLR(0.1, bad)


def test_stretch_rounds_to_nearest():
    assert stretch_milestones([3, 6], 1.333) == [4, 8]        # 3.999 -> 4, 7.998 -> 8 (truncation gives 3, 7)
    assert stretch_milestones([30, 45], 4 / 3) == [40, 60]
    assert stretch_milestones([3], 1.5) == [5]                # 4.5: halves round up
    assert stretch_milestones([5, 10], 1.0) == [5, 10]
    assert stretch_milestones([10, 5], 0.5) == [3, 5]         # sorted; 2.5 -> 3
    assert stretch_milestones([1, 0], 0.2) == [0, 1]          # a milestone >= 1 stays >= 1


@given(st.lists(st.integers(0, 200), max_size=6), st.floats(0.1, 4.0), st.floats(0.1, 4.0))
@settings(max_examples=100, deadline=None)
def test_stretch_is_monotone_and_close(ms, a, b):
    sa = stretch_milestones(ms, a)
    # nearest epoch, except that a milestone >= 1 never moves to epoch 0
    assert all(abs(s - m * a) <= 0.5 + 1e-9 or (s == 1 and m * a < 0.5) for s, m in zip(sa, sorted(ms)))
    if a <= b:
        assert all(x <= y for x, y in zip(sa, stretch_milestones(ms, b)))


@pytest.mark.parametrize("scale", [0, -1, float("nan"), float("inf")])
def test_stretch_rejects_bad_scale(scale):
    with pytest.raises(ValueError):
        stretch_milestones([3], scale)
