"""Op, the declaration of a primitive, and prim(), which enters one in the registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from flopgrad import costs
from flopgrad import dispatch as D
from flopgrad.backend import zeros_like

REGISTRY: dict[str, Op] = {}


@dataclass(eq=False)
class Op:
    """A primitive: its forward, derivative rules, saved values and cost formula.

    `name` is what the bill calls it; `key` is its unique registry key (they differ where
    two primitives bill as one: F.linear's "linear" is billed as "matmul").
    """

    name: str
    forward: Callable
    vjp: Callable | None = None
    jvp: Callable | None = None
    uses: tuple = ()
    cost: Callable = field(default=costs.free)
    view: bool = False  # output aliases the input: no bytes moved, no FLOPs
    inplace: bool = False  # writes its result into input 0 (no graph; optimizers, add_)
    unknown_cost: bool = False  # a user Function that declared no cost
    meta: Callable | None = None  # shape rule on meta arrays (flopgrad.shapes)
    key: str = ""

    def __post_init__(self) -> None:
        self.saves = any(self.uses)  # whether backward needs any value at all
        self.key = self.key or self.name

    def __repr__(self) -> str:
        return f"Op({self.name})"


def prim(key: str, forward: Callable, billed_as: str | None = None, **kw) -> Op:
    """Declare a primitive under `key` (billed as `billed_as`, default the key) and enter it
    in the registry.

    >>> from flopgrad.ops import REGISTRY
    >>> REGISTRY["linear"].name, REGISTRY["linear"].key
    ('matmul', 'linear')
    """
    if key in REGISTRY:
        raise ValueError(f"primitive {key!r} is declared twice")
    op = REGISTRY[key] = Op(billed_as or key, forward, key=key, **kw)
    return op


def unary(key: str, forward: Callable, uses: tuple, deriv: Callable, cost: Callable,
          meta: Callable, **kw) -> Op:
    """Declare a one-input primitive whose vjp and jvp both multiply by its local derivative
    `deriv(node)` (a node or the primals: both have `.saved`, `.params` and `.out()`)."""
    return prim(key, forward, uses=(uses,), cost=cost, vjp=lambda n, g, i: g * deriv(n),
                jvp=lambda p, t: t[0] * deriv(p), meta=meta, **kw)


size = costs.size


def _call(op: Op, *args, params: tuple = ()):
    return D.apply(op, args, params)


def _tadd(*terms):
    """Sum of tangent terms, skipping the absent (zero) ones."""
    total = None
    for t in terms:
        if t is not None:
            total = t if total is None else total + t
    return total


def _zeros_like(x):
    data = D._data(x)
    return D.Tensor(zeros_like(data if hasattr(data, "dtype") else np.asarray(data)))
