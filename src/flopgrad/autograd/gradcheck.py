"""gradcheck: analytic derivatives (vjp and jvp) against central finite differences."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from flopgrad.autograd.functional import _as_tuple, jacfwd, jacrev
from flopgrad.autograd.grad_mode import no_grad
from flopgrad.tensor import Tensor, cat

__all__ = ["gradcheck", "GradcheckError"]


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


def gradcheck(fn: Callable, inputs: Tensor | Sequence, eps: float = 1e-6, atol: float = 1e-5,
              rtol: float = 1e-3, check_jvp: bool = True) -> bool:
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
