"""flopgrad.blas: the one-pass a += alpha * b the optimizers use on large parameters."""

import numpy as np
import pytest

import flopgrad as fg
from flopgrad import blas

N = blas.MIN_SIZE * 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_axpy_matches_the_exact_result_to_rounding(dtype):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(N).astype(dtype), rng.standard_normal(N).astype(dtype)
    exact = a.astype(np.float64) + (-0.37) * b.astype(np.float64)
    got = a.copy()
    if not blas.axpy(got, b, -0.37):
        pytest.skip("NumPy's BLAS is not reachable on this platform (the fallback is used)")
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(got, exact, rtol=2 * eps, atol=2 * eps)


def test_axpy_leaves_what_it_cannot_do_to_the_caller():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(N), rng.standard_normal(N)
    small = rng.standard_normal(8)
    cases = [
        (small, small.copy()),                       # too small to be worth a foreign call
        (a[::2].copy(), b[::2]),                     # b not contiguous
        (a.astype(np.float32), b),                   # dtypes differ
        (a, a[1:].copy()),                           # shapes differ
        (a[1:], a[:-1]),                             # overlapping views of one buffer
        (a.astype(np.int64), b.astype(np.int64)),    # not a float BLAS type
    ]
    for x, y in cases:
        before = x.copy()
        assert not blas.axpy(x, y, 2.0)
        np.testing.assert_array_equal(x, before)


def test_sgd_on_a_large_parameter_is_the_usual_update():
    rng = np.random.default_rng(2)
    w0, g = rng.standard_normal((256, 300)).astype(np.float32), rng.standard_normal((256, 300))
    w = fg.nn.Parameter(fg.tensor(w0))
    w.grad = fg.tensor(g.astype(np.float32))
    fg.optim.SGD([w], lr=0.1).step()
    np.testing.assert_allclose(w.detach().numpy(), w0 - 0.1 * g.astype(np.float32),
                               rtol=1e-6, atol=1e-7)
