"""The layer stack: explicit forward/backward layers with PyTorch conventions (NCHW).

See ``base.py`` for the contract every layer follows and ``container.py`` for
how containers run layers and fire the hook points.
"""
from .base import Layer, ShapeError
from .conv import Conv2d
from .batchnorm import BatchNorm2d
from .activation import ReLU
from .pooling import MaxPool2d, AvgPool2d, GlobalAvgPool2d
from .linear import Linear, Flatten
from .container import Container, Sequential
from .residual import BasicBlock
from .recurrent import GateHead, LSTMCell

__all__ = ["Layer", "ShapeError", "Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "AvgPool2d",
           "GlobalAvgPool2d", "Linear", "Flatten", "Container", "Sequential", "BasicBlock",
           "LSTMCell", "GateHead"]
