"""The bill as a table: rows by op, scope, layer or phase, and human units."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flopgrad import ledger as L
from flopgrad.ledger import attributed_op, role_of

if TYPE_CHECKING:
    from flopgrad.report.bill import Bill

_UNITS = ("", "K", "M", "G", "T", "P", "E", "Z", "Y")


def human(n: float) -> str:
    """218368 -> '218.4K' (SI prefixes, four significant digits).

    >>> from flopgrad.report import human
    >>> human(218368), human(2.5e9), human(999)
    ('218.4K', '2.5G', '999')
    """
    n = float(n)
    if abs(n) >= 1000 ** len(_UNITS):  # past yotta: scientific notation, still 9 characters
        return f"{n:.3e}"
    for unit in _UNITS:
        if abs(n) < 1000:
            if unit == "":
                return f"{n:.0f}" if n == int(n) else f"{n:.3g}"
            return f"{n:.4g}{unit}"
        n /= 1000
    return str(n)


def human_bytes(n: float) -> str:
    """Bytes with binary prefixes: 1536 -> '1.5 KiB'.

    >>> from flopgrad.report import human_bytes
    >>> human_bytes(1536), human_bytes(100), human_bytes(3 * 2**30)
    ('1.5 KiB', '100 B', '3 GiB')
    """
    n = float(n)
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")
    if abs(n) >= 1024 ** len(units):
        return f"{n:.2e} B"
    for unit in units:
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    return str(n)


@dataclass


class Row:
    """One table line: FLOPs by phase and role, bytes and saved bytes.

    >>> from flopgrad.report import Row
    >>> row = Row("matmul", forward=48, backward_dw=48)
    >>> row.backward_dx, row.total
    (0, 96)
    """

    key: str
    forward: int = 0
    backward_dx: int = 0
    backward_dw: int = 0
    recompute: int = 0
    optimizer: int = 0
    tensor: int = 0
    bytes: int = 0
    saved_bytes: int = 0
    unknown: bool = False

    @property
    def total(self) -> int:
        """FLOPs of every phase added up (tensor FLOPs are a part, not an addition).

        >>> from flopgrad.report import Row
        >>> Row("add", forward=6, optimizer=4, tensor=0).total
        10
        """
        return self.forward + self.backward_dx + self.backward_dw + self.recompute + self.optimizer


def rows(bill: Bill, by: str = "op", depth: int | None = None) -> list[Row]:
    """Table rows grouped by "op", "scope" or "phase", largest total first.

    >>> import flopgrad as fg
    >>> W = fg.ones(4, 3, requires_grad=True)
    >>> with fg.profile() as bill:
    ...     (fg.ones(2, 4) @ W).sum().backward()
    >>> [(r.key, r.forward, r.backward_dw, r.total) for r in bill.rows()]
    [('matmul', 48, 48, 96), ('sum', 5, 0, 5)]
    """
    if by not in ("op", "scope", "layer", "phase"):
        raise ValueError(
            f"table: by must be 'op', 'scope', 'layer' or 'phase', got {by!r}")
    rows: dict[str, Row] = {}
    for ev, c in zip(bill.events, bill.costs(), strict=True):
        key = _key(ev, by, depth)
        row = rows.get(key)
        if row is None:
            row = rows[key] = Row(key)
        flops = c[0] + c[1]
        ph = ev[L.PHASE]
        if ph == "forward":
            row.forward += flops
        elif ph == "backward":
            if role_of(ev) == "weight":
                row.backward_dw += flops
            else:
                row.backward_dx += flops
        elif ph == "recompute":
            row.recompute += flops
        else:
            row.optimizer += flops
        row.tensor += c[0]
        row.bytes += c[3]
        row.unknown |= c[4]
    if by != "phase":
        for e in bill.saved():
            key = e["op"] if by == "op" else scope_key(e["scope"], depth,
                                                              by == "layer")
            if key in rows:
                rows[key].saved_bytes += e["bytes"]
    return sorted(rows.values(), key=lambda r: -r.total)


def scope_key(path: str, depth: int | None, by_layer: bool = False) -> str:
    """The scope path cut at `depth`; with by_layer, block numbers become "*" so that
    every block's attention (say) adds up in one row."""
    if not path:
        return "(top level)"
    parts = path.split(".")
    if by_layer:
        parts = ["*" if p.isdigit() else p for p in parts]
    return ".".join(parts[:depth]) if depth else ".".join(parts)


def _key(ev, by: str, depth: int | None) -> str:
    if by == "phase":
        return ev[L.PHASE]
    if by in ("scope", "layer"):
        return scope_key(ev[L.SCOPE], depth, by == "layer")
    if ev[L.PHASE] == "optimizer":
        return "(optimizer)"
    name = attributed_op(ev)
    return f"{name} (recompute)" if ev[L.PHASE] == "recompute" else name


def table(bill: Bill, by: str = "op", depth: int | None = None, rules: bool = True,
          time: bool = False) -> str:
    """A readable table (human units) ending with the rule checks.

    by: "op", "scope" (module path, cut at `depth`), "layer" (like scope, with block
    numbers merged: blocks.*.attn) or "phase". time=True adds each row's share of the
    measured time beside its share of FLOPs (off by default: times vary from run to run).

    >>> import flopgrad as fg
    >>> W = fg.ones(4, 3, requires_grad=True)
    >>> with fg.profile() as bill:
    ...     (fg.ones(2, 4) @ W).sum().backward()
    >>> lines = bill.table(rules=False).splitlines()
    >>> lines[2].split()[:6]
    ['matmul', '48', '0', '48', '0', '96']
    >>> lines[-3]
    'tensor (matmul/conv) FLOPs 96 = 48 MACs; transcendentals 0'
    """
    table_rows = rows(bill, by, depth)
    total = sum(r.total for r in table_rows) or 1
    head = (f"{by:<28}{'forward':>10}{'bwd dX':>10}{'bwd dW':>10}{'other':>10}"
            f"{'total':>10}{'%':>7}{'bytes':>11}{'saved':>11}")
    shares = _time_shares(bill, by, depth) if time else None
    if shares is not None:
        head += f"{'time %':>8}"
    lines = [head, "-" * len(head)]
    for r in table_rows:
        lines.append(_line(r, total) + (f"{100 * shares.get(r.key, 0.0):>7.1f}%"
                                        if shares is not None else ""))
    t = Row("TOTAL")
    for r in table_rows:
        for f in ("forward", "backward_dx", "backward_dw", "recompute", "optimizer",
                  "tensor", "bytes", "saved_bytes"):
            setattr(t, f, getattr(t, f) + getattr(r, f))
    lines += ["-" * len(head), _line(t, total)]
    lines.append(
        f"tensor (matmul/conv) FLOPs {human(bill.flops(kind='tensor'))} = "
        f"{human(bill.macs())} MACs; transcendentals {human(bill.transcendentals())}")
    if bill.memory:
        lines.append(
            f"memory: peak live {human_bytes(bill.peak_bytes)}, peak saved for backward "
            f"{human_bytes(bill.saved_bytes_peak)}")
        at = bill.at_peak
        if bill.peak_bytes:
            lines.append(
                f"  at the peak: parameters {human_bytes(at['parameters'])}, gradients "
                f"{human_bytes(at['gradients'])}, optimizer state "
                f"{human_bytes(at['optimizer_state'])}, activations and temporaries "
                f"{human_bytes(at['activations'])} "
                f"(saved for backward {human_bytes(bill.saved_at_peak)})")
    unknown = bill.unknown_ops()
    if unknown:
        lines.append(
            f"!! UNKNOWN COST: {', '.join(unknown)} declared no cost and are billed as 0 "
            "FLOPs. Give the Function a cost() to bill it.")
    if rules:
        checks = bill.rules()
        if checks:
            lines.append("rule checks:")
            lines += [f"  - {c}" for c in checks]
    return "\n".join(lines)

def _time_shares(bill: Bill, by: str, depth: int | None) -> dict[str, float]:
    """Each row's share of the measured time of the bill's ops."""
    seconds: dict[str, float] = {}
    durations = bill.durations or [ev[L.END] - ev[L.START] for ev in bill.events]
    for ev, ns in zip(bill.events, durations, strict=True):
        key = _key(ev, by, depth)
        seconds[key] = seconds.get(key, 0.0) + ns
    total = sum(seconds.values()) or 1
    return {k: v / total for k, v in seconds.items()}


def _line(r: Row, total: int) -> str:
    name = r.key if len(r.key) <= 27 else r.key[:24] + "..."
    if r.unknown:
        name = (name[:25] + " !")
    other = r.recompute + r.optimizer
    return (f"{name:<28}{human(r.forward):>10}{human(r.backward_dx):>10}"
            f"{human(r.backward_dw):>10}{human(other):>10}{human(r.total):>10}"
            f"{100 * r.total / total:>6.1f}%{human_bytes(r.bytes):>11}"
            f"{human_bytes(r.saved_bytes):>11}")

