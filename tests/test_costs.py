"""Every primitive's cost formula, checked by hand against docs/counting.md.

Each case runs one op through the public API inside `fg.profile()`, picks that primitive's
event from `bill.event_rows()` and compares (tensor FLOPs, other FLOPs, transcendentals,
bytes) with a value computed here from the written convention:

- elementwise: 1 FLOP per output element; exp/log/... also 1 transcendental each;
- reductions (sum, amax, ..., argmin): n - 1 per output element; cumsum: n - 1 per row;
- matmul: 2·m·k·n per (broadcast) batch element, as tensor FLOPs; einsum: 2·∏sizes with a
  contracted index (tensor), ∏sizes without (other);
- views cost nothing; copies (index, cat, pad, roll, unfold) move bytes only;
- bytes: each array input read once plus the output written once at its dtype's size,
  Python scalars free.

The cases are keyed by primitive name, and one test per entry of `fg.ops.REGISTRY` fails
when a primitive has fewer than two cases, so a new primitive cannot go untested.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

import flopgrad as fg
import flopgrad.nn.functional as F

F32, F64, I64, BOOL = 4, 8, 8, 1
RNG = np.random.default_rng(0)


# ---------------------------------------------------------------- helpers

def n(shape) -> int:
    return math.prod(shape)


def nbytes(*shapes, itemsize: int = F32) -> int:
    """Bytes of arrays of these shapes at one dtype size."""
    return sum(n(s) for s in shapes) * itemsize


def pos(*shape, dtype=np.float32, requires_grad: bool = False) -> fg.Tensor:
    """Values in [0.5, 2) (safe for log, sqrt, pow), made outside any profile."""
    t = fg.from_numpy(RNG.uniform(0.5, 2.0, shape).astype(dtype))
    return t.requires_grad_(requires_grad)


def real(*shape, dtype=np.float32, requires_grad: bool = False) -> fg.Tensor:
    t = fg.from_numpy(RNG.standard_normal(shape).astype(dtype))
    return t.requires_grad_(requires_grad)


def run(fn: Callable) -> fg.Bill:
    with fg.profile() as bill:
        fn()
    return bill


def the(bill: fg.Bill, primitive: str, phase: str = "forward") -> dict:
    """The single event of `primitive` in `phase`."""
    rows = [r for r in bill.event_rows() if r["primitive"] == primitive and r["phase"] == phase]
    seen = [(r["phase"], r["primitive"]) for r in bill.event_rows()]
    assert len(rows) == 1, f"expected one {phase} {primitive} event, got {seen}"
    return rows[0]


def cost(row: dict) -> tuple:
    return row["tensor_flops"], row["other_flops"], row["transcendentals"], row["bytes"]


# A case runs something and returns (event row, expected (tensor, other, trans, bytes)).
CASES: dict[str, list[tuple[str, Callable]]] = {}


def case(primitive: str, label: str):
    def register(fn):
        CASES.setdefault(primitive, []).append((label, fn))
        return fn
    return register


def params():
    return [pytest.param(fn, id=f"{prim}-{label}")
            for prim, entries in sorted(CASES.items()) for label, fn in entries]


# ---------------------------------------------------------------- elementwise binary

# primitive -> how to call it, transcendentals per output element
BINARY = {
    "add": (lambda a, b: a + b, 0),
    "sub": (lambda a, b: a - b, 0),
    "mul": (lambda a, b: a * b, 0),
    "div": (lambda a, b: a / b, 0),
    "maximum": (fg.maximum, 0),
    "minimum": (fg.minimum, 0),
    "pow": (lambda a, b: a ** b, 1),
}
COMPARE = {
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b, "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b,
}


def _binary_cases(name, fn, trans, out_item=None):
    def same(sa=(2, 3), dtype=np.float32, item=F32):
        a, b = pos(*sa, dtype=dtype), pos(*sa, dtype=dtype)
        row = the(run(lambda: fn(a, b)), name)
        k = n(sa)
        return row, (0, k, trans * k, nbytes(sa, sa, itemsize=item) + k * (out_item or item))

    def broadcast():  # (3, 1) with (1, 4): 12 outputs, each input read once at its own size
        a, b = pos(3, 1), pos(1, 4)
        row = the(run(lambda: fn(a, b)), name)
        return row, (0, 12, trans * 12, nbytes((3, 1), (1, 4)) + 12 * (out_item or F32))

    def scalar():  # a Python scalar operand is free (x ** 2.0 would be pow_scalar: 2.0 ** x)
        a = pos(4, 5)
        row = the(run(lambda: fn(2.0, a) if name == "pow" else fn(a, 2.0)), name)
        return row, (0, 20, trans * 20, 20 * F32 + 20 * (out_item or F32))

    case(name, "2x3-f32")(same)
    case(name, "4x5x6-f64")(lambda: same((4, 5, 6), np.float64, F64))
    case(name, "broadcast")(broadcast)
    case(name, "scalar")(scalar)


for _name, (_fn, _trans) in BINARY.items():
    _binary_cases(_name, _fn, _trans)
for _name, _fn in COMPARE.items():
    _binary_cases(_name, _fn, 0, out_item=BOOL)


@case("add", "mixed-f32-f64")
def _add_mixed():
    a, b = pos(3, 4, dtype=np.float32), pos(3, 4, dtype=np.float64)
    row = the(run(lambda: a + b), "add")
    return row, (0, 12, 0, 12 * F32 + 12 * F64 + 12 * F64)


@case("add", "f16")
def _add_f16():
    a, b = pos(8, dtype=np.float16), pos(8, dtype=np.float16)
    row = the(run(lambda: a + b), "add")
    return row, (0, 8, 0, 3 * 8 * 2)


@case("sub", "rsub-scalar")
def _rsub():
    a = pos(6)
    row = the(run(lambda: 1.0 - a), "sub")
    return row, (0, 6, 0, 2 * 6 * F32)


@case("div_round", "floor-3x4")
def _floor_divide():  # the division and the rounding: 2 FLOPs per element
    a, b = pos(3, 4), pos(3, 4)
    row = the(run(lambda: a // b), "div_round")
    return row, (0, 2 * 12, 0, 3 * 12 * F32)


@case("div_round", "trunc-broadcast-f64")
def _trunc_divide():
    a, b = pos(2, 5, dtype=np.float64), pos(5, dtype=np.float64)
    row = the(run(lambda: a.div(b, rounding_mode="trunc")), "div_round")
    return row, (0, 2 * 10, 0, (10 + 5 + 10) * F64)


@case("div_round", "int-by-scalar")
def _int_floor_divide():
    a = fg.arange(12).reshape(3, 4)
    row = the(run(lambda: fg.floor_divide(a, 5)), "div_round")
    return row, (0, 2 * 12, 0, 2 * 12 * I64)


def _logic_cases():
    def masks(*shape):
        return pos(*shape) > 1.0, pos(*shape) > 1.0

    for name, fn in (("logical_and", lambda a, b: a & b), ("logical_or", lambda a, b: a | b)):
        def both(shape, fn=fn, name=name):
            a, b = masks(*shape)
            row = the(run(lambda: fn(a, b)), name)
            return row, (0, n(shape), 0, 3 * n(shape) * BOOL)

        case(name, "7")(lambda both=both: both((7,)))
        case(name, "2x3x4")(lambda both=both: both((2, 3, 4)))

    def negate(shape):
        a, _ = masks(*shape)
        row = the(run(lambda: ~a), "logical_not")
        return row, (0, n(shape), 0, 2 * n(shape) * BOOL)

    case("logical_not", "7")(lambda: negate((7,)))
    case("logical_not", "2x3x4")(lambda: negate((2, 3, 4)))


_logic_cases()


# ---------------------------------------------------------------- elementwise unary

# primitive -> how to call it, transcendentals per element (each is also 1 other FLOP)
UNARY = {
    "neg": (lambda x: -x, 0), "abs": (lambda x: x.abs(), 0), "sign": (lambda x: x.sign(), 0),
    "relu": (F.relu, 0), "exp": (lambda x: x.exp(), 1), "log": (lambda x: x.log(), 1),
    "log1p": (lambda x: x.log1p(), 1), "sqrt": (lambda x: x.sqrt(), 1),
    "sin": (lambda x: x.sin(), 1), "cos": (lambda x: x.cos(), 1),
    "tanh": (lambda x: x.tanh(), 1), "sigmoid": (lambda x: x.sigmoid(), 1),
    "erf": (lambda x: x.erf(), 1),
    "clamp": (lambda x: x.clamp(0.7, 1.5), 0),
    "floor": (lambda x: x.floor(), 0), "ceil": (lambda x: x.ceil(), 0),
    "trunc": (lambda x: x.trunc(), 0), "round": (lambda x: x.round(1), 0),
}


def _unary_cases(name, fn, trans):
    def one(shape, dtype=np.float32, item=F32):
        x = pos(*shape, dtype=dtype)
        row = the(run(lambda: fn(x)), name)
        return row, (0, n(shape), trans * n(shape), 2 * n(shape) * item)

    case(name, "7-f32")(lambda: one((7,)))
    case(name, "2x3x4-f32")(lambda: one((2, 3, 4)))
    case(name, "5x2-f64")(lambda: one((5, 2), np.float64, F64))


for _name, (_fn, _trans) in UNARY.items():
    _unary_cases(_name, _fn, _trans)


@case("clamp", "min-only")
def _clamp_min():
    x = real(3, 3)
    row = the(run(lambda: x.clamp(min=0.0)), "clamp")
    return row, (0, 9, 0, 2 * 9 * F32)


# clamp with a tensor bound: one clamp, 1 FLOP per output element like the scalar clamp; the
# bounds are read at their own (broadcast) sizes
@case("clamp_tensor", "min-row-3x4")
def _clamp_tensor_min():
    x, lo = real(3, 4), real(4)
    row = the(run(lambda: x.clamp(lo)), "clamp")
    return row, (0, 12, 0, (12 + 4 + 12) * F32)


@case("clamp_tensor", "both-bounds-f64")
def _clamp_tensor_both():
    f64 = np.float64
    x, lo, hi = real(2, 5, dtype=f64), real(2, 1, dtype=f64), real(5, dtype=f64)
    row = the(run(lambda: x.clamp(lo, hi)), "clamp")
    return row, (0, 10, 0, (10 + 2 + 5 + 10) * F64)


# GELU is fused: per element, erf form 5 FLOPs (scale, erf, +1, *x, *0.5) with 1 erf; tanh
# form 8 (x*x, *a, +1, *x, *c, tanh, +1, *x then *0.5 counted as one scale) with 1 tanh.
# Its derivative: erf form 10 FLOPs with erf and exp, tanh form 14 with one tanh.
def _gelu(name, approximate, per, trans, dtype=np.float32, item=F32):
    def fn():
        x = pos(2, 3, dtype=dtype, requires_grad=True)
        bill = run(lambda: F.gelu(x, approximate).sum().backward())
        return the(bill, name, "forward" if name == "gelu" else "backward"), (
            0, per * 6, trans * 6, 2 * 6 * item)
    return fn


case("gelu", "erf-2x3")(_gelu("gelu", "none", 5, 1))
case("gelu", "tanh-2x3-f64")(_gelu("gelu", "tanh", 8, 1, np.float64, F64))
case("gelu_grad", "erf-2x3")(_gelu("gelu_grad", "none", 10, 2))
case("gelu_grad", "tanh-2x3-f64")(_gelu("gelu_grad", "tanh", 14, 1, np.float64, F64))

# softmax over rows of n: amax (n - 1), sub (n), exp (n), sum (n - 1), div (n) per row;
# log_softmax: the same up to the sum, then one log and a subtraction (n) per row.
def _softmax(name, shape, dim, dtype=np.float32, item=F32):
    def fn():
        x = pos(*shape, dtype=dtype)
        row = the(run(lambda: getattr(x, name)(dim)), name)
        k, rows = n(shape), n(shape) // shape[dim]
        if name == "softmax":
            return row, (0, 5 * k - 2 * rows, k, 2 * k * item)
        return row, (0, 5 * k - rows, k + rows, 2 * k * item)
    return fn


for _name in ("softmax", "log_softmax"):
    case(_name, "3x4-last")(_softmax(_name, (3, 4), -1))
    case(_name, "2x5x3-dim1-f64")(_softmax(_name, (2, 5, 3), 1, np.float64, F64))
    case(_name, "vector")(_softmax(_name, (6,), 0))

# relu's gradient is one primitive (PyTorch's threshold_backward): 1 comparison per element,
# reading the incoming gradient and relu's output, writing the result
def _relu_backward(shape, dtype=np.float32, item=F32):
    def fn():
        x = real(*shape, dtype=dtype, requires_grad=True)
        bill = run(lambda: F.relu(x).sum().backward())
        return the(bill, "relu_backward", "backward"), (0, n(shape), 0, 3 * n(shape) * item)
    return fn


case("relu_backward", "3x4")(_relu_backward((3, 4)))
case("relu_backward", "2x3x2-f64")(_relu_backward((2, 3, 2), np.float64, F64))

# in-place add_/sub_/mul_/div_: 1 FLOP per element of the updated tensor; bytes read both
# operands and write the target once; nothing new is allocated
def _inplace(name, shape_b, dtype=np.float32, item=F32):
    def fn():
        a, b = pos(3, 4, dtype=dtype), pos(*shape_b, dtype=dtype)
        before = a._data
        bill = run(lambda: getattr(a, name)(b))
        assert a._data is before and bill.peak_bytes == 0
        return the(bill, name), (0, 12, 0, (12 + n(shape_b) + 12) * item)
    return fn


for _name in ("add_", "sub_", "mul_", "div_"):
    case(_name, "3x4-with-3x4")(_inplace(_name, (3, 4)))
    case(_name, "3x4-with-row-4-f64")(_inplace(_name, (4,), np.float64, F64))

def _pow_scalar(expo, trans):
    def fn():
        x = pos(3, 4)
        row = the(run(lambda: x ** expo), "pow_scalar")
        return row, (0, 12, 12 * trans, 2 * 12 * F32)
    return fn


case("pow_scalar", "square-int")(_pow_scalar(2, 0))
case("pow_scalar", "cube-float-integer")(_pow_scalar(3.0, 0))  # 3.0 is an integer exponent
case("pow_scalar", "sqrt-0.5")(_pow_scalar(0.5, 1))
case("pow_scalar", "neg-1.5")(_pow_scalar(-1.5, 1))


@case("rsqrt", "rsqrt-f64")
def _rsqrt():
    x = pos(2, 5, dtype=np.float64)
    row = the(run(lambda: x.rsqrt()), "pow_scalar")  # x ** -0.5: a transcendental
    return row, (0, 10, 10, 2 * 10 * F64)


@case("rsqrt", "backward-cube-of-the-output")
def _rsqrt_backward():  # -0.5 * out ** 3 (an integer power: no transcendental), times g
    x = pos(3, 4, requires_grad=True)
    y = x.rsqrt()
    bill = run(lambda: y.backward(fg.ones(3, 4)))
    return the(bill, "pow_scalar", "backward"), (0, 12, 0, 2 * 12 * F32)


def _cast(src, dst, call):
    def fn():
        x = pos(3, 5, dtype=src)
        row = the(run(lambda: call(x)), "cast")
        # conversion is free of FLOPs but reads one dtype and writes the other
        return row, (0, 0, 0, 15 * (np.dtype(src).itemsize + np.dtype(dst).itemsize))
    return fn


case("cast", "f32-to-f64")(_cast(np.float32, np.float64, lambda x: x.double()))
case("cast", "f64-to-f32")(_cast(np.float64, np.float32, lambda x: x.float()))
case("cast", "f32-to-bool")(_cast(np.float32, np.bool_, lambda x: x.bool()))


@case("where", "three-tensors")
def _where3():
    c, a, b = pos(4, 3) > 1.0, pos(4, 3), pos(4, 3)
    row = the(run(lambda: fg.where(c, a, b)), "where")
    return row, (0, 0, 0, 12 * BOOL + 3 * 12 * F32)


@case("where", "scalar-fill")
def _where_scalar():
    c, a = pos(2, 6, dtype=np.float64) > 1.0, pos(2, 6, dtype=np.float64)
    row = the(run(lambda: a.masked_fill(c, 0.0)), "where")  # where(c, 0.0, a): 0.0 is free
    return row, (0, 0, 0, 12 * BOOL + 2 * 12 * F64)


@case("where", "broadcast-mask")
def _where_broadcast():
    c, a, b = pos(1, 5) > 1.0, pos(3, 5), pos(3, 1)
    row = the(run(lambda: fg.where(c, a, b)), "where")
    return row, (0, 0, 0, 5 * BOOL + 15 * F32 + 3 * F32 + 15 * F32)


# ---------------------------------------------------------------- reductions

# primitive -> call reducing over `axes` (None: all)
REDUCE = {
    "sum": lambda x, axes, keep: x.sum(axes, keepdim=keep),
    "amax": lambda x, axes, keep: x.amax(axes, keepdim=keep),
    "amin": lambda x, axes, keep: x.amin(axes, keepdim=keep),
    "prod": lambda x, axes, keep: x.prod(axes, keepdim=keep),
}


def _reduce_cases(name, fn):
    def red(shape, axes, keep=False, dtype=np.float32, item=F32):
        x = pos(*shape, dtype=dtype)
        row = the(run(lambda: fn(x, axes, keep)), name)
        dims = range(len(shape)) if axes is None else (axes if isinstance(axes, tuple)
                                                      else (axes,))
        width = n(shape[d] for d in dims)  # n entries reduced into each output
        outs = n(shape) // width
        return row, (0, (width - 1) * outs, 0, (n(shape) + outs) * item)

    case(name, "all-of-2x3x4")(lambda: red((2, 3, 4), None))
    case(name, "axis1-keepdim-f64")(lambda: red((2, 3, 4), 1, True, np.float64, F64))
    case(name, "axes02")(lambda: red((2, 3, 4), (0, 2)))
    case(name, "length-1-axis")(lambda: red((5, 1), 1))  # nothing to combine: 0 FLOPs


for _name, _fn in REDUCE.items():
    _reduce_cases(_name, _fn)


def _max_all(method, shape, dtype=np.float32, item=F32):  # max()/min(): n - 1 per tensor
    def fn():
        x = pos(*shape, dtype=dtype)
        row = the(run(lambda: getattr(x, method)()), "amax" if method == "max" else "amin")
        return row, (0, n(shape) - 1, 0, (n(shape) + 1) * item)
    return fn


for _key, _method in (("max_all", "max"), ("min_all", "min")):
    case(_key, "2x3x4")(_max_all(_method, (2, 3, 4)))
    case(_key, "7-f64")(_max_all(_method, (7,), np.float64, F64))


@case("sum", "bool-sums-as-int64")
def _sum_bool():
    m = pos(6, 4) > 1.0
    row = the(run(lambda: m.sum(1)), "sum")  # cast to int64 first, then 3 adds per row
    return row, (0, 6 * 3, 0, (24 + 6) * I64)


# sum_f32: a float16 tensor summed into float32, for mean and var of float16 (PyTorch's
# accumulation); an event named sum: n - 1 adds per output, the input read at 2 bytes, the
# float32 result written at 4.
def _sum_f32(shape, axes):
    def fn():
        x = pos(*shape, dtype=np.float16)
        row = the(run(lambda: x.mean(axes)), "sum")
        outs = n(shape) // n(shape[d] for d in (range(len(shape)) if axes is None else axes))
        return row, (0, n(shape) - outs, 0, n(shape) * 2 + outs * F32)
    return fn


case("sum_f32", "mean-of-all-2x3x4-f16")(_sum_f32((2, 3, 4), None))
case("sum_f32", "mean-axes02-f16")(_sum_f32((2, 3, 4), (0, 2)))


def _arg_cases(name, method):
    def along(shape, dim, dtype=np.float32, item=F32):
        x = pos(*shape, dtype=dtype)
        row = the(run(lambda: getattr(x, method)(dim)), name)
        outs = n(shape) // shape[dim]
        return row, (0, (shape[dim] - 1) * outs, 0, n(shape) * item + outs * I64)

    def flat():  # over the flattened tensor: a (free) reshape, then one reduction of 12
        x = pos(3, 4)
        row = the(run(lambda: getattr(x, method)()), name)
        return row, (0, 11, 0, 12 * F32 + I64)

    case(name, "dim1")(lambda: along((3, 5), 1))
    case(name, "dim0-f64")(lambda: along((4, 2, 3), 0, np.float64, F64))
    case(name, "flat")(flat)


_arg_cases("argmax", "argmax")
_arg_cases("argmin", "argmin")


def _logical(name, shape, dim):
    def fn():  # all/any: n - 1 ANDs/ORs per output, reading n bools, writing bools
        x = fg.tensor(np.arange(n(shape)).reshape(shape) % 3 > 0)
        row = the(run(lambda: getattr(x, name)(dim)), name)
        outs = 1 if dim is None else n(shape) // shape[dim]
        return row, (0, n(shape) - outs, 0, n(shape) + outs)
    return fn


for _name in ("all", "any"):
    case(_name, "3x4-dim1")(_logical(_name, (3, 4), 1))
    case(_name, "2x3x2-flat")(_logical(_name, (2, 3, 2), None))


def _cumsum(shape, dim, dtype=np.float32, item=F32):
    def fn():
        x = pos(*shape, dtype=dtype)
        row = the(run(lambda: x.cumsum(dim)), "cumsum")
        rows_ = n(shape) // shape[dim]
        return row, (0, (shape[dim] - 1) * rows_, 0, 2 * n(shape) * item)
    return fn


case("cumsum", "2x5x3-dim1")(_cumsum((2, 5, 3), 1))
case("cumsum", "2x5x3-dim0-f64")(_cumsum((2, 5, 3), 0, np.float64, F64))
case("cumsum", "vector")(_cumsum((9,), 0))


# ---------------------------------------------------------------- contractions

def _mm(sa, sb, out, k, dtype=np.float32, item=F32):
    def fn():
        a, b = pos(*sa, dtype=dtype), pos(*sb, dtype=dtype)
        row = the(run(lambda: a @ b), "matmul")
        assert tuple(row["out_shape"]) == out
        return row, (2 * n(out) * k, 0, 0, nbytes(sa, sb, out, itemsize=item))
    return fn


case("matmul", "2x3@3x4")(_mm((2, 3), (3, 4), (2, 4), 3))
case("matmul", "batched-5x2x3@5x3x4")(_mm((5, 2, 3), (5, 3, 4), (5, 2, 4), 3))
case("matmul", "broadcast-2x3@5x3x4")(_mm((2, 3), (5, 3, 4), (5, 2, 4), 3))
case("matmul", "broadcast-batch-f64")(
    _mm((2, 1, 4, 6), (3, 6, 5), (2, 3, 4, 5), 6, np.float64, F64))


@case("matmul", "matrix-vector")
def _mv():  # (3, 4) @ (4,) runs as (3, 4) @ (4, 1), reshapes free
    a, v = pos(3, 4), pos(4)
    row = the(run(lambda: a @ v), "matmul")
    return row, (2 * 3 * 4, 0, 0, nbytes((3, 4), (4, 1), (3, 1)))


def _linear(sx, sw, dtype=np.float32, item=F32):
    def fn():  # F.linear without bias is one primitive (key "linear"), billed as matmul
        x, w = pos(*sx, dtype=dtype), pos(*sw, dtype=dtype)
        row = the(run(lambda: F.linear(x, w)), "matmul")
        out = sx[:-1] + (sw[0],)
        assert tuple(row["out_shape"]) == out
        return row, (2 * n(out) * sx[-1], 0, 0, nbytes(sx, sw, out, itemsize=item))
    return fn


case("linear", "2x3-by-4x3")(_linear((2, 3), (4, 3)))
case("linear", "tokens-2x5x3-by-4x3-f64")(_linear((2, 5, 3), (4, 3), np.float64, F64))
case("linear", "vector-3-by-4x3")(_linear((3,), (4, 3)))


@case("linear", "with-bias-2x5x3-by-4x3")
def _linear_bias():  # the bias add is in the same event: 1 other FLOP per output element
    x, w, b = pos(2, 5, 3), pos(4, 3), pos(4)
    row = the(run(lambda: F.linear(x, w, b)), "matmul")
    return row, (2 * 40 * 3, 40, 0, nbytes((2, 5, 3), (4, 3), (4,), (2, 5, 4)))

def _einsum(spec, shapes, tensor, other, out_shape, dtype=np.float32, item=F32):
    def fn():
        ops = [pos(*s, dtype=dtype) for s in shapes]
        row = the(run(lambda: fg.einsum(spec, *ops)), "einsum")
        return row, (tensor, other, 0, nbytes(*shapes, out_shape, itemsize=item))
    return fn


# with a contracted index: 2 * product of every index size, as tensor FLOPs
case("einsum", "bij,bjk->bik")(_einsum("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)],
                                       2 * 2 * 3 * 4 * 5, 0, (2, 3, 5)))
case("einsum", "ij,j->i-f64")(_einsum("ij,j->i", [(3, 4), (4,)], 2 * 12, 0, (3,),
                                      np.float64, F64))
# without one (outer or elementwise products): product of every index size, other FLOPs
case("einsum", "outer-i,j->ij")(_einsum("i,j->ij", [(3,), (4,)], 0, 12, (3, 4)))
case("einsum", "elementwise-ij,ij->ij")(_einsum("ij,ij->ij", [(3, 4), (3, 4)], 0, 12, (3, 4)))
case("einsum", "batch-outer-bi,bj->bij")(_einsum("bi,bj->bij", [(2, 3), (2, 4)], 0, 24,
                                                 (2, 3, 4)))
# One operand: docs/counting.md's table has no row for it ("einsum with a contracted index"
# reads as 2 * product, tensor). flopgrad bills "ij->i" as the sum it is, n - 1 adds per
# output element (other), and a pure permutation "ij->ji" as 0. Those are what we assert
# (a reduction is not a contraction; FlopCounterMode would not count it either).
case("einsum1", "one-operand-sum-ij->i")(_einsum("ij->i", [(3, 4)], 0, 3 * 3, (3,)))
case("einsum1", "one-operand-permute-ij->ji")(_einsum("ij->ji", [(3, 4)], 0, 0, (4, 3)))


@case("einsum", "three-operands-two-events")
def _einsum3():
    a, b, c = pos(2, 3), pos(3, 4), pos(4, 5)
    bill = run(lambda: fg.einsum("ij,jk,kl->il", a, b, c))
    rows = [r for r in bill.event_rows() if r["primitive"] == "einsum"]
    assert [r["out_shape"] for r in rows] == [[2, 4], [2, 5]]
    got = {**rows[0], "tensor_flops": sum(r["tensor_flops"] for r in rows),
           "bytes": sum(r["bytes"] for r in rows)}
    return got, (2 * 2 * 3 * 4 + 2 * 2 * 4 * 5, 0, 0,
                 nbytes((2, 3), (3, 4), (2, 4)) + nbytes((2, 4), (4, 5), (2, 5)))


# ---------------------------------------------------------------- views (0 FLOPs, 0 bytes)

def _view(name, make, call, dtype=np.float32):
    def fn():
        x = make(dtype)
        row = the(run(lambda: call(x)), name)
        return row, (0, 0, 0, 0)
    return fn


case("reshape", "2x6->3x4")(_view("reshape", lambda d: pos(2, 6, dtype=d),
                                  lambda x: x.reshape(3, 4)))
case("reshape", "unsqueeze-f64")(_view("reshape", lambda d: pos(5, dtype=d),
                                       lambda x: x.unsqueeze(0), np.float64))
case("permute", "3d")(_view("permute", lambda d: pos(2, 3, 4, dtype=d),
                            lambda x: x.permute(2, 0, 1)))
case("permute", "T")(_view("permute", lambda d: pos(3, 4, dtype=d), lambda x: x.T))
case("expand", "1x4->3x4")(_view("expand", lambda d: pos(1, 4, dtype=d),
                                 lambda x: x.expand(3, 4)))
case("expand", "new-leading-dims-f64")(_view("expand", lambda d: pos(4, dtype=d),
                                             lambda x: x.broadcast_to((2, 3, 4)), np.float64))
case("flip", "dim0")(_view("flip", lambda d: pos(3, 4, dtype=d), lambda x: x.flip(0)))
case("flip", "dims01")(_view("flip", lambda d: pos(3, 4, 2, dtype=d), lambda x: x.flip(0, 1)))
case("getitem", "slice")(_view("getitem", lambda d: pos(6, 4, dtype=d), lambda x: x[1:4]))
case("getitem", "int-and-step")(_view("getitem", lambda d: pos(6, 4, dtype=d),
                                      lambda x: x[2, ::2]))
case("getitem", "ellipsis-none")(_view("getitem", lambda d: pos(2, 3, dtype=d),
                                       lambda x: x[..., None]))


@case("reshape", "copy-of-transposed")
def _reshape_copy():  # a reshape that has to copy is billed as the copy it is
    x = pos(3, 4, dtype=np.float64)
    bill = run(lambda: x.T.reshape(12))
    return the(bill, "reshape"), (0, 0, 0, 2 * 12 * F64)


# ---------------------------------------------------------------- copies (bytes only)

@case("roll", "dim0")
def _roll():
    x = pos(5, 3)
    return the(run(lambda: x.roll(2, 0)), "roll"), (0, 0, 0, 2 * 15 * F32)


@case("roll", "two-dims-f64")
def _roll2():
    x = pos(2, 3, 4, dtype=np.float64)
    return the(run(lambda: x.roll((1, -1), (0, 2))), "roll"), (0, 0, 0, 2 * 24 * F64)


# The integer index arrays are parameters, not inputs: only the values read and written
# are billed.
@case("index", "int-list")
def _index_list():
    x = pos(5, 4)
    row = the(run(lambda: x[[0, 2, 2]]), "index")
    return row, (0, 0, 0, nbytes((5, 4), (3, 4)))


@case("index", "bool-mask-f64")
def _index_mask():
    x = pos(6, dtype=np.float64)
    mask = fg.tensor(np.array([True, False, True, True, False, False]))
    row = the(run(lambda: x[mask]), "index")
    return row, (0, 0, 0, (6 + 3) * F64)


@case("index", "gather")
def _gather():
    x = pos(3, 5)
    idx = np.array([[0, 4], [1, 1], [2, 3]])
    row = the(run(lambda: x.gather(1, idx)), "index")
    return row, (0, 0, 0, nbytes((3, 5), (3, 2)))


@case("cat", "dim1")
def _cat():
    a, b = pos(2, 3), pos(2, 5)
    return the(run(lambda: fg.cat([a, b], 1)), "cat"), (0, 0, 0, nbytes((2, 3), (2, 5), (2, 8)))


@case("cat", "three-f64-dim0")
def _cat3():
    a, b, c = (pos(k, 4, dtype=np.float64) for k in (1, 2, 3))
    row = the(run(lambda: fg.cat([a, b, c], 0)), "cat")
    return row, (0, 0, 0, (4 + 8 + 12 + 24) * F64)


@case("cat", "stack")
def _stack():  # unsqueezes are views; one cat
    a, b = pos(3), pos(3)
    return the(run(lambda: fg.stack([a, b])), "cat"), (0, 0, 0, (3 + 3 + 6) * F32)


@case("pad", "last-dim")
def _pad():
    x = pos(2, 3)
    return the(run(lambda: F.pad(x, (1, 2))), "pad"), (0, 0, 0, nbytes((2, 3), (2, 6)))


@case("pad", "two-dims-f64")
def _pad2():
    x = pos(1, 2, 3, 3, dtype=np.float64)
    row = the(run(lambda: F.pad(x, (1, 1, 2, 0), value=-1.0)), "pad")
    return row, (0, 0, 0, (18 + 2 * 5 * 5) * F64)


@case("unfold", "pool-2x2")
def _unfold_pool():
    x = pos(1, 2, 4, 4)
    row = the(run(lambda: F.avg_pool2d(x, 2)), "unfold")
    assert row["out_shape"] == [1, 2, 2, 2, 2, 2]
    return row, (0, 0, 0, nbytes((1, 2, 4, 4), (1, 2, 2, 2, 2, 2)))


@case("unfold", "conv-stride2-dilation2-f64")
def _unfold_conv():
    x, w = pos(2, 3, 9, 9, dtype=np.float64), pos(4, 3, 3, 3, dtype=np.float64)
    # span 5, stride 2 over 9: 3 positions
    row = the(run(lambda: F.conv2d(x, w, stride=2, dilation=2)), "unfold")
    out = (2, 3, 3, 3, 3, 3)
    assert tuple(row["out_shape"]) == out
    return row, (0, 0, 0, nbytes((2, 3, 9, 9), out, itemsize=F64))


# ---------------------------------------------------------------- gradient-only primitives

@case("index_put", "scatter-add")
def _scatter_add():  # repeated indices accumulate: 1 add per value
    x, src = pos(4, 3), pos(2, 3)
    idx = np.array([[0, 0, 3], [0, 2, 3]])
    row = the(run(lambda: fg.scatter_add(x, 0, idx, src)), "index_put")
    return row, (0, 6, 0, nbytes((2, 3), (4, 3)))


@case("index_put", "grad-of-int-index")
def _index_put_grad():
    x = pos(5, 4, requires_grad=True)
    bill = run(lambda: x[[0, 2, 2]].sum().backward())
    return the(bill, "index_put", "backward"), (0, 3 * 4, 0, nbytes((3, 4), (5, 4)))


# Gradient of *basic* indexing: the slice is written into zeros, nothing accumulates, so
# flopgrad bills 0 FLOPs (docs/counting.md's table says "1 add per value" for index_put
# without distinguishing; the parenthesis "repeated indices accumulate" only applies to
# integer-array indexing).
@case("index_put", "grad-of-slice")
def _index_put_slice():
    x = pos(6, 4, dtype=np.float64, requires_grad=True)
    bill = run(lambda: x[1:3].sum().backward())
    return the(bill, "index_put", "backward"), (0, 0, 0, nbytes((2, 4), (6, 4), itemsize=F64))


@case("fold", "grad-of-pool")
def _fold_pool():  # 1 add per window element
    x = pos(1, 2, 4, 4, requires_grad=True)
    bill = run(lambda: F.avg_pool2d(x, 2).sum().backward())
    cols = (1, 2, 2, 2, 2, 2)
    return the(bill, "fold", "backward"), (0, n(cols), 0, nbytes(cols, (1, 2, 4, 4)))


@case("fold", "grad-of-conv-f64")
def _fold_conv():
    x = pos(2, 3, 6, 6, dtype=np.float64, requires_grad=True)
    w = pos(4, 3, 3, 3, dtype=np.float64)
    bill = run(lambda: F.conv2d(x, w, padding=1, stride=2).sum().backward())
    cols = (2, 3, 3, 3, 3, 3)  # padded 8x8, 3x3 windows, stride 2: 3x3 positions
    return the(bill, "fold", "backward"), (0, n(cols), 0,
                                           nbytes(cols, (2, 3, 8, 8), itemsize=F64))


@case("prod_others", "rows")
def _prod_others():  # 3 per element
    x = pos(3, 4, requires_grad=True)
    bill = run(lambda: x.prod(1).sum().backward())
    return the(bill, "prod_others", "backward"), (0, 3 * 12, 0, 2 * 12 * F32)


@case("prod_others", "all-f64")
def _prod_others_all():
    x = pos(2, 5, dtype=np.float64, requires_grad=True)
    bill = run(lambda: x.prod().backward())
    return the(bill, "prod_others", "backward"), (0, 3 * 10, 0, 2 * 10 * F64)


def _layer_norm(shape, n_dims, affine, dtype=np.float32, item=F32):
    def fn():  # two means, sub, square, + eps and rsqrt per row, normalise, scale, shift
        x = pos(*shape, dtype=dtype)
        norm = shape[len(shape) - n_dims:]
        w = pos(*norm, dtype=dtype) if affine else None
        b = pos(*norm, dtype=dtype) if affine else None
        row = the(run(lambda: F.layer_norm(x, norm, w, b)), "layer_norm")
        k, d = n(shape), n(norm)
        rows = k // d
        flops = 5 * k + 2 * rows + (2 * k if affine else 0)
        params = 2 * d if affine else 0
        return row, (0, flops, rows, (2 * k + params) * item)
    return fn


case("layer_norm", "4x6-affine")(_layer_norm((4, 6), 1, True))
case("layer_norm", "2x3x4-last-two-f64")(_layer_norm((2, 3, 4), 2, False, np.float64, F64))


# layer_norm's input gradient (its backward when no graph of the gradient is built): the
# statistics and xhat as layer_norm without affine (5 per element, 2 per row), then g * w
# (where there is a weight), two means, two products and two subtractions, the scale by rstd.
def _layer_norm_dx(shape, n_dims, affine, dtype=np.float32, item=F32):
    def fn():
        x = pos(*shape, dtype=dtype, requires_grad=True)
        norm = shape[len(shape) - n_dims:]
        w = pos(*norm, dtype=dtype) if affine else None
        row = the(run(lambda: F.layer_norm(x, norm, w).sum().backward()), "layer_norm_dx",
                  "backward")
        k, d = n(shape), n(norm)
        flops = 5 * k + 2 * (k // d) + (8 if affine else 7) * k
        return row, (0, flops, k // d, (3 * k + (d if affine else 0)) * item)
    return fn


case("layer_norm_dx", "4x6-affine")(_layer_norm_dx((4, 6), 1, True))
case("layer_norm_dx", "2x3x4-last-two-f64")(
    _layer_norm_dx((2, 3, 4), 2, False, np.float64, F64))


# cross_entropy (class indices, fused): log_softmax's 5n - N, then the pick and reduction:
# sum over N rows (N - 1), / N and negate for "mean"; N - 1 and negate for "sum"; N negations
# for "none". Transcendentals: n exps and N logs. Bytes: the logits read, the loss written.
def _cross_entropy(shape, reduction, dtype=np.float32, item=F32):
    def fn():
        x = real(*shape, dtype=dtype)
        y = np.arange(shape[0]) % shape[1]
        row = the(run(lambda: F.cross_entropy(x, y, reduction=reduction)), "cross_entropy")
        k, rows = n(shape), shape[0]
        pick = {"mean": rows + 1, "sum": rows, "none": rows}[reduction]
        out = rows if reduction == "none" else 1
        return row, (0, 5 * k - rows + pick, k + rows, (k + out) * item)
    return fn


case("cross_entropy", "4x3-mean")(_cross_entropy((4, 3), "mean"))
case("cross_entropy", "5x7-sum-f64")(_cross_entropy((5, 7), "sum", np.float64, F64))
case("cross_entropy", "2x6-none")(_cross_entropy((2, 6), "none"))

# ---------------------------------------------------------------- the tests

@pytest.mark.parametrize("name", sorted(fg.ops.REGISTRY))
def test_every_registered_primitive_has_cost_cases(name):
    assert len(CASES.get(name, ())) >= 2, (
        f"primitive {name!r} has no hand-computed cost cases in tests/test_costs.py; add a "
        "few shapes (with the value from docs/counting.md)")


def test_no_cases_for_unknown_primitives():
    assert set(CASES) <= set(fg.ops.REGISTRY)


@pytest.mark.parametrize("make", params())
def test_cost_formula(make):
    row, expected = make()
    got = cost(row)
    assert got == expected, (
        f"{row['primitive']} {row['in_shapes']} -> {row['out_shape']}: "
        f"(tensor, other, transcendentals, bytes) = {got}, by hand {expected}")


def test_views_move_nothing_even_in_backward():
    x = pos(2, 3, 4, requires_grad=True)
    with fg.profile() as bill:
        x.permute(2, 0, 1).reshape(4, 6)[1:3].flip(0).sum().backward()
    for r in bill.event_rows():
        if r["primitive"] in ("permute", "reshape", "expand", "flip", "getitem"):
            assert (r["tensor_flops"], r["other_flops"], r["bytes"]) == (0, 0, 0), r


def test_transcendentals_are_also_other_flops():
    x = pos(4, 6)
    with fg.profile() as bill:
        x.exp().log().sqrt().tanh() ** 0.5
    assert bill.transcendentals() == 5 * 24
    assert bill.flops(kind="other") == 5 * 24
    assert bill.flops(kind="tensor") == 0


def test_fused_softmax_bills_what_its_composite_would():
    r, k = 3, 7
    x = real(r, k)
    with fg.profile() as fused:
        x.softmax(-1)
    assert [e["primitive"] for e in fused.event_rows()] == ["softmax"]
    with fg.profile() as composite:
        e = (x - x.amax(-1, keepdim=True)).exp()
        e / e.sum(-1, keepdim=True)
    # amax (k - 1), sub (k), exp (k, k transcendentals), sum (k - 1), div (k) per row
    assert fused.flops() == composite.flops() == r * (5 * k - 2)
    assert fused.transcendentals() == composite.transcendentals() == r * k


def test_fused_layer_norm_bills_what_its_composite_would():
    r, d = 4, 6
    x, w, b = real(r, d), real(d), real(d)
    with fg.profile() as bill:
        F.layer_norm(x, (d,), w, b)
    assert [e["primitive"] for e in bill.event_rows()] == ["layer_norm"]
    with fg.profile() as composite:
        centered = x - x.mean(-1, keepdim=True)
        centered * ((centered * centered).mean(-1, keepdim=True) + 1e-5).rsqrt() * w + b
    # two means (d - 1 adds and a divide per row, each), the subtraction, the square, + eps,
    # the rsqrt (1 per row, a transcendental), normalise, scale and shift (d each)
    per_row = 2 * d + d + d + 1 + 1 + 3 * d
    assert bill.flops() == composite.flops() == r * per_row
    assert bill.transcendentals() == composite.transcendentals() == r
    assert bill.flops(kind="tensor") == 0


@pytest.mark.parametrize("affine", [True, False])
def test_fused_layer_norm_backward_bills_what_its_composite_would(affine):
    r, d = 4, 6
    x, g = real(r, d, requires_grad=True), real(r, d)
    w = real(d) if affine else None
    y = F.layer_norm(x, (d,), w)
    with fg.profile() as bill:
        y.backward(g)
    dx = [e for e in bill.event_rows() if e["slot"] == 0]
    assert [e["primitive"] for e in dx] == ["layer_norm_dx"]
    with fg.profile() as composite:
        centered = x.detach() - x.detach().mean(-1, keepdim=True)
        rstd = ((centered * centered).mean(-1, keepdim=True) + 1e-5).rsqrt()
        xhat = centered * rstd
        gw = g * w if affine else g
        rstd * (gw - gw.mean(-1, keepdim=True) - xhat * (gw * xhat).mean(-1, keepdim=True))
    assert bill.flops() == composite.flops()
    assert bill.transcendentals() == composite.transcendentals() == r


@pytest.mark.parametrize("groups,dilation,stride,padding", [(1, 1, 1, 0), (2, 1, 2, 1),
                                                            (3, 2, 1, 2)])
def test_conv2d_is_pad_unfold_one_matmul_and_bias(groups, dilation, stride, padding):
    N, C, H, W, O, k = 2, 6, 7, 7, 12, 3
    x, w, b = real(N, C, H, W), real(O, C // groups, k, k), real(O)
    with fg.profile() as bill:
        y = F.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)
    _, _, Ho, Wo = y.shape
    span = dilation * (k - 1) + 1
    assert Ho == (H + 2 * padding - span) // stride + 1
    mm = the(bill, "matmul")
    K = (C // groups) * k * k
    assert mm["in_shapes"] == [[groups, O // groups, K], [N, groups, K, Ho * Wo]]
    assert bill.flops(kind="tensor") == 2 * N * O * Ho * Wo * (C // groups) * k * k
    assert bill.macs() == bill.flops(kind="tensor") // 2
    assert the(bill, "add")["other_flops"] == N * O * Ho * Wo  # the bias add
    prims = [e["primitive"] for e in bill.event_rows() if e["bytes"] or e["tensor_flops"]]
    assert prims == (["pad"] if padding else []) + ["unfold", "matmul", "add"]


def test_float64_matmul_bytes():
    a, b = pos(100, 50, dtype=np.float64), pos(50, 20, dtype=np.float64)
    with fg.profile() as bill:
        a @ b
    assert bill.bytes() == (100 * 50 + 50 * 20 + 100 * 20) * 8
    assert bill.flops() == bill.flops(kind="tensor") == 2 * 100 * 50 * 20


def test_backward_is_the_sum_of_what_the_vjps_ran():
    # y = sum(exp(x) * w): backward runs expand (free), mul by w and mul by exp(x) (saved)
    x, w = pos(3, 4, requires_grad=True), pos(3, 4, requires_grad=True)
    with fg.profile() as bill:
        (x.exp() * w).sum().backward()
    back = [(r["primitive"], r["op"]) for r in bill.event_rows() if r["phase"] == "backward"]
    assert sorted(back) == sorted([("expand", "sum"), ("mul", "mul"), ("mul", "mul"),
                                   ("mul", "exp")])
    assert bill.flops("backward") == 3 * 12
    assert bill.transcendentals("backward") == 0  # exp's vjp reuses the saved output


# An empty reduction (n = 0 entries into each output) costs max(n - 1, 0) = 0, never -1.
@pytest.mark.parametrize("reduce", [
    pytest.param(lambda x: x.sum(1), id="sum"),
    pytest.param(lambda x: x.prod(1), id="prod"),
    pytest.param(lambda x: fg.einsum("ij->i", x), id="einsum-one-operand"),
])
def test_empty_reduction_bills_no_negative_flops(reduce):
    x = fg.zeros(3, 0)
    with fg.profile() as bill:
        reduce(x)
    (row,) = bill.event_rows()
    assert row["other_flops"] == 0
