"""Training: SGD and schedules (``optim``), what hooks see (``state``), the Trainer and checkpoints (``trainer``).

Also here: ``setup`` (a run from its flags), ``flags`` (the ``minicnn train`` flags, one list for the CLI and
sweep specs), ``runfiles`` (the run directory), ``checkpoint_io`` (reading checkpoints) and ``conformance``
(the test every method must pass).
"""
from .optim import SGD, ConstantLR, CosineLR, MultiStepLR, StepLR, make_schedule, stretch_milestones
from .state import TrainState
from .trainer import Diverged, Trainer, TrainingInterrupted, evaluate, load_checkpoint, save_checkpoint

__all__ = ["SGD", "ConstantLR", "CosineLR", "MultiStepLR", "StepLR", "make_schedule", "stretch_milestones",
           "Diverged", "TrainingInterrupted", "Trainer", "TrainState",
           "evaluate", "load_checkpoint", "save_checkpoint"]
