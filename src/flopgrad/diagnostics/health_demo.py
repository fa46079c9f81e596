"""The demonstration of gradient health (`flopgrad health-demo`): 20 linear layers of width
64 on scikit-learn's digits, eight ways in four pairs, each measured at its first step and
trained with SGD (docs/health.md, "The demonstration"):

- ReLU with PyTorch's default init: the first layers' gradients vanish; with Kaiming init:
  healthy;
- sigmoid, default init: they vanish; with residual connections around the layers: healthy;
- tanh, default init: they vanish; with layer norm before each tanh: healthy;
- ReLU with 1.5 x Kaiming's std: exploding (the loss is NaN by step 3); the same with
  `clip_grad_norm_(..., 1.0)`: it trains.

>>> import flopgrad as fg
>>> case = fg.diagnostics.health_demo(steps=3, cases=["relu-kaiming"])[0]
>>> case.name, set(case.report.verdicts().values())
('relu-kaiming', {'healthy'})
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from flopgrad import data, models, nn, optim, training
from flopgrad.autograd import no_grad
from flopgrad.creation import manual_seed
from flopgrad.diagnostics.grad_health import Health, HealthReport

__all__ = ["health_demo", "DemoCase", "DEMO_CASES"]

WIDTH, DEPTH = 64, 20  # 20 linear layers: 64 -> 64 x 19 -> 10
BATCH, LR, MOMENTUM, CLIP = 128, 0.01, 0.9, 1.0
BAD_GAIN = 1.5  # the badly scaled init: Kaiming's std times this, per layer


class _Residual(nn.Module):
    """x + fc(sigmoid(x))."""

    def __init__(self):
        super().__init__()
        self.act = nn.Sigmoid()
        self.fc = nn.Linear(WIDTH, WIDTH)

    def forward(self, x):
        """The block's output."""
        return x + self.fc(self.act(x))


class _Normed(nn.Module):
    """tanh(layer_norm(fc(x)))."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(WIDTH, WIDTH)
        self.ln = nn.LayerNorm(WIDTH)
        self.act = nn.Tanh()

    def forward(self, x):
        """The block's output."""
        return self.act(self.ln(self.fc(x)))


class _Deep(nn.Module):
    """A linear layer in, DEPTH - 2 blocks, a linear layer out: DEPTH linear layers."""

    def __init__(self, block):
        super().__init__()
        self.inp = nn.Linear(64, WIDTH)
        self.blocks = nn.ModuleList([block() for _ in range(DEPTH - 2)])
        self.out = nn.Linear(WIDTH, 10)

    def forward(self, x):
        """Logits."""
        x = self.inp(x)
        for block in self.blocks:
            x = block(x)
        return self.out(x)


def _mlp(activation: str) -> models.MLP:
    return models.MLP([64] + [WIDTH] * (DEPTH - 1) + [10], activation=activation)


def _kaiming(gain: float) -> models.MLP:
    model = _mlp("relu")
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
            with no_grad():
                m.weight.mul_(gain)
    return model


# name: (title, model, clip), in pairs: a sick network, then a cure
DEMO_CASES = {
    "relu": ("20 ReLU layers, default init", lambda: _mlp("relu"), None),
    "relu-kaiming": ("the same with Kaiming init", lambda: _kaiming(1.0), None),
    "sigmoid": ("20 sigmoid layers, default init", lambda: _mlp("sigmoid"), None),
    "residual": ("the same with residual connections", lambda: _Deep(_Residual), None),
    "tanh": ("20 tanh layers, default init", lambda: _mlp("tanh"), None),
    "layernorm": ("the same with layer norm before each tanh", lambda: _Deep(_Normed), None),
    "bad-init": (f"20 ReLU layers, {BAD_GAIN:g} x Kaiming's std", lambda: _kaiming(BAD_GAIN),
                 None),
    "bad-init-clipped": (f"the same with clip_grad_norm_ to {CLIP:g}",
                         lambda: _kaiming(BAD_GAIN), CLIP),
}


@dataclass
class DemoCase:
    """One network of the demonstration: its health at step 1 (`report`), the measured
    first-layer / last-layer gradient norm `ratio`, and the losses of every step.

    >>> import flopgrad as fg
    >>> case = fg.diagnostics.health_demo(steps=2, cases=["sigmoid"])[0]
    >>> case.ratio < 1e-3, len(case.losses)
    (True, 2)
    """

    name: str
    title: str
    report: HealthReport
    ratio: float
    losses: list[float]
    clip: float | None

    def counts(self) -> str:
        """The verdicts of the layers with parameters, counted ("17 vanishing, 3 healthy")."""
        counts: dict[str, int] = {}
        for r in self.report.layers:
            if r.params and r.verdict != "-":
                counts[r.verdict] = counts.get(r.verdict, 0) + 1
        return ", ".join(f"{n} {v}" for v, n in sorted(counts.items(), key=lambda c: -c[1]))

    def final_loss(self) -> float:
        """The mean loss of the last 10 steps (NaN once a step's loss is not finite).

        >>> DemoCase("x", "t", None, 1.0, [4.0, 2.0, 1.0], None).final_loss()
        2.3333333333333335
        """
        return float(np.mean(self.losses[-10:]))

    def summary(self) -> str:
        """Three lines: the title; the ratio and the verdicts; the largest update ratio and
        the loss.

        >>> import flopgrad as fg
        >>> case = fg.diagnostics.health_demo(steps=2, cases=["relu-kaiming"])[0]
        >>> case.summary().split(":")[0]
        'relu-kaiming'
        """
        updates = [r.update_ratio for r in self.report.layers if r.update_ratio is not None]
        relus = [r for r in self.report.layers if r.dead is not None]
        dead = sum(r.verdict == "dead" for r in relus)
        dead = f", {dead} of {len(relus)} ReLUs dead" if relus else ""
        return (f"{self.name}: {self.title}\n  first/last layer grad norm {self.ratio:.3g}: "
                f"{self.counts()}{dead}\n  largest update/weight {max(updates):.3g}; loss "
                f"{self.losses[0]:.4g} at step 1, {self.final_loss():.4g} over the last "
                f"{min(10, len(self.losses))} of {len(self.losses)} steps")


def health_demo(steps: int = 100, seed: int = 0, cases=None) -> list[DemoCase]:
    """Train each network of DEMO_CASES (or those named in `cases`) for `steps` steps of
    SGD (lr 0.01, momentum 0.9, batch 128) from `seed`; measure its health at step 1.

    >>> import flopgrad as fg
    >>> [c.name for c in fg.diagnostics.health_demo(steps=1, cases=["bad-init"])]
    ['bad-init']
    """
    names = list(DEMO_CASES) if cases is None else list(cases)
    unknown = [n for n in names if n not in DEMO_CASES]
    if unknown:
        raise ValueError(f"health_demo: no case {unknown[0]!r}; the cases are "
                         f"{', '.join(DEMO_CASES)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"health_demo: steps must be a positive whole number, got {steps!r}")
    train_set = data.digits()
    with _one_blas_thread():
        return [_run(name, train_set, steps, seed) for name in names]


def _one_blas_thread():
    """BLAS on one thread: the demo's matrices are 128 x 64, and OpenBLAS's threads spin on
    each other when the other core is busy (the demo took 32 s instead of 1.0 s)."""
    try:
        from threadpoolctl import threadpool_limits  # a dependency of scikit-learn
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def _run(name: str, train_set, steps: int, seed: int) -> DemoCase:
    """One case: its health after step 1 (watched), then steps - 1 more steps."""
    title, build, clip = DEMO_CASES[name]
    manual_seed(seed)
    model = build()
    loader = data.DataLoader(train_set, batch_size=BATCH, shuffle=True, seed=seed)
    opt = optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    with np.errstate(all="ignore"):  # the badly scaled network overflows to inf and NaN
        with Health(model) as watch:
            losses = [training.train_step(model, next(iter(loader)), opt, clip=clip)]
        report = watch.report(step=1, loss=losses[0])
        if steps > 1:
            losses += training.fit(model, loader, opt, steps=steps - 1, clip=clip,
                                   progress=False)
    return DemoCase(name, title, report, report.grad_ratio(), losses, clip)
