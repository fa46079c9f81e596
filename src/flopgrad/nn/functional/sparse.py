"""Index lookups (PyTorch's sparse functions): embedding (rows of a table picked by index,
repeated indices accumulating gradients) and one_hot (class indices as int64 rows)."""

from __future__ import annotations

import numpy as np

from flopgrad import creation
from flopgrad.backend import MetaArray, no_data
from flopgrad.tensor import Tensor, where

__all__ = ["embedding", "one_hot"]


def embedding(index, weight: Tensor, padding_idx: int | None = None) -> Tensor:
    """Rows of `weight` picked by integer `index`; repeated indices accumulate gradients.

    >>> import flopgrad as fg
    >>> weight = fg.arange(6.0).reshape(3, 2)
    >>> fg.nn.functional.embedding(fg.tensor([2, 0]), weight).tolist()
    [[4.0, 5.0], [0.0, 1.0]]
    """
    idx = index._data if isinstance(index, Tensor) else np.asarray(index)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"embedding: index must be integers, got dtype {idx.dtype}")
    if weight.ndim != 2:
        raise ValueError(f"embedding: the weight must be 2-D (num_embeddings, embedding_dim), "
                         f"got shape {weight.shape}")
    if type(idx) is MetaArray:
        pass  # no values to check: taken as in range
    elif idx.size and (idx.min() < 0 or idx.max() >= weight.shape[0]):
        raise IndexError(
            f"embedding: index out of range [0, {weight.shape[0]}): min {idx.min()}, "
            f"max {idx.max()}")
    out = weight[idx]
    if padding_idx is not None:
        pad_rows = Tensor(MetaArray((*idx.shape, 1), np.bool_) if type(idx) is MetaArray
                          else (idx == padding_idx)[..., None])
        out = where(pad_rows, out.detach(), out)
    return out


def one_hot(tensor, num_classes: int = -1) -> Tensor:
    """One-hot int64 encoding of class indices: shape (*tensor.shape, num_classes), like
    torch.nn.functional.one_hot. Meta indices need an explicit num_classes.

    >>> import flopgrad as fg
    >>> fg.nn.functional.one_hot(fg.tensor([0, 2]), 3).tolist()
    [[1, 0, 0], [0, 0, 1]]
    """
    idx = tensor._data if isinstance(tensor, Tensor) else np.asarray(tensor)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"one_hot: expected integer class indices, got dtype {idx.dtype}")
    if not isinstance(num_classes, int | np.integer) or isinstance(num_classes, bool) or (
            num_classes < -1):
        raise ValueError(f"one_hot: num_classes must be -1 or a non-negative int, got "
                         f"{num_classes!r}")
    if type(idx) is MetaArray:
        if num_classes == -1:
            raise no_data("one_hot without num_classes (the class count comes from the data)")
        return creation._make(MetaArray((*idx.shape, num_classes), np.int64), False)
    if num_classes == -1:
        if not idx.size:
            raise ValueError("one_hot: cannot infer num_classes of an empty tensor; pass it")
        num_classes = int(idx.max()) + 1
    if idx.size and (idx.min() < 0 or idx.max() >= num_classes):
        raise IndexError(f"one_hot: class values must be in [0, {num_classes}), got min "
                         f"{idx.min()}, max {idx.max()}")
    out = np.zeros((*idx.shape, num_classes), dtype=np.int64)
    np.put_along_axis(out, idx[..., None].astype(np.intp), 1, axis=-1)
    return creation._make(out, False)
