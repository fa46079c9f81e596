"""The primitive op registry: flopgrad's single table of derivative and cost rules.

Each primitive is declared once with
- `forward(*arrays, *params)` on backend arrays,
- `vjp(node, g, i)`: the gradient for input slot `i`, written with flopgrad ops so the
  backward pass is itself a sequence of counted (and differentiable) primitives,
- `jvp(primals, tangents)`: the output tangent (forward mode), also with flopgrad ops,
- `uses`: for each input slot, which values its gradient needs (input indices; -1 is the
  output). Only those are saved for backward, so saved memory is exact.
- `cost(out_shape, in_shapes, params) -> (tensor_flops, other_flops, transcendentals)`;
  bytes read and written are counted centrally from the arrays (zero for views),
- `meta`: the shape rule on shape-only arrays (a function of `flopgrad.shapes`).

The engine reduces a gradient to its input's shape when broadcasting made it larger, so
the vjps below return gradients in the shape of the output's broadcast.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import special

from flopgrad import blas
from flopgrad import dispatch as D
from flopgrad import shapes as S
from flopgrad.backend import result_type, zeros_like

REGISTRY: dict[str, Op] = {}


@dataclass(eq=False)
class Op:
    """A primitive: its forward, derivative rules, saved values and cost formula."""

    name: str
    forward: Callable
    vjp: Callable | None = None
    jvp: Callable | None = None
    uses: tuple = ()
    cost: Callable = field(default=lambda out, ins, params: (0, 0, 0))
    view: bool = False  # output aliases the input: no bytes moved, no FLOPs
    inplace: bool = False  # writes its result into input 0 (no graph; optimizers, add_)
    unknown_cost: bool = False  # a user Function that declared no cost
    meta: Callable | None = None  # shape rule on meta arrays (flopgrad.shapes)

    def __post_init__(self) -> None:
        self.saves = any(self.uses)  # whether backward needs any value at all

    def __repr__(self) -> str:
        return f"Op({self.name})"


def prim(name: str, forward: Callable, key: str | None = None, **kw) -> Op:
    """Declare a primitive and enter it in the registry (under `key`, default its name)."""
    op = Op(name, forward, **kw)
    key = key or name
    if key in REGISTRY:
        raise ValueError(f"primitive {key!r} is declared twice")
    REGISTRY[key] = op
    return op


def size(shape) -> int:
    return math.prod(shape)


def _ew(k: int = 1, transcendental: int = 0) -> Callable:
    """Cost of an elementwise op: k FLOPs per output element (transcendentals included)."""
    return lambda out, ins, p: (0, k * size(out), transcendental * size(out))


def _call(op: Op, *args, params: tuple = ()):
    return D.apply(op, args, params)


def _tadd(*terms):
    """Sum of tangent terms, skipping the absent (zero) ones."""
    total = None
    for t in terms:
        if t is not None:
            total = t if total is None else total + t
    return total


# ---------------------------------------------------------------- elementwise binary

_ND = np.ndarray


def _numpy_agrees(a, b) -> bool:
    """Whether NumPy's result dtype is PyTorch's in the common cases, checked cheaply: arrays
    of one dtype, or a float array with a Python number."""
    ta, tb = type(a), type(b)
    if ta is _ND:
        if tb is _ND:
            return a.dtype is b.dtype
        return (tb is float or tb is int) and a.dtype.kind == "f"
    return tb is _ND and (ta is float or ta is int) and b.dtype.kind == "f"


def _torch_dtype(*xs, true_divide: bool = False) -> tuple:
    """The operands cast to PyTorch's result dtype (numbers stay numbers)."""
    want = result_type(*xs, true_divide=true_divide)
    return tuple(x.astype(want) if type(x) is _ND and x.dtype != want else x for x in xs)


def _in_torch_dtype(fn, true_divide: bool = False):
    """fn(a, b) computed in PyTorch's result dtype: NumPy makes int64 with float32 float64,
    an int tensor times 2.5 float64 and int / int float64; PyTorch float32. The common cases
    are checked inline: this runs for every add and multiply."""
    def forward(a, b):
        if type(a) is _ND:
            tb = type(b)
            if tb is _ND:
                if a.dtype is b.dtype and (not true_divide or a.dtype.kind == "f"):
                    return fn(a, b)
            elif (tb is float or tb is int) and a.dtype.kind == "f":
                return fn(a, b)
        elif type(b) is _ND and (type(a) is float or type(a) is int) and b.dtype.kind == "f":
            return fn(a, b)
        a, b = _torch_dtype(a, b, true_divide=true_divide)
        return fn(a, b)
    forward.__name__ = getattr(fn, "__name__", "forward")
    return forward


ADD = prim(
    "add", _in_torch_dtype(np.add), uses=((), ()), cost=_ew(),
    vjp=lambda n, g, i: g,
    jvp=lambda p, t: _tadd(t[0], t[1]),
    meta=S.binary,
)
SUB = prim(
    "sub", _in_torch_dtype(np.subtract), uses=((), ()), cost=_ew(),
    vjp=lambda n, g, i: g if i == 0 else -g,
    jvp=lambda p, t: _tadd(t[0], None if t[1] is None else -t[1]),
    meta=S.binary,
)
MUL = prim(
    "mul", _in_torch_dtype(np.multiply), uses=((1,), (0,)), cost=_ew(),
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
    "div", _in_torch_dtype(np.true_divide, true_divide=True), uses=((1,), (0, 1)), cost=_ew(),
    vjp=lambda n, g, i: g / n.saved[1] if i == 0 else -g * n.saved[0] / (n.saved[1] * n.saved[1]),
    jvp=_div_jvp,
    meta=S.true_divide,
)


def _div_round_fwd(a, b, mode):
    """PyTorch's div(rounding_mode="trunc" | "floor"). Floats: trunc(a / b), or the floor
    division NumPy and PyTorch share (through fmod, exact for a quotient that rounds); an
    integer quotient stays an integer, and an integer division by zero raises, as in
    PyTorch."""
    if not _numpy_agrees(a, b):
        a, b = _torch_dtype(a, b)
    a_, b_ = np.asarray(a), np.asarray(b)
    if np.result_type(a, b).kind in "iub":
        if (b_ == 0).any():
            raise ZeroDivisionError("div: integer division by zero")
        q = np.floor_divide(a, b)
        if mode == "trunc":  # floor differs from trunc where the quotient is negative, inexact
            q = q + ((q < 0) & (q * b_ != a_))
        return q
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.trunc(np.true_divide(a, b)) if mode == "trunc" else np.floor_divide(a, b)


def _zero_gradient(n, g, i):
    """d round(a / b) = 0 almost everywhere: PyTorch's gradient of div with a
    rounding_mode (and of floor, ceil, trunc, round) is zero."""
    return _zeros_like(g)


def _zero_tangent(p, t):
    return _zeros_like(p.out())


# division and rounding: 2 FLOPs per element
DIV_ROUND = prim("div_round", _div_round_fwd, uses=((), ()), cost=_ew(2),
                 vjp=_zero_gradient, jvp=_zero_tangent, meta=S.binary_params)


def _rounding(name, fwd):
    """floor, ceil, trunc, round: 1 FLOP per element, zero gradient (as PyTorch's)."""
    return prim(name, fwd, uses=((),), cost=_ew(), vjp=_zero_gradient, jvp=_zero_tangent,
                meta=S.same)


def _on_floats(fn):
    """An integer (or bool) array is already rounded: returned as a copy, dtype kept."""
    return lambda x, *params: x.copy() if x.dtype.kind in "iub" else fn(x, *params)


FLOOR = _rounding("floor", _on_floats(np.floor))
CEIL = _rounding("ceil", _on_floats(np.ceil))
TRUNC = _rounding("trunc", _on_floats(np.trunc))
ROUND = _rounding("round", _on_floats(np.round))  # half to even, as PyTorch; params: decimals


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


POW = prim("pow", _in_torch_dtype(np.power), uses=((0, 1), (0, 1, -1)), cost=_ew(1, 1),
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


MAXIMUM = prim("maximum", _in_torch_dtype(np.maximum), uses=((0, 1), (0, 1)), cost=_ew(),
               vjp=_minmax_vjp, jvp=_minmax_jvp, meta=S.binary)
MINIMUM = prim("minimum", _in_torch_dtype(np.minimum), uses=((0, 1), (0, 1)), cost=_ew(),
               vjp=_minmax_vjp, jvp=_minmax_jvp, meta=S.binary)


# comparisons and logic: no gradient
EQ = prim("eq", np.equal, cost=_ew(), meta=S.compare)
NE = prim("ne", np.not_equal, cost=_ew(), meta=S.compare)
LT = prim("lt", np.less, cost=_ew(), meta=S.compare)
LE = prim("le", np.less_equal, cost=_ew(), meta=S.compare)
GT = prim("gt", np.greater, cost=_ew(), meta=S.compare)
GE = prim("ge", np.greater_equal, cost=_ew(), meta=S.compare)
LOGICAL_AND = prim("logical_and", np.logical_and, cost=_ew(), meta=S.compare)
LOGICAL_OR = prim("logical_or", np.logical_or, cost=_ew(), meta=S.compare)
LOGICAL_NOT = prim("logical_not", np.logical_not, cost=_ew(), meta=S.logical_not)
def _sign_fwd(x):
    s = np.sign(x)
    if s.dtype.kind != "f":
        return s
    if type(s) is not np.ndarray:  # a 0-d input gives a NumPy scalar: no buffer to edit
        return np.asarray(0 if s != s else s, dtype=s.dtype)
    return np.nan_to_num(s, copy=False, nan=0.0)  # sign(nan) = 0


SIGN = prim("sign", _sign_fwd, cost=_ew(),
            meta=S.same)  # PyTorch's sign: 0 at NaN (so abs' gradient is 0)


def _where_fwd(c, x, y):
    if not _numpy_agrees(x, y) and not (type(x) is float and type(y) is float):
        x, y = _torch_dtype(x, y)
    if type(c) is np.ndarray and c.dtype == np.bool_:
        if type(x) is float and x == 0 and _same_float_array(y, c):
            return _select_or_zero(y, c, where=False)
        if type(y) is float and y == 0 and _same_float_array(x, c):
            return _select_or_zero(x, c, where=True)
    return np.where(c, x, y)


def _same_float_array(v, c) -> bool:
    """v is a float array of the shape that c broadcasts to."""
    return type(v) is np.ndarray and v.dtype.kind == "f" and v.ndim > 0 and (
        v.shape == c.shape or (c.ndim <= v.ndim and all(
            n == 1 or n == m for n, m in zip(c.shape[::-1], v.shape[::-1], strict=False))))


def _select_or_zero(v, c, where: bool):
    """v where c == `where`, else +0.0: np.where(c, v, 0) (or (c, 0, v)) computed by masking
    v's bits with integer ops. np.where is 3-11x slower on irregular masks; multiplying
    by the mask would turn an inf in v into NaN."""
    ints = np.dtype(f"i{v.itemsize}")
    out = np.empty_like(v)  # in v's memory order (a transposed GEMM's output is Fortran)
    mask = out.view(ints)
    np.copyto(mask, c)  # 1 where c
    if where:
        np.negative(mask, out=mask)  # every bit set where c
    else:
        np.subtract(mask, 1, out=mask)  # every bit set where not c
    np.bitwise_and(v.view(ints), mask, out=mask)
    return out


def _where_jvp(p, t):
    c = p.saved[0]
    tx = None if t[1] is None else _call(WHERE, c, t[1], 0.0)
    ty = None if t[2] is None else _call(WHERE, c, 0.0, t[2])
    return _tadd(tx, ty)


WHERE = prim(
    "where", _where_fwd, uses=((), (0,), (0,)),
    vjp=lambda n, g, i: _call(WHERE, n.saved[0], g, 0.0) if i == 1 else _call(
        WHERE, n.saved[0], 0.0, g),
    jvp=_where_jvp,
    meta=S.where,
)


# In place (PyTorch's add_, sub_, mul_, div_): input 0 is overwritten and returned, so no
# memory is allocated; only outside autograd (dispatch refuses tensors that require grad).
def _axpy_(a, b, alpha):
    """a += alpha * b, as PyTorch's add_(b, alpha=...): one BLAS pass where NumPy's own
    BLAS can do it (flopgrad.blas), else a multiply and an add."""
    if alpha == 1:
        return np.add(a, b, out=a)
    if type(a) is np.ndarray and type(b) is np.ndarray and blas.axpy(a, b, alpha):
        return a
    return np.add(a, np.multiply(b, alpha), out=a)


def _scaled_cost(out, ins, p):  # one add, plus the multiply by alpha unless alpha is 1
    return (0, (1 if p[0] == 1 else 2) * size(out), 0)


ADD_ = prim("add_", _axpy_, cost=_scaled_cost, inplace=True, meta=S.inplace)
SUB_ = prim("sub_", lambda a, b, alpha: _axpy_(a, b, -alpha), cost=_scaled_cost,
            inplace=True, meta=S.inplace)
MUL_ = prim("mul_", lambda a, b: np.multiply(a, b, out=a), cost=_ew(), inplace=True,
            meta=S.inplace)
DIV_ = prim("div_", lambda a, b: np.true_divide(a, b, out=a), cost=_ew(), inplace=True,
            meta=S.inplace)

# ---------------------------------------------------------------- elementwise unary

def _floating(fn):
    """fn of a float array; integers and bools are computed in float32, as in PyTorch (NumPy
    gives float64, or float16 for bools)."""
    def forward(x, *params):
        if x.dtype.kind not in "fc":
            x = x.astype(np.float32)
        return fn(x, *params)
    forward.__name__ = getattr(fn, "__name__", "forward")
    return forward


def _unary(name, fwd, uses, deriv, transcendental=0, k=1, meta=None):
    """A unary op whose vjp and jvp both multiply by the local derivative `deriv(node)`."""
    if meta is S.floating:
        fwd = _floating(fwd)
    return prim(
        name, fwd, uses=(uses,), cost=_ew(k, transcendental),
        vjp=lambda n, g, i: g * deriv(n),
        jvp=lambda p, t: t[0] * deriv(p),
        meta=meta,
    )


NEG = prim("neg", np.negative, uses=((),), cost=_ew(),
           vjp=lambda n, g, i: -g, jvp=lambda p, t: -t[0], meta=S.same)
EXP = _unary("exp", np.exp, (-1,), lambda n: n.out(), 1, meta=S.floating)
LOG = _unary("log", np.log, (0,), lambda n: 1.0 / n.saved[0], 1, meta=S.floating)
LOG1P = _unary("log1p", np.log1p, (0,), lambda n: 1.0 / (n.saved[0] + 1.0), 1, meta=S.floating)
SQRT = _unary("sqrt", np.sqrt, (-1,), lambda n: 0.5 / n.out(), 1, meta=S.floating)
ABS = _unary("abs", np.abs, (0,), lambda n: _call(SIGN, n.saved[0]), meta=S.same)
SIN = _unary("sin", np.sin, (0,), lambda n: _call(COS, n.saved[0]), 1, meta=S.floating)
COS = _unary("cos", np.cos, (0,), lambda n: -_call(SIN, n.saved[0]), 1, meta=S.floating)
TANH = _unary("tanh", np.tanh, (-1,), lambda n: 1.0 - n.out() * n.out(), 1, meta=S.floating)
_F16, _F32 = np.dtype(np.float16), np.dtype(np.float32)


def _keep_half(fn):
    """A SciPy ufunc that has no float16 loop (it would return float64), run in float32 and
    rounded back for float16 input, as PyTorch keeps the dtype."""
    def run(x):
        if x.dtype is _F16:
            return fn(x, dtype=_F32).astype(_F16)
        return fn(x)
    return run


SIGMOID = _unary("sigmoid", _keep_half(special.expit), (-1,),
                 lambda n: n.out() * (1.0 - n.out()), 1, meta=S.floating)
ERF = _unary("erf", _keep_half(special.erf), (0,),
             lambda n: (2.0 / math.sqrt(math.pi)) * _call(EXP, -(n.saved[0] * n.saved[0])), 1,
                 meta=S.floating)


def _relu_fwd(x):
    if x.dtype.kind == "f":  # against a zero row: NumPy's loop for a scalar 0 is 2x slower
        return np.maximum(x, np.zeros(x.shape[-1:], x.dtype))
    return np.maximum(x, 0)


def _relu_backward_fwd(g, out):
    """PyTorch's threshold_backward: g where out > 0, else 0 (a NaN out passes g through)."""
    return _where_fwd(out <= 0, 0.0, g)


RELU = prim(
    "relu", _relu_fwd, uses=((-1,),), cost=_ew(),
    vjp=lambda n, g, i: _call(RELU_BACKWARD, g, n.out()),
    jvp=lambda p, t: _call(RELU_BACKWARD, t[0], p.out()),
    meta=S.same,
)
RELU_BACKWARD = prim(  # linear in g, piecewise constant in out (no gradient flows to out)
    "relu_backward", _relu_backward_fwd, uses=((1,), ()), cost=_ew(),
    vjp=lambda n, g, i: _call(RELU_BACKWARD, g, n.saved[1]) if i == 0 else None,
    jvp=lambda p, t: None if t[0] is None else _call(RELU_BACKWARD, t[0], p.saved[1]),
    meta=S.binary,
)


# ---------------------------------------------------------------- layer norm, fused

def _row_mean(a, b=None):
    """Mean over each row of a (rows, d) array, or of a * b, without a temporary: a
    matrix-vector product or one einsum (NumPy's reductions along a row are 4x slower)."""
    mean = a @ np.ones(a.shape[1], a.dtype) if b is None else np.einsum("ij,ij->i", a, b)
    mean *= 1.0 / max(a.shape[1], 1)
    return mean


def _normalize_rows(x, n_dims, eps, out):
    """Write x normalised over its last n_dims dims into `out` (x's shape); return (out as
    (rows, d), rstd per row)."""
    rows = x.reshape(-1, math.prod(x.shape[x.ndim - n_dims:])).astype(out.dtype, copy=False)
    xhat = out.reshape(rows.shape)
    np.subtract(rows, _row_mean(rows)[:, None], out=xhat)
    rstd = _row_mean(xhat, xhat)
    rstd += eps
    np.sqrt(rstd, out=rstd)
    np.reciprocal(rstd, out=rstd)
    xhat *= rstd[:, None]
    return xhat, rstd


def _acc(dtype) -> np.dtype:
    """The dtype statistics are computed in: float32 for float16 (as PyTorch's kernels)."""
    return _F32 if dtype is _F16 else dtype


def _layer_norm_fwd(x, w, b, n_dims, eps):
    dtype = S.layer_norm(x, w, b, n_dims, eps).dtype
    out = np.empty(x.shape, _acc(dtype))
    _normalize_rows(x, n_dims, eps, out)
    if w is not None:
        out *= w
    if b is not None:
        out += b
    return out if out.dtype is dtype else out.astype(dtype)


def _layer_norm_dx_fwd(g, x, w, n_dims, eps):
    """layer_norm's input gradient in one primitive (PyTorch's layer_norm_backward):
    rstd (gw - mean(gw) - xhat mean(gw xhat)) with gw = g w, the statistics recomputed."""
    dtype = S.layer_norm_dx(g, x, w, n_dims, eps).dtype
    xhat, rstd = _normalize_rows(x, n_dims, eps, np.empty(x.shape, _acc(dtype)))
    dx = np.empty(x.shape, _acc(dtype))
    gw = dx.reshape(xhat.shape)
    if w is None:
        np.copyto(dx, g)
    else:
        np.multiply(g, w, out=dx)
    mean_gw = _row_mean(gw)
    xhat *= _row_mean(gw, xhat)[:, None]
    gw -= xhat
    gw -= mean_gw[:, None]
    gw *= rstd[:, None]
    return dx if dx.dtype is dtype else dx.astype(dtype)


def _normalized(x, n_dims, eps):
    """(xhat, rstd) of x over its last n_dims dims, with flopgrad ops (differentiable)."""
    dims = tuple(range(x.ndim - n_dims, x.ndim))
    centered = x - x.mean(dims, keepdim=True)
    rstd = ((centered * centered).mean(dims, keepdim=True) + eps).rsqrt()
    return centered * rstd, rstd


def _layer_norm_vjp(n, g, i):
    lead = tuple(range(g.ndim - n.params[0]))
    if i == 2:  # d bias
        return g.sum(lead) if lead else g
    x, w = n.saved[0], n.saved[1]
    if i == 1:  # d weight
        gx = g * _call(LAYER_NORM, x, None, None, params=n.params)
        return gx.sum(lead) if lead else gx
    m = D.mode()
    if not (m.grad_enabled or m.forward_ad):  # nothing differentiates the result
        return _call(LAYER_NORM_DX, g, x, w, params=n.params)
    dims = tuple(range(g.ndim - n.params[0], g.ndim))
    xhat, rstd = _normalized(x, *n.params)
    gw = g if w is None else g * w
    return rstd * (gw - gw.mean(dims, keepdim=True)
                   - xhat * (gw * xhat).mean(dims, keepdim=True))


def _layer_norm_jvp(p, t):
    x, w, b = p.saved
    n_dims = p.params[0]
    dims = tuple(range(x.ndim - n_dims, x.ndim))
    xhat, rstd = _normalized(x, *p.params)
    terms = []
    if t[0] is not None:
        tc = t[0] - t[0].mean(dims, keepdim=True)
        dxhat = rstd * (tc - xhat * (xhat * tc).mean(dims, keepdim=True))
        terms.append(dxhat if w is None else dxhat * w)
    if t[1] is not None:
        terms.append(xhat * t[1])
    if t[2] is not None:
        terms.append(t[2])
    return _tadd(*terms)


def _layer_norm_cost(out, ins, p):
    """What the composite would cost: two means, subtract, square, + eps and rsqrt per row,
    normalise, then scale and shift where given."""
    n, d = size(out), size(out[len(out) - p[0]:])
    rows = n // max(d, 1)
    affine = (ins[1] != ()) + (ins[2] != ())
    return (0, 2 * n + n + n + 2 * rows + n + affine * n, rows)


LAYER_NORM = prim("layer_norm", _layer_norm_fwd, uses=((0, 1), (0,), ()),
                  cost=_layer_norm_cost, vjp=_layer_norm_vjp, jvp=_layer_norm_jvp,
                  meta=S.layer_norm)


def _layer_norm_dx_cost(out, ins, p):
    """What the composite would cost: the statistics and xhat (as layer_norm without an
    affine), then g w, two means, two products, two subtractions and the scale by rstd."""
    n, d = size(out), size(out[len(out) - p[0]:])
    rows = n // max(d, 1)
    scaled = ins[2] != ()
    return (0, 5 * n + 2 * rows + (7 + scaled) * n, rows)


# Used by layer_norm's backward when nothing will differentiate the gradient; otherwise the
# backward is the composite of differentiable ops above.
LAYER_NORM_DX = prim("layer_norm_dx", _layer_norm_dx_fwd, cost=_layer_norm_dx_cost,
                     meta=S.layer_norm_dx)

# ---------------------------------------------------------------- GELU, fused

_GELU_C = math.sqrt(2.0 / math.pi)  # tanh form: 0.5 x (1 + tanh(c (x + a x^3)))
_GELU_A = 0.044715


def _as_1d(fn):
    """Run an in-place elementwise forward on a 0-d array as a 1-element one."""
    def run(x, *params):
        if x.ndim == 0:
            return fn(x.reshape(1), *params).reshape(())
        return fn(x, *params)
    run.__doc__ = fn.__doc__
    return run


@_as_1d
def _gelu_fwd(x, approximate):
    if approximate == "tanh":
        u = x * x
        u *= _GELU_A * _GELU_C
        u += _GELU_C
        u *= x
        np.tanh(u, out=u)
    else:
        u = x * (1.0 / math.sqrt(2.0))
        special.erf(u, out=u)
    u += 1.0
    u *= x
    u *= 0.5
    return u


@_as_1d
def _gelu_grad_fwd(x, approximate):
    """d gelu / dx, elementwise, in two arrays (a third temporary of this size costs more in
    page faults than its arithmetic)."""
    a = x * x
    if approximate == "tanh":
        t = a * (_GELU_A * _GELU_C)
        t += _GELU_C
        t *= x
        np.tanh(t, out=t)  # t = tanh(u)
        a *= 3 * _GELU_A * _GELU_C
        a += _GELU_C  # u'
        a *= x
        a *= 0.5  # 0.5 x u'
        # 0.5 (1 + t) + 0.5 x u' (1 - t^2), as (1 + t) (0.5 x u' (1 - t) + 0.5)
        np.subtract(1.0, t, out=t)
        a *= t
        a += 0.5
        np.subtract(2.0, t, out=t)
        a *= t
        return a
    a *= -0.5
    np.exp(a, out=a)
    a *= x
    a *= 1.0 / math.sqrt(2.0 * math.pi)  # x phi(x)
    cdf = x * (1.0 / math.sqrt(2.0))
    special.erf(cdf, out=cdf)
    cdf += 1.0
    cdf *= 0.5
    cdf += a
    return cdf


def _gelu_grad2(n):
    """d^2 gelu / dx^2 with flopgrad ops (so higher orders stay differentiable)."""
    x = n.saved[0]
    if n.params[0] == "tanh":
        du = _GELU_C * (1.0 + (3 * _GELU_A) * x * x)
        t = (_GELU_C * (x + _GELU_A * x * x * x)).tanh()
        return (1.0 - t * t) * (du - x * t * du * du + (3 * _GELU_A * _GELU_C) * x * x)
    return (2.0 - x * x) * (-0.5 * x * x).exp() * (1.0 / math.sqrt(2.0 * math.pi))


GELU = prim(
    "gelu", _gelu_fwd, uses=((0,),),
    cost=lambda out, ins, p: (0, (8 if p[0] == "tanh" else 5) * size(out), size(out)),
    vjp=lambda n, g, i: g * _call(GELU_GRAD, n.saved[0], params=n.params),
    jvp=lambda p, t: t[0] * _call(GELU_GRAD, p.saved[0], params=p.params),
    meta=S.floating,
)
GELU_GRAD = prim(
    "gelu_grad", _gelu_grad_fwd, uses=((0,),),
    cost=lambda out, ins, p: ((0, 14 * size(out), size(out)) if p[0] == "tanh"
                              else (0, 10 * size(out), 2 * size(out))),
    vjp=lambda n, g, i: g * _gelu_grad2(n),
    jvp=lambda p, t: t[0] * _gelu_grad2(p),
    meta=S.floating,
)

def _pow_scalar_fwd(x, e):
    if x.dtype.kind != "f":
        if type(e) is float:  # an integer tensor to a float power is float32 in PyTorch
            return _pow_scalar_fwd(x.astype(np.float32), e)
        return np.power(x, e)
    # the exponents PyTorch's pow kernel special-cases, computed the same way (np.power on
    # a float exponent is ~50x slower than a multiply)
    if e == 2:
        return np.square(x)
    if e == 3:
        return x * x * x
    if e == 0.5:
        return np.sqrt(x)
    if e == -0.5:
        return np.reciprocal(np.sqrt(x))
    if e == -1:
        return np.reciprocal(x)
    if e == -2:
        return np.reciprocal(np.square(x))
    return np.power(x, e, dtype=x.dtype)


def _pow_scalar_deriv(n):
    x, e = n.saved[0], n.params[0]
    if e == 0:  # d/dx x**0 = 0 everywhere, also at x = 0 where e * x**(e-1) is 0 * inf
        return _zeros_like(x)
    if e == 2:
        return 2.0 * x
    return e * _call(POW_SCALAR, x, params=(e - 1,))


POW_SCALAR = prim(
    "pow_scalar", _pow_scalar_fwd, uses=((0,),),
    cost=lambda out, ins, p: (0, size(out), 0 if float(p[0]).is_integer() else size(out)),
    vjp=lambda n, g, i: g * _pow_scalar_deriv(n),
    jvp=lambda p, t: t[0] * _pow_scalar_deriv(p),
    meta=S.pow_scalar,
)


def _rsqrt_deriv(n):
    """d rsqrt(x) / dx from the output, -0.5 rsqrt(x)**3, as PyTorch's rsqrt_backward: NaN
    at x = -inf (x ** -1.5 would be 0 there), -inf at 0."""
    return -0.5 * _call(POW_SCALAR, n.out(), params=(3,))


# x.rsqrt(): x ** -0.5, billed as that pow_scalar (1 FLOP and 1 transcendental per element)
RSQRT = prim(
    "pow_scalar", lambda x: _pow_scalar_fwd(x, -0.5), key="rsqrt", uses=((-1,),),
    cost=_ew(1, 1),
    vjp=lambda n, g, i: g * _rsqrt_deriv(n),
    jvp=lambda p, t: t[0] * _rsqrt_deriv(p),
    meta=lambda x: S.pow_scalar(x, -0.5),
)


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
    "clamp", _clamp_fwd, uses=((0,),), cost=_ew(),
    vjp=lambda n, g, i: g if _clamp_mask(n) is None else _call(WHERE, _clamp_mask(n), g, 0.0),
    jvp=lambda p, t: t[0] if _clamp_mask(p) is None else _call(WHERE, _clamp_mask(p), t[0], 0.0),
    meta=S.same,
)


# clamp with a tensor bound (the other a tensor, a number or None): min(max(x, lo), hi),
# with PyTorch's gradient (clamp_backward_min_max): x gets it where lo <= x <= hi (bounds
# included, unlike maximum's half at a tie), lo where x < lo < hi, hi where x > hi or hi < lo
def _clamp_t_fwd(x, lo, hi):
    given = [v for v in (x, lo, hi) if v is not None]
    if any(type(v) is _ND and v.dtype != x.dtype for v in given):
        x, lo, hi = (None if v is None else v.astype(result_type(*given)) for v in (x, lo, hi))
    out = x if lo is None else np.maximum(x, lo)
    return out if hi is None else np.minimum(out, hi)


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
    "clamp", _clamp_t_fwd, key="clamp_tensor", uses=((0, 1, 2),) * 3, cost=_ew(),
    vjp=lambda n, g, i: _call(WHERE, _clamp_t_masks(n)[i], g, 0.0),
    jvp=_clamp_t_jvp,
    meta=S.clamp_tensor,
)


def _cast_fwd(x, dtype, from_dtype):
    return x.astype(dtype, copy=False)


CAST = prim(
    "cast", _cast_fwd, uses=((),), cost=_ew(0),
    vjp=lambda n, g, i: _call(CAST, g, params=n.params[::-1]),
    jvp=lambda p, t: _call(CAST, t[0], params=p.params),
    meta=S.cast,
)


# ---------------------------------------------------------------- reductions

def _reduce_cost(out, ins, p):
    return (0, max(size(ins[0]) - size(out), 0), 0)


def _keepdims_shape(in_shape, axes):
    if axes is None:
        return (1,) * len(in_shape)
    return tuple(1 if d in axes else s for d, s in enumerate(in_shape))


def _unreduce(n, g):
    """Broadcast a reduction's output gradient back over the reduced axes."""
    in_shape = n.in_shapes[0]
    axes, keepdims = n.params
    if not keepdims and axes is not None:
        g = D.apply(RESHAPE, (g,), (_keepdims_shape(in_shape, axes),))
    return D.apply(EXPAND, (g,), (in_shape,))


def _sum_fwd(x, axes, keepdims):
    if x.dtype is _F16:  # accumulated in float32, as PyTorch does (float16 loses 1s at 2048)
        with np.errstate(over="ignore"):  # a sum beyond float16's range is inf, silently
            return x.sum(axis=axes, keepdims=keepdims, dtype=_F32).astype(_F16)
    return x.sum(axis=axes, keepdims=keepdims)


SUM = prim(
    "sum", _sum_fwd, uses=((),), cost=_reduce_cost,
    vjp=lambda n, g, i: _unreduce(n, g),
    jvp=lambda p, t: _call(SUM, t[0], params=p.params),
    meta=S.reduce_sum,
)
# The sum of a float16 tensor as float32 (mean and var divide it before rounding to float16,
# as PyTorch's kernels do); billed as a sum. Its gradient is rounded to float16 before it
# is broadcast back.
SUM_F32 = prim(
    "sum", lambda x, axes, keepdims: x.sum(axis=axes, keepdims=keepdims, dtype=_F32),
    key="sum_f32", uses=((),), cost=_reduce_cost,
    vjp=lambda n, g, i: _unreduce(n, _call(CAST, g, params=(_F16, g._data.dtype))),
    jvp=lambda p, t: _call(SUM_F32, t[0], params=p.params),
    meta=S.reduce_sum_f32,
)


def _extreme_weights(n):
    """Where the input attains the max (or min): weights summing to 1 over ties. For max()
    and min() of everything (PyTorch's evenly_distribute_backward) a NaN result is attained
    by the NaNs; amax/amin (and max(dim)'s values) compare with ==, so a NaN gives NaN."""
    x = n.saved[0]
    axes = n.params[0]
    out = n.out()
    if not n.params[1]:
        out = out.reshape(_keepdims_shape(x.shape, axes))
    if (n.op is MAX_ALL or n.op is MIN_ALL) and _is_nan(D._data(out)):
        hit = _call(CAST, x != x, params=(x._data.dtype, np.dtype(bool)))
    else:
        hit = _call(CAST, x == out, params=(x._data.dtype, np.dtype(bool)))
    return hit / _call(SUM, hit, params=(axes, True))


def _is_nan(a) -> bool:
    return type(a) is np.ndarray and a.dtype.kind == "f" and bool(np.isnan(a).any())


def _extreme_vjp(n, g, i):
    return _unreduce(n, g) * _extreme_weights(n)


def _extreme_jvp(p, t):
    return _call(SUM, t[0] * _extreme_weights(p), params=p.params)


AMAX = prim("amax", lambda x, axes, keepdims: np.amax(x, axis=axes, keepdims=keepdims),
            uses=((0, -1),), cost=_reduce_cost, vjp=_extreme_vjp, jvp=_extreme_jvp,
                meta=S.reduce_same)
AMIN = prim("amin", lambda x, axes, keepdims: np.amin(x, axis=axes, keepdims=keepdims),
            uses=((0, -1),), cost=_reduce_cost, vjp=_extreme_vjp, jvp=_extreme_jvp,
                meta=S.reduce_same)
# max() and min() without a dim: amax/amin of everything, whose gradient at a NaN result
# goes (evenly) to the NaNs, as PyTorch's max()/min() do (its amax/amin give NaN there)
MAX_ALL = prim("amax", AMAX.forward, key="max_all", uses=((0, -1),), cost=_reduce_cost,
               vjp=_extreme_vjp, jvp=_extreme_jvp, meta=S.reduce_same)
MIN_ALL = prim("amin", AMIN.forward, key="min_all", uses=((0, -1),), cost=_reduce_cost,
               vjp=_extreme_vjp, jvp=_extreme_jvp, meta=S.reduce_same)


def _prod_others_fwd(x, axes):
    """Product of every other element of each reduced group (exact when x has zeros)."""
    axes = tuple(range(x.ndim)) if axes is None else axes
    keep = [d for d in range(x.ndim) if d not in axes]
    moved = np.transpose(x, keep + list(axes))
    flat = moved.reshape(moved.shape[: len(keep)] + (-1,))
    ones = np.ones(flat.shape[:-1] + (1,), dtype=x.dtype)
    left = np.cumprod(np.concatenate([ones, flat[..., :-1]], axis=-1), axis=-1)
    right = np.cumprod(np.concatenate([ones, flat[..., :0:-1]], axis=-1), axis=-1)[..., ::-1]
    others = (left * right)[..., : flat.shape[-1]].reshape(moved.shape)  # empty groups: 0
    return np.transpose(others, np.argsort(keep + list(axes)))


def _no_higher_order(name):
    def vjp(n, g, i):
        raise NotImplementedError(
            f"{name}: higher-order gradients of prod are not implemented; "
            "take first-order gradients only, or write prod as exp(sum(log(x))) for x > 0")
    return vjp


PROD_OTHERS = prim("prod_others", _prod_others_fwd, uses=((),), cost=_ew(3),
                   vjp=_no_higher_order("prod"), meta=S.prod_others)
PROD = prim(
    "prod", lambda x, axes, keepdims: np.prod(x, axis=axes, keepdims=keepdims),
    uses=((0,),), cost=_reduce_cost,
    vjp=lambda n, g, i: _unreduce(n, g) * _call(PROD_OTHERS, n.saved[0], params=(n.params[0],)),
    jvp=lambda p, t: _call(
        SUM, t[0] * _call(PROD_OTHERS, p.saved[0], params=(p.params[0],)), params=p.params),
    meta=S.reduce_sum,
)


def _cumsum_vjp(n, g, i):
    axis = n.params[0]
    return _call(FLIP, _call(CUMSUM, _call(FLIP, g, params=((axis,),)), params=(axis,)),
                 params=((axis,),))


CUMSUM = prim(
    "cumsum", lambda x, axis: np.cumsum(x, axis=axis), uses=((),),
    cost=lambda out, ins, p: (0, size(out) - size(out) // max(out[p[0]], 1) if out else 0, 0),
    vjp=_cumsum_vjp,
    jvp=lambda p, t: _call(CUMSUM, t[0], params=p.params),
    meta=S.cumsum,
)

ARGMAX = prim("argmax", lambda x, axis, keepdims: np.argmax(x, axis=axis, keepdims=keepdims),
              cost=_reduce_cost, meta=S.arg_reduce)
ARGMIN = prim("argmin", lambda x, axis, keepdims: np.argmin(x, axis=axis, keepdims=keepdims),
              cost=_reduce_cost, meta=S.arg_reduce)
ALL = prim("all", lambda x, axes, keepdims: np.all(x, axis=axes, keepdims=keepdims),
           cost=_reduce_cost,
               meta=S.logical_reduce)  # logical reductions: no gradient, n - 1 ANDs/ORs per output
ANY = prim("any", lambda x, axes, keepdims: np.any(x, axis=axes, keepdims=keepdims),
           cost=_reduce_cost, meta=S.logical_reduce)


# ---------------------------------------------------------------- softmax, fused

_SHORT_ROWS = {np.maximum: 32, np.add: 16}  # where reducing the transposed copy is faster


def _reduce_rows(ufunc, x, axis):
    """ufunc.reduce along `axis`, keeping it. NumPy reduces a short last axis one row at a
    time (a max over (512, 10) takes 24 us); the transposed copy, reduced across its rows,
    takes 4 us."""
    rows, n = x.shape[0], x.shape[-1]
    if x.ndim == 2 and axis in (1, -1) and n <= _SHORT_ROWS[ufunc] and rows > n:
        return ufunc.reduce(x.T.copy(), axis=0)[:, None]
    return ufunc.reduce(x, axis=axis, keepdims=True)


def _shifted(x, axis):
    """x - max(x) along axis (the max of an all -inf row taken as 0, so that the row gives
    NaN as in PyTorch; a row with +inf gives NaN too), as a new array."""
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    if x.size == 0:  # no max to shift by (an empty row or no rows): an empty result
        return np.empty(x.shape, x.dtype)
    m = _reduce_rows(np.maximum, x, axis)
    m[m == -np.inf] = 0
    return np.subtract(x, m)


@_as_1d
def _softmax_fwd(x, axis):
    e = _shifted(x, axis)
    np.exp(e, out=e)
    with np.errstate(invalid="ignore"):  # an all -inf row is NaN, silently, as in PyTorch
        e /= _reduce_rows(np.add, e, axis)
    return e


def _log_sum_exp(z, axis):
    with np.errstate(divide="ignore"):
        return np.log(_reduce_rows(np.add, np.exp(z), axis))


@_as_1d
def _log_softmax_fwd(x, axis):
    z = _shifted(x, axis)
    with np.errstate(invalid="ignore"):
        z -= _log_sum_exp(z, axis)
    return z


def _softmax_cost(extra):
    def cost(out, ins, p):  # amax, sub, exp, sum, then div (softmax) or log + sub
        n, rows = size(out), size(out) // max(out[p[0]], 1) if out else 1
        return (0, 5 * n - 2 * rows + extra * rows, n + extra * rows)
    return cost


def _row_sum(t, axis):
    return t if t.ndim == 0 else t.sum(axis, keepdim=True)  # a 0-d tensor is its own row


def _softmax_vjp(y, g, axis):
    return (g - _row_sum(g * y, axis)) * y


def _log_softmax_vjp(out, g, axis):
    return g - out.exp() * _row_sum(g, axis)


SOFTMAX = prim(
    "softmax", _softmax_fwd, uses=((-1,),), cost=_softmax_cost(0),
    vjp=lambda n, g, i: _softmax_vjp(n.out(), g, n.params[0]),
    jvp=lambda p, t: _softmax_vjp(p.out(), t[0], p.params[0]),
    meta=S.floating,
)
LOG_SOFTMAX = prim(
    "log_softmax", _log_softmax_fwd, uses=((-1,),), cost=_softmax_cost(1),
    vjp=lambda n, g, i: _log_softmax_vjp(n.out(), g, n.params[0]),
    jvp=lambda p, t: t[0] - _row_sum(p.out().exp() * t[0], p.params[0]),
    meta=S.floating,
)


# cross-entropy of (N, C) logits against class indices (a static param, like an index), fused
# as PyTorch's is: forward is log_softmax and the pick; the gradient is softmax - onehot.

def _cross_entropy_fwd(x, target, reduction):
    z = _shifted(x, 1)  # log_softmax, computed only at the picked entries
    with np.errstate(invalid="ignore"):
        picked = z[np.arange(x.shape[0]), target] - _log_sum_exp(z, 1)[:, 0]
    if reduction == "mean":
        return -(picked.sum() / x.shape[0])
    return -picked.sum() if reduction == "sum" else -picked


def _cross_entropy_cost(out, ins, p):
    n_rows, n = ins[0][0], size(ins[0])
    log_softmax = 5 * n - n_rows  # amax, sub, exp, sum, log, sub (see _softmax_cost)
    pick = {"mean": n_rows + 1, "sum": n_rows, "none": n_rows}[p[1]]  # sum, / N, negate
    return (0, log_softmax + pick, n + n_rows)


def _onehot(x, target):
    hot = zeros_like(D._data(x))
    if type(hot) is np.ndarray:  # a meta array has no data to set
        hot[np.arange(hot.shape[0]), target] = 1
    return hot


def _per_row(g, reduction, n_rows):
    """The loss's gradient as a factor per row of the logits."""
    if reduction == "mean":
        return g / n_rows
    return g if reduction == "sum" else g.reshape(n_rows, 1)


def _cross_entropy_vjp(n, g, i):
    x, (target, reduction) = n.saved[0], n.params
    return (_call(SOFTMAX, x, params=(1,)) - _onehot(x, target)) * _per_row(
        g, reduction, n.in_shapes[0][0])


def _cross_entropy_jvp(p, t):
    x, (target, reduction) = p.saved[0], p.params
    rows = np.arange(np.shape(D._data(x))[0])
    per = (_call(SOFTMAX, x, params=(1,)) * t[0]).sum(1) - _call(
        INDEX, t[0], params=((rows, target),))
    if reduction == "mean":
        return per.sum() / len(rows)
    return per.sum() if reduction == "sum" else per


CROSS_ENTROPY = prim(
    "cross_entropy", _cross_entropy_fwd, uses=((0,),), cost=_cross_entropy_cost,
    vjp=_cross_entropy_vjp, jvp=_cross_entropy_jvp, meta=S.cross_entropy,
)

# ---------------------------------------------------------------- contractions

def _matmul_fwd(a, b):
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"inner dimensions {a.shape[-1]} and {b.shape[-2]} differ")
    return np.matmul(a, b)


def _gemm(a, b):
    """a @ b for 2-D arrays, for F.linear's activations. A result wider than tall is computed
    as b.T @ a.T into a Fortran-ordered array: OpenBLAS runs such shapes up to 1.6x faster
    that way round (docs/performance.md). Not for weight gradients: an optimizer update that
    mixes a Fortran-ordered gradient with a C-ordered parameter is 4x slower."""
    m, n = a.shape[0], b.shape[1]
    if S.transposed_gemm(m, n, a.dtype, b.dtype):
        out = np.empty((m, n), dtype=a.dtype, order="F")
        np.matmul(b.T, a.T, out=out.T)
        return out
    return np.matmul(a, b)


def _matmul_cost(out, ins, p):
    return (2 * size(out) * ins[0][-1], 0, 0)


MATMUL = prim(
    "matmul", _matmul_fwd, uses=((1,), (0,)), cost=_matmul_cost,
    vjp=lambda n, g, i: g @ n.saved[1].swapaxes(-1, -2) if i == 0 else
    n.saved[0].swapaxes(-1, -2) @ g,
    jvp=lambda p, t: _tadd(
        None if t[0] is None else t[0] @ p.saved[1],
        None if t[1] is None else p.saved[0] @ t[1],
    ),
    meta=S.matmul,
)



def _linear_fwd(x, w, b=None):
    """x @ w.T (+ b) over x's last dim, as one 2-D GEMM with the leading dims merged and
    the bias added in place."""
    if x.shape[-1] != w.shape[-1]:
        raise ValueError(f"the input's last dim {x.shape[-1]} differs from the weight's "
                         f"in_features {w.shape[-1]}")
    if x.ndim == 2:
        out = _gemm(x, w.T)
    else:  # into an array of the final shape, which owns its memory (the ledger tracks it)
        out = np.empty(x.shape[:-1] + (w.shape[0],), dtype=np.result_type(x, w))
        np.matmul(x.reshape(-1, x.shape[-1]), w.T, out=out.reshape(-1, w.shape[0]))
    if b is None:
        return out
    if b.shape != (w.shape[0],):
        raise ValueError(f"bias of shape {b.shape}, expected ({w.shape[0]},)")
    if np.result_type(out, b) != out.dtype:
        return out + b
    out += b
    return out


def _linear_cost(out, ins, p):
    bias = size(out) if len(ins) == 3 else 0
    return (2 * size(out) * ins[0][-1], bias, 0)


def _linear_vjp(n, g, i):
    if i == 0:  # dX = g @ W
        return _call(LINEAR, g, _call(PERMUTE, n.saved[1], params=((1, 0),)))
    if i == 2:  # db: g summed over every leading dim
        return g if g.ndim == 1 else g.sum(tuple(range(g.ndim - 1)))
    x = n.saved[0]  # dW = g^T x, every leading dim contracted in one GEMM (no batched dW)
    if g.ndim != 2:
        g, x = g.reshape(-1, g.shape[-1]), x.reshape(-1, x.shape[-1])
    return _call(MATMUL, _call(PERMUTE, g, params=((1, 0),)), x)


def _linear_jvp(p, t):
    x, w = p.saved[0], p.saved[1]
    return _tadd(
        None if t[0] is None else _call(LINEAR, t[0], w),
        None if t[1] is None else _call(LINEAR, x, t[1]),
        t[2] if len(t) == 3 else None,
    )


# F.linear: x (..., in), weight (out, in), optional bias (out,), like PyTorch's addmm/mm.
# Billed under the name matmul (the bias add as other FLOPs); a primitive of its own so that
# dW comes out as one contiguous GEMM and the bias needs no second pass over the output.
LINEAR = prim("matmul", _linear_fwd, key="linear", uses=((1,), (0,), ()), cost=_linear_cost,
              vjp=_linear_vjp, jvp=_linear_jvp, meta=S.linear)


def _einsum_sizes(spec, in_shapes):
    sizes = {}
    for sub, shape in zip(spec.split("->")[0].split(","), in_shapes, strict=True):
        for c, s in zip(sub, shape, strict=True):
            sizes[c] = s
    return sizes


def _einsum_cost(out, ins, p):
    spec = p[0]
    lhs, rhs = spec.split("->")
    sizes = _einsum_sizes(spec, ins)
    everything = size(sizes.values())
    contracted = set(lhs.replace(",", "")) - set(rhs)
    if len(ins) == 2 and contracted:
        return (2 * everything, 0, 0)
    return (0, everything if len(ins) == 2 else max(everything - size(out), 0), 0)


def _einsum_vjp(n, g, i):
    lhs, rhs = n.params[0].split("->")
    subs = lhs.split(",")
    target = subs[i]
    shape = n.in_shapes[i]
    others = [(s, n.saved[j]) for j, s in enumerate(subs) if j != i]
    have = set(rhs).union(*(set(s) for s, _ in others))
    present = "".join(c for c in target if c in have)
    spec = ",".join([rhs] + [s for s, _ in others]) + "->" + present
    grad = _call(EINSUM, g, *(t for _, t in others), params=(spec,))
    if present != target:  # an index summed away within operand i alone: broadcast back
        sizes = dict(zip(target, shape, strict=True))
        grad = grad.reshape(tuple(sizes[c] if c in have else 1 for c in target))
        grad = grad.broadcast_to(shape)
    return grad


def _einsum_jvp(p, t):
    lhs, rhs = p.params[0].split("->")
    terms = []
    for i, ti in enumerate(t):
        if ti is not None:
            args = list(p.saved)
            args[i] = ti
            terms.append(_call(EINSUM, *args, params=p.params))
    return _tadd(*terms)


def _einsum_uses(k):
    return tuple(tuple(j for j in range(k) if j != i) for i in range(k))


EINSUM = prim("einsum", lambda *a: np.einsum(a[-1], *a[:-1], optimize=len(a) > 2),
              uses=_einsum_uses(2), cost=_einsum_cost, vjp=_einsum_vjp, jvp=_einsum_jvp,
                  meta=S.einsum)
EINSUM1 = prim("einsum", key="einsum1", forward=lambda *a: np.einsum(a[-1], *a[:-1]),
               uses=_einsum_uses(1), cost=_einsum_cost, vjp=_einsum_vjp, jvp=_einsum_jvp,
                   meta=S.einsum)


# ---------------------------------------------------------------- shape and movement

def _reshape_fwd(x, shape):
    return np.reshape(x, shape)


RESHAPE = prim(
    "reshape", _reshape_fwd, uses=((),), view=True,
    vjp=lambda n, g, i: g.reshape(n.in_shapes[0]),
    jvp=lambda p, t: t[0].reshape(p.params[0]),
    meta=S.reshape,
)
PERMUTE = prim(
    "permute", lambda x, axes: np.transpose(x, axes), uses=((),), view=True,
    vjp=lambda n, g, i: _call(PERMUTE, g, params=(tuple(np.argsort(n.params[0])),)),
    jvp=lambda p, t: _call(PERMUTE, t[0], params=p.params),
    meta=S.permute,
)
def _expand_fwd(x, shape):
    """np.broadcast_to, built directly as a strided view when x is contiguous (8x faster)."""
    lead = len(shape) - x.ndim
    if type(x) is not np.ndarray or not x.flags.c_contiguous or lead < 0:
        return np.broadcast_to(x, shape)
    strides = [0] * lead
    for n_in, stride, n_out in zip(x.shape, x.strides, shape[lead:], strict=True):
        if n_in == n_out:
            strides.append(stride)
        elif n_in == 1:
            strides.append(0)
        else:
            return np.broadcast_to(x, shape)  # raises NumPy's error
    out = np.ndarray(shape, x.dtype, x, 0, tuple(strides))
    out.flags.writeable = False
    return out


EXPAND = prim(
    "expand", _expand_fwd, uses=((),), view=True,
    vjp=lambda n, g, i: g,  # the engine sums it back to the input's shape
    jvp=lambda p, t: t[0].broadcast_to(p.params[0]),
    meta=S.expand,
)
FLIP = prim(
    "flip", lambda x, axes: np.flip(x, axes), uses=((),), view=True,
    vjp=lambda n, g, i: _call(FLIP, g, params=n.params),
    jvp=lambda p, t: _call(FLIP, t[0], params=p.params),
    meta=S.flip,
)
ROLL = prim(
    "roll", lambda x, shifts, axes: np.roll(x, shifts, axes), uses=((),),
    vjp=lambda n, g, i: _call(ROLL, g, params=(tuple(-s for s in n.params[0]), n.params[1])),
    jvp=lambda p, t: _call(ROLL, t[0], params=p.params),
    meta=S.roll,
)


def _index_fwd(x, idx):
    return x[idx]


def _index_put_fwd(v, shape, idx, advanced):
    out = np.zeros(shape, dtype=v.dtype)
    if not advanced:
        out[idx] = v
    elif (len(idx) == 1 and type(idx[0]) is np.ndarray and idx[0].dtype.kind in "iu"
          and idx[0].size):
        _add_rows(out, idx[0], v)
    else:
        np.add.at(out, idx, v)
    return out


def _add_rows(out, rows, v):
    """np.add.at(out, rows, v) for an integer array indexing axis 0 (an embedding's
    gradient), 3x faster: the rows sorted, each run of equal rows summed by np.add.reduceat
    (whose rounding may differ from np.add.at's strictly sequential sums)."""
    flat = rows.reshape(-1)
    flat = np.where(flat < 0, flat + out.shape[0], flat)
    order = np.argsort(flat, kind="stable")
    ordered = flat[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    values = v.reshape((flat.size,) + out.shape[1:])[order]
    out[ordered[starts]] += np.add.reduceat(values, starts, axis=0)


def _index_vjp(n, g, i):
    return _call(INDEX_PUT, g, params=(n.in_shapes[0], n.params[0], n.op is INDEX))


# basic indexing (ints, slices, None, Ellipsis) is a view; integer/boolean arrays copy
GETITEM = prim(
    "getitem", _index_fwd, uses=((),), view=True, vjp=_index_vjp,
    jvp=lambda p, t: _call(GETITEM, t[0], params=p.params),
    meta=S.getitem,
)
INDEX = prim(
    "index", _index_fwd, uses=((),), vjp=_index_vjp,
    jvp=lambda p, t: _call(INDEX, t[0], params=p.params),
    meta=S.index,
)
INDEX_PUT = prim(
    "index_put", _index_put_fwd, uses=((),),
    cost=lambda out, ins, p: (0, size(ins[0]) if p[2] else 0, 0),
    vjp=lambda n, g, i: _call(INDEX if n.params[2] else GETITEM, g, params=(n.params[1],)),
    jvp=lambda p, t: _call(INDEX_PUT, t[0], params=p.params),
    meta=S.index_put,
)


def _cat_fwd(*a):
    return np.concatenate(a[:-1], axis=a[-1])


def _cat_vjp(n, g, i):
    axis = n.params[0]
    start = sum(s[axis] for s in n.in_shapes[:i])
    idx = (slice(None),) * axis + (slice(start, start + n.in_shapes[i][axis]),)
    return _call(GETITEM, g, params=(idx,))


def _cat_jvp(p, t):
    parts = [ti if ti is not None else _zeros_like(x) for x, ti in zip(p.saved, t, strict=True)]
    return _call(CAT, *parts, params=p.params)


def _zeros_like(x):
    data = D._data(x)
    return D.Tensor(zeros_like(data if hasattr(data, "dtype") else np.asarray(data)))


CAT = prim("cat", _cat_fwd, uses=(), vjp=_cat_vjp, jvp=_cat_jvp, meta=S.cat)


def _pad_fwd(x, widths, value):
    return np.pad(x, widths, constant_values=value)


def _pad_vjp(n, g, i):
    idx = tuple(slice(lo, lo + s) for (lo, _), s in zip(n.params[0], n.in_shapes[0], strict=True))
    return _call(GETITEM, g, params=(idx,))


PAD = prim(
    "pad", _pad_fwd, uses=((),), vjp=_pad_vjp,
    jvp=lambda p, t: _call(PAD, t[0], params=(p.params[0], 0)),
    meta=S.pad,
)


# ---------------------------------------------------------------- sliding windows (conv, pool)

def _unfold_fwd(x, kh, kw, stride, dilation):
    """(N, C, H, W) -> (N, C, kh, kw, Ho, Wo): every window, copied out (im2col)."""
    sh, sw = stride
    dh, dw = dilation
    span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    win = sliding_window_view(x, (span_h, span_w), axis=(2, 3))
    win = win[:, :, ::sh, ::sw, ::dh, ::dw]  # (N, C, Ho, Wo, kh, kw)
    return np.ascontiguousarray(win.transpose(0, 1, 4, 5, 2, 3))


def _fold_fwd(cols, in_shape, kh, kw, stride, dilation):
    """Adjoint of unfold: add every window back into an (N, C, H, W) array."""
    sh, sw = stride
    dh, dw = dilation
    out = np.zeros(in_shape, dtype=cols.dtype)
    ho, wo = cols.shape[4], cols.shape[5]
    for i in range(kh):
        for j in range(kw):
            r, c = i * dh, j * dw
            rows, cs = slice(r, r + sh * (ho - 1) + 1, sh), slice(c, c + sw * (wo - 1) + 1, sw)
            out[:, :, rows, cs] += cols[:, :, i, j]
    return out


UNFOLD = prim(
    "unfold", _unfold_fwd, uses=((),),
    vjp=lambda n, g, i: _call(FOLD, g, params=(n.in_shapes[0],) + n.params),
    jvp=lambda p, t: _call(UNFOLD, t[0], params=p.params),
    meta=S.unfold,
)
FOLD = prim(
    "fold", _fold_fwd, uses=((),),
    cost=lambda out, ins, p: (0, size(ins[0]), 0),
    vjp=lambda n, g, i: _call(UNFOLD, g, params=n.params[1:]),
    jvp=lambda p, t: _call(FOLD, t[0], params=p.params),
    meta=S.fold,
)


_missing = sorted(op.name for op in REGISTRY.values() if op.meta is None)
if _missing:  # pragma: no cover - guarded by a test as well
    raise RuntimeError(f"primitives without a shape rule: {_missing}")
