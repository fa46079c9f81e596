"""Flatten: merge a range of dims."""

from __future__ import annotations

from flopgrad.nn.modules.module import Module
from flopgrad.tensor import Tensor

__all__ = ["Flatten"]


class Flatten(Module):
    """Merge dims start_dim..end_dim (by default all but the batch dim).

    >>> import flopgrad as fg
    >>> fg.nn.Flatten()(fg.ones(2, 3, 4)).shape
    (2, 12)
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x: Tensor) -> Tensor:
        """x with the dims merged."""
        return x.flatten(self.start_dim, self.end_dim)
