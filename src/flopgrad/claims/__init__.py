"""fg.claims: every claim of the five seed documents run as an experiment on real models.

`run()` checks them all (or the keys given) and returns one ClaimResult each: the seed's
words, the claimed and measured numbers, holds or differs, and why. `flopgrad claims`
prints them. FLOPs come from bills (exact); times are the best of `repeats` runs on one
BLAS thread, and each result says which of its numbers are measured and which computed.

>>> import flopgrad as fg
>>> [r.verdict for r in fg.claims.run(["exact-2x", "epoch-flops"])]
['differs', 'holds']
"""

from __future__ import annotations

from flopgrad.claims import flops, gradients, walltime  # noqa: F401  (they register claims)
from flopgrad.claims.core import REGISTRY, Claim, ClaimResult, Experiment, Finding, claim
from flopgrad.claims.seeds import QUOTES, SEEDS

__all__ = ["run", "keys", "REGISTRY", "Claim", "ClaimResult", "Experiment", "Finding",
           "claim", "SEEDS"]


def keys() -> list[str]:
    """Every claim's key, in seed order (the order of flopgrad.claims.seeds.QUOTES).

    >>> keys()[:3]
    ['matmul-flops', 'matmul-time', 'width-4x']
    """
    return [k for k in QUOTES if k in REGISTRY]


def run(only=None, repeats: int = 5) -> list[ClaimResult]:
    """Run the claims (all, or the keys in `only`, in seed order) and return the results.

    repeats: best-of-k for every wall-time measurement.

    >>> run(["nothing"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: claims: unknown claim 'nothing'; one of matmul-flops, matmul-time, ...
    """
    every = keys()
    chosen = every if only is None else list(only)
    for key in chosen:
        if key not in REGISTRY:
            raise ValueError(f"claims: unknown claim {key!r}; one of {', '.join(every)}")
    experiment = Experiment(repeats)
    return [REGISTRY[k].run(experiment) for k in every if k in chosen]
