"""Anomaly mode: the first op that turns finite inputs into NaN or inf raises.

`fg.detect_anomaly()` (like `torch.autograd.detect_anomaly`) adds an `AnomalyDetector` to
this thread's listeners (flopgrad.hooks) for a block or a decorated function. For every
op it checks the output once (`np.isfinite(out).all()`); only when that finds NaN or inf
does it look at the inputs and params, and it raises `AnomalyError` if they were all
finite: the op created the non-finite values. An op whose inputs already hold NaN or inf
(a -inf attention mask, a NaN that an earlier op made outside anomaly mode) passes.

What the error names: the op and its phase; in backward the forward op it differentiates
and the input slot (Mode.grad_of) and the user's line of that forward op (recorded for
every graph node while anomaly mode is on, through `on_saved`); in forward, recompute and
optimizer phases the user's line of the op itself (the innermost frame outside flopgrad);
the scope (module path); the input shapes and dtypes; how many entries are NaN and inf.

Differences from PyTorch: torch checks only the outputs of backward functions and only
for NaN (an inf gradient passes; a forward NaN surfaces only if its gradient is NaN);
flopgrad checks every primitive, forward, backward, recompute and optimizer, for NaN and
inf, and names the primitive (torch names the backward Function, e.g. SqrtBackward0).
Meta tensors have no values: their ops are not checked. In-place ops (add_, mul_, ...)
overwrite their target before listeners hear of them, so its earlier values are taken to
have been finite (true unless it was made non-finite outside flopgrad's ops).
"""

from __future__ import annotations

import functools
import linecache
import os
import weakref

import numpy as np

from flopgrad.dispatch import mode
from flopgrad.hooks import Listener, add_listener, remove_listener
from flopgrad.ledger import _user_frame

__all__ = ["AnomalyError", "AnomalyDetector", "detect_anomaly", "is_anomaly_enabled"]

_ndarray = np.ndarray
_FLOAT_KINDS = "fcV"  # float, complex, and ml_dtypes' bfloat16 / float8 (kind V)

# graph node -> (file, line) of the user's code that ran its forward op (anomaly mode on)
_FORWARD_LINES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class AnomalyError(RuntimeError):
    """An op turned finite inputs into NaN or inf while `fg.detect_anomaly()` was on.

    Fields: `op` (the primitive's name), `phase`, `grad_of` (in backward: the forward op
    and input slot being differentiated, else None), `scope`, `line` ((file, line) of the
    user's code that ran the op, or for a backward op its forward op; None if unknown),
    `shapes` and `dtypes` of the inputs (() and the type name for a number), `nan`, `inf`
    and `size` (entries of the output), and `count` (nan + inf).

    >>> import flopgrad as fg
    >>> try:
    ...     with fg.detect_anomaly():
    ...         _ = fg.tensor([1e30, 1.0]) * 1e30
    ... except fg.AnomalyError as err:
    ...     print(err.op, err.phase, err.shapes, err.count, err.inf)
    mul forward ((2,), ()) 1 1
    """

    def __init__(self, op: str, phase: str, grad_of: tuple | None, scope: str,
                 line: tuple | None, shapes: tuple, dtypes: tuple, nan: int, inf: int,
                 size: int, inplace: bool = False):
        self.op, self.phase, self.grad_of, self.scope, self.line = op, phase, grad_of, scope, line
        self.shapes, self.dtypes, self.nan, self.inf, self.size = shapes, dtypes, nan, inf, size
        self.inplace = inplace
        super().__init__(self._message())

    @property
    def count(self) -> int:
        """How many output entries are NaN or inf."""
        return self.nan + self.inf

    def _message(self) -> str:
        kinds = ", ".join(f"{k} {name}" for k, name in ((self.nan, "NaN"), (self.inf, "inf"))
                          if k)
        lines = [f"detect_anomaly: {self.op} made {self.count} of {self.size} entries "
                 f"non-finite ({kinds}) from finite inputs"]
        if self.phase == "backward" and self.grad_of is not None:
            what = f"{self.op} in backward, in the gradient of {self.grad_of[0]} (input " \
                   f"{self.grad_of[1]})"
        elif self.phase == "recompute":
            what = f"{self.op} recomputed by fg.checkpoint in backward"
        else:
            what = f"{self.op} in {self.phase}"
        if self.inplace:
            what += (" (in place: its target's earlier values are not kept and are taken to "
                     "have been finite)")
        lines.append(f"  op:     {what}")
        lines.append(f"  scope:  {self.scope or '(top level)'}")
        lines.append(f"  line:   {self._where()}")
        inputs = ", ".join(f"{d}" if s == () and d in ("float", "int", "complex", "bool")
                           else f"{s} {d}" for s, d in zip(self.shapes, self.dtypes, strict=True))
        lines.append(f"  inputs: {inputs}")
        return "\n".join(lines)

    def _where(self) -> str:
        backward = self.phase == "backward" and self.grad_of is not None
        if self.line is None:
            if backward:
                return (f"unknown: the forward {self.grad_of[0]} ran outside "
                        "fg.detect_anomaly() (run the forward inside it too)")
            return "unknown"
        file, lineno = self.line
        code = linecache.getline(file, lineno).strip()
        where = f"{os.path.basename(file)}:{lineno}"
        if backward:
            where += f" (the forward {self.grad_of[0]})"
        return where + (f"  {code}" if code else "")


class AnomalyDetector(Listener):
    """The listener behind `fg.detect_anomaly()`: checks every op's output for NaN and inf
    (`on_op`) and records the user's line of every graph node (`on_saved`).

    >>> import flopgrad as fg
    >>> from flopgrad.hooks import listen
    >>> with listen(fg.diagnostics.AnomalyDetector()):
    ...     _ = fg.tensor([0.0, 1.0]).exp()
    """

    def on_op(self, op, args, arrays, out, params, start_ns) -> None:
        """Raise AnomalyError if `out` holds NaN or inf and no input or param did."""
        if type(out) is not _ndarray or out.dtype.kind not in _FLOAT_KINDS:
            return  # meta tensors (no values), integers and booleans: nothing to check
        if np.isfinite(out).all():
            return
        _check(op, arrays, out, params)

    def on_saved(self, node) -> None:
        """Remember where the user's code ran this node's forward op."""
        if mode().phase == "recompute":  # a checkpoint refills a twin recorded earlier
            if node not in _FORWARD_LINES:
                _FORWARD_LINES[node] = _user_frame()
            return
        _FORWARD_LINES[node] = _user_frame()


def _finite(v) -> bool:
    """Whether an input or a param holds no NaN or inf (numbers, arrays, tuples of them)."""
    if isinstance(v, _ndarray):
        return v.dtype.kind not in _FLOAT_KINDS or bool(np.isfinite(v).all())
    if isinstance(v, float | complex | np.floating | np.complexfloating):
        return bool(np.isfinite(v))
    if isinstance(v, tuple | list):
        return all(_finite(x) for x in v)
    return True


def _describe(a) -> tuple:
    """(shape, dtype name) of an input: an array's, or () and the type of a number."""
    if hasattr(a, "shape") and hasattr(a, "dtype"):
        return tuple(a.shape), str(a.dtype)
    return (), type(a).__name__


def _check(op, arrays, out, params) -> None:
    """The slow path, once the output is known to hold NaN or inf."""
    finite = np.isfinite(out)
    nan = int(np.count_nonzero(np.isnan(out)))
    inf = int(out.size - np.count_nonzero(finite)) - nan
    checked = arrays[1:] if op.inplace else arrays  # in place: arrays[0] now holds `out`
    if not all(_finite(a) for a in checked) or not _finite(params):
        return  # the NaN or inf came in: an earlier op (or the user) made it
    m = mode()
    grad_of = m.grad_of if m.phase == "backward" else None
    if m.phase == "backward":
        node = m.grad_node if grad_of is not None else None
        line = _FORWARD_LINES.get(node) if node is not None else None
    else:
        line = _user_frame()
    described = [_describe(a) for a in arrays]
    raise AnomalyError(op.name, m.phase, grad_of, m.scope, line,
                       tuple(s for s, _ in described), tuple(d for _, d in described),
                       nan, inf, int(out.size), inplace=bool(op.inplace))


def is_anomaly_enabled() -> bool:
    """Whether anomaly mode is on in this thread (like `torch.is_anomaly_enabled`).

    >>> import flopgrad as fg
    >>> from flopgrad.diagnostics import is_anomaly_enabled
    >>> with fg.detect_anomaly():
    ...     inside = is_anomaly_enabled()
    >>> inside, is_anomaly_enabled()
    (True, False)
    """
    return any(type(x) is AnomalyDetector for x in mode().listeners)


class detect_anomaly:
    """Anomaly mode for a block (context manager) or every call (decorator): the first op,
    forward or backward, that turns finite inputs into NaN or inf raises `AnomalyError`.

    Per thread and nestable (an inner block inside an outer one adds nothing); off by
    default. Costs one finiteness check per op and the user's line of every graph node.
    Like `torch.autograd.detect_anomaly`, which checks only backward outputs for NaN.

    >>> import flopgrad as fg
    >>> x = fg.tensor([4.0, 0.0], requires_grad=True)
    >>> with fg.detect_anomaly():
    ...     y = x.sqrt()  # finite: sqrt(0) = 0
    ...     y.sum().backward()  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    flopgrad.diagnostics.anomaly.AnomalyError: detect_anomaly: div made 1 of 2 entries ...
      op:     div in backward, in the gradient of sqrt (input 0)
    ...
    >>> @fg.detect_anomaly()
    ... def loss_of(w):
    ...     return (w * w).sum()
    >>> loss_of(fg.ones(3))
    tensor(3.)
    """

    __slots__ = ("_added",)

    def __init__(self):
        self._added: list = []

    def __enter__(self):
        if is_anomaly_enabled():
            self._added.append(None)  # nested: the outer block's detector goes on checking
        else:
            detector = AnomalyDetector()
            add_listener(detector)
            self._added.append(detector)
        return self

    def __exit__(self, *exc) -> bool:
        detector = self._added.pop()
        if detector is not None:
            remove_listener(detector)
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            with detect_anomaly():  # a fresh manager per call: recursion and threads nest
                return fn(*args, **kwargs)
        return wrapped
