"""Reductions: sum, amax/amin, max()/min() of everything, prod, cumsum, argmax/argmin,
all/any."""

from __future__ import annotations

import numpy as np

from flopgrad import costs as C
from flopgrad import dispatch as D
from flopgrad import kernels as K
from flopgrad import shapes as S
from flopgrad.ops._op import _call, prim
from flopgrad.ops.elementwise import CAST
from flopgrad.ops.movement import EXPAND, FLIP, RESHAPE

# ---------------------------------------------------------------- reductions

def _keepdims_shape(in_shape, axes):
    if axes is None:
        return (1,) * len(in_shape)
    return tuple(1 if d in axes else s for d, s in enumerate(in_shape))


def _unreduce(n, g):
    """Broadcast a reduction's output gradient back over the reduced axes."""
    in_shape = n.in_shapes[0]
    axes, keepdims = n.params[0], n.params[1]
    if not keepdims and axes is not None:
        g = D.apply(RESHAPE, (g,), (_keepdims_shape(in_shape, axes),))
    return D.apply(EXPAND, (g,), (in_shape,))


SUM = prim(
    "sum", K.reduce_sum, uses=((),), cost=C.reduction,
    vjp=lambda n, g, i: _unreduce(n, g),
    jvp=lambda p, t: _call(SUM, t[0], params=p.params),
    meta=S.reduce_sum,
)
# The sum of a float16 or bfloat16 tensor as float32 (mean and var divide it before
# rounding, as PyTorch's kernels do); billed as a sum. params: axes, keepdims and the input's
# dtype, to which its gradient is rounded before it is broadcast back.
SUM_F32 = prim(
    "sum_f32", lambda x, axes, keepdims, dtype: x.astype(K.F32).sum(axis=axes, keepdims=keepdims),
    billed_as="sum", uses=((),), cost=C.reduction,
    vjp=lambda n, g, i: _unreduce(n, _call(CAST, g, params=(n.params[2], g._data.dtype))),
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
    return type(a) is np.ndarray and a.dtype.kind in "fV" and bool(np.isnan(a).any())


def _extreme_vjp(n, g, i):
    return _unreduce(n, g) * _extreme_weights(n)


def _extreme_jvp(p, t):
    return _call(SUM, t[0] * _extreme_weights(p), params=p.params)


AMAX = prim("amax", lambda x, axes, keepdims: np.amax(x, axis=axes, keepdims=keepdims),
            uses=((0, -1),), cost=C.reduction, vjp=_extreme_vjp, jvp=_extreme_jvp,
                meta=S.reduce_same)
AMIN = prim("amin", lambda x, axes, keepdims: np.amin(x, axis=axes, keepdims=keepdims),
            uses=((0, -1),), cost=C.reduction, vjp=_extreme_vjp, jvp=_extreme_jvp,
                meta=S.reduce_same)
# max() and min() without a dim: amax/amin of everything, whose gradient at a NaN result
# goes (evenly) to the NaNs, as PyTorch's max()/min() do (its amax/amin give NaN there)
MAX_ALL = prim("max_all", AMAX.forward, billed_as="amax", uses=((0, -1),), cost=C.reduction,
               vjp=_extreme_vjp, jvp=_extreme_jvp, meta=S.reduce_same)
MIN_ALL = prim("min_all", AMIN.forward, billed_as="amin", uses=((0, -1),), cost=C.reduction,
               vjp=_extreme_vjp, jvp=_extreme_jvp, meta=S.reduce_same)


def _no_higher_order(name):
    def vjp(n, g, i):
        raise NotImplementedError(
            f"{name}: higher-order gradients of prod are not implemented; "
            "take first-order gradients only, or write prod as exp(sum(log(x))) for x > 0")
    return vjp


PROD_OTHERS = prim("prod_others", K.prod_others, uses=((),), cost=C.prod_others,
                   vjp=_no_higher_order("prod"), meta=S.prod_others)
PROD = prim(
    "prod", lambda x, axes, keepdims: np.prod(x, axis=axes, keepdims=keepdims),
    uses=((0,),), cost=C.reduction,
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
    cost=C.cumsum,
    vjp=_cumsum_vjp,
    jvp=lambda p, t: _call(CUMSUM, t[0], params=p.params),
    meta=S.cumsum,
)

ARGMAX = prim("argmax", lambda x, axis, keepdims: np.argmax(x, axis=axis, keepdims=keepdims),
              cost=C.reduction, meta=S.arg_reduce)
ARGMIN = prim("argmin", lambda x, axis, keepdims: np.argmin(x, axis=axis, keepdims=keepdims),
              cost=C.reduction, meta=S.arg_reduce)
ALL = prim("all", lambda x, axes, keepdims: np.all(x, axis=axes, keepdims=keepdims),
           cost=C.reduction,
               meta=S.logical_reduce)  # logical reductions: no gradient, n - 1 ANDs/ORs per output
ANY = prim("any", lambda x, axes, keepdims: np.any(x, axis=axes, keepdims=keepdims),
           cost=C.reduction, meta=S.logical_reduce)
