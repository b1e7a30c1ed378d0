"""SMD (E2-Train §3.1): drop decisions from the method's own stream; statistical tests."""
from __future__ import annotations

import numpy as np
import pytest

from minicnn.methods.smd import SMD, DropDecider


class NoBatchState:
    """A TrainState stand-in whose batch must never be read by SMD (reading it would load the batch)."""
    epoch = 0
    batch = 0

    @property
    def x(self):
        raise AssertionError("SMD read state.x: a dropped batch must not be loaded")


@pytest.mark.parametrize("p", [0.5, 0.25, 0.9])
def test_drop_rate_is_p(p):
    """Binomial(n, p): the number dropped lies within 5 standard deviations of n*p."""
    n = 20000
    d = DropDecider(p)
    rng = np.random.default_rng(123)
    drops = np.array([d.drop(rng) for _ in range(n)])
    sd = np.sqrt(n * p * (1 - p))
    assert abs(drops.sum() - n * p) < 5 * sd
    # independent draws: lag-1 correlation of the 0/1 sequence is ~ N(0, 1/n)
    x = drops.astype(float) - drops.mean()
    r = (x[1:] * x[:-1]).sum() / (x * x).sum()
    assert abs(r) < 5 / np.sqrt(n)


def test_p_zero_never_drops_and_still_draws_once_per_batch():
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    d = DropDecider(0.0)
    assert not any(d.drop(rng_a) for _ in range(100))
    rng_b.random(100)
    assert rng_a.random() == rng_b.random()        # the stream advanced exactly one draw per batch


def test_pattern_depends_only_on_the_methods_own_stream():
    """Two SMD instances given equal streams drop the same batches, whatever else draws random numbers."""
    def pattern(interleave):
        m = SMD(p=0.5)
        m.rng = np.random.default_rng(99)
        other = np.random.default_rng(1)
        s = NoBatchState()
        out = []
        for _ in range(200):
            if interleave:
                other.random(3)                     # another method / the augmentation drawing
                np.random.random()                  # the global stream
            out.append(m.on_batch_begin(s))
        return out
    a, b = pattern(False), pattern(True)
    assert a == b
    assert 60 < sum(a) < 140


def test_records_count_kept_and_dropped():
    m = SMD(p=0.5, epochs_scale=1.333)
    m.rng = np.random.default_rng(0)
    s = NoBatchState()
    m.on_epoch_begin(s)
    keep = [m.on_batch_begin(s) for _ in range(50)]
    rec = m.epoch_record(s)
    assert rec == {"batches_kept": sum(keep), "batches_dropped": 50 - sum(keep)}
    summ = m.summary_record(s)
    assert summ["drop_rate"] == pytest.approx(1 - sum(keep) / 50)
    assert summ["energy_ratio_planned"] == pytest.approx(0.5 * 1.333)
    m2 = SMD(p=0.5)
    m2.load_state_dict(m.state_dict())
    assert m2.summary_record(s)["batches_kept"] == sum(keep)


@pytest.mark.parametrize("kw", [dict(p=1.0), dict(p=-0.1), dict(epochs_scale=0), dict(epochs_scale=float("nan"))])
def test_bad_options(kw):
    with pytest.raises(ValueError):
        SMD(**kw)


# -- in training: a dropped batch is a true no-op ------------------------------------------------------------
from minicnn.hooks import Hook  # noqa: E402
from minicnn.training.conformance import check_method  # noqa: E402

from _method_helpers import small_trainer  # noqa: E402


class DropWatch(Hook):
    """Placed after SMD: if SMD dropped a batch, the weights and optimizer state at the next batch's start
    (or at the epoch's end) must equal those at the dropped batch's start, bit for bit."""

    def __init__(self, smd):
        self.smd, self.violations, self.dropped_checked = smd, [], 0
        self._prev, self._total = None, 0

    def _check(self, state):
        if self._prev is None:
            return
        w, o = self._prev
        self.dropped_checked += 1
        now_w, now_o = state.model.state_dict(), state.optimizer.state
        if any(not np.array_equal(w[k], now_w[k]) for k in w) or set(o) != set(now_o) or \
                any(not np.array_equal(o[k], now_o[k]) for k in o):
            self.violations.append((state.epoch, state.batch))
        self._prev = None

    def on_batch_begin(self, state):
        self._check(state)
        if self.smd._dropped_total != self._total:        # SMD (before us) just dropped this batch
            self._total = self.smd._dropped_total
            self._prev = ({k: v.copy() for k, v in state.model.state_dict().items()},
                          {k: v.copy() for k, v in state.optimizer.state.items()})
        return True

    def on_epoch_end(self, state):
        self._check(state)


def test_dropped_batch_is_never_loaded_run_or_stepped():
    smd = SMD(p=0.5)
    watch = DropWatch(smd)
    tr = small_trainer([smd, watch], epochs=2, n_train=320, batch=32)     # 10 batches an epoch
    loads, forwards = [], []
    load = tr.train_iter.load
    tr.train_iter.load = lambda idx, e, b: (loads.append((e, b)), load(idx, e, b))[1]
    fwd = tr.model.forward
    tr.model.forward = lambda x: (forwards.append(tr.model.training), fwd(x))[1]
    summary = tr.fit()
    rec = summary["method_records"]["smd"]
    kept, dropped = rec["batches_kept"], rec["batches_dropped"]
    assert kept + dropped == 20 and kept > 0 and dropped > 0
    assert len(loads) == kept                            # dropped batches never loaded (augmented, normalized)
    assert sum(forwards) == kept                         # nor run forward in training
    assert watch.dropped_checked == dropped and watch.violations == []
    assert summary["batches_dropped"] == dropped
    # the ledger's dense figure counts every batch of the schedule; the actual figure only those kept
    assert summary["macs"]["total"] / summary["dense_macs"]["total"] == pytest.approx(kept / 20, rel=1e-9)


def test_drop_pattern_does_not_change_when_another_method_is_added():
    def pattern(specs):
        tr = small_trainer(specs, epochs=2, n_train=256, batch=32, ledger=False)
        return tr.fit()["method_records"]["smd"]["per_epoch"]
    alone = pattern(["smd:p=0.5"])
    assert pattern(["freeze:layers=conv1", "smd:p=0.5"]) == alone


def test_conformance():
    summary = check_method("smd:p=0.5,epochs_scale=1.5", train_images=128)
    assert summary["epochs"] == 3                          # 2 epochs stretched by 1.5
