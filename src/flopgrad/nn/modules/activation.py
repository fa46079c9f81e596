"""Activation layers: ReLU, GELU, SiLU, Tanh, Sigmoid and Softmax."""

from __future__ import annotations

from flopgrad.nn import functional as F
from flopgrad.nn.modules.module import Module
from flopgrad.tensor import Tensor

__all__ = ["ReLU", "GELU", "SiLU", "Tanh", "Sigmoid", "Softmax"]


class ReLU(Module):
    """max(x, 0).

    >>> import flopgrad as fg
    >>> fg.nn.ReLU()(fg.tensor([-1.0, 2.0])).tolist()
    [0.0, 2.0]
    """

    def forward(self, x: Tensor) -> Tensor:
        """max(x, 0)."""
        return F.relu(x)


class GELU(Module):
    """Gaussian error linear unit (approximate="tanh" for GPT-2's form).

    >>> import flopgrad as fg
    >>> round(fg.nn.GELU()(fg.tensor(1.0)).item(), 4)
    0.8413
    """

    def __init__(self, approximate: str = "none"):
        super().__init__()
        self.approximate = approximate

    def forward(self, x: Tensor) -> Tensor:
        """gelu(x) (see F.gelu)."""
        return F.gelu(x, self.approximate)


class SiLU(Module):
    """x * sigmoid(x).

    >>> import flopgrad as fg
    >>> fg.nn.SiLU()(fg.tensor([0.0])).tolist()
    [0.0]
    """

    def forward(self, x: Tensor) -> Tensor:
        """x * sigmoid(x)."""
        return F.silu(x)


class Tanh(Module):
    """tanh(x).

    >>> import flopgrad as fg
    >>> fg.nn.Tanh()(fg.tensor([0.0])).tolist()
    [0.0]
    """

    def forward(self, x: Tensor) -> Tensor:
        """tanh(x)."""
        return x.tanh()


class Sigmoid(Module):
    """sigmoid(x).

    >>> import flopgrad as fg
    >>> fg.nn.Sigmoid()(fg.tensor([0.0])).tolist()
    [0.5]
    """

    def forward(self, x: Tensor) -> Tensor:
        """sigmoid(x)."""
        return x.sigmoid()


class Softmax(Module):
    """Softmax along `dim`.

    >>> import flopgrad as fg
    >>> fg.nn.Softmax(dim=-1)(fg.zeros(1, 4)).tolist()
    [[0.25, 0.25, 0.25, 0.25]]
    """

    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        """softmax(x) along dim."""
        return x.softmax(self.dim)
