"""nn.Module and the standard layers. Each submodule's forward runs inside fg.scope(<path>).

`module` holds the base class; `container` Sequential, ModuleList and ModuleDict; the layers
are by family: `linear`, `conv`, `pooling`, `flatten`, `norm`, `dropout`, `activation` and
`attention`.

>>> import flopgrad as fg
>>> net = fg.nn.Sequential(fg.nn.Linear(4, 8), fg.nn.ReLU(), fg.nn.Linear(8, 2))
>>> net(fg.ones(3, 4)).shape
(3, 2)
"""

from flopgrad.nn.modules.activation import GELU, ReLU, Sigmoid, SiLU, Softmax, Tanh
from flopgrad.nn.modules.attention import MultiheadAttention
from flopgrad.nn.modules.container import ModuleDict, ModuleList, Sequential
from flopgrad.nn.modules.conv import Conv1d, Conv2d
from flopgrad.nn.modules.dropout import Dropout
from flopgrad.nn.modules.flatten import Flatten
from flopgrad.nn.modules.linear import Embedding, Identity, Linear
from flopgrad.nn.modules.module import Module
from flopgrad.nn.modules.norm import BatchNorm2d, LayerNorm, RMSNorm
from flopgrad.nn.modules.pooling import AvgPool1d, AvgPool2d, MaxPool1d, MaxPool2d

__all__ = [
    "Module", "Linear", "Conv1d", "Conv2d", "MaxPool1d", "MaxPool2d", "AvgPool1d",
    "AvgPool2d", "Flatten", "LayerNorm",
    "RMSNorm", "BatchNorm2d", "Embedding", "Dropout", "ReLU", "GELU", "SiLU", "Tanh",
    "Sigmoid", "Softmax", "Identity", "Sequential", "ModuleList", "ModuleDict",
    "MultiheadAttention",
]
