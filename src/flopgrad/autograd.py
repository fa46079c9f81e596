"""Reverse and forward mode on top of dispatch: backward, grad, jvp, vjp, jacobians, gradcheck.

The backward pass walks the recorded nodes iteratively (no recursion) in dependency order
and runs each input slot's vjp, which is itself made of dispatched, counted primitives.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import numpy as np

from flopgrad import ops as O
from flopgrad.backend import MetaArray
from flopgrad.dispatch import Node, apply, override, release, track_alloc, weight_level
from flopgrad.dispatch import mode as _mode
from flopgrad.tensor import Parameter, Tensor, cat, stack

__all__ = [
    "backward", "grad", "no_grad", "enable_grad", "is_grad_enabled", "set_grad_enabled",
    "jvp", "vjp", "jacrev", "jacfwd", "hvp", "gradcheck", "GradcheckError", "Function",
]


# ---------------------------------------------------------------- grad mode

class _GradMode:
    """What no_grad, enable_grad and set_grad_enabled share: context manager and decorator,
    each a thin use of dispatch.override (this thread's grad mode only, as in PyTorch)."""

    mode = False

    def __init__(self):
        self._prev: list[bool] = []

    def __enter__(self):
        m = _mode()
        self._prev.append(m.grad_enabled)
        m.grad_enabled = self.mode
        return self

    def __exit__(self, *exc):
        _mode().grad_enabled = self._prev.pop()
        return False

    def __call__(self, fn: Callable) -> Callable:
        return override(grad_enabled=self.mode)(fn)


class _FixedMode(_GradMode):
    """no_grad and enable_grad take no arguments, so they also work bare: `@fg.no_grad`."""

    def __new__(cls, *args):
        if len(args) == 1 and callable(args[0]):
            return cls()(args[0])
        return super().__new__(cls)


class no_grad(_FixedMode):
    """Run without recording a graph (ops are still billed). Context manager or decorator.

    >>> import flopgrad as fg
    >>> with fg.no_grad():
    ...     y = fg.ones(2, requires_grad=True) * 2
    >>> y.requires_grad
    False
    """

    mode = False


class enable_grad(_FixedMode):
    """Record a graph even inside no_grad. Context manager or decorator.

    >>> import flopgrad as fg
    >>> with fg.no_grad(), fg.enable_grad():
    ...     y = fg.ones(2, requires_grad=True) * 2
    >>> y.requires_grad
    True
    """

    mode = True


class set_grad_enabled(_GradMode):
    """Switch graph recording on or off, like PyTorch: the call itself switches the mode,
    and used as a context manager (or decorator) the previous mode comes back on exit.

    >>> import flopgrad as fg
    >>> with fg.set_grad_enabled(False):
    ...     y = fg.ones(2, requires_grad=True) * 2
    >>> y.requires_grad
    False
    """

    def __init__(self, mode: bool):
        self.mode = bool(mode)
        m = _mode()
        self._prev = [m.grad_enabled]
        m.grad_enabled = self.mode

    def __exit__(self, *exc):
        _mode().grad_enabled = self._prev[0]
        return False

    def __enter__(self):
        _mode().grad_enabled = self.mode
        return self

    def __call__(self, fn: Callable) -> Callable:
        _mode().grad_enabled = self._prev[0]  # decorating does not switch the mode
        return super().__call__(fn)


def is_grad_enabled() -> bool:
    """Whether ops are being recorded for backward (in this thread).

    >>> import flopgrad as fg
    >>> with fg.no_grad():
    ...     inside = fg.is_grad_enabled()
    >>> fg.is_grad_enabled(), inside
    (True, False)
    """
    return _mode().grad_enabled


# ---------------------------------------------------------------- the backward engine

def _sum_to(g: Tensor, shape: tuple, n: Node, i: int) -> Tensor:
    """Reduce a broadcast gradient to `shape` (the single place broadcasting is undone)."""
    lead = g.ndim - len(shape)
    if lead < 0 or any(s not in (1, gs) for s, gs in zip(shape, g.shape[lead:], strict=True)):
        raise RuntimeError(
            f"backward of {n.op.name}: the gradient for input {i} has shape {g.shape}, which "
            f"does not reduce to the input's shape {tuple(shape)}")
    kept = tuple(lead + d for d, s in enumerate(shape) if s == 1 and g.shape[lead + d] != 1)
    if kept:
        g = apply(O.SUM, (g,), (tuple(range(lead)) + kept, True))
    elif lead:  # only leading dims to drop: the sum has the right shape, no reshape view
        g = apply(O.SUM, (g,), (tuple(range(lead)), False))
    if g.shape != shape:
        g = apply(O.RESHAPE, (g,), (shape,))
    return g


def _own(g: Tensor, handed_out: set) -> Tensor:
    """A detached gradient whose buffer no other tensor shares (safe for in-place updates)."""
    arr = g._data
    if id(arr) in handed_out or arr.base is not None or not arr.flags.writeable:
        arr = arr.copy()
        if _mode().listeners:
            track_alloc(arr)
    elif g._node is None and not g.requires_grad:
        handed_out.add(id(arr))
        return g  # made by this pass and owned by nobody else: no new wrapper needed
    handed_out.add(id(arr))
    t = Tensor.__new__(Tensor)
    t._data, t._node, t._tangent, t.grad, t._version = arr, None, g._tangent, None, [0]
    t.requires_grad = False
    return t


def _consumers(root_nodes: list) -> tuple[dict, bool]:
    """For every node reachable from the roots, how many reachable nodes consume its output;
    and whether any leaf reached is an nn.Parameter."""
    deps: dict = {}
    stack = []
    has_param = False
    for n in root_nodes:
        if n not in deps:
            deps[n] = 0
            stack.append(n)
    while stack:
        n = stack.pop()
        for p in n.parents:
            if type(p) is Node:
                if p in deps:
                    deps[p] += 1
                else:
                    deps[p] = 1
                    stack.append(p)
            elif p is not None and not has_param:
                has_param = isinstance(p, Parameter)
    return deps, has_param


def _sources(root_nodes: list, deps: dict) -> list:
    """The roots that no other reachable node consumes: where Kahn's order starts."""
    if len(root_nodes) == 1:
        return list(root_nodes)
    return [n for n in dict.fromkeys(root_nodes) if deps[n] == 0]


def _topo(root_nodes: list, deps: dict) -> list:
    """Nodes reachable from the roots, each after all of its consumers (Kahn's order)."""
    deps = dict(deps)
    ready = _sources(root_nodes, deps)
    order = []
    while ready:
        n = ready.pop()
        order.append(n)
        for p in n.parents:
            if type(p) is Node:
                left = deps[p] - 1
                deps[p] = left
                if not left:
                    ready.append(p)
    return order


def _check_saved(n: Node) -> None:
    if n.released:
        raise RuntimeError(
            f"backward through {n.op.name} a second time: its saved values were freed after the "
            "first backward. Pass retain_graph=True to the first backward() (or fg.grad) if you "
            "need to go through the graph again.")
    if n.versions is not None:
        for i, version, expected in n.versions:
            if version[0] != expected:
                raise RuntimeError(_inplace_message(
                    n.op.name, f"input {i}", n.in_shapes[i], version[0], expected))
    if n.out_data is not None and n.out_version[0] != 0:
        raise RuntimeError(_inplace_message(
            n.op.name, "its output", np.shape(n.out_data), n.out_version[0], 0))


def _inplace_message(op_name: str, which: str, shape, version: int, expected: int) -> str:
    return (
        f"a value saved for the backward of {op_name} ({which}, of shape {tuple(shape)}) was "
        f"modified in place after it was saved (version {version}, expected {expected}). "
        "Use an out-of-place op, or .clone() the tensor before modifying it.")


def _run(roots: list, root_grads: list, *, retain_graph: bool, create_graph: bool,
         targets: Sequence | None, accumulate: bool) -> dict:
    """Back-propagate root_grads from roots and return {id(tensor): [tensor, gradient]}.

    With targets=None every leaf reached gets a gradient; otherwise only the targets (leaves
    or not), and only the vjps that lead to one are run. With accumulate, the gradients are
    also added into the tensors' .grad. Each gradient has the dtype of its tensor.
    """
    target_ids = target_nodes = None
    if targets is not None:
        target_ids = {id(t) for t in targets}
        target_nodes = {t._node: t for t in targets if t._node is not None}
    found: dict = {}  # id(tensor) -> [tensor, gradient so far]
    buffers: dict = {}
    root_nodes = []
    handed_out: set = set()
    for r, g in zip(roots, root_grads, strict=True):
        handed_out.add(id(g._data))
        if r._node is None:
            if target_ids is None or id(r) in target_ids:
                _add(found, r, g)
            continue
        prev = buffers.get(r._node)
        buffers[r._node] = g if prev is None else prev + g
        root_nodes.append(r._node)
    deps, has_param = _consumers(root_nodes)
    mode_ = _mode()
    billing = bool(mode_.listeners)
    useful = None
    if targets is not None:
        useful = _useful(_topo(root_nodes, deps), target_ids, target_nodes)
    ready = _sources(root_nodes, deps)  # Kahn's order, run as the nodes become ready

    saved_state = mode_.grad_enabled, mode_.phase, mode_.scope, mode_.role, mode_.grad_of
    mode_.grad_enabled = create_graph
    mode_.phase = "backward"
    try:
        while ready:
            n = ready.pop()
            g = buffers.pop(n, None)
            if g is None:  # no gradient reached this node: its parents only lose a consumer
                for p in n.parents:
                    if type(p) is Node:
                        deps[p] -= 1
                        if not deps[p]:
                            ready.append(p)
                continue
            if target_nodes:
                t = target_nodes.get(n)
                if t is not None:
                    _add(found, t, g)
            if n.released or n.versions is not None or n.out_data is not None:
                _check_saved(n)
            mode_.scope = n.scope
            vjp, in_shapes = n.op.vjp, n.in_shapes
            for i, p in enumerate(n.parents):
                if p is None:
                    continue
                is_node = type(p) is Node
                if is_node:
                    left = deps[p] - 1
                    deps[p] = left
                    if not left:
                        ready.append(p)
                if useful is not None and not (useful.get(p, False) if is_node
                                               else id(p) in target_ids):
                    continue
                if billing:
                    mode_.role = _role(p, has_param)
                    mode_.grad_of = (n.op.name, i)
                gi = vjp(n, g, i)
                if gi is None:
                    continue
                if gi._data.shape != in_shapes[i]:
                    gi = _sum_to(gi, in_shapes[i], n, i)
                if is_node:
                    prev = buffers.get(p)
                    buffers[p] = gi if prev is None else prev + gi
                else:
                    _add(found, p, gi)
            n.memo = None  # shared only between this node's slots, never kept past them
            if not retain_graph:
                if billing:
                    release(n)
                else:
                    n.released = n.saved is not None or n.out_data is not None
                    n.saved = n.out_data = None
        mode_.role = mode_.grad_of = None
        for entry in found.values():
            t, g = entry
            dtype = t._data.dtype
            if g._data.dtype is not dtype and g._data.dtype != dtype and dtype.kind in "fc":
                g = entry[1] = apply(O.CAST, (g,), (dtype, g._data.dtype))
            if accumulate:
                _accumulate(t, g, create_graph, handed_out, billing)
    finally:
        mode_.grad_enabled, mode_.phase, mode_.scope, mode_.role, mode_.grad_of = saved_state
    return found


def _add(found: dict, t: Tensor, g: Tensor) -> None:
    entry = found.get(id(t))
    if entry is None:
        found[id(t)] = [t, g]
    else:
        entry[1] = entry[1] + g


def _role(p, has_param: bool) -> str:
    """dW or dX: "weight" for a gradient flowing into nn.Parameters or tensors made only
    from them (like W.T); in graphs without Parameters, into leaves that require grad.
    "input" for everything else (activations, and data such as X even when it needs grad)."""
    level = p.weight_level if type(p) is Node else weight_level(p)
    return "weight" if level == 2 or (level == 1 and not has_param) else "input"


def _useful(order: list, target_ids: set, target_nodes: dict) -> dict:
    """Which nodes lead to a target (so that only needed gradients are computed)."""
    useful: dict = {}
    for n in reversed(order):
        useful[n] = n in target_nodes or any(
            (useful.get(p, False) if type(p) is Node else id(p) in target_ids)
            for p in n.parents if p is not None)
    return useful


def _accumulate(t: Tensor, g: Tensor, create_graph: bool, handed_out: set,
                billing: bool) -> None:
    if t.grad is None:
        t.grad = g if create_graph else _own(g, handed_out)
    else:
        t.grad = t.grad + g
    if billing:
        track_alloc(t.grad._data, "gradients")


def _root_grads(outs: list, gradients, who: str) -> list:
    """One starting gradient per output: given (any array-like) or implicit ones for scalars.

    `gradients` is None, one gradient (for a single output), or a sequence of them.
    """
    if gradients is None:
        if len(outs) == 1:
            return [_root_grad(outs[0], None, who)]
        return [_root_grad(o, None, who) for o in outs]
    elif isinstance(gradients, Tensor | np.ndarray) or (
            len(outs) == 1 and _shape(gradients) == outs[0].shape):
        gradients = [gradients]
    else:
        gradients = list(gradients)
    if len(gradients) != len(outs):
        raise ValueError(f"{who}: {len(outs)} outputs but {len(gradients)} gradients")
    return [_root_grad(o, g, who) for o, g in zip(outs, gradients, strict=True)]


def _shape(x) -> tuple | None:
    try:
        return np.shape(x)
    except ValueError:  # ragged: a sequence of gradients
        return None


def _root_grad(out: Tensor, gradient, who: str) -> Tensor:
    if gradient is None:
        if out._data.size != 1:
            raise RuntimeError(
                f"{who}: the output has shape {out.shape}; gradients can only be created "
                "implicitly for a single-element output. Pass gradient= (or grad_outputs=) "
                "with the output's shape, e.g. fg.ones_like(out).")
        if type(out._data) is MetaArray:
            return Tensor(MetaArray(out._data.shape, out._data.dtype))
        t = Tensor.__new__(Tensor)
        seed = np.array(1, dtype=out._data.dtype)
        t._data, t._node, t._tangent, t.grad, t._version = (
            seed if out._data.ndim == 0 else seed.reshape(out._data.shape), None, None, None, [0])
        t.requires_grad = False
        return t
    g = gradient if isinstance(gradient, Tensor) else Tensor(np.asarray(gradient,
                                                                        dtype=out._data.dtype))
    if g.shape != out.shape:
        raise RuntimeError(
            f"{who}: gradient has shape {g.shape} but the output has shape {out.shape}")
    return g


def backward(tensors, grad_tensors=None, retain_graph: bool | None = None,
             create_graph: bool = False, inputs=None) -> None:
    """Accumulate gradients of `tensors` into the `.grad` of the leaves that need them
    (only into `inputs`' .grad when given).

    >>> import flopgrad as fg
    >>> w = fg.tensor([1.0, 2.0], requires_grad=True)
    >>> fg.autograd.backward((w * 3).sum())
    >>> w.grad
    tensor([3., 3.])
    """
    outs = [tensors] if isinstance(tensors, Tensor) else list(tensors)
    for o in outs:
        if not o.requires_grad:
            raise RuntimeError(
                "backward: the tensor does not require grad and has no grad_fn. Create a leaf "
                "with requires_grad=True (or call requires_grad_()) before computing it, and do "
                "not compute it under fg.no_grad().")
    grads = _root_grads(outs, grad_tensors, "backward")
    if retain_graph is None:
        retain_graph = create_graph
    targets = None
    if inputs is not None:
        targets = [inputs] if isinstance(inputs, Tensor) else list(inputs)
        if not targets:
            raise ValueError("backward: inputs= is empty; pass None to reach every leaf")
    _run(outs, grads, retain_graph=retain_graph, create_graph=create_graph, targets=targets,
         accumulate=True)


def grad(outputs, inputs, grad_outputs=None, retain_graph: bool | None = None,
         create_graph: bool = False, allow_unused: bool = False) -> tuple:
    """Gradients of `outputs` with respect to `inputs`, returned (not accumulated).

    >>> import flopgrad as fg
    >>> x = fg.tensor(3.0, requires_grad=True)
    >>> fg.grad(x ** 2, x)
    (tensor(6.),)
    """
    outs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    ins = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    for o in outs:
        if not o.requires_grad:
            raise RuntimeError(
                "grad: an output does not require grad; make sure an input has "
                "requires_grad=True and the output was not computed under fg.no_grad()")
    for k, t in enumerate(ins):
        if not isinstance(t, Tensor) or not t.requires_grad:
            what = "does not require grad" if isinstance(t, Tensor) else f"is {type(t).__name__}"
            raise RuntimeError(
                f"grad: input {k} {what}; every input must be a tensor with requires_grad=True")
    gs = _root_grads(outs, grad_outputs, "grad")
    if retain_graph is None:
        retain_graph = create_graph
    captured = _run(outs, gs, retain_graph=retain_graph, create_graph=create_graph, targets=ins,
                    accumulate=False)
    result = []
    for k, t in enumerate(ins):
        g = captured.get(id(t), (None, None))[1]
        if g is None and not allow_unused:
            raise RuntimeError(
                f"grad: input {k} (shape {t.shape}) was not used to compute the outputs. "
                "Pass allow_unused=True to get None for it.")
        result.append(g)
    return tuple(result)


# ---------------------------------------------------------------- forward mode and jacobians

def _alias(p: Tensor) -> Tensor:
    """A fresh tensor on p's values that can carry a tangent without touching p."""
    if p.requires_grad and _mode().grad_enabled:
        return apply(O.RESHAPE, (p,), (p.shape,))  # stays connected to p's graph, copies nothing
    return p.detach()


def _as_tuple(x) -> tuple:
    return tuple(x) if isinstance(x, list | tuple) else (x,)


def jvp(fn: Callable, primals, tangents) -> tuple:
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
        p = p if isinstance(p, Tensor) else Tensor(p)
        t = t if isinstance(t, Tensor) else Tensor(t)
        if t.shape != p.shape:
            raise ValueError(f"jvp: tangent shape {t.shape} differs from primal shape {p.shape}")
        a = _alias(p)
        a._tangent = t.to(p.dtype) if t.dtype != p.dtype else t
        args.append(a)
    with override(forward_ad=1):
        out = fn(*args)
    outs = _as_tuple(out)
    tans = tuple(o._tangent if o._tangent is not None else Tensor(np.zeros_like(o._data))
                 for o in outs)
    for o in outs:  # only after reading them all: an output may appear twice
        o._tangent = None
    if isinstance(out, list | tuple):
        return out, tans
    return out, tans[0]


def vjp(fn: Callable, *primals) -> tuple:
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
        return tuple(g if g is not None else Tensor(np.zeros_like(a._data))
                     for g, a in zip(gs, args, strict=True))

    return _detach_all(out), vjp_fn


def _leaf(p) -> Tensor:
    p = p if isinstance(p, Tensor) else Tensor(p)
    a = p.detach()
    a._tangent = p._tangent
    if a._data.dtype.kind == "f":
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
    p = p if isinstance(p, Tensor) else Tensor(p)
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
            for j in range(out._data.size if out.requires_grad else 0):
                onehot = np.zeros(out._data.size, dtype=out._data.dtype)
                onehot[j] = 1
                gs = grad(flat, wrt, grad_outputs=Tensor(onehot), retain_graph=True,
                          create_graph=nested, allow_unused=True)
                for r, g, w in zip(rows, gs, wrt, strict=True):
                    r.append(g if g is not None else Tensor(np.zeros_like(w._data)))
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
            x = args[k] if isinstance(args[k], Tensor) else Tensor(args[k])

            def fn_k(xk, k=k):
                return fn(*args[:k], xk, *args[k + 1:])

            cols = []
            out_shape = None
            for j in range(x._data.size):
                onehot = np.zeros(x._data.size, dtype=x._data.dtype)
                onehot[j] = 1
                out, t = jvp(fn_k, (x,), (Tensor(onehot.reshape(x.shape)),))
                out_shape = out.shape
                cols.append(t)
            if out_shape is None:
                out_shape = fn_k(x).shape
                jacs.append(Tensor(np.zeros(out_shape + x.shape, dtype=x.dtype)))
                continue
            jacs.append(stack(cols, -1).reshape(out_shape + x.shape))
        return jacs[0] if isinstance(argnums, int) else tuple(jacs)

    return jac


def hvp(fn: Callable, primals, tangents) -> tuple:
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
        return tuple(g if g is not None else Tensor(np.zeros_like(x._data))
                     for g, x in zip(gs, leaves, strict=True))

    _, hv = jvp(gradient, primals, tangents)
    return value[0], hv[0] if single else hv


# ---------------------------------------------------------------- gradcheck

class GradcheckError(AssertionError):
    """Analytic and finite-difference derivatives disagree.

    >>> import flopgrad as fg
    >>> x = fg.zeros(1, dtype=fg.float64, requires_grad=True)
    >>> try:  # relu has a kink at 0: its analytic slope there is 0, the numeric one 0.5
    ...     fg.gradcheck(lambda x: x.relu(), (x,))
    ... except fg.GradcheckError as err:
    ...     print(err)
    gradcheck (vjp): d output[0] / d input 0[0]: analytic 0.0, numeric 0.5 (atol=1e-05, rtol=0.001)
    """


def _flat_outputs(fn, args) -> np.ndarray:
    with no_grad():
        out = fn(*args)
    return np.concatenate([np.asarray(o._data, dtype=np.float64).reshape(-1)
                           for o in _as_tuple(out)])


def gradcheck(fn: Callable, inputs, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
              check_jvp: bool = True) -> bool:
    """Compare vjp (and jvp) Jacobians with central finite differences in float64.

    Checks every input that requires grad; raises GradcheckError naming the worst entry.

    >>> import flopgrad as fg
    >>> x = fg.randn(3, dtype=fg.float64, requires_grad=True)
    >>> fg.gradcheck(lambda x: x.tanh(), (x,))
    True
    """
    inputs = _as_tuple(inputs)
    wrt = [k for k, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not wrt:
        raise ValueError("gradcheck: no input has requires_grad=True")
    for k in wrt:
        if inputs[k].dtype != np.float64:
            raise ValueError(
                f"gradcheck: input {k} is {inputs[k].dtype}; finite differences need float64 "
                "(use .double())")
    base = [x.detach() if isinstance(x, Tensor) else x for x in inputs]
    nout = _flat_outputs(fn, base).size

    def flat_fn(*xs):
        outs = _as_tuple(fn(*xs))
        return cat([o.reshape(-1) for o in outs]) if len(outs) > 1 else outs[0].reshape(-1)

    for k in wrt:
        x = base[k]._data
        numeric = np.zeros((nout, x.size))
        for j in range(x.size):
            plus, minus = x.copy(), x.copy()
            plus.reshape(-1)[j] += eps
            minus.reshape(-1)[j] -= eps
            args_p, args_m = list(base), list(base)
            args_p[k], args_m[k] = Tensor(plus), Tensor(minus)
            numeric[:, j] = (_flat_outputs(fn, args_p) - _flat_outputs(fn, args_m)) / (2 * eps)
        checks = [("vjp", jacrev(flat_fn, k)(*base)._data.reshape(nout, x.size))]
        if check_jvp:
            checks.append(("jvp", jacfwd(flat_fn, k)(*base)._data.reshape(nout, x.size)))
        for mode, analytic in checks:
            err = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
            if np.isnan(analytic).any() or (err > 0).any():
                worst = np.unravel_index(
                    np.argmax(np.where(np.isnan(analytic), np.inf, err)), err.shape)
                raise GradcheckError(
                    f"gradcheck ({mode}): d output[{worst[0]}] / d input {k}[{worst[1]}]: "
                    f"analytic {float(analytic[worst])!r}, numeric {float(numeric[worst])!r} "
                    f"(atol={atol}, rtol={rtol})")
    return True


# ---------------------------------------------------------------- user-defined ops

class FunctionCtx:
    """What a Function's forward and backward share: saved arrays and any attributes.

    `needs_input_grad[i]` says whether input i requires a gradient.

    >>> import flopgrad as fg
    >>> ctx = fg.FunctionCtx((fg.ones(2, requires_grad=True), 3.0))
    >>> ctx.needs_input_grad
    (True, False)
    """

    def __init__(self, inputs: tuple = ()):
        self.saved_tensors: tuple = ()
        self.needs_input_grad = tuple(isinstance(a, Tensor) and a.requires_grad for a in inputs)
        self._inputs = inputs  # only while forward runs
        self._watched: list = []  # (what, shape, version counter, version when saved)
        self._saved_inputs: dict = {}  # saved slot -> the input Tensor it is

    def save_for_backward(self, *arrays) -> None:
        """Keep arrays for backward. An input (or the output) whose values are saved is
        watched: modifying it in place before backward makes backward raise instead of
        silently using the new values.

        >>> import flopgrad as fg, numpy as np
        >>> ctx = fg.FunctionCtx()
        >>> ctx.save_for_backward(np.ones(2), np.zeros(3))
        >>> [a.shape for a in ctx.saved_tensors]
        [(2,), (3,)]
        """
        self.saved_tensors = arrays
        self._watched = []
        # a saved input comes back to backward as that input tensor (so a backward written
        # with flopgrad ops can be differentiated again); remember which slot is which
        self._saved_inputs = {k: t for k, a in enumerate(arrays) for t in self._inputs
                              if isinstance(t, Tensor) and a is t._data}
        for k, t in enumerate(self._inputs):
            if isinstance(t, Tensor):
                self._watch(f"input {k}", t)

    @contextlib.contextmanager
    def _as_tensors(self):
        """Inside backward and jvp, saved_tensors are Tensors, as in PyTorch: a saved input is
        that input tensor (differentiable again under create_graph), anything else a constant."""
        arrays = self.saved_tensors
        self.saved_tensors = tuple(
            self._saved_inputs[k] if k in self._saved_inputs
            else a if isinstance(a, Tensor) else Tensor(np.asarray(a))
            for k, a in enumerate(arrays))
        try:
            yield
        finally:
            self.saved_tensors = arrays

    def _watch(self, what: str, t: Tensor) -> None:
        if any(isinstance(a, np.ndarray) and np.may_share_memory(a, t._data)
               for a in self.saved_tensors):
            self._watched.append((what, t.shape, t._version, t._version[0]))


class Function:
    """A user-defined op with its own forward, backward and declared cost.

    forward(ctx, *arrays) gets NumPy arrays and returns one; backward(ctx, grad) gets a
    Tensor and returns one gradient per input (Tensors, arrays or None), preferably built
    from flopgrad ops so its cost is billed. In backward (and jvp) `ctx.saved_tensors` are
    Tensors, as in PyTorch: a saved input comes back as that input tensor, so a backward
    built from flopgrad ops can itself be differentiated (create_graph, hessians); other
    saved arrays come back as constants. An optional jvp(ctx, *tangents) (None for an
    input without tangent) gives forward mode; without it forward mode through the op raises.
    Declare `cost(out_shape, in_shapes)` returning (tensor_flops, other_flops,
    transcendentals); without it the bill lists the op as unknown.

    >>> import flopgrad as fg
    >>> class Cube(fg.Function):
    ...     @staticmethod
    ...     def forward(ctx, x):
    ...         ctx.save_for_backward(x)
    ...         return x ** 3
    ...     @staticmethod
    ...     def backward(ctx, g):
    ...         (x,) = ctx.saved_tensors
    ...         return g * 3 * x ** 2
    ...     @staticmethod
    ...     def cost(out_shape, in_shapes):
    ...         return (0, 2 * fg.ops.size(out_shape), 0)
    >>> x = fg.tensor([2.0], requires_grad=True)
    >>> Cube.apply(x).sum().backward()
    >>> x.grad
    tensor([12.])
    """

    _op: O.Op | None = None

    @staticmethod
    def forward(ctx, *args):
        """Compute the output from NumPy arrays; every subclass defines it.

        >>> import flopgrad as fg, numpy as np
        >>> fg.Function.forward(fg.FunctionCtx(), np.ones(2))
        Traceback (most recent call last):
            ...
        NotImplementedError: Function subclasses define forward(ctx, *arrays)
        """
        raise NotImplementedError("Function subclasses define forward(ctx, *arrays)")

    @staticmethod
    def backward(ctx, grad):
        """One gradient per input from the output's gradient; every subclass defines it.

        >>> import flopgrad as fg
        >>> fg.Function.backward(fg.FunctionCtx(), fg.ones(2))
        Traceback (most recent call last):
            ...
        NotImplementedError: Function subclasses define backward(ctx, grad)
        """
        raise NotImplementedError("Function subclasses define backward(ctx, grad)")

    @classmethod
    def _gradients(cls, ctx: FunctionCtx, g: Tensor, n_inputs: int) -> tuple:
        """Every input's gradient from one call of the user's backward."""
        for what, shape, counter, version in ctx._watched:
            if counter[0] != version:
                raise RuntimeError(_inplace_message(cls.__name__, what, shape, counter[0], version))
        with ctx._as_tensors():
            gs = cls.backward(ctx, g)
        gs = tuple(gs) if isinstance(gs, tuple | list) else (gs,)
        if len(gs) != n_inputs:
            raise RuntimeError(
                f"{cls.__name__}.backward returned {len(gs)} gradients but forward took "
                f"{n_inputs} inputs; return None for an input that needs no gradient")
        return tuple(gi if gi is None or isinstance(gi, Tensor) else Tensor(np.asarray(gi))
                     for gi in gs)

    @classmethod
    def _make_op(cls) -> O.Op:
        def forward(*a):
            return np.asarray(cls.forward(a[-1], *a[:-1]))

        def vjp(n, g, i):
            # the user's backward runs once per node: every slot's gradient is kept in the
            # node's memo, which the engine clears once the node's slots have run
            if n.memo is None:
                n.memo = cls._gradients(n.params[0], g, len(n.in_shapes))
            return n.memo[i]

        user_jvp = getattr(cls, "jvp", None)

        def jvp_rule(p, t):
            if user_jvp is None:
                raise NotImplementedError(
                    f"{cls.__name__} defines no jvp(ctx, *tangents), so forward mode (fg.jvp, "
                    "jacfwd, hvp, gradcheck with check_jvp=True) cannot go through it")
            with p.params[0]._as_tensors():
                out = user_jvp(p.params[0], *t)
            return out if out is None or isinstance(out, Tensor) else Tensor(np.asarray(out))

        user_cost = getattr(cls, "cost", None)
        op = O.Op(cls.__name__, forward, vjp=vjp, jvp=jvp_rule, uses=())
        if user_cost is not None:
            op.cost = lambda out, ins, p: tuple(user_cost(out, ins))
        else:
            op.unknown_cost = True
        return op

    @classmethod
    def apply(cls, *args):
        """Run the op on Tensors (or constants) and record it for backward.

        >>> import flopgrad as fg
        >>> class Double(fg.Function):
        ...     @staticmethod
        ...     def forward(ctx, x):
        ...         return 2 * x
        ...     @staticmethod
        ...     def backward(ctx, g):
        ...         return 2 * g
        >>> Double.apply(fg.tensor([1.0, 2.0])).tolist()
        [2.0, 4.0]
        """
        if cls.__dict__.get("_op") is None:
            cls._op = cls._make_op()
        ctx = FunctionCtx(args)
        try:
            out = apply(cls._op, args, (ctx,))
        finally:
            ctx._inputs = ()
        ctx._watch("its output", out)
        return out
