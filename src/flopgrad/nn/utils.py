"""Training utilities: gradient clipping, and checkpointing chosen submodules.

>>> import flopgrad as fg
>>> w = fg.nn.Parameter(fg.ones(4)); w.grad = fg.full((4,), 3.0)
>>> float(fg.nn.utils.clip_grad_norm_([w], 1.0))
6.0
"""

from __future__ import annotations

import numpy as np

from flopgrad.autograd import no_grad
from flopgrad.ledger import phase, scope
from flopgrad.tensor import Tensor, stack


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False) -> Tensor:
    """Scale gradients so their joint norm is at most max_norm; returns the norm before.

    The arithmetic is billed in the "optimizer" phase. Like PyTorch, the gradients are
    multiplied by min(max_norm / (norm + 1e-6), 1).

    >>> import flopgrad as fg
    >>> w = fg.nn.Parameter(fg.zeros(2)); w.grad = fg.tensor([3.0, 4.0])
    >>> fg.nn.utils.clip_grad_norm_([w], max_norm=1.0).item()
    5.0
    """
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return Tensor(0.0)
    with no_grad(), phase("optimizer"), scope("clip_grad_norm"):
        if norm_type == float("inf"):
            total = stack([g.abs().amax() for g in grads]).amax()
        else:
            total = stack([(g.abs() ** norm_type).sum() for g in grads]).sum() ** (
                1.0 / norm_type)
        if error_if_nonfinite and not np.isfinite(total._data):
            raise RuntimeError(
                f"clip_grad_norm_: the total norm of the gradients is {float(total)}; pass "
                "error_if_nonfinite=False to clip anyway")
        coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
        for g in grads:
            scaled = g * coef
            g._data = scaled._data
            g._version[0] += 1
    return total


def checkpoint_modules(model, names) -> list[str]:
    """Checkpoint the submodules at these `named_modules()` paths from now on (each call of
    one runs through `fg.checkpoint`); `checkpoint_modules(model, [])` turns it off. Returns
    the paths now checkpointed. The recomputed ops are billed in phase "recompute".

    >>> import flopgrad as fg
    >>> fg.manual_seed(0)
    >>> net = fg.nn.Sequential(fg.nn.Linear(4, 8), fg.nn.Tanh(), fg.nn.Linear(8, 1))
    >>> fg.nn.utils.checkpoint_modules(net, ["0", "1"])
    ['0', '1']
    >>> with fg.profile() as bill:
    ...     net(fg.ones(2, 4)).sum().backward()
    >>> bill.flops("recompute", scope="1") > 0, fg.nn.utils.checkpoint_modules(net, [])
    (True, [])
    """
    if isinstance(names, str):
        raise TypeError("checkpoint_modules: names must be a list of module paths, e.g. "
                        f"[{names!r}]")
    wanted = list(names)
    found = dict(model.named_modules())
    unknown = [n for n in wanted if n not in found or n == ""]
    if unknown:
        known = ", ".join(repr(n) for n in list(found)[1:12])
        raise ValueError(f"checkpoint_modules: no submodule {unknown[0]!r} in "
                         f"{type(model).__name__}; its submodules are {known}"
                         f"{', ...' if len(found) > 13 else ''}")
    chosen = set(wanted)
    for path, module in found.items():
        if path and (path in chosen) != module._checkpointed:
            if path in chosen:
                object.__setattr__(module, "_checkpointed", True)
            else:
                object.__delattr__(module, "_checkpointed")
    return [path for path, module in found.items() if path and module._checkpointed]
