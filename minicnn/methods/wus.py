"""``wus`` and ``wus-lr``: Weight Update Skipping (Safayenikoo & Akturk, 2020, §3, Algorithm 1).

Training alternates between two kinds of epoch (§3, Fig. 2):

* **normal**: every weight and bias is updated;
* **WUS**: only the biases of the last ``layers`` weight layers are updated
  ("1L", §3.3, the setting of every reported result, §4.2); every weight and
  every other bias is frozen, so backward stops right after the last
  layer's bias gradient and a WUS epoch costs little more than a forward
  pass. Table 1 reports 49.5-58.9% less training time on CIFAR-10 (37.1-49.7%
  on CIFAR-100) on a CPU, at a mean accuracy loss of 0.71 points (Table 2).

When to switch, as minicnn implements it (the controller is
:class:`WUSController`, a pure object the tests drive with scripted
accuracies; epochs are 0-based, accuracies fractions in [0, 1])::

    initial epoch (§3.1)   after each validation, s_e = std of the last ``window`` validation
                           accuracies, in percent points. The first time s_{e-1} < std_threshold
                           and s_e < std_threshold ("two successive epochs"), the initial epoch
                           is e + 1 ("we choose the next epoch as an initial epoch").
    eligible (Alg. 1)      an epoch t can be a WUS epoch only if t > initial epoch (strictly:
                           the initial epoch itself is still normal, as Alg. 1's tests say).
    patience (§3.2.1,      from the first validation on: best = first accuracy; then an accuracy
     Alg. 1's              < best + delta adds one to the count, any other (a tie included when
     WeightUpdateSkipping) delta = 0) sets best to it and resets the count. When the count reaches
                           ``patience`` it is reset and the next epoch is normal -- exactly one
                           (Alg. 1's ``previous_epoch``: WUS resumes when epoch - previous_epoch > 1).
                           Best and count are not reset when WUS starts.
    WUS+LR (§3.2.2)        in addition, the first epoch run at a new learning rate is normal.
    otherwise              every eligible epoch is a WUS epoch.

Paper defaults: patience 7, delta 0 (Alg. 1), std_threshold 0.71 (footnote
1), 1L. The paper trained 200 epochs (lr 0.1, /10 after 30 epochs, batch
128, momentum 0.9, weight decay 1e-4, no augmentation, §4.1).

Choices minicnn made where the paper is silent (each an option):

* ``std_threshold`` is read in **percent points**: the paper gives 0.71 with
  no unit and reports every accuracy in percent. ``delta`` is in percent
  points too (0 in the paper, where the unit does not matter).
* ``window``: over how many epochs the standard deviation is taken is not
  said; minicnn uses the last ``window`` = 5 validations, population
  standard deviation (``np.std``, ddof 0). No deviation exists before
  ``window`` validations, so the earliest initial epoch is ``window + 1``.
* Which layers are "the last x layers" (§3.3: "starting from the last
  hidden layer", Fig. 3a/b: the biases of the last one or two layers of the
  network): the weight layers (Conv2d and Linear) counted along the
  network's depth, input to output (:func:`weight_layers`). On a ResNet the
  1x1 projection shortcuts are not among them: they are not layers of the
  depth the name counts (ResNet-18's 18, resnet8's 8: stem conv, two convs
  per block, fc), and they sit beside the block's conv2, not after it. So
  ``layers=2`` is fc and the last block's conv2 (``bn2.bias``), never
  ``shortcut_bn.bias`` (which a walk in leaf order gave, the block listing
  its shortcut last), and ``layers`` goes up to the network's depth.
* Which biases, when a layer has none: a conv without a bias that is
  directly followed by a BatchNorm2d has that BatchNorm's beta (``bias``)
  stand for its bias (beta is the per-channel shift added after the conv,
  exactly what a conv bias would be before normalization cancels it).
  BatchNorm's gamma is a weight and is frozen. A weight layer with neither
  contributes nothing (recorded in ``targets``).
* Another method's layers are not the network's: the walks (targets, what
  is frozen, Eq. 1's w and b) cover the backbone only
  (:func:`~minicnn.methods.base.backbone_leaves`). SLU's gates (aux layers,
  E2-Train §3.2) are neither WUS targets nor frozen by it: SLU trains them
  (in a WUS epoch only from its cost term, since backward stops at the
  targets) and they do not enter Eq. 1. Walking ``model.leaves()`` instead
  made a gate's bias-less embedding "the last Linear": no target at all,
  every WUS epoch froze everything.
* BatchNorm running statistics keep updating in WUS epochs (the layers stay
  in train mode, as with PyTorch's ``requires_grad = False``, which is how
  the paper's PyTorch code froze parameters): the forward pass, and what
  evaluation normalizes with, is that of a normal epoch.
* Frozen parameters get no gradient, so SGD skips them entirely (no weight
  decay, no momentum step) -- Alg. 1 sets ``.grad = None`` too.
* WUS+LR (§3.2.2 says only "we switch from WUS phase to normal training
  phase when the learning rate is changed") is read as: everything WUS does,
  the patience rule included, *plus* the first epoch at a new learning rate
  is normal (one epoch, as the patience rule's). The other reading -- the
  learning rate replaces the patience rule -- contradicts the paper's own
  numbers (an inference from them; the paper states neither): with the §4.1
  schedule (lr /10 once, after 30 of 200 epochs) WUS+LR would then run at
  most one normal epoch after its initial epoch (at the rate change), so it
  would skip *more* updates and save more time than WUS.
  The paper finds the opposite: Table 3 (CIFAR-10) WUS+LR skips 73/71/72/71%
  of the parameter updates against WUS's 74/74/74/72% (VGG-11, VGG-16,
  AlexNet, ResNet-18), Table 1 saves less time in all eight model/dataset
  pairs (e.g. VGG-11 CIFAR-10 51.6% against 58.93%), and §4.3 says WUS+LR
  "causes training to spend more time on normal training phase (thus, more
  weight updates)". Only CIFAR-100 AlexNet in Table 3 goes the other way
  (74% against 56%); minicnn follows the rest.
* WUS+LR needs a schedule whose rate changes rarely: with a cosine schedule
  the rate changes every epoch and every epoch would be normal, so
  ``wus-lr`` refuses it (give ``--schedule step`` or ``--milestones``).

Eq. 1 (§4.4), the parameter updates of a run, ``N = E_wus * b + E_normal *
(b + w)`` against ``E * (b + w)`` for a baseline, ``w`` and ``b`` "the
number of weights and biases [that] exist in the network", and Table 3's
"percentage of reduction in updated parameters" is ``1 - N / (E * (b + w))``.
Read literally, a WUS epoch counts *every* bias of the network (``b``),
though §4.4's own gloss says only "biases of the last x layers are updated".
minicnn records both, over the epochs so far:

* ``updates_skipped_eq1`` -- minicnn's reading: ``b`` = the parameters a WUS
  epoch really updates (the targets, ``b_x``);
* ``updates_skipped_eq1_paper_b`` -- Eq. 1 as printed: ``b`` = every bias of
  the network (every parameter named ``bias``: conv and linear biases and
  BatchNorm betas; ``biases_total`` in the summary), to compare with Table 3.

The two differ by ``(E_wus / E) * (b - b_x) / (b + w)``: a fraction of a
point on the paper's models (minicnn's vgg11-cifar: 2,762 biases among
9.2 M parameters, 0.03%), more on a small model. w + b are the backbone's parameters (SLU's gates left out).

Records: per epoch its kind, the standard deviation, best, count, the
initial epoch and both Eq. 1 fractions so far; in the summary the kinds, the
counts of each, the targets, the parameter and bias counts and both Eq. 1
fractions of the whole run.
"""
from __future__ import annotations

import math

import numpy as np

from ..layers.batchnorm import BatchNorm2d
from ..layers.conv import Conv2d
from ..layers.linear import Linear
from ..layers.residual import BasicBlock
from .base import FrozenParams, Method, backbone_leaves, backbone_parameters, register_method

NORMAL, WUS = "normal", "wus"


class WUSController:
    """The decisions of WUS / WUS+LR (§3.1, §3.2, Alg. 1), driven by scripted or real accuracies.

    Use: ``kind = ctl.kind_of(epoch, lr_changed)`` at the start of each epoch,
    ``ctl.observe(epoch, val_acc)`` after its validation. ``lr_changed`` means
    "this epoch's learning rate differs from the previous epoch's" and only
    matters with ``lr_reset=True`` (WUS+LR).
    """

    def __init__(self, patience: int = 7, delta: float = 0.0, std_threshold: float = 0.71, window: int = 5,
                 lr_reset: bool = False):
        if int(patience) != patience or patience < 1:
            raise ValueError(f"WUS: patience must be a whole number >= 1, got {patience}")
        if int(window) != window or window < 2:
            raise ValueError(f"WUS: window must be a whole number >= 2 (a deviation needs two values), got {window}")
        if not std_threshold >= 0 or not math.isfinite(std_threshold):
            raise ValueError(f"WUS: std_threshold must be >= 0 (percent points), got {std_threshold}")
        if not math.isfinite(delta):
            raise ValueError(f"WUS: delta must be a finite number of percent points, got {delta}")
        self.patience, self.delta, self.std_threshold = int(patience), float(delta), float(std_threshold)
        self.window, self.lr_reset = int(window), bool(lr_reset)
        self.accs: list[float] = []          # validation accuracies, percent points
        self.stds: list[float | None] = []   # std of the last `window` of them, per validation
        self.initial_epoch: int | None = None
        self.best: float | None = None
        self.count = 0
        self.previous_epoch: int | None = None   # Alg. 1: the epoch whose validation reached patience

    # -- Alg. 1, training(): the kind of epoch `epoch` ------------------------------------
    def kind_of(self, epoch: int, lr_changed: bool = False) -> str:
        if self.initial_epoch is None or epoch <= self.initial_epoch:
            return NORMAL
        if self.previous_epoch is not None and epoch - self.previous_epoch <= 1:
            return NORMAL                       # the one normal epoch after patience ran out
        if self.lr_reset and lr_changed:
            return NORMAL                       # WUS+LR: the first epoch at a new learning rate
        return WUS

    # -- Alg. 1, validation() and §3.1 ------------------------------------------------------
    def observe(self, epoch: int, val_acc: float) -> None:
        """Record the validation accuracy (a fraction) measured after epoch ``epoch``."""
        acc = 100.0 * float(val_acc)
        self.accs.append(acc)
        # §3.1: two successive epochs with a deviation below the threshold -> next epoch is the initial epoch
        std = float(np.std(self.accs[-self.window:])) if len(self.accs) >= self.window else None
        self.stds.append(std)
        if (self.initial_epoch is None and len(self.stds) >= 2 and None not in self.stds[-2:]
                and self.stds[-2] < self.std_threshold and self.stds[-1] < self.std_threshold):
            self.initial_epoch = epoch + 1
        # Alg. 1 WeightUpdateSkipping(patience, accuracy, delta, epoch)
        if self.best is None:
            self.best = acc
        elif acc < self.best + self.delta:
            self.count += 1
            if self.count >= self.patience:
                self.count = 0
                self.previous_epoch = epoch
        else:
            self.best = acc
            self.count = 0

    def run(self, accs, lrs=None) -> list[str]:
        """The kinds of epochs 0..len(accs) for scripted accuracies (and learning rates): a testing aid."""
        kinds = []
        for e, a in enumerate(accs):
            changed = lrs is not None and e > 0 and lrs[e] != lrs[e - 1]
            kinds.append(self.kind_of(e, changed))
            self.observe(e, a)
        return kinds

    # -- resume ----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"accs": list(self.accs), "stds": list(self.stds), "initial_epoch": self.initial_epoch,
                "best": self.best, "count": self.count, "previous_epoch": self.previous_epoch}

    def load_state_dict(self, d) -> None:
        self.accs = [float(a) for a in d["accs"]]
        self.stds = [None if s is None else float(s) for s in d["stds"]]
        self.initial_epoch = None if d["initial_epoch"] is None else int(d["initial_epoch"])
        self.best = None if d["best"] is None else float(d["best"])
        self.count = int(d["count"])
        self.previous_epoch = None if d["previous_epoch"] is None else int(d["previous_epoch"])


def weight_layers(model) -> list:
    """The network's weight layers counted as the paper counts "the last x layers" (§3.3), input to output.

    Conv2d and Linear layers of the backbone (:func:`~minicnn.methods.base.backbone_leaves`:
    a method's own layers, SLU's gates, are not the network's), in forward order, without
    the 1x1 projection shortcuts of residual blocks: the layers a ResNet's depth counts
    (resnet8: the stem conv, two convs per block, fc = 8), so the layer before fc is the
    last block's conv2, whatever order the block lists its children in.
    """
    shortcuts = {id(b.shortcut_conv) for b in model.modules()
                 if isinstance(b, BasicBlock) and getattr(b, "projection", False)}
    return [m for m in backbone_leaves(model) if isinstance(m, (Conv2d, Linear)) and id(m) not in shortcuts]


def wus_targets(model, layers: int) -> list[tuple[object, str]]:
    """The (layer, param name) pairs a WUS epoch updates: the bias of each of the last ``layers`` weight layers.

    Weight layers are those of :func:`weight_layers`; a bias-less one directly
    followed by a BatchNorm2d contributes that BatchNorm's ``bias`` (beta).
    """
    leaves = backbone_leaves(model)
    pos = {id(m): i for i, m in enumerate(leaves)}
    weights = weight_layers(model)
    if layers < 1 or layers > len(weights):
        raise ValueError(f"WUS: layers must be between 1 and {len(weights)} (the model's weight layers), "
                         f"got {layers}")
    targets = []
    for m in weights[-layers:]:
        i = pos[id(m)]
        if "bias" in m.params:
            targets.append((m, "bias"))
        elif i + 1 < len(leaves) and isinstance(leaves[i + 1], BatchNorm2d):
            targets.append((leaves[i + 1], "bias"))
    return targets


class _WUSBase(Method):
    lr_reset = False

    def __init__(self, patience: int = 7, delta: float = 0.0, std_threshold: float = 0.71, window: int = 5,
                 layers: int = 1):
        self.controller = WUSController(patience, delta, std_threshold, window, lr_reset=self.lr_reset)
        if int(layers) != layers or layers < 1:
            raise ValueError(f"method {self.name}: layers must be a whole number >= 1, got {layers}")
        self.patience, self.delta, self.std_threshold, self.window, self.layers = \
            patience, delta, std_threshold, window, layers
        self.kinds: list[str] = []
        self._frozen = FrozenParams()
        self._prev_lr: float | None = None

    def on_train_begin(self, state):
        sched = getattr(state, "schedule", None)
        if self.lr_reset and type(sched).__name__ == "CosineLR":
            raise ValueError(f"method {self.name}: a cosine schedule changes the learning rate every epoch, "
                             "so every epoch would be normal (§3.2.2); give --schedule step or --milestones E1,E2,...")
        model = state.model
        self._targets = wus_targets(model, self.layers)
        self._all = backbone_parameters(model)          # not another method's (SLU's gates): theirs to train
        target_ids = {(id(m), n) for m, n in self._targets}
        self._to_freeze = [(m, n) for m, n in self._all if (id(m), n) not in target_ids]
        self._n_params = sum(m.params[n].size for m, n in self._all)
        self._n_targets = sum(m.params[n].size for m, n in self._targets)
        self._n_biases = sum(m.params[n].size for m, n in self._all if n == "bias")   # Eq. 1's b as printed

    def on_epoch_begin(self, state):
        lr_changed = self._prev_lr is not None and state.lr != self._prev_lr
        self._prev_lr = state.lr
        kind = self.controller.kind_of(state.epoch, lr_changed)
        self.kinds.append(kind)
        if kind == WUS:
            self._frozen.freeze(self._to_freeze)
        else:   # give back only what this method froze, not what another method froze
            self._frozen.release()

    def on_epoch_end(self, state):
        self.controller.observe(state.epoch, state.control_acc())

    # -- records ------------------------------------------------------------------------------
    def epoch_record(self, state) -> dict:
        c = self.controller
        return {"kind": self.kinds[-1], "std_pp": c.stds[-1] if c.stds else None, "best_pp": c.best,
                "count": c.count, "initial_epoch": c.initial_epoch,
                "next_kind_unless_lr_change": c.kind_of(state.epoch + 1),
                "updates_skipped_eq1": self.updates_skipped_fraction(),
                "updates_skipped_eq1_paper_b": self.updates_skipped_fraction(paper_b=True)}

    def updates_skipped_fraction(self, paper_b: bool = False) -> float | None:
        """Eq. 1 over the epochs so far: 1 - (E_wus * b + E_normal * (w + b)) / (E * (w + b)).

        b is the parameters a WUS epoch really updates (the targets, minicnn's
        reading), or with ``paper_b`` every bias of the network (Eq. 1 as printed).
        """
        e = len(self.kinds)
        if not e:
            return None
        e_wus = self.kinds.count(WUS)
        b = self._n_biases if paper_b else self._n_targets
        done = e_wus * b + (e - e_wus) * self._n_params
        return 1.0 - done / (e * self._n_params)

    def summary_record(self, state) -> dict:
        return {"kinds": list(self.kinds), "epochs_wus": self.kinds.count(WUS),
                "epochs_normal": self.kinds.count(NORMAL), "initial_epoch": self.controller.initial_epoch,
                "targets": [f"{m.name}.{n}" for m, n in self._targets],
                "params_total": self._n_params, "params_updated_in_wus_epochs": self._n_targets,
                "biases_total": self._n_biases,
                "updates_skipped_fraction_eq1": self.updates_skipped_fraction(),
                "updates_skipped_fraction_eq1_paper_b": self.updates_skipped_fraction(paper_b=True)}

    # -- resume -----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"controller": self.controller.state_dict(), "kinds": list(self.kinds), "prev_lr": self._prev_lr}

    def load_state_dict(self, d) -> None:
        self.controller.load_state_dict(d["controller"])
        self.kinds = list(d["kinds"])
        self._prev_lr = d["prev_lr"]


@register_method("wus")
class WeightUpdateSkipping(_WUSBase):
    """WUS (§3.2.1, Alg. 1); see the module docstring."""
    name = "wus"
    lr_reset = False


@register_method("wus-lr")
class WeightUpdateSkippingLR(_WUSBase):
    """WUS+LR (§3.2.2): WUS, and the first epoch at a new learning rate is normal."""
    name = "wus-lr"
    lr_reset = True
