"""Training: SGD and schedules (``optim``), what hooks see (``state``), the Trainer's loop (``trainer``).

Also here: ``setup`` (a run from its flags), ``flags`` (the ``minicnn train`` flags, one list for the CLI and
sweep specs), ``runfiles`` (the run directory and its JSON files), ``checkpoint_io`` (``model.npz`` and
``checkpoint.npz``, written and read) and ``conformance`` (the test every method must pass).
"""
from .optim import SGD, ConstantLR, CosineLR, MultiStepLR, StepLR, make_schedule, stretch_milestones
from .state import TrainState
from .checkpoint_io import load_checkpoint, save_checkpoint
from .trainer import Diverged, Trainer, TrainingInterrupted, evaluate

__all__ = ["SGD", "ConstantLR", "CosineLR", "MultiStepLR", "StepLR", "make_schedule", "stretch_milestones",
           "Diverged", "TrainingInterrupted", "Trainer", "TrainState",
           "evaluate", "load_checkpoint", "save_checkpoint"]
