"""Convolution: the im2col windows (`ops.UNFOLD`) followed by one batched matmul, so its
FLOPs are matmul FLOPs; conv1d is conv2d over a height of 1."""

from __future__ import annotations

from flopgrad import ops as O
from flopgrad.dispatch import apply
from flopgrad.nn.functional._utils import _pair
from flopgrad.nn.functional.padding import pad
from flopgrad.tensor import Tensor

__all__ = ["conv2d", "conv1d"]


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


_LAYOUTS = {1: ("L", "k"), 2: ("H, W", "kh, kw")}  # spatial dims of input and weight


def _batched(x: Tensor, weight: Tensor, dims: int, name: str) -> bool:
    """Whether the input of a `dims`-d convolution is batched, (N, C, *spatial), rather than
    (C, *spatial); a ValueError unless it is one of these with a weight (O, C/groups, *k)."""
    if x.ndim not in (dims + 1, dims + 2) or weight.ndim != dims + 2:
        spatial, kernel = _LAYOUTS[dims]
        raise ValueError(
            f"{name}: expected input (N, C, {spatial}) or (C, {spatial}) and weight "
            f"(O, C/groups, {kernel}), got {x.shape} and {weight.shape}")
    return x.ndim == dims + 2


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
           dilation=1, groups: int = 1) -> Tensor:
    """2-D convolution of (N, C, H, W) by weight (O, C/groups, kh, kw): im2col + matmul.

    >>> import flopgrad as fg
    >>> fg.nn.functional.conv2d(fg.ones(1, 1, 4, 4), fg.ones(2, 1, 3, 3), padding=1).shape
    (1, 2, 4, 4)
    """
    if not _batched(x, weight, 2, "conv2d"):  # unbatched, as PyTorch allows
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
    if not _batched(x, weight, 1, "conv1d"):  # unbatched, as PyTorch allows
        return conv1d(x.unsqueeze(0), weight, bias, stride, padding, dilation, groups).squeeze(0)
    one = lambda v: v[0] if isinstance(v, tuple | list) else v
    pad_ = padding if isinstance(padding, str) else (0, one(padding))
    out = conv2d(x.unsqueeze(2), weight.unsqueeze(2), bias, (1, one(stride)), pad_,
                 (1, one(dilation)), groups)
    return out.squeeze(2)
