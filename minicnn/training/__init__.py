"""Training: SGD and schedules (``optim``), the Trainer and checkpoints (``trainer``)."""
from .optim import SGD, ConstantLR, CosineLR, MultiStepLR, StepLR, make_schedule, stretch_milestones
from .trainer import Diverged, Trainer, TrainingInterrupted, TrainState, evaluate, load_checkpoint, save_checkpoint

__all__ = ["SGD", "ConstantLR", "CosineLR", "MultiStepLR", "StepLR", "make_schedule", "stretch_milestones",
           "Diverged", "TrainingInterrupted", "Trainer", "TrainState",
           "evaluate", "load_checkpoint", "save_checkpoint"]
