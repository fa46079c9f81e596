"""Reductions (sum, mean, var, max, argmax, logsumexp, ...) and the ops along one dim
(cumsum, softmax). Their PyTorch and NumPy arguments are parsed in one place, @reduction."""

from __future__ import annotations

import builtins
import inspect
import math
import operator
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from flopgrad import ops as O
from flopgrad.dispatch import apply
from flopgrad.dtypes import bfloat16, float16
from flopgrad.ops import Op
from flopgrad.tensor._base import TensorBase
from flopgrad.tensor._dims import _dims, _one_dim
from flopgrad.tensor.functions import maximum, minimum, where

if TYPE_CHECKING:
    from flopgrad.tensor import Tensor

Dims = int | Sequence[int] | None


def reduction(impl: Callable | None = None, *, dims: str = "many", dtype: bool = False,
              floating: bool = False, default: int | None = None,
              other: Callable | None = None) -> Callable:
    """Give the reduction `impl` PyTorch's and NumPy's arguments, parsed here once.

    The method it makes takes `dim` or NumPy's `axis` (not both) and `keepdim` or NumPy's
    `keepdims` (which wins); a bad dim raises PyTorch's error after the method's name.

    - dims="many": x.f(dim=None, keepdim=False, *, axis=None, keepdims=None) calls
      impl(x, dims, keep): dims the sorted tuple of the dims in [0, ndim), None for all.
    - dims="one": the same arguments; impl(x, dim, keep) gets exactly one dim in [0, ndim),
      or None for all of them (argmax over the flattened tensor). other=fn: a tensor given
      as dim is the elementwise fn(x, that_tensor) (torch's a.max(b)).
    - dims="along": x.f(dim=None, *, axis=None, dtype=None) calls impl(x, dim) with exactly
      one dim; a missing dim is `default` (a TypeError when there is none).
    - dtype=True: the method takes dtype= and reduces x.to(dtype) (the cast comes first);
      floating=True: that tensor must be floating point.

    Resolving the arguments costs no call of its own when dim is None (x.sum()).

    >>> import flopgrad as fg
    >>> from flopgrad.tensor.reduce import reduction
    >>> def peak(x, dims, keep):
    ...     return x.amax(dims, keep)
    >>> peak = reduction(peak)
    >>> peak(fg.tensor([[1.0, 5.0], [3.0, 2.0]]), axis=0, keepdims=True).tolist()
    [[3.0, 5.0]]
    >>> peak(fg.ones(2), 3)
    Traceback (most recent call last):
    IndexError: peak: Dimension out of range (expected to be in range of [-1, 0], but got 3)
    """
    if impl is None:
        return lambda fn: reduction(fn, dims=dims, dtype=dtype, floating=floating,
                                    default=default, other=other)
    if dims not in ("many", "one", "along"):
        raise ValueError(f"reduction: dims must be 'many', 'one' or 'along', got {dims!r}")
    if (floating and not dtype) or (other is not None and dims != "one") or (
            dims == "along" and not dtype):
        raise ValueError("reduction: floating= goes with dtype=True, other= with dims='one', "
                         "and dims='along' with dtype=True")
    name = impl.__name__
    resolve = _dims if dims == "many" else _one_dim

    if dims == "along":
        def method(self, dim: int | None = None, *, axis: int | None = None,
                   dtype: Any = None) -> Tensor:
            if dtype is not None:
                self = self.to(dtype)
            if dim is None and axis is None:
                dim = default
            return impl(self, _one_dim(dim, axis, self._data.ndim, name))
    elif dtype:
        def method(self, dim: Dims = None, keepdim: bool = False, *, axis: Dims = None,
                   keepdims: bool | None = None, dtype: Any = None) -> Tensor:
            if dtype is not None:
                self = self.to(dtype)
            if floating and self._data.dtype.kind not in "fcV":
                raise TypeError(f"{name}: needs a floating-point tensor (or a floating dtype=), "
                                f"got {self.dtype}; convert it with .float() first")
            return impl(self, None if dim is None and axis is None else resolve(
                dim, axis, self._data.ndim, name), bool(keepdim if keepdims is None else keepdims))
    else:
        def method(self, dim: Dims = None, keepdim: bool = False, *, axis: Dims = None,
                   keepdims: bool | None = None) -> Tensor:
            if other is not None and isinstance(dim, TensorBase):
                return other(self, dim)
            return impl(self, None if dim is None and axis is None else resolve(
                dim, axis, self._data.ndim, name), bool(keepdim if keepdims is None else keepdims))

    method.__name__, method.__qualname__ = name, impl.__qualname__
    method.__module__, method.__doc__ = impl.__module__, impl.__doc__
    method.__annotations__["return"] = impl.__annotations__.get("return", "Tensor")
    return method


def _applies(op: Op, name: str, doc: str) -> Callable:
    """The impl of the reduction `name` that is the one primitive `op`, with the parsed
    arguments as its params."""
    def impl(x: Tensor, *params: Any) -> Tensor:
        return apply(op, (x,), params)

    return _named(impl, name, doc)


def _extremum(name: str, all_op: Op, arg_op: Op, doc: str) -> Callable:
    """The impl of max or min: all_op over every element without a dim; along one dim, the
    values and indices of arg_op (a MinMax)."""
    def impl(x: Tensor, dim: int | None, keep: bool) -> Tensor | MinMax:
        if dim is None:
            return apply(all_op, (x,), (None, False))
        return _extreme(x, arg_op, dim, keep)

    return _named(impl, name, doc)


def _named(impl: Callable, name: str, doc: str) -> Callable:
    impl.__name__, impl.__qualname__ = name, f"ReductionMixin.{name}"
    impl.__doc__ = inspect.cleandoc(doc)  # the docstrings below start on their second line
    return impl


class ReductionMixin:
    """Tensor's reductions and the ops along one dim."""

    __slots__ = ()

    @reduction(dtype=True)
    def sum(self, dims: tuple | None, keep: bool) -> Tensor:
        """Sum over `dim` (all dims by default).

        >>> import flopgrad as fg
        >>> x = fg.tensor([[1.0, 2.0], [3.0, 4.0]])
        >>> x.sum().item(), x.sum(0).tolist()
        (10.0, [4.0, 6.0])
        """
        x = self.long() if self._data.dtype.kind == "b" else self
        return apply(O.SUM, (x,), (dims, keep))

    @reduction(dtype=True, floating=True)
    def mean(self, dims: tuple | None, keep: bool) -> Tensor:
        """Arithmetic mean over `dim`.

        >>> import flopgrad as fg
        >>> fg.tensor([[1.0, 2.0], [3.0, 4.0]]).mean(1).tolist()
        [1.5, 3.5]
        """
        return _sum_div(self, dims, keep, _count(self.shape, dims))

    def var(self, dim: Dims | bool = None, unbiased: bool | None = None, keepdim: bool = False,
            *, correction: int | None = None, axis: Dims = None,
            keepdims: bool | None = None) -> Tensor:
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
        return _sum_div(centered * centered, dims, bool(keepdim if keepdims is None else keepdims),
                        builtins.max(n - c, 0))

    def std(self, dim: Dims | bool = None, unbiased: bool | None = None, keepdim: bool = False,
            *, correction: int | None = None, axis: Dims = None,
            keepdims: bool | None = None) -> Tensor:
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

    prod = reduction(_applies(O.PROD, "prod", """
        Product over `dim` (exact gradients even with zeros), in `dtype` when given.

        >>> import flopgrad as fg
        >>> fg.tensor([[1.0, 2.0], [3.0, 4.0]]).prod(1).tolist()
        [2.0, 12.0]
        """), dtype=True)

    all = reduction(_applies(O.ALL, "all", """
        Whether every element (along `dim`) is non-zero; a bool tensor, no gradient.

        >>> import flopgrad as fg
        >>> bool(fg.tensor([1.0, 2.0]).all()), fg.tensor([[0, 1], [1, 1]]).all(1).tolist()
        (True, [False, True])
        """))

    any = reduction(_applies(O.ANY, "any", """
        Whether any element (along `dim`) is non-zero; a bool tensor, no gradient.

        >>> import flopgrad as fg
        >>> fg.tensor([[0, 0], [0, 1]]).any(1).tolist()
        [False, True]
        """))

    amax = reduction(_applies(O.AMAX, "amax", """
        Maximum over `dim`; tied maxima share the gradient evenly.

        >>> import flopgrad as fg
        >>> fg.tensor([[1.0, 5.0], [3.0, 2.0]]).amax(0).tolist()
        [3.0, 5.0]
        """))

    amin = reduction(_applies(O.AMIN, "amin", """
        Minimum over `dim`; tied minima share the gradient evenly.

        >>> import flopgrad as fg
        >>> fg.tensor([[1.0, 5.0], [3.0, 2.0]]).amin(0).tolist()
        [1.0, 2.0]
        """))

    max = reduction(_extremum("max", O.MAX_ALL, O.ARGMAX, """
        Without dim: the maximum (ties split). With dim: (values, indices) like PyTorch.

        >>> import flopgrad as fg
        >>> x = fg.tensor([[1.0, 5.0], [3.0, 2.0]])
        >>> x.max().item(), x.max(1).indices.tolist()
        (5.0, [1, 0])
        """), dims="one", other=maximum)

    min = reduction(_extremum("min", O.MIN_ALL, O.ARGMIN, """
        Without dim: the minimum (ties split). With dim: (values, indices) like PyTorch.

        >>> import flopgrad as fg
        >>> values, indices = fg.tensor([[1.0, 5.0], [3.0, 2.0]]).min(1)
        >>> values.tolist(), indices.tolist(), fg.tensor([4.0, -1.0]).min().item()
        ([1.0, 2.0], [0, 1], -1.0)
        """), dims="one", other=minimum)

    @reduction(dims="one")
    def argmax(self, dim: int | None, keep: bool) -> Tensor:
        """Index of the maximum (flattened when dim is None).

        >>> import flopgrad as fg
        >>> x = fg.tensor([[1.0, 5.0], [3.0, 2.0]])
        >>> x.argmax().item(), x.argmax(1).tolist()
        (1, [1, 0])
        """
        return _arg(self, O.ARGMAX, dim, keep)

    @reduction(dims="one")
    def argmin(self, dim: int | None, keep: bool) -> Tensor:
        """Index of the minimum (flattened when dim is None).

        >>> import flopgrad as fg
        >>> fg.tensor([[1.0, 5.0], [3.0, 2.0]]).argmin(0).tolist()
        [0, 1]
        """
        return _arg(self, O.ARGMIN, dim, keep)

    @reduction
    def logsumexp(self, dims: tuple | None, keep: bool) -> Tensor:
        """log(sum(exp(x))) over `dim`, computed stably.

        >>> import flopgrad as fg
        >>> fg.tensor([100.0, float("-inf")]).logsumexp(0).item()
        100.0
        """
        if self._data.size == 0:  # no max to shift by
            with np.errstate(divide="ignore"):
                return self.exp().sum(dims, keep).log()  # -inf, as PyTorch
        m = self.amax(dims, keepdim=True).detach()
        m = where(m.abs() == float("inf"), 0.0, m)
        out = (self - m).exp().sum(dims, keepdim=True).log() + m
        return out if keep else _squeeze_dims(out, dims)

    # ------------------------------------------------------------ along one dim
    @reduction(dims="along", dtype=True)
    def cumsum(self, dim: int) -> Tensor:
        """Running sum along `dim` (in `dtype` when given).

        >>> import flopgrad as fg
        >>> fg.tensor([1, 2, 3]).cumsum(0).tolist()
        [1, 3, 6]
        """
        if self.ndim == 0:  # a 0-d tensor is its own running sum
            return apply(O.CUMSUM, (self.reshape(1),), (0,)).reshape(())
        return apply(O.CUMSUM, (self,), (dim,))

    softmax = reduction(_applies(O.SOFTMAX, "softmax", """
        exp(x) / sum(exp(x)) along `dim` (default -1), shifted by the max for stability;
        computed in `dtype` when given.

        >>> import flopgrad as fg
        >>> fg.tensor([1.0, 1.0, 1.0, 1.0]).softmax().tolist()
        [0.25, 0.25, 0.25, 0.25]
        """), dims="along", dtype=True, default=-1)

    log_softmax = reduction(_applies(O.LOG_SOFTMAX, "log_softmax", """
        x - logsumexp(x) along `dim` (default -1); computed in `dtype` when given.

        >>> import flopgrad as fg
        >>> fg.tensor([0.0, 0.0]).log_softmax().tolist()
        [-0.6931471824645996, -0.6931471824645996]
        """), dims="along", dtype=True, default=-1)


class MinMax(tuple):
    """(values, indices) returned by max(dim)/min(dim), like torch.return_types.

    >>> import flopgrad as fg
    >>> values, indices = fg.tensor([3.0, 7.0, 5.0]).max(0)
    >>> values.item(), indices.item()
    (7.0, 1)
    """

    def __new__(cls, values: Tensor, indices: Tensor) -> MinMax:
        return super().__new__(cls, (values, indices))

    values = property(operator.itemgetter(0), doc="""
        The reduced values (item 0).

        >>> import flopgrad as fg
        >>> fg.tensor([[1.0, 4.0]]).max(1).values.tolist()
        [4.0]
        """)

    indices = property(operator.itemgetter(1), doc="""
        The positions of the values along the reduced dim (item 1).

        >>> import flopgrad as fg
        >>> fg.tensor([[1.0, 4.0]]).min(1).indices.tolist()
        [0]
        """)


# ---------------------------------------------------------------- helpers

def _extreme(x: Tensor, arg_op: Op, dim: int, keep: bool) -> MinMax:
    """max(dim) / min(dim): the values at the arg_op indices, and the indices."""
    if x.ndim == 0:  # the value itself, at index 0
        values, idx = _extreme(x.reshape(1), arg_op, 0, False)
        return MinMax(values.reshape(()), idx.reshape(()))
    idx = apply(arg_op, (x,), (dim, True))
    values = x.gather(dim, idx)
    if not keep:
        values, idx = values.squeeze(dim), idx.squeeze(dim)
    return MinMax(values, idx)


def _arg(x: Tensor, op: Op, dim: int | None, keep: bool) -> Tensor:
    """argmax / argmin along dim, or over the flattened tensor (keep: all dims 1)."""
    if dim is None:
        out = apply(op, (x.reshape(-1),), (0, False))
        return out.reshape((1,) * x.ndim) if keep else out
    if x.ndim == 0:
        return apply(op, (x.reshape(1),), (0, False))
    return apply(op, (x,), (dim, keep))


def _count(shape: tuple, dims: tuple | None) -> int:
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


def _sum_div(x: Tensor, dims: tuple | None, keep: bool, divisor) -> Tensor:
    """x summed over dims, divided by a number (mean, var): float16 and bfloat16 are summed
    and divided in float32 and only the result rounded, as PyTorch does (a float16 sum of
    70,000 values overflows, and so does the count 70,000 itself). Billed as the same sum and
    division, plus the cast of the result."""
    dtype = x._data.dtype
    if dtype is float16 or dtype is bfloat16:
        return (apply(O.SUM_F32, (x,), (dims, keep, dtype)) / divisor).to(dtype)
    return x.sum(dims, keep) / divisor


def _squeeze_dims(x: Tensor, dims: tuple | None) -> Tensor:
    if dims is None:
        return x.reshape(())
    return x.reshape(tuple(s for d, s in enumerate(x.shape) if d not in dims))
