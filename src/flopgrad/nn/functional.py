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
    "linear", "conv1d", "conv2d", "max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d",
    "embedding", "layer_norm",
    "rms_norm", "batch_norm", "dropout", "cross_entropy", "nll_loss", "mse_loss",
    "binary_cross_entropy_with_logits", "scaled_dot_product_attention", "relu", "leaky_relu",
    "gelu", "silu", "softplus", "sigmoid", "tanh", "softmax", "log_softmax", "pad",
    "hardtanh", "relu6", "elu", "logsigmoid", "mish", "softmin", "l1_loss", "smooth_l1_loss",
    "huber_loss",
]


def _pair(v, name: str) -> tuple:
    if isinstance(v, int | np.integer):
        return (int(v), int(v))
    v = tuple(int(n) for n in v)
    if len(v) == 1:
        return v + v
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


def hardtanh(x: Tensor, min_val: float = -1.0, max_val: float = 1.0) -> Tensor:
    """x clipped to [min_val, max_val]; the gradient is 1 strictly inside, 0 at and beyond
    the bounds (PyTorch's hardtanh_backward; clamp's includes the bounds).

    >>> import flopgrad as fg
    >>> fg.nn.functional.hardtanh(fg.tensor([-2.0, 0.5, 3.0])).tolist()
    [-1.0, 0.5, 1.0]
    """
    if min_val > max_val:
        raise ValueError(f"hardtanh: min_val {min_val} cannot be greater than max_val {max_val}")
    x = _t(x)
    inside = (x > min_val) & (x < max_val)  # NaN is not inside: no gradient, as PyTorch
    return where(inside, x, x.detach().clamp(min_val, max_val))


def relu6(x: Tensor) -> Tensor:
    """min(max(x, 0), 6), PyTorch's hardtanh(x, 0, 6).

    >>> import flopgrad as fg
    >>> fg.nn.functional.relu6(fg.tensor([-1.0, 3.0, 7.0])).tolist()
    [0.0, 3.0, 6.0]
    """
    return hardtanh(x, 0.0, 6.0)


def elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    """x for x > 0, alpha (exp(x) - 1) otherwise.

    >>> import flopgrad as fg
    >>> fg.nn.functional.elu(fg.tensor([1.0, 0.0])).tolist()
    [1.0, 0.0]
    """
    x = _t(x)
    negative = x <= 0  # NaN takes the identity branch (gradient 1), as PyTorch
    curve = where(negative, x, 0.0).exp() - 1.0  # masked: exp(inf) never meets a 0 gradient
    return where(negative, curve * alpha if alpha != 1 else curve, x)


def logsigmoid(x: Tensor) -> Tensor:
    """log(sigmoid(x)), computed without overflow: -(max(-x, 0) + log1p(exp(-|x|))).

    >>> import flopgrad as fg
    >>> round(fg.nn.functional.logsigmoid(fg.tensor(0.0)).item(), 4)
    -0.6931
    """
    x = _t(x)
    return -(maximum(-x, 0.0) + (-x.abs()).exp().log1p())


def mish(x: Tensor) -> Tensor:
    """x tanh(softplus(x)).

    >>> import flopgrad as fg
    >>> fg.nn.functional.mish(fg.tensor([0.0])).tolist()
    [0.0]
    """
    return x * softplus(x).tanh()


def softmin(x: Tensor, dim: int | None = None, dtype=None) -> Tensor:
    """softmax(-x) along `dim` (PyTorch's legacy default dim when None: 0 for 0-, 1- and
    3-dim inputs, else 1).

    >>> import flopgrad as fg
    >>> fg.nn.functional.softmin(fg.tensor([0.0, 0.0]), 0).tolist()
    [0.5, 0.5]
    """
    x = _t(x)
    if dim is None:
        dim = 0 if x.ndim in (0, 1, 3) else 1
    return (-x).softmax(dim, dtype=dtype)


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
    if x.ndim not in (3, 4) or weight.ndim != 4:
        raise ValueError(
            f"conv2d: expected input (N, C, H, W) or (C, H, W) and weight (O, C/groups, kh, "
            f"kw), got {x.shape} and {weight.shape}")
    if x.ndim == 3:  # unbatched, as PyTorch allows
        return conv2d(x.unsqueeze(0), weight, bias, stride, padding, dilation, groups).squeeze(0)
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.dtype != x.dtype:
            raise TypeError(f"conv2d: input ({x.dtype}) and {name} ({t.dtype}) should be the "
                            "same dtype")
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
    if x.ndim not in (2, 3) or weight.ndim != 3:
        raise ValueError(
            f"conv1d: expected input (N, C, L) or (C, L) and weight (O, C/groups, k), got "
            f"{x.shape} and {weight.shape}")
    if x.ndim == 2:  # unbatched, as PyTorch allows
        return conv1d(x.unsqueeze(0), weight, bias, stride, padding, dilation, groups).squeeze(0)
    one = lambda v: v[0] if isinstance(v, tuple | list) else v
    pad_ = padding if isinstance(padding, str) else (0, one(padding))
    out = conv2d(x.unsqueeze(2), weight.unsqueeze(2), bias, (1, one(stride)), pad_,
                 (1, one(dilation)), groups)
    return out.squeeze(2)


def _pool_size(n: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output length (pooling_output_shape): with ceil_mode the last
    window may hang over the end, but must start inside the input or the left padding."""
    span = d * (k - 1) + 1
    out = (n + 2 * p - span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


def _pool_geometry(x, kernel_size, stride, padding, dilation, ceil_mode, name, half_of):
    """Checked (kernel, stride, padding, dilation, output size) of a 2-D pooling."""
    if x.ndim not in (3, 4) or any(n == 0 for n in x.shape[-3:]):
        raise ValueError(f"{name}: expected (N, C, H, W) or (C, H, W) with non-zero C, H and "
                         f"W (N may be 0), got {x.shape}")
    kernel = _pair(kernel_size, name)
    stride = kernel if stride is None or stride == () or stride == [] else _pair(stride, name)
    padding, dilation = _pair(padding, name), _pair(dilation, name)
    for what, v in (("kernel_size", kernel), ("stride", stride), ("dilation", dilation)):
        if min(v) <= 0:
            raise ValueError(f"{name}: {what} must be positive, got {v}")
    if min(padding) < 0:
        raise ValueError(f"{name}: padding must be non-negative, got {padding}")
    for k, p, d in zip(kernel, padding, dilation, strict=True):
        limit = (d * (k - 1) + 1) // 2 if half_of == "effective" else k // 2
        if p > limit:
            raise ValueError(f"{name}: padding {padding} must be at most half the "
                             f"{'effective ' if half_of == 'effective' else ''}kernel size "
                             f"{kernel} (dilation {dilation})")
    out = tuple(_pool_size(n, k, s, p, d, ceil_mode) for n, k, s, p, d in
                zip(x.shape[-2:], kernel, stride, padding, dilation, strict=True))
    if min(out) < 1:
        raise ValueError(f"{name}: input {x.shape} is too small for kernel {kernel} with "
                         f"padding {padding} and dilation {dilation} (output size {out})")
    return kernel, stride, padding, dilation, out


def _pool_windows(x, kernel, stride, padding, dilation, out, fill):
    """(N, C, kh*kw, Ho, Wo): every window of x (batched), padded with `fill`; windows
    that hang over the end (ceil_mode) read `fill` there too."""
    (kh, kw), (ph, pw), (ho, wo) = kernel, padding, out
    extra = [max(0, (o - 1) * s + d * (k - 1) + 1 - (n + 2 * p)) for n, o, k, s, p, d in
             zip(x.shape[-2:], out, kernel, stride, padding, dilation, strict=True)]
    x = pad(x, (pw, pw + extra[1], ph, ph + extra[0]), value=fill)
    cols = apply(O.UNFOLD, (x,), (kh, kw, stride, dilation))
    n, c = cols.shape[:2]
    if cols.shape[4:] != (ho, wo):
        cols = cols[:, :, :, :, :ho, :wo]
    return cols.reshape(n, c, kh * kw, ho, wo)


def _window_positions(shape, kernel, stride, padding, dilation, out) -> np.ndarray:
    """(kh*kw, Ho, Wo): the flat index into (H, W) of each window element (PyTorch's
    max-pool indices)."""
    (_, w), (kh, kw), (sh, sw), (ph, pw), (dh, dw), (ho, wo) = (
        shape, kernel, stride, padding, dilation, out)
    rows = (np.arange(ho) * sh - ph)[None, :] + (np.arange(kh) * dh)[:, None]  # (kh, Ho)
    cols = (np.arange(wo) * sw - pw)[None, :] + (np.arange(kw) * dw)[:, None]  # (kw, Wo)
    flat = rows[:, None, :, None] * w + cols[None, :, None, :]  # (kh, kw, Ho, Wo)
    return flat.reshape(kh * kw, ho, wo).astype(np.int64)


def max_pool2d(x: Tensor, kernel_size, stride=None, padding=0, dilation=1,
               ceil_mode: bool = False, return_indices: bool = False):
    """Max over each window; the gradient goes to the (first) maximal entry, as in PyTorch.

    Padding (at most half the effective kernel) never wins; `ceil_mode` keeps a last
    window that hangs over the end; `return_indices` also returns each maximum's flat
    index into its (H, W) plane, as torch's max_pool2d_with_indices.

    >>> import flopgrad as fg
    >>> x = fg.arange(16.0).reshape(1, 1, 4, 4)
    >>> fg.nn.functional.max_pool2d(x, 2).tolist()
    [[[[5.0, 7.0], [13.0, 15.0]]]]
    >>> values, indices = fg.nn.functional.max_pool2d(x, 3, 2, ceil_mode=True,
    ...                                               return_indices=True)
    >>> values.tolist(), indices.tolist()
    ([[[[10.0, 11.0], [14.0, 15.0]]]], [[[[10, 11], [14, 15]]]])
    """
    x = _t(x)
    geometry = _pool_geometry(x, kernel_size, stride, padding, dilation, ceil_mode,
                              "max_pool2d", "effective")
    batched = x.ndim == 4
    xb = x if batched else x.unsqueeze(0)
    fill = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    cols = _pool_windows(xb, *geometry, fill)
    idx = apply(O.ARGMAX, (cols,), (2, True))
    out = cols.gather(2, idx).squeeze(2)
    if not batched:
        out = out.squeeze(0)
    if not return_indices:
        return out
    positions = _window_positions(x.shape[-2:], *geometry)
    where_from = Tensor(np.broadcast_to(positions, idx.shape[:2] + positions.shape))
    indices = where_from.gather(2, idx).squeeze(2)
    return out, (indices if batched else indices.squeeze(0))


def max_pool1d(x: Tensor, kernel_size, stride=None, padding=0, dilation=1,
               ceil_mode: bool = False, return_indices: bool = False):
    """max_pool2d over the last dim of (N, C, L) or (C, L) (indices index into L).

    >>> import flopgrad as fg
    >>> fg.nn.functional.max_pool1d(fg.tensor([[1.0, 3.0, 2.0, 5.0, 4.0]]), 2).tolist()
    [[3.0, 5.0]]
    """
    x = _t(x)
    if x.ndim not in (2, 3):
        raise ValueError(f"max_pool1d: expected (N, C, L) or (C, L), got {x.shape}")
    one = lambda v, what: _single(v, "max_pool1d", what)
    stride = None if stride is None or stride == () or stride == [] else one(stride, "stride")
    out = max_pool2d(x.unsqueeze(-2), (1, one(kernel_size, "kernel_size")),
                     None if stride is None else (1, stride), (0, one(padding, "padding")),
                     (1, one(dilation, "dilation")), ceil_mode, return_indices)
    if return_indices:
        return out[0].squeeze(-2), out[1].squeeze(-2)
    return out.squeeze(-2)


def _single(v, name: str, what: str) -> int:
    if isinstance(v, int | np.integer):
        return int(v)
    v = tuple(v)
    if len(v) != 1:
        raise ValueError(f"{name}: {what} must be an int or a 1-tuple, got {v}")
    return int(v[0])


def avg_pool2d(x: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override: int | None = None) -> Tensor:
    """Mean over each window, PyTorch's divisor: the window's size clipped to the padded
    input (count_include_pad, the default) or to the input itself; a window hanging over
    the end (ceil_mode) never counts what lies beyond the padding; `divisor_override`
    replaces the divisor.

    >>> import flopgrad as fg
    >>> x = fg.arange(16.0).reshape(1, 1, 4, 4)
    >>> fg.nn.functional.avg_pool2d(x, 2).tolist()
    [[[[2.5, 4.5], [10.5, 12.5]]]]
    """
    x = _t(x)
    if divisor_override is not None and divisor_override == 0:
        raise ValueError("avg_pool2d: divisor_override must be non-zero")
    kernel, stride, padding, dilation, out = _pool_geometry(
        x, kernel_size, stride, padding, 1, ceil_mode, "avg_pool2d", "kernel")
    batched = x.ndim == 4
    cols = _pool_windows(x if batched else x.unsqueeze(0), kernel, stride, padding, dilation,
                         out, 0.0)
    if divisor_override is not None:
        divisor = np.full(out, float(divisor_override))
    else:
        counts = []
        for n, k, s, p, o in zip(x.shape[-2:], kernel, stride, padding, out, strict=True):
            start = np.arange(o) * s - p
            end = np.minimum(start + k, n + p)
            if not count_include_pad:
                start, end = np.maximum(start, 0), np.minimum(end, n)
            counts.append(end - start)
        divisor = (counts[0][:, None] * counts[1][None, :]).astype(np.float64)
    if (divisor == divisor.flat[0]).all():
        result = cols.sum(2) / float(divisor.flat[0])
    else:
        result = cols.sum(2) / Tensor(divisor.astype(x.dtype if x.dtype.kind == "f"
                                                     else np.float64))
    return result if batched else result.squeeze(0)


def avg_pool1d(x: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True) -> Tensor:
    """avg_pool2d over the last dim of (N, C, L) or (C, L).

    >>> import flopgrad as fg
    >>> fg.nn.functional.avg_pool1d(fg.tensor([[1.0, 3.0, 2.0, 6.0]]), 2).tolist()
    [[2.0, 4.0]]
    """
    x = _t(x)
    if x.ndim not in (2, 3):
        raise ValueError(f"avg_pool1d: expected (N, C, L) or (C, L), got {x.shape}")
    one = lambda v, what: _single(v, "avg_pool1d", what)
    stride = None if stride is None or stride == () or stride == [] else (
        1, one(stride, "stride"))
    out = avg_pool2d(x.unsqueeze(-2), (1, one(kernel_size, "kernel_size")), stride,
                     (0, one(padding, "padding")), ceil_mode, count_include_pad)
    return out.squeeze(-2)


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
    if weight.ndim != 2:
        raise ValueError(f"embedding: the weight must be 2-D (num_embeddings, embedding_dim), "
                         f"got shape {weight.shape}")
    if type(idx) is MetaArray:
        pass  # no values to check: taken as in range
    elif idx.size and (idx.min() < 0 or idx.max() >= weight.shape[0]):
        raise IndexError(
            f"embedding: index out of range [0, {weight.shape[0]}): min {idx.min()}, "
            f"max {idx.max()}")
    out = weight[idx]
    if padding_idx is not None:
        pad_rows = Tensor(MetaArray((*idx.shape, 1), np.bool_) if type(idx) is MetaArray
                          else (idx == padding_idx)[..., None])
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
    shape = _normalized_shape(x, normalized_shape, "layer_norm", weight=weight, bias=bias)
    return apply(O.LAYER_NORM, (_t(x), weight, bias), (len(shape), eps))


def _normalized_shape(x, normalized_shape, name: str, **params) -> tuple:
    """normalized_shape as a tuple, checked against the input's last dims and the shapes of
    the affine parameters (as PyTorch's layer_norm and rms_norm check them)."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if not shape or tuple(x.shape[-len(shape):]) != shape:
        raise ValueError(f"{name}: input {x.shape} does not end in normalized_shape {shape}")
    for key, p in params.items():
        if p is not None and tuple(p.shape) != shape:
            raise ValueError(f"{name}: {key} has shape {tuple(p.shape)}, expected {shape}")
    return shape


def rms_norm(x: Tensor, normalized_shape, weight: Tensor | None = None,
             eps: float | None = None) -> Tensor:
    """x / sqrt(mean(x**2) + eps) over the last dims (eps defaults to the dtype's epsilon).

    >>> import flopgrad as fg
    >>> fg.nn.functional.rms_norm(fg.tensor([[2.0, -2.0]]), 2).tolist()
    [[1.0, -1.0]]
    """
    shape = _normalized_shape(x, normalized_shape, "rms_norm", weight=weight)
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
    if tgt.dtype.kind == "f":  # class probabilities
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


def one_hot(tensor, num_classes: int = -1) -> Tensor:
    """One-hot int64 encoding of class indices: shape (*tensor.shape, num_classes), like
    torch.nn.functional.one_hot. Meta indices need an explicit num_classes.

    >>> import flopgrad as fg
    >>> fg.nn.functional.one_hot(fg.tensor([0, 2]), 3).tolist()
    [[1, 0, 0], [0, 0, 1]]
    """
    idx = tensor._data if isinstance(tensor, Tensor) else np.asarray(tensor)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"one_hot: expected integer class indices, got dtype {idx.dtype}")
    if not isinstance(num_classes, int | np.integer) or isinstance(num_classes, bool) or (
            num_classes < -1):
        raise ValueError(f"one_hot: num_classes must be -1 or a non-negative int, got "
                         f"{num_classes!r}")
    if type(idx) is MetaArray:
        if num_classes == -1:
            raise no_data("one_hot without num_classes (the class count comes from the data)")
        return creation._make(MetaArray((*idx.shape, num_classes), np.int64), False)
    if num_classes == -1:
        if not idx.size:
            raise ValueError("one_hot: cannot infer num_classes of an empty tensor; pass it")
        num_classes = int(idx.max()) + 1
    if idx.size and (idx.min() < 0 or idx.max() >= num_classes):
        raise IndexError(f"one_hot: class values must be in [0, {num_classes}), got min "
                         f"{idx.min()}, max {idx.max()}")
    out = np.zeros((*idx.shape, num_classes), dtype=np.int64)
    np.put_along_axis(out, idx[..., None].astype(np.intp), 1, axis=-1)
    return creation._make(out, False)


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

