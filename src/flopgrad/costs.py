"""The cost formulas: one named function per way a primitive is billed.

Each takes the output's shape, the inputs' shapes (a number is shape ()) and the op's
static params, and returns a `Cost`: tensor FLOPs (the contractions of matmul and einsum),
other FLOPs, and transcendental evaluations (exp, log, tanh, erf, sqrt, ...; counted
inside the other FLOPs too). Bytes are not here: the ledger counts them from the arrays.
The primitives in `flopgrad.ops` name these functions; `docs/counting.md` lists them
(a test checks that every billed primitive is there).

>>> from flopgrad import costs
>>> costs.matmul((4, 5), [(4, 3), (3, 5)], ())
Cost(tensor=120, other=0, transcendental=0)
>>> costs.softmax((2, 10), [(2, 10)], (1,))
Cost(tensor=0, other=96, transcendental=20)
"""

from __future__ import annotations

import math
from typing import NamedTuple

Shape = tuple[int, ...]


class Cost(NamedTuple):
    """What one op costs: tensor FLOPs, other FLOPs, transcendentals (within other)."""

    tensor: int = 0
    other: int = 0
    transcendental: int = 0


def size(shape) -> int:
    """Number of elements of a shape.

    >>> size((2, 3)), size(())
    (6, 1)
    """
    return math.prod(shape)


def free(out: Shape, ins: list, params: tuple) -> Cost:
    """0: views, copies and conversions move bytes only (where, cast, cat, pad, index, ...).

    >>> free((3,), [(3,)], ())
    Cost(tensor=0, other=0, transcendental=0)
    """
    return Cost()


def elementwise(out: Shape, ins: list, params: tuple) -> Cost:
    """1 per output element (add, mul, comparisons, relu, abs, clamp, rounding, ...).

    >>> elementwise((2, 3), [(2, 3), ()], ())
    Cost(tensor=0, other=6, transcendental=0)
    """
    return Cost(0, size(out), 0)


def transcendental(out: Shape, ins: list, params: tuple) -> Cost:
    """1 per output element, also 1 transcendental (exp, log, sqrt, tanh, sigmoid, erf, pow,
    rsqrt).

    >>> transcendental((4,), [(4,)], ())
    Cost(tensor=0, other=4, transcendental=4)
    """
    n = size(out)
    return Cost(0, n, n)


def div_round(out: Shape, ins: list, params: tuple) -> Cost:
    """2 per output element: the division and the rounding (div with a rounding_mode).

    >>> div_round((3,), [(3,), ()], ("floor",))
    Cost(tensor=0, other=6, transcendental=0)
    """
    return Cost(0, 2 * size(out), 0)


def scaled_add(out: Shape, ins: list, params: tuple) -> Cost:
    """1 per element for add_/sub_, 2 (a multiply-add) when alpha (params[0]) is not 1.

    >>> scaled_add((5,), [(5,), (5,)], (1,)), scaled_add((5,), [(5,), (5,)], (0.1,))
    (Cost(tensor=0, other=5, transcendental=0), Cost(tensor=0, other=10, transcendental=0))
    """
    return Cost(0, (1 if params[0] == 1 else 2) * size(out), 0)


def pow_scalar(out: Shape, ins: list, params: tuple) -> Cost:
    """x ** c: 1 per element, and a transcendental per element when c is not an integer.

    >>> pow_scalar((3,), [(3,)], (2,)), pow_scalar((3,), [(3,)], (0.5,))
    (Cost(tensor=0, other=3, transcendental=0), Cost(tensor=0, other=3, transcendental=3))
    """
    n = size(out)
    return Cost(0, n, 0 if float(params[0]).is_integer() else n)


def reduction(out: Shape, ins: list, params: tuple) -> Cost:
    """n inputs into m outputs: n - m (sum, amax, amin, prod, argmax, argmin, all, any).

    >>> reduction((2,), [(2, 5)], ((1,), False))
    Cost(tensor=0, other=8, transcendental=0)
    """
    return Cost(0, max(size(ins[0]) - size(out), 0), 0)


def cumsum(out: Shape, ins: list, params: tuple) -> Cost:
    """n - 1 per row of length n along axis params[0].

    >>> cumsum((2, 5), [(2, 5)], (1,))
    Cost(tensor=0, other=8, transcendental=0)
    """
    n = size(out)
    return Cost(0, n - n // max(out[params[0]], 1) if out else 0, 0)


def prod_others(out: Shape, ins: list, params: tuple) -> Cost:
    """3 per element: prod's gradient, the product of every other element (two scans and
    their product).

    >>> prod_others((4,), [(4,)], (None,))
    Cost(tensor=0, other=12, transcendental=0)
    """
    return Cost(0, 3 * size(out), 0)


def matmul(out: Shape, ins: list, params: tuple) -> Cost:
    """2·m·k·n per batch element of (..., m, k) @ (..., k, n), all tensor FLOPs.

    >>> matmul((8, 2, 5), [(8, 2, 3), (3, 5)], ())
    Cost(tensor=480, other=0, transcendental=0)
    """
    return Cost(2 * size(out) * ins[0][-1], 0, 0)


def linear(out: Shape, ins: list, params: tuple) -> Cost:
    """F.linear: matmul's 2·m·k·n (tensor), plus 1 per output element for a bias (other).

    >>> linear((4, 3), [(4, 2), (3, 2), (3,)], ())
    Cost(tensor=48, other=12, transcendental=0)
    """
    bias = size(out) if len(ins) == 3 else 0
    return Cost(2 * size(out) * ins[0][-1], bias, 0)


def _einsum_sizes(spec: str, in_shapes) -> dict:
    sizes = {}
    for sub, shape in zip(spec.split("->")[0].split(","), in_shapes, strict=True):
        for c, s in zip(sub, shape, strict=True):
            sizes[c] = s
    return sizes


def einsum(out: Shape, ins: list, params: tuple) -> Cost:
    """Two operands with a contracted index: 2 · the product of all index sizes (tensor);
    two without one (outer or elementwise products): that product (other); one operand: a
    reduction (product minus output size) or 0 for a pure permutation.

    >>> einsum((2, 4), [(2, 3), (3, 4)], ("ij,jk->ik",)), einsum((2,), [(2, 3)], ("ij->i",))
    (Cost(tensor=48, other=0, transcendental=0), Cost(tensor=0, other=4, transcendental=0))
    """
    spec = params[0]
    lhs, rhs = spec.split("->")
    everything = size(_einsum_sizes(spec, ins).values())
    contracted = set(lhs.replace(",", "")) - set(rhs)
    if len(ins) == 2 and contracted:
        return Cost(2 * everything, 0, 0)
    return Cost(0, everything if len(ins) == 2 else max(everything - size(out), 0), 0)


def _rows(out: Shape, axis: int) -> int:
    return size(out) // max(out[axis], 1) if out else 1


def softmax(out: Shape, ins: list, params: tuple) -> Cost:
    """5n - 2 per row of length n, n transcendentals: what amax (n - 1), sub, exp, sum
    (n - 1) and div would cost.

    >>> softmax((3, 4), [(3, 4)], (1,))
    Cost(tensor=0, other=54, transcendental=12)
    """
    n, rows = size(out), _rows(out, params[0])
    return Cost(0, 5 * n - 2 * rows, n)


def log_softmax(out: Shape, ins: list, params: tuple) -> Cost:
    """5n - 1 per row of length n, n + 1 transcendentals: amax, sub, exp, sum, one log and a
    subtraction.

    >>> log_softmax((3, 4), [(3, 4)], (1,))
    Cost(tensor=0, other=57, transcendental=15)
    """
    n, rows = size(out), _rows(out, params[0])
    return Cost(0, 5 * n - rows, n + rows)


def cross_entropy(out: Shape, ins: list, params: tuple) -> Cost:
    """(N, C) logits against class indices: log_softmax's 5·N·C - N, then N + 1 (mean: sum,
    divide, negate), N (sum) or N (none: negations); N·C + N transcendentals.

    >>> cross_entropy((), [(2, 3)], (None, "mean"))
    Cost(tensor=0, other=31, transcendental=8)
    """
    n_rows, n = ins[0][0], size(ins[0])
    pick = {"mean": n_rows + 1, "sum": n_rows, "none": n_rows}[params[1]]
    return Cost(0, 5 * n - n_rows + pick, n + n_rows)


def _norm_rows(out: Shape, n_dims: int) -> tuple[int, int]:
    n, d = size(out), size(out[len(out) - n_dims:])
    return n, n // max(d, 1)


def layer_norm(out: Shape, ins: list, params: tuple) -> Cost:
    """Per row of d entries 5d + 2 (two means, subtract, square, + eps, rsqrt, normalise),
    plus d each for the scale and the shift where given; 1 transcendental per row.

    >>> layer_norm((2, 4), [(2, 4), (4,), (4,)], (1, 1e-5))
    Cost(tensor=0, other=60, transcendental=2)
    """
    n, rows = _norm_rows(out, params[0])
    affine = (ins[1] != ()) + (ins[2] != ())
    return Cost(0, 5 * n + 2 * rows + affine * n, rows)


def layer_norm_dx(out: Shape, ins: list, params: tuple) -> Cost:
    """layer_norm's input gradient: the statistics and xhat (5d + 2 per row), then 8d (7d
    without a weight): g·w, two means, two products, two subtractions, the scale by rstd.

    >>> layer_norm_dx((2, 4), [(2, 4), (2, 4), (4,)], (1, 1e-5))
    Cost(tensor=0, other=108, transcendental=2)
    """
    n, rows = _norm_rows(out, params[0])
    scaled = ins[2] != ()
    return Cost(0, 5 * n + 2 * rows + (7 + scaled) * n, rows)


def gelu(out: Shape, ins: list, params: tuple) -> Cost:
    """5 per element with 1 transcendental (erf form); 8 with 1 (tanh form).

    >>> gelu((3,), [(3,)], ("none",)), gelu((3,), [(3,)], ("tanh",))
    (Cost(tensor=0, other=15, transcendental=3), Cost(tensor=0, other=24, transcendental=3))
    """
    n = size(out)
    return Cost(0, (8 if params[0] == "tanh" else 5) * n, n)


def gelu_grad(out: Shape, ins: list, params: tuple) -> Cost:
    """gelu's derivative: 10 per element with 2 transcendentals (erf form: erf and exp);
    14 with 1 (tanh form).

    >>> gelu_grad((3,), [(3,)], ("none",))
    Cost(tensor=0, other=30, transcendental=6)
    """
    n = size(out)
    return Cost(0, 14 * n, n) if params[0] == "tanh" else Cost(0, 10 * n, 2 * n)


def index_put(out: Shape, ins: list, params: tuple) -> Cost:
    """The gradient of indexing: 1 add per value for integer-array indexing (params[2]),
    0 for basic indexing (a slice's gradient is a copy).

    >>> index_put((5,), [(3,)], ((5,), None, True))
    Cost(tensor=0, other=3, transcendental=0)
    """
    return Cost(0, size(ins[0]) if params[2] else 0, 0)


def fold(out: Shape, ins: list, params: tuple) -> Cost:
    """The adjoint of unfold: 1 add per window element.

    >>> fold((1, 1, 3, 3), [(1, 1, 2, 2, 2, 2)], ())
    Cost(tensor=0, other=16, transcendental=0)
    """
    return Cost(0, size(ins[0]), 0)
