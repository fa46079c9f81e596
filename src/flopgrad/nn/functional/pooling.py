"""Max and average pooling over the im2col windows (`ops.UNFOLD`) with PyTorch's output
sizes, padding rules and divisors; the 1-D forms are the 2-D ones over a height of 1."""

from __future__ import annotations

import numpy as np

from flopgrad import ops as O
from flopgrad.dispatch import apply
from flopgrad.nn.functional._utils import _pair, _single
from flopgrad.nn.functional.padding import pad
from flopgrad.tensor import Tensor, _t

__all__ = ["max_pool2d", "max_pool1d", "avg_pool2d", "avg_pool1d"]


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
               ceil_mode: bool = False,
               return_indices: bool = False) -> Tensor | tuple[Tensor, Tensor]:
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
    fill = -np.inf if x.dtype.kind in "fV" else np.iinfo(x.dtype).min
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
               ceil_mode: bool = False,
               return_indices: bool = False) -> Tensor | tuple[Tensor, Tensor]:
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
        result = cols.sum(2) / Tensor(divisor.astype(x.dtype if x.dtype.kind in "fV"
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
