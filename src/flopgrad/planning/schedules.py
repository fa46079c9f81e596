"""Checkpoint schedules for a chain of n equal steps: Griewank and Walther's optimal
binomial schedule (revolve), an exact dynamic program that checks it, and Chen et al.'s
uniform segments.

Convention (Griewank and Walther 2000): the chain's input is stored; reversing step i needs
the state before it; a "forward step" advances the state by one step (the final taped step
of each reversal is not counted). With s checkpoint slots besides the input,

    t(n, s) = r·n − C(s + r, s + 1),  r the smallest integer with C(s + r, s) ≥ n,

forward steps are needed and suffice: for 100 steps and 19 slots, 179. Chen et al. 2016's
uniform sqrt(n) segmenting keeps every segment's first state: 10 segments of 10 take the
99 forward steps of the first pass and 9 per segment again, 99 + 90 = 189.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def binomial_forward_steps(n_steps: int, slots: int) -> int:
    """t(n, s): forward steps of the optimal schedule for n steps with s slots.

    >>> binomial_forward_steps(100, 19), binomial_forward_steps(10, 1)
    (179, 45)
    """
    _check(n_steps, slots)
    if n_steps == 1:
        return 0
    r = 0
    while math.comb(slots + r, slots) < n_steps:
        r += 1
    return r * n_steps - math.comb(slots + r, slots + 1)


def optimal_forward_steps(n_steps: int, slots: int) -> int:
    """The same count by an exact dynamic program over every first checkpoint position:
    F(n, s) = min over m of m + F(n − m, s − 1) + F(m, s), F(1, s) = 0 (O(n² s): for checks).

    >>> optimal_forward_steps(100, 19), optimal_forward_steps(10, 1)
    (179, 45)
    """
    _check(n_steps, slots)
    inf = math.inf
    table = [[0] + [inf] * (n_steps - 1)]  # table[s][n - 1] = F(n, s); no slots: only n = 1
    for s in range(1, slots + 1):
        row, fewer = [0] * n_steps, table[s - 1]
        for n in range(2, n_steps + 1):
            row[n - 1] = min(m + fewer[n - m - 1] + row[m - 1] for m in range(1, n))
        table.append(row)
    return table[slots][n_steps - 1]


def _first_checkpoint(n: int, s: int) -> int:
    """Where the optimal schedule stores its first checkpoint (the closed form per split)."""
    best, where = math.inf, 1
    for m in range(1, n):
        if s == 1 and m != n - 1:
            continue  # one slot: the only reversible split stores just before the last step
        cost = m + binomial_forward_steps(n - m, s - 1) + binomial_forward_steps(m, s)
        if cost < best:
            best, where = cost, m
    return where


def uniform_forward_steps(n_steps: int, segments: int) -> int:
    """Forward steps of uniform segmenting (Chen et al. 2016): one pass keeping each
    segment's input, then each segment recomputed from it.

    >>> uniform_forward_steps(100, 10)
    189
    """
    if not 1 <= segments <= n_steps:
        raise ValueError(f"uniform_forward_steps: segments must be in [1, {n_steps}], got "
                         f"{segments}")
    sizes = [n_steps // segments + (k < n_steps % segments) for k in range(segments)]
    return (n_steps - 1) + sum(size - 1 for size in sizes)


@dataclass(frozen=True)
class Schedule:
    """A reversal schedule: actions and their count of forward steps.

    actions: ("store", i) keep the state before step i in a slot; ("advance", i, j) run
    steps i..j-1 forward; ("reverse", i) run step i's forward taped and its backward;
    ("free", i) drop the stored state before step i.
    """

    n_steps: int
    slots: int
    actions: tuple

    @property
    def forward_steps(self) -> int:
        """Forward steps taken by "advance" actions."""
        return sum(a[2] - a[1] for a in self.actions if a[0] == "advance")

    def max_slots_used(self) -> int:
        """The most states stored at once, besides the chain's input."""
        held, most = set(), 0
        for a in self.actions:
            if a[0] == "store" and a[1]:
                held.add(a[1])
                most = max(most, len(held))
            elif a[0] == "free":
                held.discard(a[1])
        return most


def binomial_schedule(n_steps: int, slots: int) -> Schedule:
    """Griewank and Walther's optimal schedule for n equal steps with s slots: its actions
    and forward steps (t(n, s); the exact program's first-checkpoint choices).

    >>> s = binomial_schedule(100, 19)
    >>> s.forward_steps, s.max_slots_used() <= 19
    (179, True)
    """
    _check(n_steps, slots)
    actions: list = [("store", 0)]
    _reverse(0, n_steps, slots, actions)
    return Schedule(n_steps, slots, tuple(actions))


def _reverse(start: int, n: int, s: int, actions: list) -> None:
    """Reverse steps start..start+n-1, the state before `start` stored (an explicit stack:
    with one slot the recursion would be n deep)."""
    todo = [("reverse", start, n, s)]
    while todo:
        kind, *rest = todo.pop()
        if kind == "free":
            actions.append(("free", rest[0]))
            continue
        start, n, s = rest
        if n == 1:
            actions.append(("reverse", start))
            continue
        m = _first_checkpoint(n, s)
        actions.append(("advance", start, start + m))
        actions.append(("store", start + m))
        todo += [("reverse", start, m, s), ("free", start + m),
                 ("reverse", start + m, n - m, s - 1)]


def schedule_table(n_values=(10, 32, 100, 1000)) -> list[dict]:
    """Binomial against sqrt(n) segmenting with the same memory: k = isqrt(n) segments keep
    k states and one segment's k steps (2k − 1 slots besides the input), so each n is
    compared at 2k − 1 slots.

    >>> schedule_table((100,))
    [{'n': 100, 'segments': 10, 'slots': 19, 'binomial': 179, 'uniform': 189}]
    """
    rows = []
    for n in n_values:
        k = max(1, math.isqrt(n))
        slots = max(1, 2 * k - 1)
        rows.append({"n": n, "segments": k, "slots": slots,
                     "binomial": binomial_forward_steps(n, slots),
                     "uniform": uniform_forward_steps(n, k)})
    return rows


def _check(n_steps: int, slots: int) -> None:
    for name, v, low in (("n_steps", n_steps, 1), ("slots", slots, 0)):
        if not isinstance(v, int) or isinstance(v, bool) or v < low:
            raise ValueError(f"schedule: {name} must be an int >= {low}, got {v!r}")
    if slots == 0 and n_steps > 1:
        raise ValueError("schedule: with 0 slots only a single step can be reversed; give at "
                         "least 1 slot")
