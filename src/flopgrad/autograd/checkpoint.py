"""Activation checkpointing: keep a block's inputs, drop what its ops save, recompute it in
backward (PyTorch's non-reentrant `torch.utils.checkpoint.checkpoint`).

In the forward pass the ops inside `fg.checkpoint(fn, ...)` are recorded as usual, but what
they would save for backward is not kept: each recording node is held by the checkpoint's
frame. When backward reaches the first of them, the frame re-runs `fn` on the same inputs
(phase "recompute", the random state replayed, the scopes as in the forward) and hands
every recomputed saved value to its twin in the original graph; backward then goes on
through the original graph. Recomputation stops as soon as every held node has its values
back, so a block's trailing ops that save nothing, and a last op that saves only its
inputs, are not recomputed (as in PyTorch's non-reentrant checkpoint). Nested checkpoints
work: an inner checkpoint's inputs are values of the outer one, recomputed when the outer
block is.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

from flopgrad import creation
from flopgrad import dispatch as D
from flopgrad.autograd.engine import _inplace_message
from flopgrad.dispatch import Node, mode, override, release

CHECKPOINT_OP = None  # the Op the checkpoint's kept inputs are billed under (set below)


class _StopRecompute(BaseException):
    """Raised inside a recomputation once every held node has its values back."""


class _Frame:
    """One fg.checkpoint call: its function and inputs, and the nodes whose saved values it
    will recompute."""

    __slots__ = ("fn", "args", "kwargs", "scope", "autocast", "rng_state", "versions", "held",
                 "inner", "parent", "refilling", "done", "_next", "_inner_next", "_left", "kept",
                 "__weakref__")

    def __init__(self, fn, args, kwargs, scope: str, parent: _Frame | None):
        self.fn, self.args, self.kwargs, self.scope, self.parent = fn, args, kwargs, scope, parent
        self.autocast = mode().autocast  # recomputed under the forward's autocast, as torch
        self.rng_state = creation.generator().bit_generator.state
        self.versions = [(i, a._version, a._version[0]) for i, a in enumerate(args)
                         if isinstance(a, D.Tensor)]
        self.held: list[weakref.ref] = []
        self.inner: list[_Frame] = []
        self.refilling = self.done = False
        self._next = self._inner_next = self._left = 0
        self.kept: Node | None = None

    # ------------------------------------------------------------ forward
    def recorded(self, node: Node) -> None:
        """A node that saves values was recorded inside this checkpoint: in the forward,
        hold it (it keeps nothing); while recomputing, give its values to its twin."""
        if not self.refilling:
            node.recompute = self
            self.held.append(weakref.ref(node))
            return
        k = self._next
        self._next += 1
        if k >= len(self.held):
            raise RuntimeError(
                "checkpoint: recomputing the function ran more ops than its forward did; the "
                "function must run the same ops on the same inputs each time")
        twin = self.held[k]()
        if twin is not None:
            if twin.op is not node.op:
                raise RuntimeError(
                    f"checkpoint: recomputing the function ran {node.op.name} where its "
                    f"forward ran {twin.op.name}; the function must run the same ops on the "
                    "same inputs each time (no data-dependent control flow)")
            twin.saved, twin.out_data, twin.versions = node.saved, node.out_data, node.versions
            if node.out_data is not None:
                twin.out_version = node.out_version
            # the recomputed node keeps them too (a second derivative goes through it); the
            # buffers are the same, so the bill counts them once
            for listener in mode().listeners:
                listener.on_saved(twin)
        self._count_down()

    def before(self, op, args: tuple) -> None:
        """While recomputing, before an op runs: if it is the last held node and saves only
        its inputs, those are its saved values already, so the recomputation ends without
        running it (as PyTorch's, whose saved inputs are packed before the kernel runs)."""
        if self._left != 1 or not op.saves or op.vjp is None:
            return
        parents = [a if isinstance(a, D.Tensor) and a.requires_grad else None for a in args]
        needed = [op.uses[i] for i, p in enumerate(parents)
                  if p is not None and i < len(op.uses) and op.uses[i]]
        if not needed or any(j < 0 for used in needed for j in used):
            return
        node = D._new(Node)
        node.op, node.saved, node.versions, node.out_data = op, None, None, None
        D._save(node, op.uses, args, None, parents, None)
        self.recorded(node)

    def _pre_op(self, op, args: tuple) -> tuple:
        """Before each op of the recomputation: the forward's autocast casts, then maybe
        the end of the recomputation (on the inputs the op would save)."""
        if self.autocast is not None:
            args = self.autocast.cast(op, args)
        self.before(op, args)
        return args

    def inner_call(self, args: tuple, kwargs: dict) -> None:
        """While recomputing: the k-th checkpoint inside this one gets its inputs back."""
        k = self._inner_next
        self._inner_next += 1
        if k < len(self.inner):
            self.inner[k].args, self.inner[k].kwargs = args, kwargs
        self._count_down()

    def _count_down(self) -> None:
        self._left -= 1
        if self._left == 0:
            raise _StopRecompute

    # ------------------------------------------------------------ backward
    def refill(self) -> None:
        """Recompute the function and give every held node its saved values back."""
        if self.done or self.refilling:
            return
        if self.args is None:  # an inner checkpoint: the outer one recomputes its inputs
            self.parent.refill()
            if self.args is None:
                raise RuntimeError("checkpoint: the enclosing checkpoint's recomputation did "
                                   "not reach this nested checkpoint")
        for i, version, expected in self.versions if self.parent is None else ():
            if version[0] != expected:
                raise RuntimeError(_inplace_message(
                    "checkpoint", f"input {i}", self.args[i].shape, version[0], expected))
        if self.kept is not None:
            release(self.kept)
            self.kept = None
        self._left = len(self.held) + len(self.inner)
        generator = creation.generator().bit_generator
        state_now = generator.state
        generator.state = self.rng_state
        self.refilling = True
        try:
            if self._left:
                with override(grad_enabled=True, phase="recompute", scope=self.scope,
                              role=None, grad_of=None, grad_node=None, checkpoint=self,
                              autocast=self.autocast, pre_op=self._pre_op):
                    self.fn(*self.args, **self.kwargs)
        except _StopRecompute:
            pass
        finally:
            self.refilling = False
            generator.state = state_now
        if self._left:
            raise RuntimeError(
                "checkpoint: recomputing the function ran fewer ops than its forward did; the "
                "function must run the same ops on the same inputs each time")
        for ref in self.held:
            node = ref()
            if node is not None:
                node.recompute = None
        self.held, self.inner, self.done = [], [], True
        self.fn = self.args = self.kwargs = None


def checkpoint(fn: Callable, *args: Any, use_reentrant: bool = False,
               preserve_rng_state: bool = True, **kwargs: Any) -> Any:
    """Run `fn(*args, **kwargs)` keeping only its inputs for backward; backward recomputes
    it (phase "recompute") and goes on through the recomputed values. Gradients are
    bit-identical to running `fn` directly; inside `fg.no_grad()` it simply calls `fn`.

    Like `torch.utils.checkpoint.checkpoint(fn, *args, use_reentrant=False)`; the random
    state is always replayed (dropout masks come out the same).

    >>> import flopgrad as fg
    >>> w = fg.nn.Parameter(fg.ones(3, 3))
    >>> x = fg.ones(2, 3)
    >>> block = lambda h: (h @ w).tanh() @ w + h
    >>> with fg.profile() as bill:
    ...     fg.checkpoint(block, x).sum().backward()
    >>> bill.flops("recompute", op="matmul"), bill.flops("recompute", op="tanh")
    (36, 6)

    Only the first matmul and the tanh run again: the second matmul saves only its inputs
    (back once the tanh has run) and the add saves nothing.
    """
    if use_reentrant:
        raise ValueError("checkpoint: use_reentrant=True is not supported; flopgrad implements "
                         "PyTorch's recommended non-reentrant checkpoint (the default)")
    if not preserve_rng_state:
        raise ValueError("checkpoint: preserve_rng_state=False is not supported; the random "
                         "state is always replayed so that gradients are exact")
    if not callable(fn):
        raise TypeError(f"checkpoint: fn must be callable, got {type(fn).__name__}")
    m = mode()
    if not m.grad_enabled:  # nothing is recorded, so there is nothing to drop
        return fn(*args, **kwargs)
    parent = m.checkpoint
    if parent is not None and parent.refilling:
        parent.inner_call(args, kwargs)  # may stop the outer recomputation right here
        parent = None  # recomputed values are kept like any forward's: this frame is new
    frame = _Frame(fn, args, kwargs, m.scope, parent)
    if parent is not None:
        parent.inner.append(frame)  # the outer checkpoint recomputes this one's inputs
    # an enclosing recomputation's pre_op must not see this frame's ops (it holds them)
    with override(checkpoint=frame, pre_op=None if m.autocast is None else m.autocast.cast):
        out = fn(*args, **kwargs)
    if parent is not None:
        frame.args = frame.kwargs = None  # the outer checkpoint keeps nothing either
    elif frame.held or frame.inner:
        _bill_kept_inputs(frame, args, kwargs)
    return out


def _bill_kept_inputs(frame: _Frame, args: tuple, kwargs: dict) -> None:
    """Tell the listeners that the checkpoint keeps its tensor inputs until its backward."""
    if not mode().listeners:
        return
    kept = D._new(Node)
    kept.op = CHECKPOINT_OP
    kept.saved = [a for a in (*args, *kwargs.values()) if isinstance(a, D.Tensor)]
    kept.out_data = kept.versions = kept.memo = kept.recompute = None
    kept.parents, kept.params, kept.in_shapes = [], (), []
    kept.released, kept.scope, kept.weight_level = False, frame.scope, 0
    for listener in mode().listeners:
        listener.on_saved(kept)
    frame.kept = kept


def checkpoint_sequential(functions: Sequence[Callable] | Any, segments: int, input: Any,
                          use_reentrant: bool = False, **kwargs: Any) -> Any:
    """Run a sequence of functions (or an nn.Sequential) in `segments` chunks, checkpointing
    every chunk but the last, as `torch.utils.checkpoint.checkpoint_sequential`.

    >>> import flopgrad as fg
    >>> fg.manual_seed(0)
    >>> net = fg.nn.Sequential(*[fg.nn.Linear(4, 4) for _ in range(4)])
    >>> fg.checkpoint_sequential(net, 2, fg.ones(1, 4)).shape
    (1, 4)
    """
    functions = list(functions.children()) if hasattr(functions, "children") else list(functions)
    if not isinstance(segments, int) or isinstance(segments, bool) or segments < 1:
        raise ValueError(f"checkpoint_sequential: segments must be a positive int, got "
                         f"{segments!r}")
    if not functions:
        raise ValueError("checkpoint_sequential: no functions to run")
    size = len(functions) // segments or 1
    end = -1
    for start in range(0, size * (segments - 1), size):
        end = start + size - 1
        if end >= len(functions) - 1:
            break
        chunk = functions[start:end + 1]
        input = checkpoint(_run_chunk, chunk, input, use_reentrant=use_reentrant, **kwargs)
    return _run_chunk(functions[end + 1:], input)


def _run_chunk(chunk: list, x: Any) -> Any:
    for f in chunk:
        x = f(x)
    return x


def _declare_checkpoint_op() -> None:
    global CHECKPOINT_OP
    from flopgrad.ops import Op

    CHECKPOINT_OP = Op("checkpoint", forward=None)


_declare_checkpoint_op()
