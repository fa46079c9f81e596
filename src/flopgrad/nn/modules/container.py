"""Containers: Sequential (called in order), ModuleList and ModuleDict (never called; their
items are named by the parent they are assigned to)."""

from __future__ import annotations

from collections.abc import ItemsView, KeysView, ValuesView

from flopgrad.nn.modules.module import Module

__all__ = ["Sequential", "ModuleList", "ModuleDict"]


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

    _names_items = True

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

    _names_items = True

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

    def keys(self) -> KeysView[str]:
        """The names, in insertion order.

        >>> import flopgrad as fg
        >>> list(fg.nn.ModuleDict({"a": fg.nn.ReLU(), "b": fg.nn.Tanh()}).keys())
        ['a', 'b']
        """
        return self._modules.keys()

    def values(self) -> ValuesView[Module]:
        """The modules, in insertion order.

        >>> import flopgrad as fg
        >>> list(fg.nn.ModuleDict({"a": fg.nn.ReLU(), "b": fg.nn.Tanh()}).values())
        [ReLU(), Tanh()]
        """
        return self._modules.values()

    def items(self) -> ItemsView[str, Module]:
        """(name, module) pairs, in insertion order.

        >>> import flopgrad as fg
        >>> list(fg.nn.ModuleDict({"a": fg.nn.ReLU()}).items())
        [('a', ReLU())]
        """
        return self._modules.items()

    def forward(self, *args):
        """Not defined: index the dict instead."""
        raise NotImplementedError("ModuleDict has no forward; index it")
