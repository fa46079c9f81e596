"""Fused primitives: one kernel where PyTorch has one (linear, softmax, log_softmax,
cross_entropy, layer_norm and its input gradient, gelu and its derivative), each billed as
the composite it replaces would be."""

from __future__ import annotations

import math

import numpy as np

from flopgrad import costs as C
from flopgrad import dispatch as D
from flopgrad import kernels as K
from flopgrad import shapes as S
from flopgrad.backend import zeros_like
from flopgrad.ops._op import _call, _tadd, prim, unary
from flopgrad.ops.contract import MATMUL
from flopgrad.ops.movement import INDEX, PERMUTE


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


LAYER_NORM = prim("layer_norm", K.layer_norm, uses=((0, 1), (0,), ()),
                  cost=C.layer_norm, vjp=_layer_norm_vjp, jvp=_layer_norm_jvp,
                  meta=S.layer_norm)


# Used by layer_norm's backward when nothing will differentiate the gradient; otherwise the
# backward is the composite of differentiable ops above.
LAYER_NORM_DX = prim("layer_norm_dx", K.layer_norm_dx, cost=C.layer_norm_dx,
                     meta=S.layer_norm_dx)


def _gelu_grad2(n):
    """d^2 gelu / dx^2 with flopgrad ops (so higher orders stay differentiable)."""
    x = n.saved[0]
    if n.params[0] == "tanh":
        du = K.GELU_C * (1.0 + (3 * K.GELU_A) * x * x)
        t = (K.GELU_C * (x + K.GELU_A * x * x * x)).tanh()
        return (1.0 - t * t) * (du - x * t * du * du + (3 * K.GELU_A * K.GELU_C) * x * x)
    return (2.0 - x * x) * (-0.5 * x * x).exp() * (1.0 / math.sqrt(2.0 * math.pi))


GELU = unary("gelu", K.gelu, (0,), lambda n: _call(GELU_GRAD, n.saved[0], params=n.params),
             C.gelu, S.floating)
GELU_GRAD = unary("gelu_grad", K.gelu_grad, (0,), _gelu_grad2, C.gelu_grad, S.floating)


def _row_sum(t, axis):
    return t if t.ndim == 0 else t.sum(axis, keepdim=True)  # a 0-d tensor is its own row


def _softmax_vjp(y, g, axis):
    return (g - _row_sum(g * y, axis)) * y


def _log_softmax_vjp(out, g, axis):
    return g - out.exp() * _row_sum(g, axis)


SOFTMAX = prim(
    "softmax", K.softmax, uses=((-1,),), cost=C.softmax,
    vjp=lambda n, g, i: _softmax_vjp(n.out(), g, n.params[0]),
    jvp=lambda p, t: _softmax_vjp(p.out(), t[0], p.params[0]),
    meta=S.floating,
)
LOG_SOFTMAX = prim(
    "log_softmax", K.log_softmax, uses=((-1,),), cost=C.log_softmax,
    vjp=lambda n, g, i: _log_softmax_vjp(n.out(), g, n.params[0]),
    jvp=lambda p, t: t[0] - _row_sum(p.out().exp() * t[0], p.params[0]),
    meta=S.floating,
)


# cross-entropy of (N, C) logits against class indices (a static param, like an index), fused
# as PyTorch's is: forward is log_softmax and the pick; the gradient is softmax - onehot.


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
    "cross_entropy", K.cross_entropy, uses=((0,),), cost=C.cross_entropy,
    vjp=_cross_entropy_vjp, jvp=_cross_entropy_jvp, meta=S.cross_entropy,
)


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
LINEAR = prim("linear", K.linear, billed_as="matmul", uses=((1,), (0,), ()), cost=C.linear,
              vjp=_linear_vjp, jvp=_linear_jvp, meta=S.linear)
