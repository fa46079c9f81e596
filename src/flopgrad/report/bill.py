"""Bill: the queries over one profile's events (FLOPs, MACs, bytes, memory, saved arrays),
and `fg.profile()`, which makes one. Tables, rules and exports are views in the modules
beside this one."""

from __future__ import annotations

import os

from flopgrad import ledger as L
from flopgrad.ledger import Ledger, attributed_op, role_of
from flopgrad.report import export, html, roofline, rules, tables
from flopgrad.report.rules import Rule
from flopgrad.report.tables import Row, human

# the ledger's numbers, read through the bill (live while the profile is open)
_FROM_LEDGER = {
    "events": "The recorded events (tuples in flopgrad.ledger.Event order).",
    "counts": "With events=False: how many times each event ran, else None.",
    "durations": "With events=False: total ns per event, else None.",
    "memory": "Whether memory was tracked.",
    "t0": "perf_counter_ns() when the profile started.",
    "leaves": "id -> size of the leaves that required grad.",
    "live_bytes": "Bytes of tracked arrays alive now.",
    "peak_bytes": "The most bytes alive at once.",
    "saved_bytes": "Bytes saved for backward now.",
    "saved_bytes_peak": "The most bytes saved for backward.",
    "saved_at_peak": "Saved bytes when live bytes peaked.",
    "at_peak": "Live bytes by category when live bytes peaked.",
}


class Bill:
    """Exact FLOPs, bytes and memory of everything run inside `fg.profile()`.

    A Bill holds the Ledger that listened (`bill.ledger`) and reads its events; the
    numbers are live while the profile is open.

    >>> import flopgrad as fg
    >>> W = fg.randn(4, 3, requires_grad=True)
    >>> with fg.profile() as bill:
    ...     (fg.randn(2, 4) @ W).sum().backward()
    >>> bill.flops("forward", kind="tensor"), bill.flops("backward", role="weight", kind="tensor")
    (48, 48)
    """

    def __init__(self, ledger: Ledger):
        self.ledger = ledger


    def costs(self) -> list[tuple]:
        """(tensor FLOPs, other FLOPs, transcendentals, bytes, unknown) for every event."""
        return self.ledger.costs()

    def timeline(self) -> list[dict]:
        """The step's memory curve: one row per change of live or saved bytes, with the op
        index, time, phase and scope, the live bytes and their breakdown (parameters,
        gradients, optimizer state, saved activations, temporaries). Empty with
        events=False.

        >>> import flopgrad as fg
        >>> w = fg.nn.Parameter(fg.ones(64, 64))
        >>> with fg.profile() as bill:
        ...     (fg.ones(8, 64) @ w).tanh().sum().backward()
        >>> peak = max(bill.timeline(), key=lambda r: r["live_bytes"])
        >>> peak["live_bytes"] == bill.peak_bytes, peak["phase"]
        (True, 'backward')
        >>> parts = ("parameters", "gradients", "optimizer_state", "saved_activations",
        ...          "temporaries")
        >>> sum(peak[k] for k in parts) == peak["live_bytes"], peak["parameters"]
        (True, 16384)
        """
        rows = []
        for point in self.ledger.timeline:
            p = L.TimelinePoint._make(point)
            rows.append({
                "op_index": p.op_index, "time_ns": p.time_ns - self.t0, "phase": p.phase,
                "scope": p.scope, "live_bytes": p.live_bytes, "saved_bytes": p.saved_bytes,
                "parameters": p.parameters, "gradients": p.gradients,
                "optimizer_state": p.optimizer_state,
                "saved_activations": p.saved_activation_bytes,
                "temporaries": p.activations - p.saved_activation_bytes})
        return rows

    def memory_breakdown(self) -> dict:
        """Live bytes by category: at the peak, each category's own peak, and now.

        Categories: parameters and their gradients, optimizer state, and activations (every
        other array an op or a factory made; `saved_at_peak` is how much of the peak was
        kept for backward). Arrays made before the profile count once an op touches them
        (parameters) or the optimizer steps them (its state).

        >>> import flopgrad as fg
        >>> w = fg.nn.Parameter(fg.ones(256))          # 1 KiB, made before the profile
        >>> opt = fg.optim.Adam([w], lr=0.1)
        >>> with fg.profile() as bill:
        ...     (w * w).sum().backward(); opt.step()
        >>> m = bill.memory_breakdown()["peak_by_category"]
        >>> m["parameters"], m["gradients"], m["optimizer_state"]
        (1024, 1024, 2048)
        """
        return self.ledger.memory_breakdown()

    # ------------------------------------------------------------ queries
    def _rows(self, phase=None, role=None, op=None, scope=None):
        for ev, c in zip(self.events, self.costs(), strict=True):
            if phase is not None and ev[L.PHASE] != phase:
                continue
            if role is not None and (ev[L.PHASE] != "backward" or role_of(ev) != role):
                continue
            if op is not None and attributed_op(ev) != op:
                continue
            if scope is not None and not (ev[L.SCOPE] == scope
                                          or ev[L.SCOPE].startswith(scope + ".")):
                continue
            yield ev, c

    @staticmethod
    def _check(phase, role, kind) -> None:
        if phase is not None and phase not in L.PHASES:
            raise ValueError(f"phase must be one of {L.PHASES} or None, got {phase!r}")
        if role is not None and role not in L.ROLES:
            raise ValueError(f"role must be one of {L.ROLES} or None, got {role!r}")
        if kind not in L.KINDS:
            raise ValueError(f"kind must be one of {L.KINDS}, got {kind!r}")

    def flops(self, phase: str | None = None, role: str | None = None, kind: str = "all",
              op: str | None = None, scope: str | None = None) -> int:
        """FLOPs of the selected events.

        phase: "forward", "backward", "recompute", "optimizer" or None (all).
        role: "weight" (dW) or "input" (dX); backward events only.
        kind: "all", "tensor" (matmul/conv/einsum contractions) or "other".
        op: the op a line is billed to (for backward work, the forward op whose gradient
        it computes). scope: a dotted scope path, matching nested scopes too.
        """
        self._check(phase, role, kind)
        total = 0
        for _, c in self._rows(phase, role, op, scope):
            if kind == "all":
                total += c[0] + c[1]
            elif kind == "tensor":
                total += c[0]
            else:
                total += c[1]
        return total

    def macs(self, phase: str | None = None, role: str | None = None, op: str | None = None,
             scope: str | None = None) -> int:
        """Multiply-accumulates of the tensor FLOPs (tensor FLOPs / 2), as fvcore/thop count."""
        return self.flops(phase, role, "tensor", op, scope) // 2

    def bytes(self, phase: str | None = None, role: str | None = None, op: str | None = None,
              scope: str | None = None) -> int:
        """Bytes read plus written by the selected events (views move nothing)."""
        self._check(phase, role, "all")
        return sum(c[3] for _, c in self._rows(phase, role, op, scope))

    def transcendentals(self, phase: str | None = None, role: str | None = None,
                        op: str | None = None, scope: str | None = None) -> int:
        """Count of exp/log/tanh/erf/sqrt/... evaluations among the selected events."""
        self._check(phase, role, "all")
        return sum(c[2] for _, c in self._rows(phase, role, op, scope))

    def backward_forward_ratio(self, kind: str = "all") -> float:
        """Backward FLOPs divided by forward FLOPs."""
        fwd = self.flops("forward", kind=kind)
        if fwd == 0:
            raise ValueError("backward_forward_ratio: no forward FLOPs were billed")
        return self.flops("backward", kind=kind) / fwd

    def unknown_ops(self) -> list[str]:
        """Names of ops that declared no cost (billed as zero, flagged in every report)."""
        return sorted({ev[L.OP].name for ev in self.events if ev[L.OP].unknown_cost})

    def saved(self) -> list[dict]:
        """Every array saved for backward: op, input/output, shape, dtype, bytes, scope, line.

        `bytes` is the buffer's size the first time that buffer is saved and 0 when a later
        node saves the same buffer again (a view is not a copy); `array_bytes` is the view's.
        `phase` is "recompute" for values a checkpoint saved again in backward.
        """
        return self.ledger.saved_entries()

    def seconds(self, phase: str | None = None, role: str | None = None,
                op: str | None = None, scope: str | None = None) -> float:
        """Measured seconds of the selected events (flopgrad.report.roofline.seconds)."""
        return roofline.seconds(self, phase, role, op, scope)

    def roofline(self, machine=None, gpu: str | None = None):
        """Each op on this machine's roofline, or a GPU's (flopgrad.report.roofline)."""
        return roofline.roofline(self, machine, gpu)

    def saved_entries(self) -> list[dict]:
        """The same as saved()."""
        return self.ledger.saved_entries()

    # ------------------------------------------------------------ views
    def rows(self, by: str = "op", depth: int | None = None) -> list[Row]:
        """Table rows by "op", "scope", "layer" or "phase" (flopgrad.report.tables.rows)."""
        return tables.rows(self, by, depth)

    def table(self, by: str = "op", depth: int | None = None, rules: bool = True,
              time: bool = False) -> str:
        """A readable table ending with the rule checks (flopgrad.report.tables.table)."""
        return tables.table(self, by, depth, rules, time)

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        n_ops = len(self.events) if self.counts is None else sum(self.counts)
        return (f"<Bill {n_ops} ops, {human(self.flops())} FLOPs "
                f"(forward {human(self.flops('forward'))}, backward "
                f"{human(self.flops('backward'))})>")

    def skipped_dx(self) -> list[dict]:
        """Contractions whose dX backward never computed (flopgrad.report.rules)."""
        return rules.skipped_dx(self)

    def rules(self, params: int | None = None, tokens: int | None = None,
              time: bool = False) -> list[Rule]:
        """The seeds' rules of thumb checked on this run (flopgrad.report.rules.check)."""
        return rules.check(self, params, tokens, time)

    def to_dict(self, events: bool = False) -> dict:
        """Everything as exact integers (flopgrad.report.export.to_dict)."""
        return export.to_dict(self, events)

    def event_rows(self) -> list[dict]:
        """One dict per executed primitive (flopgrad.report.export.event_rows)."""
        return export.event_rows(self)

    def to_json(self, path: str | os.PathLike, events: bool = True) -> None:
        """Write to_dict() as JSON, atomically (flopgrad.report.export.to_json)."""
        export.to_json(self, path, events)

    def to_csv(self, path: str | os.PathLike) -> None:
        """Write one CSV row per primitive, atomically (flopgrad.report.export.to_csv)."""
        export.to_csv(self, path)

    def to_html(self, path: str | os.PathLike, title: str = "flopgrad bill",
                formulas: list[dict] | None = None, depth: int = 3) -> None:
        """Write one self-contained HTML page, atomically (flopgrad.report.html)."""
        html.to_html(self, path, title, formulas, depth)

    def plot(self, kind: str = "layers", path: str | os.PathLike | None = None,
             depth: int = 3):
        """A matplotlib Figure: "layers", "memory" or "roofline" (flopgrad.report.plot)."""
        from flopgrad.report import plot

        return plot.plot(self, kind, path, depth)

    def to_chrome_trace(self, path: str | os.PathLike) -> None:
        """Write a Perfetto / chrome://tracing trace (flopgrad.report.export)."""
        export.to_chrome_trace(self, path)


class profile:
    """Bill everything run inside: `with fg.profile() as bill: ...` (profiles may nest). A
    profile bills the ops of the thread that entered it.

    memory=True also tracks live and saved-for-backward bytes (a little slower), by category
    (parameters, gradients, optimizer state, activations). events=False aggregates for long
    runs: every distinct event is kept once with a count, and no memory timeline is kept,
    so the bill stays the size of one step (all totals, tables and rules are the same).

    >>> import flopgrad as fg
    >>> with fg.profile() as bill:
    ...     _ = fg.ones(1000, 1000) @ fg.ones(1000, 1000)
    >>> bill.flops(), bill.bytes()
    (2000000000, 12000000)
    """

    def __init__(self, memory: bool = True, events: bool = True):
        for name, value in (("memory", memory), ("events", events)):
            if not isinstance(value, bool | int) or value not in (0, 1):
                raise TypeError(f"profile: {name} must be True or False, got {value!r}")
        self.ledger = Ledger(memory=bool(memory), events=bool(events))
        self.bill = Bill(self.ledger)

    def __enter__(self) -> Bill:
        self.ledger.start()
        return self.bill

    def __exit__(self, *exc) -> bool:
        self.ledger.stop()
        return False


def _ledger_field(name: str, doc: str) -> property:
    return property(lambda self: getattr(self.ledger, name), doc=doc)


for _name, _doc in _FROM_LEDGER.items():
    setattr(Bill, _name, _ledger_field(_name, _doc))
