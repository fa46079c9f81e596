"""Function transforms: jvp (forward mode), vjp, jacrev, jacfwd and hvp.

They compose: a jacobian's inputs stay connected to an enclosing graph or tangent, so
jacfwd(jacrev(f)) is the Hessian.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from flopgrad import ops as O
from flopgrad.autograd.engine import grad
from flopgrad.autograd.grad_mode import enable_grad
from flopgrad.dispatch import apply, override
from flopgrad.dispatch import mode as _mode
from flopgrad.tensor import Tensor, stack

__all__ = ["jvp", "vjp", "jacrev", "jacfwd", "hvp"]


def _alias(p: Tensor) -> Tensor:
    """A fresh tensor on p's values that can carry a tangent without touching p."""
    if p.requires_grad and _mode().grad_enabled:
        return apply(O.RESHAPE, (p,), (p.shape,))  # stays connected to p's graph, copies nothing
    return p.detach()


def _as_tuple(x) -> tuple:
    return tuple(x) if isinstance(x, list | tuple) else (x,)


def _tensor(x) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)


def _or_zeros(g: Tensor | None, like: Tensor) -> Tensor:
    """g, or zeros like `like` where no gradient (or tangent) reached it."""
    return g if g is not None else Tensor(np.zeros_like(like._data))


def _basis(like: np.ndarray, shape: tuple) -> Iterator[Tensor]:
    """One one-hot tensor of `shape` per element of `like` (with its dtype), in order."""
    for j in range(like.size):
        onehot = np.zeros(like.size, dtype=like.dtype)
        onehot[j] = 1
        yield Tensor(onehot.reshape(shape))


def jvp(fn: Callable, primals: Tensor | Sequence[Tensor],
        tangents: Tensor | Sequence[Tensor]) -> tuple:
    """Forward mode: (fn(*primals), J @ tangents), like torch.func.jvp.

    >>> import flopgrad as fg
    >>> out, t = fg.jvp(lambda x: x ** 3, (fg.tensor(2.0),), (fg.tensor(1.0),))
    >>> float(t)
    12.0
    """
    if _mode().forward_ad:
        raise RuntimeError("jvp: nested forward mode is not supported; use jacrev inside jvp")
    primals, tangents = _as_tuple(primals), _as_tuple(tangents)
    if len(primals) != len(tangents):
        raise ValueError(f"jvp: {len(primals)} primals but {len(tangents)} tangents")
    args = []
    for p, t in zip(primals, tangents, strict=True):
        p, t = _tensor(p), _tensor(t)
        if t.shape != p.shape:
            raise ValueError(f"jvp: tangent shape {t.shape} differs from primal shape {p.shape}")
        a = _alias(p)
        a._tangent = t.to(p.dtype) if t.dtype != p.dtype else t
        args.append(a)
    with override(forward_ad=1):
        out = fn(*args)
    outs = _as_tuple(out)
    tans = tuple(_or_zeros(o._tangent, o) for o in outs)
    for o in outs:  # only after reading them all: an output may appear twice
        o._tangent = None
    if isinstance(out, list | tuple):
        return out, tans
    return out, tans[0]


def vjp(fn: Callable, *primals: Tensor) -> tuple[Any, Callable]:
    """Reverse mode: (fn(*primals), vjp_fn) where vjp_fn(cotangent) -> gradients per primal.

    >>> import flopgrad as fg
    >>> out, f = fg.vjp(lambda x: x * 2, fg.ones(3))
    >>> f(fg.ones(3))
    (tensor([2., 2., 2.]),)
    """
    args = [_leaf(p) for p in primals]
    with enable_grad():
        out = fn(*args)

    def vjp_fn(cotangent):
        outs, cots = _as_tuple(out), _as_tuple(cotangent)
        if len(outs) != len(cots):
            raise ValueError(f"vjp: {len(outs)} outputs but {len(cots)} cotangents")
        pairs = [(o, c) for o, c in zip(outs, cots, strict=True) if o.requires_grad]
        gs = [None] * len(args)
        if pairs:
            gs = grad([o for o, _ in pairs], args, grad_outputs=[c for _, c in pairs],
                      retain_graph=True, allow_unused=True)
        return tuple(_or_zeros(g, a) for g, a in zip(gs, args, strict=True))

    return _detach_all(out), vjp_fn


def _leaf(p) -> Tensor:
    p = _tensor(p)
    a = p.detach()
    a._tangent = p._tangent
    if a._data.dtype.kind in "fV":
        a.requires_grad = True
    return a


def _detach_all(out):
    if isinstance(out, list | tuple):
        return type(out)(o.detach() for o in out)
    return out.detach()


def _argnums(argnums) -> tuple:
    return (argnums,) if isinstance(argnums, int) else tuple(argnums)


def _wrt(p) -> Tensor:
    """An input to differentiate: a fresh leaf, or (inside another jacobian, jvp or grad)
    a view that stays connected to p's graph and tangent so that jacobians compose."""
    p = _tensor(p)
    if p.requires_grad or p._tangent is not None:
        with enable_grad():
            a = apply(O.RESHAPE, (p,), (p.shape,))
        if not a.requires_grad:
            a.requires_grad = True
        return a
    return _leaf(p)


def jacrev(fn: Callable, argnums: int | tuple = 0) -> Callable:
    """Jacobian by reverse mode: one vjp per output element. Shape out.shape + in.shape.

    Arguments not in `argnums` are passed to fn unchanged. Composes with itself and with
    jacfwd (e.g. jacfwd(jacrev(f)) is the Hessian).

    >>> import flopgrad as fg
    >>> fg.jacrev(lambda x: x * x)(fg.tensor([1.0, 2.0])).tolist()
    [[2.0, 0.0], [0.0, 4.0]]
    """
    nums = _argnums(argnums)

    def jac(*args):
        args = list(args)
        nested = any(isinstance(args[k], Tensor) and args[k].requires_grad for k in nums)
        for k in nums:
            args[k] = _wrt(args[k])
        wrt = [args[k] for k in nums]
        with enable_grad():
            out = fn(*args)
            rows = [[] for _ in wrt]
            flat = out.reshape(-1)
            for onehot in _basis(out._data, flat.shape) if out.requires_grad else ():
                gs = grad(flat, wrt, grad_outputs=onehot, retain_graph=True,
                          create_graph=nested, allow_unused=True)
                for r, g, w in zip(rows, gs, wrt, strict=True):
                    r.append(_or_zeros(g, w))
            jacs = tuple(
                stack(r).reshape(out.shape + w.shape) if r else
                Tensor(np.zeros(out.shape + w.shape, dtype=w.dtype))
                for r, w in zip(rows, wrt, strict=True))
        return jacs[0] if isinstance(argnums, int) else jacs

    return jac


def jacfwd(fn: Callable, argnums: int | tuple = 0) -> Callable:
    """Jacobian by forward mode: one jvp per input element. Shape out.shape + in.shape.

    Arguments not in `argnums` are passed to fn unchanged. jacrev(jacfwd(f)) composes;
    forward mode cannot be nested (jacfwd(jacfwd(f)) raises).

    >>> import flopgrad as fg
    >>> fg.jacfwd(lambda x: x * x)(fg.tensor([1.0, 2.0])).tolist()
    [[2.0, 0.0], [0.0, 4.0]]
    """
    nums = _argnums(argnums)

    def jac(*args):
        jacs = []
        for k in nums:
            x = _tensor(args[k])

            def fn_k(xk, k=k):
                return fn(*args[:k], xk, *args[k + 1:])

            cols = []
            out_shape = None
            for onehot in _basis(x._data, x.shape):
                out, t = jvp(fn_k, (x,), (onehot,))
                out_shape = out.shape
                cols.append(t)
            if out_shape is None:
                out_shape = fn_k(x).shape
                jacs.append(Tensor(np.zeros(out_shape + x.shape, dtype=x.dtype)))
                continue
            jacs.append(stack(cols, -1).reshape(out_shape + x.shape))
        return jacs[0] if isinstance(argnums, int) else tuple(jacs)

    return jac


def hvp(fn: Callable, primals: Tensor | Sequence[Tensor],
        tangents: Tensor | Sequence[Tensor]) -> tuple:
    """Hessian-vector product by forward-over-reverse: (fn(*primals), H @ tangents).

    Like torch.autograd.functional.hvp, H @ tangents is a tuple when primals is one, else a
    tensor.

    >>> import flopgrad as fg
    >>> _, hv = fg.hvp(lambda x: (x ** 3).sum(), (fg.tensor([1.0, 2.0]),), (fg.ones(2),))
    >>> hv[0].tolist()
    [6.0, 12.0]
    """
    single = not isinstance(primals, list | tuple)
    primals, tangents = _as_tuple(primals), _as_tuple(tangents)
    value = []

    def gradient(*xs):
        leaves = [x.requires_grad_() if x.is_leaf else x for x in xs]
        with enable_grad():
            out = fn(*leaves)
        value.append(out.detach())
        gs = grad(out, leaves, allow_unused=True)
        return tuple(_or_zeros(g, x) for g, x in zip(gs, leaves, strict=True))

    _, hv = jvp(gradient, primals, tangents)
    return value[0], hv[0] if single else hv
