"""The cost ledger: a listener (flopgrad.hooks) that turns every executed primitive into a
bill line.

While a ledger listens, each op appends one tuple of shapes and context (phase, role,
scope) in the order of `Event`'s fields; FLOPs and bytes are computed from the op's cost
formula (flopgrad.costs) only when the ledger is read (flopgrad.report.Bill). With memory
tracking on, the ledger also follows every array it sees from creation to release (live
bytes, peak, timeline) and every array saved for backward (deduplicated by underlying
buffer, released when the node's backward has run).
"""

from __future__ import annotations

import math
import os
import sys
import weakref
from time import perf_counter_ns
from typing import Any, NamedTuple

import numpy as np

from flopgrad import dispatch
from flopgrad.backend import MetaArray, shares_buffer
from flopgrad.dispatch import mode, override
from flopgrad.hooks import Listener, add_listener, remove_listener

PHASES = ("forward", "backward", "recompute", "optimizer", "communication")
# what a live array is, for the memory breakdown; "activations" is every other array an op
# or a factory made (of which the part saved for backward is saved_bytes' share)
CATEGORIES = ("parameters", "gradients", "optimizer_state", "activations")
_CATEGORY_INDEX = {c: k for k, c in enumerate(CATEGORIES)}
_PARAMETERS, _ACTIVATIONS = 0, 3
ROLES = ("weight", "input")
KINDS = ("all", "tensor", "other")



class Event(NamedTuple):
    """One executed primitive, as the ledger records it (the schema every bill view reads).

    The ledger appends plain tuples in this order (building a NamedTuple per op would cost
    the hot path); `Event._make(t)` names one, and the index constants below are these
    fields' positions.
    """

    op: Any  # flopgrad.ops.Op
    shapes: tuple  # input shapes (() for a number)
    itemsizes: tuple  # input bytes per element (0 for a number)
    out_shape: tuple
    out_itemsize: int
    params: tuple  # the op's static params
    phase: str  # forward / backward / recompute / optimizer
    role: str | None  # backward: "weight" (dW) or "input" (dX)
    grad_of: tuple | None  # backward: (forward op name, input slot) being differentiated
    scope: str  # dotted module path
    start: int  # perf_counter_ns
    end: int
    copied: bool  # a view op that had to copy
    skipped: tuple  # forward: input slots that needed no gradient (their dX never runs)


OP, SHAPES, ITEMSIZES, OUT_SHAPE, OUT_ITEMSIZE, PARAMS, PHASE, ROLE, GRAD_OF, SCOPE, START, \
    END, COPIED, SKIPPED = range(len(Event._fields))


class TimelinePoint(NamedTuple):
    """The memory after one change of live or saved bytes (the ledger keeps plain tuples in
    this order; `Bill.timeline()` names them)."""

    time_ns: int
    op_index: int  # how many events had been recorded: the op that ran last is op_index - 1
    phase: str
    scope: str
    live_bytes: int
    saved_bytes: int  # every buffer saved for backward (parameters too)
    saved_activation_bytes: int  # the saved buffers that are activations
    parameters: int
    gradients: int
    optimizer_state: int
    activations: int  # every other live array: saved activations plus temporaries

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_ARRAYS = (np.ndarray, MetaArray)


class scope(override):
    """Name a region; ops inside carry the dotted scope path (nestable, per thread).

    >>> import flopgrad as fg
    >>> with fg.profile() as bill, fg.scope("encoder"), fg.scope("fc1"):
    ...     _ = fg.ones(2, 2) @ fg.ones(2, 2)
    >>> bill.flops(scope="encoder")
    16
    """

    __slots__ = ("name",)

    def __init__(self, name: str):
        if not isinstance(name, str) or not name:
            raise ValueError(f"scope: name must be a non-empty string, got {name!r}")
        self.name = name
        self.fields, self._saved = {"scope": name}, []

    # override's enter and exit, for the one field (every module call runs them)
    def __enter__(self):
        m = mode()
        outer = m.scope
        self._saved.append((m, outer))
        m.scope = f"{outer}.{self.name}" if outer else self.name
        return self

    def __exit__(self, *exc):
        m, m.scope = self._saved.pop()
        return False

    def _fresh(self) -> scope:
        return scope(self.name)


class phase(override):
    """Bill the ops inside as `name` ("forward", "recompute", "optimizer").

    >>> import flopgrad as fg
    >>> with fg.profile() as bill, fg.phase("optimizer"):
    ...     _ = fg.ones(3) * 2
    >>> bill.flops("optimizer")
    3
    """

    __slots__ = ("name",)

    def __init__(self, name: str):
        if name not in PHASES:
            raise ValueError(f"phase: {name!r} is not one of {PHASES}")
        self.name = name
        self.fields, self._saved = {"phase": name}, []

    def __enter__(self):  # override's, for the one field (every optimizer step runs it)
        m = mode()
        self._saved.append((m, m.phase))
        m.phase = self.name
        return self

    def __exit__(self, *exc):
        m, m.phase = self._saved.pop()
        return False


def _user_frame() -> tuple | None:
    """(file, line) of the innermost caller outside the flopgrad package."""
    f = sys._getframe(2)
    while f is not None and f.f_code.co_filename.startswith(_PACKAGE_DIR):
        f = f.f_back
    return None if f is None else (f.f_code.co_filename, f.f_lineno)


def _format_frame(where: tuple | None) -> str:
    return "?" if where is None else f"{os.path.basename(where[0])}:{where[1]}"


def _buffer(arr):
    """The array that owns arr's memory (views share their base's buffer)."""
    while isinstance(arr.base, _ARRAYS):
        arr = arr.base
    return arr


_parameter_type = None  # nn.Parameter: defined above this module, set when a ledger starts


class _Tracked(weakref.ref):
    """A weak reference to a live array with its size and memory category."""

    __slots__ = ("key", "nbytes", "category")


class Ledger(Listener):
    """Records what dispatch runs (a listener, flopgrad.hooks): one Event per op, and with
    memory tracking the live, peak and saved bytes. `flopgrad.report.Bill` reads it.

    events=False aggregates: identical events (same op, shapes, params, phase, role, scope)
    are kept once with a count, the memory timeline is not kept, and saved entries are kept
    once per (op, what, shape, dtype, scope, line), so a profile held over a long training
    run stays the size of one step's distinct ops.
    """

    def __init__(self, memory: bool = True, events: bool = True):
        self.memory = memory
        self.keep_events = events
        self.events: list[tuple] = []
        self.counts: list[int] | None = None if events else []  # per aggregated event
        self.durations: list[int] | None = None if events else []  # total ns per event
        self._event_index: dict = {}
        self._costs: list[tuple] = []
        self.active = False
        self.live_bytes = 0
        self.peak_bytes = 0
        self.saved_bytes = 0
        self.saved_bytes_peak = 0
        self._live = [0] * len(CATEGORIES)  # live bytes per category (CATEGORIES' order)
        self._peak_by = [0] * len(CATEGORIES)  # each category's own peak
        self._at_peak = [0] * len(CATEGORIES)  # the breakdown when live bytes peaked
        self.saved_at_peak = 0
        # one TimelinePoint-ordered tuple per change of live or saved bytes (events=True)
        self.timeline: list[tuple] = []
        self.saved_activation_bytes = 0  # the part of saved_bytes that is tracked activations
        self.saved_activations_at_peak = 0
        self.recomputed_saved_bytes = 0  # saved again by checkpoint recomputations
        self.peak_phase = self.peak_scope = ""  # where live bytes peaked
        self.saw_meta = False
        self._saved_raw: list[tuple] = []
        self._saved_index: dict = {}
        self._buffers: dict[int, list] = {}
        self._node_release: dict[int, weakref.finalize] = {}
        self._alive: dict[int, _Tracked] = {}  # id(array) -> reference, of live arrays
        self.leaves: dict[int, int] = {}  # id -> size of leaves that required grad

    # ------------------------------------------------------------ listening
    def start(self) -> None:
        global _parameter_type
        _parameter_type = dispatch.Parameter
        self.active = True
        self.t0 = perf_counter_ns()
        add_listener(self)

    def stop(self) -> None:
        self.active = False
        remove_listener(self)

    def on_op(self, op, args, arrays, out, params, start) -> None:
        mode_ = mode()
        phase_ = mode_.phase
        # a view op whose result does not alias its input had to copy (e.g. reshape of a
        # transposed array)
        copied = op.view and not shares_buffer(out, arrays[0])
        skipped = ()
        if phase_ == "forward":
            if mode_.grad_enabled and op.vjp is not None:
                needs = [isinstance(a, dispatch.Tensor) and a.requires_grad for a in args]
                if any(needs):
                    skipped = tuple(i for i, a in enumerate(args)
                                    if isinstance(a, dispatch.Tensor) and not needs[i])
                    for a, need in zip(args, needs, strict=True):
                        if need and a._node is None:
                            self.leaves[id(a)] = a._data.size
                            if self.memory and type(a) is _parameter_type:
                                self._touch_parameter(a._data)
            elif self.memory:
                for a in args:
                    if type(a) is _parameter_type:
                        self._touch_parameter(a._data)
        shapes, itemsizes = [], []
        for a in arrays:
            if isinstance(a, _ARRAYS):
                shapes.append(a.shape)
                itemsizes.append(a.itemsize)
            else:
                shapes.append(())
                itemsizes.append(0)
        ev = (op, tuple(shapes), tuple(itemsizes), out.shape, out.itemsize, params, phase_,
              mode_.role, mode_.grad_of, mode_.scope, start, perf_counter_ns(), copied, skipped)
        if self.counts is None:
            self.events.append(ev)
        else:
            self._aggregate(ev)
        if type(out) is MetaArray:
            self.saw_meta = True  # no op ran on data: measured times are not the ops'
        if self.memory and (not (op.view or op.inplace) or copied):
            self._track_new(out, _ACTIVATIONS)

    def on_grad(self, tensor, grad) -> None:
        """A leaf's .grad is a gradient from now on (in the memory breakdown)."""
        self.on_alloc(grad._data, "gradients")

    def _touch_parameter(self, arr) -> None:
        """A parameter used in the forward pass counts from then on (made before the profile,
        or made inside it as an activation)."""
        ref = self._alive.get(id(arr))
        if ref is None or ref.category != _PARAMETERS:
            self.on_alloc(arr, "parameters")

    def _aggregate(self, ev: tuple) -> None:
        # keyed by everything a query reads, params by the cost they give (index arrays and
        # step-dependent scalars change nothing else)
        cost = event_cost(ev)
        key = (ev[OP], ev[SHAPES], ev[ITEMSIZES], ev[OUT_SHAPE], ev[OUT_ITEMSIZE], ev[PHASE],
               ev[ROLE], ev[GRAD_OF], ev[SCOPE], ev[COPIED], ev[SKIPPED], cost)
        i = self._event_index.get(key)
        if i is None:
            self._event_index[key] = len(self.events)
            self.events.append(ev)
            self._costs.append(cost)
            self.counts.append(1)
            self.durations.append(ev[END] - ev[START])
        else:
            self.counts[i] += 1
            self.durations[i] += ev[END] - ev[START]

    def on_alloc(self, arr: np.ndarray, category: str = "activations") -> None:
        """Track a live array (once); a known array moves to a more specific category
        (an op's output that becomes a .grad is a gradient from then on)."""
        if not self.memory or not isinstance(arr, _ARRAYS):
            return
        k = _CATEGORY_INDEX[category]
        ref = self._alive.get(id(arr))
        if ref is None:
            self._track_new(arr, k)
        elif k != ref.category and k != _ACTIVATIONS:
            self._live[ref.category] -= ref.nbytes
            ref.category = k
            live = self._live[k] = self._live[k] + ref.nbytes
            if live > self._peak_by[k]:
                self._peak_by[k] = live

    def _track_new(self, arr, k: int) -> None:
        """Track an array not seen before, in category k (every op's output comes here)."""
        n = arr.nbytes
        ref = _Tracked(arr, self._free)  # half the cost of weakref.finalize
        ref.key, ref.nbytes, ref.category = id(arr), n, k
        self._alive[ref.key] = ref
        cats = self._live
        live = cats[k] = cats[k] + n
        if live > self._peak_by[k]:
            self._peak_by[k] = live
        self.live_bytes += n
        if self.live_bytes > self.peak_bytes:
            self.peak_bytes = self.live_bytes
            self._at_peak = cats[:]
            self.saved_at_peak = self.saved_bytes
            self.saved_activations_at_peak = self.saved_activation_bytes
            m = dispatch._per_thread.mode
            self.peak_phase, self.peak_scope = m.phase, m.scope
        if self.keep_events:
            self._mark()

    def _free(self, ref: _Tracked) -> None:
        self._alive.pop(ref.key, None)
        if self.active:
            self.live_bytes -= ref.nbytes
            self._live[ref.category] -= ref.nbytes
            self._mark()

    @property
    def at_peak(self) -> dict:
        """Live bytes by category at the moment live bytes peaked."""
        return dict(zip(CATEGORIES, self._at_peak, strict=True))

    def _mark(self) -> None:
        if self.keep_events:
            m, c = dispatch._per_thread.mode, self._live
            self.timeline.append((perf_counter_ns(), len(self.events), m.phase, m.scope,
                                  self.live_bytes, self.saved_bytes,
                                  self.saved_activation_bytes, c[0], c[1], c[2], c[3]))

    def memory_breakdown(self) -> dict:
        """Live bytes by category: at the peak, each category's own peak, and now (the
        numbers behind Bill.memory_breakdown)."""
        return {"peak_bytes": self.peak_bytes, "at_peak": self.at_peak,
                "saved_at_peak": self.saved_at_peak,
                "saved_activations_at_peak": self.saved_activations_at_peak,
                "peak_phase": self.peak_phase, "peak_scope": self.peak_scope,
                "peak_by_category": dict(zip(CATEGORIES, self._peak_by, strict=True)),
                "live": dict(zip(CATEGORIES, self._live, strict=True))}

    def on_saved(self, node) -> None:
        if not self.memory:
            return
        items = []
        if node.saved is not None:
            for i, t in enumerate(node.saved):
                if isinstance(t, dispatch.Tensor):
                    items.append((t._data, f"input {i}", t._node is None))
        if node.out_data is not None:
            items.append((node.out_data, "output", False))
        if not items:
            return
        where = _user_frame()
        phase = dispatch._per_thread.mode.phase  # "recompute": saved again by a checkpoint
        keys = []
        for arr, what, leaf in items:
            if not isinstance(arr, _ARRAYS):
                continue
            root = _buffer(arr)
            key = id(root)
            entry = self._buffers.get(key)
            shared = entry is not None
            if shared:
                entry[0] += 1
            else:
                # the array an op made may be a view of a buffer made inside its kernel
                ref = self._alive.get(key) or self._alive.get(id(arr))
                activation = ref is not None and ref.category == _ACTIVATIONS
                self._buffers[key] = [1, root.nbytes, activation]
                self.saved_bytes += root.nbytes
                if activation:
                    self.saved_activation_bytes += root.nbytes
                if dispatch._per_thread.mode.phase == "recompute":
                    self.recomputed_saved_bytes += root.nbytes
            keys.append(key)
            # a tuple now, a dict when asked for (saved_entries): this runs for every node
            # a view of a weight (W.T) is a weight too, not an activation
            leaf = leaf or not self._buffers[key][2]
            entry = [node.op.name, what, arr.shape, arr.dtype, 0 if shared else root.nbytes,
                     arr.nbytes, node.scope, where, leaf, shared, 1, phase]
            if self.keep_events:
                self._saved_raw.append(entry)
            else:
                self._aggregate_saved(entry)
        if self.saved_bytes > self.saved_bytes_peak:
            self.saved_bytes_peak = self.saved_bytes
        self._mark()
        self._node_release[id(node)] = weakref.finalize(node, self._unsave, keys)

    def _aggregate_saved(self, entry: list) -> None:
        key = (entry[0], entry[1], entry[2], entry[3], entry[6], entry[7], entry[11])
        kept = self._saved_index.get(key)
        if kept is None:
            self._saved_index[key] = entry
            self._saved_raw.append(entry)
        else:
            kept[4] += entry[4]
            kept[5] += entry[5]
            kept[10] += 1

    def on_release(self, node) -> None:
        fin = self._node_release.pop(id(node), None)
        if fin is not None:
            fin()

    def _unsave(self, keys: list) -> None:
        for key in keys:
            entry = self._buffers.get(key)
            if entry is None:
                continue
            entry[0] -= 1
            if entry[0] == 0:
                self.saved_bytes -= entry[1]
                if entry[2]:
                    self.saved_activation_bytes -= entry[1]
                del self._buffers[key]
        if self.active:
            self._mark()

    # ------------------------------------------------------------ costs
    def costs(self) -> list[tuple]:
        """(tensor FLOPs, other FLOPs, transcendentals, bytes, unknown) for every event
        (with events=False, for every distinct event times its count)."""
        for ev in self.events[len(self._costs):]:
            self._costs.append(event_cost(ev))
        if self.counts is None:
            return self._costs
        return [(c[0] * k, c[1] * k, c[2] * k, c[3] * k, c[4])
                for c, k in zip(self._costs, self.counts, strict=True)]

    def saved_entries(self) -> list[dict]:
        """Every array saved for backward, as dicts (see Bill.saved)."""
        rows = [{
            "op": op, "what": what, "shape": tuple(shape), "dtype": str(dtype),
            "bytes": int(nbytes), "array_bytes": int(array_bytes), "scope": scope,
            "line": _format_frame(where), "leaf": leaf, "shared": shared, "phase": phase,
            "count": count,
        } for op, what, shape, dtype, nbytes, array_bytes, scope, where, leaf, shared, count,
            phase in self._saved_raw]
        if self.keep_events:
            for r in rows:
                del r["count"]
        return rows


def role_of(ev) -> str:
    """The role of a backward event: "weight" (dW) or "input" (dX)."""
    return ev[ROLE] or "input"


def attributed_op(ev) -> str:
    """The op a line is billed to: for backward work, the forward op it differentiates."""
    if ev[GRAD_OF] is not None and ev[PHASE] == "backward":
        return ev[GRAD_OF][0]
    return ev[OP].name


def event_cost(ev) -> tuple:
    """(tensor FLOPs, other FLOPs, transcendentals, bytes, unknown) of one event."""
    op = ev[OP]
    if op.unknown_cost:
        tensor = other = trans = 0
    else:
        tensor, other, trans = op.cost(ev[OUT_SHAPE], ev[SHAPES], ev[PARAMS])
    if op.view and not ev[COPIED]:
        nbytes = 0
    else:
        nbytes = math.prod(ev[OUT_SHAPE]) * ev[OUT_ITEMSIZE] + sum(
            math.prod(s) * i for s, i in zip(ev[SHAPES], ev[ITEMSIZES], strict=True))
    return (int(tensor), int(other), int(trans), int(nbytes), op.unknown_cost)
