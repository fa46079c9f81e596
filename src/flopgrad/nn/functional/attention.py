"""scaled_dot_product_attention: softmax(q k^T * scale + mask) v with PyTorch's masks and
its safe softmax for queries that may attend to nothing."""

from __future__ import annotations

import math

import numpy as np

from flopgrad.backend import MetaArray
from flopgrad.nn.functional.regularization import dropout
from flopgrad.tensor import Tensor, _t, where

__all__ = ["scaled_dot_product_attention"]


def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, attn_mask=None,
                                 dropout_p: float = 0.0, is_causal: bool = False,
                                 scale: float | None = None) -> Tensor:
    """softmax(q k^T * scale + mask) v over the last two dims (PyTorch's semantics).

    A boolean attn_mask marks the positions that may be attended to; a float mask is added.

    >>> import flopgrad as fg
    >>> q, k, v = fg.ones(2, 5, 8), fg.ones(2, 7, 8), fg.ones(2, 7, 3)
    >>> fg.nn.functional.scaled_dot_product_attention(q, k, v).shape
    (2, 5, 3)
    """
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"scaled_dot_product_attention: q {q.shape} and k {k.shape} differ in "
                         "the last dim")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q @ k.swapaxes(-1, -2)) * scale
    L, S = q.shape[-2], k.shape[-2]
    empty = None  # queries whose mask lets them attend to nothing
    if is_causal:
        if attn_mask is not None:
            raise ValueError("scaled_dot_product_attention: pass attn_mask or is_causal, not both")
        causal = MetaArray((L, S), np.bool_) if scores.is_meta else np.tril(
            np.ones((L, S), dtype=bool))
        scores = where(Tensor(causal), scores, -np.inf)
    elif attn_mask is not None:
        m = _t(attn_mask)
        if m.dtype == np.bool_:
            scores = where(m, scores, -np.inf)
            if not m.is_meta:
                empty = ~m._data.any(axis=-1, keepdims=True)
        else:
            scores = scores + m
            if not m.is_meta:
                empty = np.all(m._data == -np.inf, axis=-1, keepdims=True)
    # a query with nothing to attend to gets 0, not NaN (PyTorch's safe softmax); the inner
    # where keeps the NaN of an all -inf softmax out of the backward pass as well
    if empty is not None and empty.any():
        empty = Tensor(empty)
        attn = where(empty, 0.0, where(empty, 0.0, scores).softmax(-1))
    else:
        attn = scores.softmax(-1)
    if dropout_p:
        attn = dropout(attn, dropout_p)
    return attn @ v
