"""Module, the base class of layers and models: registration of parameters, buffers and
children, traversal, train/eval, state_dict and load_state_dict, dtype and meta casts."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

import numpy as np

from flopgrad.autograd.checkpoint import checkpoint
from flopgrad.backend import MetaArray, zeros_like
from flopgrad.dispatch import mode, saw_meta
from flopgrad.ledger import scope
from flopgrad.tensor import Parameter, Tensor, as_dtype

__all__ = ["Module"]


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

    # True on the containers that are never called (ModuleList, ModuleDict): no forward of
    # theirs opens a scope, so assigning one to a parent names its items' scopes
    _names_items: bool = False

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
            if value._names_items:  # never called (ModuleList, ModuleDict): name them
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

    _checkpointed = False  # set by fg.nn.utils.checkpoint_modules

    def __call__(self, *args, **kwargs):
        if self._checkpointed and mode().grad_enabled:
            return checkpoint(self._scoped_forward, *args, **kwargs)
        return self._scoped_forward(*args, **kwargs)

    def _scoped_forward(self, *args, **kwargs):
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
            if t.dtype.kind in "fV":
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
