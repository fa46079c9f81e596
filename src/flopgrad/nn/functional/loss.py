"""Loss functions with PyTorch's reductions: cross_entropy (the common case one primitive,
`ops.CROSS_ENTROPY`), nll_loss, the regression losses and binary cross-entropy on logits."""

from __future__ import annotations

import numpy as np

from flopgrad import ops as O
from flopgrad.backend import MetaArray
from flopgrad.dispatch import apply
from flopgrad.tensor import Tensor, _t, maximum, where

__all__ = [
    "nll_loss", "cross_entropy", "l1_loss", "smooth_l1_loss", "huber_loss", "mse_loss",
    "binary_cross_entropy_with_logits",
]


def _reduce(loss: Tensor, reduction: str, name: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"{name}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _class_indices(target, n_classes: int, ignore_index: int, who: str):
    """(indices, ignored) of class-index targets; `ignored` is a boolean array, or None when
    no target is ignored. Meta targets have no values: they are taken as in range and none
    ignored, so a meta bill is the bill of a batch without ignored targets."""
    tgt = target._data if isinstance(target, Tensor) else target
    if type(tgt) is not MetaArray:
        tgt = np.asarray(tgt)
    if tgt.dtype.kind not in "iu":
        raise TypeError(f"{who}: target must hold class indices, got dtype {tgt.dtype}")
    if type(tgt) is MetaArray:
        return tgt, None
    ignored = tgt == ignore_index
    if not ignored.any():
        ignored = None
    safe = tgt if ignored is None else np.where(ignored, 0, tgt)
    if safe.size and (safe.min() < 0 or safe.max() >= n_classes):
        raise IndexError(f"{who}: target out of range [0, {n_classes}) (and != ignore_index)")
    return safe, ignored


def _filled(shape: tuple, value, dtype, meta: bool):
    """An array of `value` (a meta array of that shape in meta mode)."""
    return MetaArray(shape, dtype) if meta else np.full(shape, value, dtype=dtype)


def _rows(n: int, like):
    """Row numbers 0..n-1 for picking one entry per row (meta for meta targets)."""
    return MetaArray((n,), np.int64) if type(like) is MetaArray else np.arange(n)


def nll_loss(logp: Tensor, target, weight: Tensor | None = None, ignore_index: int = -100,
             reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of class indices `target` under log-probabilities `logp`.

    >>> import flopgrad as fg
    >>> logp = fg.tensor([[-1.0, -2.0], [-3.0, -0.5]])
    >>> fg.nn.functional.nll_loss(logp, fg.tensor([0, 1])).item()
    0.75
    """
    class_dim = 0 if logp.ndim == 1 else 1
    safe, ignored = _class_indices(target, logp.shape[class_dim], ignore_index, "nll_loss")
    if weight is None and logp.ndim == 2 and ignored is None:  # the common case, 3 ops
        picked = logp[_rows(len(safe), safe), safe]
        if reduction == "mean":
            return -(picked.sum() / len(safe))
        return -_reduce(picked, reduction, "nll_loss")
    if logp.ndim == 1:
        picked = logp[safe]
    else:
        column = (MetaArray((*safe.shape[:1], 1, *safe.shape[1:]), safe.dtype)
                  if type(safe) is MetaArray else np.expand_dims(safe, 1))
        picked = logp.gather(1, column).squeeze(1)
    if ignored is not None:  # ignored targets get exactly 0 gradient (not 0 * inf when all are)
        picked = where(Tensor(ignored), 0.0, picked)
        w = np.where(ignored, 0.0, 1.0).astype(logp.dtype)
    else:
        w = _filled(safe.shape, 1.0, logp.dtype, meta=type(safe) is MetaArray)
    if weight is not None:
        wt = weight[safe] * Tensor(w)
    else:
        wt = Tensor(w)
    loss = -picked * wt
    if reduction == "mean":
        return loss.sum() / wt.sum()
    return _reduce(loss, reduction, "nll_loss")


def cross_entropy(logits: Tensor, target, weight: Tensor | None = None,
                  ignore_index: int = -100, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """Softmax cross-entropy against class indices (or class probabilities).

    Class-index targets may be meta tensors (a meta training step): they are taken as in
    range, with no target equal to `ignore_index`.

    >>> import flopgrad as fg
    >>> fg.nn.functional.cross_entropy(fg.zeros(2, 4), fg.tensor([1, 3])).item()
    1.3862943649291992
    """
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got "
                         f"{label_smoothing}")
    tgt = target._data if isinstance(target, Tensor) else target
    if type(tgt) is not MetaArray:
        tgt = np.asarray(tgt)
    class_dim = 0 if logits.ndim == 1 else 1
    n_classes = logits.shape[class_dim]
    if tgt.dtype.kind in "fV":  # class probabilities
        logp = logits.log_softmax(class_dim)
        wshape = [1] * logits.ndim
        wshape[class_dim] = n_classes
        probs = _t(target)
        if label_smoothing:
            probs = probs * (1 - label_smoothing) + label_smoothing / n_classes
        terms = logp * probs
        if weight is not None:
            terms = terms * weight.reshape(wshape)
        loss = -terms.sum(class_dim)
        if reduction == "mean":
            return loss.sum() / (loss.numel() if logits.ndim > 1 else 1)
        return _reduce(loss, reduction, "cross_entropy")
    safe, ignored = _class_indices(tgt, n_classes, ignore_index, "cross_entropy")
    if (logits.ndim == 2 and weight is None and not label_smoothing and ignored is None
            and safe.ndim == 1 and safe.shape[0] == logits.shape[0]
            and reduction in ("mean", "sum", "none")):  # the common case: one primitive
        return apply(O.CROSS_ENTROPY, (logits,), (safe, reduction))
    logp = logits.log_softmax(class_dim)
    nll = nll_loss(logp, tgt, weight, ignore_index, reduction)
    if not label_smoothing:
        return nll
    wshape = [1] * logits.ndim
    wshape[class_dim] = n_classes
    if ignored is None:
        kept_shape = (*safe.shape[:class_dim], 1, *safe.shape[class_dim:])
        kept_mask = _filled(kept_shape, True, bool, meta=type(safe) is MetaArray)
    else:
        kept_mask = np.expand_dims(~ignored, class_dim)
    kept = Tensor(kept_mask.astype(logits.dtype))
    terms = where(Tensor(kept_mask), logp, 0.0)  # exact zeros (and gradients) where ignored
    if weight is not None:
        terms = terms * weight.reshape(wshape)
    smooth = -terms.sum(class_dim)
    if reduction == "mean":
        if weight is not None:
            denom = (weight[safe] * kept.reshape(safe.shape)).sum()
        else:
            denom = safe.size if ignored is None else int((~ignored).sum())
        smooth = smooth.sum() / denom
    else:
        smooth = _reduce(smooth, reduction, "cross_entropy")
    return nll * (1 - label_smoothing) + smooth * (label_smoothing / n_classes)


def l1_loss(x: Tensor, target, reduction: str = "mean") -> Tensor:
    """Mean absolute error.

    >>> import flopgrad as fg
    >>> fg.nn.functional.l1_loss(fg.tensor([1.0, 3.0]), fg.tensor([2.0, 1.0])).item()
    1.5
    """
    return _reduce((x - target).abs(), reduction, "l1_loss")


def smooth_l1_loss(x: Tensor, target, reduction: str = "mean", beta: float = 1.0) -> Tensor:
    """0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (l1_loss for beta = 0).

    >>> import flopgrad as fg
    >>> fg.nn.functional.smooth_l1_loss(fg.tensor([0.5, 3.0]), fg.zeros(2), "none").tolist()
    [0.125, 2.5]
    """
    if beta < 0:
        raise ValueError(f"smooth_l1_loss: beta must be non-negative, got {beta}")
    if beta == 0:
        return l1_loss(x, target, reduction)
    d = x - target
    a = d.abs()
    return _reduce(where(a < beta, d * d * (0.5 / beta), a - 0.5 * beta), reduction,
                   "smooth_l1_loss")


def huber_loss(x: Tensor, target, reduction: str = "mean", delta: float = 1.0) -> Tensor:
    """0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta).

    >>> import flopgrad as fg
    >>> fg.nn.functional.huber_loss(fg.tensor([0.5, 3.0]), fg.zeros(2), "none").tolist()
    [0.125, 2.5]
    """
    if delta <= 0:
        raise ValueError(f"huber_loss: delta must be positive, got {delta}")
    d = x - target
    a = d.abs()
    return _reduce(where(a < delta, d * d * 0.5, (a - 0.5 * delta) * delta), reduction,
                   "huber_loss")


def mse_loss(x: Tensor, target, reduction: str = "mean") -> Tensor:
    """Mean squared error.

    >>> import flopgrad as fg
    >>> fg.nn.functional.mse_loss(fg.tensor([1.0, 3.0]), fg.tensor([1.0, 1.0])).item()
    2.0
    """
    diff = x - target
    return _reduce(diff * diff, reduction, "mse_loss")


def binary_cross_entropy_with_logits(x: Tensor, target, weight=None, reduction: str = "mean",
                                     pos_weight=None) -> Tensor:
    """Sigmoid + binary cross-entropy in one stable expression.

    >>> import flopgrad as fg
    >>> F = fg.nn.functional
    >>> F.binary_cross_entropy_with_logits(fg.tensor([0.0]), fg.tensor([1.0])).item()
    0.6931471824645996
    """
    y = _t(target)
    # -log(sigmoid(x)), stable; maximum's tie at 0 passes half, so d/dx is right at x = 0
    log_sig_neg = (-x.abs()).exp().log1p() + maximum(-x, 0.0)
    if pos_weight is not None:
        lw = 1 + (pos_weight - 1) * y
        loss = (1 - y) * x + lw * log_sig_neg
    else:
        loss = (1 - y) * x + log_sig_neg
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction, "binary_cross_entropy_with_logits")
