"""The listener protocol (flopgrad.hooks) and the event schema (flopgrad.ledger.Event)."""

from __future__ import annotations

import threading

import pytest

import flopgrad as fg
from flopgrad import ledger
from flopgrad.hooks import Listener, ListenerProtocol, listen


class Recorder(Listener):
    def __init__(self):
        self.calls: list[tuple] = []

    def on_op(self, op, args, arrays, out, params, start_ns):
        self.calls.append(("op", op.name))

    def on_saved(self, node):
        self.calls.append(("saved", node.op.name))

    def on_release(self, node):
        self.calls.append(("release", node.op.name))

    def on_alloc(self, array, category):
        self.calls.append(("alloc", category))

    def on_grad(self, tensor, grad):
        self.calls.append(("grad", tensor.shape, grad.shape))


def test_a_listener_sees_every_event_of_a_step():
    w = fg.nn.Parameter(fg.ones(3))
    rec = Recorder()
    with listen(rec):
        (w * 2).sum().backward()
    kinds = [c[0] for c in rec.calls]
    assert ("op", "mul") in rec.calls and ("op", "sum") in rec.calls
    assert ("saved", "mul") in rec.calls  # every recorded node, even one that keeps nothing
    assert "release" in kinds
    assert ("grad", (3,), (3,)) in rec.calls
    assert kinds.index("grad") > kinds.index("release")


def test_listening_stops_at_the_end_of_the_block_and_is_per_thread():
    rec = Recorder()
    other: list = []

    def elsewhere():
        fg.ones(2) + 1  # another thread: not seen
        other.append(True)

    with listen(rec):
        t = threading.Thread(target=elsewhere)
        t.start()
        t.join()
    fg.ones(2) + 1  # after the block: not seen
    assert other == [True]
    assert [c for c in rec.calls if c[0] == "op"] == []


def test_a_ledger_is_a_listener_and_on_grad_marks_gradients():
    assert isinstance(ledger.Ledger(), ListenerProtocol)
    w = fg.nn.Parameter(fg.ones(256))
    with fg.profile() as bill:
        (w * w).sum().backward()
    assert bill.memory_breakdown()["peak_by_category"]["gradients"] == 1024


def test_something_that_is_not_a_listener_is_refused():
    with pytest.raises(TypeError, match="not a listener"), listen(object()):
        pass


def test_event_fields_are_named_once_and_the_indices_follow_them():
    names = [f.upper() for f in ledger.Event._fields]
    assert [getattr(ledger, n) for n in names] == list(range(len(names)))
    with fg.profile() as bill:
        fg.ones(2, 3) @ fg.ones(3, 4)
    ev = ledger.Event._make(bill.events[0])
    assert (ev.op.name, ev.shapes, ev.out_shape, ev.phase) == (
        "matmul", ((2, 3), (3, 4)), (2, 4), "forward")
