"""A small training loop with a progress line, used by the command line and examples.

>>> import flopgrad as fg
>>> fg.manual_seed(0)
>>> model = fg.models.MLP([64, 32, 10])
>>> train = fg.data.DataLoader(fg.data.digits(), batch_size=64, shuffle=True, seed=0)
>>> opt = fg.optim.Adam(model.parameters(), lr=1e-2)
>>> history = fg.training.fit(model, train, opt, epochs=1, progress=False)
>>> len(history) == len(train)
True
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable

import numpy as np

from flopgrad.autograd import no_grad
from flopgrad.nn import functional as F
from flopgrad.report import Bill, profile

__all__ = ["fit", "evaluate", "train_step", "step_bill", "Progress", "nonfinite"]


class Progress:
    """A one-line progress display on stderr (redrawn in place on a terminal).

    >>> import flopgrad as fg, io
    >>> bar = fg.training.Progress(4, stream=io.StringIO())
    >>> bar.update(4, loss=0.5)
    >>> bar.stream.getvalue().split("  ")[:2]
    ['train [########################] 4/4', 'loss 0.5']
    """

    def __init__(self, total: int, label: str = "train", enabled: bool = True, stream=None):
        self.total, self.label, self.enabled = total, label, enabled
        self.stream = stream or sys.stderr
        self.start = time.perf_counter()
        self.last = 0.0
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.note: str | None = None

    def update(self, done: int, note: str | None = None, **fields) -> None:
        """Show `done` of total steps and the fields (at most every 0.1 s on a terminal,
        2 s otherwise; the final step is always shown), then `note` if given (a new note
        is shown at once).

        >>> import flopgrad as fg, io
        >>> bar = fg.training.Progress(10, label="eval", stream=io.StringIO())
        >>> bar.update(10, acc=0.75)
        >>> bar.stream.getvalue().split("  ")[:2]
        ['eval [########################] 10/10', 'acc 0.75']
        """
        if not self.enabled:
            return
        now = time.perf_counter()
        final = done >= self.total
        fresh = note is not None and note != self.note
        self.note = note
        if not final and not fresh and now - self.last < (0.1 if self.tty else 2.0):
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        width = 24
        filled = int(width * done / max(self.total, 1))
        bar = "#" * filled + "-" * (width - filled)
        extra = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                          for k, v in fields.items())
        left = (self.total - done) / rate if rate > 0 else 0.0
        timing = f"{rate:.0f} steps/s  " + (f"{_clock(now - self.start)} in all" if final
                                            else f"{_clock(left)} left")
        line = f"{self.label} [{bar}] {done}/{self.total}  {extra}  {timing}"
        if note:
            line += f"  {note}"
        if self.tty and _colour(self.stream):
            self._rich(done, filled, width, extra, timing, note, final)
        elif self.tty:  # \x1b[K clears what a longer earlier line left
            self.stream.write("\r\x1b[K" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def _rich(self, done, filled, width, extra, timing, note, final) -> None:
        """The same line, coloured with rich: the bar green, the note red."""
        from rich.console import Console
        from rich.text import Text

        text = Text.assemble((self.label, "bold"), " ", ("━" * filled, "green"),
                             ("━" * (width - filled), "grey35"), f" {done}/{self.total}  ",
                             (extra, "cyan"), f"  {timing}", (f"  {note}" if note else "", "red"))
        self.stream.write("\r\x1b[K")
        Console(file=self.stream, force_terminal=True, soft_wrap=True).print(
            text, end="\n" if final else "")


def _clock(seconds: float) -> str:
    """m:ss (h:mm:ss past an hour).

    >>> _clock(75), _clock(3725)
    ('1:15', '1:02:05')
    """
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


def _colour(stream) -> bool:
    """Colour on a terminal unless NO_COLOR is set (rich is a core dependency)."""
    import os

    return not os.environ.get("NO_COLOR")


def _loss_fn(model, batch):
    x, y = batch
    return F.cross_entropy(model(x), y)


def train_step(model, batch, optimizer, loss_fn: Callable = _loss_fn, clip: float | None = None,
               scheduler=None) -> float:
    """One step: zero_grad, forward, backward, optional clipping, optimizer (and schedule).

    >>> import flopgrad as fg
    >>> fg.manual_seed(0)
    >>> model = fg.nn.Linear(4, 2)
    >>> _ = [fg.nn.init.zeros_(p) for p in model.parameters()]  # logits all 0
    >>> batch = (fg.ones(3, 4), fg.tensor([0, 1, 1]))
    >>> fg.training.train_step(model, batch, fg.optim.SGD(model.parameters(), lr=0.1))
    0.6931471824645996
    """
    from flopgrad.nn.utils import clip_grad_norm_
    optimizer.zero_grad()
    loss = loss_fn(model, batch)
    loss.backward()
    if clip is not None:
        clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return float("nan") if loss.is_meta else float(loss._data)


def fit(model, loader, optimizer, loss_fn: Callable = _loss_fn, epochs: int = 1,
        steps: int | None = None, clip: float | None = None, scheduler=None,
        progress: bool = True, label: str = "train",
        callback: Callable[[int, float], object] | None = None) -> list[float]:
    """Train for `epochs` passes over `loader` (or exactly `steps` steps); returns the losses.
    `callback(step, loss)`, if given, is called after every step (steps count from 1), e.g.
    an `fg.Health`.

    >>> import flopgrad as fg
    >>> fg.manual_seed(0)
    >>> model = fg.nn.Linear(4, 2)
    >>> _ = [fg.nn.init.zeros_(p) for p in model.parameters()]  # logits all 0
    >>> batch = (fg.ones(3, 4), fg.tensor([0, 1, 1]))
    >>> loader = fg.data.DataLoader(fg.data.TensorDataset(*batch), batch_size=2)
    >>> opt = fg.optim.SGD(model.parameters(), lr=0.1)
    >>> losses = fg.training.fit(model, loader, opt, steps=5, progress=False)
    >>> len(losses), losses[0]
    (5, 0.6931471824645996)
    """
    total = steps if steps is not None else epochs * len(loader)
    bar = Progress(total, label, progress)
    model.train()
    named = list(model.named_parameters()) if hasattr(model, "named_parameters") else []
    losses: list[float] = []
    alarm = None  # the first non-finite loss or gradient, kept on the progress line
    while len(losses) < total:
        for batch in loader:
            losses.append(train_step(model, batch, optimizer, loss_fn, clip, scheduler))
            if alarm is None:
                alarm = nonfinite(losses[-1], named, len(losses))
            recent = float(np.mean(losses[-20:]))
            bar.update(len(losses), note=alarm, loss=recent)
            if callback is not None:
                callback(len(losses), losses[-1])
            if len(losses) >= total:
                break
    return losses


def nonfinite(loss: float, named: list, step: int) -> str | None:
    """What became NaN or inf at `step`: the loss, else the first parameter's gradient that
    holds NaN or inf (None when all are finite, or for meta tensors, which have no values).

    One check of the loss every step, and one of the gradients (the sum of their sums is
    finite only if every entry is; only when it is not are they checked one by one).
    Under `fg.amp.GradScaler`, inf gradients on a skipped step are expected.

    >>> import flopgrad as fg
    >>> w = fg.nn.Parameter(fg.ones(2))
    >>> w.grad = fg.tensor([1.0, float("inf")])
    >>> fg.training.nonfinite(0.5, [("w", w)], 3)
    'gradient of w non-finite at step 3'
    >>> fg.training.nonfinite(float("nan"), [("w", w)], 4)
    'loss became non-finite at step 4'
    """
    if named and named[0][1].is_meta:
        return None
    if not math.isfinite(loss):
        return f"loss became non-finite at step {step}"
    grads = [(name, p.grad._data) for name, p in named if p.grad is not None]
    with np.errstate(all="ignore"):  # inf - inf in a sum is NaN, silently
        total = sum(np.add.reduce(g, axis=None, dtype=_ACCUMULATE.get(g.itemsize)).item()
                    for _, g in grads)
    if np.isfinite(total):
        return None
    for name, g in grads:
        if not np.isfinite(g).all():
            return f"gradient of {name} non-finite at step {step}"
    return None  # the sum overflowed: every entry is finite


_ACCUMULATE = {1: np.float32, 2: np.float32}  # 1- and 2-byte floats summed in float32


def evaluate(model, loader) -> float:
    """Classification accuracy of `model` over `loader` (eval mode, no graph).

    >>> import flopgrad as fg
    >>> fg.manual_seed(0)
    >>> model = fg.nn.Linear(4, 2)
    >>> _ = [fg.nn.init.zeros_(p) for p in model.parameters()]  # logits all 0
    >>> batch = (fg.ones(3, 4), fg.tensor([0, 1, 1]))
    >>> fg.training.evaluate(model, [batch])  # always predicts class 0
    0.3333333333333333
    """
    model.eval()
    correct = n = 0
    with no_grad():
        for x, y in loader:
            pred = model(x).argmax(-1)
            correct += int((pred._data == y._data).sum())
            n += len(y._data)
    model.train()
    return correct / max(n, 1)


def step_bill(model, batch, optimizer, loss_fn: Callable = _loss_fn, clip: float | None = None
              ) -> Bill:
    """The bill of one full training step (forward, backward, optimizer).

    >>> import flopgrad as fg
    >>> fg.manual_seed(0)
    >>> model = fg.nn.Linear(4, 2)
    >>> _ = [fg.nn.init.zeros_(p) for p in model.parameters()]  # logits all 0
    >>> batch = (fg.ones(3, 4), fg.tensor([0, 1, 1]))
    >>> bill = fg.training.step_bill(model, batch, fg.optim.SGD(model.parameters()))
    >>> bill.flops("forward", kind="tensor"), bill.flops("optimizer")
    (48, 20)
    """
    with profile() as bill:
        train_step(model, batch, optimizer, loss_fn, clip)
    return bill
