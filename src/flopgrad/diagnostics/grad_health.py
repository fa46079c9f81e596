"""Gradient health: per parameter tensor and per layer, the gradient norm, the weight norm,
the update-to-weight ratio of the last optimizer step, the share of dead ReLU units and the
activation mean and std, with a verdict per layer (vanishing, exploding, dead, healthy).

Two ways in (docs/health.md has the thresholds and why):

- `fg.health(model)` after any backward: gradient and weight norms and the verdicts.
- `fg.Health(model)`, made before training, keeps a copy of the weights: its report has
  the update of the step since. Inside `with` it listens to the forward (a `Listener` of
  flopgrad.hooks) and sees the ReLU outputs and the module outputs by their scope. As
  `fit(..., callback=h)` it reports every `every` steps.

>>> import flopgrad as fg
>>> fg.manual_seed(0)
>>> model = fg.models.MLP([4, 8, 2])
>>> x, y = fg.randn(16, 4), fg.randint(0, 2, (16,))
>>> fg.nn.functional.cross_entropy(model(x), y).backward()
>>> fg.health(model).verdicts()
{'fc1': 'healthy', 'fc2': 'healthy'}
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from flopgrad.dispatch import mode
from flopgrad.hooks import Listener, add_listener, remove_listener
from flopgrad.nn.modules.module import Module

__all__ = ["health", "Health", "HealthReport", "LayerHealth", "TensorHealth", "VANISHING",
           "EXPLODING", "GRAD_TO_WEIGHT", "DEAD"]

VANISHING = 1e-3  # a layer's grad norm / the last layer's below this: vanishing
EXPLODING = 1e3  # ... above this: exploding (gradients growing toward the input)
GRAD_TO_WEIGHT = 1e2  # a layer's grad norm / its own weight norm above this: exploding
DEAD = 0.5  # the share of a layer's ReLU units that are zero for the whole batch: dead

ROOT = "(model)"  # the name of the model's own row (parameters or ReLUs of its forward)


@dataclass
class TensorHealth:
    """One parameter tensor: its gradient norm (None without a gradient), the norm of the
    weights the gradient was taken at (W_before, the snapshot, if there is one; else the
    weights now), and ||W - W_before|| / ||W_before|| (None without a snapshot).

    >>> TensorHealth("fc1.weight", (8, 4), 0.5, 2.0, None).grad_norm
    0.5
    """

    name: str
    shape: tuple
    grad_norm: float | None
    weight_norm: float
    update_ratio: float | None


@dataclass
class LayerHealth:
    """One module: the norms over its own parameters (as one vector), grad_ratio = its grad
    norm / the last layer's, the dead ReLU share of the ReLUs run in its scope, the mean and
    std of its output, a verdict and the reason for it.

    >>> LayerHealth("fc1", "Linear", 40, 1e-5, 3.0, None, 1e-6, None, None, None,
    ...             "vanishing", "grad norm 1e-06 x the last layer's").verdict
    'vanishing'
    """

    name: str
    kind: str
    params: int
    grad_norm: float | None
    weight_norm: float | None
    update_ratio: float | None
    grad_ratio: float | None
    dead: float | None
    act_mean: float | None
    act_std: float | None
    verdict: str
    why: str


def _sq(a) -> float:
    """The squared 2-norm of an array, accumulated in float64."""
    flat = np.asarray(a, dtype=np.float64).ravel()
    return float(np.dot(flat, flat))


def _ratio(num: float, den: float) -> float:
    if den > 0:
        return num / den
    return 0.0 if num == 0 else math.inf


def _check_model(model, who: str) -> None:
    if not isinstance(model, Module):
        raise TypeError(f"{who}: expected a flopgrad.nn.Module, got {type(model).__name__}")


class _Recorder(Listener):
    """Sees the forward ops of one step: the last output per scope (held, not copied) and,
    per scope, the dead and total units of the ReLU outputs. A new forward (an op in phase
    forward after a backward or optimizer op) starts afresh."""

    def __init__(self):
        self.armed = True
        self.stale = False
        self.order = 0
        self.outputs: dict[str, tuple[int, np.ndarray]] = {}
        self.relus: dict[str, list[int]] = {}

    def on_op(self, op, args, arrays, out, params, start_ns) -> None:
        """Keep a forward op's output as its scope's latest; count a ReLU's dead units."""
        if not self.armed:
            return
        m = mode()
        if m.phase != "forward":
            self.stale = True
            return
        if self.stale:
            self.outputs, self.relus, self.stale = {}, {}, False
        if type(out) is not np.ndarray:  # a meta array: no values
            return
        self.order += 1
        self.outputs[m.scope] = (self.order, out)
        if op.key == "relu" and out.size:
            alive = (out.reshape(out.shape[0] if out.ndim > 1 else 1, -1) != 0).any(axis=0)
            counts = self.relus.setdefault(m.scope, [0, 0])
            counts[0] += int(alive.size - np.count_nonzero(alive))
            counts[1] += int(alive.size)


def _activation(outputs: dict) -> dict[str, tuple[float, float]]:
    """(mean, std) of each module path's output: the latest op under its scope."""
    latest: dict[str, tuple[int, np.ndarray]] = {}
    for scope, (order, out) in outputs.items():
        parts = scope.split(".") if scope else []
        for k in range(1, len(parts) + 1):
            path = ".".join(parts[:k])
            if path not in latest or latest[path][0] < order:
                latest[path] = (order, out)
    stats = {}
    for path, (_, out) in latest.items():
        if out.dtype.kind in "fV" and out.size:
            a = np.asarray(out, dtype=np.float64)
            stats[path] = (float(a.mean()), float(a.std()))
    return stats


def _verdict(grad: float | None, weight: float | None, ratio: float | None,
             dead: float | None) -> tuple[str, str]:
    """The verdict of a layer and why (docs/health.md, "Gradient health per layer")."""
    if grad is not None:
        if not (math.isfinite(grad) and math.isfinite(weight)):
            return "exploding", "non-finite gradient or weights"
        if ratio is not None and ratio > EXPLODING:
            return "exploding", f"grad norm {ratio:.3g} x the last layer's"
        if weight > 0 and grad / weight > GRAD_TO_WEIGHT:
            return "exploding", f"grad norm {grad / weight:.3g} x its weight norm"
        if ratio is not None and ratio < VANISHING:
            return "vanishing", f"grad norm {ratio:.3g} x the last layer's"
    if dead is not None and dead > DEAD:
        return "dead", f"{100 * dead:.0f}% of its ReLU units are 0 for the whole batch"
    if grad is not None or dead is not None:
        return "healthy", ""
    return "-", "no gradient" if weight is not None else ""


class HealthReport:
    """The health of a model at one moment: `layers` (LayerHealth, in `named_modules()`
    order), `tensors` (TensorHealth), the `reference` layer (the last one with a gradient),
    `step` and `loss` when known. `print(report)` shows `table()`; `to_dict()` is plain data.

    >>> import flopgrad as fg
    >>> fg.manual_seed(0)
    >>> lin = fg.nn.Linear(3, 2)
    >>> lin(fg.ones(4, 3)).sum().backward()
    >>> report = fg.health(lin)
    >>> report.reference, report.layers[0].verdict, round(report.grad_ratio(), 3)
    ('(model)', 'healthy', 1.0)
    """

    def __init__(self, layers: list[LayerHealth], tensors: list[TensorHealth],
                 reference: str | None, step: int | None = None, loss: float | None = None,
                 watched: bool = False):
        self.layers, self.tensors, self.reference = layers, tensors, reference
        self.step, self.loss, self.watched = step, loss, watched

    def layer(self, name: str) -> LayerHealth:
        """The row of one module path (KeyError naming the known ones otherwise).

        >>> import flopgrad as fg
        >>> fg.manual_seed(0)
        >>> mlp = fg.models.MLP([3, 4, 2])
        >>> mlp(fg.ones(2, 3)).sum().backward()
        >>> fg.health(mlp).layer("fc2").params
        10
        """
        for row in self.layers:
            if row.name == name:
                return row
        raise KeyError(f"health: no layer {name!r}; the layers are "
                       f"{', '.join(r.name for r in self.layers)}")

    def verdicts(self) -> dict[str, str]:
        """{layer: verdict} for the layers that have one.

        >>> import flopgrad as fg
        >>> fg.manual_seed(0)
        >>> mlp = fg.models.MLP([3, 4, 2])
        >>> mlp(fg.ones(2, 3)).sum().backward()
        >>> fg.health(mlp).verdicts()
        {'fc1': 'healthy', 'fc2': 'healthy'}
        """
        return {r.name: r.verdict for r in self.layers if r.verdict != "-"}

    def grad_ratio(self) -> float:
        """The first layer's gradient norm / the last layer's (first and last of the layers
        with parameters and a gradient, in `named_modules()` order).

        >>> import flopgrad as fg
        >>> fg.manual_seed(0)
        >>> mlp = fg.models.MLP([3, 4, 2])
        >>> mlp(fg.ones(2, 3)).sum().backward()
        >>> fg.health(mlp).grad_ratio() > 0
        True
        """
        graded = [r for r in self.layers if r.grad_norm is not None]
        return _ratio(graded[0].grad_norm, graded[-1].grad_norm)

    def to_dict(self) -> dict:
        """Plain data: step, loss, reference, thresholds, layers and tensors.

        >>> import flopgrad as fg
        >>> fg.manual_seed(0)
        >>> lin = fg.nn.Linear(3, 2)
        >>> lin(fg.ones(4, 3)).sum().backward()
        >>> d = fg.health(lin).to_dict()
        >>> sorted(d), [t["name"] for t in d["tensors"]]
        (['layers', 'loss', 'reference', 'step', 'tensors', 'thresholds'], ['weight', 'bias'])
        """
        return {"step": self.step, "loss": self.loss, "reference": self.reference,
                "thresholds": {"vanishing": VANISHING, "exploding": EXPLODING,
                               "grad_to_weight": GRAD_TO_WEIGHT, "dead": DEAD},
                "layers": [asdict(r) for r in self.layers],
                "tensors": [{**asdict(t), "shape": list(t.shape)} for t in self.tensors]}

    def table(self, tensors: bool = False) -> str:
        """The layers as a table (with tensors=True, then one row per parameter tensor).

        >>> import flopgrad as fg
        >>> fg.manual_seed(0)
        >>> mlp = fg.models.MLP([3, 4, 2])
        >>> mlp(fg.ones(2, 3)).sum().backward()
        >>> print(fg.health(mlp).table().splitlines()[1])  # doctest: +NORMALIZE_WHITESPACE
        layer kind params grad norm weight norm grad/last update/weight dead act mean
        act std verdict
        """
        head = ("layer", "kind", "params", "grad norm", "weight norm", "grad/last",
                "update/weight", "dead", "act mean", "act std", "verdict")
        rows = [(r.name, r.kind, f"{r.params:,}" if r.params else "-", _num(r.grad_norm),
                 _num(r.weight_norm), _num(r.grad_ratio), _num(r.update_ratio),
                 "-" if r.dead is None else f"{100 * r.dead:.0f}%", _num(r.act_mean),
                 _num(r.act_std), r.verdict) for r in self.layers]
        lines = [self._title(), *_align(head, rows, left=(0, 1, 10))]
        counts = ", ".join(f"{n} {v}" for v, n in _count(self.layers).items())
        lines += [f"{counts or 'no verdicts'} ({_thresholds()})"]
        if tensors:
            head = ("tensor", "shape", "grad norm", "weight norm", "update/weight")
            rows = [(t.name, "x".join(map(str, t.shape)) or "()", _num(t.grad_norm),
                     _num(t.weight_norm), _num(t.update_ratio)) for t in self.tensors]
            lines += ["", *_align(head, rows, left=(0, 1))]
        return "\n".join(lines)

    def _title(self) -> str:
        at = "" if self.step is None else f" at step {self.step}"
        loss = "" if self.loss is None else f" (loss {self.loss:.4g})"
        ref = next((r for r in self.layers if r.name == self.reference), None)
        last = f"; grad/last against {ref.name}'s grad norm {_num(ref.grad_norm)}" if ref else ""
        seen = "" if self.watched else "; activations not seen (use `with fg.Health(model)`)"
        return f"gradient health{at}{loss}{last}{seen}"

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        counts = ", ".join(f"{n} {v}" for v, n in _count(self.layers).items())
        at = "" if self.step is None else f" at step {self.step}"
        return f"<HealthReport{at}: {len(self.layers)} layers: {counts or 'no verdicts'}>"


def _count(layers) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in layers:
        if r.verdict != "-":
            counts[r.verdict] = counts.get(r.verdict, 0) + 1
    return counts


def _thresholds() -> str:
    return (f"vanishing: grad/last < {VANISHING:g}; exploding: not finite, grad/last > "
            f"{EXPLODING:g} or grad > {GRAD_TO_WEIGHT:g} x weight norm;\n dead: > "
            f"{100 * DEAD:.0f}% of ReLU units 0 over the batch")


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


def _align(head: tuple, rows: list[tuple], left: tuple) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(head, *rows, strict=True)]

    def line(cells):
        return "  ".join(str(c).ljust(w) if i in left else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()
    return [line(head), *map(line, rows)]


class Health:
    """Gradient health over training. Made before training, it copies the weights (the
    "before" of the next step's update); `report()` compares against that copy. Inside
    `with`, a listener sees the forward: dead ReLU units and module outputs. As a training
    callback (`fit(..., callback=h)`, called with (step, loss) after each step) it reports
    at every `every`-th step, passes the report to `out` (e.g. `print`) and keeps it in
    `reports`; it copies the weights, and listens, only in the step before a report.
    `reference` is as for `health`.

    >>> import flopgrad as fg
    >>> fg.manual_seed(0)
    >>> model = fg.models.MLP([64, 32, 10])
    >>> loader = fg.data.DataLoader(fg.data.digits(), batch_size=64, shuffle=True, seed=0)
    >>> opt = fg.optim.SGD(model.parameters(), lr=0.1)
    >>> with fg.Health(model, every=5) as h:
    ...     _ = fg.training.fit(model, loader, opt, steps=10, progress=False, callback=h)
    >>> [r.step for r in h.reports], h.reports[-1].verdicts()
    ([5, 10], {'fc1': 'healthy', 'act1': 'healthy', 'fc2': 'healthy'})
    """

    def __init__(self, model, every: int = 1, out: Callable | None = None,
                 snapshot: bool = True, reference: str | None = None):
        _check_model(model, "Health")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"Health: every must be a positive whole number of steps, got "
                             f"{every!r}")
        self.model, self.every, self.out, self.reference = model, every, out, reference
        self.reports: list[HealthReport] = []
        self._recorder = _Recorder()
        self._previous: dict[str, np.ndarray] | None = None
        if snapshot:
            self.snapshot()

    def __enter__(self) -> Health:
        add_listener(self._recorder)
        return self

    def __exit__(self, *exc) -> bool:
        remove_listener(self._recorder)
        return False

    def snapshot(self) -> None:
        """Copy the weights now: the next report's update ratio is against this copy.

        >>> import flopgrad as fg
        >>> fg.manual_seed(0)
        >>> lin = fg.nn.Linear(2, 1)
        >>> h = fg.Health(lin, snapshot=False)
        >>> lin(fg.ones(1, 2)).sum().backward(); h.snapshot()
        >>> fg.optim.SGD(lin.parameters(), lr=0.1).step()
        >>> h.report().tensors[1].update_ratio > 0
        True
        """
        self._previous = {name: np.array(p._data, copy=True)
                          for name, p in self.model.named_parameters()
                          if type(p._data) is np.ndarray}

    def __call__(self, step: int, loss: float | None = None) -> HealthReport | None:
        """The training callback: report at every `every`-th step; before a report step,
        copy the weights and listen to its forward. Returns the report or None.

        >>> import flopgrad as fg
        >>> fg.manual_seed(0)
        >>> lin = fg.nn.Linear(2, 1)
        >>> lin(fg.ones(1, 2)).sum().backward()
        >>> h = fg.Health(lin, every=2)
        >>> h(1) is None, h(2).step
        (True, 2)
        """
        report = None
        if step % self.every == 0:
            report = self.report(step, loss)
            self.reports.append(report)
            if self.out is not None:
                self.out(report)
        due = (step + 1) % self.every == 0
        self._recorder.armed = due
        if due:
            self.snapshot()
        else:
            self._previous = None
        return report

    def report(self, step: int | None = None, loss: float | None = None) -> HealthReport:
        """The health now: gradients as they are in `.grad`, the update since the last
        snapshot, the activations of the last forward seen (inside `with`).

        >>> import flopgrad as fg
        >>> fg.manual_seed(0)
        >>> mlp = fg.models.MLP([3, 4, 2])
        >>> with fg.Health(mlp) as h:
        ...     mlp(fg.ones(5, 3)).sum().backward()
        >>> h.report().layer("act1").dead is not None
        True
        """
        rec = self._recorder
        watched = bool(rec.outputs or rec.relus)
        return _report(self.model, self._previous, rec, step, loss, watched, self.reference)


def _tensor_rows(model, previous) -> tuple[dict[int, TensorHealth], dict[int, tuple]]:
    """Per parameter (by id): its TensorHealth, and ||W - W_before||^2 if there is a W_before
    (then the weight norm is W_before's: the weights the gradient was taken at)."""
    rows, moves = {}, {}
    for name, p in model.named_parameters():
        if type(p._data) is not np.ndarray:
            raise ValueError(f"health: {name} is a meta tensor (no values to measure)")
        grad = None if p.grad is None else math.sqrt(_sq(p.grad._data))
        update, weight = None, math.sqrt(_sq(p._data))
        before = None if previous is None else previous.get(name)
        if before is not None and before.shape == p._data.shape:
            moves[id(p)] = _sq(np.asarray(p._data, dtype=np.float64) - before)
            weight = math.sqrt(_sq(before))  # the weights the gradient was taken at
            update = _ratio(math.sqrt(moves[id(p)]), weight)
        rows[id(p)] = TensorHealth(name, p.shape, grad, weight, update)
    return rows, moves


def _report(model, previous, rec: _Recorder, step, loss, watched, reference) -> HealthReport:
    tensors, moves = _tensor_rows(model, previous)
    if not any(t.grad_norm is not None for t in tensors.values()):
        raise ValueError(f"health: no parameter of {type(model).__name__} has a gradient; "
                         "call loss.backward() first")
    stats = _activation(rec.outputs) if watched else {}
    rows = []
    for path, m in model.named_modules():
        if m._names_items:  # ModuleList, ModuleDict: never called
            continue
        params = [p for p in m._parameters.values() if p is not None]
        own = [tensors[id(p)] for p in params]
        act = stats.get(path) if path else None
        relu = rec.relus.get(path) if watched else None
        if not own and act is None and relu is None:
            continue
        graded = [t.grad_norm for t in own if t.grad_norm is not None]
        grad = math.sqrt(sum(g * g for g in graded)) if graded else None
        weight = math.sqrt(sum(t.weight_norm ** 2 for t in own)) if own else None
        update = None
        if own and all(id(p) in moves for p in params):
            update = _ratio(math.sqrt(sum(moves[id(p)] for p in params)), weight)
        rows.append([path or ROOT, type(m).__name__, sum(math.prod(t.shape) for t in own),
                     grad, weight, update, relu, act])
    if reference is None:
        ref = next((r for r in reversed(rows) if r[3] is not None), None)
    else:
        ref = next((r for r in rows if r[0] == reference and r[3] is not None), None)
        if ref is None:
            raise ValueError(f"health: reference {reference!r} is not a layer with a gradient; "
                             f"those are {', '.join(r[0] for r in rows if r[3] is not None)}")
    ref_grad = ref[3] if ref is not None else None
    usable = ref_grad is not None and math.isfinite(ref_grad) and ref_grad > 0
    layers = []
    for name, kind, n, grad, weight, update, relu, act in rows:
        ratio = grad / ref_grad if usable and grad is not None else None
        dead = relu[0] / relu[1] if relu else None
        verdict, why = _verdict(grad, weight, ratio, dead)
        layers.append(LayerHealth(name, kind, n, grad, weight, update, ratio, dead,
                                  act[0] if act else None, act[1] if act else None,
                                  verdict, why))
    return HealthReport(layers, list(tensors.values()), ref[0] if ref else None, step, loss,
                        watched)


def health(model, reference: str | None = None) -> HealthReport:
    """The gradient health of `model` now (after a backward): per layer and per parameter
    tensor, gradient and weight norms and a verdict. The layers' gradient norms are compared
    with the last layer's, or with the layer at module path `reference` (e.g. "wte" for a
    GPT whose output layer is its tied embedding). For the update ratio and the
    activations, make a `Health(model)` before the step (see `Health`).

    >>> import flopgrad as fg
    >>> fg.manual_seed(0)
    >>> lin = fg.nn.Linear(3, 2)
    >>> lin(fg.ones(4, 3)).sum().backward()
    >>> row = fg.health(lin).layers[0]
    >>> row.name, row.verdict, row.update_ratio
    ('(model)', 'healthy', None)
    >>> fg.health([lin])
    Traceback (most recent call last):
    TypeError: health: expected a flopgrad.nn.Module, got list
    """
    _check_model(model, "health")
    return Health(model, snapshot=False, reference=reference).report()
