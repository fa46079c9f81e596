"""Reverse and forward mode on top of dispatch: backward, grad, jvp, vjp, jacobians, gradcheck.

The backward pass walks the recorded nodes iteratively (no recursion) in dependency order
and runs each input slot's vjp, which is itself made of dispatched, counted primitives.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np

from flopgrad import ops as O
from flopgrad.dispatch import Node, State, apply
from flopgrad.tensor import Tensor, cat

__all__ = [
    "backward", "grad", "no_grad", "enable_grad", "is_grad_enabled", "set_grad_enabled",
    "jvp", "vjp", "jacrev", "jacfwd", "hvp", "gradcheck", "GradcheckError", "Function",
]


# ---------------------------------------------------------------- grad mode

class set_grad_enabled:
    """Context manager and decorator that switches graph recording on or off.

    >>> import flopgrad as fg
    >>> with fg.set_grad_enabled(False):
    ...     y = fg.ones(2, requires_grad=True) * 2
    >>> y.requires_grad
    False
    """

    def __init__(self, mode: bool = False):
        self.mode = mode
        self.prev: list[bool] = []

    def __enter__(self):
        self.prev.append(State.grad_enabled)
        State.grad_enabled = self.mode
        return self

    def __exit__(self, *exc):
        State.grad_enabled = self.prev.pop()
        return False

    def __call__(self, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            with type(self)(self.mode) if type(self) is set_grad_enabled else type(self)():
                return fn(*args, **kwargs)
        return wrapped


class no_grad(set_grad_enabled):
    """Run without recording a graph (ops are still billed).

    >>> import flopgrad as fg
    >>> with fg.no_grad():
    ...     y = fg.ones(2, requires_grad=True) * 2
    >>> y.requires_grad
    False
    """

    def __init__(self):
        super().__init__(False)


class enable_grad(set_grad_enabled):
    """Record a graph even inside no_grad."""

    def __init__(self):
        super().__init__(True)


def is_grad_enabled() -> bool:
    """Whether ops are being recorded for backward."""
    return State.grad_enabled


# ---------------------------------------------------------------- the backward engine

def _sum_to(g: Tensor, shape: tuple) -> Tensor:
    """Reduce a broadcast gradient to `shape` (the single place broadcasting is undone)."""
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + d for d, s in enumerate(shape) if s == 1 and g.shape[lead + d] != 1)
    if axes:
        g = apply(O.SUM, (g,), (axes, True))
    if g.shape != shape:
        g = apply(O.RESHAPE, (g,), (shape,))
    return g


def _own(g: Tensor, handed_out: set) -> Tensor:
    """A detached gradient whose buffer no other tensor shares (safe for in-place updates)."""
    arr = g._data
    if not arr.flags.writeable or id(arr) in handed_out or arr.base is not None:
        arr = arr.copy()
    handed_out.add(id(arr))
    t = Tensor.__new__(Tensor)
    t._data, t._node, t._tangent, t.grad, t._version = arr, None, g._tangent, None, [0]
    t.requires_grad = False
    return t


def _topo(root_nodes: list) -> list:
    """Nodes reachable from the roots, each after all of its consumers (Kahn's order)."""
    deps: dict = {}
    stack = []
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
    ready = [n for n in dict.fromkeys(root_nodes) if deps[n] == 0]
    order = []
    while ready:
        n = ready.pop()
        order.append(n)
        for p in n.parents:
            if type(p) is Node:
                deps[p] -= 1
                if deps[p] == 0:
                    ready.append(p)
    return order


def _check_saved(n: Node) -> None:
    if n.released:
        raise RuntimeError(
            f"backward through {n.op.name} a second time: its saved values were freed after the "
            "first backward. Pass retain_graph=True to the first backward() (or fg.grad) if you "
            "need to go through the graph again.")
    if n.versions is not None:
        for i, t in enumerate(n.saved):
            if isinstance(t, Tensor) and t._version[0] != n.versions[i]:
                raise RuntimeError(_inplace_message(n, i, t, n.versions[i]))
    if n.out_data is not None and n.out_version[0] != 0:
        raise RuntimeError(_inplace_message(n, "output", n.out_version, 0))


def _inplace_message(n: Node, which, t, expected) -> str:
    version = t._version[0] if isinstance(t, Tensor) else t[0]
    shape = n.in_shapes[which] if isinstance(which, int) else np.shape(n.out_data)
    return (
        f"a value saved for the backward of {n.op.name} ({which} of shape {tuple(shape)}) was "
        f"modified in place after it was saved (version {version}, expected {expected}). "
        "Use an out-of-place op, or .clone() the tensor before modifying it.")


def _run(roots: list, root_grads: list, *, retain_graph: bool, create_graph: bool,
         targets: Sequence | None, accumulate: bool) -> dict:
    """Back-propagate root_grads from roots; return {id(target): gradient} for targets."""
    captured: dict = {}
    target_ids = {id(t) for t in targets} if targets is not None else None
    target_nodes = {t._node: t for t in targets if t._node is not None} if targets else {}
    buffers: dict = {}
    root_nodes = []
    handed_out: set = set()
    for r, g in zip(roots, root_grads, strict=True):
        handed_out.add(id(g._data))
        if r._node is None:
            if target_ids is not None and id(r) in target_ids:
                captured[id(r)] = g
            if accumulate and r.requires_grad:
                _accumulate(r, g, create_graph, handed_out)
            continue
        prev = buffers.get(r._node)
        buffers[r._node] = g if prev is None else prev + g
        root_nodes.append(r._node)
    order = _topo(root_nodes)
    useful = _useful(order, target_ids, target_nodes) if targets is not None else None

    prev_mode, prev_phase = State.grad_enabled, State.phase
    State.grad_enabled = create_graph
    State.phase = "backward"
    try:
        for n in order:
            g = buffers.pop(n, None)
            if g is None:
                continue
            t = target_nodes.get(n)
            if t is not None:
                captured[id(t)] = g
            _check_saved(n)
            vjp, in_shapes = n.op.vjp, n.in_shapes
            for i, p in enumerate(n.parents):
                if p is None:
                    continue
                is_node = type(p) is Node
                if useful is not None and not (useful.get(p, False) if is_node
                                               else id(p) in target_ids):
                    continue
                State.role = "input" if is_node else "weight"
                State.grad_of = (n.op.name, i)
                gi = vjp(n, g, i)
                if gi is None:
                    continue
                if not isinstance(gi, Tensor):
                    gi = Tensor(np.asarray(gi))
                if gi._data.shape != in_shapes[i]:
                    gi = _sum_to(gi, in_shapes[i])
                if is_node:
                    prev = buffers.get(p)
                    buffers[p] = gi if prev is None else prev + gi
                else:
                    if target_ids is not None and id(p) in target_ids:
                        prev = captured.get(id(p))
                        captured[id(p)] = gi if prev is None else prev + gi
                    if accumulate:
                        _accumulate(p, gi, create_graph, handed_out)
            if not retain_graph:
                n.released = n.saved is not None or n.out_data is not None
                n.saved = n.out_data = None
    finally:
        State.grad_enabled, State.phase = prev_mode, prev_phase
        State.role = State.grad_of = None
    return captured


def _useful(order: list, target_ids: set, target_nodes: dict) -> dict:
    """Which nodes lead to a target (so that only needed gradients are computed)."""
    useful: dict = {}
    for n in reversed(order):
        useful[n] = n in target_nodes or any(
            (useful.get(p, False) if type(p) is Node else id(p) in target_ids)
            for p in n.parents if p is not None)
    return useful


def _accumulate(leaf: Tensor, g: Tensor, create_graph: bool, handed_out: set) -> None:
    if leaf.grad is None:
        leaf.grad = g if create_graph else _own(g, handed_out)
    else:
        leaf.grad = leaf.grad + g


def _root_grad(out: Tensor, gradient, who: str) -> Tensor:
    if gradient is None:
        if out._data.size != 1:
            raise RuntimeError(
                f"{who}: the output has shape {out.shape}; gradients can only be created "
                "implicitly for a single-element output. Pass gradient= (or grad_outputs=) "
                "with the output's shape, e.g. fg.ones_like(out).")
        return Tensor(np.ones(out._data.shape, dtype=out._data.dtype))
    g = gradient if isinstance(gradient, Tensor) else Tensor(np.asarray(gradient,
                                                                        dtype=out._data.dtype))
    if g.shape != out.shape:
        raise RuntimeError(
            f"{who}: gradient has shape {g.shape} but the output has shape {out.shape}")
    return g


def backward(tensors, grad_tensors=None, retain_graph: bool | None = None,
             create_graph: bool = False, inputs=None) -> None:
    """Accumulate gradients of `tensors` into the `.grad` of the leaves that need them.

    >>> import flopgrad as fg
    >>> w = fg.tensor([1.0, 2.0], requires_grad=True)
    >>> fg.autograd.backward((w * 3).sum())
    >>> w.grad
    tensor([3., 3.])
    """
    outs = [tensors] if isinstance(tensors, Tensor) else list(tensors)
    if grad_tensors is None or isinstance(grad_tensors, Tensor):
        grad_tensors = [grad_tensors] * len(outs) if grad_tensors is None else [grad_tensors]
    for o in outs:
        if not o.requires_grad:
            raise RuntimeError(
                "backward: the tensor does not require grad and has no grad_fn. Create a leaf "
                "with requires_grad=True (or call requires_grad_()) before computing it, and do "
                "not compute it under fg.no_grad().")
    grads = [_root_grad(o, g, "backward") for o, g in zip(outs, grad_tensors, strict=True)]
    if retain_graph is None:
        retain_graph = create_graph
    targets = None
    if inputs is not None:
        targets = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if targets is None:
        _run(outs, grads, retain_graph=retain_graph, create_graph=create_graph, targets=None,
             accumulate=True)
        return
    captured = _run(outs, grads, retain_graph=retain_graph, create_graph=create_graph,
                    targets=targets, accumulate=False)
    handed_out: set = set()
    for t in targets:
        if id(t) in captured:
            _accumulate(t, captured[id(t)], create_graph, handed_out)


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
    if grad_outputs is None or isinstance(grad_outputs, Tensor):
        grad_outputs = [grad_outputs] * len(outs) if grad_outputs is None else [grad_outputs]
    for o in outs:
        if not o.requires_grad:
            raise RuntimeError(
                "grad: an output does not require grad; make sure an input has "
                "requires_grad=True and the output was not computed under fg.no_grad()")
    for t in ins:
        if not isinstance(t, Tensor) or not t.requires_grad:
            raise RuntimeError("grad: every input must be a tensor with requires_grad=True")
    gs = [_root_grad(o, g, "grad") for o, g in zip(outs, grad_outputs, strict=True)]
    if retain_graph is None:
        retain_graph = create_graph
    captured = _run(outs, gs, retain_graph=retain_graph, create_graph=create_graph, targets=ins,
                    accumulate=False)
    result = []
    for k, t in enumerate(ins):
        g = captured.get(id(t))
        if g is None and not allow_unused:
            raise RuntimeError(
                f"grad: input {k} (shape {t.shape}) was not used to compute the outputs. "
                "Pass allow_unused=True to get None for it.")
        result.append(g)
    return tuple(result)


# ---------------------------------------------------------------- forward mode and jacobians

def _alias(p: Tensor) -> Tensor:
    """A fresh tensor on p's values that can carry a tangent without touching p."""
    if p.requires_grad and State.grad_enabled:
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
    if State.forward_ad:
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
    State.forward_ad += 1
    try:
        out = fn(*args)
    finally:
        State.forward_ad -= 1
    outs = _as_tuple(out)
    tans = []
    for o in outs:
        tan = o._tangent
        tans.append(tan if tan is not None else Tensor(np.zeros_like(o._data)))
        o._tangent = None
    if isinstance(out, list | tuple):
        return out, tuple(tans)
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
        cots = _as_tuple(cotangent)
        outs = _as_tuple(out)
        gs = grad(list(outs), args, grad_outputs=list(cots), retain_graph=True,
                  allow_unused=True)
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


def jacrev(fn: Callable, argnums: int | tuple = 0) -> Callable:
    """Jacobian by reverse mode: one vjp per output element. Shape out.shape + in.shape.

    >>> import flopgrad as fg
    >>> fg.jacrev(lambda x: x * x)(fg.tensor([1.0, 2.0])).tolist()
    [[2.0, 0.0], [0.0, 4.0]]
    """
    nums = _argnums(argnums)

    def jac(*args):
        args = [a if isinstance(a, Tensor) else Tensor(a) for a in args]
        leaves = list(args)
        for k in nums:
            leaves[k] = _leaf(args[k])
        with enable_grad():
            out = fn(*leaves)
        wrt = [leaves[k] for k in nums]
        rows = [[] for _ in wrt]
        flat = out.reshape(-1)
        for j in range(out._data.size):
            onehot = np.zeros(out._data.size, dtype=out._data.dtype)
            onehot[j] = 1
            gs = grad(flat, wrt, grad_outputs=Tensor(onehot), retain_graph=True,
                      allow_unused=True)
            for r, g, w in zip(rows, gs, wrt, strict=True):
                r.append(g._data if g is not None else np.zeros_like(w._data))
        jacs = tuple(
            Tensor(np.stack(r).reshape(out.shape + w.shape) if r else
                   np.zeros(out.shape + w.shape, dtype=w.dtype))
            for r, w in zip(rows, wrt, strict=True))
        return jacs[0] if isinstance(argnums, int) else jacs

    return jac


def jacfwd(fn: Callable, argnums: int | tuple = 0) -> Callable:
    """Jacobian by forward mode: one jvp per input element. Shape out.shape + in.shape.

    >>> import flopgrad as fg
    >>> fg.jacfwd(lambda x: x * x)(fg.tensor([1.0, 2.0])).tolist()
    [[2.0, 0.0], [0.0, 4.0]]
    """
    nums = _argnums(argnums)

    def jac(*args):
        args = [a if isinstance(a, Tensor) else Tensor(a) for a in args]
        jacs = []
        for k in nums:
            cols = []
            out_shape = None
            for j in range(args[k]._data.size):
                tangents = [Tensor(np.zeros_like(a._data)) for a in args]
                onehot = np.zeros(args[k]._data.size, dtype=args[k]._data.dtype)
                onehot[j] = 1
                tangents[k] = Tensor(onehot.reshape(args[k].shape))
                out, t = jvp(fn, tuple(args), tuple(tangents))
                out_shape = out.shape
                cols.append(t._data)
            if out_shape is None:
                out_shape = fn(*args).shape
                jacs.append(Tensor(np.zeros(out_shape + args[k].shape, dtype=args[k].dtype)))
                continue
            stacked = np.stack(cols, axis=-1).reshape(out_shape + args[k].shape)
            jacs.append(Tensor(stacked))
        return jacs[0] if isinstance(argnums, int) else tuple(jacs)

    return jac


def hvp(fn: Callable, primals, tangents) -> tuple:
    """Hessian-vector product by forward-over-reverse: (fn(*primals), H @ tangents).

    >>> import flopgrad as fg
    >>> _, hv = fg.hvp(lambda x: (x ** 3).sum(), (fg.tensor([1.0, 2.0]),), (fg.ones(2),))
    >>> hv[0].tolist()
    [6.0, 12.0]
    """
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
    return value[0], hv


# ---------------------------------------------------------------- gradcheck

class GradcheckError(AssertionError):
    """Analytic and finite-difference derivatives disagree."""


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
        checks = [("vjp", jacrev(flat_fn, k)(*base)._data.reshape(nout, -1))]
        if check_jvp:
            checks.append(("jvp", jacfwd(flat_fn, k)(*base)._data.reshape(nout, -1)))
        for mode, analytic in checks:
            err = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
            if np.isnan(analytic).any() or (err > 0).any():
                worst = np.unravel_index(
                    np.argmax(np.where(np.isnan(analytic), np.inf, err)), err.shape)
                raise GradcheckError(
                    f"gradcheck ({mode}): d output[{worst[0]}] / d input {k}[{worst[1]}]: "
                    f"analytic {analytic[worst]!r}, numeric {numeric[worst]!r} "
                    f"(atol={atol}, rtol={rtol})")
    return True


# ---------------------------------------------------------------- user-defined ops

class FunctionCtx:
    """What a Function's forward and backward share: saved arrays and any attributes."""

    def __init__(self):
        self.saved_tensors: tuple = ()
        self._grads = None

    def save_for_backward(self, *arrays) -> None:
        self.saved_tensors = arrays


class Function:
    """A user-defined op with its own forward, backward and declared cost.

    forward(ctx, *arrays) gets NumPy arrays and returns one; backward(ctx, grad) gets a
    Tensor and returns one gradient per input (Tensors, arrays or None), preferably built
    from flopgrad ops so its cost is billed. Declare `cost(out_shape, in_shapes)` returning
    (tensor_flops, other_flops, transcendentals); without it the bill lists the op as unknown.

    >>> import flopgrad as fg
    >>> class Cube(fg.Function):
    ...     @staticmethod
    ...     def forward(ctx, x):
    ...         ctx.save_for_backward(x)
    ...         return x ** 3
    ...     @staticmethod
    ...     def backward(ctx, g):
    ...         (x,) = ctx.saved_tensors
    ...         return g * 3 * fg.tensor(x) ** 2
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
        raise NotImplementedError("Function subclasses define forward(ctx, *arrays)")

    @staticmethod
    def backward(ctx, grad):
        raise NotImplementedError("Function subclasses define backward(ctx, grad)")

    @classmethod
    def _make_op(cls) -> O.Op:
        def forward(*a):
            return np.asarray(cls.forward(a[-1], *a[:-1]))

        def vjp(n, g, i):
            ctx = n.params[0]
            if ctx._grads is None:
                gs = cls.backward(ctx, g)
                ctx._grads = gs if isinstance(gs, tuple) else (gs,)
            gi = ctx._grads[i] if i < len(ctx._grads) else None
            return gi if gi is None or isinstance(gi, Tensor) else Tensor(np.asarray(gi))

        jvp_rule = None
        if "jvp" in cls.__dict__:
            def jvp_rule(p, t):
                out = cls.jvp(p.params[0], *t)
                return out if isinstance(out, Tensor) else Tensor(np.asarray(out))

        user_cost = getattr(cls, "cost", None)
        op = O.Op(cls.__name__, forward, vjp=vjp, jvp=jvp_rule, uses=())
        if user_cost is not None:
            op.cost = lambda out, ins, p: tuple(user_cost(out, ins))
        else:
            op.unknown_cost = True
        return op

    @classmethod
    def apply(cls, *args):
        """Run the op on Tensors (or constants) and record it for backward."""
        if cls.__dict__.get("_op") is None:
            cls._op = cls._make_op()
        return apply(cls._op, args, (FunctionCtx(),))
