"""nn.Module and the standard layers. Each submodule's forward runs inside fg.scope(<path>).

>>> import flopgrad as fg
>>> net = fg.nn.Sequential(fg.nn.Linear(4, 8), fg.nn.ReLU(), fg.nn.Linear(8, 2))
>>> net(fg.ones(3, 4)).shape
(3, 2)
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator

import numpy as np

from flopgrad import creation
from flopgrad.backend import MetaArray, zeros_like
from flopgrad.dispatch import saw_meta
from flopgrad.ledger import scope
from flopgrad.nn import functional as F
from flopgrad.nn import init
from flopgrad.tensor import Parameter, Tensor, _t, as_dtype, where

__all__ = [
    "Module", "Linear", "Conv1d", "Conv2d", "MaxPool1d", "MaxPool2d", "AvgPool1d",
    "AvgPool2d", "Flatten", "LayerNorm",
    "RMSNorm", "BatchNorm2d", "Embedding", "Dropout", "ReLU", "GELU", "SiLU", "Tanh",
    "Sigmoid", "Softmax", "Identity", "Sequential", "ModuleList", "ModuleDict",
    "MultiheadAttention",
]


class Module:
    """Base class of layers and models: parameters, buffers, children, train/eval, state.

    Subclasses define `forward`; calling the module runs it inside `fg.scope(name)`, where
    name is the attribute the module was assigned to, so bills break down by layer.

    >>> import flopgrad as fg
    >>> class Double(fg.nn.Module):
    ...     def forward(self, x):
    ...         return 2 * x
    >>> Double()(fg.tensor([1.0, 3.0])).tolist()
    [2.0, 6.0]
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_scope_name", None)

    # ------------------------------------------------------------ registration
    def __setattr__(self, name: str, value) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"{type(self).__name__}: call super().__init__() before assigning attributes")
        for store in (self._parameters, self._buffers, self._modules):
            store.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
            if value._scope_name is None:
                object.__setattr__(value, "_scope_name", name)
            if isinstance(value, ModuleList | ModuleDict):  # never called: name the items
                for k, child in value._modules.items():
                    object.__setattr__(child, "_scope_name", f"{name}.{k}")
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        for store in (self._parameters, self._buffers, self._modules):
            store.pop(name, None)
        object.__delattr__(self, name)

    def register_buffer(self, name: str, tensor: Tensor | None) -> None:
        """A non-trainable tensor saved in state_dict (e.g. running statistics).

        >>> import flopgrad as fg
        >>> m = fg.nn.Module()
        >>> m.register_buffer("steps", fg.zeros(1))
        >>> list(m.state_dict()), m.num_parameters()
        (['steps'], 0)
        """
        self._buffers[name] = tensor
        object.__setattr__(self, name, tensor)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Add a parameter under `name` (None is allowed, as for a missing bias).

        >>> import flopgrad as fg
        >>> m = fg.nn.Module()
        >>> m.register_parameter("w", fg.nn.Parameter(fg.ones(2, 3)))
        >>> [(name, p.shape) for name, p in m.named_parameters()]
        [('w', (2, 3))]
        """
        if param is None:
            self._parameters.pop(name, None)
            object.__setattr__(self, name, None)
        else:
            setattr(self, name, param)

    def add_module(self, name: str, module: Module) -> None:
        """Add a child module under `name`.

        >>> import flopgrad as fg
        >>> m = fg.nn.Module()
        >>> m.add_module("act", fg.nn.ReLU())
        >>> m.act
        ReLU()
        """
        setattr(self, name, module)

    # ------------------------------------------------------------ calling
    def forward(self, *args, **kwargs):
        """The computation; every subclass defines it (call the module, not forward)."""
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        if self._scope_name is None:
            return self.forward(*args, **kwargs)
        with scope(self._scope_name):
            return self.forward(*args, **kwargs)

    # ------------------------------------------------------------ traversal
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """(dotted path, module) for this module and every descendant, once each.

        >>> import flopgrad as fg
        >>> fg.manual_seed(0)
        >>> net = fg.nn.Sequential(fg.nn.Linear(2, 3), fg.nn.Sequential(fg.nn.ReLU()))
        >>> [name for name, _ in net.named_modules()]
        ['', '0', '1', '1.0']
        """
        seen = set()
        stack = [(prefix, self)]
        while stack:
            name, m = stack.pop(0)
            if id(m) in seen:
                continue
            seen.add(id(m))
            yield name, m
            stack[0:0] = [(f"{name}.{k}" if name else k, c) for k, c in m._modules.items()
                          if c is not None]

    def modules(self) -> Iterator[Module]:
        """This module and every descendant.

        >>> import flopgrad as fg
        >>> fg.manual_seed(0)
        >>> net = fg.nn.Sequential(fg.nn.Linear(2, 3), fg.nn.ReLU())
        >>> [type(m).__name__ for m in net.modules()]
        ['Sequential', 'Linear', 'ReLU']
        """
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """Direct children with their attribute names.

        >>> import flopgrad as fg
        >>> fg.manual_seed(0)
        >>> net = fg.nn.Sequential(fg.nn.Linear(2, 3), fg.nn.Sequential(fg.nn.ReLU()))
        >>> [(name, type(m).__name__) for name, m in net.named_children()]
        [('0', 'Linear'), ('1', 'Sequential')]
        """
        yield from ((k, m) for k, m in self._modules.items() if m is not None)

    def children(self) -> Iterator[Module]:
        """Direct children.

        >>> import flopgrad as fg
        >>> fg.manual_seed(0)
        >>> net = fg.nn.Sequential(fg.nn.Linear(2, 3), fg.nn.Sequential(fg.nn.ReLU()))
        >>> [type(m).__name__ for m in net.children()]
        ['Linear', 'Sequential']
        """
        for _, m in self.named_children():
            yield m

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """(dotted name, parameter), each shared parameter once.

        >>> import flopgrad as fg
        >>> fg.manual_seed(0)
        >>> net = fg.nn.Sequential(fg.nn.Linear(2, 3))
        >>> [(name, p.shape) for name, p in net.named_parameters()]
        [('0.weight', (3, 2)), ('0.bias', (3,))]
        """
        seen = set()
        for path, m in self.named_modules(prefix):
            for k, p in m._parameters.items():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{path}.{k}" if path else k), p

    def parameters(self) -> Iterator[Parameter]:
        """Every parameter once.

        >>> import flopgrad as fg
        >>> fg.manual_seed(0)
        >>> [p.shape for p in fg.nn.Linear(2, 3).parameters()]
        [(3, 2), (3,)]
        """
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self) -> Iterator[tuple[str, Tensor]]:
        """(dotted name, buffer).

        >>> import flopgrad as fg
        >>> net = fg.nn.Sequential(fg.nn.BatchNorm2d(3))
        >>> [name for name, _ in net.named_buffers()]
        ['0.running_mean', '0.running_var']
        """
        for path, m in self.named_modules():
            for k, b in m._buffers.items():
                if b is not None:
                    yield (f"{path}.{k}" if path else k), b

    def buffers(self) -> Iterator[Tensor]:
        """Every buffer.

        >>> import flopgrad as fg
        >>> [b.shape for b in fg.nn.BatchNorm2d(3).buffers()]
        [(3,), (3,)]
        """
        for _, b in self.named_buffers():
            yield b

    def num_parameters(self) -> int:
        """Total number of parameter elements (shared parameters once).

        >>> import flopgrad as fg
        >>> fg.manual_seed(0)
        >>> fg.nn.Linear(4, 2).num_parameters()
        10
        """
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------ modes and state
    def train(self, mode: bool = True) -> Module:
        """Training mode (dropout active, batch norm uses batch statistics).

        >>> import flopgrad as fg
        >>> fg.nn.Dropout().eval().train().training
        True
        """
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        """Evaluation mode.

        >>> import flopgrad as fg
        >>> fg.nn.Dropout().eval().training
        False
        """
        return self.train(False)

    def apply(self, fn) -> Module:
        """Call fn on every descendant and then on self (children first, like PyTorch).

        >>> import flopgrad as fg
        >>> net = fg.nn.Sequential(fg.nn.ReLU(), fg.nn.Tanh())
        >>> _ = net.apply(lambda m: print(type(m).__name__))
        Tanh
        ReLU
        Sequential
        """
        for m in reversed(list(self.modules())):
            fn(m)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients of every parameter.

        >>> import flopgrad as fg
        >>> fg.manual_seed(0)
        >>> lin = fg.nn.Linear(2, 1)
        >>> lin(fg.ones(1, 2)).sum().backward()
        >>> lin.zero_grad(); lin.weight.grad is None
        True
        """
        for p in self.parameters():
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad = Tensor(zeros_like(p.grad._data))

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Switch gradients of every parameter on or off.

        >>> import flopgrad as fg
        >>> fg.manual_seed(0)
        >>> fg.nn.Linear(2, 1).requires_grad_(False).weight.requires_grad
        False
        """
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def state_dict(self) -> OrderedDict:
        """Parameters and buffers by dotted name (the tensors themselves, not copies).

        >>> import flopgrad as fg
        >>> list(fg.nn.BatchNorm2d(3).state_dict())
        ['weight', 'bias', 'running_mean', 'running_var']
        """
        out: OrderedDict = OrderedDict()
        for path, m in self.named_modules():
            for k, p in m._parameters.items():
                if p is not None:
                    out[f"{path}.{k}" if path else k] = p
            for k, b in m._buffers.items():
                if b is not None:
                    out[f"{path}.{k}" if path else k] = b
        return out

    def load_state_dict(self, state: dict, strict: bool = True) -> tuple[list, list]:
        """Copy values in by name; with strict, missing or unexpected keys are an error.

        Returns (missing keys, unexpected keys). A shape mismatch is always an error.

        >>> import flopgrad as fg
        >>> fg.manual_seed(0)
        >>> a, b = fg.nn.Linear(2, 1), fg.nn.Linear(2, 1)
        >>> b.load_state_dict(a.state_dict())
        ([], [])
        >>> bool((a.weight == b.weight).all())
        True
        """
        own = self.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if strict and (missing or unexpected):
            raise KeyError(
                f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}; pass "
                "strict=False to load the matching ones")
        for k, t in own.items():
            if k not in state:
                continue
            value = state[k]
            arr = value._data if isinstance(value, Tensor) else np.asarray(value)
            if tuple(arr.shape) != t.shape:
                raise ValueError(
                    f"load_state_dict: {k} has shape {arr.shape} in the checkpoint but "
                    f"{t.shape} in the model")
            t._data[...] = arr.astype(t.dtype, copy=False)
            t._version[0] += 1
        return missing, unexpected

    def to(self, dtype=None) -> Module:
        """Cast every floating parameter and buffer to `dtype` (in place), or with "meta"
        turn them into meta tensors (shape and dtype only: the values are dropped).

        >>> import flopgrad as fg
        >>> fg.manual_seed(0)
        >>> fg.nn.Linear(2, 1).to(fg.float64).weight.dtype
        dtype('float64')
        >>> fg.nn.Linear(2, 1).to("meta").weight.is_meta
        True
        """
        tensors = list(self.parameters()) + list(self.buffers())
        if dtype == "meta":
            saw_meta()
            for t in tensors:
                t._data = MetaArray(t.shape, t.dtype)
                t._version[0] += 1
            return self
        if dtype == "cpu":
            return self
        dt = as_dtype(dtype)
        if dt is None:
            return self
        for t in tensors:
            if t.dtype.kind == "f":
                t._data = t._data.astype(dt)
                t._version[0] += 1
        return self

    def double(self) -> Module:
        """Cast to float64.

        >>> import flopgrad as fg
        >>> fg.manual_seed(0)
        >>> fg.nn.Linear(2, 1).double().weight.dtype
        dtype('float64')
        """
        return self.to(np.float64)

    def float(self) -> Module:
        """Cast to float32.

        >>> import flopgrad as fg
        >>> fg.manual_seed(0)
        >>> fg.nn.Linear(2, 1).double().float().weight.dtype
        dtype('float32')
        """
        return self.to(np.float32)

    # ------------------------------------------------------------ printing
    def extra_repr(self) -> str:
        """Settings shown inside the parentheses of repr(module) (none by default)."""
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for k, m in self._modules.items():
            child = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({k}): {child}")
        n = self.num_parameters()
        if len(lines) == 1:
            return lines[0] + ")" + (f"  # {n:,} params" if n else "")
        return "\n".join(lines) + f"\n)  # {n:,} params"


# ---------------------------------------------------------------- layers

class Identity(Module):
    """Returns its input.

    >>> import flopgrad as fg
    >>> fg.nn.Identity()(fg.tensor([1.0, 2.0])).tolist()
    [1.0, 2.0]
    """

    def forward(self, x):
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

    def forward(self, x):
        """x W^T + b."""
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        """Sizes and whether there is a bias."""
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class _ConvNd(Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation,
                 groups, bias, dims, dtype):
        super().__init__()
        ks = (kernel_size,) * dims if isinstance(kernel_size, int) else tuple(kernel_size)
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

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, 2, dtype)

    def forward(self, x):
        """The convolution of x (see F.conv2d)."""
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups)


class Conv1d(_ConvNd):
    """1-D convolution over (N, C, L).

    >>> import flopgrad as fg
    >>> fg.manual_seed(0)
    >>> fg.nn.Conv1d(2, 4, 3)(fg.ones(1, 2, 10)).shape
    (1, 4, 8)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, 1, dtype)

    def forward(self, x):
        """The convolution of x (see F.conv1d)."""
        return F.conv1d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups)


class MaxPool2d(Module):
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
        super().__init__()
        self.kernel_size, self.stride, self.padding, self.dilation = (
            kernel_size, stride, padding, dilation)
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    def forward(self, x):
        """The window maxima of x (and their indices with return_indices)."""
        return self._pool(x, self.kernel_size, self.stride, self.padding, self.dilation,
                          self.ceil_mode, self.return_indices)

    def extra_repr(self) -> str:
        """Kernel size, stride, padding, dilation and ceil_mode."""
        return (f"kernel_size={self.kernel_size}, stride={self.stride or self.kernel_size}, "
                f"padding={self.padding}, dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class MaxPool1d(MaxPool2d):
    """Max over windows of the last dim (see F.max_pool1d).

    >>> import flopgrad as fg
    >>> fg.nn.MaxPool1d(2)(fg.tensor([[[1.0, 3.0, 2.0, 5.0]]])).tolist()
    [[[3.0, 5.0]]]
    """

    _pool = staticmethod(F.max_pool1d)


class AvgPool2d(Module):
    """Mean over windows (see F.avg_pool2d); PyTorch's arguments, in its order.

    >>> import flopgrad as fg
    >>> fg.nn.AvgPool2d(2)(fg.arange(16.0).reshape(1, 1, 4, 4)).tolist()
    [[[[2.5, 4.5], [10.5, 12.5]]]]
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override: int | None = None):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad
        self.divisor_override = divisor_override

    def forward(self, x):
        """The window means of x."""
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override)

    def extra_repr(self) -> str:
        """Kernel size, stride and padding."""
        return (f"kernel_size={self.kernel_size}, stride={self.stride or self.kernel_size}, "
                f"padding={self.padding}")


class AvgPool1d(AvgPool2d):
    """Mean over windows of the last dim (see F.avg_pool1d).

    >>> import flopgrad as fg
    >>> fg.nn.AvgPool1d(2)(fg.tensor([[[1.0, 3.0, 2.0, 6.0]]])).tolist()
    [[[2.0, 4.0]]]
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                 count_include_pad: bool = True):
        super().__init__(kernel_size, stride, padding, ceil_mode, count_include_pad)

    def forward(self, x):
        """The window means of x."""
        return F.avg_pool1d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad)


class Flatten(Module):
    """Merge dims start_dim..end_dim (by default all but the batch dim).

    >>> import flopgrad as fg
    >>> fg.nn.Flatten()(fg.ones(2, 3, 4)).shape
    (2, 12)
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        """x with the dims merged."""
        return x.flatten(self.start_dim, self.end_dim)


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

    def forward(self, x):
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

    def forward(self, x):
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

    def forward(self, x):
        """x normalised per channel (see F.batch_norm)."""
        if x.ndim != 4:
            raise ValueError(f"BatchNorm2d: expected (N, C, H, W), got {x.shape}")
        use_batch = self.training or self.running_mean is None
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            use_batch, self.momentum, self.eps)

    def extra_repr(self) -> str:
        """Number of channels, eps and momentum."""
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


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

    def forward(self, idx):
        """The rows of the table at integer indices idx."""
        return F.embedding(idx, self.weight, self.padding_idx)

    def extra_repr(self) -> str:
        """Table size."""
        return f"{self.num_embeddings}, {self.embedding_dim}"


class Dropout(Module):
    """Zero entries with probability p in training mode (seeded by fg.manual_seed).

    >>> import flopgrad as fg
    >>> fg.manual_seed(0)
    >>> drop = fg.nn.Dropout(0.5)
    >>> set(drop(fg.ones(100)).tolist()) == {0.0, 2.0}, drop.eval()(fg.ones(2)).tolist()
    (True, [1.0, 1.0])
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x):
        """x with dropout in training mode, x itself in eval mode."""
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        """The drop probability."""
        return f"p={self.p}"


class ReLU(Module):
    """max(x, 0).

    >>> import flopgrad as fg
    >>> fg.nn.ReLU()(fg.tensor([-1.0, 2.0])).tolist()
    [0.0, 2.0]
    """

    def forward(self, x):
        """max(x, 0)."""
        return F.relu(x)


class GELU(Module):
    """Gaussian error linear unit (approximate="tanh" for GPT-2's form).

    >>> import flopgrad as fg
    >>> round(fg.nn.GELU()(fg.tensor(1.0)).item(), 4)
    0.8413
    """

    def __init__(self, approximate: str = "none"):
        super().__init__()
        self.approximate = approximate

    def forward(self, x):
        """gelu(x) (see F.gelu)."""
        return F.gelu(x, self.approximate)


class SiLU(Module):
    """x * sigmoid(x).

    >>> import flopgrad as fg
    >>> fg.nn.SiLU()(fg.tensor([0.0])).tolist()
    [0.0]
    """

    def forward(self, x):
        """x * sigmoid(x)."""
        return F.silu(x)


class Tanh(Module):
    """tanh(x).

    >>> import flopgrad as fg
    >>> fg.nn.Tanh()(fg.tensor([0.0])).tolist()
    [0.0]
    """

    def forward(self, x):
        """tanh(x)."""
        return x.tanh()


class Sigmoid(Module):
    """sigmoid(x).

    >>> import flopgrad as fg
    >>> fg.nn.Sigmoid()(fg.tensor([0.0])).tolist()
    [0.5]
    """

    def forward(self, x):
        """sigmoid(x)."""
        return x.sigmoid()


class Softmax(Module):
    """Softmax along `dim`.

    >>> import flopgrad as fg
    >>> fg.nn.Softmax(dim=-1)(fg.zeros(1, 4)).tolist()
    [[0.25, 0.25, 0.25, 0.25]]
    """

    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        """softmax(x) along dim."""
        return x.softmax(self.dim)


# ---------------------------------------------------------------- containers

class Sequential(Module):
    """Apply modules in order; children are named "0", "1", ... (or by an OrderedDict).

    >>> import flopgrad as fg
    >>> fg.manual_seed(0)
    >>> net = fg.nn.Sequential(fg.nn.Linear(4, 8), fg.nn.ReLU(), fg.nn.Linear(8, 2))
    >>> net(fg.ones(3, 4)).shape, len(net)
    ((3, 2), 3)
    """

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], dict):
            for k, m in modules[0].items():
                self.add_module(k, m)
        else:
            for i, m in enumerate(modules):
                self.add_module(str(i), m)

    def forward(self, x):
        """x through every module in turn."""
        for m in self._modules.values():
            x = m(x)
        return x

    def __getitem__(self, i):
        mods = list(self._modules.values())
        if isinstance(i, slice):
            return Sequential(*mods[i])
        return mods[i]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module: Module) -> Sequential:
        """Add a module at the end.

        >>> import flopgrad as fg
        >>> len(fg.nn.Sequential(fg.nn.ReLU()).append(fg.nn.Tanh()))
        2
        """
        self.add_module(str(len(self._modules)), module)
        return self


class ModuleList(Module):
    """A list of modules, registered as children "0", "1", ...

    >>> import flopgrad as fg
    >>> fg.manual_seed(0)
    >>> layers = fg.nn.ModuleList([fg.nn.Linear(2, 2) for _ in range(3)])
    >>> len(layers), layers.num_parameters()
    (3, 18)
    """

    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module: Module) -> ModuleList:
        """Add a module at the end.

        >>> import flopgrad as fg
        >>> len(fg.nn.ModuleList().append(fg.nn.ReLU()))
        1
        """
        self.add_module(str(len(self._modules)), module)
        return self

    def extend(self, modules) -> ModuleList:
        """Add several modules.

        >>> import flopgrad as fg
        >>> len(fg.nn.ModuleList().extend([fg.nn.ReLU(), fg.nn.Tanh()]))
        2
        """
        for m in modules:
            self.append(m)
        return self

    def __getitem__(self, i):
        mods = list(self._modules.values())
        return ModuleList(mods[i]) if isinstance(i, slice) else mods[i]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def forward(self, *args):
        """Not defined: iterate over the list instead."""
        raise NotImplementedError("ModuleList has no forward; iterate over it")


class ModuleDict(Module):
    """A dict of modules, registered under their keys.

    >>> import flopgrad as fg
    >>> fg.manual_seed(0)
    >>> heads = fg.nn.ModuleDict({"a": fg.nn.Linear(2, 3), "b": fg.nn.ReLU()})
    >>> heads["a"](fg.ones(1, 2)).shape, heads.num_parameters()
    ((1, 3), 9)
    """

    def __init__(self, modules: dict | None = None):
        super().__init__()
        for k, m in (modules or {}).items():
            self.add_module(k, m)

    def __getitem__(self, key: str) -> Module:
        return self._modules[key]

    def __setitem__(self, key: str, module: Module) -> None:
        self.add_module(key, module)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def keys(self):
        """The names, in insertion order.

        >>> import flopgrad as fg
        >>> list(fg.nn.ModuleDict({"a": fg.nn.ReLU(), "b": fg.nn.Tanh()}).keys())
        ['a', 'b']
        """
        return self._modules.keys()

    def values(self):
        """The modules, in insertion order.

        >>> import flopgrad as fg
        >>> list(fg.nn.ModuleDict({"a": fg.nn.ReLU(), "b": fg.nn.Tanh()}).values())
        [ReLU(), Tanh()]
        """
        return self._modules.values()

    def items(self):
        """(name, module) pairs, in insertion order.

        >>> import flopgrad as fg
        >>> list(fg.nn.ModuleDict({"a": fg.nn.ReLU()}).items())
        [('a', ReLU())]
        """
        return self._modules.items()

    def forward(self, *args):
        """Not defined: index the dict instead."""
        raise NotImplementedError("ModuleDict has no forward; index it")


class MultiheadAttention(Module):
    """Multi-head attention with PyTorch's parameter layout (batch_first only).

    forward(query, key, value, attn_mask=None, is_causal=False, need_weights=False,
    key_padding_mask=None) returns (output, None); weights are not returned (they would need
    a second softmax). The masks mean what they mean in torch.nn.MultiheadAttention: a
    boolean attn_mask ((L, S) or (N * num_heads, L, S)) or key_padding_mask ((N, S)) is True
    where attention is NOT allowed (the opposite of F.scaled_dot_product_attention's boolean
    mask); a float mask is added to the scores. With an attn_mask, is_causal is only a hint
    (torch uses the mask as given).

    >>> import flopgrad as fg
    >>> fg.manual_seed(0)
    >>> attn, x = fg.nn.MultiheadAttention(8, num_heads=2), fg.ones(2, 5, 8)
    >>> out, weights = attn(x, x, x, is_causal=True)
    >>> out.shape, weights
    ((2, 5, 8), None)
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 batch_first: bool = True, dtype=None):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim {embed_dim} is not divisible by "
                             f"num_heads {num_heads}")
        if not batch_first:
            raise ValueError("MultiheadAttention: only batch_first=True is supported")
        self.embed_dim, self.num_heads, self.dropout = embed_dim, num_heads, dropout
        self.in_proj_weight = Parameter(creation.empty(3 * embed_dim, embed_dim, dtype=dtype))
        init.xavier_uniform_(self.in_proj_weight)
        self.register_parameter(
            "in_proj_bias", Parameter(creation.zeros(3 * embed_dim, dtype=dtype)) if bias
            else None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, dtype=dtype)
        if bias:
            init.zeros_(self.out_proj.bias)

    def forward(self, query, key, value, attn_mask=None, is_causal: bool = False,
                need_weights: bool = False, key_padding_mask=None):
        """(attention output of shape (N, L, embed_dim), None)."""
        if need_weights:
            raise ValueError("MultiheadAttention: need_weights=True is not supported")
        e, h = self.embed_dim, self.num_heads
        w = self.in_proj_weight
        b = self.in_proj_bias
        wq, wk, wv = w[:e], w[e:2 * e], w[2 * e:]
        bq, bk, bv = (b[:e], b[e:2 * e], b[2 * e:]) if b is not None else (None, None, None)
        q, k, v = F.linear(query, wq, bq), F.linear(key, wk, bk), F.linear(value, wv, bv)

        def heads(t):
            n, s, _ = t.shape
            return t.reshape(n, s, h, e // h).transpose(1, 2)

        if is_causal and attn_mask is None and key_padding_mask is not None:
            shape = (q.shape[1], k.shape[1])  # the causal mask, True above the diagonal
            attn_mask = Tensor(MetaArray(shape, np.bool_) if q.is_meta else ~np.tri(
                *shape, dtype=bool))
        mask = _attention_mask(attn_mask, key_padding_mask, q.shape[0], h, q.dtype)
        out = F.scaled_dot_product_attention(
            heads(q), heads(k), heads(v), attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=is_causal and mask is None)
        n, _, s, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(n, s, e)), None


def _attention_mask(attn_mask, key_padding_mask, n: int, heads: int, dtype):
    """torch.nn.MultiheadAttention's masks (boolean True = masked out, float = added) as one
    mask for F.scaled_dot_product_attention over (N, heads, L, S) scores: boolean masks stay
    boolean (True = may attend), a float mask makes the result additive."""
    masks = []
    if attn_mask is not None:
        m = _t(attn_mask)
        if m.ndim == 3:  # (N * heads, L, S)
            m = m.reshape(n, heads, m.shape[1], m.shape[2])
        elif m.ndim != 2:
            raise ValueError(f"MultiheadAttention: attn_mask must be (L, S) or "
                             f"(N * num_heads, L, S), got shape {m.shape}")
        masks.append(m)
    if key_padding_mask is not None:
        m = _t(key_padding_mask)
        if m.ndim != 2 or m.shape[0] != n:
            raise ValueError(f"MultiheadAttention: key_padding_mask must be (N, S) with N = "
                             f"{n}, got shape {m.shape}")
        masks.append(m.reshape(n, 1, 1, m.shape[1]))
    if not masks:
        return None
    if all(m.dtype == np.bool_ for m in masks):
        allowed = ~masks[0]
        for m in masks[1:]:
            allowed = allowed & ~m
        return allowed
    total = None
    for m in masks:
        if m.dtype == np.bool_:
            m = where(m, float("-inf"), 0.0).to(dtype)
        total = m if total is None else total + m
    return total
