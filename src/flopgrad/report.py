"""The bill as people read it: tables, rule checks, JSON/CSV and Chrome-trace exports.

`fg.profile()` yields a `Bill`, a ledger with presentation on top. This module reads
ledger events; it never reaches into the engine.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import asdict, dataclass

from flopgrad import ledger as L
from flopgrad.files import write_atomic
from flopgrad.ledger import Ledger, attributed_op

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
class Rule:
    """One folklore claim checked on this run.

    >>> import flopgrad as fg
    >>> print(fg.Rule("backward/forward FLOPs", 2.0, 2.0, True, "dW and dX both ran"))
    backward/forward FLOPs: measured 2, folklore 2 (holds). dW and dX both ran
    """

    name: str
    measured: float
    folklore: float
    holds: bool
    reason: str

    def __str__(self) -> str:
        mark = "holds" if self.holds else "differs"
        return (f"{self.name}: measured {self.measured:.4g}, folklore {self.folklore:.4g} "
                f"({mark}). {self.reason}")


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


class Bill(Ledger):
    """Exact FLOPs, bytes and memory of everything run inside `fg.profile()`.

    >>> import flopgrad as fg
    >>> W = fg.randn(4, 3, requires_grad=True)
    >>> with fg.profile() as bill:
    ...     (fg.randn(2, 4) @ W).sum().backward()
    >>> bill.flops("forward", kind="tensor"), bill.flops("backward", role="weight", kind="tensor")
    (48, 48)
    """

    # ------------------------------------------------------------ tables
    def rows(self, by: str = "op", depth: int | None = None) -> list[Row]:
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
        for ev, c in zip(self.events, self.costs(), strict=True):
            key = self._key(ev, by, depth)
            row = rows.get(key)
            if row is None:
                row = rows[key] = Row(key)
            flops = c[0] + c[1]
            ph = ev[L.PHASE]
            if ph == "forward":
                row.forward += flops
            elif ph == "backward":
                if L._role(ev) == "weight":
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
            for e in self.saved_entries():
                key = e["op"] if by == "op" else self._scope_key(e["scope"], depth,
                                                                  by == "layer")
                if key in rows:
                    rows[key].saved_bytes += e["bytes"]
        return sorted(rows.values(), key=lambda r: -r.total)

    @staticmethod
    def _scope_key(path: str, depth: int | None, by_layer: bool = False) -> str:
        """The scope path cut at `depth`; with by_layer, block numbers become "*" so that
        every block's attention (say) adds up in one row."""
        if not path:
            return "(top level)"
        parts = path.split(".")
        if by_layer:
            parts = ["*" if p.isdigit() else p for p in parts]
        return ".".join(parts[:depth]) if depth else ".".join(parts)

    def _key(self, ev, by: str, depth: int | None) -> str:
        if by == "phase":
            return ev[L.PHASE]
        if by in ("scope", "layer"):
            return self._scope_key(ev[L.SCOPE], depth, by == "layer")
        if ev[L.PHASE] == "optimizer":
            return "(optimizer)"
        name = attributed_op(ev)
        return f"{name} (recompute)" if ev[L.PHASE] == "recompute" else name

    def table(self, by: str = "op", depth: int | None = None, rules: bool = True) -> str:
        """A readable table (human units) ending with the rule checks.

        by: "op", "scope" (module path, cut at `depth`), "layer" (like scope, with block
        numbers merged: blocks.*.attn) or "phase".

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
        rows = self.rows(by, depth)
        total = sum(r.total for r in rows) or 1
        head = (f"{by:<28}{'forward':>10}{'bwd dX':>10}{'bwd dW':>10}{'other':>10}"
                f"{'total':>10}{'%':>7}{'bytes':>11}{'saved':>11}")
        lines = [head, "-" * len(head)]
        for r in rows:
            lines.append(self._line(r, total))
        t = Row("TOTAL")
        for r in rows:
            for f in ("forward", "backward_dx", "backward_dw", "recompute", "optimizer",
                      "tensor", "bytes", "saved_bytes"):
                setattr(t, f, getattr(t, f) + getattr(r, f))
        lines += ["-" * len(head), self._line(t, total)]
        lines.append(
            f"tensor (matmul/conv) FLOPs {human(self.flops(kind='tensor'))} = "
            f"{human(self.macs())} MACs; transcendentals {human(self.transcendentals())}")
        if self.memory:
            lines.append(
                f"memory: peak live {human_bytes(self.peak_bytes)}, peak saved for backward "
                f"{human_bytes(self.saved_bytes_peak)}")
            at = self.at_peak
            if self.peak_bytes:
                lines.append(
                    f"  at the peak: parameters {human_bytes(at['parameters'])}, gradients "
                    f"{human_bytes(at['gradients'])}, optimizer state "
                    f"{human_bytes(at['optimizer_state'])}, activations and temporaries "
                    f"{human_bytes(at['activations'])} "
                    f"(saved for backward {human_bytes(self.saved_at_peak)})")
        unknown = self.unknown_ops()
        if unknown:
            lines.append(
                f"!! UNKNOWN COST: {', '.join(unknown)} declared no cost and are billed as 0 "
                "FLOPs. Give the Function a cost() to bill it.")
        if rules:
            checks = self.rules()
            if checks:
                lines.append("rule checks:")
                lines += [f"  - {c}" for c in checks]
        return "\n".join(lines)

    @staticmethod
    def _line(r: Row, total: int) -> str:
        name = r.key if len(r.key) <= 27 else r.key[:24] + "..."
        if r.unknown:
            name = (name[:25] + " !")
        other = r.recompute + r.optimizer
        return (f"{name:<28}{human(r.forward):>10}{human(r.backward_dx):>10}"
                f"{human(r.backward_dw):>10}{human(other):>10}{human(r.total):>10}"
                f"{100 * r.total / total:>6.1f}%{human_bytes(r.bytes):>11}"
                f"{human_bytes(r.saved_bytes):>11}")

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        n_ops = len(self.events) if self.counts is None else sum(self.counts)
        return (f"<Bill {n_ops} ops, {human(self.flops())} FLOPs "
                f"(forward {human(self.flops('forward'))}, backward "
                f"{human(self.flops('backward'))})>")

    # ------------------------------------------------------------ rules of thumb
    def skipped_dx(self) -> list[dict]:
        """Contractions whose input needed no gradient, so backward never computed its dX.

        >>> import flopgrad as fg
        >>> W = fg.ones(4, 3, requires_grad=True)
        >>> with fg.profile() as bill:
        ...     (fg.ones(2, 4) @ W).sum().backward()
        >>> bill.skipped_dx()
        [{'op': 'matmul', 'slot': 0, 'scope': '', 'shape': (2, 4), 'flops': 48}]
        """
        flops: dict[tuple, int] = {}  # one entry per (op, slot, scope, shape), over all steps
        for ev, c in zip(self.events, self.costs(), strict=True):
            if ev[L.PHASE] == "forward" and ev[L.SKIPPED] and c[0]:
                for slot in ev[L.SKIPPED]:
                    key = (ev[L.OP].name, slot, ev[L.SCOPE], ev[L.SHAPES][slot])
                    flops[key] = flops.get(key, 0) + c[0]
        return [{"op": op, "slot": slot, "scope": scope, "shape": shape, "flops": f}
                for (op, slot, scope, shape), f in flops.items()]

    def rules(self, params: int | None = None, tokens: int | None = None) -> list[Rule]:
        """Check the seeds' rules of thumb on this run, each with the reason for any gap.

        >>> import flopgrad as fg
        >>> W = fg.ones(4, 3, requires_grad=True)
        >>> with fg.profile() as bill:
        ...     (fg.ones(2, 4) @ W).sum().backward()
        >>> [(r.name, r.holds) for r in bill.rules()]
        [('share of FLOPs in matmul', True), ('backward/forward FLOPs', False)]
        """
        checks: list[Rule] = []
        fwd = self.flops("forward")
        bwd = self.flops("backward")
        work = fwd + bwd + self.flops("recompute")
        if work:
            tensor = (self.flops("forward", kind="tensor") + self.flops("backward", kind="tensor")
                      + self.flops("recompute", kind="tensor"))
            share = tensor / work
            others = sorted(
                ((r.total - r.tensor, r.key) for r in self.rows("op")
                 if r.key != "(optimizer)" and r.total - r.tensor > 0), reverse=True)[:3]
            reason = ("matmul/conv contractions are the bulk of the work"
                      if share >= 0.9 else "elementwise and reduction ops are a large share")
            if others:
                reason += "; the rest is " + ", ".join(
                    f"{'bias adds in linear' if name == 'matmul' else name} {100 * f / work:.1f}%"
                    for f, name in others)
            checks.append(Rule("share of FLOPs in matmul", share, 1.0, share >= 0.9, reason))
        if fwd and bwd:
            ratio = bwd / fwd
            tfwd = self.flops("forward", kind="tensor")
            parts = []
            skipped = self.skipped_dx()
            for s in skipped:
                where = f" in {s['scope']}" if s["scope"] else ""
                parts.append(f"the dX of {s['op']}{where} (input {s['slot']}, shape "
                             f"{s['shape']}) was never computed because that input needs no "
                             f"gradient, saving {human(s['flops'])} FLOPs")
            if tfwd:
                tbwd = self.flops("backward", kind="tensor")
                parts.append(f"matmul FLOPs alone give {tbwd / tfwd:.3f}")
            ofwd = self.flops("forward", kind="other")
            if ofwd:
                parts.append(f"elementwise/reduction ops cost "
                             f"{self.flops('backward', kind='other') / ofwd:.2f}x their forward "
                             "in backward")
            checks.append(Rule("backward/forward FLOPs", ratio, 2.0, abs(ratio - 2) <= 0.1,
                               "; ".join(parts) if parts else "every layer computed dW and dX"))
        if tokens:
            n = params if params is not None else sum(self.leaves.values())
            if n:
                per = (fwd + bwd) / (n * tokens)
                gap = ("matches: 2 FLOPs per parameter forward, 4 backward" if abs(per - 6) <= 0.3
                       else "non-matmul ops, attention's n_ctx terms, skipped dX and parameters "
                            "used without a matmul (biases, embeddings) move it off 6")
                checks.append(Rule("FLOPs per parameter per token", per, 6.0,
                                   abs(per - 6) <= 0.3, f"{gap} (N = {n:,}, D = {tokens:,})"))
        return checks

    # ------------------------------------------------------------ exports
    def to_dict(self, events: bool = False) -> dict:
        """Everything as exact integers: totals, rows by op/scope/phase, memory, rules.

        >>> import flopgrad as fg
        >>> W = fg.ones(4, 3, requires_grad=True)
        >>> with fg.profile() as bill:
        ...     (fg.ones(2, 4) @ W).sum().backward()
        >>> bill.to_dict()["totals"]["all"]
        {'all': 101, 'tensor': 96, 'other': 5, 'macs': 48, 'bytes': 236}
        """
        totals = {}
        for ph in L.PHASES:
            totals[ph] = {k: self.flops(ph, kind=k) for k in L.KINDS}
            totals[ph]["bytes"] = self.bytes(ph)
            totals[ph]["transcendentals"] = self.transcendentals(ph)
        totals["backward"]["dW"] = self.flops("backward", role="weight")
        totals["backward"]["dX"] = self.flops("backward", role="input")
        totals["all"] = {k: self.flops(kind=k) for k in L.KINDS}
        totals["all"]["macs"] = self.macs()
        totals["all"]["bytes"] = self.bytes()

        def rows(by):
            return [dict(asdict(r), total=r.total) for r in self.rows(by)]

        d = {
            "totals": totals,
            "by_op": rows("op"),
            "by_scope": rows("scope"),
            "by_phase": rows("phase"),
            "memory": {"tracked": self.memory, "peak_bytes": self.peak_bytes,
                       "saved_bytes_peak": self.saved_bytes_peak,
                       "live_bytes": self.live_bytes, **self.memory_breakdown()},
            "saved": self.saved(),
            "unknown_ops": self.unknown_ops(),
            "rules": [asdict(r) for r in self.rules()],
        }
        if events:
            d["events"] = self.event_rows()
        return d

    def event_rows(self) -> list[dict]:
        """One dict per executed primitive, in execution order.

        >>> import flopgrad as fg
        >>> W = fg.ones(4, 3, requires_grad=True)
        >>> with fg.profile() as bill:
        ...     (fg.ones(2, 4) @ W).sum().backward()
        >>> [(r["phase"], r["primitive"], r["tensor_flops"]) for r in bill.event_rows()][:3]
        [('forward', 'matmul', 48), ('forward', 'sum', 0), ('backward', 'expand', 0)]
        """
        out = []
        for k, (ev, c) in enumerate(zip(self.events, self.costs(), strict=True)):
            grad_of = ev[L.GRAD_OF] if ev[L.PHASE] == "backward" else None
            if self.counts is not None:  # aggregated: a distinct event, its count and time
                timing = {"count": self.counts[k], "duration_ns": self.durations[k],
                          "start_ns": None, "end_ns": None}
            else:
                timing = {"start_ns": ev[L.START] - self.t0, "end_ns": ev[L.END] - self.t0}
            out.append({
                "index": k, "phase": ev[L.PHASE], "primitive": ev[L.OP].name,
                "op": attributed_op(ev), "slot": grad_of[1] if grad_of else None,
                "role": L._role(ev) if ev[L.PHASE] == "backward" else None,
                "scope": ev[L.SCOPE], "in_shapes": [list(s) for s in ev[L.SHAPES]],
                "out_shape": list(ev[L.OUT_SHAPE]), "tensor_flops": c[0], "other_flops": c[1],
                "transcendentals": c[2], "bytes": c[3], "unknown_cost": c[4], **timing,
            })
        return out

    def to_json(self, path: str | os.PathLike, events: bool = True) -> None:
        """Write to_dict() as JSON, atomically.

        >>> import json
        >>> import flopgrad as fg, os, tempfile
        >>> with fg.profile() as bill:
        ...     _ = fg.ones(2, 4) @ fg.ones(4, 3)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     bill.to_json(os.path.join(tmp, "bill.json"))
        ...     with open(os.path.join(tmp, "bill.json")) as f:
        ...         json.load(f)["totals"]["all"]["tensor"]
        48
        """
        write_atomic(path, json.dumps(self.to_dict(events=events), indent=1))

    def to_csv(self, path: str | os.PathLike) -> None:
        """Write one CSV row per executed primitive, atomically.

        >>> import csv
        >>> import flopgrad as fg, os, tempfile
        >>> with fg.profile() as bill:
        ...     _ = fg.ones(2, 4) @ fg.ones(4, 3)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     bill.to_csv(os.path.join(tmp, "bill.csv"))
        ...     with open(os.path.join(tmp, "bill.csv")) as f:
        ...         [(r["primitive"], r["tensor_flops"]) for r in csv.DictReader(f)]
        [('matmul', '48')]
        """
        rows = self.event_rows()
        buf = io.StringIO()
        fields = ["index", "phase", "primitive", "op", "slot", "role", "scope", "in_shapes",
                  "out_shape", "tensor_flops", "other_flops", "transcendentals", "bytes",
                  "unknown_cost", "start_ns", "end_ns"]
        if self.counts is not None:
            fields += ["count", "duration_ns"]
        w = csv.DictWriter(buf, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({**r, "in_shapes": json.dumps(r["in_shapes"]),
                        "out_shape": json.dumps(r["out_shape"])})
        write_atomic(path, buf.getvalue())

    def to_chrome_trace(self, path: str | os.PathLike) -> None:
        """Write a trace for Perfetto / chrome://tracing: ops on a timeline, memory counters.

        >>> import json
        >>> import flopgrad as fg, os, tempfile
        >>> with fg.profile() as bill:
        ...     _ = fg.ones(2, 4) @ fg.ones(4, 3)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     bill.to_chrome_trace(os.path.join(tmp, "trace.json"))
        ...     with open(os.path.join(tmp, "trace.json")) as f:
        ...         [e["name"] for e in json.load(f)["traceEvents"] if e["ph"] == "X"]
        ['matmul']
        """
        if self.counts is not None:
            raise ValueError("to_chrome_trace: this bill was profiled with events=False, so it "
                             "kept no timeline; profile with fg.profile() (events=True) for a "
                             "trace")
        tids = {ph: i + 1 for i, ph in enumerate(L.PHASES)}
        trace = [{"name": "thread_name", "ph": "M", "pid": 1, "tid": tid,
                  "args": {"name": ph}} for ph, tid in tids.items()]
        for r in self.event_rows():
            name = r["primitive"] if r["phase"] != "backward" else (
                f"{r['primitive']} (d{r['op']}[{r['slot']}] {r['role']})")
            trace.append({
                "name": name, "cat": r["phase"], "ph": "X", "pid": 1, "tid": tids[r["phase"]],
                "ts": r["start_ns"] / 1000, "dur": max(r["end_ns"] - r["start_ns"], 1) / 1000,
                "args": {k: r[k] for k in ("op", "scope", "in_shapes", "out_shape",
                                           "tensor_flops", "other_flops", "bytes")},
            })
        for t, live, saved in self.timeline:
            trace.append({"name": "memory", "ph": "C", "pid": 1, "ts": (t - self.t0) / 1000,
                          "args": {"live_bytes": live, "saved_bytes": saved}})
        write_atomic(path, json.dumps({"traceEvents": trace, "displayTimeUnit": "ns"}))


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
        self.bill = Bill(memory=bool(memory), events=bool(events))

    def __enter__(self) -> Bill:
        self.bill.start()
        return self.bill

    def __exit__(self, *exc) -> bool:
        self.bill.stop()
        return False
