"""What a claim is and what checking one gives: Claim (a seed's words and the experiment
that tests them), Finding (what the experiment measured), ClaimResult (both, printed), and
Experiment (the settings and shared measurements of one run).

>>> from flopgrad.claims.core import ClaimResult
>>> print(ClaimResult("2x", "2.000x", True, "because", key="demo", seed="000",
...                   title="a demo", quote="one thing"))
[000 demo] a demo: holds
  seed 000: "one thing"
  claimed:  2x
  measured: 2.000x
  why:      because
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields

from flopgrad.claims.seeds import QUOTES

__all__ = ["Claim", "Finding", "ClaimResult", "Experiment", "REGISTRY", "claim"]


@dataclass(frozen=True)
class Finding:
    """What one experiment measured: the seed's number (`claimed`), the measured one (a line
    saying which numbers are measured and which computed), the verdict and its reason, the
    raw numbers (`values`) and optional table lines (`rows`).

    >>> Finding("2x", "1.08x", False, "the first layer's dX is skipped").holds
    False
    """

    claimed: str
    measured: str
    holds: bool
    reason: str
    values: dict = field(default_factory=dict)
    rows: tuple = ()


@dataclass(frozen=True, kw_only=True)
class ClaimResult(Finding):
    """One claim checked: a Finding with the claim's key, seed, title and the seed's words
    (`quote`), and how long the experiment took. `values` holds the raw measured numbers;
    `str()` is what `flopgrad claims` prints.

    >>> r = ClaimResult("O(n)", "n", True, "why", key="k", seed="004", title="t", quote="w")
    >>> r.verdict
    'holds'
    """

    key: str
    seed: str
    title: str
    quote: str
    seconds: float = 0.0

    @property
    def verdict(self) -> str:
        """"holds" or "differs".

        >>> ClaimResult("2x", "1x", False, "why", key="k", seed="001", title="t",
        ...             quote="q").verdict
        'differs'
        """
        return "holds" if self.holds else "differs"

    def __str__(self) -> str:
        wrap = textwrap.TextWrapper(width=96, subsequent_indent=" " * 12)
        lines = [f"[{self.seed} {self.key}] {self.title}: {self.verdict}",
                 wrap.fill(f"  seed {self.seed}: \"{self.quote}\""),
                 wrap.fill(f"  claimed:  {self.claimed}"),
                 wrap.fill(f"  measured: {self.measured}")]
        rows = textwrap.TextWrapper(width=96, initial_indent=" " * 4,
                                    subsequent_indent=" " * 6)
        lines += [rows.fill(row) for row in self.rows]
        lines.append(wrap.fill(f"  why:      {self.reason}"))
        return "\n".join(lines)


@dataclass(frozen=True)
class Claim:
    """A seed's claim and the experiment that checks it (`check(experiment) -> Finding`).

    >>> from flopgrad.claims import REGISTRY
    >>> REGISTRY["naive-fd"].seed
    '004'
    """

    key: str
    seed: str
    title: str
    quote: str
    check: Callable[[Experiment], Finding]

    def run(self, experiment: Experiment) -> ClaimResult:
        """Run the experiment and return the checked claim.

        >>> from flopgrad.claims import REGISTRY, Experiment
        >>> REGISTRY["epoch-flops"].run(Experiment()).values["training"]
        27264000000
        """
        start = time.perf_counter()
        f = self.check(experiment)
        found = {k.name: getattr(f, k.name) for k in fields(Finding)}
        found.update(holds=bool(f.holds), values=dict(f.values), rows=tuple(f.rows))
        return ClaimResult(**found, key=self.key, seed=self.seed, title=self.title,
                           quote=self.quote, seconds=time.perf_counter() - start)


REGISTRY: dict[str, Claim] = {}


def claim(key: str, title: str) -> Callable:
    """Register `check(experiment) -> Finding` as the claim `key` of seed QUOTES[key][0].

    >>> claim("matmul-flops", "again")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: claim 'matmul-flops' is registered twice
    """
    if key in REGISTRY:
        raise ValueError(f"claim {key!r} is registered twice")
    seed, quote = QUOTES[key]

    def register(check: Callable[[Experiment], Finding]) -> Callable:
        REGISTRY[key] = Claim(key, seed, title, quote, check)
        return check

    return register


class Experiment:
    """The settings of one run (`repeats`: best-of-k for every wall-time measurement) and
    the measurements that several claims share (`shared(name, make)` runs make once).

    >>> ex = Experiment(repeats=3)
    >>> ex.shared("x", lambda: [1]) is ex.shared("x", lambda: [2])
    True
    """

    def __init__(self, repeats: int = 5):
        if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
            raise ValueError(f"claims: repeats must be a positive int, got {repeats!r}")
        self.repeats = repeats
        self._shared: dict = {}

    def shared(self, name: str, make: Callable):
        """make(), computed once per experiment under `name`.

        >>> Experiment().shared("answer", lambda: 42)
        42
        """
        if name not in self._shared:
            self._shared[name] = make()
        return self._shared[name]


def to_html(results: list[ClaimResult], path, title: str = "flopgrad claims") -> None:
    """Write claim results as one self-contained HTML page, atomically: per claim the
    seed's words, what it claims, what was measured, the verdict and why.

    >>> import pathlib, tempfile
    >>> r = ClaimResult("2x", "1.08x", False, "why", key="k", seed="001", title="t", quote="q")
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     to_html([r], pathlib.Path(tmp) / "c.html")
    ...     "differs" in (pathlib.Path(tmp) / "c.html").read_text()
    True
    """
    import html

    from flopgrad.files import write_atomic
    from flopgrad.report.html import _STYLE

    held = sum(r.holds for r in results)
    cards = []
    for r in results:
        rows = "".join(f"<li>{html.escape(row)}</li>" for row in r.rows)
        cards.append(
            f"<div class='claim'><h2>[{r.seed} {html.escape(r.key)}] {html.escape(r.title)}: "
            f"<span class='{r.verdict}'>{r.verdict}</span></h2>"
            f"<p><i>seed {r.seed}: \u201c{html.escape(r.quote)}\u201d</i></p>"
            f"<p><b>claimed</b>: {html.escape(r.claimed)}<br><b>measured</b>: "
            f"{html.escape(r.measured)}</p>" + (f"<ul>{rows}</ul>" if rows else "")
            + f"<p><b>why</b>: {html.escape(r.reason)}</p></div>")
    write_atomic(path, (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<div class='headline'><div>claims<b>{len(results)}</b></div><div>hold<b>{held}"
        f"</b></div><div>differ<b>{len(results) - held}</b></div></div>"
        + "".join(cards) + "</body></html>"))
