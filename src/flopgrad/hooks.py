"""Listeners: the one way to watch the engine run.

A listener is any object with the five methods below; `listen(listener)` adds it to this
thread's Mode for a block, and the engine calls it for every event of that thread:

- `on_op(op, args, arrays, out, params, start_ns)`: a primitive ran (dispatch.apply):
  its Op, its inputs as given (Tensors or constants) and as arrays, its output array, its
  static params, and perf_counter_ns() when it started.
- `on_saved(node)`: a graph node was recorded; `node.saved` / `node.out_data` hold what
  it keeps for backward (None when it keeps nothing).
- `on_release(node)`: that node's backward ran and what it saved is freed.
- `on_alloc(array, category)`: an array made outside dispatch (factories, .grad copies)
  or a known array that is a "parameters", "gradients" or "optimizer_state" array.
- `on_grad(tensor, grad)`: backward accumulated a leaf's gradient into `tensor.grad`
  (`grad` is the new `tensor.grad`; `fg.autograd.grad` returns its results instead).

The ledger behind `fg.profile()` is a listener; anomaly detection, gradient health and
the timeline are listeners too. Subclass `Listener` to implement only the events you need.
Listener methods run inside the op: they must not run flopgrad ops themselves.

>>> import flopgrad as fg
>>> from flopgrad.hooks import Listener, listen
>>> class OpNames(Listener):
...     def __init__(self):
...         self.names = []
...     def on_op(self, op, args, arrays, out, params, start_ns):
...         self.names.append(op.name)
>>> watcher = OpNames()
>>> with listen(watcher):
...     _ = (fg.ones(3) * 2).sum()
>>> watcher.names
['mul', 'sum']
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from flopgrad.dispatch import mode


@runtime_checkable
class ListenerProtocol(Protocol):
    """What the engine calls on every listener (see the module docstring)."""

    def on_op(self, op: Any, args: tuple, arrays: list, out: Any, params: tuple,
              start_ns: int) -> None: ...

    def on_saved(self, node: Any) -> None: ...

    def on_release(self, node: Any) -> None: ...

    def on_alloc(self, array: Any, category: str) -> None: ...

    def on_grad(self, tensor: Any, grad: Any) -> None: ...


class Listener:
    """A listener that ignores every event: override the ones you need.

    >>> from flopgrad.hooks import Listener, ListenerProtocol
    >>> isinstance(Listener(), ListenerProtocol)
    True
    """

    def on_op(self, op, args, arrays, out, params, start_ns) -> None:
        """A primitive ran."""

    def on_saved(self, node) -> None:
        """A node keeps values for backward."""

    def on_release(self, node) -> None:
        """A node's saved values are freed."""

    def on_alloc(self, array, category: str) -> None:
        """An array was made outside dispatch, or was found to be of `category`."""

    def on_grad(self, tensor, grad) -> None:
        """Backward accumulated a leaf's gradient into tensor.grad."""


def add_listener(listener: ListenerProtocol) -> None:
    """Start sending this thread's events to `listener` (see `listen` for a block).

    >>> from flopgrad.hooks import Listener, add_listener, remove_listener
    >>> l = Listener(); add_listener(l); remove_listener(l)
    """
    if not isinstance(listener, ListenerProtocol):
        raise TypeError(f"listen: {type(listener).__name__} is not a listener; it needs "
                        "on_op, on_saved, on_release, on_alloc and on_grad (subclass "
                        "flopgrad.hooks.Listener)")
    m = mode()
    m.listeners = (*m.listeners, listener)


def remove_listener(listener: ListenerProtocol) -> None:
    """Stop sending events to `listener` (no error if it was not listening).

    >>> from flopgrad.hooks import Listener, remove_listener
    >>> remove_listener(Listener())
    """
    m = mode()
    m.listeners = tuple(x for x in m.listeners if x is not listener)


class listen:
    """Send this thread's events to `listener` inside the block.

    >>> import flopgrad as fg
    >>> from flopgrad.hooks import Listener, listen
    >>> with listen(Listener()) as l:
    ...     _ = fg.ones(2) + 1
    >>> type(l).__name__
    'Listener'
    """

    def __init__(self, listener: ListenerProtocol):
        self.listener = listener

    def __enter__(self):
        add_listener(self.listener)
        return self.listener

    def __exit__(self, *exc) -> bool:
        remove_listener(self.listener)
        return False
