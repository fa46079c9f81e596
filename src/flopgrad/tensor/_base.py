"""TensorBase: what a tensor is (its array, graph node, version counter), its attributes,
conversions and casts, and backward(). flopgrad.tensor builds Tensor from it and the op mixins."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from flopgrad import ops as O
from flopgrad.backend import MetaArray, no_data
from flopgrad.dispatch import apply, saw_meta
from flopgrad.dtypes import _DEFAULT_FLOAT, _bad_dtype, as_dtype, bfloat16

if TYPE_CHECKING:
    from collections.abc import Sequence

    from flopgrad.dispatch import Node
    from flopgrad.tensor import Tensor

    # what an op takes where a tensor goes: a tensor, an array or a Python number
    Operand = Tensor | np.ndarray | float | int | bool

_new = object.__new__
_autograd = None  # flopgrad.autograd, which builds on Tensor: imported by the first backward()


def _import_autograd():
    global _autograd
    from flopgrad import autograd

    _autograd = autograd
    return autograd


def _cast(name: str, dtype: type, example: str, result: str):
    """The method x.<name>(), which is x.to(dtype), documented with an example and its result."""
    def cast(self) -> Tensor:
        return self.to(dtype)

    cast.__name__, cast.__qualname__ = name, f"TensorBase.{name}"
    cast.__doc__ = (f"Cast to {np.dtype(dtype).name}.\n\n    >>> import flopgrad as fg\n"
                    f"    >>> {example}\n    {result}\n    ")
    return cast


class TensorBase:
    """The state of a tensor and the methods that read or convert it (no ops on its values)."""

    __slots__ = ("_data", "_node", "requires_grad", "grad", "_tangent", "_version", "__weakref__")
    __array_priority__ = 1000  # numpy scalars and arrays defer to our operators

    def __init__(self, data: Any, dtype: Any = None, requires_grad: bool = False) -> None:
        arr = _to_array(data, as_dtype(dtype))
        self._data = arr
        self._node = None
        self._tangent = None
        self._version = [0]
        self.grad = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _wrap(cls, data: np.ndarray | MetaArray, node: Node | None = None,
              version: list | None = None, tangent: Tensor | None = None) -> Tensor:
        """A tensor around an array that needs none of __init__'s conversions (a node's
        output, detached data): `node` is the graph node that made it (it requires grad when
        there is one), `version` the version counter it shares with its base (a detached
        tensor's; a new one by default), `tangent` its forward-mode tangent.

        >>> import numpy as np
        >>> import flopgrad as fg
        >>> fg.Tensor._wrap(np.ones(2)).requires_grad
        False
        """
        t = _new(cls)
        t._data = data
        t._node = node
        t._tangent = tangent
        t.grad = None
        t._version = [0] if version is None else version
        t.requires_grad = node is not None
        return t

    # ------------------------------------------------------------ attributes
    @property
    def shape(self) -> tuple:
        """The length of each dim, as a tuple.

        >>> import flopgrad as fg
        >>> fg.zeros(2, 3).shape
        (2, 3)
        """
        return self._data.shape

    @property
    def dtype(self) -> np.dtype:
        """The element type (a NumPy dtype).

        >>> import flopgrad as fg
        >>> fg.tensor([1, 2]).dtype
        dtype('int64')
        """
        return self._data.dtype

    @property
    def ndim(self) -> int:
        """Number of dimensions.

        >>> import flopgrad as fg
        >>> fg.zeros(2, 3).ndim
        2
        """
        return self._data.ndim

    def dim(self) -> int:
        """Number of dimensions (PyTorch's name).

        >>> import flopgrad as fg
        >>> fg.zeros(2, 3).dim()
        2
        """
        return self._data.ndim

    def size(self, dim: int | None = None) -> tuple | int:
        """Shape, or the length of one dim: `x.size(0)`.

        >>> import flopgrad as fg
        >>> x = fg.zeros(2, 3)
        >>> x.size(), x.size(0)
        ((2, 3), 2)
        """
        return self._data.shape if dim is None else self._data.shape[dim]

    def numel(self) -> int:
        """Number of elements.

        >>> import flopgrad as fg
        >>> fg.zeros(2, 3).numel()
        6
        """
        return self._data.size

    @property
    def is_meta(self) -> bool:
        """True for a meta tensor: shape and dtype only, no data.

        >>> import flopgrad as fg
        >>> fg.zeros(2).is_meta, fg.zeros(2, device="meta").is_meta
        (False, True)
        """
        return type(self._data) is MetaArray

    @property
    def device(self) -> str:
        """"meta" for meta tensors, otherwise "cpu".

        >>> import flopgrad as fg
        >>> fg.zeros(2).device, fg.zeros(2).to("meta").device
        ('cpu', 'meta')
        """
        return "meta" if type(self._data) is MetaArray else "cpu"

    @property
    def is_leaf(self) -> bool:
        """True unless the tensor was produced by a recorded (differentiable) op.

        >>> import flopgrad as fg
        >>> x = fg.ones(2, requires_grad=True)
        >>> x.is_leaf, (x * 2).is_leaf
        (True, False)
        """
        return self._node is None

    @property
    def grad_fn(self) -> Node | None:
        """The graph node that produced this tensor (None for leaves).

        >>> import flopgrad as fg
        >>> x = fg.ones(2, requires_grad=True)
        >>> x.grad_fn is None, (x * 2).grad_fn is None
        (True, False)
        """
        return self._node

    @property
    def data(self) -> Tensor:
        """The same values, detached from the graph (shares memory, like PyTorch's `.data`).

        >>> import flopgrad as fg
        >>> fg.ones(2, requires_grad=True).data.requires_grad
        False
        """
        return self.detach()

    # ------------------------------------------------------------ conversion
    def numpy(self) -> np.ndarray:
        """The underlying NumPy array (shared, not copied). Fails if the tensor needs grad.

        >>> import flopgrad as fg
        >>> fg.tensor([1.0, 2.0]).numpy()
        array([1., 2.], dtype=float32)
        """
        if type(self._data) is MetaArray:
            raise no_data("numpy()")
        if self.requires_grad:
            raise RuntimeError(
                "numpy(): this tensor requires grad; call tensor.detach().numpy() instead")
        return self._data

    def item(self) -> float | int | bool:
        """The value of a one-element tensor as a Python number.

        >>> import flopgrad as fg
        >>> fg.tensor([2.5]).item()
        2.5
        """
        if self._data.size != 1:
            raise ValueError(f"item(): tensor has {self._data.size} elements, not 1")
        return self._data.item()

    def tolist(self) -> Any:
        """Nested Python lists of the values.

        >>> import flopgrad as fg
        >>> fg.tensor([[1, 2], [3, 4]]).tolist()
        [[1, 2], [3, 4]]
        """
        return self._data.tolist()

    def __array__(self, dtype=None, copy=None):
        if type(self._data) is MetaArray:
            raise no_data("conversion to a NumPy array")
        arr = self._data if dtype is None else self._data.astype(dtype, copy=False)
        return arr.copy() if copy and arr is self._data else arr

    def detach(self) -> Tensor:
        """A tensor sharing this one's values and version counter, outside the graph.

        >>> import flopgrad as fg
        >>> x = fg.ones(2, requires_grad=True)
        >>> (x * 2).detach().requires_grad
        False
        """
        return self._wrap(self._data, version=self._version)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Mark a leaf tensor as needing gradients (in place); returns self.

        >>> import flopgrad as fg
        >>> fg.zeros(2).requires_grad_().requires_grad
        True
        """
        if requires_grad and self._data.dtype.kind not in "fcV":
            raise TypeError(
                f"requires_grad=True needs a floating-point tensor, got dtype {self._data.dtype}; "
                "convert first, e.g. x.float()")
        if not requires_grad and self._node is not None:
            raise RuntimeError("requires_grad_(False) only works on leaf tensors; use detach()")
        self.requires_grad = requires_grad
        return self

    def clone(self) -> Tensor:
        """A copy with its own memory; gradients flow back to the original.

        >>> import flopgrad as fg
        >>> x = fg.tensor([1.0, 2.0]); y = x.clone(); y[0] = 5.0
        >>> x.tolist(), y.tolist()
        ([1.0, 2.0], [5.0, 2.0])
        """
        return self + 0 if self._data.dtype.kind != "b" else self._wrap(self._data.copy())

    def contiguous(self) -> Tensor:
        """Returns self: NumPy handles strides.

        >>> import flopgrad as fg
        >>> x = fg.zeros(2, 3)
        >>> x.contiguous() is x
        True
        """
        return self

    def to(self, dtype: Any = None, device: str | None = None) -> Tensor:
        """Cast to `dtype` (differentiable), or move to device "meta" (drops the data).

        >>> import flopgrad as fg
        >>> fg.tensor([1, 2]).to("float64").dtype
        dtype('float64')
        >>> fg.zeros(2).to("meta").is_meta
        True
        """
        if isinstance(dtype, str) and dtype in ("cpu", "meta"):
            dtype, device = None, dtype
        if device not in (None, "cpu", "meta"):
            raise ValueError(f"to(): unknown device {device!r}; use 'cpu' or 'meta'")
        if device == "cpu" and self.is_meta:
            raise no_data("to('cpu')")
        if device == "meta" and not self.is_meta:
            saw_meta()
            arr = MetaArray(self.shape, as_dtype(dtype) or self.dtype)
            out = self._wrap(arr)
            return out.requires_grad_(True) if self.requires_grad and self.is_leaf else out
        dt = as_dtype(dtype)
        if dt is None or dt == self._data.dtype:
            return self
        return apply(O.CAST, (self,), (dt, self._data.dtype))

    def type(self, dtype: Any) -> Tensor:
        """Cast to `dtype`.

        >>> import flopgrad as fg
        >>> fg.tensor([1.5, 2.5]).type("int32").tolist()
        [1, 2]
        """
        return self.to(dtype)

    # the casts by name: x.float() is x.to(float32)
    float = _cast("float", np.float32, "fg.tensor([1, 2]).float().tolist()", "[1.0, 2.0]")
    double = _cast("double", np.float64, "fg.tensor([1, 2]).double().dtype", "dtype('float64')")
    half = _cast("half", np.float16, "fg.tensor([1.0]).half().dtype", "dtype('float16')")
    long = _cast("long", np.int64, "fg.tensor([1.7, -1.7]).long().tolist()", "[1, -1]")
    int = _cast("int", np.int32, "fg.tensor([1.7]).int().dtype", "dtype('int32')")
    bool = _cast("bool", np.bool_, "fg.tensor([0.0, 2.0]).bool().tolist()", "[False, True]")

    def __repr__(self) -> str:
        if type(self._data) is MetaArray:
            extra = f", grad_fn={self._node!r}" if self._node is not None else ""
            return (f"tensor(..., shape={self.shape}, dtype={self.dtype}, device='meta'"
                    f"{extra})")
        body = np.array2string(self._data, separator=", ", prefix="tensor(", threshold=200)
        extras = []
        if self._data.dtype not in (np.float32, np.int64, np.bool_):
            extras.append(f"dtype={self._data.dtype}")
        if self._node is not None:
            extras.append(f"grad_fn={self._node!r}")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + ", ".join([body] + extras) + ")"

    def __len__(self) -> int:
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __bool__(self) -> bool:
        return bool(self._data)

    def __float__(self) -> float:
        return float(self._data)

    def __int__(self) -> int:
        return int(self._data)

    def __index__(self) -> int:
        return int(self._data)

    # ------------------------------------------------------------ autograd
    def backward(self, gradient: Operand | None = None, retain_graph: bool | None = None,
                 create_graph: bool = False, inputs: Sequence[Tensor] | None = None) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's `.grad` (PyTorch semantics).

        >>> import flopgrad as fg
        >>> x = fg.tensor([1.0, 2.0], requires_grad=True)
        >>> (3 * x).sum().backward()
        >>> x.grad.tolist()
        [3.0, 3.0]
        """
        (_autograd or _import_autograd()).backward(
            self, gradient, retain_graph=retain_graph, create_graph=create_graph, inputs=inputs)

    def retain_grad(self) -> None:
        """Not needed in flopgrad: use fg.grad(output, [tensor]) for non-leaf gradients.

        >>> import flopgrad as fg
        >>> x = fg.tensor([1.0, 2.0], requires_grad=True); y = x * x
        >>> fg.grad(y.sum(), [y])[0].tolist()
        [1.0, 1.0]
        """
        raise NotImplementedError(
            "retain_grad(): use fg.grad(loss, [tensor]) to get a non-leaf tensor's gradient")


# ---------------------------------------------------------------- helpers

def _to_array(data, dtype: np.dtype | None) -> np.ndarray:
    if isinstance(data, TensorBase):
        data = data._data
    if type(data) is MetaArray:
        return _checked(data if dtype is None else data.astype(dtype, copy=False), data)
    if isinstance(data, np.ndarray):
        return _checked(data if dtype is None else data.astype(dtype, copy=False), data)
    if isinstance(data, np.generic):
        return _checked(np.asarray(data, dtype=dtype), data)
    arr = _checked(np.asarray(_unwrap_nested(data)), data)
    if dtype is not None:
        return arr.astype(dtype, copy=False)
    if arr.dtype == np.float64:
        return arr.astype(_DEFAULT_FLOAT)
    if arr.dtype.kind == "i":
        return arr.astype(np.int64, copy=False)
    return arr


def _checked(arr, data):
    """arr, if its dtype is one flopgrad computes with (bool, integers, floating point)."""
    if arr.dtype.kind not in "biuf" and arr.dtype != bfloat16:
        raise TypeError(_bad_dtype(arr.dtype, f"from {type(data).__name__} "))
    return arr


def _unwrap_nested(data):
    if isinstance(data, list | tuple):
        return [_unwrap_nested(d) for d in data]
    if isinstance(data, TensorBase):
        return data._data
    return data


def _data_of(x):
    return x._data if isinstance(x, TensorBase) else x
