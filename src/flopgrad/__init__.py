"""flopgrad: automatic differentiation for NumPy that hands you the bill.

>>> import flopgrad as fg
>>> w = fg.tensor([1.0, -2.0], requires_grad=True)
>>> loss = (w * w).sum()
>>> loss.backward()
>>> w.grad
tensor([ 2., -4.])
"""

import numpy as _np

from flopgrad import nn, ops, shapes
from flopgrad.autograd import (
    Function,
    FunctionCtx,
    GradcheckError,
    checkpoint,
    checkpoint_sequential,
    enable_grad,
    grad,
    gradcheck,
    hvp,
    is_grad_enabled,
    jacfwd,
    jacrev,
    jvp,
    no_grad,
    numerical_grad,
    set_grad_enabled,
    vjp,
)
from flopgrad.backend import MetaArray, NoDataError
from flopgrad.creation import (
    arange,
    empty,
    empty_like,
    eye,
    from_numpy,
    full,
    full_like,
    linspace,
    manual_seed,
    meta,
    ones,
    ones_like,
    rand,
    rand_like,
    randint,
    randint_like,
    randn,
    randn_like,
    tensor,
    zeros,
    zeros_like,
)
from flopgrad.dispatch import ShapeError
from flopgrad.ledger import Ledger, phase, scope
from flopgrad.report import Bill, Rule, machine, profile
from flopgrad.serialization import FileFormatError
from flopgrad.tensor import (
    Tensor,
    bfloat16,
    bool_,
    cat,
    chunk,
    concat,
    concatenate,
    einsum,
    float16,
    float32,
    float64,
    floor_divide,
    gather,
    index_select,
    int32,
    int64,
    matmul,
    maximum,
    minimum,
    outer,
    scatter_add,
    split,
    stack,
    where,
)

__version__ = "0.1.0"

from flopgrad import (  # noqa: E402
    amp,  # fg.amp.autocast, fg.amp.GradScaler (like torch.amp)
    autograd,  # noqa: E402  (fg.autograd.backward, like torch.autograd)
    claims,  # noqa: E402  (fg.claims.run(): the seed documents' claims, measured)
    data,
    diagnostics,  # fg.diagnostics: gradient health, detect_anomaly (NaN and inf)
    formulas,  # noqa: E402
    memory,  # noqa: E402  (fg.memory: checkpoint plans and schedules)
    models,
    optim,
    training,
)
from flopgrad.amp import autocast  # noqa: E402
from flopgrad.diagnostics import AnomalyError, Health, detect_anomaly, health  # noqa: E402  # noqa: E402

autograd.detect_anomaly = detect_anomaly  # fg.autograd.detect_anomaly, as torch.autograd's
from flopgrad.planning import budget, plan, plan_checkpoints  # noqa: E402
from flopgrad.serialization import load, save  # noqa: E402


def _method_function(name: str):
    def fn(x, *args, **kwargs):
        if name in _SCALAR_FIRST and not isinstance(x, Tensor) and args and isinstance(
                args[0], Tensor):  # fg.add(5.576, t): the number is t + 5.576's weak scalar
            return _SCALAR_FIRST[name](x, *args, **kwargs)
        return getattr(x if isinstance(x, Tensor) else tensor(x), name)(*args, **kwargs)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"fg.{name}(x, ...) is x.{name}(...): " + (getattr(Tensor, name).__doc__ or "")
    return fn


def _scalar_div(a, b, rounding_mode=None):
    if rounding_mode is None:
        return a / b
    return tensor(a, dtype=_np.result_type(b.dtype, a)).div(b, rounding_mode=rounding_mode)


# a number as the first operand of a binary function, as in torch.add(5.576, t): it stays a
# Python number (a weak scalar: the dtype and the bill of t + 5.576), not a float32 tensor
_SCALAR_FIRST = {
    "add": lambda a, b, alpha=1: a + (b * alpha if alpha != 1 else b),
    "sub": lambda a, b, alpha=1: a - (b * alpha if alpha != 1 else b),
    "mul": lambda a, b: a * b,
    "div": _scalar_div,
    "pow": lambda a, b: a ** b,
}

_METHODS = (
    "exp log log1p sqrt rsqrt abs sign sin cos tanh sigmoid relu erf square clamp clip "
    "sum mean var std prod amax amin max min argmax argmin cumsum logsumexp softmax log_softmax "
    "reshape flatten permute transpose swapaxes squeeze unsqueeze broadcast_to flip roll "
    "masked_fill repeat tile neg pow add sub mul div floor ceil trunc round tril triu"
).split()
for _name in _METHODS:
    globals()[_name] = _method_function(_name)
del _name
