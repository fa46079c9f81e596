"""Tensor: the user-facing array. Every operator delegates to a primitive via dispatch."""

from __future__ import annotations

import builtins
import math
from typing import Any

import numpy as np

from flopgrad import dispatch
from flopgrad import ops as O
from flopgrad.backend import MetaArray, no_data
from flopgrad.dispatch import apply, mode
from flopgrad.dtypes import (  # noqa: F401  (re-exported: fg.float32, tensor.as_dtype)
    _DEFAULT_FLOAT,
    DTYPES,
    _bad_dtype,
    as_dtype,
    bool_,
    float16,
    float32,
    float64,
    int32,
    int64,
)
from flopgrad.tensor import functions
from flopgrad.tensor._base import TensorBase
from flopgrad.tensor._dims import _dims, _one_dim, _shape_arg, _wrap_dim
from flopgrad.tensor.functions import (
    _data_of,
    _div_round,
    _t,
    cat,
    chunk,
    concat,
    concatenate,
    einsum,
    floor_divide,
    gather,
    index_select,
    matmul,
    maximum,
    minimum,
    outer,
    scatter_add,
    split,
    stack,
    where,
)


def _keep(keepdim, keepdims) -> bool:
    return bool(keepdims) if keepdims is not None else bool(keepdim)


class Tensor(TensorBase):
    """An n-dimensional array that records the ops applied to it for differentiation.

    >>> import flopgrad as fg
    >>> x = fg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> (x * x).sum().backward()
    >>> x.grad
    tensor([2., 4., 6.])
    """

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

    # ------------------------------------------------------------ in place (no graph)
    def _inplace(self, values: np.ndarray) -> Tensor:
        if mode().grad_enabled and self.requires_grad:
            raise RuntimeError(
                "in-place update of a tensor that requires grad; wrap it in `with fg.no_grad():` "
                "(as optimizers do) or use the out-of-place op")
        self._data[...] = values
        self._version[0] += 1
        return self

    def add_(self, other, alpha: float = 1) -> Tensor:
        """In-place `self += alpha * other` (billed; no new memory).

        >>> import flopgrad as fg
        >>> fg.zeros(2).add_(fg.ones(2), alpha=3)
        tensor([3., 3.])
        """
        return apply(O.ADD_, (self, other), (alpha,))

    def sub_(self, other, alpha: float = 1) -> Tensor:
        """In-place `self -= alpha * other` (billed; no new memory).

        >>> import flopgrad as fg
        >>> fg.ones(2).sub_(fg.ones(2), alpha=2).tolist()
        [-1.0, -1.0]
        """
        return apply(O.SUB_, (self, other), (alpha,))

    def mul_(self, other) -> Tensor:
        """In-place `self *= other` (billed; no new memory).

        >>> import flopgrad as fg
        >>> fg.tensor([1.0, 2.0]).mul_(3).tolist()
        [3.0, 6.0]
        """
        return apply(O.MUL_, (self, other))

    def div_(self, other) -> Tensor:
        """In-place `self /= other` (billed; no new memory).

        >>> import flopgrad as fg
        >>> fg.tensor([1.0, 2.0]).div_(2).tolist()
        [0.5, 1.0]
        """
        return apply(O.DIV_, (self, other))

    def zero_(self) -> Tensor:
        """In-place fill with zeros.

        >>> import flopgrad as fg
        >>> fg.ones(2).zero_().tolist()
        [0.0, 0.0]
        """
        return self._inplace(0)

    def fill_(self, value) -> Tensor:
        """In-place fill with `value`.

        >>> import flopgrad as fg
        >>> fg.zeros(2).fill_(7).tolist()
        [7.0, 7.0]
        """
        return self._inplace(value)

    def copy_(self, src) -> Tensor:
        """In-place copy of `src`'s values (broadcast to this shape).

        >>> import flopgrad as fg
        >>> fg.zeros(2, 2).copy_(fg.tensor([1.0, 2.0])).tolist()
        [[1.0, 2.0], [1.0, 2.0]]
        """
        return self._inplace(_data_of(src))

    def __setitem__(self, idx, value) -> None:
        if mode().grad_enabled and self.requires_grad:
            raise RuntimeError(
                "item assignment to a tensor that requires grad is not differentiable; "
                "use fg.where, masked_fill or index_put style ops, or assign under fg.no_grad()")
        self._data[_index_arg(idx, self._data.shape)] = _data_of(value)
        self._version[0] += 1

    # ------------------------------------------------------------ arithmetic
    def __add__(self, o):
        return apply(O.ADD, (self, o))

    def __radd__(self, o):
        return apply(O.ADD, (o, self))

    def __sub__(self, o):
        return apply(O.SUB, (self, o))

    def __rsub__(self, o):
        return apply(O.SUB, (o, self))

    def __mul__(self, o):
        return apply(O.MUL, (self, o))

    def __rmul__(self, o):
        return apply(O.MUL, (o, self))

    def __truediv__(self, o):
        return apply(O.DIV, (self, o))

    def __rtruediv__(self, o):
        return apply(O.DIV, (o, self))

    def __pow__(self, o):
        if isinstance(o, int | float | np.number):
            return apply(O.POW_SCALAR, (self,), (o,))
        return apply(O.POW, (self, o))

    def __rpow__(self, o):
        return apply(O.POW, (o, self))

    def __neg__(self):
        return apply(O.NEG, (self,))

    def __pos__(self):
        return self

    def __abs__(self):
        return apply(O.ABS, (self,))

    def __matmul__(self, o):
        return matmul(self, o)

    def __rmatmul__(self, o):
        return matmul(o, self)

    __hash__ = object.__hash__  # defining __eq__ would otherwise make tensors unhashable

    def __eq__(self, o):  # type: ignore[override]
        return apply(O.EQ, (self, o))

    def __ne__(self, o):  # type: ignore[override]
        return apply(O.NE, (self, o))

    def __lt__(self, o):
        return apply(O.LT, (self, o))

    def __le__(self, o):
        return apply(O.LE, (self, o))

    def __gt__(self, o):
        return apply(O.GT, (self, o))

    def __ge__(self, o):
        return apply(O.GE, (self, o))

    def __and__(self, o):
        return apply(O.LOGICAL_AND, (self, o))

    def __or__(self, o):
        return apply(O.LOGICAL_OR, (self, o))

    def __invert__(self):
        return apply(O.LOGICAL_NOT, (self,))

    def __getitem__(self, idx):
        idx = _index_arg(idx, self._data.shape)
        return apply(O.INDEX if _is_advanced(idx) else O.GETITEM, (self,), (idx,))

    # ------------------------------------------------------------ named elementwise ops
    def add(self, o, alpha: float = 1):
        """self + alpha * o.

        >>> import flopgrad as fg
        >>> fg.tensor([1.0, 2.0]).add(fg.ones(2), alpha=10).tolist()
        [11.0, 12.0]
        """
        return self + (o * alpha if alpha != 1 else o)

    def sub(self, o, alpha: float = 1):
        """self - alpha * o.

        >>> import flopgrad as fg
        >>> fg.tensor([1.0, 2.0]).sub(1).tolist()
        [0.0, 1.0]
        """
        return self - (o * alpha if alpha != 1 else o)

    def mul(self, o):
        """Elementwise product.

        >>> import flopgrad as fg
        >>> fg.tensor([1.0, 2.0]).mul(fg.tensor([3.0, 4.0])).tolist()
        [3.0, 8.0]
        """
        return self * o

    def div(self, o, *, rounding_mode: str | None = None):
        """Elementwise quotient; rounding_mode "trunc" or "floor" rounds it (PyTorch's
        semantics: integers stay integers, and the gradient is zero).

        >>> import flopgrad as fg
        >>> fg.tensor([1.0, 3.0]).div(2).tolist()
        [0.5, 1.5]
        >>> x = fg.tensor([-7.0, 7.0])
        >>> x.div(2, rounding_mode="trunc").tolist(), x.div(2, rounding_mode="floor").tolist()
        ([-3.0, 3.0], [-4.0, 3.0])
        """
        if rounding_mode is None:
            return self / o
        return _div_round(self, o, rounding_mode)

    divide = true_divide = div

    def floor_divide(self, o):
        """Floor of the quotient (PyTorch's floor_divide, `//`); zero gradient.

        >>> import flopgrad as fg
        >>> fg.tensor([-7, 7]).floor_divide(2).tolist()
        [-4, 3]
        """
        return _div_round(self, o, "floor")

    def __floordiv__(self, o):
        return _div_round(self, o, "floor")

    def __rfloordiv__(self, o):
        return _div_round(o, self, "floor")

    def floor(self):
        """Round down (zero gradient, as in PyTorch).

        >>> import flopgrad as fg
        >>> fg.tensor([-1.5, 1.5]).floor().tolist()
        [-2.0, 1.0]
        """
        return apply(O.FLOOR, (self,))

    def ceil(self):
        """Round up (zero gradient).

        >>> import flopgrad as fg
        >>> fg.tensor([-1.5, 1.5]).ceil().tolist()
        [-1.0, 2.0]
        """
        return apply(O.CEIL, (self,))

    def trunc(self):
        """Round towards zero (zero gradient).

        >>> import flopgrad as fg
        >>> fg.tensor([-1.5, 1.5]).trunc().tolist()
        [-1.0, 1.0]
        """
        return apply(O.TRUNC, (self,))

    def round(self, decimals: int = 0):
        """Round half to even, to `decimals` places (zero gradient).

        >>> import flopgrad as fg
        >>> fg.tensor([0.5, 1.5, 2.5]).round().tolist()
        [0.0, 2.0, 2.0]
        >>> fg.tensor([2.25], dtype="float64").round(1).tolist()
        [2.2]
        """
        return apply(O.ROUND, (self,), (int(decimals),))

    def pow(self, o):
        """Elementwise power (scalar or tensor exponent).

        >>> import flopgrad as fg
        >>> fg.tensor([2.0, 3.0]).pow(2).tolist()
        [4.0, 9.0]
        """
        return self ** o

    def neg(self):
        """-self.

        >>> import flopgrad as fg
        >>> fg.tensor([1.0, -2.0]).neg().tolist()
        [-1.0, 2.0]
        """
        return -self

    def exp(self):
        """e**x.

        >>> import flopgrad as fg
        >>> fg.tensor([0.0]).exp().item()
        1.0
        """
        return apply(O.EXP, (self,))

    def log(self):
        """Natural logarithm (log(0) = -inf, log(x<0) = nan, as in PyTorch).

        >>> import flopgrad as fg
        >>> fg.tensor([1.0]).log().item()
        0.0
        """
        return apply(O.LOG, (self,))

    def log1p(self):
        """log(1 + x), accurate near 0.

        >>> import flopgrad as fg
        >>> fg.tensor([0.0]).log1p().item()
        0.0
        """
        return apply(O.LOG1P, (self,))

    def sqrt(self):
        """Square root.

        >>> import flopgrad as fg
        >>> fg.tensor([4.0, 9.0]).sqrt().tolist()
        [2.0, 3.0]
        """
        return apply(O.SQRT, (self,))

    def rsqrt(self):
        """1 / sqrt(x).

        >>> import flopgrad as fg
        >>> fg.tensor([4.0]).rsqrt().item()
        0.5
        """
        return apply(O.RSQRT, (self,))

    def abs(self):
        """|x| (gradient 0 at 0, as in PyTorch).

        >>> import flopgrad as fg
        >>> fg.tensor([-1.5, 2.0]).abs().tolist()
        [1.5, 2.0]
        """
        return apply(O.ABS, (self,))

    def sign(self):
        """-1, 0 or 1 (no gradient).

        >>> import flopgrad as fg
        >>> fg.tensor([-2.0, 0.0, 3.0]).sign().tolist()
        [-1.0, 0.0, 1.0]
        """
        return apply(O.SIGN, (self,))

    def sin(self):
        """Sine.

        >>> import flopgrad as fg
        >>> fg.tensor([0.0]).sin().item()
        0.0
        """
        return apply(O.SIN, (self,))

    def cos(self):
        """Cosine.

        >>> import flopgrad as fg
        >>> fg.tensor([0.0]).cos().item()
        1.0
        """
        return apply(O.COS, (self,))

    def tanh(self):
        """Hyperbolic tangent.

        >>> import flopgrad as fg
        >>> fg.tensor([0.0]).tanh().item()
        0.0
        """
        return apply(O.TANH, (self,))

    def sigmoid(self):
        """1 / (1 + exp(-x)).

        >>> import flopgrad as fg
        >>> fg.tensor([0.0]).sigmoid().item()
        0.5
        """
        return apply(O.SIGMOID, (self,))

    def relu(self):
        """max(x, 0).

        >>> import flopgrad as fg
        >>> fg.tensor([-1.0, 2.0]).relu().tolist()
        [0.0, 2.0]
        """
        return apply(O.RELU, (self,))

    def erf(self):
        """The error function.

        >>> import flopgrad as fg
        >>> fg.tensor([0.0]).erf().item()
        0.0
        """
        return apply(O.ERF, (self,))

    def square(self):
        """x ** 2.

        >>> import flopgrad as fg
        >>> fg.tensor([-3.0]).square().item()
        9.0
        """
        return apply(O.POW_SCALAR, (self,), (2,))

    def clamp(self, min=None, max=None):
        """Clip into [min, max]; the gradient is 1 inside (bounds included), 0 outside.

        >>> import flopgrad as fg
        >>> fg.tensor([-2.0, 0.5, 3.0]).clamp(0, 1).tolist()
        [0.0, 0.5, 1.0]
        """
        if isinstance(min, Tensor) or isinstance(max, Tensor):
            return apply(O.CLAMP_T, (self, min, max))
        if min is None and max is None:
            raise ValueError("clamp: give at least one of min and max")
        return apply(O.CLAMP, (self,), (min, max))

    clip = clamp

    def maximum(self, o):
        """Elementwise max (ties split the gradient evenly, as in PyTorch).

        >>> import flopgrad as fg
        >>> fg.tensor([1.0, 4.0]).maximum(fg.tensor([3.0, 2.0])).tolist()
        [3.0, 4.0]
        """
        return maximum(self, o)

    def minimum(self, o):
        """Elementwise min.

        >>> import flopgrad as fg
        >>> fg.tensor([1.0, 4.0]).minimum(fg.tensor([3.0, 2.0])).tolist()
        [1.0, 2.0]
        """
        return minimum(self, o)

    def masked_fill(self, mask, value):
        """Replace entries where `mask` is True by `value`.

        >>> import flopgrad as fg
        >>> x = fg.tensor([1.0, 2.0, 3.0])
        >>> x.masked_fill(x > 1.5, 0.0).tolist()
        [1.0, 0.0, 0.0]
        """
        if isinstance(value, Tensor) and value.ndim != 0:
            raise ValueError(f"masked_fill: the value must be a number or a 0-d tensor, got "
                             f"shape {value.shape}")
        if isinstance(value, complex) and self._data.dtype.kind != "c":
            raise TypeError(f"masked_fill: a complex value cannot fill a {self.dtype} tensor")
        return where(mask, value, self)

    def tril(self, diagonal: int = 0):
        """The lower triangle of the last two dims (from `diagonal` on), zeros above.

        >>> import flopgrad as fg
        >>> fg.ones(2, 3).tril().tolist()
        [[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]]
        """
        return self._triangle(diagonal, "tril")

    def triu(self, diagonal: int = 0):
        """The upper triangle of the last two dims (from `diagonal` on), zeros below.

        >>> import flopgrad as fg
        >>> fg.ones(2, 3).triu(1).tolist()
        [[0.0, 1.0, 1.0], [0.0, 0.0, 1.0]]
        """
        return self._triangle(diagonal, "triu")

    def _triangle(self, diagonal, name):
        if self.ndim < 2:
            raise ValueError(f"{name}: the tensor needs at least 2 dims, got shape {self.shape}")
        rows, cols = self.shape[-2:]
        keep = np.tri(rows, cols, diagonal, dtype=bool)
        if name == "triu":
            keep = ~np.tri(rows, cols, diagonal - 1, dtype=bool)
        return where(Tensor(keep), self, self._data.dtype.type(0))

    def where(self, cond, other):
        """self where cond else other (PyTorch's Tensor.where).

        >>> import flopgrad as fg
        >>> x = fg.tensor([1.0, -2.0])
        >>> x.where(x > 0, 0.0).tolist()
        [1.0, 0.0]
        """
        return where(cond, self, other)

    # ------------------------------------------------------------ reductions
    def sum(self, dim=None, keepdim=False, *, axis=None, keepdims=None, dtype=None):
        """Sum over `dim` (all dims by default).

        >>> import flopgrad as fg
        >>> x = fg.tensor([[1.0, 2.0], [3.0, 4.0]])
        >>> x.sum().item(), x.sum(0).tolist()
        (10.0, [4.0, 6.0])
        """
        x = self if dtype is None else self.to(dtype)
        if x._data.dtype.kind == "b":
            x = x.long()
        return apply(O.SUM, (x,), (_dims(dim, axis, x.ndim, "sum"), _keep(keepdim, keepdims)))

    def mean(self, dim=None, keepdim=False, *, axis=None, keepdims=None, dtype=None):
        """Arithmetic mean over `dim`.

        >>> import flopgrad as fg
        >>> fg.tensor([[1.0, 2.0], [3.0, 4.0]]).mean(1).tolist()
        [1.5, 3.5]
        """
        x = self if dtype is None else self.to(dtype)
        if x._data.dtype.kind not in "fc":
            raise TypeError(f"mean: needs a floating-point tensor (or a floating dtype=), got "
                            f"{x.dtype}; convert it with .float() first")
        dims = _dims(dim, axis, x.ndim, "mean")
        return _sum_div(x, dims, _keep(keepdim, keepdims), _count(x.shape, dims))

    def var(self, dim=None, unbiased=None, keepdim=False, *, correction=None, axis=None,
            keepdims=None):
        """Variance with Bessel's correction by default (PyTorch: correction=1), with
        PyTorch's arguments: var(dim, unbiased, keepdim), var(unbiased) or
        var(dim, correction=..., keepdim=...); correction=None is the default.

        >>> import flopgrad as fg
        >>> x = fg.tensor([1.0, 3.0])
        >>> x.var().item(), x.var(correction=0).item(), x.var(False).item()
        (2.0, 1.0, 1.0)
        """
        dims, c = _var_args(self, dim, unbiased, correction, axis, "var")
        n = _count(self.shape, dims)
        centered = self - self.mean(dims, keepdim=True)
        return _sum_div(centered * centered, dims, _keep(keepdim, keepdims),
                        builtins.max(n - c, 0))

    def std(self, dim=None, unbiased=None, keepdim=False, *, correction=None, axis=None,
            keepdims=None):
        """Standard deviation (square root of var, same arguments); zero gradient where it
        is 0, as in PyTorch.

        >>> import flopgrad as fg
        >>> fg.tensor([1.0, 3.0, 5.0]).std().item()
        2.0
        """
        v = self.var(dim, unbiased, keepdim, correction=correction, axis=axis,
                     keepdims=keepdims)
        zero = v == 0  # sqrt's derivative is inf there: route around it, not through 0 * inf
        return where(zero, 0.0, where(zero, 1.0, v).sqrt())

    def prod(self, dim=None, keepdim=False, *, axis=None, keepdims=None, dtype=None):
        """Product over `dim` (exact gradients even with zeros), in `dtype` when given.

        >>> import flopgrad as fg
        >>> fg.tensor([[1.0, 2.0], [3.0, 4.0]]).prod(1).tolist()
        [2.0, 12.0]
        """
        if dtype is not None:
            return self.to(dtype).prod(dim, keepdim, axis=axis, keepdims=keepdims)
        return apply(O.PROD, (self,), (_dims(dim, axis, self.ndim, "prod"),
                                       _keep(keepdim, keepdims)))

    def all(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        """Whether every element (along `dim`) is non-zero; a bool tensor, no gradient.

        >>> import flopgrad as fg
        >>> bool(fg.tensor([1.0, 2.0]).all()), fg.tensor([[0, 1], [1, 1]]).all(1).tolist()
        (True, [False, True])
        """
        return apply(O.ALL, (self,), (_dims(dim, axis, self.ndim, "all"),
                                      _keep(keepdim, keepdims)))

    def any(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        """Whether any element (along `dim`) is non-zero; a bool tensor, no gradient.

        >>> import flopgrad as fg
        >>> fg.tensor([[0, 0], [0, 1]]).any(1).tolist()
        [False, True]
        """
        return apply(O.ANY, (self,), (_dims(dim, axis, self.ndim, "any"),
                                      _keep(keepdim, keepdims)))

    def amax(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        """Maximum over `dim`; tied maxima share the gradient evenly.

        >>> import flopgrad as fg
        >>> fg.tensor([[1.0, 5.0], [3.0, 2.0]]).amax(0).tolist()
        [3.0, 5.0]
        """
        return apply(O.AMAX, (self,), (_dims(dim, axis, self.ndim, "amax"),
                                       _keep(keepdim, keepdims)))

    def amin(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        """Minimum over `dim`; tied minima share the gradient evenly.

        >>> import flopgrad as fg
        >>> fg.tensor([[1.0, 5.0], [3.0, 2.0]]).amin(0).tolist()
        [1.0, 2.0]
        """
        return apply(O.AMIN, (self,), (_dims(dim, axis, self.ndim, "amin"),
                                       _keep(keepdim, keepdims)))

    def max(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        """Without dim: the maximum (ties split). With dim: (values, indices) like PyTorch.

        >>> import flopgrad as fg
        >>> x = fg.tensor([[1.0, 5.0], [3.0, 2.0]])
        >>> x.max().item(), x.max(1).indices.tolist()
        (5.0, [1, 0])
        """
        return self._extreme(dim, keepdim, axis, keepdims, O.AMAX, O.ARGMAX, "max")

    def min(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        """Without dim: the minimum (ties split). With dim: (values, indices) like PyTorch.

        >>> import flopgrad as fg
        >>> x = fg.tensor([[1.0, 5.0], [3.0, 2.0]])
        >>> x.min().item(), x.min(1).values.tolist()
        (1.0, [1.0, 2.0])
        """
        return self._extreme(dim, keepdim, axis, keepdims, O.AMIN, O.ARGMIN, "min")

    def _extreme(self, dim, keepdim, axis, keepdims, reduce_op, arg_op, name):
        if isinstance(dim, Tensor):  # torch.max(a, b) spelled as a.max(b)
            return maximum(self, dim) if name == "max" else minimum(self, dim)
        if dim is None and axis is None:
            return apply(O.MAX_ALL if name == "max" else O.MIN_ALL, (self,), (None, False))
        d = _one_dim(dim, axis, self.ndim, name)
        keep = _keep(keepdim, keepdims)
        if self.ndim == 0:  # the value itself, at index 0
            values, idx = self.reshape(1)._extreme(0, False, None, None, reduce_op, arg_op, name)
            return MinMax(values.reshape(()), idx.reshape(()))
        idx = apply(arg_op, (self,), (d, True))
        values = self.gather(d, idx)
        if not keep:
            values, idx = values.squeeze(d), idx.squeeze(d)
        return MinMax(values, idx)

    def argmax(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        """Index of the maximum (flattened when dim is None).

        >>> import flopgrad as fg
        >>> x = fg.tensor([[1.0, 5.0], [3.0, 2.0]])
        >>> x.argmax().item(), x.argmax(1).tolist()
        (1, [1, 0])
        """
        return self._arg(O.ARGMAX, dim, keepdim, axis, keepdims, "argmax")

    def argmin(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        """Index of the minimum (flattened when dim is None).

        >>> import flopgrad as fg
        >>> fg.tensor([[1.0, 5.0], [3.0, 2.0]]).argmin(0).tolist()
        [0, 1]
        """
        return self._arg(O.ARGMIN, dim, keepdim, axis, keepdims, "argmin")

    def _arg(self, op, dim, keepdim, axis, keepdims, name):
        if dim is None and axis is None:  # over the flattened tensor (keepdim: all dims 1)
            out = apply(op, (self.reshape(-1),), (0, False))
            return out.reshape((1,) * self.ndim) if _keep(keepdim, keepdims) else out
        d = _one_dim(dim, axis, self.ndim, name)
        if self.ndim == 0:
            return apply(op, (self.reshape(1),), (0, False))
        return apply(op, (self,), (d, _keep(keepdim, keepdims)))

    def cumsum(self, dim=None, *, axis=None, dtype=None):
        """Running sum along `dim` (in `dtype` when given).

        >>> import flopgrad as fg
        >>> fg.tensor([1, 2, 3]).cumsum(0).tolist()
        [1, 3, 6]
        """
        if dtype is not None:
            return self.to(dtype).cumsum(dim, axis=axis)
        d = _one_dim(dim, axis, self.ndim, "cumsum")
        if self.ndim == 0:  # a 0-d tensor is its own running sum
            return apply(O.CUMSUM, (self.reshape(1),), (0,)).reshape(())
        return apply(O.CUMSUM, (self,), (d,))

    def logsumexp(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        """log(sum(exp(x))) over `dim`, computed stably.

        >>> import flopgrad as fg
        >>> fg.tensor([100.0, float("-inf")]).logsumexp(0).item()
        100.0
        """
        dims = _dims(dim, axis, self.ndim, "logsumexp")
        if self._data.size == 0:  # no max to shift by
            with np.errstate(divide="ignore"):
                return self.exp().sum(dims, _keep(keepdim, keepdims)).log()  # -inf, as PyTorch
        m = self.amax(dims, keepdim=True).detach()
        m = where(m.abs() == float("inf"), 0.0, m)
        out = (self - m).exp().sum(dims, keepdim=True).log() + m
        return out if _keep(keepdim, keepdims) else _squeeze_dims(out, dims)

    def softmax(self, dim=None, *, axis=None, dtype=None):
        """exp(x) / sum(exp(x)) along `dim` (default -1), shifted by the max for stability;
        computed in `dtype` when given.

        >>> import flopgrad as fg
        >>> fg.tensor([1.0, 1.0, 1.0, 1.0]).softmax().tolist()
        [0.25, 0.25, 0.25, 0.25]
        """
        if dtype is not None:
            return self.to(dtype).softmax(dim, axis=axis)
        d = _one_dim(-1 if dim is None and axis is None else dim, axis, self.ndim, "softmax")
        return apply(O.SOFTMAX, (self,), (d,))

    def log_softmax(self, dim=None, *, axis=None, dtype=None):
        """x - logsumexp(x) along `dim` (default -1); computed in `dtype` when given.

        >>> import flopgrad as fg
        >>> fg.tensor([0.0, 0.0]).log_softmax().tolist()
        [-0.6931471824645996, -0.6931471824645996]
        """
        if dtype is not None:
            return self.to(dtype).log_softmax(dim, axis=axis)
        d = _one_dim(-1 if dim is None and axis is None else dim, axis, self.ndim,
                     "log_softmax")
        return apply(O.LOG_SOFTMAX, (self,), (d,))

    # ------------------------------------------------------------ shape
    def reshape(self, *shape):
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

    def view_as(self, other: Tensor):
        """Reshape to other's shape.

        >>> import flopgrad as fg
        >>> fg.arange(4).view_as(fg.zeros(2, 2)).tolist()
        [[0, 1], [2, 3]]
        """
        return self.reshape(other.shape)

    def flatten(self, start_dim: int = 0, end_dim: int = -1):
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

    def permute(self, *dims):
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

    def transpose(self, dim0: int, dim1: int):
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

    def t(self):
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

    def squeeze(self, dim=None):
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

    def unsqueeze(self, dim: int):
        """Insert a size-1 dim at `dim`.

        >>> import flopgrad as fg
        >>> fg.zeros(2, 3).unsqueeze(1).shape
        (2, 1, 3)
        """
        d = _wrap_dim(dim, self.ndim + 1, "unsqueeze")
        return self.reshape(self.shape[:d] + (1,) + self.shape[d:])

    def expand(self, *sizes):
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

    def expand_as(self, other: Tensor):
        """Broadcast to other's shape.

        >>> import flopgrad as fg
        >>> fg.tensor([1, 2]).expand_as(fg.zeros(3, 2)).shape
        (3, 2)
        """
        return self.broadcast_to(other.shape)

    def broadcast_to(self, shape):
        """Broadcast to `shape` (NumPy rules).

        >>> import flopgrad as fg
        >>> fg.tensor([1, 2]).broadcast_to((2, 2)).tolist()
        [[1, 2], [1, 2]]
        """
        shape = tuple(shape)
        if shape == self._data.shape:
            return self
        return apply(O.EXPAND, (self,), (shape,))

    def repeat(self, *sizes):
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

    def tile(self, *dims):
        """Like repeat, but missing leading dims count as 1 (NumPy's tile).

        >>> import flopgrad as fg
        >>> fg.tensor([[1, 2]]).tile(2).tolist()
        [[1, 2, 1, 2]]
        """
        dims = _shape_arg(dims)
        if len(dims) < self.ndim:
            dims = (1,) * (self.ndim - len(dims)) + dims
        return self.repeat(*dims)

    def flip(self, *dims_, dims=None):
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

    def roll(self, shifts, dims=None):
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

    def split(self, split_size_or_sections, dim: int = 0):
        """Split into pieces of a given size (or the list of sizes) along `dim`.

        >>> import flopgrad as fg
        >>> [p.tolist() for p in fg.arange(5).split(2)]
        [[0, 1], [2, 3], [4]]
        """
        return split(self, split_size_or_sections, dim)

    def chunk(self, chunks: int, dim: int = 0):
        """Split into `chunks` nearly equal pieces along `dim`.

        >>> import flopgrad as fg
        >>> [p.shape for p in fg.zeros(5, 2).chunk(2)]
        [(3, 2), (2, 2)]
        """
        return chunk(self, chunks, dim)

    def gather(self, dim: int, index):
        """out[i][j] = self[index[i][j]][j] for dim=0 (PyTorch's gather).

        >>> import flopgrad as fg
        >>> fg.tensor([[1, 2], [3, 4]]).gather(1, fg.tensor([[1], [0]])).tolist()
        [[2], [3]]
        """
        return gather(self, dim, index)

    def scatter_add(self, dim: int, index, src):
        """Add `src` into a copy of self at `index` along `dim`; repeated indices accumulate.

        >>> import flopgrad as fg
        >>> fg.zeros(3).scatter_add(0, fg.tensor([0, 2, 0]), fg.ones(3)).tolist()
        [2.0, 0.0, 1.0]
        """
        return scatter_add(self, dim, index, src)

    def index_select(self, dim: int, index):
        """Select entries along `dim` by an integer index vector.

        >>> import flopgrad as fg
        >>> x = fg.tensor([[1, 2], [3, 4], [5, 6]])
        >>> x.index_select(0, fg.tensor([2, 0])).tolist()
        [[5, 6], [1, 2]]
        """
        return index_select(self, dim, index)

    def matmul(self, o):
        """Matrix product (NumPy/PyTorch broadcasting rules).

        >>> import flopgrad as fg
        >>> fg.tensor([[1.0, 2.0]]).matmul(fg.tensor([[3.0], [4.0]])).tolist()
        [[11.0]]
        """
        return matmul(self, o)


class Parameter(Tensor):
    """A tensor that is a model weight: requires grad by default, billed as dW in backward.

    >>> import flopgrad as fg
    >>> fg.nn.Parameter(fg.zeros(2)).requires_grad
    True
    """

    __slots__ = ()

    def __init__(self, data: Any = None, requires_grad: bool = True):
        if data is None:
            data = np.empty(0, dtype=np.float32)
        super().__init__(data._data if isinstance(data, Tensor) else data)
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _wrap(cls, data, node=None, version=None, tangent=None) -> Tensor:
        # what is made from a Parameter (x.detach(), an op's output) is a plain Tensor
        return Tensor._wrap(data, node, version, tangent)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


dispatch.Parameter = Parameter


class MinMax(tuple):
    """(values, indices) returned by max(dim)/min(dim), like torch.return_types.

    >>> import flopgrad as fg
    >>> values, indices = fg.tensor([3.0, 7.0, 5.0]).max(0)
    >>> values.item(), indices.item()
    (7.0, 1)
    """

    def __new__(cls, values, indices):
        return super().__new__(cls, (values, indices))

    @property
    def values(self):
        """The reduced values (item 0).

        >>> import flopgrad as fg
        >>> fg.tensor([[1.0, 4.0]]).max(1).values.tolist()
        [4.0]
        """
        return self[0]

    @property
    def indices(self):
        """The positions of the values along the reduced dim (item 1).

        >>> import flopgrad as fg
        >>> fg.tensor([[1.0, 4.0]]).min(1).indices.tolist()
        [0]
        """
        return self[1]


dispatch.Tensor = functions.Tensor = Tensor


# ---------------------------------------------------------------- helpers

def _index_arg(idx, shape: tuple | None = None):
    """Normalise an index: tensors to arrays, lists to int arrays, masks to nonzero() (a
    mask must match the shape of the dims it indexes, when `shape` is given)."""
    if not isinstance(idx, tuple):
        idx = (idx,)
    out = []
    for k, i in enumerate(idx):
        if isinstance(i, Tensor):
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
    data = i._data if isinstance(i, Tensor) else i
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


def _count(shape, dims) -> int:
    if dims is None:
        return math.prod(shape)
    return math.prod([shape[d] for d in dims])


def _var_args(x: Tensor, dim, unbiased, correction, axis, name: str):
    """(dims, correction) from PyTorch's var/std arguments: a bool first argument is
    `unbiased` (var(False) is the biased variance of everything), correction=None is 1."""
    if isinstance(dim, bool):
        if unbiased is not None:
            raise TypeError(f"{name}: unbiased given twice ({dim!r} and {unbiased!r})")
        dim, unbiased = None, dim
    if unbiased is not None and correction is not None:
        raise TypeError(f"{name}: pass either unbiased or correction, not both")
    if correction is None:
        correction = 0 if unbiased is not None and not unbiased else 1
    return _dims(dim, axis, x.ndim, name), correction


def _sum_div(x: Tensor, dims, keep: bool, divisor) -> Tensor:
    """x summed over dims, divided by a number (mean, var): float16 is summed and divided in
    float32 and only the result rounded to float16, as PyTorch does (a float16 sum of 70,000
    values overflows, and so does the count 70,000 itself). Billed as the same sum and
    division, plus the cast of the result."""
    if x._data.dtype is float16:
        return (apply(O.SUM_F32, (x,), (dims, keep)) / divisor).to(float16)
    return x.sum(dims, keep) / divisor


def _squeeze_dims(x: Tensor, dims) -> Tensor:
    if dims is None:
        return x.reshape(())
    return x.reshape(tuple(s for d, s in enumerate(x.shape) if d not in dims))


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


__all__ = [
    "DTYPES", "MinMax", "Parameter", "Tensor", "as_dtype", "bool_", "cat", "chunk", "concat",
    "concatenate", "einsum", "float16", "float32", "float64", "floor_divide", "gather",
    "index_select", "int32", "int64", "matmul", "maximum", "minimum", "outer", "scatter_add",
    "split", "stack", "where",
    "_shape_arg", "_t",  # used by flopgrad.creation and flopgrad.nn
]

