"""Dropout: active in training mode only."""

from __future__ import annotations

from flopgrad.nn import functional as F
from flopgrad.nn.modules.module import Module
from flopgrad.tensor import Tensor

__all__ = ["Dropout"]


class Dropout(Module):
    """Zero entries with probability p in training mode (seeded by fg.manual_seed).

    >>> import flopgrad as fg
    >>> fg.manual_seed(0)
    >>> drop = fg.nn.Dropout(0.5)
    >>> set(drop(fg.ones(100)).tolist()) == {0.0, 2.0}, drop.eval()(fg.ones(2)).tolist()
    (True, [1.0, 1.0])
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        """x with dropout in training mode, x itself in eval mode."""
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        """The drop probability."""
        return f"p={self.p}"
