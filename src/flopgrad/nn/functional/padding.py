"""pad: constant padding is one primitive (`ops.PAD`, negative widths crop as a view);
reflect, replicate and circular padding are one integer-array gather."""

from __future__ import annotations

import numpy as np

from flopgrad import ops as O
from flopgrad.dispatch import apply
from flopgrad.tensor import Tensor, _t

__all__ = ["pad"]


_PAD_MODES = ("constant", "reflect", "replicate", "circular")


def pad(x: Tensor, pad: tuple, mode: str = "constant", value: float | None = None) -> Tensor:
    """Pad (or, with negative widths, crop); `pad` lists (before, after) pairs starting
    from the last dim, as in PyTorch.

    mode "constant" fills with `value` (any number of dims); "reflect" mirrors about the
    edge (without repeating it), "replicate" repeats the edge, "circular" wraps around:
    these pad the last 1, 2 or 3 dims of a 2-3, 3-4 or 4-5 dim input, as PyTorch does.
    The non-constant modes are one integer-array gather (billed as a copy; its gradient
    adds the copies back, one add per output element).

    >>> import flopgrad as fg
    >>> fg.nn.functional.pad(fg.tensor([1.0, 2.0]), (1, 2)).tolist()
    [0.0, 1.0, 2.0, 0.0, 0.0]
    >>> fg.nn.functional.pad(fg.tensor([[1.0, 2.0, 3.0]]), (2, 1), mode="reflect").tolist()
    [[3.0, 2.0, 1.0, 2.0, 3.0, 2.0]]
    """
    x = _t(x)
    if mode not in _PAD_MODES:
        raise ValueError(f"pad: mode must be one of {_PAD_MODES}, got {mode!r}")
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ValueError(f"pad: {pad} needs an even length of at most 2 * ndim = {2 * x.ndim}")
    k = len(pad) // 2
    widths = [(0, 0)] * x.ndim
    for j in range(k):
        widths[x.ndim - 1 - j] = (pad[2 * j], pad[2 * j + 1])
    for d, (lo, hi) in enumerate(widths):
        if x.shape[d] + lo + hi < 0:
            raise ValueError(f"pad: padding {pad} makes dim {d} of {x.shape} negative")
    if mode != "constant":
        if value:
            raise ValueError(f"pad: mode {mode!r} takes no fill value, got {value}")
        return _pad_indexed(x, widths, k, mode)
    if any(lo < 0 or hi < 0 for lo, hi in widths):  # negative widths crop: a view
        x = x[tuple(slice(max(-lo, 0), n - max(-hi, 0))
                    for (lo, hi), n in zip(widths, x.shape, strict=True))]
        widths = [(max(lo, 0), max(hi, 0)) for lo, hi in widths]
    if not any(lo or hi for lo, hi in widths):
        return x
    return apply(O.PAD, (x,), (tuple(widths), 0.0 if value is None else value))


def _pad_indexed(x: Tensor, widths: list, k: int, mode: str) -> Tensor:
    """reflect / replicate / circular padding of the last k dims as one gather."""
    if k not in (1, 2, 3) or x.ndim not in (k + 1, k + 2):
        raise NotImplementedError(
            f"pad: mode {mode!r} pads the last 1, 2 or 3 dims of a 2-3, 3-4 or 4-5 dim "
            f"input (as PyTorch); got {2 * k} pad values for an input of shape {x.shape}")
    index = []
    for d in range(x.ndim - k, x.ndim):
        (lo, hi), n = widths[d], x.shape[d]
        if n == 0 and (lo > 0 or hi > 0):
            raise ValueError(f"pad: mode {mode!r} cannot pad dim {d} of size 0")
        if mode == "reflect" and (lo >= n or hi >= n):
            raise ValueError(f"pad: mode 'reflect' needs padding smaller than the dim, got "
                             f"({lo}, {hi}) for dim {d} of size {n}")
        if mode == "circular" and (lo > n or hi > n):
            raise ValueError(f"pad: mode 'circular' needs padding at most the dim, got "
                             f"({lo}, {hi}) for dim {d} of size {n}")
        src = np.arange(-lo, n + hi)  # the input position each output position reads
        if mode == "reflect":
            src = np.abs(src)
            src = np.where(src > n - 1, 2 * (n - 1) - src, src)
        elif mode == "replicate":
            src = np.clip(src, 0, n - 1)
        else:  # PyTorch crops first (negative widths), then wraps the cropped dim around
            start, m = max(-lo, 0), n - max(-lo, 0) - max(-hi, 0)
            src = start + np.arange(-max(lo, 0), m + max(hi, 0)) % max(m, 1)
        shape = [1] * k
        shape[d - (x.ndim - k)] = src.size
        index.append(src.reshape(shape))
    if all(i.size == n and (i.ravel() == np.arange(n)).all()
           for i, n in zip(index, x.shape[x.ndim - k:], strict=True)):
        return x
    return x[(slice(None),) * (x.ndim - k) + tuple(index)]
