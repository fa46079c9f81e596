"""Reverse and forward mode on top of dispatch: backward, grad, jvp, vjp, jacobians,
numerical_grad, gradcheck.

One module a job: `grad_mode` (no_grad, enable_grad, set_grad_enabled), `engine` (the
backward walk behind backward and grad), `functional` (jvp, vjp, jacrev, jacfwd, hvp),
`numerical` (finite differences), `gradcheck`, and `function` (user-defined ops). Imported
by flopgrad.tensor once Tensor exists, so Tensor.backward can call
`flopgrad.autograd.backward`.

>>> import flopgrad as fg
>>> x = fg.tensor(2.0, requires_grad=True)
>>> fg.autograd.grad(x ** 3, x)
(tensor(12.),)
"""

from flopgrad.autograd.checkpoint import checkpoint, checkpoint_sequential
from flopgrad.autograd.engine import backward, grad
from flopgrad.autograd.function import Function
from flopgrad.autograd.function import FunctionCtx as FunctionCtx  # public, not in __all__
from flopgrad.autograd.functional import hvp, jacfwd, jacrev, jvp, vjp
from flopgrad.autograd.grad_mode import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from flopgrad.autograd.gradcheck import GradcheckError, gradcheck
from flopgrad.autograd.numerical import NumericalGrad, numerical_grad

__all__ = [
    "backward", "grad", "no_grad", "enable_grad", "is_grad_enabled", "set_grad_enabled",
    "jvp", "vjp", "jacrev", "jacfwd", "hvp", "gradcheck", "GradcheckError", "numerical_grad",
    "NumericalGrad", "Function", "checkpoint", "checkpoint_sequential",
]
