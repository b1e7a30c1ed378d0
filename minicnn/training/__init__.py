"""Training: SGD and schedules (``optim``), the Trainer and checkpoints (``trainer``)."""
from .optim import SGD, ConstantLR, CosineLR, StepLR, make_schedule
from .trainer import Trainer, TrainState, evaluate, load_checkpoint, save_checkpoint

__all__ = ["SGD", "ConstantLR", "CosineLR", "StepLR", "make_schedule", "Trainer", "TrainState",
           "evaluate", "load_checkpoint", "save_checkpoint"]
