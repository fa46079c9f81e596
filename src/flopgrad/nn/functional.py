"""Neural-network functions (PyTorch's torch.nn.functional), composed from primitives.

Only `unfold`/`fold` (the im2col windows behind conv and pooling) are primitives of their
own; convolution is windows followed by one batched matmul, so its FLOPs are matmul FLOPs.
"""

from __future__ import annotations

import math

import numpy as np

from flopgrad import creation, dispatch
from flopgrad import ops as O
from flopgrad.backend import MetaArray, no_data
from flopgrad.dispatch import apply
from flopgrad.tensor import Tensor, _t, maximum, where

__all__ = [
    "linear", "conv1d", "conv2d", "max_pool2d", "avg_pool2d", "embedding", "layer_norm",
    "rms_norm", "batch_norm", "dropout", "cross_entropy", "nll_loss", "mse_loss",
    "binary_cross_entropy_with_logits", "scaled_dot_product_attention", "relu", "leaky_relu",
    "gelu", "silu", "softplus", "sigmoid", "tanh", "softmax", "log_softmax", "pad",
]


def _pair(v, name: str) -> tuple:
    if isinstance(v, int):
        return (v, v)
    v = tuple(v)
    if len(v) != 2:
        raise ValueError(f"{name}: expected an int or a pair, got {v}")
    return v


# ---------------------------------------------------------------- activations

def relu(x: Tensor) -> Tensor:
    """max(x, 0).

    >>> import flopgrad as fg
    >>> fg.nn.functional.relu(fg.tensor([-1.0, 2.0])).tolist()
    [0.0, 2.0]
    """
    return apply(O.RELU, (x,))


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    """x for x > 0, negative_slope * x otherwise.

    >>> import flopgrad as fg
    >>> fg.nn.functional.leaky_relu(fg.tensor([-1.0, 2.0]), 0.5).tolist()
    [-0.5, 2.0]
    """
    return where(x > 0, x, x * negative_slope)


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """Gaussian error linear unit, x Phi(x); approximate="tanh" gives GPT-2's tanh form.

    One primitive (with its derivative another), like PyTorch's gelu and gelu_backward.

    >>> import flopgrad as fg
    >>> round(fg.nn.functional.gelu(fg.tensor(1.0)).item(), 4)
    0.8413
    """
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    x = _t(x)
    if x.dtype.kind != "f":
        raise TypeError(f"gelu: needs a floating-point tensor, got dtype {x.dtype}; "
                        "convert it with .float() first")
    return apply(O.GELU, (x,), (approximate,))


def silu(x: Tensor) -> Tensor:
    """x * sigmoid(x) (swish).

    >>> import flopgrad as fg
    >>> fg.nn.functional.silu(fg.tensor([0.0, 1.0])).tolist()
    [0.0, 0.7310585975646973]
    """
    return x * x.sigmoid()


def softplus(x: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + exp(beta x)) / beta, linear above `threshold` (computed without overflow).

    >>> import flopgrad as fg
    >>> fg.nn.functional.softplus(fg.tensor([0.0, 30.0])).tolist()
    [0.6931471824645996, 30.0]
    """
    bx = x * beta if beta != 1 else x
    # maximum, not relu: its tie at 0 passes half the gradient, so d/dx at 0 is sigmoid(0)
    smooth = maximum(bx, 0.0) + (-bx.abs()).exp().log1p()
    if beta != 1:
        smooth = smooth / beta
    return where(bx > threshold, x, smooth)


def sigmoid(x: Tensor) -> Tensor:
    """1 / (1 + exp(-x)).

    >>> import flopgrad as fg
    >>> fg.nn.functional.sigmoid(fg.tensor([0.0])).tolist()
    [0.5]
    """
    return x.sigmoid()


def tanh(x: Tensor) -> Tensor:
    """Hyperbolic tangent.

    >>> import flopgrad as fg
    >>> fg.nn.functional.tanh(fg.tensor([0.0])).tolist()
    [0.0]
    """
    return x.tanh()


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """Softmax along `dim` (a row that is all -inf gives NaN, as in PyTorch).

    >>> import flopgrad as fg
    >>> fg.nn.functional.softmax(fg.zeros(2, 4), dim=-1).tolist()
    [[0.25, 0.25, 0.25, 0.25], [0.25, 0.25, 0.25, 0.25]]
    """
    return x.softmax(dim)


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    """log(softmax(x)) along `dim`, computed stably.

    >>> import flopgrad as fg
    >>> fg.nn.functional.log_softmax(fg.tensor([0.0, 0.0])).tolist()
    [-0.6931471824645996, -0.6931471824645996]
    """
    return x.log_softmax(dim)


# ---------------------------------------------------------------- layers

def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x @ weight.T + bias, with weight of shape (out_features, in_features).

    >>> import flopgrad as fg
    >>> fg.nn.functional.linear(fg.ones(4, 3), fg.ones(2, 3)).shape
    (4, 2)
    """
    x, weight = _t(x), _t(weight)
    if weight.ndim != 2 or x.ndim == 0:
        raise dispatch.ShapeError(
            f"linear: needs an input with at least 1 dim and a 2-D weight (out_features, "
            f"in_features), got shapes {x.shape} and {weight.shape}")
    if bias is None:
        return apply(O.LINEAR, (x, weight))
    bias = _t(bias)
    if bias.shape != (weight.shape[0],):
        raise dispatch.ShapeError(f"linear: bias of shape {bias.shape}, expected "
                                  f"({weight.shape[0]},) for a weight of shape {weight.shape}")
    return apply(O.LINEAR, (x, weight, bias))


def pad(x: Tensor, pad: tuple, mode: str = "constant", value: float = 0.0) -> Tensor:
    """Constant padding; `pad` lists (before, after) pairs starting from the last dim.

    >>> import flopgrad as fg
    >>> fg.nn.functional.pad(fg.tensor([1.0, 2.0]), (1, 2)).tolist()
    [0.0, 1.0, 2.0, 0.0, 0.0]
    """
    if mode != "constant":
        raise ValueError(f"pad: only mode='constant' is supported, got {mode!r}")
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ValueError(f"pad: {pad} needs an even length of at most 2 * ndim = {2 * x.ndim}")
    if any(p < 0 for p in pad):
        raise ValueError(f"pad: negative padding {pad} is not supported; slice instead")
    widths = [(0, 0)] * x.ndim
    for k in range(len(pad) // 2):
        widths[x.ndim - 1 - k] = (int(pad[2 * k]), int(pad[2 * k + 1]))
    if not any(lo or hi for lo, hi in widths):
        return x
    return apply(O.PAD, (x,), (tuple(widths), value))


def _conv_padding(padding, kernel, dilation, name):
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        pads = []
        for k, d in zip(kernel, dilation, strict=True):
            total = d * (k - 1)
            pads.append((total // 2, total - total // 2))
        (t, b), (l_, r) = pads
        return (l_, r, t, b)
    ph, pw = _pair(padding, name)
    return (pw, pw, ph, ph)


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
           dilation=1, groups: int = 1) -> Tensor:
    """2-D convolution of (N, C, H, W) by weight (O, C/groups, kh, kw): im2col + matmul.

    >>> import flopgrad as fg
    >>> fg.nn.functional.conv2d(fg.ones(1, 1, 4, 4), fg.ones(2, 1, 3, 3), padding=1).shape
    (1, 2, 4, 4)
    """
    if x.ndim != 4 or weight.ndim != 4:
        raise ValueError(
            f"conv2d: expected input (N, C, H, W) and weight (O, C/groups, kh, kw), got "
            f"{x.shape} and {weight.shape}")
    n, c, _, _ = x.shape
    o, cg, kh, kw = weight.shape
    if c != cg * groups or o % groups:
        raise ValueError(
            f"conv2d: input has {c} channels but weight {weight.shape} with groups={groups} "
            f"expects {cg * groups} (and out channels divisible by groups)")
    stride, dilation = _pair(stride, "conv2d"), _pair(dilation, "conv2d")
    if padding == "same" and stride != (1, 1):
        raise ValueError("conv2d: padding='same' needs stride 1")
    x = pad(x, _conv_padding(padding, (kh, kw), dilation, "conv2d"))
    cols = apply(O.UNFOLD, (x,), (kh, kw, stride, dilation))
    ho, wo = cols.shape[4], cols.shape[5]
    cols = cols.reshape(n, groups, cg * kh * kw, ho * wo)
    out = weight.reshape(groups, o // groups, cg * kh * kw) @ cols
    out = out.reshape(n, o, ho, wo)
    return out + bias.reshape(1, o, 1, 1) if bias is not None else out


def conv1d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
           dilation=1, groups: int = 1) -> Tensor:
    """1-D convolution of (N, C, L) by weight (O, C/groups, k).

    >>> import flopgrad as fg
    >>> fg.nn.functional.conv1d(fg.ones(1, 1, 4), fg.ones(1, 1, 2)).tolist()
    [[[2.0, 2.0, 2.0]]]
    """
    if x.ndim != 3 or weight.ndim != 3:
        raise ValueError(
            f"conv1d: expected input (N, C, L) and weight (O, C/groups, k), got {x.shape} and "
            f"{weight.shape}")
    one = lambda v: v[0] if isinstance(v, tuple | list) else v
    pad_ = padding if isinstance(padding, str) else (0, one(padding))
    out = conv2d(x.unsqueeze(2), weight.unsqueeze(2), bias, (1, one(stride)), pad_,
                 (1, one(dilation)), groups)
    return out.squeeze(2)


def _pool_windows(x, kernel_size, stride, padding, dilation, fill, name):
    if x.ndim not in (3, 4):
        raise ValueError(f"{name}: expected (N, C, H, W) or (C, H, W), got {x.shape}")
    batched = x.ndim == 4
    if not batched:
        x = x.unsqueeze(0)
    kh, kw = _pair(kernel_size, name)
    stride = _pair(stride if stride is not None else (kh, kw), name)
    ph, pw = _pair(padding, name)
    if ph > kh // 2 or pw > kw // 2:
        raise ValueError(f"{name}: padding {padding} must be at most half the kernel {kernel_size}")
    x = pad(x, (pw, pw, ph, ph), value=fill)
    cols = apply(O.UNFOLD, (x,), (kh, kw, stride, _pair(dilation, name)))
    n, c, _, _, ho, wo = cols.shape
    return cols.reshape(n, c, kh * kw, ho, wo), batched


def max_pool2d(x: Tensor, kernel_size, stride=None, padding=0, dilation=1) -> Tensor:
    """Max over each window; the gradient goes to the (first) maximal entry, as in PyTorch.

    >>> import flopgrad as fg
    >>> x = fg.arange(16.0).reshape(1, 1, 4, 4)
    >>> fg.nn.functional.max_pool2d(x, 2).tolist()
    [[[[5.0, 7.0], [13.0, 15.0]]]]
    """
    cols, batched = _pool_windows(x, kernel_size, stride, padding, dilation, -np.inf,
                                  "max_pool2d")
    idx = apply(O.ARGMAX, (cols,), (2, True))
    out = cols.gather(2, idx).squeeze(2)
    return out if batched else out.squeeze(0)


def avg_pool2d(x: Tensor, kernel_size, stride=None, padding=0, count_include_pad: bool = True
               ) -> Tensor:
    """Mean over each window (padding counted in the divisor unless count_include_pad=False).

    >>> import flopgrad as fg
    >>> x = fg.arange(16.0).reshape(1, 1, 4, 4)
    >>> fg.nn.functional.avg_pool2d(x, 2).tolist()
    [[[[2.5, 4.5], [10.5, 12.5]]]]
    """
    cols, batched = _pool_windows(x, kernel_size, stride, padding, 1, 0.0, "avg_pool2d")
    if count_include_pad or padding == 0:
        out = cols.mean(2)
    else:
        ones = creation.ones(*((1, 1) + x.shape[-2:]), dtype=x.dtype)
        counts, _ = _pool_windows(ones, kernel_size, stride, padding, 1, 0.0, "avg_pool2d")
        out = cols.sum(2) / counts.sum(2).detach()
    return out if batched else out.squeeze(0)


def embedding(index, weight: Tensor, padding_idx: int | None = None) -> Tensor:
    """Rows of `weight` picked by integer `index`; repeated indices accumulate gradients.

    >>> import flopgrad as fg
    >>> weight = fg.arange(6.0).reshape(3, 2)
    >>> fg.nn.functional.embedding(fg.tensor([2, 0]), weight).tolist()
    [[4.0, 5.0], [0.0, 1.0]]
    """
    idx = index._data if isinstance(index, Tensor) else np.asarray(index)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"embedding: index must be integers, got dtype {idx.dtype}")
    if type(idx) is MetaArray:
        if padding_idx is not None:
            raise no_data("embedding with padding_idx (which rows are padding depends on data)")
    elif idx.size and (idx.min() < 0 or idx.max() >= weight.shape[0]):
        raise IndexError(
            f"embedding: index out of range [0, {weight.shape[0]}): min {idx.min()}, "
            f"max {idx.max()}")
    out = weight[idx]
    if padding_idx is not None:
        pad_rows = Tensor((idx == padding_idx)[..., None])
        out = where(pad_rows, out.detach(), out)
    return out


def layer_norm(x: Tensor, normalized_shape, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalise over the last len(normalized_shape) dims, then scale and shift.

    One primitive, like PyTorch's native_layer_norm (its backward is ordinary primitives).

    >>> import flopgrad as fg
    >>> fg.nn.functional.layer_norm(fg.tensor([[1.0, 3.0]]), (2,)).tolist()
    [[-0.9999949932098389, 0.9999949932098389]]
    """
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if tuple(x.shape[-len(shape):]) != shape:
        raise ValueError(f"layer_norm: input {x.shape} does not end in {shape}")
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and tuple(p.shape) != shape:
            raise ValueError(f"layer_norm: {name} has shape {tuple(p.shape)}, expected {shape}")
    return apply(O.LAYER_NORM, (_t(x), weight, bias), (len(shape), eps))


def rms_norm(x: Tensor, normalized_shape, weight: Tensor | None = None,
             eps: float | None = None) -> Tensor:
    """x / sqrt(mean(x**2) + eps) over the last dims (eps defaults to the dtype's epsilon).

    >>> import flopgrad as fg
    >>> fg.nn.functional.rms_norm(fg.tensor([[2.0, -2.0]]), 2).tolist()
    [[1.0, -1.0]]
    """
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    dims = tuple(range(x.ndim - len(shape), x.ndim))
    if eps is None:
        eps = float(np.finfo(x.dtype).eps)
    out = x * ((x * x).mean(dims, keepdim=True) + eps).rsqrt()
    return out * weight if weight is not None else out


def batch_norm(x: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
               weight: Tensor | None = None, bias: Tensor | None = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalise each channel (dim 1) by batch statistics (training) or running ones (eval).

    In training the running statistics are updated in place with the unbiased variance.

    >>> import flopgrad as fg
    >>> x = fg.tensor([1.0, 3.0]).reshape(2, 1, 1, 1)
    >>> fg.nn.functional.batch_norm(x, fg.zeros(1), fg.ones(1), training=True).flatten().tolist()
    [-0.9999949932098389, 0.9999949932098389]
    """
    dims = (0,) + tuple(range(2, x.ndim))
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    if training:
        mean = x.mean(dims, keepdim=True)
        centered = x - mean
        var = (centered * centered).mean(dims, keepdim=True)
        if running_mean is not None and running_var is not None:
            n = x.numel() // x.shape[1]
            m, v = mean.detach().reshape(-1), var.detach().reshape(-1)
            running_mean.copy_(running_mean.detach() * (1 - momentum) + m * momentum)
            running_var.copy_(running_var.detach() * (1 - momentum)
                              + v * (momentum * n / max(n - 1, 1)))
        out = centered * (var + eps).rsqrt()
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: eval mode needs running_mean and running_var")
        out = (x - running_mean.reshape(shape)) * (running_var.reshape(shape) + eps).rsqrt()
    if weight is not None:
        out = out * weight.reshape(shape)
    return out + bias.reshape(shape) if bias is not None else out


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero each entry with probability p and scale the rest by 1/(1-p) (seeded).

    >>> import flopgrad as fg
    >>> fg.manual_seed(0)
    >>> set(fg.nn.functional.dropout(fg.ones(100), p=0.5).tolist()) == {0.0, 2.0}
    True
    """
    if not 0 <= p <= 1:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    if not training or p == 0:
        return x
    if p == 1:
        return x * 0.0
    if x.is_meta:
        return x * Tensor(MetaArray(x.shape, x.dtype))
    keep = creation.generator().random(x.shape) >= p
    return x * Tensor((keep / (1.0 - p)).astype(x.dtype))


# ---------------------------------------------------------------- losses

def _reduce(loss: Tensor, reduction: str, name: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"{name}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def nll_loss(logp: Tensor, target, weight: Tensor | None = None, ignore_index: int = -100,
             reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of class indices `target` under log-probabilities `logp`.

    >>> import flopgrad as fg
    >>> logp = fg.tensor([[-1.0, -2.0], [-3.0, -0.5]])
    >>> fg.nn.functional.nll_loss(logp, fg.tensor([0, 1])).item()
    0.75
    """
    tgt = np.asarray(target._data if isinstance(target, Tensor) else target)
    if tgt.dtype.kind not in "iu":
        raise TypeError(f"nll_loss: target must hold class indices, got dtype {tgt.dtype}")
    class_dim = 0 if logp.ndim == 1 else 1
    n_classes = logp.shape[class_dim]
    ignored = tgt == ignore_index
    safe = np.where(ignored, 0, tgt)
    if safe.size and (safe.min() < 0 or safe.max() >= n_classes):
        raise IndexError(f"nll_loss: target out of range [0, {n_classes}) (and != ignore_index)")
    if weight is None and logp.ndim == 2 and not ignored.any():  # the common case, 3 ops
        picked = logp[np.arange(len(safe)), safe]
        if reduction == "mean":
            return -(picked.sum() / len(safe))
        return -_reduce(picked, reduction, "nll_loss")
    if logp.ndim == 1:
        picked = logp[safe]
    else:
        picked = logp.gather(1, np.expand_dims(safe, 1)).squeeze(1)
    if ignored.any():  # ignored targets get exactly 0 gradient (not 0 * inf when all are)
        picked = where(Tensor(ignored), 0.0, picked)
    w = np.where(ignored, 0.0, 1.0).astype(logp.dtype)
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

    >>> import flopgrad as fg
    >>> fg.nn.functional.cross_entropy(fg.zeros(2, 4), fg.tensor([1, 3])).item()
    1.3862943649291992
    """
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got "
                         f"{label_smoothing}")
    tgt = target._data if isinstance(target, Tensor) else np.asarray(target)
    if (logits.ndim == 2 and weight is None and not label_smoothing
            and isinstance(tgt, np.ndarray) and tgt.dtype.kind in "iu" and tgt.shape[:1]
            == logits.shape[:1] and tgt.ndim == 1 and not (tgt == ignore_index).any()
            and reduction in ("mean", "sum", "none")):  # the common case: one primitive
        if tgt.size and (tgt.min() < 0 or tgt.max() >= logits.shape[1]):
            raise IndexError(f"cross_entropy: target out of range [0, {logits.shape[1]})")
        return apply(O.CROSS_ENTROPY, (logits,), (tgt, reduction))
    class_dim = 0 if logits.ndim == 1 else 1
    logp = logits.log_softmax(class_dim)
    n_classes = logits.shape[class_dim]
    wshape = [1] * logits.ndim
    wshape[class_dim] = n_classes
    if tgt.dtype.kind == "f":  # class probabilities
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
    nll = nll_loss(logp, tgt, weight, ignore_index, reduction)
    if not label_smoothing:
        return nll
    kept_mask = np.expand_dims(tgt != ignore_index, class_dim)
    kept = Tensor(kept_mask.astype(logits.dtype))
    terms = where(Tensor(kept_mask), logp, 0.0)  # exact zeros (and gradients) where ignored
    if weight is not None:
        terms = terms * weight.reshape(wshape)
    smooth = -terms.sum(class_dim)
    if reduction == "mean":
        if weight is not None:
            safe = np.where(tgt == ignore_index, 0, tgt)
            denom = (weight[safe] * kept.reshape(tgt.shape)).sum()
        else:
            denom = max(int((tgt != ignore_index).sum()), 0)
        smooth = smooth.sum() / denom
    else:
        smooth = _reduce(smooth, reduction, "cross_entropy")
    return nll * (1 - label_smoothing) + smooth * (label_smoothing / n_classes)


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


# ---------------------------------------------------------------- attention

def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, attn_mask=None,
                                 dropout_p: float = 0.0, is_causal: bool = False,
                                 scale: float | None = None) -> Tensor:
    """softmax(q k^T * scale + mask) v over the last two dims (PyTorch's semantics).

    A boolean attn_mask marks the positions that may be attended to; a float mask is added.

    >>> import flopgrad as fg
    >>> q, k, v = fg.ones(2, 5, 8), fg.ones(2, 7, 8), fg.ones(2, 7, 3)
    >>> fg.nn.functional.scaled_dot_product_attention(q, k, v).shape
    (2, 5, 3)
    """
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"scaled_dot_product_attention: q {q.shape} and k {k.shape} differ in "
                         "the last dim")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q @ k.swapaxes(-1, -2)) * scale
    L, S = q.shape[-2], k.shape[-2]
    empty = None  # queries whose mask lets them attend to nothing
    if is_causal:
        if attn_mask is not None:
            raise ValueError("scaled_dot_product_attention: pass attn_mask or is_causal, not both")
        causal = MetaArray((L, S), np.bool_) if scores.is_meta else np.tril(
            np.ones((L, S), dtype=bool))
        scores = where(Tensor(causal), scores, -np.inf)
    elif attn_mask is not None:
        m = _t(attn_mask)
        if m.dtype == np.bool_:
            scores = where(m, scores, -np.inf)
            if not m.is_meta:
                empty = ~m._data.any(axis=-1, keepdims=True)
        else:
            scores = scores + m
            if not m.is_meta:
                empty = np.all(m._data == -np.inf, axis=-1, keepdims=True)
    # a query with nothing to attend to gets 0, not NaN (PyTorch's safe softmax); the inner
    # where keeps the NaN of an all -inf softmax out of the backward pass as well
    if empty is not None and empty.any():
        empty = Tensor(empty)
        attn = where(empty, 0.0, where(empty, 0.0, scores).softmax(-1))
    else:
        attn = scores.softmax(-1)
    if dropout_p:
        attn = dropout(attn, dropout_p)
    return attn @ v

