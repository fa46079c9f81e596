"""Parameter initialisers (PyTorch's formulas), drawing from fg.manual_seed's generator.

>>> import flopgrad as fg
>>> w = fg.nn.Parameter(fg.empty(3, 4))
>>> _ = fg.nn.init.xavier_uniform_(w)
>>> bool((w.abs() <= (6 / 7) ** 0.5).all())
True
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import special

from flopgrad import creation
from flopgrad.tensor import Tensor

__all__ = [
    "uniform_", "normal_", "constant_", "zeros_", "ones_", "xavier_uniform_", "xavier_normal_",
    "kaiming_uniform_", "kaiming_normal_", "trunc_normal_", "calculate_gain",
]


def _fill(t: Tensor, make_values) -> Tensor:
    """Write make_values() into t (nothing is drawn for a meta tensor: it has no data)."""
    if not t.is_meta:
        t._data[...] = make_values().astype(t.dtype, copy=False)
    t._version[0] += 1
    return t


def _fans(t: Tensor) -> tuple[int, int]:
    if t.ndim < 2:
        raise ValueError(f"fan in and fan out need at least 2 dims, got shape {t.shape}")
    receptive = int(np.prod(t.shape[2:])) if t.ndim > 2 else 1
    return t.shape[1] * receptive, t.shape[0] * receptive


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """PyTorch's recommended gain for a nonlinearity.

    >>> import flopgrad as fg
    >>> fg.nn.init.calculate_gain("relu"), fg.nn.init.calculate_gain("tanh")
    (1.4142135623730951, 1.6666666666666667)
    """
    if nonlinearity in ("linear", "conv1d", "conv2d", "sigmoid", "identity"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unknown nonlinearity {nonlinearity!r}")


def uniform_(t: Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    """Fill with U(a, b).

    >>> import flopgrad as fg
    >>> fg.manual_seed(0)
    >>> w = fg.nn.init.uniform_(fg.empty(100), -1.0, 1.0)
    >>> bool(((w >= -1) & (w < 1)).all())
    True
    """
    return _fill(t, lambda: creation.generator().uniform(a, b, t.shape))


def normal_(t: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
    """Fill with N(mean, std**2).

    >>> import flopgrad as fg
    >>> fg.manual_seed(0)
    >>> fg.nn.init.normal_(fg.empty(2, 3), 0.0, 0.02).shape
    (2, 3)
    """
    return _fill(t, lambda: creation.generator().normal(mean, std, t.shape))


def constant_(t: Tensor, value: float) -> Tensor:
    """Fill with a constant.

    >>> import flopgrad as fg
    >>> fg.nn.init.constant_(fg.empty(3), 0.5).tolist()
    [0.5, 0.5, 0.5]
    """
    return _fill(t, lambda: np.full(t.shape, value))


def zeros_(t: Tensor) -> Tensor:
    """Fill with zeros.

    >>> import flopgrad as fg
    >>> fg.nn.init.zeros_(fg.empty(2)).tolist()
    [0.0, 0.0]
    """
    return constant_(t, 0.0)


def ones_(t: Tensor) -> Tensor:
    """Fill with ones.

    >>> import flopgrad as fg
    >>> fg.nn.init.ones_(fg.empty(2)).tolist()
    [1.0, 1.0]
    """
    return constant_(t, 1.0)


def xavier_uniform_(t: Tensor, gain: float = 1.0) -> Tensor:
    """Glorot uniform: U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)).

    >>> import flopgrad as fg
    >>> fg.manual_seed(0)
    >>> w = fg.nn.init.xavier_uniform_(fg.empty(3, 4))
    >>> bool((w.abs() <= (6 / 7) ** 0.5).all())
    True
    """
    fan_in, fan_out = _fans(t)
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(t, -a, a)


def xavier_normal_(t: Tensor, gain: float = 1.0) -> Tensor:
    """Glorot normal: N(0, gain**2 * 2 / (fan_in + fan_out)).

    >>> import flopgrad as fg
    >>> fg.manual_seed(0)
    >>> fg.nn.init.xavier_normal_(fg.empty(3, 4)).shape
    (3, 4)
    """
    fan_in, fan_out = _fans(t)
    return normal_(t, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def _zero_elements(t: Tensor) -> bool:
    """PyTorch's kaiming initialisers leave a tensor without elements alone, with a warning."""
    if 0 in t.shape:
        warnings.warn("Initializing zero-element tensors is a no-op", stacklevel=3)
        return True
    return False


def _kaiming_std(t, a, mode, nonlinearity) -> float:
    fan_in, fan_out = _fans(t)
    fan = fan_in if mode == "fan_in" else fan_out
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"kaiming: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(t: Tensor, a: float = 0.0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu") -> Tensor:
    """He uniform: U(-b, b) with b = gain * sqrt(3 / fan).

    >>> import flopgrad as fg
    >>> fg.manual_seed(0)
    >>> w = fg.nn.init.kaiming_uniform_(fg.empty(8, 6), nonlinearity="relu")
    >>> bool((w.abs() <= 1.0).all())  # b = sqrt(2) * sqrt(3 / 6)
    True
    """
    if _zero_elements(t):
        return t
    bound = math.sqrt(3.0) * _kaiming_std(t, a, mode, nonlinearity)
    return uniform_(t, -bound, bound)


def kaiming_normal_(t: Tensor, a: float = 0.0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu") -> Tensor:
    """He normal: N(0, (gain / sqrt(fan))**2).

    >>> import flopgrad as fg
    >>> fg.manual_seed(0)
    >>> fg.nn.init.kaiming_normal_(fg.empty(8, 6), nonlinearity="relu").shape
    (8, 6)
    """
    if _zero_elements(t):
        return t
    return normal_(t, 0.0, _kaiming_std(t, a, mode, nonlinearity))


def trunc_normal_(t: Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0,
                  b: float = 2.0) -> Tensor:
    """N(mean, std**2) truncated to [a, b] (inverse-CDF sampling, as PyTorch).

    >>> import flopgrad as fg
    >>> fg.manual_seed(0)
    >>> w = fg.nn.init.trunc_normal_(fg.empty(1000), std=1.0, a=-2.0, b=2.0)
    >>> bool((w.abs() <= 2).all())
    True
    """
    def draw():
        lo = special.ndtr((a - mean) / std)
        hi = special.ndtr((b - mean) / std)
        u = creation.generator().uniform(lo, hi, t.shape)
        return np.clip(mean + std * special.ndtri(u), a, b)

    return _fill(t, draw)
