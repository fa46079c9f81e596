"""Which blocks to checkpoint under a memory budget: the fewest recompute FLOPs whose step
peak fits, chosen exactly from two measured steps.

The planner runs the user's step twice: with no candidate checkpointed and with every
candidate checkpointed. From the two memory timelines it reads, for each block, the bytes
its forward leaves alive for backward (`retained`), and the highest live bytes inside its
forward and its backward relative to what the earlier blocks retain; outside the blocks,
the same relative highs. Because a block's own choice changes only its own terms and what
it retains, the peak of any subset is the largest of these terms plus the retained bytes
of the blocks before it, and a dynamic program over the blocks (states: retained bytes so
far, Pareto-pruned against recompute FLOPs) finds the optimal subset exactly. The chosen
plan is then run once more: `plan.peak_bytes` and `plan.recompute_flops` are measured,
and equal the predicted ones (a warning says so if the model of the step did not hold).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from flopgrad.nn.modules.container import ModuleList
from flopgrad.nn.utils import checkpoint_modules
from flopgrad.report import profile
from flopgrad.report.tables import human, human_bytes

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "pb": 10**15,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "pib": 2**50}


def parse_bytes(budget: int | float | str) -> int:
    """Bytes from an int or a string with a unit (KB/MB/GB/TB are powers of 1000, KiB/MiB/
    GiB/TiB of 1024).

    >>> from flopgrad.planning.checkpoint import parse_bytes
    >>> parse_bytes("2.5GiB"), parse_bytes("80GB"), parse_bytes(1024)
    (2684354560, 80000000000, 1024)
    """
    if isinstance(budget, bool):
        raise TypeError("memory budget: expected bytes (an int) or a string such as '2.5GiB'")
    if isinstance(budget, int | float):
        value = budget
    elif isinstance(budget, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", budget)
        if m is None or m.group(2).lower() not in _UNITS:
            raise ValueError(f"memory budget: cannot read {budget!r}; write bytes with a unit, "
                             "e.g. '80GiB', '2.5GB' or '512MiB'")
        value = float(m.group(1)) * _UNITS[m.group(2).lower()]
    else:
        raise TypeError(f"memory budget: expected bytes (an int) or a string such as '2.5GiB', "
                        f"got {type(budget).__name__}")
    if not value > 0:
        raise ValueError(f"memory budget: must be positive, got {budget!r}")
    return int(value)


class CheckpointBudgetError(ValueError):
    """No set of checkpointed candidates fits the step in the memory budget."""


@dataclass
class Candidate:
    """One block the planner may checkpoint, measured in the two runs."""

    path: str
    recompute_flops: int  # what checkpointing it re-runs in backward
    retained: tuple[int, int]  # bytes its forward leaves for backward: (plain, checkpointed)
    forward_high: tuple[int, int]  # highest live bytes inside its forward, less the earlier
    backward_high: tuple[int, int]  # blocks' retained bytes; and inside its backward
    parameter_bytes: int = 0  # its parameters (first touched in its forward: in retained)

    @property
    def kept_activations(self) -> tuple[int, int]:
        """Activation bytes its forward keeps for backward: (plain, checkpointed)."""
        return (self.retained[0] - self.parameter_bytes, self.retained[1] - self.parameter_bytes)


@dataclass
class CheckpointPlan:
    """The planner's choice: which modules to checkpoint, and the peak and FLOPs it gives.

    `peak_bytes` and `recompute_flops` are measured on a run of the step with the plan
    applied; `predicted_peak_bytes` is what the planner's model of the step predicted.
    """

    modules: list[str]
    peak_bytes: int
    recompute_flops: int
    baseline_peak_bytes: int
    baseline_flops: int
    budget: int
    predicted_peak_bytes: int
    candidates: list[Candidate] = field(repr=False, default_factory=list)
    _model: _StepModel | None = field(repr=False, default=None)

    def predict(self, modules: Sequence[str]) -> tuple[int, int]:
        """(peak bytes, recompute FLOPs) the step would have with these candidates
        checkpointed, from the planner's two measured runs."""
        unknown = [m for m in modules if m not in self._model.paths]
        if unknown:
            raise ValueError(f"predict: {unknown[0]!r} is not one of the plan's candidates")
        return self._model.peak(list(modules)), self._model.cost(list(modules))

    def apply(self, model) -> list[str]:
        """Checkpoint the plan's modules of `model` (and no others) from now on."""
        return checkpoint_modules(model, self.modules)

    @property
    def flops(self) -> int:
        """FLOPs of the step with the plan: the baseline plus the recompute."""
        return self.baseline_flops + self.recompute_flops

    def table(self) -> str:
        """The plan as text: totals before and after, then one line per candidate."""
        chosen = set(self.modules)
        lines = [
            f"checkpoint plan under {human_bytes(self.budget)}: {len(self.modules)} of "
            f"{len(self.candidates)} candidates",
            f"  peak memory {human_bytes(self.baseline_peak_bytes)} -> "
            f"{human_bytes(self.peak_bytes)}; FLOPs {human(self.baseline_flops)} -> "
            f"{human(self.flops)} (+{100 * self.recompute_flops / max(self.baseline_flops, 1):.1f}%"
            f" recompute)",
            f"  {'module':<28}{'checkpoint':>11}{'recompute':>11}{'kept plain':>12}"
            f"{'kept ckpt':>12}   (activations kept from forward to backward)",
        ]
        for c in self.candidates:
            kept = c.kept_activations
            lines.append(f"  {c.path:<28}{'yes' if c.path in chosen else 'no':>11}"
                         f"{human(c.recompute_flops):>11}{human_bytes(kept[0]):>12}"
                         f"{human_bytes(kept[1]):>12}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def default_candidates(model) -> list[str]:
    """The repeated blocks of a model (the entries of its ModuleLists), else its direct
    children.

    >>> import flopgrad as fg
    >>> cfg = fg.models.GPTConfig(n_layer=2, n_head=2, d_model=16, ctx=8, vocab=32)
    >>> default_candidates(fg.models.GPT(cfg))
    ['blocks.0', 'blocks.1']
    """
    found = [f"{path}.{k}" if path else k for path, m in model.named_modules()
             if isinstance(m, ModuleList) for k in m._modules]
    return found or [name for name in model._modules if model._modules[name] is not None]


def plan_checkpoints(model, step: Callable, budget: int | str,
                     candidates: Sequence[str] | None = None) -> CheckpointPlan:
    """Choose the modules to checkpoint so that `step(model)`'s peak live bytes fit in
    `budget` with the fewest recompute FLOPs (exact, for the candidates given).

    `step(model)` runs one forward and backward (as training would); it is run three times
    (without checkpoints, with all candidates, with the plan), gradients reset before each.
    Candidates default to the model's repeated blocks (its ModuleLists' entries), else its
    direct children; they must run one after another in the forward.

    >>> import flopgrad as fg
    >>> fg.manual_seed(0)
    >>> block = lambda: fg.nn.Sequential(fg.nn.Linear(64, 64), fg.nn.Tanh(),
    ...                                  fg.nn.Linear(64, 64), fg.nn.Tanh())
    >>> net = fg.nn.Sequential(*[block() for _ in range(4)])
    >>> step = lambda m: m(fg.randn(256, 64)).sum().backward()
    >>> roomy = fg.plan_checkpoints(net, step, "1GiB")      # everything fits: nothing to do
    >>> roomy.modules, roomy.recompute_flops
    ([], 0)
    >>> tight = fg.plan_checkpoints(net, step, roomy.peak_bytes - 100_000)
    >>> tight.modules, tight.peak_bytes <= tight.budget, tight.recompute_flops
    (['0', '1'], True, 8519680)
    >>> tight.peak_bytes == tight.predicted_peak_bytes
    True
    """
    budget = parse_bytes(budget)
    paths = list(default_candidates(model) if candidates is None else candidates)
    _check_candidates(model, paths)
    before = [p for p, m in model.named_modules() if p and m._checkpointed]
    try:
        checkpoint_modules(model, [p for p in before if p not in paths])
        plain = _measure(model, step)
        checkpoint_modules(model, sorted(set(before) - set(paths)) + paths)
        ckpt = _measure(model, step)
        model_ = _StepModel(paths, plain, ckpt, dict(model.named_modules()))
        chosen = model_.cheapest(budget)
        if chosen is None:
            lowest = model_.lowest_peak()
            checkpoint_modules(model, [p for p in before if p not in paths] + lowest[1])
            raise CheckpointBudgetError(_no_fit_message(budget, lowest, _measure(model, step)))
        checkpoint_modules(model, [p for p in before if p not in paths] + chosen)
        run = _measure(model, step)
    finally:
        checkpoint_modules(model, before)
    predicted = model_.peak(chosen)
    plan = CheckpointPlan(chosen, run.peak_bytes, run.flops("recompute"), plain.peak_bytes,
                          plain.flops(), budget, predicted, model_.candidates, model_)
    if predicted != run.peak_bytes or plan.recompute_flops != model_.cost(chosen):
        warnings.warn(f"plan_checkpoints: the plan's measured peak {run.peak_bytes:,} B differs "
                      f"from the predicted {predicted:,} B: the candidates do not run as a "
                      "chain of blocks one after another; plan.peak_bytes is the measured one",
                      stacklevel=2)
    return plan


def _check_candidates(model, paths: list[str]) -> None:
    if not paths:
        raise ValueError("plan_checkpoints: no candidate modules; pass candidates=[...] "
                         "(paths from model.named_modules())")
    known = dict(model.named_modules())
    for p in paths:
        if p not in known or not p:
            raise ValueError(f"plan_checkpoints: no submodule {p!r} in {type(model).__name__}")
    for a in paths:
        for b in paths:
            if a != b and b.startswith(a + "."):
                raise ValueError(f"plan_checkpoints: candidates {a!r} and {b!r} are nested; "
                                 "give blocks that do not contain one another")
    if len(set(paths)) != len(paths):
        raise ValueError("plan_checkpoints: a candidate is listed twice")


def _measure(model, step: Callable):
    for p in model.parameters():
        p.grad = None
    with profile() as bill:
        step(model)
    for p in model.parameters():
        p.grad = None
    if not bill.timeline():
        raise ValueError("plan_checkpoints: step(model) allocated nothing; it must run the "
                         "model's forward and backward")
    return bill


class _StepModel:
    """The peak of a step as a function of the checkpointed subset, from two runs."""

    def __init__(self, paths: list[str], plain, ckpt, modules: dict):
        self.paths = paths
        self.n = len(paths)
        a, b = _terms(paths, plain), _terms(paths, ckpt)
        self.retained = list(zip(a["retained"], b["retained"], strict=True))
        self.inside = [(max(a["fwd"][k], a["bwd"][k]), max(b["fwd"][k], b["bwd"][k]))
                       for k in range(self.n)]
        self.outside = [max(a["out"][p], b["out"][p]) for p in range(self.n + 1)]
        self.flops = [ckpt.flops("recompute", scope=p) for p in paths]
        self.candidates = [
            Candidate(p, self.flops[k], self.retained[k], (a["fwd"][k], b["fwd"][k]),
                      (a["bwd"][k], b["bwd"][k]),
                      sum(q._data.nbytes for q in modules[p].parameters()))
            for k, p in enumerate(paths)]

    def cost(self, chosen: list[str]) -> int:
        return sum(self.flops[self.paths.index(p)] for p in chosen)

    def peak(self, chosen: list[str]) -> int:
        on = {self.paths.index(p) for p in chosen}
        prefix, high = 0, self.outside[0]
        for k in range(self.n):
            c = int(k in on)
            high = max(high, prefix + self.inside[k][c], prefix + self.outside[k])
            prefix += self.retained[k][c]
        return max(high, prefix + self.outside[self.n])

    def cheapest(self, budget: int) -> list[str] | None:
        """The subset of least recompute FLOPs (then least peak) whose peak fits."""
        states = {0: (0, 0, ())}  # retained so far -> (recompute FLOPs, high so far, choice)
        for k in range(self.n):
            nxt: dict = {}
            for prefix, (cost, high, chosen) in states.items():
                if prefix + self.outside[k] > budget:
                    continue
                for c in (0, 1):
                    term = prefix + max(self.inside[k][c], self.outside[k])
                    if term > budget:
                        continue
                    key = prefix + self.retained[k][c]
                    value = (cost + c * self.flops[k], max(high, term),
                             chosen + ((k,) if c else ()))
                    if key not in nxt or value[:2] < nxt[key][:2]:
                        nxt[key] = value
            states = _pareto(nxt)
        best = None
        for prefix, (cost, high, chosen) in states.items():
            high = max(high, prefix + self.outside[self.n])
            if high <= budget and (best is None or (cost, high) < best[:2]):
                best = (cost, high, chosen)
        return None if best is None else [self.paths[k] for k in best[2]]

    def lowest_peak(self) -> tuple[int, list[str]]:
        """The smallest peak any subset reaches, and the subset."""
        states = {0: (self.outside[0], ())}  # retained so far -> (high so far, choice)
        for k in range(self.n):
            nxt: dict = {}
            for prefix, (high, chosen) in states.items():
                for c in (0, 1):
                    term = max(high, prefix + max(self.inside[k][c], self.outside[k]))
                    key = prefix + self.retained[k][c]
                    if key not in nxt or term < nxt[key][0]:
                        nxt[key] = (term, chosen + ((k,) if c else ()))
            kept, best = {}, None
            for key in sorted(nxt):
                if best is None or nxt[key][0] < best:
                    kept[key], best = nxt[key], nxt[key][0]
            states = kept
        high, chosen = min((max(h, p + self.outside[self.n]), c) for p, (h, c) in states.items())
        return high, [self.paths[k] for k in chosen]


def _pareto(states: dict) -> dict:
    """Keep a state only if no state with fewer retained bytes is as cheap."""
    kept, best = {}, None
    for key in sorted(states):
        value = states[key]
        if best is None or value[:2] < best:
            kept[key], best = value, value[:2]
    return kept


def _terms(paths: list[str], bill) -> dict:
    """Per block: retained bytes and the highs of its forward and backward relative to the
    earlier blocks' retained bytes; per position between blocks: the high outside them."""
    n = len(paths)
    rows = bill.timeline()
    block_of: dict[str, int] = {}

    def which(scope: str) -> int:
        k = block_of.get(scope)
        if k is None:
            k = next((i for i, p in enumerate(paths) if scope == p or scope.startswith(p + ".")),
                     -1)
            block_of[scope] = k
        return k

    first, last = [None] * n, [None] * n
    for i, r in enumerate(rows):
        if r["phase"] == "forward":
            k = which(r["scope"])
            if k >= 0:
                if first[k] is None:
                    first[k] = i
                last[k] = i
    missing = [paths[k] for k in range(n) if first[k] is None]
    if missing:
        raise ValueError(f"plan_checkpoints: candidate {missing[0]!r} allocated nothing in the "
                         "forward of step(model); give modules that the step runs")
    order = sorted(range(n), key=lambda k: first[k])
    if order != list(range(n)) or any(last[k] > first[k + 1] for k in range(n - 1)):
        raise ValueError("plan_checkpoints: the candidates must run one after another, each "
                         "once, in the order given (a chain of blocks); reorder them or pick "
                         "other modules")
    retained = []
    for k in range(n):
        start = rows[first[k] - 1]["live_bytes"] if first[k] else 0
        retained.append(rows[last[k]]["live_bytes"] - start)
    prefix = [0]
    for r in retained:
        prefix.append(prefix[-1] + r)
    fwd, bwd, out = [0] * n, [0] * n, [0] * (n + 1)
    done_forward, started_backward, in_backward = 0, n, False
    for r in rows:
        k = which(r["scope"])
        live = r["live_bytes"]
        # after the backward (the optimizer, the last frees) the blocks keep nothing
        in_backward = in_backward or r["phase"] != "forward"
        if not in_backward:
            if k >= 0:
                fwd[k] = max(fwd[k], live - prefix[k])
                done_forward = k + 1
            else:
                out[done_forward] = max(out[done_forward], live - prefix[done_forward])
        elif k >= 0:
            bwd[k] = max(bwd[k], live - prefix[k])
            started_backward = min(started_backward, k)
        else:
            p = started_backward
            out[p] = max(out[p], live - prefix[p])
    return {"retained": retained, "fwd": fwd, "bwd": bwd, "out": out}


def _no_fit_message(budget: int, lowest: tuple[int, list[str]], bill) -> str:
    high, chosen = lowest
    m = bill.memory_breakdown()
    at = m["at_peak"]
    saved = m["saved_activations_at_peak"]
    scope = m["peak_scope"] if m["peak_scope"] not in ("", m["peak_phase"]) else ""
    where = m["peak_phase"] + (f" in {scope}" if scope else "")
    return (f"plan_checkpoints: no set of checkpointed blocks fits in {human_bytes(budget)}; "
            f"the smallest peak reachable is {human_bytes(bill.peak_bytes)} "
            f"({len(chosen)} blocks checkpointed), reached during the {where}, holding "
            f"parameters {human_bytes(at['parameters'])}, gradients "
            f"{human_bytes(at['gradients'])}, optimizer state {human_bytes(at['optimizer_state'])},"
            f" saved activations {human_bytes(saved)} and temporaries "
            f"{human_bytes(at['activations'] - saved)}. Give a larger budget, a smaller batch, "
            "or more (smaller) candidate blocks")
