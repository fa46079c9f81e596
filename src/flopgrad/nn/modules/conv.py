"""Conv1d and Conv2d (PyTorch's parameter layout and initialisation)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from flopgrad import creation
from flopgrad.nn import functional as F
from flopgrad.nn import init
from flopgrad.nn.modules.module import Module
from flopgrad.tensor import Parameter, Tensor

__all__ = ["Conv2d", "Conv1d"]


class _ConvNd(Module):
    """What Conv1d and Conv2d share: the settings, PyTorch's initialisation and the forward;
    a subclass names its number of spatial dims (`_dims`) and its function (`_conv`)."""

    _dims: int
    _conv: Callable[..., Tensor]

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, dtype=None):
        super().__init__()
        ks = (kernel_size,) * self._dims if isinstance(kernel_size, int) else tuple(kernel_size)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{type(self).__name__}: channels {in_channels}, {out_channels} "
                             f"must be divisible by groups={groups}")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, ks
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self.weight = Parameter(creation.empty(out_channels, in_channels // groups, *ks,
                                               dtype=dtype))
        self.register_parameter(
            "bias", Parameter(creation.empty(out_channels, dtype=dtype)) if bias else None)
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = (in_channels // groups) * int(np.prod(ks))
            bound = 1 / math.sqrt(fan_in)
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        """The convolution of x (see F.conv1d and F.conv2d)."""
        return self._conv(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                          self.groups)

    def extra_repr(self) -> str:
        """Channels, kernel size, stride and padding."""
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")


class Conv2d(_ConvNd):
    """2-D convolution over (N, C, H, W).

    >>> import flopgrad as fg
    >>> fg.manual_seed(0)
    >>> fg.nn.Conv2d(1, 4, 3, padding=1)(fg.ones(2, 1, 8, 8)).shape
    (2, 4, 8, 8)
    """

    _dims, _conv = 2, staticmethod(F.conv2d)


class Conv1d(_ConvNd):
    """1-D convolution over (N, C, L).

    >>> import flopgrad as fg
    >>> fg.manual_seed(0)
    >>> fg.nn.Conv1d(2, 4, 3)(fg.ones(1, 2, 10)).shape
    (1, 4, 8)
    """

    _dims, _conv = 1, staticmethod(F.conv1d)
