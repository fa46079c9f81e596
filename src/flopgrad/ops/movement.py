"""Shape and movement: views (reshape, permute, expand, flip, basic indexing) and copies
(roll, advanced indexing and its adjoint, cat, pad, unfold/fold for conv and pooling)."""

from __future__ import annotations

import operator

import numpy as np

from flopgrad import costs as C
from flopgrad import kernels as K
from flopgrad import shapes as S
from flopgrad.ops._op import _call, _zeros_like, prim

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

EXPAND = prim(
    "expand", K.expand, uses=((),), view=True,
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


def _index_vjp(n, g, i):
    return _call(INDEX_PUT, g, params=(n.in_shapes[0], n.params[0], n.op is INDEX))


# basic indexing (ints, slices, None, Ellipsis) is a view; integer/boolean arrays copy
GETITEM = prim(
    "getitem", operator.getitem, uses=((),), view=True, vjp=_index_vjp,
    jvp=lambda p, t: _call(GETITEM, t[0], params=p.params),
    meta=S.getitem,
)
INDEX = prim(
    "index", operator.getitem, uses=((),), vjp=_index_vjp,
    jvp=lambda p, t: _call(INDEX, t[0], params=p.params),
    meta=S.index,
)
INDEX_PUT = prim(
    "index_put", K.index_put, uses=((),),
    cost=C.index_put,
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


UNFOLD = prim(
    "unfold", K.unfold, uses=((),),
    vjp=lambda n, g, i: _call(FOLD, g, params=(n.in_shapes[0],) + n.params),
    jvp=lambda p, t: _call(UNFOLD, t[0], params=p.params),
    meta=S.unfold,
)
FOLD = prim(
    "fold", K.fold, uses=((),),
    cost=C.fold,
    vjp=lambda n, g, i: _call(UNFOLD, g, params=n.params[1:]),
    jvp=lambda p, t: _call(FOLD, t[0], params=p.params),
    meta=S.fold,
)
