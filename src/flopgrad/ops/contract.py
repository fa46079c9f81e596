"""Contractions: matmul and einsum (the tensor FLOPs; F.linear is in fused)."""

from __future__ import annotations

import numpy as np

from flopgrad import costs as C
from flopgrad import kernels as K
from flopgrad import shapes as S
from flopgrad.ops._op import _call, _tadd, prim

MATMUL = prim(
    "matmul", K.matmul, uses=((1,), (0,)), cost=C.matmul,
    vjp=lambda n, g, i: g @ n.saved[1].swapaxes(-1, -2) if i == 0 else
    n.saved[0].swapaxes(-1, -2) @ g,
    jvp=lambda p, t: _tadd(
        None if t[0] is None else t[0] @ p.saved[1],
        None if t[1] is None else p.saved[0] @ t[1],
    ),
    meta=S.matmul,
)


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


def _einsum(*a):
    return np.einsum(a[-1], *a[:-1], optimize=len(a) > 2)


def _einsum1(*a):
    return np.einsum(a[-1], *a[:-1])


EINSUM = prim("einsum", K.in_float32(_einsum),
              uses=_einsum_uses(2), cost=C.einsum, vjp=_einsum_vjp, jvp=_einsum_jvp,
              meta=S.einsum)
# one operand (a reduction or a permutation): no contraction path to optimise
EINSUM1 = prim("einsum1", K.in_float32(_einsum1), billed_as="einsum",
               uses=_einsum_uses(1), cost=C.einsum, vjp=_einsum_vjp, jvp=_einsum_jvp,
               meta=S.einsum)
