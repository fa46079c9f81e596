"""Live and saved bytes of torch storages, kept in a flopgrad Ledger's memory fields, so a
bridge bill has the native bill's peak, breakdown and timeline.

A storage counts from the op that made it (every output of an op that does not alias its
input) until torch frees it (a weak reference to the storage: torch keeps a storage's
Python object exactly as long as the storage itself lives). The model's parameters count
from the start; a parameter's `.grad` moves to "gradients" when autograd accumulates it;
an optimizer's state moves to "optimizer_state" after its step. A tensor saved for
backward counts as saved, once per storage, until autograd frees the node that saved it.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from time import perf_counter_ns

import torch

from flopgrad.ledger import _CATEGORY_INDEX, Ledger

PARAMETERS, GRADIENTS, OPTIMIZER_STATE, ACTIVATIONS = (
    _CATEGORY_INDEX[c] for c in ("parameters", "gradients", "optimizer_state", "activations"))


class _Storage(weakref.ref):
    """A weak reference to a live storage: its size, category and the timeline index at
    which it was first counted."""

    __slots__ = ("key", "nbytes", "category", "born")


class Saved:
    """What the pack hook returns: the tensor, and its storage's saved count released when
    autograd drops it."""

    __slots__ = ("tensor", "key", "memory")

    def __init__(self, tensor: torch.Tensor, key: int, memory: StorageMemory):
        self.tensor, self.key, self.memory = tensor, key, memory

    def __del__(self):
        self.memory.unsave(self.key)


class StorageMemory:
    """Counts torch storages into `ledger`'s live, peak, saved and timeline fields;
    `where()` gives the (phase, scope) a change happened in.

    >>> import torch
    >>> from flopgrad.ledger import Ledger
    >>> memory = StorageMemory(Ledger(), lambda: ("forward", ""))
    >>> memory.ledger.active = True                 # as while a profile is open
    >>> x = torch.ones(256)
    >>> memory.track(x, ACTIVATIONS); memory.ledger.live_bytes
    1024
    >>> del x; memory.ledger.live_bytes
    0
    """

    def __init__(self, ledger: Ledger, where: Callable[[], tuple[str, str]]):
        self.ledger, self.where = ledger, where
        self.alive: dict[int, _Storage] = {}
        self.saved: dict[int, list] = {}  # storage key -> [count, bytes, is an activation]
        self.peak_mark = -1  # the timeline index of the peak

    def track(self, t: torch.Tensor, category: int) -> None:
        """Count t's storage (once) in category; a counted storage moves to a more specific
        category than activations (an op's output that becomes a .grad)."""
        storage = t.untyped_storage()
        key = storage._cdata
        ref = self.alive.get(key)
        led = self.ledger
        if ref is None:
            ref = _Storage(storage, self._free)
            ref.key, ref.nbytes, ref.category = key, storage.nbytes(), category
            ref.born = len(led.timeline)
            self.alive[key] = ref
            led.live_bytes += ref.nbytes
        elif category != ref.category and category != ACTIVATIONS:
            led._live[ref.category] -= ref.nbytes
            ref.category = category
        else:
            return
        live = led._live
        live[category] += ref.nbytes
        if live[category] > led._peak_by[category]:
            led._peak_by[category] = live[category]
        if led.live_bytes > led.peak_bytes:
            led.peak_bytes = led.live_bytes
            led._at_peak = live[:]
            led.saved_at_peak = led.saved_bytes
            led.saved_activations_at_peak = led.saved_activation_bytes
            led.peak_phase, led.peak_scope = self.where()
            self.peak_mark = len(led.timeline)
        self.mark()

    def refile(self, tensors, category: int, since: int) -> None:
        """File tensors' storages under category, back to when they were made if that was
        at or after timeline index `since` (an optimizer's state is known for what it is
        only after the step that made it): the timeline and the breakdown at the peak
        are corrected."""
        led = self.ledger
        for t in tensors:
            ref = self.alive.get(t.untyped_storage()._cdata)
            if ref is not None and ref.category == ACTIVATIONS and ref.born >= since:
                if self.peak_mark >= ref.born:
                    led._at_peak[ACTIVATIONS] -= ref.nbytes
                    led._at_peak[category] += ref.nbytes
                k, n = 7 + ACTIVATIONS, ref.nbytes
                for i in range(ref.born, len(led.timeline)):
                    p = list(led.timeline[i])
                    p[k] -= n
                    p[7 + category] += n
                    led.timeline[i] = tuple(p)
            self.track(t, category)

    def _free(self, ref: _Storage) -> None:
        if self.alive.pop(ref.key, None) is not None and self.ledger.active:
            self.ledger.live_bytes -= ref.nbytes
            self.ledger._live[ref.category] -= ref.nbytes
            self.mark()

    def save(self, t: torch.Tensor, key: int) -> Saved:
        """Count t's storage as saved for backward until the returned holder is dropped."""
        entry = self.saved.get(key)
        led = self.ledger
        if entry is not None:
            entry[0] += 1
        else:
            ref = self.alive.get(key)
            activation = ref is not None and ref.category == ACTIVATIONS
            nbytes = t.untyped_storage().nbytes()
            self.saved[key] = [1, nbytes, activation]
            led.saved_bytes += nbytes
            if activation:
                led.saved_activation_bytes += nbytes
            led.saved_bytes_peak = max(led.saved_bytes_peak, led.saved_bytes)
            self.mark()
        return Saved(t, key, self)

    def unsave(self, key: int) -> None:
        """A holder was dropped: the storage is no longer saved once no holder is left."""
        entry = self.saved.get(key)
        if entry is None:
            return
        entry[0] -= 1
        if entry[0] == 0:
            del self.saved[key]
            self.ledger.saved_bytes -= entry[1]
            if entry[2]:
                self.ledger.saved_activation_bytes -= entry[1]
            if self.ledger.active:
                self.mark()

    def mark(self) -> None:
        """One TimelinePoint (flopgrad.ledger's order) for the change just made."""
        led, c = self.ledger, self.ledger._live
        phase, scope = self.where()
        led.timeline.append((perf_counter_ns(), len(led.events), phase, scope, led.live_bytes,
                             led.saved_bytes, led.saved_activation_bytes, c[0], c[1], c[2],
                             c[3]))
