"""The backward engine: backward() and grad() on the recorded graph.

The walk is iterative (no recursion), in dependency order (Kahn's algorithm on consumer
counts); it runs each needed input slot's vjp (itself made of dispatched, counted
primitives), sums broadcast gradients back to the input's shape, checks that saved values
were not modified in place, frees them unless retain_graph, and accumulates into .grad.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from flopgrad import ops as O
from flopgrad.backend import MetaArray
from flopgrad.dispatch import Node, apply, release, track_alloc, weight_level
from flopgrad.dispatch import mode as _mode
from flopgrad.tensor import Parameter, Tensor

__all__ = ["backward", "grad"]

_ArrayLike = Any  # a Tensor, an array or nested numbers; or a sequence of them, one per output


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
    return Tensor._wrap(arr, tangent=g._tangent)


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

    saved_state = (mode_.grad_enabled, mode_.phase, mode_.scope, mode_.role, mode_.grad_of,
                   mode_.grad_node)
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
            if n.recompute is not None:  # inside fg.checkpoint: recompute what it saves
                n.recompute.refill()
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
                    mode_.grad_node = n  # listeners can find the forward node (anomaly)
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
        mode_.role = mode_.grad_of = mode_.grad_node = None
        for entry in found.values():
            t, g = entry
            dtype = t._data.dtype
            if g._data.dtype is not dtype and g._data.dtype != dtype and dtype.kind in "fcV":
                g = entry[1] = apply(O.CAST, (g,), (dtype, g._data.dtype))
            if accumulate:
                _accumulate(t, g, create_graph, handed_out, billing)
    finally:
        (mode_.grad_enabled, mode_.phase, mode_.scope, mode_.role, mode_.grad_of,
         mode_.grad_node) = saved_state
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
        for listener in _mode().listeners:
            listener.on_grad(t, t.grad)


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
        seed = np.array(1, dtype=out._data.dtype)
        return Tensor._wrap(seed if out._data.ndim == 0 else seed.reshape(out._data.shape))
    g = gradient if isinstance(gradient, Tensor) else Tensor(np.asarray(gradient,
                                                                        dtype=out._data.dtype))
    if g.shape != out.shape:
        raise RuntimeError(
            f"{who}: gradient has shape {g.shape} but the output has shape {out.shape}")
    return g


def backward(tensors: Tensor | Sequence[Tensor], grad_tensors: _ArrayLike | None = None,
             retain_graph: bool | None = None, create_graph: bool = False,
             inputs: Tensor | Sequence[Tensor] | None = None) -> None:
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


def grad(outputs: Tensor | Sequence[Tensor], inputs: Tensor | Sequence[Tensor],
         grad_outputs: _ArrayLike | None = None, retain_graph: bool | None = None,
         create_graph: bool = False, allow_unused: bool = False) -> tuple[Tensor | None, ...]:
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
