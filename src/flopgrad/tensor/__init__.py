"""Tensor, the user-facing array, and Parameter. Every op on a tensor delegates to a primitive
through dispatch.apply. The class is built from one base and three mixins, a module each:

- _base.TensorBase: the state (array, graph node, version counter), attributes, conversions,
  casts, Tensor._wrap and backward()
- arithmetic.ArithmeticMixin: operators, named elementwise ops, in-place updates
- reduce.ReductionMixin: reductions and the ops along one dim, behind @reduction
- shape.ShapeMixin: reshape, permute, expand, ..., indexing

functions.py holds the module-level functions (fg.cat, fg.where, ...), _dims.py the dim and
shape argument normalisers, and flopgrad/dtypes.py the dtypes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from flopgrad import dispatch
from flopgrad.dtypes import (
    DTYPES,
    as_dtype,
    bfloat16,
    bool_,
    float16,
    float32,
    float64,
    int32,
    int64,
)
from flopgrad.tensor import functions
from flopgrad.tensor._base import TensorBase
from flopgrad.tensor._dims import _shape_arg
from flopgrad.tensor.arithmetic import ArithmeticMixin
from flopgrad.tensor.functions import (
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
from flopgrad.tensor.reduce import MinMax, ReductionMixin
from flopgrad.tensor.shape import ShapeMixin

__all__ = [
    "DTYPES", "MinMax", "Parameter", "Tensor", "as_dtype", "bool_", "cat", "chunk", "concat",
    "concatenate", "einsum", "bfloat16", "float16", "float32", "float64", "floor_divide", "gather",
    "index_select", "int32", "int64", "matmul", "maximum", "minimum", "outer", "scatter_add",
    "split", "stack", "where",
    "_shape_arg", "_t",  # used by flopgrad.creation and flopgrad.nn
]


class Tensor(ArithmeticMixin, ReductionMixin, ShapeMixin, TensorBase):
    """An n-dimensional array that records the ops applied to it for differentiation.

    >>> import flopgrad as fg
    >>> x = fg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> (x * x).sum().backward()
    >>> x.grad
    tensor([2., 4., 6.])
    """

    __slots__ = ()


class Parameter(Tensor):
    """A tensor that is a model weight: requires grad by default, billed as dW in backward.

    >>> import flopgrad as fg
    >>> fg.nn.Parameter(fg.zeros(2)).requires_grad
    True
    """

    __slots__ = ()

    def __init__(self, data: Any = None, requires_grad: bool = True) -> None:
        if data is None:
            data = np.empty(0, dtype=np.float32)
        super().__init__(data._data if isinstance(data, Tensor) else data)
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _wrap(cls, data, node=None, version=None, tangent=None) -> Tensor:
        # what a Parameter's own methods make (p.detach(), p.to("meta")) is a plain Tensor
        return Tensor._wrap(data, node, version, tangent)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


# dispatch (below this package) and functions (which the mixins import before Tensor exists)
# build tensors: they get the class here
dispatch.Tensor = functions.Tensor = Tensor
dispatch.Parameter = Parameter
