"""bill.plot: the HTML page's three charts as matplotlib figures, for notebooks
(`pip install "flopgrad[plot]"`; matplotlib is imported only here, when asked for).

>>> import flopgrad as fg
>>> with fg.profile() as bill:
...     (fg.randn(32, 16) @ fg.nn.Parameter(fg.randn(16, 8))).relu().sum().backward()
>>> fig = bill.plot("layers")
>>> type(fig).__name__, len(fig.axes[0].patches) > 0
('Figure', True)
"""

from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING

from flopgrad.files import write_atomic_bytes
from flopgrad.report.html import MEMORY_COLOURS, PHASE_COLOURS
from flopgrad.report.tables import rows

if TYPE_CHECKING:
    from flopgrad.report.bill import Bill

KINDS = ("layers", "memory", "roofline")


def plot(bill: Bill, kind: str = "layers", path: str | os.PathLike | None = None,
         depth: int = 3):
    """A matplotlib Figure of the bill: "layers" (stacked FLOPs per layer), "memory" (the
    timeline by category) or "roofline"; saved to `path` (by its suffix: .png, .svg, .pdf)
    atomically when given."""
    if kind not in KINDS:
        raise ValueError(f"plot: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    try:
        from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state
    except ImportError:
        raise ImportError('bill.plot needs matplotlib: pip install "flopgrad[plot]"') from None
    fig = Figure(figsize=(9, 5), layout="constrained")
    ax = fig.add_subplot()
    {"layers": _layers, "memory": _memory, "roofline": _roofline}[kind](bill, ax, depth)
    if path is not None:
        buf = io.BytesIO()
        fmt = os.path.splitext(os.fspath(path))[1].lstrip(".").lower() or "png"
        fig.savefig(buf, format=fmt)
        write_atomic_bytes(path, buf.getvalue())
    return fig


def _layers(bill: Bill, ax, depth: int) -> None:
    layers = [r for r in rows(bill, "layer", depth) if r.total][::-1]
    left = [0] * len(layers)
    for phase, colour in PHASE_COLOURS.items():
        values = [getattr(r, phase) for r in layers]
        ax.barh([r.key for r in layers], values, left=left, color=colour,
                label=phase.replace("_", " "))
        left = [a + b for a, b in zip(left, values, strict=True)]
    ax.set_xlabel("FLOPs")
    ax.legend()


def _memory(bill: Bill, ax, depth: int) -> None:
    data = bill.timeline()
    x = [r["op_index"] for r in data]
    ax.stackplot(x, *[[r[c] / 2**20 for r in data] for c in MEMORY_COLOURS],
                 labels=[c.replace("_", " ") for c in MEMORY_COLOURS],
                 colors=list(MEMORY_COLOURS.values()))
    ax.set_xlabel("op index")
    ax.set_ylabel("live MiB")
    ax.legend(loc="upper left")


def _roofline(bill: Bill, ax, depth: int) -> None:
    r = bill.roofline()
    ops = [o for o in r.ops if o.flops and o.bytes and o.measured > 0]
    xs = [o.intensity for o in ops]
    ax.loglog(xs, [o.flops / o.measured for o in ops], "o", color="#e45756")
    for o, x in zip(ops, xs, strict=True):
        ax.annotate(o.op, (x, o.flops / o.measured), fontsize=8)
    lo, hi = min(xs + [r.machine.ridge]) / 10, max(xs + [r.machine.ridge]) * 10
    grid = [lo * (hi / lo) ** (k / 50) for k in range(51)]
    ax.loglog(grid, [min(r.machine.peak_flops, r.machine.bandwidth * g) for g in grid],
              color="#333", label=f"roof ({r.machine.name})")
    ax.set_xlabel("FLOPs per byte")
    ax.set_ylabel("achieved FLOP/s")
    ax.legend()
