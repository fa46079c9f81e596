"""Tensor factories and the global random generator (seeded by `manual_seed`)."""

from __future__ import annotations

import numpy as np

from flopgrad.backend import MetaArray
from flopgrad.dispatch import mode, override, saw_meta, track_alloc
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
    """The global NumPy generator behind flopgrad's randomness.

    >>> import flopgrad as fg
    >>> from flopgrad.creation import generator
    >>> fg.manual_seed(0); a = generator().random(); fg.manual_seed(0)
    >>> generator().random() == a
    True
    """
    return _rng


def _make(arr, requires_grad: bool) -> Tensor:
    if mode().listeners:
        track_alloc(arr)
    return Tensor(arr, requires_grad=requires_grad)


def _wants_meta(device) -> bool:
    if device is None:
        return mode().meta
    if device == "meta":
        return True
    if device == "cpu":
        return False
    raise ValueError(f"unknown device {device!r}; use 'cpu' or 'meta'")


def _factory(shape: tuple, dtype: np.dtype, requires_grad: bool, device, make) -> Tensor:
    """A tensor from make() (a NumPy array), or a meta tensor of that shape and dtype."""
    if _wants_meta(device):
        saw_meta()
        return _make(MetaArray(shape, dtype), requires_grad)
    return _make(make(), requires_grad)


def _float(dtype) -> np.dtype:
    return as_dtype(dtype) or np.dtype(np.float32)


class meta(override):
    """Inside `with fg.meta():` factories make meta tensors (shape and dtype, no data), so
    models of any size can be built, run, differentiated and billed without memory. Like
    every mode, it holds for the thread that entered it; also usable as a decorator.

    >>> import flopgrad as fg
    >>> with fg.meta():
    ...     w = fg.randn(100_000, 100_000)
    >>> w.is_meta, w.shape
    (True, (100000, 100000))
    """

    __slots__ = ()

    def __init__(self):
        super().__init__(meta=True)

    def __enter__(self):
        saw_meta()
        return super().__enter__()

    def _fresh(self) -> meta:
        return meta()


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


def zeros(*size, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """Zeros of the given shape (float32 by default). `fg.zeros(2, 3)`.

    >>> import flopgrad as fg
    >>> fg.zeros(2, 3).shape, fg.zeros(2).tolist()
    ((2, 3), [0.0, 0.0])
    """
    shape, dt = _shape_arg(size), _float(dtype)
    return _factory(shape, dt, requires_grad, device, lambda: np.zeros(shape, dt))


def ones(*size, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """Ones of the given shape. `fg.ones(2, 3)`.

    >>> import flopgrad as fg
    >>> fg.ones(2, dtype="int64").tolist()
    [1, 1]
    """
    shape, dt = _shape_arg(size), _float(dtype)
    return _factory(shape, dt, requires_grad, device, lambda: np.ones(shape, dt))


def empty(*size, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """Uninitialised values of the given shape. `fg.empty(4)`.

    >>> import flopgrad as fg
    >>> fg.empty(2, 3).shape
    (2, 3)
    """
    shape, dt = _shape_arg(size), _float(dtype)
    return _factory(shape, dt, requires_grad, device, lambda: np.empty(shape, dt))


def full(size, fill_value, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """`fill_value` everywhere; the dtype follows the value as in PyTorch. `fg.full((2,), 7)`.

    >>> import flopgrad as fg
    >>> fg.full((2,), 7).tolist(), fg.full(2, 0.5).dtype
    ([7, 7], dtype('float32'))
    """
    if dtype is None:
        dtype = np.bool_ if isinstance(fill_value, bool) else (
            np.int64 if isinstance(fill_value, int) else np.float32)
    shape, dt = ((size,) if isinstance(size, int) else tuple(size)), as_dtype(dtype)
    return _factory(shape, dt, requires_grad, device, lambda: np.full(shape, fill_value, dt))


def arange(start, end=None, step=1, dtype=None, requires_grad: bool = False,
           device=None) -> Tensor:
    """Evenly spaced values in [start, end); int64 for integer arguments. `fg.arange(5)`.

    >>> import flopgrad as fg
    >>> fg.arange(5).tolist(), fg.arange(0, 1, 0.25).tolist()
    ([0, 1, 2, 3, 4], [0.0, 0.25, 0.5, 0.75])
    """
    if end is None:
        start, end = 0, start
    if step == 0:
        raise ValueError(f"arange: step must be nonzero, got {step!r}")
    if (end - start) * step < 0:  # torch refuses a range that runs against its step
        raise ValueError(f"arange: start {start!r} and end {end!r} are inconsistent with the "
                         f"sign of step {step!r}")
    if dtype is None:
        ints = all(isinstance(v, int) for v in (start, end, step))
        dtype = np.int64 if ints else np.float32
    dt = as_dtype(dtype)
    n = max(0, int(np.ceil((end - start) / step)))
    return _factory((n,), dt, requires_grad, device, lambda: np.arange(start, end, step, dt))


def linspace(start, end, steps: int, dtype=None, requires_grad: bool = False,
             device=None) -> Tensor:
    """`steps` evenly spaced values from start to end inclusive. `fg.linspace(0, 1, 5)`.

    >>> import flopgrad as fg
    >>> fg.linspace(0, 1, 5).tolist()
    [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    dt = _float(dtype)
    return _factory((steps,), dt, requires_grad, device,
                    lambda: np.linspace(start, end, steps, dtype=dt))


def eye(n: int, m: int | None = None, dtype=None, requires_grad: bool = False,
        device=None) -> Tensor:
    """Identity matrix. `fg.eye(3)`.

    >>> import flopgrad as fg
    >>> fg.eye(2).tolist(), fg.eye(2, 3).shape
    ([[1.0, 0.0], [0.0, 1.0]], (2, 3))
    """
    dt = _float(dtype)
    return _factory((n, n if m is None else m), dt, requires_grad, device,
                    lambda: np.eye(n, m, dtype=dt))


def rand(*size, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """Uniform samples in [0, 1). `fg.rand(2, 3)`.

    >>> import flopgrad as fg
    >>> fg.manual_seed(0); x = fg.rand(2, 3)
    >>> x.shape, bool(((x >= 0) & (x < 1)).all())
    ((2, 3), True)
    """
    shape, dt = _shape_arg(size), _float(dtype)
    return _factory(shape, dt, requires_grad, device,
                    lambda: _rng.random(shape, dtype=np.float64).astype(dt))


def randn(*size, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """Standard normal samples. `fg.randn(2, 3)`.

    >>> import flopgrad as fg
    >>> fg.manual_seed(0)
    >>> fg.randn(2, 3).shape, fg.randn(2, dtype="float64").dtype
    ((2, 3), dtype('float64'))
    """
    shape, dt = _shape_arg(size), _float(dtype)
    return _factory(shape, dt, requires_grad, device,
                    lambda: _rng.standard_normal(shape).astype(dt))


def randint(low: int, high: int | None = None, size=(), dtype=None, device=None) -> Tensor:
    """Integers in [low, high) (int64). `fg.randint(0, 10, (3,))`.

    >>> import flopgrad as fg
    >>> fg.manual_seed(0); x = fg.randint(0, 10, (3,))
    >>> x.shape, x.dtype, bool(((x >= 0) & (x < 10)).all())
    ((3,), dtype('int64'), True)
    """
    if high is None:
        low, high = 0, low
    shape, dt = tuple(size), as_dtype(dtype) or np.dtype(np.int64)
    return _factory(shape, dt, False, device,
                    lambda: _rng.integers(low, high, size=shape, dtype=dt))


def _like(x: Tensor, dtype, device):
    if device is None and x.is_meta:
        device = "meta"
    return tuple(x.shape), (as_dtype(dtype) or x.dtype), device


def zeros_like(x: Tensor, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """Zeros with x's shape and dtype.

    >>> import flopgrad as fg
    >>> fg.zeros_like(fg.tensor([1, 2])).tolist()
    [0, 0]
    """
    shape, dt, device = _like(x, dtype, device)
    return zeros(*shape, dtype=dt, requires_grad=requires_grad, device=device)


def ones_like(x: Tensor, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """Ones with x's shape and dtype.

    >>> import flopgrad as fg
    >>> fg.ones_like(fg.zeros(2, 2)).tolist()
    [[1.0, 1.0], [1.0, 1.0]]
    """
    shape, dt, device = _like(x, dtype, device)
    return ones(*shape, dtype=dt, requires_grad=requires_grad, device=device)


def empty_like(x: Tensor, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """Uninitialised values with x's shape and dtype.

    >>> import flopgrad as fg
    >>> fg.empty_like(fg.zeros(2, 3), dtype="int64").shape
    (2, 3)
    """
    shape, dt, device = _like(x, dtype, device)
    return empty(*shape, dtype=dt, requires_grad=requires_grad, device=device)


def full_like(x: Tensor, fill_value, dtype=None, requires_grad: bool = False,
              device=None) -> Tensor:
    """`fill_value` with x's shape and dtype.

    >>> import flopgrad as fg
    >>> fg.full_like(fg.zeros(2), 3).tolist()
    [3.0, 3.0]
    """
    shape, dt, device = _like(x, dtype, device)
    return full(shape, fill_value, dtype=dt, requires_grad=requires_grad, device=device)


def rand_like(x: Tensor, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """Uniform samples with x's shape and dtype.

    >>> import flopgrad as fg
    >>> fg.manual_seed(0)
    >>> fg.rand_like(fg.zeros(2, 3, dtype="float64")).dtype
    dtype('float64')
    """
    shape, dt, device = _like(x, dtype, device)
    return rand(*shape, dtype=dt, requires_grad=requires_grad, device=device)


def randn_like(x: Tensor, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """Normal samples with x's shape and dtype.

    >>> import flopgrad as fg
    >>> fg.manual_seed(0)
    >>> fg.randn_like(fg.zeros(2, 3)).shape
    (2, 3)
    """
    shape, dt, device = _like(x, dtype, device)
    return randn(*shape, dtype=dt, requires_grad=requires_grad, device=device)


def randint_like(x: Tensor, low: int, high: int | None = None, dtype=None,
                 device=None) -> Tensor:
    """Integers in [low, high) with x's shape.

    >>> import flopgrad as fg
    >>> fg.manual_seed(0); x = fg.randint_like(fg.zeros(4), 0, 5)
    >>> x.shape, x.dtype
    ((4,), dtype('int64'))
    """
    shape, _, device = _like(x, None, device)
    return randint(low, high, shape, dtype=dtype or np.int64, device=device)
