"""``lars-skip``: layer skip learning with LARS variables (Miyauchi et al., §III Eq. 1-3, Alg. 1, §IV, §V).

After each epoch, for every convolution l (§III, Eq. 1-3; the LARS ratio of
You et al.)::

    nw_l = ||W_l||_2 / ||W_l - W_l(start of the epoch)||_2

A large nw means the layer barely moved: "learning is not necessary for
that layer" (§III). If nw of a conv l exceeds the threshold alpha at epoch
N, then in epoch N+1 "only layers below that layer are learned" (§III).
Alg. 1 (lines 4-6: ``if i <= l: return``) skips the backward and update of
every layer i <= l, numbered from the input, so the conv and everything
between it and the input are frozen; the text's "below" must mean "after"
(and §III wants alpha to skip conv1-2, the first two). §IV: "In the epochs
wherein the accuracy was degraded, full layer learning was conducted".
Fully connected layers are never skipped (§III). Paper: VGG-F on ImageNet,
batch 32, lr 0.001, alpha = 2 (§IV): -39.0% MACs, -38.9% bandwidth
(Figs. 6-7); Table I: +3.0 points top-1 and 7.1% less wall time after 20
epochs; the 2.14x of the abstract is the time to reach the baseline's best
accuracy (Table II). An inference, not the paper's statement: conv1-2 hold
58.4% of VGG-F's MACs (§III, Figs. 2-3) and a conv's backward is 2/3 of its
training MACs, so freezing conv1-2 in almost every epoch would save
58.4% x 2/3 = 38.9%, which fits the -39%; the paper does not say how often
they were frozen.

The decision (:class:`LarsSkipController`, a pure object the tests drive)::

    measured    nw only for the convs that trained this epoch. A frozen conv has
                dW = 0, nw = inf: counting it would keep it frozen for ever.
    l*          the conv nearest the output (last in forward order) whose nw > alpha.
    cut         freeze every conv from the input up to and including l*; in residual
                models snap the cut *down* to a block boundary, so that only whole
                BasicBlocks are frozen (§V: "clumping multiple layers together").
    full epoch  mode=auto (default): after an epoch whose validation accuracy fell
                below the previous epoch's, or when no trained conv has nw > alpha.
                mode=alternate (minicnn's): the same, and a frozen epoch is always
                followed by a full one.

Choices minicnn made where the paper is silent (each stated here):

* "nearest the output": Alg. 1 freezes layers i <= l for *a* layer l whose nw
  exceeds alpha; with several such convs minicnn takes the deepest.
* What "a layer" is when freezing: a conv together with the BatchNorm2d that
  directly follows it (its BN stands for the conv's bias, as in ``wus``);
  in a residual model, whole BasicBlocks (both convs, both BNs, the
  projection shortcut). The stem conv + BN is a unit of its own.
* BatchNorm running statistics in the frozen prefix keep updating (the
  layers stay in train mode, normalizing with batch statistics): the
  frozen prefix then computes exactly the forward of a full epoch, so the
  layers that train see the activations they will see in full epochs, and
  evaluation's running statistics keep tracking them. Switching the prefix
  to eval mode would instead change its output (running vs batch
  statistics) every time it is frozen -- a distribution shift for the
  layers being trained.
* ``alpha``: 2 is the paper's value for VGG-F on ImageNet (§IV; lr 0.001, 40k
  iterations an epoch; §V: thresholds are set "in a trial and error
  manner"). nw grows as the steps shrink (roughly like 1/(lr * steps per
  epoch)), so on the 4k-image CIFAR slice every conv sits far above 2 after
  one epoch and alpha = 2 would freeze every conv every other epoch. On
  the slice, with nothing frozen, nw *grows with depth* in resnet20 and
  convnet-small (resnet20's ``layer3.0.shortcut_conv`` is always the
  largest) -- the reverse of VGG-F, whose alpha was set to skip conv1-2 "as much as possible" (§III) -- so
  "the deepest conv over alpha" freezes most of the network at once or
  nothing. ``DEFAULT_ALPHA`` = 40 sits just above the largest nw of
  resnet20's first epochs at lr 0.05, so that only the slowest conv
  (``layer3.0.shortcut_conv``) crosses it early and the cut is a
  17-of-21-conv prefix (stem, stages 1-2, layer3.0) rather than every conv.
  The nw measured per epoch, and the 8-epoch runs at alpha 40 and 20 with
  their frozen convs, MACs saved and accuracy, are in
  ``docs/measurements/methods1_helper_runs.md`` (section 1). To
  calibrate for another model or learning rate: run one or two epochs with
  ``--method lars-skip:alpha=1e9`` (never freezes; records nw per conv), then
  put alpha between the nw of the convs you want frozen and the rest.
* The accuracy is the validation accuracy (``--val-images``) when there is
  one, else the test accuracy (``state.control_acc()``).

Records: per epoch the nw of each conv that trained, the frozen convs and
the cut, and why the next epoch is full or frozen.
"""
from __future__ import annotations

import math

import numpy as np

from .base import FrozenParams, Method, backbone_leaves, register_method

#: calibrated on the CIFAR-10 slice, resnet20 at lr 0.05 (see the module docstring)
DEFAULT_ALPHA = 40.0


class LarsSkipController:
    """Which convs to freeze next epoch, from this epoch's nw values and accuracy.

    ``decide(nw, acc_fell, conv_order, allowed)`` returns ``(k, reason)``: the
    next epoch freezes the first ``k`` convs of ``conv_order``. ``nw`` maps
    conv name -> nw for the convs that *trained* this epoch (others are
    ignored even if present with an infinite value); ``allowed`` is the set of
    prefix sizes that fall on a block boundary (every size for a plain CNN).
    """

    MODES = ("auto", "alternate")

    def __init__(self, alpha: float, mode: str = "auto"):
        if not alpha > 0 or not math.isfinite(alpha):
            raise ValueError(f"method lars-skip: alpha must be a positive number, got {alpha}")
        if mode not in self.MODES:
            raise ValueError(f"method lars-skip: mode must be auto or alternate, got {mode!r}")
        self.alpha, self.mode = float(alpha), mode
        self.frozen_now = 0            # convs frozen in the epoch just run

    def decide(self, nw: dict, acc_fell: bool, conv_order, allowed, trained=None) -> tuple[int, str]:
        trained = set(nw) if trained is None else set(trained)
        if acc_fell:
            k, reason = 0, "accuracy fell: full epoch (§IV)"
        elif self.mode == "alternate" and self.frozen_now > 0:
            k, reason = 0, "alternate: a frozen epoch is followed by a full one"
        else:
            over = [i for i, name in enumerate(conv_order)
                    if name in trained and name in nw and nw[name] > self.alpha]
            if not over:
                k, reason = 0, "no trained conv has nw > alpha: full epoch"
            else:
                l_star = max(over)
                k = max(a for a in allowed if a <= l_star + 1)
                reason = f"l* = {conv_order[l_star]} (nw {nw[conv_order[l_star]]:.3g} > {self.alpha:g})" + \
                         (f", snapped to a block boundary: {k} convs" if k != l_star + 1 else "")
        self.frozen_now = k
        return k, reason

    def state_dict(self) -> dict:
        return {"frozen_now": self.frozen_now}

    def load_state_dict(self, d) -> None:
        self.frozen_now = int(d["frozen_now"])


def _block_of(model, conv) -> str | None:
    """The qualified name of the BasicBlock holding ``conv``, or None."""
    for m in model.modules():
        if type(m).__name__ == "BasicBlock" and conv.name.startswith(m.name + "."):
            return m.name
    return None


def conv_layout(model):
    """``(convs, allowed, frozen_sets)`` of a model, for :class:`LarsSkipController`.

    convs: the Conv2d leaves in forward order. allowed: prefix sizes k whose cut
    (between conv k and conv k+1) does not fall inside a BasicBlock.
    frozen_sets[k]: the (layer, param) pairs frozen when the first k convs are:
    every non-Linear leaf with parameters before conv k+1 (for k = all convs:
    before the first Linear after the last conv).
    The walk covers the backbone only (``backbone_leaves``): another method's
    layers (SLU's gates) are neither measured nor frozen by LARS skipping.
    """
    leaves = backbone_leaves(model)
    conv_pos = [i for i, m in enumerate(leaves) if type(m).__name__ == "Conv2d"]
    convs = [leaves[i] for i in conv_pos]
    blocks = [_block_of(model, c) for c in convs]
    n = len(convs)
    allowed = {0, n} | {k for k in range(1, n) if blocks[k - 1] is None or blocks[k - 1] != blocks[k]}
    frozen_sets = []
    for k in range(n + 1):
        if k < n:
            end = conv_pos[k]
        else:
            after = [i for i in range(conv_pos[-1] + 1, len(leaves)) if type(leaves[i]).__name__ == "Linear"] \
                if n else []
            end = after[0] if after else len(leaves)
        frozen_sets.append([(m, p) for m in leaves[:end] if type(m).__name__ != "Linear" for p in m.params])
    return convs, sorted(allowed), frozen_sets


def layer_nw(w_now: np.ndarray, w_start: np.ndarray) -> float:
    """Eq. 1-3: ||W|| / ||W - W_start|| (float64 sums); inf when the weight did not move."""
    num = float(np.linalg.norm(w_now.astype(np.float64).ravel()))
    den = float(np.linalg.norm((w_now.astype(np.float64) - w_start.astype(np.float64)).ravel()))
    return math.inf if den == 0.0 else num / den


@register_method("lars-skip")
class LarsSkip(Method):
    """Layer skip learning with LARS variables; see the module docstring."""

    name = "lars-skip"

    def __init__(self, alpha: float = DEFAULT_ALPHA, mode: str = "auto"):
        self.controller = LarsSkipController(alpha, mode)
        self.alpha, self.mode = float(alpha), mode
        self._k = 0                       # convs frozen in the coming/current epoch
        self._frozen = FrozenParams()
        self._prev_acc: float | None = None
        self._record: dict = {}
        self.history: list[dict] = []

    def on_train_begin(self, state):
        self._convs, self._allowed, self._frozen_sets = conv_layout(state.model)
        if not self._convs:
            raise ValueError("method lars-skip: the model has no Conv2d layer to skip")
        self._names = [c.name for c in self._convs]

    def on_epoch_begin(self, state):
        self._frozen.release()           # give back only what this method froze
        self._frozen.freeze(self._frozen_sets[self._k])
        # snapshot the weights of the convs that train this epoch (Eq. 3's W_{epoch-1})
        self._start = {c.name: c.params["weight"].copy() for c in self._convs if c.requires_grad["weight"]}

    def on_epoch_end(self, state):
        trained = [c for c in self._convs if c.name in self._start and c.requires_grad["weight"]]
        nw = {c.name: layer_nw(c.params["weight"], self._start[c.name]) for c in trained}
        acc = state.control_acc()
        acc_fell = self._prev_acc is not None and acc is not None and acc < self._prev_acc
        self._prev_acc = acc
        frozen_now = self._k
        self._k, reason = self.controller.decide(nw, acc_fell, self._names, self._allowed)
        self._record = {"frozen_convs": frozen_now, "frozen": self._names[:frozen_now],
                        "nw": {k: (None if math.isinf(v) else v) for k, v in nw.items()},
                        "accuracy_fell": acc_fell, "next_frozen_convs": self._k, "reason": reason}
        self.history.append(self._record)

    # -- records ------------------------------------------------------------------------------
    def epoch_record(self, state) -> dict:
        return dict(self._record)

    def summary_record(self, state) -> dict:
        ks = [r["frozen_convs"] for r in self.history]
        return {"alpha": self.alpha, "mode": self.mode, "convs": list(self._names),
                "frozen_convs_per_epoch": ks,
                "epochs_with_frozen_prefix": sum(1 for k in ks if k > 0)}

    # -- resume -----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"k": self._k, "prev_acc": self._prev_acc, "controller": self.controller.state_dict(),
                "history": list(self.history)}

    def load_state_dict(self, d) -> None:
        self._k = int(d["k"])
        self._prev_acc = d["prev_acc"]
        self.controller.load_state_dict(d["controller"])
        self.history = list(d["history"])
