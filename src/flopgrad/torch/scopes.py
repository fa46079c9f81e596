"""The module path running now, for one thread: torch's global module forward hooks push
and pop a stack, and calls from other threads are ignored (two profiles on two threads
each see their own modules).

Modules of the model given are named by its `named_modules()` paths (so a submodule
called directly, such as a checkpointed block, keeps its path; a DDP or DataParallel
wrapper's "module." prefix is dropped); any other module by its class name, and its
children by their attribute paths under it, as torch's ModuleTracker names them.
"""

from __future__ import annotations

import threading

import torch
from torch.nn.modules.module import (
    register_module_forward_hook,
    register_module_forward_pre_hook,
)


class ModuleScopes:
    """The innermost module running on the thread that made it, as a dotted path.

    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())
    >>> seen = []
    >>> with ModuleScopes(model) as scopes:
    ...     h = model[0].register_forward_pre_hook(lambda *a: seen.append(scopes.current()))
    ...     _ = model(torch.ones(1, 2)); h.remove()
    >>> seen, scopes.current()
    (['0'], '')
    """

    def __init__(self, model: torch.nn.Module | None = None):
        self.thread = threading.get_ident()
        self.names: dict[torch.nn.Module, str] = {}
        self.stack: list[str] = []
        self._hooks: list = []
        if model is not None:
            wrapper = isinstance(model, torch.nn.DataParallel
                                 | torch.nn.parallel.DistributedDataParallel)
            for path, module in model.named_modules():
                if wrapper:
                    path = "" if path == "module" else path.removeprefix("module.")
                self.names.setdefault(module, path)

    def current(self) -> str:
        """The path of the innermost module running now ("" outside any)."""
        return self.stack[-1] if self.stack else ""

    def _name(self, module: torch.nn.Module) -> str:
        name = self.names.get(module)
        if name is None:
            name = self.names[module] = type(module).__name__
            for path, sub in module.named_modules():
                self.names.setdefault(sub, f"{name}.{path}")
        return name

    def _enter(self, module, args) -> None:
        if threading.get_ident() == self.thread:
            self.stack.append(self._name(module))

    def _exit(self, module, args, output) -> None:
        if threading.get_ident() == self.thread and self.stack:
            self.stack.pop()

    def __enter__(self) -> ModuleScopes:
        self._hooks = [register_module_forward_pre_hook(self._enter),
                       register_module_forward_hook(self._exit, always_call=True)]
        return self

    def __exit__(self, *exc) -> bool:
        for h in self._hooks:
            h.remove()
        self._hooks = []
        self.stack.clear()
        return False
