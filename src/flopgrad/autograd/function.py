"""User-defined ops: Function (forward, backward, optional jvp and cost) and FunctionCtx."""

from __future__ import annotations

import contextlib

import numpy as np

from flopgrad import ops as O
from flopgrad.autograd.engine import _inplace_message
from flopgrad.costs import Cost
from flopgrad.dispatch import apply
from flopgrad.tensor import Tensor

__all__ = ["Function", "FunctionCtx"]


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

    def save_for_backward(self, *arrays: np.ndarray) -> None:
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
    def forward(ctx: FunctionCtx, *args: np.ndarray) -> np.ndarray:
        """Compute the output from NumPy arrays; every subclass defines it.

        >>> import flopgrad as fg, numpy as np
        >>> fg.Function.forward(fg.FunctionCtx(), np.ones(2))
        Traceback (most recent call last):
            ...
        NotImplementedError: Function subclasses define forward(ctx, *arrays)
        """
        raise NotImplementedError("Function subclasses define forward(ctx, *arrays)")

    @staticmethod
    def backward(ctx: FunctionCtx, grad: Tensor) -> Tensor | tuple | None:
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
            op.cost = lambda out, ins, p: Cost(*user_cost(out, ins))
        else:
            op.unknown_cost = True
        return op

    @classmethod
    def apply(cls, *args: Tensor | np.ndarray | float) -> Tensor:
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
