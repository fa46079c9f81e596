"""Dim and shape arguments as PyTorch takes them, normalised once, with PyTorch's errors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _wrap_dim(d: Any, ndim: int, name: str) -> int:
    """One dim in [0, ndim), from PyTorch's range [-ndim, ndim - 1] (a 0-d tensor has the
    dims -1 and 0); out of range is an IndexError with PyTorch's message, a bool a TypeError."""
    if type(d) is not int:
        if isinstance(d, bool) or not isinstance(d, int | np.integer):
            raise TypeError(f"{name}: dim must be an int, got {type(d).__name__} {d!r}")
        d = int(d)
    n = ndim if ndim > 0 else 1
    if d < -n or d >= n:
        raise IndexError(f"{name}: Dimension out of range (expected to be in range of "
                         f"[{-n}, {n - 1}], but got {d})")
    return d + n if d < 0 else d


def _dims(dim: Any, axis: Any, ndim: int, name: str) -> tuple[int, ...] | None:
    """Resolve PyTorch's `dim` or NumPy's `axis` into a sorted tuple of non-negative axes
    (None: every dim; () for a 0-d tensor, whose only dims are -1 and 0)."""
    if axis is not None:
        if dim is not None:
            raise TypeError(f"{name}: pass either dim or axis, not both")
        dim = axis
    if dim is None:
        return None
    if type(dim) is int or isinstance(dim, bool | np.integer):
        d = _wrap_dim(dim, ndim, name)
        return (d,) if ndim else ()
    out = sorted(_wrap_dim(d, ndim, name) for d in dim)
    for a, b in zip(out, out[1:], strict=False):
        if a == b:
            raise ValueError(f"{name}: dim {a} appears multiple times in the list of dims")
    return tuple(out) if ndim else ()


def _one_dim(dim: Any, axis: Any, ndim: int, name: str) -> int:
    """Exactly one dim, in [0, ndim) (0 for a 0-d tensor)."""
    if axis is not None:
        if dim is not None:
            raise TypeError(f"{name}: pass either dim or axis, not both")
        dim = axis
    if dim is None or not isinstance(dim, int | np.integer):
        raise TypeError(f"{name}: needs exactly one dim, got {dim!r}")
    return _wrap_dim(dim, ndim, name)


def _shape_arg(shape: Sequence) -> tuple[int, ...]:
    """A shape given as sizes, x.reshape(2, 3), or as one sequence, x.reshape((2, 3))."""
    if len(shape) == 1 and not isinstance(shape[0], int | np.integer):
        shape = shape[0]
    return tuple(int(s) for s in shape)
