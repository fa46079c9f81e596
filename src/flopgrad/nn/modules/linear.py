"""Identity, Linear and Embedding."""

from __future__ import annotations

import math

from flopgrad import creation
from flopgrad.nn import functional as F
from flopgrad.nn import init
from flopgrad.nn.modules.module import Module
from flopgrad.tensor import Parameter, Tensor

__all__ = ["Identity", "Linear", "Embedding"]


class Identity(Module):
    """Returns its input.

    >>> import flopgrad as fg
    >>> fg.nn.Identity()(fg.tensor([1.0, 2.0])).tolist()
    [1.0, 2.0]
    """

    def forward(self, x: Tensor) -> Tensor:
        """x itself."""
        return x


class Linear(Module):
    """y = x W^T + b, W of shape (out_features, in_features), PyTorch's initialisation.

    >>> import flopgrad as fg
    >>> fg.manual_seed(0)
    >>> fg.nn.Linear(3, 2)(fg.ones(4, 3)).shape
    (4, 2)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(creation.empty(out_features, in_features, dtype=dtype))
        self.register_parameter(
            "bias", Parameter(creation.empty(out_features, dtype=dtype)) if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw new weights (Kaiming uniform) and bias (uniform in +-1/sqrt(in_features)).

        >>> import flopgrad as fg
        >>> fg.manual_seed(0)
        >>> lin = fg.nn.Linear(3, 2)
        >>> lin.reset_parameters()
        >>> lin.weight.shape, bool((lin.weight.abs() <= 3 ** -0.5).all())
        ((2, 3), True)
        """
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        """x W^T + b."""
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        """Sizes and whether there is a bias."""
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Embedding(Module):
    """A lookup table of `num_embeddings` vectors of size `embedding_dim` (N(0, 1) init).

    >>> import flopgrad as fg
    >>> fg.manual_seed(0)
    >>> fg.nn.Embedding(10, 4)(fg.tensor([[1, 2, 3]])).shape
    (1, 3, 4)
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 dtype=None):
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.padding_idx = (
            num_embeddings, embedding_dim, padding_idx)
        self.weight = Parameter(creation.empty(num_embeddings, embedding_dim, dtype=dtype))
        init.normal_(self.weight)
        if padding_idx is not None and not self.weight.is_meta:
            self.weight._data[padding_idx] = 0

    def forward(self, idx) -> Tensor:
        """The rows of the table at integer indices idx."""
        return F.embedding(idx, self.weight, self.padding_idx)

    def extra_repr(self) -> str:
        """Table size."""
        return f"{self.num_embeddings}, {self.embedding_dim}"
