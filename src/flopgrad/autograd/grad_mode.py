"""Grad mode: whether ops are recorded for backward, in this thread (as in PyTorch).

no_grad, enable_grad and set_grad_enabled are context managers and decorators on top of
flopgrad.dispatch.override; is_grad_enabled reads the mode.
"""

from __future__ import annotations

from collections.abc import Callable

from flopgrad.dispatch import mode as _mode
from flopgrad.dispatch import override

__all__ = ["no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled"]


class _FixedMode(override):
    """override(grad_enabled=...) with the value fixed by the class (no_grad, enable_grad):
    a context manager and decorator for this thread's grad mode only, as in PyTorch. It
    takes no arguments, so it also works bare: `@fg.no_grad`."""

    __slots__ = ()
    enabled: bool

    def __new__(cls, *args):
        if len(args) == 1 and callable(args[0]):
            return cls()(args[0])
        return super().__new__(cls)

    def __init__(self):
        super().__init__(grad_enabled=self.enabled)


class no_grad(_FixedMode):
    """Run without recording a graph (ops are still billed). Context manager or decorator.

    >>> import flopgrad as fg
    >>> with fg.no_grad():
    ...     y = fg.ones(2, requires_grad=True) * 2
    >>> y.requires_grad
    False
    """

    __slots__ = ()
    enabled = False


class enable_grad(_FixedMode):
    """Record a graph even inside no_grad. Context manager or decorator.

    >>> import flopgrad as fg
    >>> @fg.enable_grad()
    ... def doubled(x):
    ...     return x * 2
    >>> with fg.no_grad():
    ...     doubled(fg.ones(2, requires_grad=True)).requires_grad
    True
    """

    __slots__ = ()
    enabled = True


class set_grad_enabled(override):
    """Switch graph recording on or off, like PyTorch: the call itself switches the mode,
    and used as a context manager (or decorator) the previous mode comes back on exit.

    >>> import flopgrad as fg
    >>> with fg.set_grad_enabled(False):
    ...     y = fg.ones(2, requires_grad=True) * 2
    >>> y.requires_grad
    False
    """

    __slots__ = ("_prev",)

    def __init__(self, mode: bool):
        super().__init__(grad_enabled=bool(mode))
        m = _mode()
        self._prev = m.grad_enabled
        m.grad_enabled = self.fields["grad_enabled"]

    def __enter__(self):
        _mode().grad_enabled = self.fields["grad_enabled"]
        return self

    def __exit__(self, *exc):
        _mode().grad_enabled = self._prev
        return False

    def __call__(self, fn: Callable) -> Callable:
        _mode().grad_enabled = self._prev  # decorating does not switch the mode
        return super().__call__(fn)


def is_grad_enabled() -> bool:
    """Whether ops are being recorded for backward (in this thread).

    >>> import flopgrad as fg
    >>> with fg.no_grad():
    ...     inside = fg.is_grad_enabled()
    >>> fg.is_grad_enabled(), inside
    (True, False)
    """
    return _mode().grad_enabled
