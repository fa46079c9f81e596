"""numerical_grad: the gradient of a scalar function by finite differences, with its bill.

The naive way to get a gradient: perturb one input element at a time and evaluate the
function again, so n elements cost 2n passes (central differences) or n + 1 (forward
differences) where backprop costs one forward and one backward. Every pass runs as phase
"forward" in scope "numerical_grad" (under the caller's scope) without a graph, so an
enclosing `fg.profile()` bills exactly the passes; `NumericalGrad.passes` counts them.
gradcheck uses the same differences (`difference_jacobian`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from flopgrad.backend import MetaArray
from flopgrad.dispatch import mode, override
from flopgrad.tensor import Tensor

__all__ = ["numerical_grad", "NumericalGrad", "METHODS", "DEFAULT_EPS"]

METHODS = ("central", "forward")

# the default step by dtype and method: torch.autograd.gradcheck's 1e-6 for central
# differences in float64; near the square root of the unit roundoff for forward ones (their
# error is O(eps) against O(eps ** 2)); larger steps for float32
DEFAULT_EPS = {
    (np.dtype(np.float64), "central"): 1e-6, (np.dtype(np.float64), "forward"): 1e-8,
    (np.dtype(np.float32), "central"): 5e-3, (np.dtype(np.float32), "forward"): 5e-4,
}


class NumericalGrad(tuple):
    """The finite-difference gradients, one per input (a tuple, as fg.autograd.grad returns),
    with how they were computed: `method`, `eps` (one per input), `n` (input elements) and
    `passes` (evaluations of fn: 2n for central differences, n + 1 for forward ones).

    >>> import flopgrad as fg
    >>> g = fg.numerical_grad(lambda x: (x ** 2).sum(), fg.tensor([1.0, 2.0], dtype=fg.float64))
    >>> g.passes, g.n, g.method, [round(v, 6) for v in g[0].tolist()]
    (4, 2, 'central', [2.0, 4.0])
    """

    method: str
    eps: tuple
    n: int
    passes: int

    def __new__(cls, grads, method: str, eps: tuple, passes: int):
        self = super().__new__(cls, grads)
        self.method, self.eps, self.passes = method, eps, passes
        self.n = sum(g.numel() for g in grads)
        return self

    def __repr__(self) -> str:
        return (f"NumericalGrad({tuple.__repr__(self)}, method={self.method!r}, "
                f"passes={self.passes})")


def within(name: str, **fields) -> override:
    """override(**fields) with scope `name` nested under the caller's scope.

    >>> import flopgrad as fg
    >>> with fg.profile() as bill, fg.scope("model"), within("check"):
    ...     _ = fg.ones(3) * 2
    >>> bill.flops(scope="model.check")
    3
    """
    outer = mode().scope
    return override(scope=f"{outer}.{name}" if outer else name, **fields)


def passes_scope(name: str) -> override:
    """The mode a finite-difference pass runs in: phase "forward", no graph, and scope
    `name` under the caller's (so a profile bills the passes apart from everything else).

    >>> import flopgrad as fg
    >>> with fg.profile() as bill, passes_scope("numerical_grad"):
    ...     y = fg.ones(3, requires_grad=True) * 2
    >>> bill.flops("forward", scope="numerical_grad"), y.requires_grad
    (3, False)
    """
    return within(name, phase="forward", grad_enabled=False)


def _check_step(eps) -> float:
    if isinstance(eps, bool) or not isinstance(eps, int | float) or not np.isfinite(eps) \
            or eps <= 0:
        raise ValueError(f"numerical_grad: eps must be a positive finite number, got {eps!r}")
    return float(eps)


def _perturbable(x, k: int, who: str) -> np.ndarray:
    """x's array, checked: a float64/float32 tensor with data whose elements own memory."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{who}: input {k} must be a Tensor, got {type(x).__name__}")
    a = x._data
    if isinstance(a, MetaArray):
        raise ValueError(f"{who}: input {k} is a meta tensor (no values to perturb)")
    if a.dtype not in (np.float64, np.float32):
        raise TypeError(f"{who}: input {k} is {a.dtype}; finite differences need float64 "
                        "(recommended) or float32")
    if not a.flags.writeable or any(s == 0 and d > 1 for s, d in zip(a.strides, a.shape,
                                                                     strict=True)):
        raise ValueError(f"{who}: input {k} is a read-only or expanded view (elements share "
                         "memory); pass a copy (.clone())")
    return a


def difference_jacobian(evaluate: Callable[[], np.ndarray], arr: np.ndarray, eps: float,
                        method: str, nout: int, base: np.ndarray | None = None) -> np.ndarray:
    """d evaluate() / d arr by finite differences, shape (nout, arr.size), float64.

    `evaluate()` returns the nout flat float64 outputs for arr's current values; arr is
    perturbed in place one element at a time and every element is written back bit for bit
    (also when evaluate raises). The step divided by is the one the dtype really took
    (x + eps rounded, minus x). Central: 2 calls per element; forward: 1 per element and
    `base`, the unperturbed outputs (computed once by the caller, shared by all inputs).

    >>> import numpy as np
    >>> a = np.array([1.0, 3.0])
    >>> difference_jacobian(lambda: a ** 2, a, 1e-6, "central", 2).round(6)
    array([[2., 0.],
           [0., 6.]])
    """
    jac = np.zeros((nout, arr.size))
    flat = arr.reshape(-1) if arr.flags.c_contiguous else None
    target = flat if flat is not None else arr
    for j in range(arr.size):
        idx = j if flat is not None else np.unravel_index(j, arr.shape)
        orig = target[idx]
        try:
            target[idx] = orig + eps
            step = float(target[idx]) - float(orig)
            if step == 0:
                raise ValueError(f"finite differences: x + eps == x at element {j} (value "
                                 f"{orig!r}, eps {eps!r}); use a larger eps")
            plus = evaluate()
            if method == "central":
                target[idx] = orig - eps
                step += float(orig) - float(target[idx])
                jac[:, j] = (plus - evaluate()) / step
            else:
                jac[:, j] = (plus - base) / step
        finally:
            target[idx] = orig
    return jac


def numerical_grad(fn: Callable, inputs: Tensor | Sequence[Tensor], eps: float | None = None,
                   method: str = "central") -> NumericalGrad:
    """The gradient of a scalar `fn(*inputs)` by finite differences, one tensor per input.

    Each input's elements are perturbed in place (and restored exactly afterwards), so fn
    may read them directly, e.g. a model's parameters: `fn = lambda *ps: loss(model(x))`.
    method "central": (f(x + h) - f(x - h)) / 2h, 2n passes for n input elements;
    "forward": (f(x + h) - f(x)) / h, n + 1 passes. eps defaults by dtype (DEFAULT_EPS:
    1e-6 central, 1e-8 forward in float64; float64 is recommended). Under `fg.profile()`
    the passes are billed as phase "forward" in scope "numerical_grad"; the differences
    themselves (one subtraction and one division per element, in NumPy) are not billed.

    >>> import flopgrad as fg
    >>> w = fg.tensor([1.0, -2.0, 0.5], dtype=fg.float64)
    >>> with fg.profile() as bill:
    ...     g = fg.numerical_grad(lambda w: (w * w).sum(), w)
    >>> [round(v, 6) for v in g[0].tolist()], g.passes, bill.flops(scope="numerical_grad")
    ([2.0, -4.0, 1.0], 6, 30)
    """
    if method not in METHODS:
        raise ValueError(f"numerical_grad: method must be one of {METHODS}, got {method!r}")
    if not callable(fn):
        raise TypeError(f"numerical_grad: fn must be callable, got {type(fn).__name__}")
    inputs = tuple(inputs) if isinstance(inputs, list | tuple) else (inputs,)
    if not inputs:
        raise ValueError("numerical_grad: no inputs")
    arrays = [_perturbable(x, k, "numerical_grad") for k, x in enumerate(inputs)]
    steps = tuple(DEFAULT_EPS[a.dtype, method] if eps is None else _check_step(eps)
                  for a in arrays)
    calls = [0]

    def evaluate() -> np.ndarray:
        with passes_scope("numerical_grad"):
            out = fn(*inputs)
        calls[0] += 1
        if not isinstance(out, Tensor):
            raise TypeError(f"numerical_grad: fn must return a Tensor, got {type(out).__name__}")
        if out.numel() != 1:
            raise ValueError(f"numerical_grad: fn must return a scalar (one element), got "
                             f"shape {out.shape}")
        if isinstance(out._data, MetaArray):
            raise ValueError("numerical_grad: fn returned a meta tensor (no value)")
        return np.asarray(out._data, dtype=np.float64).reshape(1)

    base = evaluate() if method == "forward" else None
    grads = []
    for a, h in zip(arrays, steps, strict=True):
        col = difference_jacobian(evaluate, a, h, method, 1, base)
        grads.append(Tensor(col.reshape(a.shape).astype(a.dtype, copy=False)))
    return NumericalGrad(grads, method, steps, calls[0])
