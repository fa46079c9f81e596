"""Wall-time measurements for the claims: best of k, on one BLAS thread.

The best of k runs is the run least disturbed by the rest of the machine; one BLAS thread
(threadpoolctl, installed with scikit-learn) keeps OpenBLAS from waiting on a busy second
core, which on a shared machine makes a 64-row matmul ten times slower at random.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from time import perf_counter_ns

__all__ = ["one_blas_thread", "best_ns", "forward_backward_ns"]


def one_blas_thread():
    """A context in which NumPy's BLAS runs on one thread (a no-op without threadpoolctl).

    >>> with one_blas_thread():
    ...     pass
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn brings it
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def best_ns(run: Callable, repeats: int, prepare: Callable | None = None,
            budget_ns: int = 5_000_000) -> int:
    """The shortest timing of run() (or run(prepare()), prepare untimed), in ns: at least
    `repeats` runs, and more (up to 20x as many) while they have taken less than
    `budget_ns` in all, so that a run of microseconds gets enough tries to find a quiet one.

    >>> best_ns(lambda: sum(range(100)), 3) > 0
    True
    """
    best, spent, runs = None, 0, 0
    while runs < repeats or (spent < budget_ns and runs < 20 * repeats):
        arg = prepare() if prepare is not None else None
        start = perf_counter_ns()
        if prepare is None:
            run()
        else:
            run(arg)
        took = perf_counter_ns() - start
        best = took if best is None else min(best, took)
        spent, runs = spent + took, runs + 1
    return best


def forward_backward_ns(forward: Callable, leaves, grad_out, repeats: int) -> tuple[int, int]:
    """(forward ns, backward ns), each the best of `repeats`: forward() builds the graph,
    out.backward(grad_out) walks it (the leaves' .grad are cleared before each run, so no
    run pays for accumulating into an earlier one).

    >>> import flopgrad as fg
    >>> x = fg.ones(4, requires_grad=True)
    >>> f, b = forward_backward_ns(lambda: x * 2, [x], fg.ones(4), 2)
    >>> f > 0 and b > 0
    True
    """
    def fresh():
        for t in leaves:
            t.grad = None
        return forward()

    fwd = best_ns(forward, repeats)
    bwd = best_ns(lambda out: out.backward(grad_out), repeats, fresh)
    return fwd, bwd
