"""The bill on a terminal: rich tables coloured by phase (forward, dX, dW apart at a glance),
the rule checks marked; plain text when the output is not a terminal or NO_COLOR is set,
so that pipes, files and tests see the stable text of `Bill.table()`.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from flopgrad.report.tables import human, human_bytes, rows

if TYPE_CHECKING:
    from flopgrad.report.bill import Bill

COLUMN_STYLES = {"forward": "blue", "bwd dX": "dark_orange", "bwd dW": "red",
                 "other": "green", "total": "bold"}


def use_colour(stream: Any = None) -> bool:
    """Whether to draw rich output on `stream` (default stdout): a terminal, NO_COLOR unset.

    >>> import io
    >>> use_colour(io.StringIO())
    False
    """
    stream = sys.stdout if stream is None else stream
    return (not os.environ.get("NO_COLOR") and hasattr(stream, "isatty")
            and stream.isatty())


def show_table(bill: Bill, by: str = "op", depth: int | None = None, rules: bool = True,
               console: Any = None) -> None:
    """Print the bill's table: rich on a terminal (or to `console`), else `Bill.table()`.

    >>> import flopgrad as fg, io
    >>> from rich.console import Console
    >>> with fg.profile() as bill:
    ...     _ = fg.ones(2, 4) @ fg.ones(4, 3)
    >>> out = Console(file=io.StringIO(), width=80, force_terminal=True)
    >>> show_table(bill, rules=False, console=out)
    >>> "matmul" in out.file.getvalue()
    True
    """
    if console is None and not use_colour():
        print(bill.table(by, depth, rules))
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table_rows = rows(bill, by, depth)
    total = sum(r.total for r in table_rows) or 1
    wide = console.width >= 100  # bytes columns only where they fit beside the FLOPs
    names = ("forward", "bwd dX", "bwd dW", "other", "total", "%") + (
        ("bytes", "saved") if wide else ())
    t = Table(title=f"the bill by {by}", show_footer=True, box=box.SIMPLE_HEAD,
              padding=(0, 0, 0, 1), pad_edge=False)
    t.add_column(by, footer="TOTAL", overflow="ellipsis", no_wrap=True,
                 max_width=max(12, console.width - 8 * len(names)))
    for name in names:
        t.add_column(name, justify="right", style=COLUMN_STYLES.get(name, ""), no_wrap=True,
                     footer=_footer(table_rows, name, total))
    for r in table_rows:
        cells = [human(r.forward), human(r.backward_dx), human(r.backward_dw),
                 human(r.recompute + r.optimizer), human(r.total),
                 f"{100 * r.total / total:.1f}"]
        if wide:
            cells += [human_bytes(r.bytes), human_bytes(r.saved_bytes)]
        t.add_row(r.key + (" !" if r.unknown else ""), *cells)
    console.print(t)
    if not wide:
        console.print("(bytes moved and saved: on a terminal 100 columns wide, or "
                      "bill.table())")
    console.print(f"tensor (matmul/conv) FLOPs {human(bill.flops(kind='tensor'))} = "
                  f"{human(bill.macs())} MACs; transcendentals {human(bill.transcendentals())}")
    if bill.memory:
        console.print(f"memory: peak live {human_bytes(bill.peak_bytes)}, peak saved for "
                      f"backward {human_bytes(bill.saved_bytes_peak)}")
    if rules:
        show_rules(bill.rules(), console)


def show_rules(checks, console: Any = None) -> None:
    """Print rule checks, "holds" in green and "differs" in red on a terminal.

    >>> import flopgrad as fg, io
    >>> from rich.console import Console
    >>> out = Console(file=io.StringIO(), width=80, force_terminal=True)
    >>> show_rules([fg.Rule("r", 2.0, 2.0, True, "ok")], out)
    >>> "holds" in out.file.getvalue()
    True
    """
    if console is None and not use_colour():
        for c in checks:
            print(f"  - {c}")
        return
    from rich.console import Console
    from rich.markup import escape

    console = console or Console()
    for c in checks:
        mark = "[green]holds[/green]" if c.holds else "[red]differs[/red]"
        console.print(f"  - [bold]{escape(c.name)}[/bold]: measured {c.measured:.4g}, folklore "
                      f"{c.folklore:.4g} ({mark}). {escape(c.reason)}")


def _footer(table_rows, name: str, total: int) -> str:
    field = {"forward": "forward", "bwd dX": "backward_dx", "bwd dW": "backward_dw",
             "bytes": "bytes", "saved": "saved_bytes"}.get(name)
    if field is not None:
        value = sum(getattr(r, field) for r in table_rows)
        return human_bytes(value) if name in ("bytes", "saved") else human(value)
    if name == "other":
        return human(sum(r.recompute + r.optimizer for r in table_rows))
    if name == "total":
        return human(total)
    return "100.0" if name == "%" else ""
