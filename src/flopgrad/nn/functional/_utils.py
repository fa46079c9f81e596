"""Argument checks shared by the convolution and pooling functions: an int or a tuple
as a pair (2-D) or a single int (1-D)."""

from __future__ import annotations

import numpy as np


def _pair(v, name: str) -> tuple:
    if isinstance(v, int | np.integer):
        return (int(v), int(v))
    v = tuple(int(n) for n in v)
    if len(v) == 1:
        return v + v
    if len(v) != 2:
        raise ValueError(f"{name}: expected an int or a pair, got {v}")
    return v


def _single(v, name: str, what: str) -> int:
    if isinstance(v, int | np.integer):
        return int(v)
    v = tuple(v)
    if len(v) != 1:
        raise ValueError(f"{name}: {what} must be an int or a 1-tuple, got {v}")
    return int(v[0])
