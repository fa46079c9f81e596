"""gradcheck: analytic derivatives (vjp and jvp) against central finite differences."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from flopgrad.autograd.functional import _as_tuple, jacfwd, jacrev
from flopgrad.autograd.numerical import difference_jacobian, passes_scope, within
from flopgrad.tensor import Tensor, cat

__all__ = ["gradcheck", "GradcheckError"]


class GradcheckError(AssertionError):
    """Analytic and finite-difference derivatives disagree. `bill` is the Bill of the check
    up to the failure (scopes "gradcheck.numerical", "gradcheck.vjp", "gradcheck.jvp").

    >>> import flopgrad as fg
    >>> x = fg.zeros(1, dtype=fg.float64, requires_grad=True)
    >>> try:  # relu has a kink at 0: its analytic slope there is 0, the numeric one 0.5
    ...     fg.gradcheck(lambda x: x.relu(), (x,))
    ... except fg.GradcheckError as err:
    ...     print(err)
    gradcheck (vjp): d output[0] / d input 0[0]: analytic 0.0, numeric 0.5 (atol=1e-05, rtol=0.001)
    """


def _flat_outputs(fn, args) -> np.ndarray:
    out = fn(*args)
    return np.concatenate([np.asarray(o._data, dtype=np.float64).reshape(-1)
                           for o in _as_tuple(out)])


def _bill():
    from flopgrad.report import profile  # the report layer, above autograd: imported late
    return profile(memory=False, events=False)


def gradcheck(fn: Callable, inputs: Tensor | Sequence, eps: float = 1e-6, atol: float = 1e-5,
              rtol: float = 1e-3, check_jvp: bool = True, return_bill: bool = False):
    """Compare vjp (and jvp) Jacobians with central finite differences in float64.

    Checks every input that requires grad; raises GradcheckError naming the worst entry.
    The check bills itself: its finite differences (one pass of fn to size the output, then
    2 per input element) run in scope "gradcheck.numerical", the analytic Jacobians in
    "gradcheck.vjp" and "gradcheck.jvp" (one backward or forward-mode pass per output or
    input element), all visible to an enclosing `fg.profile()`. The check's own Bill is
    `GradcheckError.bill`, or what gradcheck returns with return_bill=True (instead of True).

    >>> import flopgrad as fg
    >>> x = fg.randn(3, dtype=fg.float64, requires_grad=True)
    >>> fg.gradcheck(lambda x: x.tanh(), (x,))
    True
    >>> bill = fg.gradcheck(lambda x: x.tanh(), (x,), return_bill=True)
    >>> bill.flops(scope="gradcheck.numerical")  # 7 passes of a 3-element tanh
    21
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
    # the inputs checked are private copies, perturbed in place by the differences
    base = [Tensor._wrap(x._data.copy()) if k in wrt else
            x.detach() if isinstance(x, Tensor) else x for k, x in enumerate(inputs)]
    with _bill() as bill:
        try:
            _check(fn, base, wrt, eps, atol, rtol, check_jvp)
        except GradcheckError as err:
            err.bill = bill
            raise
    return bill if return_bill else True


def _check(fn, base, wrt, eps, atol, rtol, check_jvp) -> None:
    with passes_scope("gradcheck.numerical"):
        nout = _flat_outputs(fn, base).size

    def flat_fn(*xs):
        outs = _as_tuple(fn(*xs))
        return cat([o.reshape(-1) for o in outs]) if len(outs) > 1 else outs[0].reshape(-1)

    def evaluate():
        with passes_scope("gradcheck.numerical"):
            return _flat_outputs(fn, base)

    for k in wrt:
        x = base[k]._data
        numeric = difference_jacobian(evaluate, x, eps, "central", nout)
        with within("gradcheck.vjp"):
            checks = [("vjp", jacrev(flat_fn, k)(*base)._data.reshape(nout, x.size))]
        if check_jvp:
            with within("gradcheck.jvp"):
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
