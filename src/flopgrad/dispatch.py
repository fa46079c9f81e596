"""The one place an op runs.

`apply(op, args, params)` computes a primitive on backend arrays, records the graph node
that reverse mode needs, computes the forward-mode tangent when one is being carried, and
tells every listener (flopgrad.hooks) about the op. Nothing else in flopgrad executes an op.
"""

from __future__ import annotations

import functools
import threading
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any

import numpy as np

from flopgrad.backend import MetaArray

if TYPE_CHECKING:
    from flopgrad.ops import Op


Tensor: Any = None  # set by flopgrad.tensor at import (tensor sits above dispatch)
Parameter: Any = None  # likewise


class Mode:
    """The engine's modes for one thread: read on every op, changed only through override().

    Each thread starts with the defaults (grad enabled, forward phase, no listeners), as
    PyTorch's grad mode is thread-local.
    """

    __slots__ = ("grad_enabled", "forward_ad", "listeners", "phase", "scope", "meta", "role",
                 "grad_of", "grad_node", "checkpoint", "autocast", "pre_op")

    def __init__(self):
        self.grad_enabled = True
        self.forward_ad = 0  # >0 while fg.jvp carries tangents
        self.listeners: tuple = ()  # flopgrad.hooks listeners (a profile's Ledger, ...)
        self.phase = "forward"
        self.scope = ""  # dotted path of the enclosing fg.scope()s
        self.meta = False  # inside fg.meta(): factories make meta tensors
        self.role: str | None = None  # "weight" / "input" while a backward slot runs
        self.grad_of: tuple | None = None  # (op name, input slot) whose gradient is computed
        self.grad_node: Node | None = None  # in backward, listening: the Node differentiated
        self.checkpoint = None  # inside fg.checkpoint: the frame that holds or refills nodes
        self.autocast = None  # inside fg.autocast: the policy that casts an op's inputs
        # pre_op(op, args) -> args, run before every op when set: autocast's casts, and a
        # checkpoint's recomputation (which may end before the op runs); one check per op
        self.pre_op = None

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"Mode({fields})"


class _PerThread(threading.local):
    def __init__(self):
        self.mode = Mode()


_per_thread = _PerThread()


def mode() -> Mode:
    """This thread's Mode (read it; change it only through `override`).

    >>> from flopgrad.dispatch import mode, override
    >>> with override(phase="optimizer"):
    ...     inside = mode().phase
    >>> inside, mode().phase
    ('optimizer', 'forward')
    """
    return _per_thread.mode


class override:
    """Set Mode fields for a block (context manager) or for every call (decorator); the
    previous values come back on exit. Nests, and is safe in recursion and across threads.

    >>> import flopgrad as fg
    >>> from flopgrad.dispatch import override
    >>> @override(grad_enabled=False)
    ... def evaluate(x):
    ...     return (x * 2).requires_grad
    >>> evaluate(fg.ones(2, requires_grad=True))
    False
    """

    __slots__ = ("fields", "_saved")

    def __init__(self, **fields):
        for name in fields:
            if name not in Mode.__slots__:
                raise TypeError(f"override: {name!r} is not a mode field; one of {Mode.__slots__}")
        self.fields = fields
        self._saved: list = []

    def __enter__(self):
        m = _per_thread.mode
        self._saved.append((m, [(k, getattr(m, k)) for k in self.fields]))
        for k, v in self.fields.items():
            setattr(m, k, v)
        return self

    def __exit__(self, *exc):
        m, old = self._saved.pop()
        for k, v in old:
            setattr(m, k, v)
        return False

    def _fresh(self) -> override:
        return override(**self.fields)

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            with self._fresh():  # a fresh manager per call: recursion and threads nest
                return fn(*args, **kwargs)
        return wrapped


meta_seen = False  # process-wide: once a meta array exists, dispatch checks inputs for them


def saw_meta() -> None:
    """Note that a meta array exists (from then on dispatch checks its inputs for them)."""
    global meta_seen
    meta_seen = True


class Node:
    """One recorded primitive application (PyTorch's grad_fn)."""

    __slots__ = (
        "op", "parents", "saved", "versions", "params", "in_shapes", "out_data",
        "out_tangent", "out_version", "released", "scope", "weight_level", "memo", "recompute",
        "__weakref__",
    )

    def out(self):
        """The op's output as a Tensor (rebuilt: nodes never hold their output tensor)."""
        node = self if _per_thread.mode.grad_enabled else None
        return Tensor._wrap(self.out_data, node, tangent=self.out_tangent)

    def name(self) -> str:
        return self.op.name

    def __repr__(self) -> str:
        return f"<{self.op.name.capitalize()}Backward>"


class ShapeError(ValueError):
    """Shapes that an op cannot combine."""


def _shape_error(op: Op, args, err: Exception) -> ShapeError:
    shapes = " and ".join(str(tuple(np.shape(_data(a)))) for a in args)
    return ShapeError(f"{op.name}: cannot combine shapes {shapes}: {err}")


def _data(a):
    return a._data if isinstance(a, Tensor) else a


def apply(op: Op, args: tuple, params: tuple = ()):
    """Run primitive `op` on `args` (Tensors or constants) with static `params`."""
    mode_ = _per_thread.mode
    if mode_.pre_op is not None:
        args = mode_.pre_op(op, args)  # fg.autocast's casts; a recomputation's early end
    n_args = len(args)  # the common cases unrolled: these lines run for every op
    if n_args == 2:
        a, b = args
        arrays = [a._data if isinstance(a, Tensor) else a, b._data if isinstance(b, Tensor) else b]
    elif n_args == 1:
        a = args[0]
        arrays = [a._data if isinstance(a, Tensor) else a]
    else:
        arrays = [a._data if isinstance(a, Tensor) else a for a in args]
    listening = mode_.listeners
    if listening:
        start = perf_counter_ns()
    forward = op.forward
    if op.inplace:
        _check_inplace(op, args, mode_)
    if meta_seen and (any(type(a) is MetaArray for a in arrays)
                      or (params and _meta_in(params))):
        forward = op.meta
        if forward is None:
            raise NotImplementedError(
                f"{op.name}: no shape rule for meta tensors; run it on real tensors")
    try:
        out = forward(*arrays, *params)
    except (ValueError, IndexError) as err:
        raise _shape_error(op, args, err) from None
    if type(out) is not _ndarray and type(out) is not MetaArray:
        out = np.asarray(out)  # ufuncs return NumPy scalars for 0-d results
    if listening:
        for listener in listening:
            listener.on_op(op, args, arrays, out, params, start)
    if op.inplace:
        args[0]._version[0] += 1
        return args[0]
    t = _new(Tensor)
    t._data = out
    t._tangent = t.grad = t._node = None
    t._version = args[0]._version if op.view else [0]  # a view shares its base's versions
    t.requires_grad = False
    if mode_.grad_enabled and op.vjp is not None:
        parents = None
        i = 0
        for a in args:
            if isinstance(a, Tensor) and a.requires_grad:
                if parents is None:
                    parents = [None] * len(args)
                parents[i] = a._node or a
            i += 1
        if parents is not None:
            t._node = _record(op, args, arrays, out, params, parents, t._version, mode_)
            t.requires_grad = True
    if mode_.forward_ad:
        for a in args:
            if isinstance(a, Tensor) and a._tangent is not None:
                _forward_tangent(op, args, t, params)
                break
    return t


def _meta_in(params: tuple) -> bool:
    """Whether a static param is (or holds) a meta array: an index of meta token ids."""
    for p in params:
        if type(p) is MetaArray or (type(p) is tuple and any(type(q) is MetaArray for q in p)):
            return True
    return False


_new = object.__new__
_ndarray = np.ndarray


def _check_inplace(op: Op, args, mode_: Mode) -> None:
    target = args[0]
    if not isinstance(target, Tensor):
        raise TypeError(f"{op.name}: the tensor to update in place must be a Tensor")
    if mode_.grad_enabled and any(isinstance(a, Tensor) and a.requires_grad for a in args):
        raise RuntimeError(
            f"{op.name}: in-place update of a tensor that requires grad (or with one); wrap it "
            "in `with fg.no_grad():` (as optimizers do) or use the out-of-place op")
    if not target._data.flags.writeable:
        raise ValueError(f"{op.name}: the tensor is a read-only view (e.g. from expand); "
                         ".clone() it first")


def _record(op: Op, args, arrays, out, params, parents, out_version, mode_: Mode) -> Node:
    node = _new(Node)
    node.op = op
    node.parents = parents
    node.params = params
    node.in_shapes = in_shapes = []
    for a in arrays:
        kind = type(a)
        if kind is _ndarray or kind is MetaArray:
            in_shapes.append(a.shape)
        elif kind is float or kind is int or kind is bool:
            in_shapes.append(())
        else:
            in_shapes.append(np.shape(a))
    # memo: scratch for a vjp rule that shares work between its input slots in one pass
    node.out_tangent = node.out_data = node.saved = node.versions = node.memo = None
    node.released = False
    node.scope = mode_.scope
    node.recompute = None  # the checkpoint frame that will refill what this node saves
    node.weight_level = 0
    frame = mode_.checkpoint
    if frame is None:
        if op.saves:
            _save(node, op.uses, args, out, parents, out_version)
    elif op.saves and _needs_save(op.uses, parents):
        if frame.refilling:
            _save(node, op.uses, args, out, parents, out_version)
        frame.recorded(node)  # holds the node (forward) or refills its twin (recompute)
    if mode_.listeners:
        node.weight_level = _weight_level_of_inputs(args, params)
        for listener in mode_.listeners:
            listener.on_saved(node)
    return node


def _needs_save(uses: tuple, parents: list) -> bool:
    """Whether a node keeps anything: an input that needs a gradient reads saved values."""
    return any(p is not None and i < len(uses) and uses[i] for i, p in enumerate(parents))


def _save(node: Node, uses: tuple, args, out, parents, out_version) -> None:
    """Keep what the gradients of the inputs that need one will read (out is slot -1)."""
    for i, p in enumerate(parents):
        if p is not None and i < len(uses):
            for j in uses[i]:
                if j < 0:
                    node.out_data = out
                    node.out_version = out_version
                    continue
                if node.saved is None:
                    node.saved = [None] * len(args)
                a = args[j]
                node.saved[j] = a
                if isinstance(a, Tensor):  # backward checks the version (in-place edits)
                    if node.versions is None:
                        node.versions = []
                    node.versions.append((j, a._version, a._version[0]))


def weight_level(t) -> int:
    """How purely a tensor derives from weights, for the dW/dX split: 2 = only from
    nn.Parameters, 1 = only from leaves that require grad, 0 = depends on data (of any
    dtype: images, token ids, masks, targets)."""
    node = t._node
    if node is not None:
        return node.weight_level
    if isinstance(t, Parameter):
        return 2
    return 1 if t.requires_grad else 0


def _weight_level_of_inputs(args, params) -> int:
    """The weight level of an op's output: the lowest of its inputs'. A Tensor that needs
    no gradient, an array constant or an index array among the params (embedding's token
    ids, gather's index) is data, level 0; Python numbers and shapes are not data."""
    level = 2
    for a in args:
        if isinstance(a, Tensor):
            level = min(level, weight_level(a))
        elif isinstance(a, _ARRAYS) and a.ndim:
            return 0
        if not level:
            return 0
    for p in params:
        if isinstance(p, _ARRAYS) or (type(p) is tuple and any(isinstance(q, _ARRAYS) for q in p)):
            return 0
    return level


_ARRAYS = (np.ndarray, MetaArray)


def release(node: Node) -> None:
    """Free what a node saved, once its backward has run (listeners are told)."""
    for listener in _per_thread.mode.listeners:
        listener.on_release(node)
    node.released = node.saved is not None or node.out_data is not None
    node.saved = node.out_data = None


def track_alloc(arr: np.ndarray, category: str = "activations") -> None:
    """Tell listeners about an array made outside dispatch (factories, .grad copies),
    or that a known array is a parameter, a gradient or optimizer state."""
    for listener in _per_thread.mode.listeners:
        listener.on_alloc(arr, category)


class _Primals:
    """What a jvp rule sees: every input, the output and the params."""

    __slots__ = ("op", "saved", "params", "_out")

    def __init__(self, op, args, out, params):
        self.op, self.saved, self.params, self._out = op, args, params, out

    def out(self):
        return self._out


def _forward_tangent(op: Op, args, out, params) -> None:
    if op.jvp is None:
        return
    tangents = [a._tangent if isinstance(a, Tensor) else None for a in args]
    mode_ = _per_thread.mode
    mode_.forward_ad -= 1  # tangent arithmetic carries no tangents of its own
    try:
        tan = op.jvp(_Primals(op, args, out, params), tangents)
    finally:
        mode_.forward_ad += 1
    if tan is not None and tan._data.shape != out._data.shape:
        tan = tan.broadcast_to(out._data.shape)
    out._tangent = tan
    if out._node is not None:
        out._node.out_tangent = tan
