"""The seeds' rules of thumb, checked on a bill: each measured against its folklore value,
with the reason for any gap."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from flopgrad import ledger as L
from flopgrad.report.tables import human, human_bytes, rows

if TYPE_CHECKING:
    from flopgrad.report.bill import Bill


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


def skipped_dx(bill: Bill) -> list[dict]:
    """Contractions whose input needed no gradient, so backward never computed its dX.

    >>> import flopgrad as fg
    >>> W = fg.ones(4, 3, requires_grad=True)
    >>> with fg.profile() as bill:
    ...     (fg.ones(2, 4) @ W).sum().backward()
    >>> bill.skipped_dx()
    [{'op': 'matmul', 'slot': 0, 'scope': '', 'shape': (2, 4), 'flops': 48}]
    """
    flops: dict[tuple, int] = {}  # one entry per (op, slot, scope, shape), over all steps
    for ev, c in zip(bill.events, bill.costs(), strict=True):
        if ev[L.PHASE] == "forward" and ev[L.SKIPPED] and c[0]:
            for slot in ev[L.SKIPPED]:
                key = (ev[L.OP].name, slot, ev[L.SCOPE], ev[L.SHAPES][slot])
                flops[key] = flops.get(key, 0) + c[0]
    return [{"op": op, "slot": slot, "scope": scope, "shape": shape, "flops": f}
            for (op, slot, scope, shape), f in flops.items()]


def check(bill: Bill, params: int | None = None, tokens: int | None = None,
          time: bool = False) -> list[Rule]:
    """Check the seeds' rules of thumb on this run, each with the reason for any gap.
    time=True adds matmul's share of the measured time beside its share of FLOPs (off by
    default: measured times differ from run to run, the other rules do not).

    >>> import flopgrad as fg
    >>> W = fg.ones(4, 3, requires_grad=True)
    >>> with fg.profile() as bill:
    ...     (fg.ones(2, 4) @ W).sum().backward()
    >>> [(r.name, r.holds) for r in bill.rules()][:2]
    [('share of FLOPs in matmul', True), ('backward/forward FLOPs', False)]
    >>> bill.rules()[2].name
    'activations saved for backward, share of peak memory'
    """
    checks: list[Rule] = []
    fwd = bill.flops("forward")
    bwd = bill.flops("backward")
    work = fwd + bwd + bill.flops("recompute")
    if work:
        tensor = (bill.flops("forward", kind="tensor") + bill.flops("backward", kind="tensor")
                  + bill.flops("recompute", kind="tensor"))
        share = tensor / work
        others = sorted(
            ((r.total - r.tensor, r.key) for r in rows(bill, "op")
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
        tfwd = bill.flops("forward", kind="tensor")
        parts = []
        skipped = skipped_dx(bill)
        for s in skipped:
            where = f" in {s['scope']}" if s["scope"] else ""
            parts.append(f"the dX of {s['op']}{where} (input {s['slot']}, shape "
                         f"{s['shape']}) was never computed because that input needs no "
                         f"gradient, saving {human(s['flops'])} FLOPs")
        if tfwd:
            tbwd = bill.flops("backward", kind="tensor")
            parts.append(f"matmul FLOPs alone give {tbwd / tfwd:.3f}")
        ofwd = bill.flops("forward", kind="other")
        if ofwd:
            parts.append(f"elementwise/reduction ops cost "
                         f"{bill.flops('backward', kind='other') / ofwd:.2f}x their forward "
                         "in backward")
        checks.append(Rule("backward/forward FLOPs", ratio, 2.0, abs(ratio - 2) <= 0.1,
                           "; ".join(parts) if parts else "every layer computed dW and dX"))
    if bill.memory and bill.peak_bytes:
        checks.append(_memory_rule(bill))
    nonfinite = _nonfinite_rule(bill)
    if nonfinite is not None:
        checks.append(nonfinite)
    recompute = bill.flops("recompute")
    if recompute and work:
        checks.append(_recompute_rule(bill, recompute, fwd + bwd))
    if time and work:
        checks.append(_time_rule(bill, work))
    if tokens:
        n = params if params is not None else sum(bill.leaves.values())
        if n:
            per = (fwd + bwd) / (n * tokens)
            gap = ("matches: 2 FLOPs per parameter forward, 4 backward" if abs(per - 6) <= 0.3
                   else "non-matmul ops, attention's n_ctx terms, skipped dX and parameters "
                        "used without a matmul (biases, embeddings) move it off 6")
            checks.append(Rule("FLOPs per parameter per token", per, 6.0,
                               abs(per - 6) <= 0.3, f"{gap} (N = {n:,}, D = {tokens:,})"))
    return checks


def _memory_rule(bill: Bill) -> Rule:
    """Seed 004: the activations kept for backward are backprop's main memory cost."""
    m = bill.memory_breakdown()
    at = m["at_peak"]
    saved = m["saved_activations_at_peak"]
    state = at["parameters"] + at["gradients"] + at["optimizer_state"]
    share = saved / bill.peak_bytes
    where = f"phase {m['peak_phase']}" + (f", in {m['peak_scope']}" if m["peak_scope"] else "")
    reason = (f"at the peak ({human_bytes(bill.peak_bytes)}, {where}): "
              f"activations saved for backward {human_bytes(saved)}, weights "
              f"{human_bytes(at['parameters'])}, gradients {human_bytes(at['gradients'])}, "
              f"optimizer state {human_bytes(at['optimizer_state'])}, temporaries "
              f"{human_bytes(at['activations'] - saved)}")
    if saved <= state:
        reason += ("; weights, gradients and optimizer state outweigh the saved activations "
                   "(a small batch, or a step measured after the forward's values were freed)")
    return Rule("activations saved for backward, share of peak memory", share, 0.5,
                saved > state, reason)


def _recompute_rule(bill: Bill, recompute: int, work: int) -> Rule:
    """Checkpointing trades compute for memory: what it cost and what it did not keep."""
    share = recompute / work
    kept = sum(e["bytes"] for e in bill.saved() if e["op"] == "checkpoint")
    again = bill.ledger.recomputed_saved_bytes
    reason = (f"checkpointing cost {100 * share:.1f}% more FLOPs ({human(recompute)}) and "
              f"did not keep {human_bytes(again)} of saved values from the forward to the "
              f"backward (recomputed instead), keeping {human_bytes(kept)} of checkpoint "
              "inputs; recomputing every block's forward would cost about 1/3 of forward + "
              "backward (Chen et al. 2016)")
    return Rule("checkpointing: recompute FLOPs / (forward + backward)", share, 1 / 3,
                share <= 1 / 3 + 0.01, reason)


def _time_rule(bill: Bill, work: int) -> Rule:
    """Matmul's share of FLOPs against its share of the measured time: on small models the
    elementwise ops cost little arithmetic but as much Python and memory traffic per op."""
    ns = {id(ev): s for ev, s in zip(bill.events, _seconds(bill), strict=True)}
    total = tensor_time = 0.0
    for ev, c in zip(bill.events, bill.costs(), strict=True):
        if ev[L.PHASE] in ("forward", "backward", "recompute"):
            total += ns[id(ev)]
            if c[0]:
                tensor_time += ns[id(ev)]
    flops_share = sum(c[0] for ev, c in zip(bill.events, bill.costs(), strict=True)
                      if ev[L.PHASE] in ("forward", "backward", "recompute")) / work
    time_share = tensor_time / total if total else 0.0
    reason = (f"matmul/conv are {100 * flops_share:.1f}% of the FLOPs and "
              f"{100 * time_share:.1f}% of the time; "
              + ("the other ops' time is per-op overhead and memory traffic, not arithmetic"
                 if time_share < flops_share - 0.1 else "time follows the FLOPs"))
    return Rule("matmul's share of time beside its share of FLOPs", time_share, flops_share,
                abs(time_share - flops_share) <= 0.1, reason)


def _seconds(bill: Bill) -> list[float]:
    if bill.durations is None:
        return [(ev[L.END] - ev[L.START]) / 1e9 for ev in bill.events]
    return [d / 1e9 for d in bill.durations]


def nonfinite_gradients(bill: Bill) -> list[dict]:
    """The gradients the profile saw (every `.grad` that backward accumulated, through the
    ledger's on_grad) that hold NaN or inf, as they are when the bill is read; one dict
    each, in the order they were made. Needs memory tracking (the default); the ledger
    keeps shapes, not values, so the op that made them is not known (fg.detect_anomaly
    names it).

    >>> import flopgrad as fg
    >>> w = fg.tensor([0.0, 4.0], requires_grad=True)
    >>> with fg.profile() as bill:
    ...     w.sqrt().sum().backward()  # d sqrt(w)/dw at 0 is inf
    >>> bill.rules()[-1].name
    'gradients non-finite'
    >>> from flopgrad.report.rules import nonfinite_gradients
    >>> nonfinite_gradients(bill)
    [{'shape': (2,), 'dtype': 'float32', 'nan': 0, 'inf': 1, 'size': 2}]
    """
    found = []
    grads = L.CATEGORIES.index("gradients")
    for ref in list(bill.ledger._alive.values()):  # the live arrays the ledger tracks
        arr = ref()
        if (ref.category != grads or type(arr) is not np.ndarray
                or arr.dtype.kind not in "fcV" or np.isfinite(arr).all()):
            continue
        nan = int(np.count_nonzero(np.isnan(arr)))
        found.append({"shape": arr.shape, "dtype": str(arr.dtype), "nan": nan,
                      "inf": int(arr.size - np.count_nonzero(np.isfinite(arr))) - nan,
                      "size": int(arr.size)})
    return found


def _nonfinite_rule(bill: Bill) -> Rule | None:
    """Gradients hold NaN or inf: a rule only when it happens (None otherwise)."""
    if not bill.memory:
        return None
    bad = nonfinite_gradients(bill)
    if not bad:
        return None
    first = bad[0]
    kinds = ", ".join(f"{first[k]} {name}" for k, name in (("nan", "NaN"), ("inf", "inf"))
                      if first[k])
    all_nan = all(g["nan"] == g["size"] for g in bad)
    reason = (f"{len(bad)} gradient(s) hold NaN or inf (first: shape {first['shape']} "
              f"{first['dtype']}, {kinds} of {first['size']} entries)"
              + ("; every entry is NaN, as when the loss itself is NaN" if all_nan else "")
              + "; the bill keeps shapes, not values: run the step under fg.detect_anomaly() "
              "to name the op and its line")
    return Rule("gradients non-finite", len(bad), 0, False, reason)
