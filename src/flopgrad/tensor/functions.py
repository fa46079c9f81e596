"""The functions on tensors that are not methods: fg.cat, fg.stack, fg.where, fg.einsum, ...
(the methods that share their work, x.split or x.gather, call them)."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from flopgrad import dispatch
from flopgrad import ops as O
from flopgrad.backend import MetaArray
from flopgrad.dispatch import apply
from flopgrad.tensor._base import TensorBase, _data_of
from flopgrad.tensor._dims import _wrap_dim

if TYPE_CHECKING:
    from flopgrad.tensor._base import Operand

# The Tensor class, to make tensors of numbers and arrays. The mixins it is built from import
# this module, so it comes before the class: flopgrad.tensor sets it, as it sets dispatch.Tensor.
Tensor: Any = None


def _t(x: Operand) -> Tensor:
    """x as a tensor: a tensor as it is, an array or a number made one."""
    return x if isinstance(x, TensorBase) else Tensor(x)


def matmul(a: Operand, b: Operand) -> Tensor:
    """Matrix product with NumPy/PyTorch rules for 1-D and batched operands.

    >>> import flopgrad as fg
    >>> fg.matmul(fg.ones(2, 3), fg.ones(3)).shape
    (2,)
    """
    a, b = _t(a), _t(b)
    if a.ndim == 0 or b.ndim == 0:
        raise dispatch.ShapeError(
            f"matmul: both operands need at least 1 dim, got shapes {a.shape} and {b.shape}; "
            "use * for scalars")
    squeeze = []
    if a.ndim == 1:
        a = a.reshape(1, a.shape[0])
        squeeze.append(-2)
    if b.ndim == 1:
        b = b.reshape(b.shape[0], 1)
        squeeze.append(-1)
    out = apply(O.MATMUL, (a, b))
    if squeeze:
        shape = list(out.shape)
        for d in sorted(squeeze):
            shape.pop(d if d == -1 else len(shape) - 2)
        out = out.reshape(tuple(shape))
    return out


def einsum(spec: str, *operands: Operand) -> Tensor:
    """Einstein summation over one or two operands, e.g. einsum("bij,bjk->bik", a, b).

    >>> import flopgrad as fg
    >>> fg.einsum("ij,j->i", fg.ones(2, 3), fg.ones(3)).tolist()
    [3.0, 3.0]
    """
    spec = spec.replace(" ", "")
    if "->" not in spec:
        lhs = spec
        letters = lhs.replace(",", "")
        rhs = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
        spec = f"{lhs}->{rhs}"
    if "..." in spec:
        raise ValueError("einsum: '...' is not supported; name every index")
    subs = spec.split("->")[0].split(",")
    if len(subs) != len(operands):
        raise ValueError(f"einsum: {spec!r} names {len(subs)} operands, got {len(operands)}")
    if any(len(set(s)) != len(s) for s in subs):
        raise ValueError(f"einsum: repeated index within one operand ({spec!r}) is not supported")
    if len(operands) > 2:
        out = einsum(f"{subs[0]},{subs[1]}->{_keep_letters(subs, spec)}", *operands[:2])
        rest = ",".join([_keep_letters(subs, spec)] + subs[2:]) + "->" + spec.split("->")[1]
        return einsum(rest, out, *operands[2:])
    op = O.EINSUM if len(operands) == 2 else O.EINSUM1
    return apply(op, tuple(_t(x) for x in operands), (spec,))


def _keep_letters(subs, spec) -> str:
    rhs = spec.split("->")[1]
    later = set(rhs).union(*map(set, subs[2:]))
    return "".join(dict.fromkeys(c for c in subs[0] + subs[1] if c in later))


def where(cond: Operand, x: Operand, y: Operand) -> Tensor:
    """x where cond is True, else y (gradient flows only to the chosen side).

    NaN note: the gradient of the unchosen side is exactly 0, but a NaN or inf produced
    *inside* that side's own computation still poisons its gradient, as in PyTorch.

    >>> import flopgrad as fg
    >>> fg.where(fg.tensor([True, False]), fg.ones(2), fg.zeros(2)).tolist()
    [1.0, 0.0]
    """
    c = cond if isinstance(cond, TensorBase) else Tensor(np.asarray(cond, dtype=bool))
    if c._data.dtype != np.bool_:
        c = c.bool()
    if not isinstance(x, TensorBase) and not isinstance(y, TensorBase):
        x = Tensor(x)  # two Python numbers: the default dtypes (float32), as in PyTorch
    return apply(O.WHERE, (c, x, y))


def _div_round(a, b, mode: str) -> Tensor:
    if mode not in ("trunc", "floor"):
        raise ValueError(f"div: rounding_mode must be None, 'trunc' or 'floor', got {mode!r}")
    return apply(O.DIV_ROUND, (a, b), (mode,))


def floor_divide(a: Operand, b: Operand) -> Tensor:
    """Floor of a / b elementwise (PyTorch's floor_divide, div(rounding_mode="floor")).

    >>> import flopgrad as fg
    >>> fg.floor_divide(fg.tensor([-7.0, 7.0]), 2).tolist()
    [-4.0, 3.0]
    """
    return _div_round(_t(a), b, "floor")


def maximum(a: Operand, b: Operand) -> Tensor:
    """Elementwise maximum; ties split the gradient evenly.

    >>> import flopgrad as fg
    >>> fg.maximum(fg.tensor([1.0, 4.0]), fg.tensor([3.0, 2.0])).tolist()
    [3.0, 4.0]
    """
    return apply(O.MAXIMUM, (a, b))


def minimum(a: Operand, b: Operand) -> Tensor:
    """Elementwise minimum; ties split the gradient evenly.

    >>> import flopgrad as fg
    >>> fg.minimum(fg.tensor([1.0, 4.0]), fg.tensor([3.0, 2.0])).tolist()
    [1.0, 2.0]
    """
    return apply(O.MINIMUM, (a, b))


def cat(tensors: Sequence[Operand], dim: int = 0) -> Tensor:
    """Concatenate along an existing dim.

    >>> import flopgrad as fg
    >>> fg.cat([fg.zeros(2, 3), fg.ones(1, 3)]).shape
    (3, 3)
    """
    tensors = [_t(x) for x in tensors]
    if not tensors:
        raise ValueError("cat: needs at least one tensor")
    for i, x in enumerate(tensors):
        if x.ndim == 0:
            raise dispatch.ShapeError(
                f"cat: zero-dimensional tensor (at position {i}) cannot be concatenated; "
                "use fg.stack or unsqueeze it first")
    d = _wrap_dim(dim, tensors[0].ndim, "cat")
    return apply(O.CAT, tuple(tensors), (d,))


concat = concatenate = cat


def stack(tensors: Sequence[Operand], dim: int = 0) -> Tensor:
    """Join tensors of one shape along a new dim.

    >>> import flopgrad as fg
    >>> fg.stack([fg.zeros(2, 3), fg.ones(2, 3)], dim=1).shape
    (2, 2, 3)
    """
    tensors = [_t(x) for x in tensors]
    if not tensors:
        raise ValueError("stack: needs at least one tensor")
    for i, x in enumerate(tensors):
        if x.shape != tensors[0].shape:
            raise dispatch.ShapeError(f"stack: expects tensors of one shape, got "
                                      f"{tensors[0].shape} at 0 and {x.shape} at {i}")
    d = _wrap_dim(dim, tensors[0].ndim + 1, "stack")
    return cat([x.unsqueeze(d) for x in tensors], d)


def split(x: Tensor, split_size_or_sections: int | Sequence[int],
          dim: int = 0) -> tuple[Tensor, ...]:
    """Pieces of `split_size` (the last may be smaller), or of the listed sizes.

    >>> import flopgrad as fg
    >>> [p.tolist() for p in fg.split(fg.arange(5), [1, 4])]
    [[0], [1, 2, 3, 4]]
    """
    if x.ndim == 0:
        raise dispatch.ShapeError("split: a 0-d tensor cannot be split; it has no dims")
    d = _wrap_dim(dim, x.ndim, "split")
    n = x.shape[d]
    if isinstance(split_size_or_sections, int | np.integer):
        step = int(split_size_or_sections)
        if step < 0 or (step == 0 and n):
            raise ValueError(f"split: split_size must be positive (0 only for an empty dim), "
                             f"got {step} for dim {d} of length {n}")
        sizes = [builtins.min(step, n - s) for s in range(0, n, step)] if n else [0]
    else:
        sizes = list(split_size_or_sections)
        if any(s < 0 for s in sizes):
            raise ValueError(f"split: sizes must be non-negative, got {sizes}")
        if sum(sizes) != n:
            raise ValueError(f"split: sizes {sizes} do not add up to dim {d}'s length {n}")
    out, start = [], 0
    for s in sizes:
        out.append(x[(slice(None),) * d + (slice(start, start + s),)])
        start += s
    return tuple(out)


def chunk(x: Tensor, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
    """Split into `chunks` pieces of ceil(n / chunks) along `dim`.

    >>> import flopgrad as fg
    >>> [p.tolist() for p in fg.chunk(fg.arange(5), 3)]
    [[0, 1], [2, 3], [4]]
    """
    if isinstance(chunks, bool) or not isinstance(chunks, int | np.integer) or chunks <= 0:
        raise ValueError(f"chunk: expects chunks to be a positive int, got {chunks!r}")
    if x.ndim == 0:
        raise dispatch.ShapeError("chunk: a 0-d tensor cannot be chunked; it has no dims")
    n = x.shape[_wrap_dim(dim, x.ndim, "chunk")]
    if n == 0:  # PyTorch: `chunks` empty pieces
        return (x,) * int(chunks)
    return split(x, -(-n // chunks), dim)


def _index_array(index):
    """An integer index as an array (meta indices stay meta: only their shape matters)."""
    data = _data_of(index)
    return data if type(data) is MetaArray else np.asarray(data)


def _flat(idx):
    """An index array as 1-D (meta indices too)."""
    if len(idx.shape) == 1:
        return idx
    return MetaArray((idx.size,), idx.dtype) if type(idx) is MetaArray else idx.reshape(-1)


def _grid_index(index: np.ndarray, dim: int) -> tuple:
    grids = list(np.ogrid[tuple(slice(s) for s in index.shape)])
    grids[dim] = index
    return tuple(grids)


def gather(x: Tensor, dim: int, index: Operand) -> Tensor:
    """out[i][j][k] = x[index[i][j][k]][j][k] for dim=0 (PyTorch's gather).

    >>> import flopgrad as fg
    >>> fg.gather(fg.tensor([[1, 2], [3, 4]]), 0, fg.tensor([[1, 0]])).tolist()
    [[3, 2]]
    """
    idx = _index_array(index)
    d = _wrap_dim(dim, x.ndim, "gather")
    if x.ndim == 0:  # a 0-d tensor is gathered as one of 1 element
        return gather(x.reshape(1), 0, _flat(idx)).reshape(idx.shape)
    _same_ndim(x, idx, "gather")
    return apply(O.INDEX, (x,), (_grid_index(idx, d),))


def _same_ndim(x, idx, name: str) -> None:
    if len(idx.shape) != x.ndim:
        raise dispatch.ShapeError(f"{name}: the index must have as many dims as the input, "
                                  f"got shapes {tuple(idx.shape)} and {x.shape}")


def scatter_add(x: Tensor, dim: int, index: Operand, src: Operand) -> Tensor:
    """x with src added at index along dim; repeated indices accumulate.

    >>> import flopgrad as fg
    >>> idx = fg.tensor([[1, 1], [0, 1]])
    >>> fg.scatter_add(fg.zeros(2, 2), 1, idx, fg.ones(2, 2)).tolist()
    [[0.0, 2.0], [1.0, 1.0]]
    """
    idx = _index_array(index)
    d = _wrap_dim(dim, x.ndim, "scatter_add")
    src = _t(src)
    if src.dtype != x.dtype:
        raise TypeError(f"scatter_add: src has dtype {src.dtype}, the tensor {x.dtype}; they "
                        "must be the same")
    if x.ndim == 0:
        return scatter_add(x.reshape(1), 0, _flat(idx), src.reshape(-1)).reshape(())
    _same_ndim(x, idx, "scatter_add")
    src = src[tuple(slice(s) for s in idx.shape)] if src.shape != idx.shape else src
    spread = apply(O.INDEX_PUT, (src,), (x.shape, _grid_index(idx, d), True))
    return x + spread


def index_select(x: Tensor, dim: int, index: Operand) -> Tensor:
    """x's entries along `dim` at the positions in the 1-D integer `index`.

    >>> import flopgrad as fg
    >>> x = fg.tensor([[1, 2, 3], [4, 5, 6]])
    >>> fg.index_select(x, 1, fg.tensor([0, 2])).tolist()
    [[1, 3], [4, 6]]
    """
    idx = _index_array(index)
    d = _wrap_dim(dim, x.ndim, "index_select")
    if len(idx.shape) > 1:
        raise dispatch.ShapeError(f"index_select: the index must be 0-d or 1-D, got shape "
                                  f"{tuple(idx.shape)}")
    if x.ndim == 0:
        return x.reshape(1)[_flat(idx)].reshape(())
    return x[(slice(None),) * d + (_flat(idx),)]


def outer(a: Operand, b: Operand) -> Tensor:
    """Outer product of two vectors.

    >>> import flopgrad as fg
    >>> fg.outer(fg.tensor([1, 2]), fg.tensor([3, 4, 5])).tolist()
    [[3, 4, 5], [6, 8, 10]]
    """
    a, b = _t(a), _t(b)
    return a.reshape(-1, 1) * b.reshape(1, -1)
