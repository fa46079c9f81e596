"""GradScaler: dynamic loss scaling for float16 training, with torch.amp.GradScaler's rules.

Multiply the loss by a large scale before backward so small float16 gradients do not
flush to zero; divide the gradients by it before the optimizer uses them; skip a step whose
gradients overflowed and shrink the scale (halve it, by default); grow it (double it) after
`growth_interval` clean steps in a row.

>>> import flopgrad as fg
>>> w = fg.nn.Parameter(fg.tensor([1.0]))
>>> opt, scaler = fg.optim.SGD([w], lr=0.5), fg.amp.GradScaler(init_scale=8.0)
>>> scaler.scale((w * w).sum()).backward()      # w.grad = 8 * 2
>>> scaler.step(opt); scaler.update()             # unscaled to 2, then w -= 0.5 * 2
>>> w.tolist(), scaler.get_scale()
([0.0], 8.0)
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import Any

import numpy as np

from flopgrad.autograd import no_grad
from flopgrad.backend import MetaArray
from flopgrad.ledger import phase, scope
from flopgrad.optim import _writable
from flopgrad.tensor import Tensor

__all__ = ["GradScaler", "OptState", "next_scale"]

_NOT_SCALED = ("This may indicate your script did not use scaler.scale(loss or outputs) "
               "earlier in the iteration.")
_BAD_NEW_SCALE = ("new_scale should be a float or a 1-element Tensor with "
                  "requires_grad=False.")


class OptState(Enum):
    """Where one optimizer is in the current iteration: nothing done yet, its gradients
    divided by the scale (unscale_), or its step taken (or skipped).

    >>> from flopgrad.amp.grad_scaler import OptState
    >>> [s.name for s in OptState]
    ['READY', 'UNSCALED', 'STEPPED']
    """

    READY = 0
    UNSCALED = 1
    STEPPED = 2


def _float32(value: float) -> np.float32:
    """value rounded to float32 (an out-of-range one is inf, without NumPy's warning)."""
    with np.errstate(over="ignore"):
        return np.float32(value)


def _finite(arr) -> bool:
    """Whether every element is finite; a meta array has no values and counts as finite."""
    return type(arr) is MetaArray or bool(np.isfinite(arr).all())


def next_scale(scale: float, tracker: int, found_inf: bool, growth_factor: float,
               backoff_factor: float, growth_interval: int) -> tuple[np.float32, int]:
    """The scale and growth tracker after one update, PyTorch's rule: an overflow multiplies
    the scale by backoff_factor and resets the tracker; otherwise the tracker counts the
    clean step, and when it reaches growth_interval the scale is multiplied by growth_factor
    (kept if that is finite) and the tracker restarts. Products are taken in float64 and
    rounded to the float32 the scale is held in.

    >>> from flopgrad.amp.grad_scaler import next_scale
    >>> next_scale(1024.0, 2, False, 2.0, 0.5, 3), next_scale(1024.0, 2, True, 2.0, 0.5, 3)
    ((np.float32(2048.0), 0), (np.float32(512.0), 0))
    """
    if found_inf:
        return _float32(float(scale) * backoff_factor), 0
    tracker += 1
    if tracker != growth_interval:
        return np.float32(scale), tracker
    grown = _float32(float(scale) * growth_factor)
    return (grown if np.isfinite(grown) else np.float32(scale)), 0


class GradScaler:
    """Dynamic loss scaling with torch.amp.GradScaler's semantics (its "cpu" and "cuda"
    devices share them; flopgrad takes no device argument).

    `scale(loss).backward()`, then `step(optimizer)` (which unscales the gradients, and
    skips optimizer.step() when any of them is inf or NaN), then `update()`. The scale is a
    float32 number; `scale()`'s multiply and `unscale_()`'s multiplies by 1/scale are
    ordinary billed ops, the inf/NaN check is NumPy and not billed (a meta gradient has no
    values and counts as finite). With enabled=False every method passes through: scale()
    returns its argument, step() calls optimizer.step(), get_scale() is 1.0, state_dict()
    is {}.
    Unlike PyTorch, a disabled scaler still answers get_growth_factor() and the like.

    >>> import flopgrad as fg
    >>> scaler = fg.amp.GradScaler(init_scale=1024.0, growth_interval=3)
    >>> scaler.get_scale(), scaler.get_growth_interval(), scaler.is_enabled()
    (1024.0, 3, True)
    """

    def __init__(self, init_scale: float = 2.0 ** 16, growth_factor: float = 2.0,
                 backoff_factor: float = 0.5, growth_interval: int = 2000,
                 enabled: bool = True) -> None:
        if isinstance(init_scale, str):
            raise TypeError(f"GradScaler: init_scale must be a number, got {init_scale!r} "
                            "(flopgrad's GradScaler takes no device argument: drop it)")
        self._enabled = enabled
        if enabled:
            if growth_factor <= 1.0:
                raise AssertionError("The growth factor must be > 1.0.")
            if backoff_factor >= 1.0:
                raise AssertionError("The backoff factor must be < 1.0.")
        self._init_scale = init_scale
        self._growth_factor = growth_factor
        self._backoff_factor = backoff_factor
        self._growth_interval = growth_interval
        self._init_growth_tracker = 0
        # both made by the first scale(), as PyTorch does it
        self._scale: np.float32 | None = None
        self._growth_tracker: int | None = None
        self._per_optimizer_states: dict[int, dict[str, Any]] = {}

    # ------------------------------------------------------------ the iteration
    def scale(self, outputs):
        """outputs times the scale: a Tensor, or lists and tuples of them (nested; the same
        kind of container back; another iterable gives a lazy map). The multiply is an
        ordinary op, billed and differentiated like `outputs * scale`.

        >>> import flopgrad as fg
        >>> scaler = fg.amp.GradScaler(init_scale=4.0)
        >>> scaler.scale(fg.tensor([1.0, 2.0])).tolist()
        [4.0, 8.0]
        >>> [t.tolist() for t in scaler.scale((fg.ones(1), [fg.ones(1)]))[1]]
        [[4.0]]
        """
        if not self._enabled:
            return outputs
        if isinstance(outputs, Tensor):
            if self._scale is None:
                self._scale = _float32(self._init_scale)
                self._growth_tracker = self._init_growth_tracker
            return outputs * Tensor(self._scale)
        if isinstance(outputs, list | tuple):
            return type(outputs)(self.scale(v) for v in outputs)
        if isinstance(outputs, Iterable) and not isinstance(outputs, str | bytes):
            return map(self.scale, outputs)
        raise ValueError("outputs must be a Tensor or an iterable of Tensors")

    def unscale_(self, optimizer) -> None:
        """Divide the gradients of optimizer's parameters by the scale, in place, and note
        whether any is inf or NaN. Optional: step() does it when it was not done; call it
        first to look at or clip the true gradients. Once per optimizer per update(). The
        multiplies by 1/scale are billed in phase "optimizer", scope "grad_scaler".

        >>> import flopgrad as fg
        >>> w = fg.nn.Parameter(fg.tensor([1.0]))
        >>> opt, scaler = fg.optim.SGD([w], lr=0.1), fg.amp.GradScaler(init_scale=4.0)
        >>> scaler.scale(w.sum()).backward(); w.grad.tolist()
        [4.0]
        >>> scaler.unscale_(opt); w.grad.tolist()
        [1.0]
        """
        if not self._enabled:
            return
        self._check_scale("unscale_")
        state = self._state(optimizer)
        if state["stage"] is OptState.UNSCALED:
            raise RuntimeError(
                "unscale_() has already been called on this optimizer since the last update().")
        if state["stage"] is OptState.STEPPED:
            raise RuntimeError("unscale_() is being called after step().")
        grads = [p.grad for group in optimizer.param_groups for p in group["params"]
                 if p.grad is not None]
        if any(g.dtype == np.float16 for g in grads):
            raise ValueError("Attempting to unscale FP16 gradients.")
        state["found_inf"] = self._unscale_grads(grads) if grads else None
        state["stage"] = OptState.UNSCALED

    def _unscale_grads(self, grads: list[Tensor]) -> bool:
        """Multiply each gradient by 1/scale (the reciprocal taken in float64, then rounded
        to float32, as PyTorch); whether any had an inf or NaN before."""
        with np.errstate(divide="ignore"):
            inv_scale = Tensor(_float32(1.0 / np.float64(self._scale)))
        found_inf = False
        with no_grad(), phase("optimizer"), scope("grad_scaler"):
            for g in grads:
                found_inf = found_inf or not _finite(g._data)
                _writable(g).mul_(inv_scale)
        return found_inf

    def step(self, optimizer, *args, **kwargs):
        """Unscale optimizer's gradients (unless unscale_ already did), then call
        optimizer.step(*args, **kwargs) and return what it returns, or skip it and return
        None when a gradient was inf or NaN. Once per optimizer per update().

        >>> import flopgrad as fg
        >>> w = fg.nn.Parameter(fg.tensor([1.0]))
        >>> opt, scaler = fg.optim.SGD([w], lr=0.1), fg.amp.GradScaler()
        >>> _ = scaler.scale(w.sum()); w.grad = fg.tensor([float("inf")])
        >>> scaler.step(opt); w.tolist()          # skipped: w unchanged
        [1.0]
        """
        if not self._enabled:
            return optimizer.step(*args, **kwargs)
        if "closure" in kwargs:
            raise RuntimeError("Closure use is not currently supported if GradScaler is enabled.")
        self._check_scale("step")
        state = self._state(optimizer)
        if state["stage"] is OptState.STEPPED:
            raise RuntimeError("step() has already been called since the last update().")
        if state["stage"] is OptState.READY:
            self.unscale_(optimizer)
        if state["found_inf"] is None:
            raise AssertionError("No inf checks were recorded for this optimizer.")
        result = None if state["found_inf"] else optimizer.step(*args, **kwargs)
        state["stage"] = OptState.STEPPED
        return result

    def update(self, new_scale: float | Tensor | None = None) -> None:
        """End the iteration: back the scale off if any optimizer this iteration saw an inf
        or NaN, grow it after growth_interval clean iterations in a row (see next_scale); or
        set it to new_scale (a number or a 1-element Tensor that does not require grad; the
        growth tracker is left as it is). Then every optimizer is READY again.

        >>> import flopgrad as fg
        >>> w = fg.nn.Parameter(fg.tensor([1.0]))
        >>> opt, scaler = fg.optim.SGD([w], lr=0.1), fg.amp.GradScaler(init_scale=4.0)
        >>> _ = scaler.scale(w.sum()); w.grad = fg.tensor([float("nan")])
        >>> scaler.step(opt); scaler.update(); scaler.get_scale()
        2.0
        >>> scaler.update(new_scale=fg.tensor(64.0)); scaler.get_scale()
        64.0
        """
        if not self._enabled:
            return
        self._check_scale("update")
        if new_scale is not None:
            self._scale = _float32(_new_scale_value(new_scale))
        else:
            found = [s["found_inf"] for s in self._per_optimizer_states.values()
                     if s["found_inf"] is not None]
            if not found:
                raise AssertionError("No inf checks were recorded prior to update.")
            self._scale, self._growth_tracker = next_scale(
                self._scale, self._growth_tracker, any(found), self._growth_factor,
                self._backoff_factor, self._growth_interval)
        self._per_optimizer_states = {}

    def _state(self, optimizer) -> dict[str, Any]:
        return self._per_optimizer_states.setdefault(
            id(optimizer), {"stage": OptState.READY, "found_inf": None})

    def _check_scale(self, funcname: str) -> None:
        if self._scale is None:
            raise AssertionError(f"Attempted {funcname} but _scale is None.  {_NOT_SCALED}")

    # ------------------------------------------------------------ settings and state
    def get_scale(self) -> float:
        """The current scale (init_scale before the first scale(); 1.0 when disabled).

        >>> import flopgrad as fg
        >>> fg.amp.GradScaler().get_scale(), fg.amp.GradScaler(enabled=False).get_scale()
        (65536.0, 1.0)
        """
        if not self._enabled:
            return 1.0
        return self._init_scale if self._scale is None else float(self._scale)

    def get_growth_factor(self) -> float:
        """What update() multiplies the scale by after growth_interval clean steps.

        >>> import flopgrad as fg
        >>> fg.amp.GradScaler(growth_factor=4.0).get_growth_factor()
        4.0
        """
        return self._growth_factor

    def set_growth_factor(self, new_factor: float) -> None:
        """Set the growth factor (not checked, as in PyTorch).

        >>> import flopgrad as fg
        >>> scaler = fg.amp.GradScaler(); scaler.set_growth_factor(3.0)
        >>> scaler.get_growth_factor()
        3.0
        """
        self._growth_factor = new_factor

    def get_backoff_factor(self) -> float:
        """What update() multiplies the scale by after an inf or NaN.

        >>> import flopgrad as fg
        >>> fg.amp.GradScaler(backoff_factor=0.25).get_backoff_factor()
        0.25
        """
        return self._backoff_factor

    def set_backoff_factor(self, new_factor: float) -> None:
        """Set the backoff factor (not checked, as in PyTorch).

        >>> import flopgrad as fg
        >>> scaler = fg.amp.GradScaler(); scaler.set_backoff_factor(0.125)
        >>> scaler.get_backoff_factor()
        0.125
        """
        self._backoff_factor = new_factor

    def get_growth_interval(self) -> int:
        """How many clean steps in a row make update() grow the scale.

        >>> import flopgrad as fg
        >>> fg.amp.GradScaler().get_growth_interval()
        2000
        """
        return self._growth_interval

    def set_growth_interval(self, new_interval: int) -> None:
        """Set the growth interval. As in PyTorch the scale grows when the count of clean
        steps equals it, so one below the current count first waits for an inf or NaN.

        >>> import flopgrad as fg
        >>> scaler = fg.amp.GradScaler(); scaler.set_growth_interval(100)
        >>> scaler.get_growth_interval()
        100
        """
        self._growth_interval = new_interval

    def _get_growth_tracker(self) -> int:
        if not self._enabled:
            return 0
        return self._init_growth_tracker if self._growth_tracker is None else \
            self._growth_tracker

    def is_enabled(self) -> bool:
        """Whether this scaler scales (enabled=True) or passes everything through.

        >>> import flopgrad as fg
        >>> fg.amp.GradScaler(enabled=False).is_enabled()
        False
        """
        return self._enabled

    def state_dict(self) -> dict[str, Any]:
        """PyTorch's five entries: scale, growth_factor, backoff_factor, growth_interval and
        _growth_tracker (clean steps since the last growth or backoff); {} when disabled.
        Take it after update().

        >>> import flopgrad as fg
        >>> state = fg.amp.GradScaler(init_scale=8.0, growth_interval=3).state_dict()
        >>> list(state)
        ['scale', 'growth_factor', 'backoff_factor', 'growth_interval', '_growth_tracker']
        >>> state["scale"], state["growth_interval"], state["_growth_tracker"]
        (8.0, 3, 0)
        """
        if not self._enabled:
            return {}
        return {"scale": self.get_scale(), "growth_factor": self._growth_factor,
                "backoff_factor": self._backoff_factor,
                "growth_interval": self._growth_interval,
                "_growth_tracker": self._get_growth_tracker()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what state_dict() returned (a no-op when disabled).

        >>> import flopgrad as fg
        >>> scaler = fg.amp.GradScaler()
        >>> scaler.load_state_dict(fg.amp.GradScaler(init_scale=8.0).state_dict())
        >>> scaler.get_scale()
        8.0
        """
        if not self._enabled:
            return
        if not state_dict:
            raise RuntimeError("The source state dict is empty, possibly because it was saved "
                               "from a disabled instance of GradScaler.")
        self._init_scale = state_dict["scale"]
        if self._scale is not None:
            self._scale = _float32(state_dict["scale"])
        self._growth_factor = state_dict["growth_factor"]
        self._backoff_factor = state_dict["backoff_factor"]
        self._growth_interval = state_dict["growth_interval"]
        self._init_growth_tracker = state_dict["_growth_tracker"]
        if self._growth_tracker is not None:
            self._growth_tracker = int(state_dict["_growth_tracker"])


def _new_scale_value(new_scale) -> float:
    """update()'s new_scale as a number: a float (or int), or a 1-element Tensor that does
    not require grad and has values."""
    if isinstance(new_scale, float | int) and not isinstance(new_scale, bool):
        return float(new_scale)
    if (not isinstance(new_scale, Tensor) or new_scale.numel() != 1 or new_scale.requires_grad
            or type(new_scale._data) is MetaArray):
        raise AssertionError(_BAD_NEW_SCALE)
    return float(new_scale._data.reshape(()))
