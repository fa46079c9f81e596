"""Time beside FLOPs: each op's measured seconds, its arithmetic intensity and its roofline
time on this machine (or a GPU's figures), and why it sits below its roof.

`machine()` measures this machine once per process: its peak GFLOP/s (a large float32 GEMM,
best of three) and its memory bandwidth (a large copy: bytes read plus written). An op's
roofline time is max(FLOPs / peak, bytes / bandwidth): a lower bound, since it assumes every
op reaches the roof. On small shapes Python's overhead per op dominates.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from flopgrad import ledger as L
from flopgrad.ledger import attributed_op

if TYPE_CHECKING:
    from flopgrad.report.bill import Bill


@dataclass(frozen=True)
class Machine:
    """Peak FLOP/s and memory bandwidth (bytes/s), measured or from a datasheet."""

    name: str
    peak_flops: float
    bandwidth: float

    @property
    def ridge(self) -> float:
        """FLOPs per byte where the roof turns from memory-bound to compute-bound."""
        return self.peak_flops / self.bandwidth


@functools.lru_cache(maxsize=1)
def machine(n: int = 2048, copy_mib: int = 256) -> Machine:
    """This machine's float32 GEMM peak and copy bandwidth, measured once (cached).

    >>> import flopgrad as fg
    >>> m = fg.machine()
    >>> m.peak_flops > 1e9 and m.bandwidth > 1e8
    True
    """
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    out = np.empty_like(a)
    best = min(_timed(lambda: np.matmul(a, a, out=out)) for _ in range(3))
    src = np.ones(copy_mib * 2**20 // 4, np.float32)
    dst = np.empty_like(src)
    copy = min(_timed(lambda: np.copyto(dst, src)) for _ in range(3))
    return Machine("this machine", 2 * n**3 / best, 2 * src.nbytes / copy)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def gpu_machine(gpu: str) -> Machine:
    """A GPU's dense 16-bit peak and HBM bandwidth from flopgrad.planning's table.

    >>> gpu_machine("h100").ridge > 100
    True
    """
    from flopgrad.planning.hardware import GPUS

    if gpu not in GPUS or GPUS[gpu].memory_bandwidth is None:
        known = ", ".join(k for k, g in GPUS.items() if g.memory_bandwidth)
        raise KeyError(f"no bandwidth figures for {gpu!r}; known: {known}")
    g = GPUS[gpu]
    return Machine(g.name, g.peak_flops, g.memory_bandwidth)


def seconds(bill: Bill, phase=None, role=None, op=None, scope=None) -> float:
    """Measured seconds of the selected events (the filters of Bill.flops).

    >>> import flopgrad as fg
    >>> with fg.profile() as bill:
    ...     _ = fg.ones(256, 256) @ fg.ones(256, 256)
    >>> bill.seconds(op="matmul") > 0
    True
    """
    bill._check(phase, role, "all")
    ns = _durations(bill)
    return sum(ns[id(ev)] for ev, _ in bill._rows(phase, role, op, scope)) / 1e9


def _durations(bill: Bill) -> dict[int, int]:
    """Nanoseconds of each event (all its repetitions with events=False), by id."""
    if bill.durations is None:
        return {id(ev): ev[L.END] - ev[L.START] for ev in bill.events}
    return {id(ev): d for ev, d in zip(bill.events, bill.durations, strict=True)}


@dataclass
class OpTime:
    """One op's FLOPs, bytes, intensity, roofline seconds and measured seconds."""

    op: str
    flops: int
    bytes: int
    roofline: float
    measured: float

    @property
    def intensity(self) -> float:
        """FLOPs per byte."""
        return self.flops / self.bytes if self.bytes else float("inf")

    @property
    def below_roof(self) -> float:
        """Measured over roofline time: 1 at the roof, 100 far below it."""
        return self.measured / self.roofline if self.roofline else float("inf")


@dataclass
class Roofline:
    """The ops of a bill on a machine's roofline, largest measured time first."""

    machine: Machine
    ops: list[OpTime]

    @property
    def predicted(self) -> float:
        """Seconds if every op ran at its roof (a lower bound)."""
        return sum(o.roofline for o in self.ops)

    @property
    def measured(self) -> float:
        """Seconds the ops took."""
        return sum(o.measured for o in self.ops)

    def far_below(self, factor: float = 10.0) -> list[OpTime]:
        """Ops whose measured time is more than `factor` times their roofline time."""
        return [o for o in self.ops if o.below_roof > factor]

    def __str__(self) -> str:
        m = self.machine
        lines = [f"roofline on {m.name}: peak {m.peak_flops / 1e9:,.1f} GFLOP/s, bandwidth "
                 f"{m.bandwidth / 1e9:,.1f} GB/s (ridge {m.ridge:.1f} FLOPs/byte); predicted "
                 f"{self.predicted * 1e3:.3f} ms (a lower bound), measured "
                 f"{self.measured * 1e3:.3f} ms",
                 f"  {'op':<18}{'FLOPs/byte':>11}{'roof ms':>10}{'measured ms':>13}{'x roof':>9}"]
        for o in self.ops:
            lines.append(f"  {o.op:<18}{o.intensity:>11.2f}{o.roofline * 1e3:>10.4f}"
                         f"{o.measured * 1e3:>13.4f}{o.below_roof:>9.1f}")
        slow = self.far_below()
        if slow:
            lines.append("  far below their roof (Python overhead per op, small shapes): "
                         + ", ".join(o.op for o in slow[:6]))
        return "\n".join(lines)


def roofline(bill: Bill, machine_: Machine | None = None, gpu: str | None = None) -> Roofline:
    """Each op of the bill on a roofline: this machine's (measured), or a GPU's figures
    (then `measured` is still this machine's time: compare `predicted`).

    >>> import flopgrad as fg
    >>> with fg.profile() as bill:
    ...     _ = (fg.ones(512, 512) @ fg.ones(512, 512)).relu().sum()
    >>> r = bill.roofline()
    >>> r.ops[0].op, r.predicted > 0, r.measured > 0  # predicted: a lower bound, timing aside
    ('matmul', True, True)
    """
    m = machine_ if machine_ is not None else gpu_machine(gpu) if gpu else machine()
    by_op: dict[str, list] = {}
    ns = _durations(bill)
    for ev, c in zip(bill.events, bill.costs(), strict=True):
        key = attributed_op(ev)
        entry = by_op.setdefault(key, [0, 0, 0.0, 0.0])
        flops = c[0] + c[1]
        entry[0] += flops
        entry[1] += c[3]
        entry[2] += max(flops / m.peak_flops, c[3] / m.bandwidth)
        entry[3] += ns[id(ev)] / 1e9
    ops = [OpTime(k, f, b, r, t) for k, (f, b, r, t) in by_op.items()]
    return Roofline(m, sorted(ops, key=lambda o: -o.measured))
