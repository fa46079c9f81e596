"""Neural-network building blocks: modules, initialisers and functional forms.

>>> import flopgrad as fg
>>> fg.nn.Linear(3, 2).weight.shape
(2, 3)
"""

from flopgrad.nn import functional, init, utils
from flopgrad.nn.modules import (
    GELU,
    AvgPool1d,
    AvgPool2d,
    BatchNorm2d,
    Conv1d,
    Conv2d,
    Dropout,
    Embedding,
    Flatten,
    Identity,
    LayerNorm,
    Linear,
    MaxPool1d,
    MaxPool2d,
    Module,
    ModuleDict,
    ModuleList,
    MultiheadAttention,
    ReLU,
    RMSNorm,
    Sequential,
    Sigmoid,
    SiLU,
    Softmax,
    Tanh,
)
from flopgrad.tensor import Parameter

__all__ = [
    "functional", "init", "utils", "Parameter", "Module", "Linear", "Conv1d", "Conv2d",
    "MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d", "Flatten", "LayerNorm", "RMSNorm",
    "BatchNorm2d", "Embedding",
    "Dropout", "ReLU", "GELU", "SiLU", "Tanh", "Sigmoid", "Softmax", "Identity", "Sequential",
    "ModuleList", "ModuleDict", "MultiheadAttention",
]
