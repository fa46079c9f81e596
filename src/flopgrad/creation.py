"""Tensor factories and the global random generator (seeded by `manual_seed`)."""

from __future__ import annotations

import numpy as np

from flopgrad.dispatch import State, track_alloc
from flopgrad.tensor import Tensor, _shape_arg, as_dtype

_rng = np.random.default_rng()


def manual_seed(seed: int) -> None:
    """Seed every random factory, initializer and dropout mask.

    >>> import flopgrad as fg
    >>> fg.manual_seed(0); a = fg.rand(2); fg.manual_seed(0); bool((fg.rand(2) == a).all())
    True
    """
    global _rng
    _rng = np.random.default_rng(seed)


def generator() -> np.random.Generator:
    """The global NumPy generator behind flopgrad's randomness."""
    return _rng


def _make(arr: np.ndarray, requires_grad: bool) -> Tensor:
    if State.listeners:
        track_alloc(arr)
    return Tensor(arr, requires_grad=requires_grad)


def _float(dtype) -> np.dtype:
    return as_dtype(dtype) or np.dtype(np.float32)


def tensor(data, dtype=None, requires_grad: bool = False) -> Tensor:
    """A tensor from nested lists, scalars or arrays (a copy; Python floats become float32).

    >>> import flopgrad as fg
    >>> fg.tensor([1.0, 2.0]).dtype
    dtype('float32')
    """
    if isinstance(data, Tensor):
        data = data._data
    if isinstance(data, np.ndarray):
        data = data.copy()
    return Tensor(data, dtype=dtype, requires_grad=requires_grad)


def from_numpy(arr: np.ndarray) -> Tensor:
    """A tensor sharing memory with a NumPy array (its dtype is kept).

    >>> import numpy as np, flopgrad as fg
    >>> fg.from_numpy(np.zeros(2)).dtype
    dtype('float64')
    """
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"from_numpy: expected a numpy.ndarray, got {type(arr).__name__}")
    return Tensor(arr)


def zeros(*size, dtype=None, requires_grad: bool = False) -> Tensor:
    """Zeros of the given shape (float32 by default). `fg.zeros(2, 3)`."""
    return _make(np.zeros(_shape_arg(size), dtype=_float(dtype)), requires_grad)


def ones(*size, dtype=None, requires_grad: bool = False) -> Tensor:
    """Ones of the given shape. `fg.ones(2, 3)`."""
    return _make(np.ones(_shape_arg(size), dtype=_float(dtype)), requires_grad)


def empty(*size, dtype=None, requires_grad: bool = False) -> Tensor:
    """Uninitialised values of the given shape. `fg.empty(4)`."""
    return _make(np.empty(_shape_arg(size), dtype=_float(dtype)), requires_grad)


def full(size, fill_value, dtype=None, requires_grad: bool = False) -> Tensor:
    """`fill_value` everywhere; the dtype follows the value as in PyTorch. `fg.full((2,), 7)`."""
    if dtype is None:
        dtype = np.bool_ if isinstance(fill_value, bool) else (
            np.int64 if isinstance(fill_value, int) else np.float32)
    shape = (size,) if isinstance(size, int) else tuple(size)
    return _make(np.full(shape, fill_value, dtype=as_dtype(dtype)), requires_grad)


def arange(start, end=None, step=1, dtype=None, requires_grad: bool = False) -> Tensor:
    """Evenly spaced values in [start, end); int64 for integer arguments. `fg.arange(5)`."""
    if end is None:
        start, end = 0, start
    if dtype is None:
        ints = all(isinstance(v, int) for v in (start, end, step))
        dtype = np.int64 if ints else np.float32
    return _make(np.arange(start, end, step, dtype=as_dtype(dtype)), requires_grad)


def linspace(start, end, steps: int, dtype=None, requires_grad: bool = False) -> Tensor:
    """`steps` evenly spaced values from start to end inclusive. `fg.linspace(0, 1, 5)`."""
    return _make(np.linspace(start, end, steps, dtype=_float(dtype)), requires_grad)


def eye(n: int, m: int | None = None, dtype=None, requires_grad: bool = False) -> Tensor:
    """Identity matrix. `fg.eye(3)`."""
    return _make(np.eye(n, m, dtype=_float(dtype)), requires_grad)


def rand(*size, dtype=None, requires_grad: bool = False) -> Tensor:
    """Uniform samples in [0, 1). `fg.rand(2, 3)`."""
    dt = _float(dtype)
    return _make(_rng.random(_shape_arg(size), dtype=np.float64).astype(dt), requires_grad)


def randn(*size, dtype=None, requires_grad: bool = False) -> Tensor:
    """Standard normal samples. `fg.randn(2, 3)`."""
    dt = _float(dtype)
    return _make(_rng.standard_normal(_shape_arg(size)).astype(dt), requires_grad)


def randint(low: int, high: int | None = None, size=(), dtype=None) -> Tensor:
    """Integers in [low, high) (int64). `fg.randint(0, 10, (3,))`."""
    if high is None:
        low, high = 0, low
    return Tensor(_rng.integers(low, high, size=tuple(size), dtype=as_dtype(dtype) or np.int64))


def _like(x: Tensor, dtype):
    return tuple(x.shape), (as_dtype(dtype) or x.dtype)


def zeros_like(x: Tensor, dtype=None, requires_grad: bool = False) -> Tensor:
    """Zeros with x's shape and dtype."""
    shape, dt = _like(x, dtype)
    return _make(np.zeros(shape, dtype=dt), requires_grad)


def ones_like(x: Tensor, dtype=None, requires_grad: bool = False) -> Tensor:
    """Ones with x's shape and dtype."""
    shape, dt = _like(x, dtype)
    return _make(np.ones(shape, dtype=dt), requires_grad)


def empty_like(x: Tensor, dtype=None, requires_grad: bool = False) -> Tensor:
    """Uninitialised values with x's shape and dtype."""
    shape, dt = _like(x, dtype)
    return _make(np.empty(shape, dtype=dt), requires_grad)


def full_like(x: Tensor, fill_value, dtype=None, requires_grad: bool = False) -> Tensor:
    """`fill_value` with x's shape and dtype."""
    shape, dt = _like(x, dtype)
    return _make(np.full(shape, fill_value, dtype=dt), requires_grad)


def rand_like(x: Tensor, dtype=None, requires_grad: bool = False) -> Tensor:
    """Uniform samples with x's shape and dtype."""
    shape, dt = _like(x, dtype)
    return rand(*shape, dtype=dt, requires_grad=requires_grad)


def randn_like(x: Tensor, dtype=None, requires_grad: bool = False) -> Tensor:
    """Normal samples with x's shape and dtype."""
    shape, dt = _like(x, dtype)
    return randn(*shape, dtype=dt, requires_grad=requires_grad)


def randint_like(x: Tensor, low: int, high: int | None = None, dtype=None) -> Tensor:
    """Integers in [low, high) with x's shape."""
    return randint(low, high, x.shape, dtype=dtype or np.int64)
