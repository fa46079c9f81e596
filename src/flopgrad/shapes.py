"""Shape rules: what each primitive of `ops` produces on meta arrays (shape, dtype, strides).

Each primitive names its rule where it is declared (`prim(..., meta=shapes.binary)`).

Each rule takes the same arguments as the op's forward and returns a MetaArray; views
return views (sharing the input's virtual buffer) exactly where NumPy does, so the bytes
and memory of a meta bill match a real one. Rules raise the same kinds of errors as NumPy
(ValueError, IndexError) so dispatch reports them the same way.
"""

from __future__ import annotations

import math

import numpy as np

from flopgrad.backend import (
    MetaArray,
    advanced_index_shape,
    basic_index,
    broadcast_shapes,
    nocopy_reshape,
    result_type,
)


def _shape(a) -> tuple:
    return a.shape if isinstance(a, np.ndarray | MetaArray) else np.shape(a)


def _dt(a):
    """What np.result_type should see for an operand (Python scalars stay weak)."""
    if isinstance(a, MetaArray | np.ndarray):
        return a.dtype
    return a


def _new(shape, dtype) -> MetaArray:
    return MetaArray(shape, dtype)


def _broadcast(*args) -> tuple:
    return broadcast_shapes(*(_shape(a) for a in args))


def _float_result(dtype) -> np.dtype:
    """The dtype of a floating op's result: integers and bools give float32, as in PyTorch."""
    dtype = np.dtype(dtype)
    return dtype if dtype.kind in "fcV" else np.dtype(np.float32)


def binary(a, b):
    return _new(_broadcast(a, b), result_type(a, b))


def binary_params(a, b, *params):
    return binary(a, b)


def true_divide(a, b):
    return _new(_broadcast(a, b), result_type(a, b, true_divide=True))


def compare(a, b):
    return _new(_broadcast(a, b), np.bool_)


def logical_not(a):
    return _new(_shape(a), np.bool_)


def same(a, *params):
    return _new(a.shape, a.dtype)


def floating(a, *params):
    return _new(a.shape, _float_result(a.dtype))


def cross_entropy(x, target, reduction):
    shape = x.shape[:1] if reduction == "none" else ()
    return _new(shape, _float_result(x.dtype))


def where(c, x, y):
    return _new(_broadcast(c, x, y), result_type(x, y))


def clamp_tensor(x, lo, hi):
    given = [a for a in (x, lo, hi) if a is not None]
    return _new(_broadcast(*given), result_type(*given))


def pow_scalar(x, e):
    return _new(x.shape, result_type(x, e))


def cast(x, dtype, from_dtype):
    return _new(x.shape, dtype)


def _reduced(shape, axes, keepdims) -> tuple:
    if axes is None:
        return (1,) * len(shape) if keepdims else ()
    if keepdims:
        return tuple(1 if d in axes else n for d, n in enumerate(shape))
    return tuple(n for d, n in enumerate(shape) if d not in axes)


def _sum_dtype(dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype.kind == "b" or (dtype.kind == "i" and dtype.itemsize < 8):
        return np.dtype(np.int64)
    if dtype.kind == "u" and dtype.itemsize < 8:
        return np.dtype(np.uint64)
    return dtype


def reduce_sum(x, axes, keepdims):
    return _new(_reduced(x.shape, axes, keepdims), _sum_dtype(x.dtype))


def reduce_sum_f32(x, axes, keepdims, dtype=None):
    return _new(_reduced(x.shape, axes, keepdims), np.float32)


def reduce_same(x, axes, keepdims):
    if axes is None and x.size == 0 or axes and any(x.shape[d] == 0 for d in axes):
        raise ValueError("zero-size array to reduction operation which has no identity")
    return _new(_reduced(x.shape, axes, keepdims), x.dtype)


def logical_reduce(x, axes, keepdims):
    return _new(_reduced(x.shape, axes, keepdims), np.bool_)


def arg_reduce(x, axis, keepdims):
    return _new(_reduced(x.shape, (axis,), keepdims), np.int64)


def prod_others(x, axes):
    return _new(x.shape, x.dtype)


def cumsum(x, axis):
    return _new(x.shape, _sum_dtype(x.dtype))


def matmul(a, b):
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"inner dimensions {a.shape[-1]} and {b.shape[-2]} differ")
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return _new(batch + (a.shape[-2], b.shape[-1]), np.result_type(a.dtype, b.dtype))


def transposed_gemm(m: int, n: int, a_dtype, b_dtype) -> bool:
    """Whether kernels.gemm computes an (m, n) product as (b.T @ a.T) into Fortran order."""
    return m < n and a_dtype == b_dtype


def _gemm(m, n, a_dtype, b_dtype) -> MetaArray:
    dtype = np.result_type(a_dtype, b_dtype)
    if transposed_gemm(m, n, a_dtype, b_dtype):  # Fortran order, as kernels.gemm returns
        return MetaArray((m, n), dtype, strides=(dtype.itemsize, max(m, 1) * dtype.itemsize))
    return _new((m, n), dtype)


def inplace(a, b, *params):
    if _broadcast(a, b) != a.shape:
        raise ValueError(f"non-broadcastable output operand with shape {a.shape} doesn't "
                         f"match the broadcast shape {_broadcast(a, b)}")
    return a


def layer_norm(x, w, b, n_dims, eps):
    dtypes = [a.dtype for a in (x, w, b) if a is not None]
    return _new(x.shape, _float_result(np.result_type(*dtypes)))


def layer_norm_dx(g, x, w, n_dims, eps):
    dtypes = [a.dtype for a in (g, x, w) if a is not None]
    return _new(x.shape, _float_result(np.result_type(*dtypes)))


def linear(x, w, b=None):
    if x.shape[-1] != w.shape[-1]:
        raise ValueError(f"the input's last dim {x.shape[-1]} differs from the weight's "
                         f"in_features {w.shape[-1]}")
    if b is not None and b.shape != (w.shape[0],):
        raise ValueError(f"bias of shape {b.shape}, expected ({w.shape[0]},)")
    dtype = np.result_type(x.dtype, w.dtype)
    if b is not None and np.result_type(dtype, b.dtype) != dtype:
        return _new(x.shape[:-1] + (w.shape[0],), np.result_type(dtype, b.dtype))
    if len(x.shape) == 2:
        return _gemm(x.shape[0], w.shape[0], x.dtype, w.dtype)
    return _new(x.shape[:-1] + (w.shape[0],), dtype)


def einsum(*args):
    spec, operands = args[-1], args[:-1]
    lhs, rhs = spec.split("->")
    sizes: dict = {}
    for sub, a in zip(lhs.split(","), operands, strict=True):
        if len(sub) != len(a.shape):
            raise ValueError(f"einsum: {sub!r} names {len(sub)} dims, operand has {a.shape}")
        for c, n in zip(sub, a.shape, strict=True):
            if sizes.setdefault(c, n) != n and n != 1 and sizes[c] != 1:
                raise ValueError(f"einsum: index {c!r} has sizes {sizes[c]} and {n}")
            sizes[c] = max(sizes[c], n)
    return _new(tuple(sizes[c] for c in rhs), np.result_type(*(a.dtype for a in operands)))


def reshape(x, shape):
    if math.prod(shape) != x.size:
        raise ValueError(f"cannot reshape array of size {x.size} into shape {shape}")
    strides = nocopy_reshape(x.shape, x.strides, tuple(shape), x.itemsize)
    if strides is None:
        return _new(shape, x.dtype)  # numpy copies
    return x.view_of(shape, strides)


def permute(x, axes):
    return x.view_of(tuple(x.shape[d] for d in axes), tuple(x.strides[d] for d in axes))


def broadcast_strides(shape: tuple, strides: tuple, target: tuple) -> tuple | None:
    """The strides of a (shape, strides) array broadcast to `target` (0 along new and size-1
    dims), or None when it does not broadcast.

    >>> broadcast_strides((3, 1), (8, 8), (2, 3, 4))
    (0, 8, 0)
    """
    lead = len(target) - len(shape)
    if lead < 0:
        return None
    out = [0] * lead
    for n_in, stride, n_out in zip(shape, strides, target[lead:], strict=True):
        if n_in == n_out:
            out.append(stride)
        elif n_in == 1:
            out.append(0)
        else:
            return None
    return tuple(out)


def expand(x, shape):
    strides = broadcast_strides(x.shape, x.strides, shape)
    if strides is None:
        if len(shape) < x.ndim:
            raise ValueError(f"cannot broadcast {x.shape} to {shape}")
        raise ValueError(f"operands could not be broadcast together: {x.shape} to {shape}")
    return x.view_of(shape, strides, writeable=False)


def flip(x, axes):
    axes = range(x.ndim) if axes is None else axes
    return x.view_of(x.shape, tuple(-s if d in axes else s for d, s in enumerate(x.strides)))


def roll(x, shifts, axes):
    return _new(x.shape, x.dtype)


def getitem(x, idx):
    return basic_index(x, idx)


def index(x, idx):
    return _new(advanced_index_shape(x.shape, idx), x.dtype)


def index_put(v, shape, idx, advanced):
    return _new(shape, v.dtype)


def cat(*args):
    axis, arrays = args[-1], args[:-1]
    first = _shape(arrays[0])
    for a in arrays[1:]:
        s = _shape(a)
        if len(s) != len(first) or any(n != m for d, (n, m) in enumerate(zip(s, first,
                                                                              strict=True))
                                       if d != axis):
            raise ValueError(f"all the input array dimensions except for the concatenation "
                             f"axis must match exactly: {first} and {s}")
    shape = list(first)
    shape[axis] = sum(_shape(a)[axis] for a in arrays)
    return _new(shape, np.result_type(*(_dt(a) for a in arrays)))


def pad(x, widths, value):
    return _new(tuple(n + lo + hi for n, (lo, hi) in zip(x.shape, widths, strict=True)),
                x.dtype)


def unfold(x, kh, kw, stride, dilation):
    n, c, h, w = x.shape
    span_h, span_w = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    if span_h > h or span_w > w:
        raise ValueError(f"window {span_h}x{span_w} is larger than the input {h}x{w}")
    ho = (h - span_h) // stride[0] + 1
    wo = (w - span_w) // stride[1] + 1
    return _new((n, c, kh, kw, ho, wo), x.dtype)


def fold(cols, in_shape, kh, kw, stride, dilation):
    return _new(in_shape, cols.dtype)

