"""Optimizers and learning-rate schedules. Their arithmetic is billed in the "optimizer" phase.

>>> import flopgrad as fg
>>> w = fg.nn.Parameter(fg.tensor([1.0]))
>>> opt = fg.optim.SGD([w], lr=0.1)
>>> (w * w).sum().backward(); opt.step(); w.tolist()
[0.800000011920929]
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable

import numpy as np

from flopgrad.autograd import no_grad
from flopgrad.backend import zeros_like
from flopgrad.dispatch import mode, track_alloc
from flopgrad.dtypes import bfloat16, float16, float32
from flopgrad.ledger import phase, scope
from flopgrad.tensor import Tensor

_LOW_PRECISION = (float16, bfloat16)

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "StepLR", "LambdaLR", "CosineWarmupLR"]


def _writable(t: Tensor) -> Tensor:
    """Give a tensor its own writable memory if it has none (e.g. loaded read-only)."""
    if not t._data.flags.writeable:
        t._data = t._data.copy()
    return t


def _track_state(p: Tensor, state: dict) -> None:
    """Tell a listening bill what a parameter's update keeps: the parameter, its gradient and
    the optimizer's state tensors (moments, momentum buffers)."""
    track_alloc(p._data, "parameters")
    track_alloc(p.grad._data, "gradients")
    for value in state.values():
        if isinstance(value, Tensor):
            track_alloc(value._data, "optimizer_state")


class Optimizer:
    """Base class: parameter groups with hyper-parameters, per-parameter state.

    >>> import flopgrad as fg
    >>> a, b = fg.nn.Parameter(fg.ones(1)), fg.nn.Parameter(fg.ones(1))
    >>> opt = fg.optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1)
    >>> isinstance(opt, fg.optim.Optimizer), [g["lr"] for g in opt.param_groups]
    (True, [0.1, 0.5])
    """

    def __init__(self, params: Iterable, defaults: dict, master_weights: bool = False):
        if not isinstance(master_weights, bool):
            raise TypeError(f"{type(self).__name__}: master_weights must be True or False, got "
                            f"{master_weights!r}")
        self.master_weights = master_weights
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.defaults = defaults
        self.param_groups: list[dict] = []
        seen: set[int] = set()
        for g in groups:
            group = {**defaults, **g, "params": list(g["params"])}
            unique = list({id(p): p for p in group["params"]}.values())
            if len(unique) != len(group["params"]):
                # torch 2.13's warning; it then steps such a parameter once per listing, with
                # state that depends on the optimizer's code path: flopgrad steps it once
                warnings.warn("optimizer contains a parameter group with duplicate parameters; "
                              "in future, this will cause an error; see "
                              "github.com/pytorch/pytorch/issues/40967 for more information "
                              "(flopgrad keeps each parameter once)", UserWarning, stacklevel=3)
                group["params"] = unique
            ids = {id(p) for p in unique}
            if ids & seen:
                raise ValueError("some parameters appear in more than one parameter group")
            seen |= ids
            for k, v in group.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and v < 0:
                    raise ValueError(f"{type(self).__name__}: {k} must be >= 0, got {v}")
            self.param_groups.append(group)
        self.state: dict[int, dict] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget every parameter's gradient (or zero it in place).

        >>> import flopgrad as fg
        >>> w = fg.nn.Parameter(fg.tensor([1.0]))
        >>> opt = fg.optim.SGD([w], lr=0.1)
        >>> w.grad = fg.tensor([2.0]); opt.zero_grad(); w.grad is None
        True
        """
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad._data = zeros_like(p.grad._data)

    def step(self) -> None:
        """Update every parameter that has a gradient.

        >>> import flopgrad as fg
        >>> w = fg.nn.Parameter(fg.tensor([1.0]))
        >>> opt = fg.optim.SGD([w], lr=0.5)
        >>> w.grad = fg.tensor([1.0]); opt.step(); w.tolist()
        [0.5]
        """
        with no_grad(), phase("optimizer"), scope("optimizer"):
            billing = bool(mode().listeners)
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        state = self.state.setdefault(id(p), {})
                        if self.master_weights and p._data.dtype in _LOW_PRECISION:
                            self._update_master(_writable(p), state, group)
                        else:
                            self._update(_writable(p), p.grad, state, group)
                        if billing:
                            _track_state(p, state)

    def _update(self, p: Tensor, g: Tensor, state: dict, group: dict) -> None:
        raise NotImplementedError

    def _update_master(self, p: Tensor, state: dict, group: dict) -> None:
        """Mixed precision: update a float32 copy of a 2-byte parameter with its gradient in
        float32, then round the copy into the parameter (the casts are billed)."""
        master = state.get("master_weight")
        if master is None:
            master = state["master_weight"] = p.to(float32)
        self._update(master, p.grad.to(float32), state, group)
        p._data[...] = master.to(p._data.dtype)._data

    def state_dict(self) -> dict:
        """Hyper-parameters and per-parameter state, parameters referred to by position.

        >>> import flopgrad as fg
        >>> w = fg.nn.Parameter(fg.tensor([1.0]))
        >>> opt = fg.optim.Adam([w], lr=0.1)
        >>> w.grad = fg.tensor([1.0]); opt.step(); opt.state_dict()["state"][0]["step"]
        1
        """
        index = {}
        groups = []
        for group in self.param_groups:
            ids = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                ids.append(index[id(p)])
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": ids})
        state = {index[k]: dict(v) for k, v in self.state.items() if k in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore what state_dict() returned (for the same parameters in the same order).

        >>> import flopgrad as fg
        >>> w = fg.nn.Parameter(fg.tensor([1.0]))
        >>> old, new = fg.optim.Adam([w], lr=0.1), fg.optim.Adam([w], lr=0.5)
        >>> new.load_state_dict(old.state_dict()); new.param_groups[0]["lr"]
        0.1
        """
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups) or any(
                len(a["params"]) != len(b["params"]) for a, b in
                zip(groups, self.param_groups, strict=True)):
            raise ValueError("load_state_dict: the saved parameter groups do not match this "
                             "optimizer's (different number of groups or parameters)")
        params = [p for g in self.param_groups for p in g["params"]]
        for saved, group in zip(groups, self.param_groups, strict=True):
            group.update({k: v for k, v in saved.items() if k != "params"})
        self.state = {}
        for k, v in state_dict["state"].items():
            p = params[int(k)]
            entry = {}
            for name, value in v.items():
                if isinstance(value, Tensor | np.ndarray):
                    arr = value._data if isinstance(value, Tensor) else value
                    if arr.shape not in ((), p.shape) and name != "step":
                        raise ValueError(f"load_state_dict: state {name} of parameter {k} has "
                                         f"shape {arr.shape}, parameter has {p.shape}")
                    value = Tensor(np.array(arr, copy=True))
                entry[name] = value
            self.state[id(p)] = entry


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, dampening, Nesterov and weight decay.

    >>> import flopgrad as fg
    >>> w = fg.nn.Parameter(fg.tensor([1.0]))
    >>> opt = fg.optim.SGD([w], lr=0.1, momentum=0.9)
    >>> for _ in range(2):
    ...     w.grad = fg.tensor([1.0]); opt.step()
    >>> w.tolist()  # 1 - 0.1 * 1 - 0.1 * (0.9 + 1)
    [0.7099999785423279]
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, master_weights: bool = False):
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov needs momentum > 0 and dampening = 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov),
                         master_weights)

    def _update(self, p, g, state, group):
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p
        mu = group["momentum"]
        if mu:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = g.clone()
            else:
                buf.mul_(mu).add_(g, alpha=1 - group["dampening"])
            g = g + buf * mu if group["nesterov"] else buf
        p.sub_(g, alpha=group["lr"])


class Adam(Optimizer):
    """Adam (L2 weight decay added to the gradient).

    >>> import flopgrad as fg
    >>> w = fg.nn.Parameter(fg.tensor([2.0]))
    >>> opt = fg.optim.Adam([w], lr=0.1)
    >>> w.grad = fg.tensor([-3.0]); opt.step(); w.tolist()  # a first step moves by lr
    [2.0999999046325684]
    """

    decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, master_weights: bool = False):
        b1, b2 = betas
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"{type(self).__name__}: betas must be in [0, 1), got {betas}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay), master_weights)

    def _update(self, p, g, state, group):
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        if wd:
            if self.decoupled:
                p.mul_(1 - lr * wd)
            else:
                g = g + wd * p
        if "step" not in state:
            state["step"] = 0
            state["exp_avg"] = Tensor(zeros_like(p._data))
            state["exp_avg_sq"] = Tensor(zeros_like(p._data))
        state["step"] += 1
        t = state["step"]
        m = state["exp_avg"].mul_(b1).add_(g, alpha=1 - b1)
        v = state["exp_avg_sq"].mul_(b2).add_(g * g, alpha=1 - b2)
        step_size = lr / (1 - b1 ** t)
        denom = v.sqrt() / math.sqrt(1 - b2 ** t) + eps
        p.sub_(m / denom, alpha=step_size)


class AdamW(Adam):
    """Adam with decoupled weight decay (p -= lr * wd * p before the Adam step).

    >>> import flopgrad as fg
    >>> w = fg.nn.Parameter(fg.tensor([1.0]))
    >>> opt = fg.optim.AdamW([w], lr=0.1, weight_decay=0.5)
    >>> w.grad = fg.tensor([0.0]); opt.step(); w.tolist()  # 1 - 0.1 * 0.5
    [0.949999988079071]
    """

    decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, master_weights: bool = False):
        super().__init__(params, lr, betas, eps, weight_decay, master_weights)


# ---------------------------------------------------------------- schedules

class _Scheduler:
    def __init__(self, optimizer: Optimizer):
        self.optimizer = optimizer
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.last_epoch = 0
        self._apply()

    def factor(self, step: int) -> float:
        """The multiplier of the base learning rates at `step` (subclasses define it)."""
        raise NotImplementedError

    def _apply(self) -> None:
        f = self.factor(self.last_epoch)
        for g, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            g["lr"] = base * f

    def step(self) -> None:
        """Advance one step (call after optimizer.step()).

        >>> import flopgrad as fg
        >>> opt = fg.optim.SGD([fg.nn.Parameter(fg.ones(1))], lr=1.0)
        >>> sched = fg.optim.StepLR(opt, step_size=1, gamma=0.5)
        >>> sched.step(); sched.get_last_lr()
        [0.5]
        """
        self.last_epoch += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        """The current learning rate of every group.

        >>> import flopgrad as fg
        >>> opt = fg.optim.SGD([fg.nn.Parameter(fg.ones(1))], lr=1.0)
        >>> fg.optim.StepLR(opt, step_size=1, gamma=0.5).get_last_lr()
        [1.0]
        """
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        """The step count and base learning rates.

        >>> import flopgrad as fg
        >>> opt = fg.optim.SGD([fg.nn.Parameter(fg.ones(1))], lr=1.0)
        >>> sched = fg.optim.StepLR(opt, step_size=1)
        >>> sched.step(); sched.state_dict()
        {'last_epoch': 1, 'base_lrs': [1.0]}
        """
        return {"last_epoch": self.last_epoch, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state: dict) -> None:
        """Restore what state_dict() returned, and set the learning rates to match.

        >>> import flopgrad as fg
        >>> opt = fg.optim.SGD([fg.nn.Parameter(fg.ones(1))], lr=1.0)
        >>> sched = fg.optim.StepLR(opt, step_size=1, gamma=0.5)
        >>> sched.load_state_dict({"last_epoch": 2, "base_lrs": [1.0]})
        >>> sched.get_last_lr()
        [0.25]
        """
        self.last_epoch, self.base_lrs = state["last_epoch"], list(state["base_lrs"])
        self._apply()


class LambdaLR(_Scheduler):
    """lr = base_lr * lr_lambda(step).

    >>> import flopgrad as fg
    >>> opt = fg.optim.SGD([fg.nn.Parameter(fg.ones(1))], lr=1.0)
    >>> sched = fg.optim.LambdaLR(opt, lambda step: 1 / (step + 1))
    >>> sched.step(); sched.get_last_lr()
    [0.5]
    """

    def __init__(self, optimizer: Optimizer, lr_lambda: Callable[[int], float]):
        self.lr_lambda = lr_lambda
        super().__init__(optimizer)

    def factor(self, step: int) -> float:
        """lr_lambda(step)."""
        return self.lr_lambda(step)


class StepLR(_Scheduler):
    """lr = base_lr * gamma ** (step // step_size).

    >>> import flopgrad as fg
    >>> opt = fg.optim.SGD([fg.nn.Parameter(fg.ones(1))], lr=1.0)
    >>> sched, lrs = fg.optim.StepLR(opt, step_size=2, gamma=0.5), []
    >>> for _ in range(4):
    ...     lrs.append(sched.get_last_lr()[0]); sched.step()
    >>> lrs
    [1.0, 1.0, 0.5, 0.5]
    """

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1):
        if step_size <= 0:
            raise ValueError(f"StepLR: step_size must be positive, got {step_size}")
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer)

    def factor(self, step: int) -> float:
        """gamma ** (step // step_size)."""
        return self.gamma ** (step // self.step_size)


def cosine_warmup(step: int, warmup_steps: int, total_steps: int, min_factor: float = 0.0
                  ) -> float:
    """Linear warm-up to 1 over warmup_steps, then cosine decay to min_factor at total_steps.

    >>> import flopgrad as fg
    >>> [fg.optim.cosine_warmup(s, warmup_steps=2, total_steps=10) for s in (0, 1, 6, 10)]
    [0.5, 1.0, 0.5, 0.0]
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))


class CosineWarmupLR(_Scheduler):
    """Linear warm-up then cosine decay (see cosine_warmup).

    >>> import flopgrad as fg
    >>> opt = fg.optim.SGD([fg.nn.Parameter(fg.ones(1))], lr=1.0)
    >>> sched = fg.optim.CosineWarmupLR(opt, warmup_steps=2, total_steps=10)
    >>> sched.get_last_lr(), sched.factor(6)
    ([0.5], 0.5)
    """

    def __init__(self, optimizer: Optimizer, warmup_steps: int, total_steps: int,
                 min_factor: float = 0.0):
        if warmup_steps < 0 or total_steps <= 0:
            raise ValueError("CosineWarmupLR: warmup_steps >= 0 and total_steps > 0 needed")
        self.warmup_steps, self.total_steps, self.min_factor = (
            warmup_steps, total_steps, min_factor)
        super().__init__(optimizer)

    def factor(self, step: int) -> float:
        """cosine_warmup(step, warmup_steps, total_steps, min_factor)."""
        return cosine_warmup(step, self.warmup_steps, self.total_steps, self.min_factor)
