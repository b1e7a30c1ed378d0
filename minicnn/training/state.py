"""``TrainState``: what trainer-level hooks see, field by field -- half of the method contract.

Every field below has one line: who writes it, from when it holds a value
a hook may use, and what a method may do with it. The same table is in
``minicnn/methods/README.md`` (``tests/test_contract.py`` checks that the
two agree, from :func:`contract_table`).

Methods **read** the state and assign one field, ``stop_training``. They
act through the objects it holds instead: the ``requires_grad`` flags of
``model``'s layers, ``formats.set(...)``, ``ledger.add_work(...)``. Any
other assignment from code outside ``minicnn.training`` -- a read-only field
or a misspelt name -- raises one line naming the field::

    AttributeError: TrainState.lr is read-only for methods (written by the Trainer at each epoch start)

The check looks at the module of the assigning code (one frame lookup per
assignment; the Trainer assigns about ten fields per batch, reads cost
nothing). The list ``history`` is the Trainer's too: do not append to it.

A training loop of your own (as in ``tests/test_stats.py``) can hand hooks
a ``types.SimpleNamespace`` with the fields they read.
"""
from __future__ import annotations

import dataclasses
import sys
from typing import Any

from ..cost.formats import FormatTable

#: what a method may do with a field (the last column of the table)
READ, WRITE = "read", "read, write"
#: code in these modules may assign every field (the Trainer, its checkpoint reader, this module)
WRITERS = "minicnn.training."


def _field(writer: str, valid: str, methods: str = READ, default=None, factory=None):
    """A dataclass field that carries its line of the contract table."""
    meta = {"writer": writer, "valid": valid, "methods": methods}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


_START, _EPOCH, _BATCH = "the Trainer when built", "the Trainer at each epoch start", "the Trainer before each batch"
_FORWARD, _AFTER = "the Trainer after the forward", "the Trainer after each batch"


@dataclasses.dataclass(eq=False, repr=False)
class TrainState:
    """What hooks see. Methods read every field and assign only ``stop_training`` (see the module docstring).

    ``x`` is loaded on first access (augmented, normalized): a batch dropped
    in ``on_batch_begin`` without looking at it costs nothing.
    """

    # one line per field:  name: type = _field(written by, when it holds a value a hook may use, methods may)
    model: Any = _field(_START, "always", "read; set its layers' requires_grad flags")
    optimizer: Any = _field(_START, "always")
    epochs: int = _field(_START, "always: the run's length in epochs (stretched by epochs_scale)", READ, 0)
    num_batches: int = _field(_START, "always: batches per epoch, dropped ones included", READ, 0)
    rng: Any = _field(_START, "always: the Trainer's own stream", "read (draw from self.rng instead)")
    ledger: Any = _field(_START, "always (None without a ledger)", "read; count own work with add_work")
    run_dir: Any = _field(_START, "always (None without a run directory)")
    input_shape: tuple = _field(_START, "always: (C, H, W) of one training image", READ, (3, 32, 32))
    has_val: bool = _field(_START, "always: True with --val-images", READ, False)
    formats: FormatTable = _field(_START, "always", "read; declare formats with formats.set", factory=FormatTable)
    schedule: Any = _field(_START, "always: the lr schedule (lr_at(epoch))")
    epoch: int = _field(_EPOCH, "from on_epoch_begin: the epoch, 0-based", READ, 0)
    lr: float = _field(_EPOCH, "from on_epoch_begin: this epoch's learning rate", READ, 0.0)
    batch: int = _field(_BATCH, "on_batch_begin to on_batch_end: the batch's index in its epoch", READ, 0)
    indices: Any = _field(_BATCH, "on_batch_begin to on_batch_end: the batch's sample indices (else None)")
    y: Any = _field(_BATCH, "on_batch_begin to on_batch_end: the batch's labels (else None)")
    logits: Any = _field(_FORWARD, "on_after_backward to on_batch_end (then the last batch's)")
    loss: Any = _field(_FORWARD, "on_after_backward to on_batch_end (then the last batch's)")
    global_step: int = _field(_AFTER, "always: batches before this one, dropped ones included", READ, 0)
    batches_done: int = _field("the Trainer after each trained batch", "always: batches trained so far", READ, 0)
    batches_dropped: int = _field("the Trainer after each dropped batch", "always: batches dropped so far", READ, 0)
    history: list = _field("the Trainer after each epoch's evaluation", "on_epoch_end: history[-1] is this epoch's",
                           "read (the Trainer appends)", factory=list)
    stop_training: bool = _field("methods; the Trainer on resume", "always: True ends the run after this epoch",
                                 WRITE, False)
    batch_size: int = _field(_START, "always: the training batch size", READ, 0)
    train_set: Any = _field(_START, "always: (uint8 images, labels, mean, std, augment) of the training images; "
                            "read it through training_batches()")
    status: Any = _field("the Trainer after the last epoch", "on_train_end: \"completed\" or \"diverged\" "
                         "(None while training)")
    weights_replaced: Any = _field("methods in on_train_end", "on_train_end: the key of the method that put "
                                   "other weights into the model (the Trainer then evaluates again), else None",
                                   WRITE)
    _x: Any = dataclasses.field(default=None, init=False)
    _loader: Any = dataclasses.field(default=None, init=False)

    def __post_init__(self):
        self.input_shape = tuple(self.input_shape)
        self.has_val = bool(self.has_val)

    def __setattr__(self, name, value):
        if name not in _METHOD_WRITABLE and not sys._getframe(1).f_globals.get("__name__", "").startswith(WRITERS):
            raise AttributeError(_refusal(name))
        object.__setattr__(self, name, value)

    def __repr__(self):
        return (f"TrainState(epoch={self.epoch}, batch={self.batch}, global_step={self.global_step}, "
                f"lr={self.lr}, epochs={self.epochs}, num_batches={self.num_batches})")

    @property
    def x(self):
        """The batch's images, loaded on first access: from on_batch_begin to on_batch_end (the Trainer writes it)."""
        if self._x is None and self._loader is not None:
            self._x = self._loader()
            self._loader = None
        return self._x

    @x.setter
    def x(self, value):
        self._x, self._loader = value, None

    def _set_batch(self, indices, y, loader) -> None:
        self.indices, self.y, self._x, self._loader = indices, y, None, loader

    @property
    def control_metric(self) -> str:
        """What controllers decide from: ``val_acc`` with a validation set, else ``test_acc``."""
        return "val_acc" if self.has_val else "test_acc"

    def control_acc(self, epoch: int = -1):
        """Accuracy a controller should read for ``history[epoch]`` (validation when there is one)."""
        return self.history[epoch][self.control_metric] if self.history else None

    def training_batches(self, batch_size: int | None = None, augment: bool = False, seed: int | None = None):
        """(x, y) batches of the training images, normalized as in training.

        ``augment=False``: every image once, in order, not augmented. ``augment=True``: one pass as training
        makes it, shuffled and augmented with the run's ``--augment``, drawn from ``seed`` (a stream of its own,
        not the trainer's: the same seed gives the same pass). A method's own pass over the training set (SWA's
        BatchNorm update); its cost is the method's to count.
        """
        from ..data import BatchIterator
        x, y, mean, std, aug = self.train_set
        if not augment:
            return BatchIterator(x, y, batch_size or self.batch_size, shuffle=False, mean=mean, std=std)
        return BatchIterator(x, y, batch_size or self.batch_size, shuffle=True, augment=aug, mean=mean, std=std,
                             seed=0 if seed is None else int(seed))


FIELDS = tuple(f for f in dataclasses.fields(TrainState) if not f.name.startswith("_"))
#: what the state computes from its fields (the table's last rows)
DERIVED = (("x", "the Trainer before each batch", "on_batch_begin to on_batch_end: the images, loaded on first read",
            READ),
           ("control_metric", "(from has_val)", "always: \"val_acc\" or \"test_acc\"", READ),
           ("control_acc(epoch=-1)", "(from history)", "on_epoch_end: the accuracy controllers decide from", READ),
           ("training_batches(batch_size=None, augment=False, seed=None)", "(from train_set)",
            "always: the training images normalized; in order and not augmented, or (augment=True) "
            "shuffled and augmented as training does", READ))
_METHOD_WRITABLE = frozenset(f.name for f in FIELDS if f.metadata["methods"] == WRITE)


def _refusal(name: str) -> str:
    known = {f.name: f.metadata["writer"] for f in FIELDS}
    known.update(x=DERIVED[0][1])
    if name in known:
        return f"TrainState.{name} is read-only for methods (written by {known[name]})"
    return (f"TrainState has no field {name!r} a method may set; methods may set only "
            f"{', '.join(sorted(_METHOD_WRITABLE))}")


def contract_table() -> str:
    """The fields as a Markdown table (``minicnn/methods/README.md`` holds exactly this)."""
    rows = [("field", "written by", "valid", "methods may"), ("---",) * 4]
    rows += [(f"`{f.name}`", f.metadata["writer"], f.metadata["valid"], f.metadata["methods"]) for f in FIELDS]
    rows += [(f"`{n}`", w, v, m) for n, w, v, m in DERIVED]
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)
