"""Array backends: NumPy arrays (real data) and MetaArray (shape, dtype and strides only).

A MetaArray behaves like an ndarray for everything the engine and the ledger look at
(shape, dtype, strides, base, nbytes, flags) but holds no data, so a 175B-parameter model
can be run, differentiated and billed without allocating it. Views keep numpy's exact
semantics (a reshape that numpy would have to copy is a copy here too), so the bill of a
meta run equals the bill of a real run field by field.
"""

from __future__ import annotations

import math

import numpy as np


class NoDataError(RuntimeError):
    """A meta tensor was asked for values it does not have."""


def no_data(what: str) -> NoDataError:
    return NoDataError(
        f"{what}: this is a meta tensor (shape and dtype only, no data). Run the same code on "
        "real tensors to get values; meta mode is for bills and shapes.")


def broadcast_shapes(*shapes) -> tuple:
    """np.broadcast_shapes in Python integers, so meta shapes may hold more elements than an
    index of this machine can count (a 10**12-sequence batch of attention scores).

    >>> from flopgrad.backend import broadcast_shapes
    >>> broadcast_shapes((10**12, 1, 1, 1024), (12, 1024, 1))
    (1000000000000, 12, 1024, 1024)
    """
    ndim = max((len(s) for s in shapes), default=0)
    out = [1] * ndim
    for s in shapes:
        for i, d in enumerate(s, ndim - len(s)):
            if d != 1:
                if out[i] == 1:
                    out[i] = d
                elif out[i] != d:
                    raise ValueError(
                        "shape mismatch: objects cannot be broadcast to a single shape: "
                        + " and ".join(str(tuple(x)) for x in shapes))
    return tuple(out)


# PyTorch's categories: bool < int < float (V is bfloat16, a float)
_RANK = {"b": 0, "u": 1, "i": 1, "f": 2, "V": 2, "c": 3}
_F32 = np.dtype(np.float32)
_SCALAR_DTYPES = (np.dtype(np.bool_), np.dtype(np.int64), _F32, np.dtype(np.complex64))


def _operand(x) -> tuple[np.dtype, int]:
    """(dtype, priority) of an operand: 2 a tensor with dims, 1 a 0-d tensor, 0 a number
    (its category's default dtype: int64, float32)."""
    if isinstance(x, np.ndarray | MetaArray):
        return x.dtype, 2 if x.ndim else 1
    if isinstance(x, bool | np.bool_):
        return _SCALAR_DTYPES[0], 0
    if isinstance(x, int | np.integer):
        return _SCALAR_DTYPES[1], 0
    if isinstance(x, float | np.floating):
        return _F32, 0
    return _SCALAR_DTYPES[3], 0


def result_type(*operands, true_divide: bool = False) -> np.dtype:
    """PyTorch's result dtype: the highest category (bool < int < float) decides; within it,
    tensors with dims outrank 0-d tensors, which outrank Python numbers (float32 for a float,
    int64 for an int); mixed int and float take the float's dtype (NumPy would give float64).
    True division of integers gives float32.

    >>> import numpy as np
    >>> from flopgrad.backend import result_type
    >>> result_type(np.ones(2, np.int64), np.ones(2, np.float32)), result_type(np.ones(2, int), 2.5)
    (dtype('float32'), dtype('float32'))
    """
    result, rank = None, -1
    for priority in (2, 1, 0):
        group = None
        for x in operands:
            dtype, p = _operand(x)
            if p != priority:
                continue
            if group is None or _RANK[dtype.kind] > _RANK[group.kind]:
                group = dtype
            elif _RANK[dtype.kind] == _RANK[group.kind]:
                group = np.promote_types(group, dtype)
        if group is not None and _RANK[group.kind] > rank:
            result, rank = group, _RANK[group.kind]
    if true_divide and rank < 2:
        return _F32
    if rank == 3 and result.itemsize < 16 and any(  # a complex number with float64 tensors
            _operand(x)[0].itemsize == 8 and _operand(x)[0].kind == "f" for x in operands):
        return np.dtype(np.complex128)
    return result


def _c_strides(shape: tuple, itemsize: int) -> tuple:
    strides = []
    acc = itemsize
    for n in reversed(shape):
        strides.append(acc)
        acc *= max(n, 1)
    return tuple(reversed(strides))


class MetaArray:
    """Shape, dtype and strides of an array that was never allocated."""

    __slots__ = ("shape", "dtype", "strides", "base", "writeable", "__weakref__")
    __array_priority__ = 2000

    def __init__(self, shape, dtype, strides=None, base=None, writeable: bool = True):
        self.shape = tuple(int(s) for s in shape)
        if any(s < 0 for s in self.shape):
            raise ValueError(f"negative dimensions are not allowed: {self.shape}")
        self.dtype = np.dtype(dtype)
        self.strides = _c_strides(self.shape, self.dtype.itemsize) if strides is None \
            else tuple(strides)
        self.base = base
        self.writeable = writeable

    # what the engine reads off arrays
    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    def flags(self):
        return self

    @property
    def c_contiguous(self) -> bool:
        return self.strides == _c_strides(self.shape, self.dtype.itemsize) or self.size <= 1

    def view_of(self, shape, strides, writeable: bool | None = None) -> MetaArray:
        """A view sharing this array's (virtual) buffer."""
        root = self.base if self.base is not None else self
        return MetaArray(shape, self.dtype, strides, root,
                         self.writeable if writeable is None else writeable)

    def copy(self) -> MetaArray:
        return MetaArray(self.shape, self.dtype)

    def astype(self, dtype, copy: bool = True) -> MetaArray:
        if not copy and np.dtype(dtype) == self.dtype:
            return self
        return MetaArray(self.shape, dtype)

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d array")
        return self.shape[0]

    def _arith(self, other) -> MetaArray:
        """Shape and dtype of an elementwise result (used by in-place updates)."""
        o_shape = other.shape if isinstance(other, MetaArray | np.ndarray) else np.shape(other)
        o_dtype = other.dtype if isinstance(other, MetaArray | np.ndarray) else other
        return MetaArray(broadcast_shapes(self.shape, o_shape),
                         np.result_type(self.dtype, o_dtype))

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _arith
    __truediv__ = __rtruediv__ = _arith

    def __setitem__(self, idx, value) -> None:
        """Writing into a meta array changes nothing (there is nothing to change)."""

    def __array__(self, dtype=None, copy=None):
        raise no_data("conversion to a NumPy array")

    def __bool__(self) -> bool:
        raise no_data("bool()")

    def __float__(self) -> float:
        raise no_data("float()")

    def __int__(self) -> int:
        raise no_data("int()")

    def tolist(self):
        raise no_data("tolist()")

    def item(self):
        raise no_data("item()")

    def __repr__(self) -> str:
        return f"MetaArray(shape={self.shape}, dtype={self.dtype})"


def is_meta(a) -> bool:
    return type(a) is MetaArray


def zeros_like(a):
    """np.zeros_like that keeps meta arrays meta."""
    return MetaArray(a.shape, a.dtype) if type(a) is MetaArray else np.zeros_like(a)


def shares_buffer(out, inp) -> bool:
    """Whether a view op's output still aliases its input (numpy copies when it must)."""
    if type(out) is MetaArray:
        return out.base is not None and (out.base is inp or out.base is getattr(inp, "base", 0))
    return np.may_share_memory(out, inp)


# ---------------------------------------------------------------- shape arithmetic

def nocopy_reshape(shape: tuple, strides: tuple, new: tuple, itemsize: int):
    """Strides of `new` as a view of (shape, strides), or None if numpy would have to copy.

    The algorithm of numpy's _attempt_nocopy_reshape (C order).
    """
    if math.prod(shape) == 0:
        return _c_strides(new, itemsize)
    old = [(n, s) for n, s in zip(shape, strides, strict=True) if n != 1]
    new_strides = [0] * len(new)
    oi, oj, ni, nj = 0, 1, 0, 1
    while ni < len(new) and oi < len(old):
        np_, op = new[ni], old[oi][0]
        while np_ != op:
            if np_ < op:
                np_ *= new[nj]
                nj += 1
            else:
                op *= old[oj][0]
                oj += 1
        for ok in range(oi, oj - 1):
            if old[ok][1] != old[ok + 1][0] * old[ok + 1][1]:
                return None
        new_strides[nj - 1] = old[oj - 1][1]
        for nk in range(nj - 1, ni, -1):
            new_strides[nk - 1] = new_strides[nk] * new[nk]
        ni, nj, oi, oj = nj, nj + 1, oj, oj + 1
    last = new_strides[ni - 1] if ni >= 1 else itemsize
    for nk in range(ni, len(new)):
        new_strides[nk] = last
    return tuple(new_strides)


def _expand_ellipsis(idx: tuple, ndim: int) -> list:
    explicit = sum(1 for i in idx if i is not None and i is not Ellipsis)
    if explicit > ndim:
        raise IndexError(f"too many indices for array: array is {ndim}-dimensional, but "
                         f"{explicit} were indexed")
    out, seen = [], False
    for i in idx:
        if i is Ellipsis:
            if seen:
                raise IndexError("an index can only have a single ellipsis ('...')")
            seen = True
            out += [slice(None)] * (ndim - explicit)
        else:
            out.append(i)
    if not seen:
        out += [slice(None)] * (ndim - explicit)
    return out


def basic_index(a: MetaArray, idx: tuple) -> MetaArray:
    """a[idx] for ints, slices, None and Ellipsis: a view, as in numpy."""
    shape, strides = [], []
    d = 0
    for i in _expand_ellipsis(idx, a.ndim):
        if i is None:
            shape.append(1)
            strides.append(0)
            continue
        n, st = a.shape[d], a.strides[d]
        if isinstance(i, int | np.integer):
            if not -n <= i < n:
                raise IndexError(f"index {i} is out of bounds for axis {d} with size {n}")
        else:
            start, stop, step = i.indices(n)
            shape.append(len(range(start, stop, step)))
            strides.append(st * step)
        d += 1
    return a.view_of(shape, strides)


def _is_index_array(i) -> bool:
    return isinstance(i, np.ndarray | MetaArray)


def advanced_index_shape(shape: tuple, idx: tuple) -> tuple:
    """The shape numpy gives x[idx] when idx holds integer arrays (numpy's placement rule)."""
    entries = _expand_ellipsis(idx, len(shape))
    has_array = any(_is_index_array(i) for i in entries)
    adv = [k for k, i in enumerate(entries)
           if _is_index_array(i) or (has_array and isinstance(i, int | np.integer))]
    bshape = broadcast_shapes(*(np.shape(i) if not isinstance(i, MetaArray) else i.shape
                                   for k, i in enumerate(entries) if k in adv))
    out: list = []
    insert_at = None
    d = 0
    for k, i in enumerate(entries):
        if i is None:
            out.append(1)
            continue
        n = shape[d]
        d += 1
        if k in adv:
            if insert_at is None:
                insert_at = len(out)
            if isinstance(i, np.ndarray) and i.size and (i.max() >= n or i.min() < -n):
                raise IndexError(f"index out of bounds for axis {d - 1} with size {n}")
            continue
        if isinstance(i, int | np.integer):
            continue
        start, stop, step = i.indices(n)
        out.append(len(range(start, stop, step)))
    adjacent = adv == list(range(adv[0], adv[-1] + 1))
    if adjacent:
        return tuple(out[:insert_at]) + tuple(bshape) + tuple(out[insert_at:])
    return tuple(bshape) + tuple(out)
