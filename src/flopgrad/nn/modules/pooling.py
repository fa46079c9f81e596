"""Max and average pooling layers, 1-D and 2-D (the settings of F's pooling functions)."""

from __future__ import annotations

from flopgrad.nn import functional as F
from flopgrad.nn.modules.module import Module
from flopgrad.tensor import Tensor

__all__ = ["MaxPool2d", "MaxPool1d", "AvgPool2d", "AvgPool1d"]


class _PoolNd(Module):
    """What every pooling layer has: the window size, its stride (None: the window size) and
    the padding."""

    def __init__(self, kernel_size, stride, padding):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def extra_repr(self) -> str:
        """Kernel size, stride and padding."""
        return (f"kernel_size={self.kernel_size}, stride={self.stride or self.kernel_size}, "
                f"padding={self.padding}")


class MaxPool2d(_PoolNd):
    """Max over windows (see F.max_pool2d); PyTorch's arguments, in its order.

    >>> import flopgrad as fg
    >>> fg.nn.MaxPool2d(2)(fg.arange(16.0).reshape(1, 1, 4, 4)).tolist()
    [[[[5.0, 7.0], [13.0, 15.0]]]]
    >>> fg.nn.MaxPool2d(3, 2, ceil_mode=True)(fg.arange(16.0).reshape(1, 1, 4, 4)).shape
    (1, 1, 2, 2)
    """

    _pool = staticmethod(F.max_pool2d)

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1,
                 return_indices: bool = False, ceil_mode: bool = False):
        super().__init__(kernel_size, stride, padding)
        self.dilation, self.return_indices, self.ceil_mode = dilation, return_indices, ceil_mode

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        """The window maxima of x (and their indices with return_indices)."""
        return self._pool(x, self.kernel_size, self.stride, self.padding, self.dilation,
                          self.ceil_mode, self.return_indices)

    def extra_repr(self) -> str:
        """Kernel size, stride, padding, dilation and ceil_mode."""
        return f"{super().extra_repr()}, dilation={self.dilation}, ceil_mode={self.ceil_mode}"


class MaxPool1d(MaxPool2d):
    """Max over windows of the last dim (see F.max_pool1d).

    >>> import flopgrad as fg
    >>> fg.nn.MaxPool1d(2)(fg.tensor([[[1.0, 3.0, 2.0, 5.0]]])).tolist()
    [[[3.0, 5.0]]]
    """

    _pool = staticmethod(F.max_pool1d)


class AvgPool2d(_PoolNd):
    """Mean over windows (see F.avg_pool2d); PyTorch's arguments, in its order.

    >>> import flopgrad as fg
    >>> fg.nn.AvgPool2d(2)(fg.arange(16.0).reshape(1, 1, 4, 4)).tolist()
    [[[[2.5, 4.5], [10.5, 12.5]]]]
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override: int | None = None):
        super().__init__(kernel_size, stride, padding)
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad
        self.divisor_override = divisor_override

    def forward(self, x: Tensor) -> Tensor:
        """The window means of x."""
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override)


class AvgPool1d(AvgPool2d):
    """Mean over windows of the last dim (see F.avg_pool1d).

    >>> import flopgrad as fg
    >>> fg.nn.AvgPool1d(2)(fg.tensor([[[1.0, 3.0, 2.0, 6.0]]])).tolist()
    [[[2.0, 4.0]]]
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                 count_include_pad: bool = True):
        super().__init__(kernel_size, stride, padding, ceil_mode, count_include_pad)

    def forward(self, x: Tensor) -> Tensor:
        """The window means of x."""
        return F.avg_pool1d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad)
