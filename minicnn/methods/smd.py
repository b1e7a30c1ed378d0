"""``smd``: Stochastic Mini-batch Dropping (Wang et al., E2-Train, NeurIPS 2019, §3.1 and §4.2).

The paper (§3.1): "At each epoch, SMD simply skips every mini-batch with a
default probability of 0.5. All other training protocols, such as learning
rate schedule, remain unchanged." It reads SMD as sampling with limited
replacement: over two SMD epochs a sample is seen 2, 1 or 0 times with
probability 0.25, 0.5, 0.25.

Equal energy (§4.2, Fig. 3a): with p = 0.5 and the same number of epochs
SMD halves the training cost (energy ratio 0.5). The paper compares at
equal *energy*: every later experiment uses "SMD under this energy ratio of
0.67", i.e. 4/3 of the baseline's iterations of which half are dropped
(64k -> ~85k iterations; the official code multiplies its LR milestones,
32k and 48k, by 4/3). In minicnn ``epochs_scale`` does this: the trainer
multiplies ``--epochs`` by it and stretches the schedule (milestones
included, rounded to the nearest epoch), so the paper's setting is
``--method smd:p=0.5,epochs_scale=1.333``.

Options and defaults::

    p             0.5   probability of dropping each mini-batch (§3.1 default), 0 <= p < 1
    epochs_scale  1.0   run length multiplier (1.333 = the paper's energy ratio 0.67 at p=0.5)

What minicnn does, and where it differs from the official code
(GATECH-EIC/E2Train, ``main_all.py``):

=============================  ==================================  =====================================
                               official E2-Train code              minicnn
=============================  ==================================  =====================================
random stream                  Python's global ``random``, shared  the method's own ``self.rng`` (seeded
                               with everything else                from run seed and method key): adding
                                                                   another method never changes which
                                                                   batches are dropped
draw                           ``random.uniform(0,1) > 0.5``       ``rng.random() < p``: one draw per
                               per iteration                       batch of the schedule, in order
dropped batch: loading         loaded (``next(iterator)``) first   never loaded, augmented or normalized
                                                                   (``state.x`` is not touched)
dropped batch: optimizer       ``zero_grad(); step()``: with zero  no step at all: weights, momentum
                               gradients, momentum and weight      buffers and weight decay are
                               decay still moved the weights       untouched (a true no-op)
milestone stretch              ``int(32000 * 4/3)`` (truncation)   rounded to the nearest epoch
=============================  ==================================  =====================================

The ledger's dense figure counts every batch of the (stretched) schedule, so
the MACs saved are about ``p``. Records: per epoch the batches kept and
dropped; in the summary the totals, the measured drop rate and the
energy ratio the run was set up for, ``(1 - p) * epochs_scale``.
"""
from __future__ import annotations

import numpy as np

from .base import Method, register_method


class DropDecider:
    """The decision of SMD, on its own: drop each batch with probability ``p``, from ``rng``.

    ``drop(rng)`` takes exactly one uniform draw per call, whatever ``p``
    is, so the stream's position depends only on how many batches were
    scheduled, never on what was decided (p = 0 still consumes draws).
    """

    def __init__(self, p: float):
        p = float(p)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"method smd: p must be in [0, 1) (p=1 would drop every batch), got {p}")
        self.p = p

    def drop(self, rng: np.random.Generator) -> bool:
        return bool(rng.random() < self.p)


@register_method("smd")
class SMD(Method):
    """Stochastic mini-batch dropping (E2-Train §3.1); see the module docstring."""

    name = "smd"

    def __init__(self, p: float = 0.5, epochs_scale: float = 1.0):
        self.decider = DropDecider(p)
        if not (epochs_scale > 0 and np.isfinite(epochs_scale)):
            raise ValueError(f"method smd: epochs_scale must be a positive number, got {epochs_scale}")
        self.p, self.epochs_scale = float(p), float(epochs_scale)
        self._kept = self._dropped = 0          # this epoch
        self._kept_total = self._dropped_total = 0

    # -- hooks ----------------------------------------------------------------
    def on_epoch_begin(self, state):
        self._kept = self._dropped = 0

    def on_batch_begin(self, state):
        # decide from the stream alone: never read state.x (that would load the batch)
        if self.decider.drop(self.rng):
            self._dropped += 1
            self._dropped_total += 1
            return False
        self._kept += 1
        self._kept_total += 1
        return True

    # -- records ----------------------------------------------------------------
    def epoch_record(self, state) -> dict:
        return {"batches_kept": self._kept, "batches_dropped": self._dropped}

    def summary_record(self, state) -> dict:
        n = self._kept_total + self._dropped_total
        return {"p": self.p, "epochs_scale": self.epochs_scale,
                "batches_kept": self._kept_total, "batches_dropped": self._dropped_total,
                "drop_rate": self._dropped_total / n if n else None,
                "energy_ratio_planned": (1.0 - self.p) * self.epochs_scale}

    # -- resume -------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"kept_total": self._kept_total, "dropped_total": self._dropped_total}

    def load_state_dict(self, d) -> None:
        self._kept_total, self._dropped_total = int(d["kept_total"]), int(d["dropped_total"])
