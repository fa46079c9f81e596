"""The bill as files: a dict / JSON of exact integers, one CSV row per event, and a Chrome
trace (Perfetto) with the memory counters. Every file is written atomically."""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import asdict
from typing import TYPE_CHECKING

from flopgrad import ledger as L
from flopgrad.files import write_atomic
from flopgrad.ledger import attributed_op, role_of
from flopgrad.report.rules import check
from flopgrad.report.tables import rows

if TYPE_CHECKING:
    from flopgrad.report.bill import Bill


def to_dict(bill: Bill, events: bool = False) -> dict:
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
        totals[ph] = {k: bill.flops(ph, kind=k) for k in L.KINDS}
        totals[ph]["bytes"] = bill.bytes(ph)
        totals[ph]["transcendentals"] = bill.transcendentals(ph)
    totals["backward"]["dW"] = bill.flops("backward", role="weight")
    totals["backward"]["dX"] = bill.flops("backward", role="input")
    totals["all"] = {k: bill.flops(kind=k) for k in L.KINDS}
    totals["all"]["macs"] = bill.macs()
    totals["all"]["bytes"] = bill.bytes()

    def grouped(by):
        return [dict(asdict(r), total=r.total) for r in rows(bill, by)]

    d = {
        "totals": totals,
        "by_op": grouped("op"),
        "by_scope": grouped("scope"),
        "by_phase": grouped("phase"),
        "memory": {"tracked": bill.memory, "peak_bytes": bill.peak_bytes,
                   "saved_bytes_peak": bill.saved_bytes_peak,
                   "live_bytes": bill.live_bytes, **bill.memory_breakdown()},
        "saved": bill.saved(),
        "unknown_ops": bill.unknown_ops(),
        "rules": [asdict(r) for r in check(bill)],
    }
    if events:
        d["events"] = event_rows(bill)
    return d


def event_rows(bill: Bill) -> list[dict]:
    """One dict per executed primitive, in execution order.

    >>> import flopgrad as fg
    >>> W = fg.ones(4, 3, requires_grad=True)
    >>> with fg.profile() as bill:
    ...     (fg.ones(2, 4) @ W).sum().backward()
    >>> [(r["phase"], r["primitive"], r["tensor_flops"]) for r in bill.event_rows()][:3]
    [('forward', 'matmul', 48), ('forward', 'sum', 0), ('backward', 'expand', 0)]
    """
    out = []
    for k, (ev, c) in enumerate(zip(bill.events, bill.costs(), strict=True)):
        grad_of = ev[L.GRAD_OF] if ev[L.PHASE] == "backward" else None
        if bill.counts is not None:  # aggregated: a distinct event, its count and time
            timing = {"count": bill.counts[k], "duration_ns": bill.durations[k],
                      "start_ns": None, "end_ns": None}
        else:
            timing = {"start_ns": ev[L.START] - bill.t0, "end_ns": ev[L.END] - bill.t0}
        out.append({
            "index": k, "phase": ev[L.PHASE], "primitive": ev[L.OP].name,
            "op": attributed_op(ev), "slot": grad_of[1] if grad_of else None,
            "role": role_of(ev) if ev[L.PHASE] == "backward" else None,
            "scope": ev[L.SCOPE], "in_shapes": [list(s) for s in ev[L.SHAPES]],
            "out_shape": list(ev[L.OUT_SHAPE]), "tensor_flops": c[0], "other_flops": c[1],
            "transcendentals": c[2], "bytes": c[3], "unknown_cost": c[4], **timing,
        })
    return out


def to_json(bill: Bill, path: str | os.PathLike, events: bool = True) -> None:
    """Write to_dict() as JSON, atomically.

    >>> import json, pathlib, tempfile
    >>> import flopgrad as fg
    >>> with fg.profile() as bill:
    ...     _ = fg.ones(2, 4) @ fg.ones(4, 3)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     bill.to_json(pathlib.Path(tmp) / "bill.json")
    ...     saved = json.loads((pathlib.Path(tmp) / "bill.json").read_text())
    >>> saved["totals"]["all"]["tensor"]
    48
    """
    write_atomic(path, json.dumps(to_dict(bill, events=events), indent=1))


def to_csv(bill: Bill, path: str | os.PathLike) -> None:
    """Write one CSV row per executed primitive, atomically.

    >>> import csv, io, os, tempfile
    >>> import flopgrad as fg
    >>> with fg.profile() as bill:
    ...     _ = fg.ones(3) * 2
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     bill.to_csv(os.path.join(tmp, "bill.csv"))
    ...     text = open(os.path.join(tmp, "bill.csv")).read()
    >>> [(r["primitive"], r["other_flops"]) for r in csv.DictReader(io.StringIO(text))]
    [('mul', '3')]
    """
    records = event_rows(bill)
    buf = io.StringIO()
    fields = ["index", "phase", "primitive", "op", "slot", "role", "scope", "in_shapes",
              "out_shape", "tensor_flops", "other_flops", "transcendentals", "bytes",
              "unknown_cost", "start_ns", "end_ns"]
    if bill.counts is not None:
        fields += ["count", "duration_ns"]
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    for r in records:
        w.writerow({**r, "in_shapes": json.dumps(r["in_shapes"]),
                    "out_shape": json.dumps(r["out_shape"])})
    write_atomic(path, buf.getvalue())


def to_chrome_trace(bill: Bill, path: str | os.PathLike) -> None:
    """Write a trace for Perfetto / chrome://tracing: ops on a timeline, memory counters.

    >>> import json, tempfile
    >>> import flopgrad as fg
    >>> with fg.profile() as bill:
    ...     _ = fg.ones(2, 4) @ fg.ones(4, 3)
    >>> with tempfile.NamedTemporaryFile(suffix=".json") as f:
    ...     bill.to_chrome_trace(f.name)
    ...     kinds = {e["ph"] for e in json.load(open(f.name))["traceEvents"]}
    >>> sorted(kinds)
    ['C', 'M', 'X']
    """
    if bill.counts is not None:
        raise ValueError("to_chrome_trace: this bill was profiled with events=False, so it "
                         "kept no timeline; profile with fg.profile() (events=True) for a "
                         "trace")
    tids = {ph: i + 1 for i, ph in enumerate(L.PHASES)}
    trace = [{"name": "thread_name", "ph": "M", "pid": 1, "tid": tid,
              "args": {"name": ph}} for ph, tid in tids.items()]
    for r in event_rows(bill):
        name = r["primitive"] if r["phase"] != "backward" else (
            f"{r['primitive']} (d{r['op']}[{r['slot']}] {r['role']})")
        trace.append({
            "name": name, "cat": r["phase"], "ph": "X", "pid": 1, "tid": tids[r["phase"]],
            "ts": r["start_ns"] / 1000, "dur": max(r["end_ns"] - r["start_ns"], 1) / 1000,
            "args": {k: r[k] for k in ("op", "scope", "in_shapes", "out_shape",
                                       "tensor_flops", "other_flops", "bytes")},
        })
    for row in bill.timeline():  # counter tracks: the memory curve and its breakdown
        ts = row["time_ns"] / 1000
        trace.append({"name": "memory", "ph": "C", "pid": 1, "ts": ts,
                      "args": {"live_bytes": row["live_bytes"],
                               "saved_bytes": row["saved_bytes"]}})
        trace.append({"name": "memory by category", "ph": "C", "pid": 1, "ts": ts,
                      "args": {k: row[k] for k in ("parameters", "gradients", "optimizer_state",
                                                   "saved_activations", "temporaries")}})
    write_atomic(path, json.dumps({"traceEvents": trace, "displayTimeUnit": "ns"}))


