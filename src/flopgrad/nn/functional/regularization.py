"""Regularisation: dropout, a seeded random mask (from fg.manual_seed's generator) that
scales what it keeps by 1/(1-p)."""

from __future__ import annotations

from flopgrad import creation
from flopgrad.backend import MetaArray
from flopgrad.tensor import Tensor

__all__ = ["dropout"]


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero each entry with probability p and scale the rest by 1/(1-p) (seeded).

    >>> import flopgrad as fg
    >>> fg.manual_seed(0)
    >>> set(fg.nn.functional.dropout(fg.ones(100), p=0.5).tolist()) == {0.0, 2.0}
    True
    """
    if not 0 <= p <= 1:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    if not training or p == 0:
        return x
    if p == 1:
        return x * 0.0
    if x.is_meta:
        return x * Tensor(MetaArray(x.shape, x.dtype))
    keep = creation.generator().random(x.shape) >= p
    return x * Tensor((keep / (1.0 - p)).astype(x.dtype))
