"""Shape and indexing methods: views and rearrangements of a tensor's dims (reshape,
permute, expand, flip, ...), the selections along one dim, and x[idx] / x[idx] = value."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from flopgrad import dispatch
from flopgrad import ops as O
from flopgrad.backend import MetaArray, no_data
from flopgrad.dispatch import apply, mode
from flopgrad.tensor._base import TensorBase, _data_of
from flopgrad.tensor._dims import _dims, _shape_arg, _wrap_dim
from flopgrad.tensor.functions import chunk, gather, index_select, scatter_add, split

if TYPE_CHECKING:
    from flopgrad.tensor import Tensor
    from flopgrad.tensor._base import Operand


class ShapeMixin:
    """Tensor's shape and indexing methods."""

    __slots__ = ()

    @property
    def T(self) -> Tensor:
        """All dims in reverse order (the transpose of a matrix).

        >>> import flopgrad as fg
        >>> fg.zeros(2, 3, 4).T.shape
        (4, 3, 2)
        """
        return self.permute(*reversed(range(self.ndim)))

    @property
    def mT(self) -> Tensor:
        """The last two dims swapped (a batch of transposed matrices).

        >>> import flopgrad as fg
        >>> fg.zeros(5, 2, 3).mT.shape
        (5, 3, 2)
        """
        return self.swapaxes(-1, -2)

    def reshape(self, *shape: int | Sequence[int]) -> Tensor:
        """Same values in a new shape (one dim may be -1).

        >>> import flopgrad as fg
        >>> fg.arange(6).reshape(2, -1).tolist()
        [[0, 1, 2], [3, 4, 5]]
        """
        shape = _shape_arg(shape)
        if shape == self._data.shape:
            return self
        try:
            shape = _resolve_shape(self._data.shape, shape)
        except ValueError as err:
            raise dispatch.ShapeError(f"reshape: {err}") from None
        if shape == self._data.shape:
            return self
        return apply(O.RESHAPE, (self,), (shape,))

    view = reshape

    def view_as(self, other: Tensor) -> Tensor:
        """Reshape to other's shape.

        >>> import flopgrad as fg
        >>> fg.arange(4).view_as(fg.zeros(2, 2)).tolist()
        [[0, 1], [2, 3]]
        """
        return self.reshape(other.shape)

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        """Merge dims start_dim..end_dim into one.

        >>> import flopgrad as fg
        >>> fg.zeros(2, 3, 4).flatten(1).shape
        (2, 12)
        """
        s, e = _wrap_dim(start_dim, self.ndim, "flatten"), _wrap_dim(end_dim, self.ndim, "flatten")
        if s > e:
            raise dispatch.ShapeError(
                f"flatten: start_dim {start_dim} cannot come after end_dim {end_dim}")
        if self.ndim == 0:
            return self.reshape(1)
        shape = self.shape[:s] + (math.prod(self.shape[s:e + 1]),) + self.shape[e + 1:]
        return self.reshape(shape)

    def permute(self, *dims: int | Sequence[int]) -> Tensor:
        """Reorder dims.

        >>> import flopgrad as fg
        >>> fg.zeros(2, 3, 4).permute(2, 0, 1).shape
        (4, 2, 3)
        """
        dims = _shape_arg(dims)
        if len(dims) != self.ndim:
            raise ValueError(f"permute: {dims} is not a permutation of the {self.ndim} dims")
        dims = tuple(_wrap_dim(d, self.ndim, "permute") for d in dims)
        if len(set(dims)) != len(dims):
            raise ValueError(f"permute: {dims} is not a permutation of the {self.ndim} dims")
        if dims == tuple(range(self.ndim)):
            return self
        return apply(O.PERMUTE, (self,), (dims,))

    def transpose(self, dim0: int, dim1: int) -> Tensor:
        """Swap two dims.

        >>> import flopgrad as fg
        >>> fg.zeros(2, 3, 4).transpose(0, 2).shape
        (4, 3, 2)
        """
        d0, d1 = _wrap_dim(dim0, self.ndim, "transpose"), _wrap_dim(dim1, self.ndim, "transpose")
        if self.ndim == 0:
            return self
        order = list(range(self.ndim))
        order[d0], order[d1] = order[d1], order[d0]
        return self.permute(*order)

    swapaxes = transpose

    def t(self) -> Tensor:
        """Transpose a 2-D tensor (a 0-d or 1-D tensor is returned as it is).

        >>> import flopgrad as fg
        >>> fg.tensor([[1, 2], [3, 4]]).t().tolist()
        [[1, 3], [2, 4]]
        """
        if self.ndim > 2:
            raise dispatch.ShapeError(
                f"t(): expects a tensor with <= 2 dims, got shape {self.shape}; use "
                "transpose(dim0, dim1) or mT")
        return self.T

    def squeeze(self, dim: int | Sequence[int] | None = None) -> Tensor:
        """Drop size-1 dims (only `dim` when given; a no-op if it is not size 1).

        >>> import flopgrad as fg
        >>> x = fg.zeros(1, 2, 1)
        >>> x.squeeze().shape, x.squeeze(0).shape
        ((2,), (2, 1))
        """
        if dim is None:
            shape = tuple(s for s in self.shape if s != 1)
        else:
            dims = _dims(dim, None, self.ndim, "squeeze") or ()
            shape = tuple(s for d, s in enumerate(self.shape) if not (d in dims and s == 1))
        return self.reshape(shape)

    def unsqueeze(self, dim: int) -> Tensor:
        """Insert a size-1 dim at `dim`.

        >>> import flopgrad as fg
        >>> fg.zeros(2, 3).unsqueeze(1).shape
        (2, 1, 3)
        """
        d = _wrap_dim(dim, self.ndim + 1, "unsqueeze")
        return self.reshape(self.shape[:d] + (1,) + self.shape[d:])

    def expand(self, *sizes: int | Sequence[int]) -> Tensor:
        """Broadcast to a larger shape without copying (-1 keeps a dim).

        >>> import flopgrad as fg
        >>> fg.tensor([[1], [2]]).expand(-1, 3).tolist()
        [[1, 1, 1], [2, 2, 2]]
        """
        sizes = _shape_arg(sizes)
        lead = len(sizes) - self.ndim
        if lead < 0:
            raise dispatch.ShapeError(
                f"expand: the number of sizes provided ({len(sizes)}) must be greater or equal "
                f"to the number of dims of the tensor ({self.ndim}), shape {self.shape}")
        for i, s in enumerate(sizes):
            if s < -1 or (s == -1 and i < lead):
                raise dispatch.ShapeError(
                    f"expand: size {s} is not allowed at dim {i} of {sizes} for a tensor of "
                    f"shape {self.shape} (-1, keep the size, only for an existing dim)")
        shape = tuple(self.shape[i - lead] if s == -1 else s for i, s in enumerate(sizes))
        return self.broadcast_to(shape)

    def expand_as(self, other: Tensor) -> Tensor:
        """Broadcast to other's shape.

        >>> import flopgrad as fg
        >>> fg.tensor([1, 2]).expand_as(fg.zeros(3, 2)).shape
        (3, 2)
        """
        return self.broadcast_to(other.shape)

    def broadcast_to(self, shape: Sequence[int]) -> Tensor:
        """Broadcast to `shape` (NumPy rules).

        >>> import flopgrad as fg
        >>> fg.tensor([1, 2]).broadcast_to((2, 2)).tolist()
        [[1, 2], [1, 2]]
        """
        shape = tuple(shape)
        if shape == self._data.shape:
            return self
        return apply(O.EXPAND, (self,), (shape,))

    def repeat(self, *sizes: int | Sequence[int]) -> Tensor:
        """Tile the tensor `sizes` times along each dim (PyTorch's repeat = NumPy's tile).

        >>> import flopgrad as fg
        >>> fg.tensor([1, 2]).repeat(2, 2).tolist()
        [[1, 2, 1, 2], [1, 2, 1, 2]]
        """
        sizes = _shape_arg(sizes)
        if len(sizes) < self.ndim:
            raise ValueError(f"repeat: need at least {self.ndim} sizes, got {sizes}")
        x = self.reshape((1,) * (len(sizes) - self.ndim) + self.shape)
        inter = []
        for s in x.shape:
            inter += [1, s]
        big = []
        for r, s in zip(sizes, x.shape, strict=True):
            big += [r, s]
        out = x.reshape(inter).broadcast_to(big)
        return out.reshape(tuple(r * s for r, s in zip(sizes, x.shape, strict=True)))

    def tile(self, *dims: int | Sequence[int]) -> Tensor:
        """Like repeat, but missing leading dims count as 1 (NumPy's tile).

        >>> import flopgrad as fg
        >>> fg.tensor([[1, 2]]).tile(2).tolist()
        [[1, 2, 1, 2]]
        """
        dims = _shape_arg(dims)
        if len(dims) < self.ndim:
            dims = (1,) * (self.ndim - len(dims)) + dims
        return self.repeat(*dims)

    def flip(self, *dims_: int | Sequence[int],
             dims: int | Sequence[int] | None = None) -> Tensor:
        """Reverse the order along `dims` (given as arguments, one tuple, or dims=...).

        >>> import flopgrad as fg
        >>> fg.tensor([1.0, 2.0, 3.0]).flip(0).tolist()
        [3.0, 2.0, 1.0]
        >>> fg.tensor([[1, 2], [3, 4]]).flip(dims=(0, 1)).tolist()
        [[4, 3], [2, 1]]
        """
        if dims is not None:
            if dims_:
                raise TypeError("flip: pass the dims either as arguments or as dims=, not both")
            dims_ = (dims,) if isinstance(dims, int | np.integer) else (tuple(dims),)
        dims = _dims(_shape_arg(dims_), None, self.ndim, "flip")
        return apply(O.FLIP, (self,), (dims,))

    def roll(self, shifts: int | Sequence[int],
             dims: int | Sequence[int] | None = None) -> Tensor:
        """Rotate entries along dims (flattened when dims is None).

        >>> import flopgrad as fg
        >>> fg.tensor([1, 2, 3]).roll(1).tolist()
        [3, 1, 2]
        """
        shifts = (shifts,) if isinstance(shifts, int | np.integer) else tuple(shifts)
        if dims is None:
            if len(shifts) != 1:
                raise ValueError(f"roll: {len(shifts)} shifts need as many dims, got none")
            return self.reshape(-1).roll(shifts, 0).reshape(self.shape)
        dims = (dims,) if isinstance(dims, int | np.integer) else tuple(dims)
        if len(shifts) != len(dims):
            raise ValueError(f"roll: shifts and dims must pair up, got {len(shifts)} shifts "
                             f"{shifts} and {len(dims)} dims {dims}")
        if self.ndim == 0:  # torch: a 0-d tensor has no dim to roll along (dims=None is fine)
            raise IndexError(f"roll: dimension specified as {dims[0]} but the tensor has no "
                             "dimensions")
        dims = tuple(_wrap_dim(d, self.ndim, "roll") for d in dims)
        return apply(O.ROLL, (self,), (shifts, dims))

    def split(self, split_size_or_sections: int | Sequence[int],
              dim: int = 0) -> tuple[Tensor, ...]:
        """Split into pieces of a given size (or the list of sizes) along `dim`.

        >>> import flopgrad as fg
        >>> [p.tolist() for p in fg.arange(5).split(2)]
        [[0, 1], [2, 3], [4]]
        """
        return split(self, split_size_or_sections, dim)

    def chunk(self, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
        """Split into `chunks` nearly equal pieces along `dim`.

        >>> import flopgrad as fg
        >>> [p.shape for p in fg.zeros(5, 2).chunk(2)]
        [(3, 2), (2, 2)]
        """
        return chunk(self, chunks, dim)

    def gather(self, dim: int, index: Operand) -> Tensor:
        """out[i][j] = self[index[i][j]][j] for dim=0 (PyTorch's gather).

        >>> import flopgrad as fg
        >>> fg.tensor([[1, 2], [3, 4]]).gather(1, fg.tensor([[1], [0]])).tolist()
        [[2], [3]]
        """
        return gather(self, dim, index)

    def scatter_add(self, dim: int, index: Operand, src: Operand) -> Tensor:
        """Add `src` into a copy of self at `index` along `dim`; repeated indices accumulate.

        >>> import flopgrad as fg
        >>> fg.zeros(3).scatter_add(0, fg.tensor([0, 2, 0]), fg.ones(3)).tolist()
        [2.0, 0.0, 1.0]
        """
        return scatter_add(self, dim, index, src)

    def index_select(self, dim: int, index: Operand) -> Tensor:
        """Select entries along `dim` by an integer index vector.

        >>> import flopgrad as fg
        >>> x = fg.tensor([[1, 2], [3, 4], [5, 6]])
        >>> x.index_select(0, fg.tensor([2, 0])).tolist()
        [[5, 6], [1, 2]]
        """
        return index_select(self, dim, index)

    # ------------------------------------------------------------ indexing
    def __getitem__(self, idx: Any) -> Tensor:
        """x[idx]: NumPy's basic and advanced indexing, with tensors, lists and boolean masks
        as indices (a mask must match the dims it indexes).

        >>> import flopgrad as fg
        >>> x = fg.tensor([[1, 2], [3, 4]])
        >>> x[0].tolist(), x[:, 1].tolist(), x[x > 2].tolist()
        ([1, 2], [2, 4], [3, 4])
        """
        idx = _index_arg(idx, self._data.shape)
        return apply(O.INDEX if _is_advanced(idx) else O.GETITEM, (self,), (idx,))

    def __setitem__(self, idx: Any, value: Operand) -> None:
        """x[idx] = value, in place and outside the graph (under fg.no_grad() for a tensor
        that requires grad).

        >>> import flopgrad as fg
        >>> x = fg.zeros(3); x[1:] = 2.0
        >>> x.tolist()
        [0.0, 2.0, 2.0]
        """
        if mode().grad_enabled and self.requires_grad:
            raise RuntimeError(
                "item assignment to a tensor that requires grad is not differentiable; "
                "use fg.where, masked_fill or index_put style ops, or assign under fg.no_grad()")
        self._data[_index_arg(idx, self._data.shape)] = _data_of(value)
        self._version[0] += 1


# ---------------------------------------------------------------- helpers

def _index_arg(idx, shape: tuple | None = None):
    """Normalise an index: tensors to arrays, lists to int arrays, masks to nonzero() (a
    mask must match the shape of the dims it indexes, when `shape` is given)."""
    if not isinstance(idx, tuple):
        idx = (idx,)
    out = []
    for k, i in enumerate(idx):
        if isinstance(i, TensorBase):
            i = i._data
        if isinstance(i, list):
            i = np.asarray(i)
        if type(i) is MetaArray:
            if i.dtype == np.bool_:
                raise no_data("boolean-mask indexing (its result's shape depends on the data)")
            out.append(i)
            continue
        if isinstance(i, np.ndarray) and i.dtype == np.bool_ and not i.ndim:
            if not i:  # torch gives an empty (0, ...) tensor; no view of the input says that
                raise IndexError("indexing with a 0-d False mask is not supported; use "
                                 "x[None][:0] for the empty result")
            out.append(None)  # a 0-d True mask adds a dim of size 1, as in torch
            continue
        if isinstance(i, np.ndarray) and i.dtype == np.bool_:
            if shape is not None and i.ndim:
                _check_mask(i, _mask_start(idx, k, len(shape)), shape)
            out.extend(np.nonzero(i))
            continue
        if isinstance(i, np.ndarray) and i.dtype.kind not in "iu":
            raise IndexError(f"index arrays must be integers or booleans, got dtype {i.dtype}")
        out.append(i)
    return tuple(out)


def _dims_indexed(i) -> int:
    """How many of the tensor's dims one index entry consumes (None and ... none here)."""
    if i is None or i is Ellipsis:
        return 0
    data = i._data if isinstance(i, TensorBase) else i
    if isinstance(data, np.ndarray | MetaArray) and data.dtype == np.bool_:
        return data.ndim
    if isinstance(data, list):
        arr = np.asarray(data)
        return arr.ndim if arr.dtype == np.bool_ else 1
    return 1


def _mask_start(idx: tuple, k: int, ndim: int) -> int:
    """The first of the tensor's dims that entry k of an index applies to."""
    if any(i is Ellipsis for i in idx[:k]):
        return ndim - sum(_dims_indexed(i) for i in idx[k:])
    return sum(_dims_indexed(i) for i in idx[:k])


def _check_mask(mask: np.ndarray, start: int, shape: tuple) -> None:
    if mask.shape != tuple(shape[start:start + mask.ndim]):
        raise IndexError(f"The shape of the mask {list(mask.shape)} at index {start} does not "
                         f"match the shape of the indexed tensor {list(shape)} at index {start}")


def _is_advanced(idx: tuple) -> bool:
    return any(isinstance(i, np.ndarray | MetaArray) for i in idx)


def _resolve_shape(old: tuple, new: tuple) -> tuple:
    n = math.prod(old)
    if new.count(-1) > 1:
        raise ValueError(f"only one dim may be -1, got {new}")
    if -1 in new:
        rest = math.prod([s for s in new if s != -1])
        if rest == 0 or n % rest:
            raise ValueError(f"cannot reshape {old} ({n} elements) into {new}")
        new = tuple(n // rest if s == -1 else s for s in new)
    if math.prod(new) != n:
        raise ValueError(f"cannot reshape {old} ({n} elements) into {new}")
    return new
