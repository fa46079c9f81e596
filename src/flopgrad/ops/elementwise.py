"""Elementwise primitives: arithmetic, comparisons and logic, rounding, unary functions,
in-place updates, pow, clamp, cast and where."""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from flopgrad import costs as C
from flopgrad import kernels as K
from flopgrad import shapes as S
from flopgrad.ops._op import _call, _tadd, _zeros_like, prim, unary

ADD = prim(
    "add", K.in_torch_dtype(np.add), uses=((), ()), cost=C.elementwise,
    vjp=lambda n, g, i: g,
    jvp=lambda p, t: _tadd(t[0], t[1]),
    meta=S.binary,
)
SUB = prim(
    "sub", K.in_torch_dtype(np.subtract), uses=((), ()), cost=C.elementwise,
    vjp=lambda n, g, i: g if i == 0 else -g,
    jvp=lambda p, t: _tadd(t[0], None if t[1] is None else -t[1]),
    meta=S.binary,
)
MUL = prim(
    "mul", K.in_torch_dtype(np.multiply), uses=((1,), (0,)), cost=C.elementwise,
    vjp=lambda n, g, i: g * n.saved[1 - i],
    jvp=lambda p, t: _tadd(
        None if t[0] is None else t[0] * p.saved[1],
        None if t[1] is None else p.saved[0] * t[1],
    ),
    meta=S.binary,
)
def _div_jvp(p, t):
    # (ta - tb * out) / b, PyTorch's form: one division, and +-inf rather than inf - inf at b=0
    num = _tadd(t[0], None if t[1] is None else -(t[1] * p.out()))
    return None if num is None else num / p.saved[1]


DIV = prim(
    "div", K.in_torch_dtype(np.true_divide, true_divide=True), uses=((1,), (0, 1)),
    cost=C.elementwise,
    vjp=lambda n, g, i: g / n.saved[1] if i == 0 else -g * n.saved[0] / (n.saved[1] * n.saved[1]),
    jvp=_div_jvp,
    meta=S.true_divide,
)

def _zero_gradient(n, g, i):
    """d round(a / b) = 0 almost everywhere: PyTorch's gradient of div with a
    rounding_mode (and of floor, ceil, trunc, round) is zero."""
    return _zeros_like(g)


def _zero_tangent(p, t):
    return _zeros_like(p.out())


# division and rounding: 2 FLOPs per element
DIV_ROUND = prim("div_round", K.div_round, uses=((), ()), cost=C.div_round,
                 vjp=_zero_gradient, jvp=_zero_tangent, meta=S.binary_params)


def _rounding(name, fwd):
    """floor, ceil, trunc, round: 1 FLOP per element, zero gradient (as PyTorch's)."""
    return prim(name, fwd, uses=((),), cost=C.elementwise, vjp=_zero_gradient, jvp=_zero_tangent,
                meta=S.same)


FLOOR = _rounding("floor", K.on_floats(np.floor))
CEIL = _rounding("ceil", K.on_floats(np.ceil))
TRUNC = _rounding("trunc", K.on_floats(np.trunc))
ROUND = _rounding("round", K.on_floats(np.round))  # half to even, as PyTorch; params: decimals


def _pow_dbase(x, y):
    """d(x**y)/dx = y x**(y-1), exactly 0 where y == 0 (even at x = 0), as in PyTorch."""
    return _call(WHERE, y == 0, 0.0, y * x ** (y - 1))


def _pow_log(x, y):
    """log(x) for d(x**y)/dy = x**y log(x); 0 where x == 0 and y >= 0, as in PyTorch."""
    zero = _call(LOGICAL_AND, x == 0, y >= 0)
    return _call(WHERE, zero, 0.0, _call(LOG, _call(WHERE, zero, 1.0, x)))


def _pow_vjp(n, g, i):
    x, y = n.saved
    if i == 0:
        return g * _pow_dbase(x, y)
    return g * n.out() * _pow_log(x, y)


def _pow_jvp(p, t):
    x, y = p.saved
    tx = None if t[0] is None else t[0] * _pow_dbase(x, y)
    ty = None if t[1] is None else t[1] * p.out() * _pow_log(x, y)
    return _tadd(tx, ty)


POW = prim("pow", K.in_torch_dtype(np.power), uses=((0, 1), (0, 1, -1)), cost=C.transcendental,
           vjp=_pow_vjp, jvp=_pow_jvp, meta=S.binary)


def _ties(n, i):
    """Input i's share of a maximum/minimum's gradient: 0 where it loses, 0.5 on a tie
    (PyTorch's split), else 1, so a NaN (which neither wins nor ties) passes the gradient
    to both sides, as in PyTorch."""
    x, y = n.saved
    loses = (x < y) if (n.op is MAXIMUM) == (i == 0) else (x > y)
    return _call(WHERE, loses, 0.0, _call(WHERE, x == y, 0.5, 1.0))


def _minmax_jvp(p, t):
    return _tadd(*(None if ti is None else ti * _ties(p, i) for i, ti in enumerate(t)))


def _minmax_vjp(n, g, i):
    return g * _ties(n, i)


MAXIMUM = prim("maximum", K.in_torch_dtype(np.maximum), uses=((0, 1), (0, 1)), cost=C.elementwise,
               vjp=_minmax_vjp, jvp=_minmax_jvp, meta=S.binary)
MINIMUM = prim("minimum", K.in_torch_dtype(np.minimum), uses=((0, 1), (0, 1)), cost=C.elementwise,
               vjp=_minmax_vjp, jvp=_minmax_jvp, meta=S.binary)


# comparisons and logic: no gradient
EQ = prim("eq", np.equal, cost=C.elementwise, meta=S.compare)
NE = prim("ne", np.not_equal, cost=C.elementwise, meta=S.compare)
LT = prim("lt", np.less, cost=C.elementwise, meta=S.compare)
LE = prim("le", np.less_equal, cost=C.elementwise, meta=S.compare)
GT = prim("gt", np.greater, cost=C.elementwise, meta=S.compare)
GE = prim("ge", np.greater_equal, cost=C.elementwise, meta=S.compare)
LOGICAL_AND = prim("logical_and", np.logical_and, cost=C.elementwise, meta=S.compare)
LOGICAL_OR = prim("logical_or", np.logical_or, cost=C.elementwise, meta=S.compare)
LOGICAL_NOT = prim("logical_not", np.logical_not, cost=C.elementwise, meta=S.logical_not)

SIGN = prim("sign", K.sign, cost=C.elementwise,
            meta=S.same)  # PyTorch's sign: 0 at NaN (so abs' gradient is 0)


def _where_jvp(p, t):
    c = p.saved[0]
    tx = None if t[1] is None else _call(WHERE, c, t[1], 0.0)
    ty = None if t[2] is None else _call(WHERE, c, 0.0, t[2])
    return _tadd(tx, ty)


WHERE = prim(
    "where", K.where, uses=((), (0,), (0,)),
    vjp=lambda n, g, i: _call(WHERE, n.saved[0], g, 0.0) if i == 1 else _call(
        WHERE, n.saved[0], 0.0, g),
    jvp=_where_jvp,
    meta=S.where,
)


# In place (PyTorch's add_, sub_, mul_, div_): input 0 is overwritten and returned, so no
# memory is allocated; only outside autograd (dispatch refuses tensors that require grad).
ADD_ = prim("add_", K.axpy_, cost=C.scaled_add, inplace=True, meta=S.inplace)
SUB_ = prim("sub_", lambda a, b, alpha: K.axpy_(a, b, -alpha), cost=C.scaled_add,
            inplace=True, meta=S.inplace)
MUL_ = prim("mul_", lambda a, b: np.multiply(a, b, out=a), cost=C.elementwise, inplace=True,
            meta=S.inplace)
DIV_ = prim("div_", lambda a, b: np.true_divide(a, b, out=a), cost=C.elementwise, inplace=True,
            meta=S.inplace)


def _unary(name, fwd, uses, deriv, transcendental: bool = False, meta=None):
    """A unary op whose vjp and jvp both multiply by the local derivative `deriv(node)`."""
    if meta is S.floating:
        fwd = K.floating(fwd)
    return unary(name, fwd, uses, deriv, C.transcendental if transcendental else C.elementwise,
                 meta)


NEG = prim("neg", np.negative, uses=((),), cost=C.elementwise,
           vjp=lambda n, g, i: -g, jvp=lambda p, t: -t[0], meta=S.same)
EXP = _unary("exp", np.exp, (-1,), lambda n: n.out(), True, meta=S.floating)
LOG = _unary("log", np.log, (0,), lambda n: 1.0 / n.saved[0], True, meta=S.floating)
LOG1P = _unary("log1p", np.log1p, (0,), lambda n: 1.0 / (n.saved[0] + 1.0), True, meta=S.floating)
SQRT = _unary("sqrt", np.sqrt, (-1,), lambda n: 0.5 / n.out(), True, meta=S.floating)
ABS = _unary("abs", np.abs, (0,), lambda n: _call(SIGN, n.saved[0]), meta=S.same)
SIN = _unary("sin", np.sin, (0,), lambda n: _call(COS, n.saved[0]), True, meta=S.floating)
COS = _unary("cos", np.cos, (0,), lambda n: -_call(SIN, n.saved[0]), True, meta=S.floating)
TANH = _unary("tanh", np.tanh, (-1,), lambda n: 1.0 - n.out() * n.out(), True, meta=S.floating)

SIGMOID = _unary("sigmoid", K.keep_half(special.expit), (-1,),
                 lambda n: n.out() * (1.0 - n.out()), True, meta=S.floating)
ERF = _unary("erf", K.keep_half(special.erf), (0,),
             lambda n: (2.0 / math.sqrt(math.pi)) * _call(EXP, -(n.saved[0] * n.saved[0])), True,
             meta=S.floating)


RELU = prim(
    "relu", K.relu, uses=((-1,),), cost=C.elementwise,
    vjp=lambda n, g, i: _call(RELU_BACKWARD, g, n.out()),
    jvp=lambda p, t: _call(RELU_BACKWARD, t[0], p.out()),
    meta=S.same,
)
RELU_BACKWARD = prim(  # linear in g, piecewise constant in out (no gradient flows to out)
    "relu_backward", K.relu_backward, uses=((1,), ()), cost=C.elementwise,
    vjp=lambda n, g, i: _call(RELU_BACKWARD, g, n.saved[1]) if i == 0 else None,
    jvp=lambda p, t: None if t[0] is None else _call(RELU_BACKWARD, t[0], p.saved[1]),
    meta=S.binary,
)


def _pow_scalar_deriv(n):
    x, e = n.saved[0], n.params[0]
    if e == 0:  # d/dx x**0 = 0 everywhere, also at x = 0 where e * x**(e-1) is 0 * inf
        return _zeros_like(x)
    if e == 2:
        return 2.0 * x
    return e * _call(POW_SCALAR, x, params=(e - 1,))


POW_SCALAR = unary("pow_scalar", K.pow_scalar, (0,), _pow_scalar_deriv, C.pow_scalar,
                   S.pow_scalar)


def _rsqrt_deriv(n):
    """d rsqrt(x) / dx from the output, -0.5 rsqrt(x)**3, as PyTorch's rsqrt_backward: NaN
    at x = -inf (x ** -1.5 would be 0 there), -inf at 0."""
    return -0.5 * _call(POW_SCALAR, n.out(), params=(3,))


# x.rsqrt(): x ** -0.5, billed as that pow_scalar (1 FLOP and 1 transcendental per element)
RSQRT = unary("rsqrt", lambda x: K.pow_scalar(x, -0.5), (-1,), _rsqrt_deriv, C.transcendental,
              lambda x: S.pow_scalar(x, -0.5), billed_as="pow_scalar")


def _clamp_fwd(x, lo, hi):
    return np.clip(x, lo, hi)


def _clamp_mask(n):
    x, (lo, hi) = n.saved[0], n.params
    inside = None
    if lo is not None:
        inside = x >= lo
    if hi is not None:
        inside = (x <= hi) if inside is None else _call(LOGICAL_AND, inside, x <= hi)
    return inside


CLAMP = prim(
    "clamp", _clamp_fwd, uses=((0,),), cost=C.elementwise,
    vjp=lambda n, g, i: g if _clamp_mask(n) is None else _call(WHERE, _clamp_mask(n), g, 0.0),
    jvp=lambda p, t: t[0] if _clamp_mask(p) is None else _call(WHERE, _clamp_mask(p), t[0], 0.0),
    meta=S.same,
)


# clamp with a tensor bound (the other a tensor, a number or None): min(max(x, lo), hi),
# with PyTorch's gradient (clamp_backward_min_max): x gets it where lo <= x <= hi (bounds
# included, unlike maximum's half at a tie), lo where x < lo < hi, hi where x > hi or hi < lo

def _clamp_t_masks(n):
    x, lo, hi = n.saved
    mask_x = mask_lo = mask_hi = None
    if lo is not None:
        mask_x, mask_lo = x >= lo, x < lo
    if hi is not None:
        below = x <= hi
        mask_x = below if mask_x is None else _call(LOGICAL_AND, mask_x, below)
        mask_hi = x > hi
        if lo is not None:
            mask_lo = _call(LOGICAL_AND, mask_lo, lo < hi)
            mask_hi = _call(LOGICAL_OR, mask_hi, hi < lo)
    return mask_x, mask_lo, mask_hi


def _clamp_t_jvp(p, t):
    """PyTorch's clamp_jvp: the tangent of whichever value the output is (at lo == hi with
    x < lo that is lo's, where the reverse-mode rule gives neither bound a gradient)."""
    x, lo, hi = p.saved
    tx, tlo, thi = (0.0 if ti is None else ti for ti in t)
    if lo is not None and hi is not None:
        return _call(WHERE, lo > hi, thi, _call(WHERE, x < lo, tlo, _call(WHERE, x > hi, thi,
                                                                           tx)))
    if lo is not None:
        return _call(WHERE, x < lo, tlo, tx)
    return _call(WHERE, x > hi, thi, tx)


CLAMP_T = prim(
    "clamp_tensor", K.clamp_tensor, billed_as="clamp", uses=((0, 1, 2),) * 3, cost=C.elementwise,
    vjp=lambda n, g, i: _call(WHERE, _clamp_t_masks(n)[i], g, 0.0),
    jvp=_clamp_t_jvp,
    meta=S.clamp_tensor,
)


def _cast_fwd(x, dtype, from_dtype):
    return x.astype(dtype, copy=False)


CAST = prim(
    "cast", _cast_fwd, uses=((),), cost=C.free,
    vjp=lambda n, g, i: _call(CAST, g, params=n.params[::-1]),
    jvp=lambda p, t: _call(CAST, t[0], params=p.params),
    meta=S.cast,
)
