"""Arithmetic: the operators (+, *, @, ==, ...), the named elementwise ops (exp, clamp,
where, ...) and the in-place updates (add_, zero_, ...)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from flopgrad import ops as O
from flopgrad.dispatch import apply, mode
from flopgrad.ops import Op
from flopgrad.tensor._base import TensorBase, _data_of
from flopgrad.tensor.functions import _div_round, matmul, maximum, minimum, where

if TYPE_CHECKING:
    from flopgrad.tensor import Tensor
    from flopgrad.tensor._base import Operand


def _unary(name: str, op: Op, doc: str):
    """The method x.<name>(), which applies the one-input primitive `op`, with the docstring
    `doc` (a closure over op: no slower than a hand-written method)."""
    def method(self) -> Tensor:
        return apply(op, (self,))

    method.__name__, method.__qualname__, method.__doc__ = name, f"ArithmeticMixin.{name}", doc
    return method


class ArithmeticMixin:
    """Tensor's operators, elementwise ops and in-place updates."""

    __slots__ = ()

    # ------------------------------------------------------------ in place (no graph)
    def _inplace(self, values: np.ndarray) -> Tensor:
        if mode().grad_enabled and self.requires_grad:
            raise RuntimeError(
                "in-place update of a tensor that requires grad; wrap it in `with fg.no_grad():` "
                "(as optimizers do) or use the out-of-place op")
        self._data[...] = values
        self._version[0] += 1
        return self

    def add_(self, other: Operand, alpha: float = 1) -> Tensor:
        """In-place `self += alpha * other` (billed; no new memory).

        >>> import flopgrad as fg
        >>> fg.zeros(2).add_(fg.ones(2), alpha=3)
        tensor([3., 3.])
        """
        return apply(O.ADD_, (self, other), (alpha,))

    def sub_(self, other: Operand, alpha: float = 1) -> Tensor:
        """In-place `self -= alpha * other` (billed; no new memory).

        >>> import flopgrad as fg
        >>> fg.ones(2).sub_(fg.ones(2), alpha=2).tolist()
        [-1.0, -1.0]
        """
        return apply(O.SUB_, (self, other), (alpha,))

    def mul_(self, other: Operand) -> Tensor:
        """In-place `self *= other` (billed; no new memory).

        >>> import flopgrad as fg
        >>> fg.tensor([1.0, 2.0]).mul_(3).tolist()
        [3.0, 6.0]
        """
        return apply(O.MUL_, (self, other))

    def div_(self, other: Operand) -> Tensor:
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

    def fill_(self, value: Operand) -> Tensor:
        """In-place fill with `value`.

        >>> import flopgrad as fg
        >>> fg.zeros(2).fill_(7).tolist()
        [7.0, 7.0]
        """
        return self._inplace(value)

    def copy_(self, src: Operand) -> Tensor:
        """In-place copy of `src`'s values (broadcast to this shape).

        >>> import flopgrad as fg
        >>> fg.zeros(2, 2).copy_(fg.tensor([1.0, 2.0])).tolist()
        [[1.0, 2.0], [1.0, 2.0]]
        """
        return self._inplace(_data_of(src))

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

    # ------------------------------------------------------------ named elementwise ops
    def add(self, o: Operand, alpha: float = 1) -> Tensor:
        """self + alpha * o.

        >>> import flopgrad as fg
        >>> fg.tensor([1.0, 2.0]).add(fg.ones(2), alpha=10).tolist()
        [11.0, 12.0]
        """
        return self + (o * alpha if alpha != 1 else o)

    def sub(self, o: Operand, alpha: float = 1) -> Tensor:
        """self - alpha * o.

        >>> import flopgrad as fg
        >>> fg.tensor([1.0, 2.0]).sub(1).tolist()
        [0.0, 1.0]
        """
        return self - (o * alpha if alpha != 1 else o)

    def mul(self, o: Operand) -> Tensor:
        """Elementwise product.

        >>> import flopgrad as fg
        >>> fg.tensor([1.0, 2.0]).mul(fg.tensor([3.0, 4.0])).tolist()
        [3.0, 8.0]
        """
        return self * o

    def div(self, o: Operand, *, rounding_mode: str | None = None) -> Tensor:
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

    def floor_divide(self, o: Operand) -> Tensor:
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

    floor = _unary("floor", O.FLOOR, """Round down (zero gradient, as in PyTorch).

        >>> import flopgrad as fg
        >>> fg.tensor([-1.5, 1.5]).floor().tolist()
        [-2.0, 1.0]
        """)

    ceil = _unary("ceil", O.CEIL, """Round up (zero gradient).

        >>> import flopgrad as fg
        >>> fg.tensor([-1.5, 1.5]).ceil().tolist()
        [-1.0, 2.0]
        """)

    trunc = _unary("trunc", O.TRUNC, """Round towards zero (zero gradient).

        >>> import flopgrad as fg
        >>> fg.tensor([-1.5, 1.5]).trunc().tolist()
        [-1.0, 1.0]
        """)

    def round(self, decimals: int = 0) -> Tensor:
        """Round half to even, to `decimals` places (zero gradient).

        >>> import flopgrad as fg
        >>> fg.tensor([0.5, 1.5, 2.5]).round().tolist()
        [0.0, 2.0, 2.0]
        >>> fg.tensor([2.25], dtype="float64").round(1).tolist()
        [2.2]
        """
        return apply(O.ROUND, (self,), (int(decimals),))

    def pow(self, o: Operand) -> Tensor:
        """Elementwise power (scalar or tensor exponent).

        >>> import flopgrad as fg
        >>> fg.tensor([2.0, 3.0]).pow(2).tolist()
        [4.0, 9.0]
        """
        return self ** o

    def neg(self) -> Tensor:
        """-self.

        >>> import flopgrad as fg
        >>> fg.tensor([1.0, -2.0]).neg().tolist()
        [-1.0, 2.0]
        """
        return -self

    exp = _unary("exp", O.EXP, """e**x.

        >>> import flopgrad as fg
        >>> fg.tensor([0.0]).exp().item()
        1.0
        """)

    log = _unary("log", O.LOG, """Natural logarithm (log(0) = -inf, log(x<0) = nan, as in PyTorch).

        >>> import flopgrad as fg
        >>> fg.tensor([1.0]).log().item()
        0.0
        """)

    log1p = _unary("log1p", O.LOG1P, """log(1 + x), accurate near 0.

        >>> import flopgrad as fg
        >>> fg.tensor([0.0]).log1p().item()
        0.0
        """)

    sqrt = _unary("sqrt", O.SQRT, """Square root.

        >>> import flopgrad as fg
        >>> fg.tensor([4.0, 9.0]).sqrt().tolist()
        [2.0, 3.0]
        """)

    rsqrt = _unary("rsqrt", O.RSQRT, """1 / sqrt(x).

        >>> import flopgrad as fg
        >>> fg.tensor([4.0]).rsqrt().item()
        0.5
        """)

    abs = _unary("abs", O.ABS, """|x| (gradient 0 at 0, as in PyTorch).

        >>> import flopgrad as fg
        >>> fg.tensor([-1.5, 2.0]).abs().tolist()
        [1.5, 2.0]
        """)

    sign = _unary("sign", O.SIGN, """-1, 0 or 1 (no gradient).

        >>> import flopgrad as fg
        >>> fg.tensor([-2.0, 0.0, 3.0]).sign().tolist()
        [-1.0, 0.0, 1.0]
        """)

    sin = _unary("sin", O.SIN, """Sine.

        >>> import flopgrad as fg
        >>> fg.tensor([0.0]).sin().item()
        0.0
        """)

    cos = _unary("cos", O.COS, """Cosine.

        >>> import flopgrad as fg
        >>> fg.tensor([0.0]).cos().item()
        1.0
        """)

    tanh = _unary("tanh", O.TANH, """Hyperbolic tangent.

        >>> import flopgrad as fg
        >>> fg.tensor([0.0]).tanh().item()
        0.0
        """)

    sigmoid = _unary("sigmoid", O.SIGMOID, """1 / (1 + exp(-x)).

        >>> import flopgrad as fg
        >>> fg.tensor([0.0]).sigmoid().item()
        0.5
        """)

    relu = _unary("relu", O.RELU, """max(x, 0).

        >>> import flopgrad as fg
        >>> fg.tensor([-1.0, 2.0]).relu().tolist()
        [0.0, 2.0]
        """)

    erf = _unary("erf", O.ERF, """The error function.

        >>> import flopgrad as fg
        >>> fg.tensor([0.0]).erf().item()
        0.0
        """)

    def square(self) -> Tensor:
        """x ** 2.

        >>> import flopgrad as fg
        >>> fg.tensor([-3.0]).square().item()
        9.0
        """
        return apply(O.POW_SCALAR, (self,), (2,))

    def clamp(self, min: Operand | None = None, max: Operand | None = None) -> Tensor:
        """Clip into [min, max]; the gradient is 1 inside (bounds included), 0 outside.

        >>> import flopgrad as fg
        >>> fg.tensor([-2.0, 0.5, 3.0]).clamp(0, 1).tolist()
        [0.0, 0.5, 1.0]
        """
        if isinstance(min, TensorBase) or isinstance(max, TensorBase):
            return apply(O.CLAMP_T, (self, min, max))
        if min is None and max is None:
            raise ValueError("clamp: give at least one of min and max")
        return apply(O.CLAMP, (self,), (min, max))

    clip = clamp

    def maximum(self, o: Operand) -> Tensor:
        """Elementwise max (ties split the gradient evenly, as in PyTorch).

        >>> import flopgrad as fg
        >>> fg.tensor([1.0, 4.0]).maximum(fg.tensor([3.0, 2.0])).tolist()
        [3.0, 4.0]
        """
        return maximum(self, o)

    def minimum(self, o: Operand) -> Tensor:
        """Elementwise min.

        >>> import flopgrad as fg
        >>> fg.tensor([1.0, 4.0]).minimum(fg.tensor([3.0, 2.0])).tolist()
        [1.0, 2.0]
        """
        return minimum(self, o)

    def masked_fill(self, mask: Operand, value: Operand) -> Tensor:
        """Replace entries where `mask` is True by `value`.

        >>> import flopgrad as fg
        >>> x = fg.tensor([1.0, 2.0, 3.0])
        >>> x.masked_fill(x > 1.5, 0.0).tolist()
        [1.0, 0.0, 0.0]
        """
        if isinstance(value, TensorBase) and value.ndim != 0:
            raise ValueError(f"masked_fill: the value must be a number or a 0-d tensor, got "
                             f"shape {value.shape}")
        if isinstance(value, complex) and self._data.dtype.kind != "c":
            raise TypeError(f"masked_fill: a complex value cannot fill a {self.dtype} tensor")
        return where(mask, value, self)

    def tril(self, diagonal: int = 0) -> Tensor:
        """The lower triangle of the last two dims (from `diagonal` on), zeros above.

        >>> import flopgrad as fg
        >>> fg.ones(2, 3).tril().tolist()
        [[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]]
        """
        return self._triangle(diagonal, "tril")

    def triu(self, diagonal: int = 0) -> Tensor:
        """The upper triangle of the last two dims (from `diagonal` on), zeros below.

        >>> import flopgrad as fg
        >>> fg.ones(2, 3).triu(1).tolist()
        [[0.0, 1.0, 1.0], [0.0, 0.0, 1.0]]
        """
        return self._triangle(diagonal, "triu")

    def _triangle(self, diagonal: int, name: str) -> Tensor:
        if self.ndim < 2:
            raise ValueError(f"{name}: the tensor needs at least 2 dims, got shape {self.shape}")
        rows, cols = self.shape[-2:]
        keep = np.tri(rows, cols, diagonal, dtype=bool)
        if name == "triu":
            keep = ~np.tri(rows, cols, diagonal - 1, dtype=bool)
        return where(keep, self, self._data.dtype.type(0))

    def matmul(self, o: Operand) -> Tensor:
        """Matrix product (NumPy/PyTorch broadcasting rules).

        >>> import flopgrad as fg
        >>> fg.tensor([[1.0, 2.0]]).matmul(fg.tensor([[3.0], [4.0]])).tolist()
        [[11.0]]
        """
        return matmul(self, o)

    def where(self, cond: Operand, other: Operand) -> Tensor:
        """self where cond else other (PyTorch's Tensor.where).

        >>> import flopgrad as fg
        >>> x = fg.tensor([1.0, -2.0])
        >>> x.where(x > 0, 0.0).tolist()
        [1.0, 0.0]
        """
        return where(cond, self, other)
