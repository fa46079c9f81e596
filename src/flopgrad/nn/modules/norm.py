"""Normalisation layers: LayerNorm, RMSNorm and BatchNorm2d (with running statistics)."""

from __future__ import annotations

from flopgrad import creation
from flopgrad.nn import functional as F
from flopgrad.nn.modules.module import Module
from flopgrad.tensor import Parameter, Tensor

__all__ = ["LayerNorm", "RMSNorm", "BatchNorm2d"]


class LayerNorm(Module):
    """Layer normalisation over the trailing `normalized_shape`.

    >>> import flopgrad as fg
    >>> fg.nn.LayerNorm(2)(fg.tensor([[1.0, 3.0]])).tolist()
    [[-0.9999949932098389, 0.9999949932098389]]
    """

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, dtype=None):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(
            normalized_shape)
        self.normalized_shape, self.eps = shape, eps
        w = Parameter(creation.ones(*shape, dtype=dtype)) if elementwise_affine else None
        b = Parameter(creation.zeros(*shape, dtype=dtype)) if elementwise_affine and bias \
            else None
        self.register_parameter("weight", w)
        self.register_parameter("bias", b)

    def forward(self, x: Tensor) -> Tensor:
        """x normalised, scaled and shifted (see F.layer_norm)."""
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        """Normalised shape and eps."""
        return f"{self.normalized_shape}, eps={self.eps}"


class RMSNorm(Module):
    """Root-mean-square normalisation over the trailing `normalized_shape`.

    >>> import flopgrad as fg
    >>> fg.nn.RMSNorm(2)(fg.tensor([[2.0, -2.0]])).tolist()
    [[1.0, -1.0]]
    """

    def __init__(self, normalized_shape, eps: float | None = None,
                 elementwise_affine: bool = True, dtype=None):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(
            normalized_shape)
        self.normalized_shape, self.eps = shape, eps
        self.register_parameter(
            "weight", Parameter(creation.ones(*shape, dtype=dtype)) if elementwise_affine
            else None)

    def forward(self, x: Tensor) -> Tensor:
        """x normalised and scaled (see F.rms_norm)."""
        return F.rms_norm(x, self.normalized_shape, self.weight, self.eps)


class BatchNorm2d(Module):
    """Batch normalisation over (N, C, H, W) with running statistics.

    >>> import flopgrad as fg
    >>> bn = fg.nn.BatchNorm2d(3)
    >>> bn(fg.ones(2, 3, 4, 4)).shape, bn.running_mean.tolist()
    ((2, 3, 4, 4), [0.10000000149011612, 0.10000000149011612, 0.10000000149011612])
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = True, track_running_stats: bool = True, dtype=None):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.register_parameter(
            "weight", Parameter(creation.ones(num_features, dtype=dtype)) if affine else None)
        self.register_parameter(
            "bias", Parameter(creation.zeros(num_features, dtype=dtype)) if affine else None)
        if track_running_stats:
            self.register_buffer("running_mean", creation.zeros(num_features, dtype=dtype))
            self.register_buffer("running_var", creation.ones(num_features, dtype=dtype))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)

    def forward(self, x: Tensor) -> Tensor:
        """x normalised per channel (see F.batch_norm)."""
        if x.ndim != 4:
            raise ValueError(f"BatchNorm2d: expected (N, C, H, W), got {x.shape}")
        use_batch = self.training or self.running_mean is None
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            use_batch, self.momentum, self.eps)

    def extra_repr(self) -> str:
        """Number of channels, eps and momentum."""
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"
