"""fg.numerical_grad: finite differences against backward on every op family (float64,
tight tolerances), its bill (exactly 2n passes central, n + 1 forward), its errors; and
gradcheck's own bill."""

from __future__ import annotations

import numpy as np
import pytest

import flopgrad as fg
import flopgrad.nn.functional as F

RTOL, ATOL = 1e-6, 1e-8  # central differences with eps 1e-6 in float64


def t64(a, grad: bool = True) -> fg.Tensor:
    return fg.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def normal(*shape, seed: int = 0):
    return rng(seed).standard_normal(shape)


def positive(*shape, seed: int = 0):
    return rng(seed).uniform(0.5, 2.0, shape)


def away(*shape, seed: int = 0, gap: float = 0.1):
    """Normal values at least `gap` from 0 (relu, abs) and from each other (max, sort)."""
    x = normal(*shape, seed=seed).reshape(-1)
    x = np.sign(x) * (np.abs(x) + gap)
    x = np.sort(x) + np.arange(x.size) * gap  # distinct, gaps >= gap
    return rng(seed + 1).permutation(x).reshape(shape)


IDX = np.array([2, 0, 2, 1])  # repeated indices: their gradients accumulate
TARGET = np.array([1, 0, 4, 2])

# name, fn of float64 tensors (any output shape), input arrays
CASES = [
    # elementwise binary (with broadcasting)
    ("add", lambda a, b: a + b, [normal(3, 4), normal(4, seed=1)]),
    ("sub", lambda a, b: a - b, [normal(3, 4), normal(3, 1, seed=1)]),
    ("mul", lambda a, b: a * b, [normal(3, 4), normal(3, 4, seed=1)]),
    ("div", lambda a, b: a / b, [normal(3, 4), positive(3, 4, seed=1)]),
    ("pow", lambda a, b: a ** b, [positive(3, 4), normal(3, 4, seed=1)]),
    ("maximum", fg.maximum, [away(3, 4), away(3, 4, seed=5)]),
    ("where", lambda a, b: fg.where(a > 0, a * b, b.exp()), [away(3, 4), normal(3, 4, seed=1)]),
    # elementwise unary
    ("exp", lambda a: a.exp(), [normal(3, 4)]),
    ("log", lambda a: a.log(), [positive(3, 4)]),
    ("sqrt", lambda a: a.sqrt(), [positive(3, 4)]),
    ("tanh", lambda a: a.tanh(), [normal(3, 4)]),
    ("sigmoid", lambda a: a.sigmoid(), [normal(3, 4)]),
    ("sin", lambda a: a.sin(), [normal(3, 4)]),
    ("erf", lambda a: a.erf(), [normal(3, 4)]),
    ("relu", lambda a: a.relu(), [away(3, 4)]),
    ("abs", lambda a: a.abs(), [away(3, 4)]),
    ("clamp", lambda a: a.clamp(-0.5, 0.5), [away(3, 4, gap=0.13)]),
    ("pow_scalar", lambda a: a ** 3, [normal(3, 4)]),
    # reductions
    ("sum", lambda a: a.sum(1), [normal(3, 4)]),
    ("mean", lambda a: a.mean(0), [normal(3, 4)]),
    ("prod", lambda a: a.prod(1), [normal(3, 4)]),
    ("amax", lambda a: a.amax(1), [away(3, 4)]),
    ("logsumexp", lambda a: a.logsumexp(1), [normal(3, 4)]),
    ("var", lambda a: a.var(1), [normal(3, 4)]),
    ("cumsum", lambda a: a.cumsum(1), [normal(3, 4)]),
    # contractions
    ("matmul", lambda a, b: a @ b, [normal(3, 4), normal(4, 2, seed=1)]),
    ("batched matmul", lambda a, b: a @ b, [normal(2, 3, 4), normal(4, 5, seed=1)]),
    ("einsum", lambda a, b: fg.einsum("bij,bjk->bik", a, b),
     [normal(2, 3, 4), normal(2, 4, 2, seed=1)]),
    ("linear", lambda x, w, b: F.linear(x, w, b), [normal(3, 4), normal(5, 4, seed=1),
                                                   normal(5, seed=2)]),
    # movement and indexing
    ("reshape+permute", lambda a: a.reshape(2, 6).permute(1, 0) * fg.arange(2.0),
     [normal(3, 4)]),
    ("expand", lambda a: a.broadcast_to((3, 2, 4)) * fg.arange(4.0), [normal(2, 4)]),
    ("flip+roll", lambda a: a.flip(0).roll(1, 1) * fg.arange(4.0), [normal(3, 4)]),
    ("slice", lambda a: a[1:, ::2] * 3, [normal(3, 4)]),
    ("index (repeats)", lambda a: a[fg.tensor(IDX)] * fg.arange(4.0), [normal(3, 4)]),
    ("cat+stack", lambda a, b: fg.stack([fg.cat([a, b], 0), fg.cat([b, a], 0)]) ** 2,
     [normal(2, 3), normal(2, 3, seed=1)]),
    ("pad", lambda a: F.pad(a, (1, 2)) * fg.arange(7.0), [normal(3, 4)]),
    ("gather", lambda a: fg.gather(a, 1, fg.tensor([[0, 0], [3, 1], [2, 2]])) ** 2,
     [normal(3, 4)]),
    # fused and composite layers
    ("softmax", lambda a: a.softmax(-1), [normal(3, 5)]),
    ("log_softmax", lambda a: F.log_softmax(a, -1), [normal(3, 5)]),
    ("layer_norm", lambda x, w, b: F.layer_norm(x, (5,), w, b),
     [normal(3, 5), normal(5, seed=1), normal(5, seed=2)]),
    ("gelu", lambda a: F.gelu(a), [normal(3, 4)]),
    ("gelu tanh", lambda a: F.gelu(a, approximate="tanh"), [normal(3, 4)]),
    ("cross_entropy", lambda a: F.cross_entropy(a, fg.tensor(TARGET)), [normal(4, 5)]),
    ("conv2d", lambda x, w, b: F.conv2d(x, w, b, stride=1, padding=1),
     [normal(2, 2, 5, 5), normal(3, 2, 3, 3, seed=1), normal(3, seed=2)]),
    ("conv2d stride 2", lambda x, w: F.conv2d(x, w, stride=2), [normal(1, 2, 6, 6),
                                                               normal(2, 2, 3, 3, seed=1)]),
    ("max_pool2d", lambda x: F.max_pool2d(x, 2), [away(1, 2, 4, 4)]),
    ("avg_pool2d", lambda x: F.avg_pool2d(x, 2), [normal(1, 2, 4, 4)]),
    ("attention", lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
     [normal(1, 2, 3, 4), normal(1, 2, 3, 4, seed=1), normal(1, 2, 3, 4, seed=2)]),
]


def scalar(fn, out_seed: int = 9):
    """fn made scalar with fixed random weights on its outputs (every output matters)."""
    cache = {}

    def loss(*xs):
        out = fn(*xs)
        if out.shape not in cache:
            cache[out.shape] = fg.tensor(rng(out_seed).standard_normal(out.shape))
        return (out * cache[out.shape]).sum()

    return loss


@pytest.mark.parametrize("name,fn,arrays", CASES, ids=[c[0] for c in CASES])
def test_numerical_grad_matches_backward(name, fn, arrays):
    xs = [t64(a) for a in arrays]
    loss = scalar(fn)
    loss(*xs).backward()
    num = fg.numerical_grad(loss, xs)
    assert len(num) == len(xs) and num.method == "central" and num.eps == (1e-6,) * len(xs)
    for k, (g, x) in enumerate(zip(num, xs, strict=True)):
        assert g.shape == x.shape and g.dtype == np.float64
        np.testing.assert_allclose(g.numpy(), x.grad.numpy(), rtol=RTOL, atol=ATOL,
                                   err_msg=f"{name}: input {k}")


@pytest.mark.parametrize("name,fn,arrays", CASES[::4], ids=[c[0] for c in CASES[::4]])
def test_forward_differences_match_backward_more_loosely(name, fn, arrays):
    xs = [t64(a) for a in arrays]
    loss = scalar(fn)
    loss(*xs).backward()
    num = fg.numerical_grad(loss, xs, method="forward")
    for g, x in zip(num, xs, strict=True):  # error O(eps) = 1e-8 against O(eps²) central
        np.testing.assert_allclose(g.numpy(), x.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_every_op_family_is_covered():
    names = {c[0].split()[0] for c in CASES}
    for family in ("add", "exp", "sum", "matmul", "einsum", "index", "softmax", "log_softmax",
                   "layer_norm", "gelu", "cross_entropy", "conv2d", "max_pool2d",
                   "avg_pool2d"):
        assert family in names


# ---------------------------------------------------------------- the bill

def _pass_flops(fn, xs) -> int:
    with fg.profile() as bill, fg.no_grad():
        fn(*xs)
    return bill.flops()


@pytest.mark.parametrize("method,passes", [("central", lambda n: 2 * n),
                                           ("forward", lambda n: n + 1)])
def test_bill_counts_exactly_the_passes(method, passes):
    fg.manual_seed(0)
    model = fg.models.MLP([5, 4, 3], activation="tanh", dtype=fg.float64)
    x, y = fg.randn(6, 5, dtype=fg.float64), fg.randint(0, 3, (6,))
    params = list(model.parameters())
    n = sum(p.numel() for p in params)
    calls = []

    def loss(*_):
        calls.append(1)
        return F.cross_entropy(model(x), y)

    F_pass = _pass_flops(loss, params)
    calls.clear()
    with fg.profile() as bill:
        num = fg.numerical_grad(loss, params, method=method)
    assert num.passes == len(calls) == passes(n) and num.n == n == 39
    assert bill.flops() == bill.flops("forward") == bill.flops(scope="numerical_grad")
    assert bill.flops() == passes(n) * F_pass
    assert bill.flops("backward") == 0 and bill.saved() == []  # no graph was built
    assert {ev[fg.ledger.SCOPE].split(".")[0] for ev in bill.events} == {"numerical_grad"}


def test_passes_are_scoped_under_the_callers_scope():
    w = t64(normal(4))
    with fg.profile() as bill, fg.scope("check"):
        fg.numerical_grad(lambda w: (w * w).sum(), w)
    per_pass = 4 + 3  # mul, sum
    assert bill.flops(scope="check.numerical_grad") == 8 * per_pass


def test_model_parameters_read_directly_and_restored_bit_for_bit():
    fg.manual_seed(1)
    model = fg.models.MLP([3, 4, 2], dtype=fg.float64)
    x = fg.randn(5, 3, dtype=fg.float64)
    params = list(model.parameters())
    before = [p.detach().numpy().copy() for p in params]

    def loss(*_):
        return model(x).tanh().sum()

    loss().backward()
    num = fg.numerical_grad(loss, params)
    for g, p, b in zip(num, params, before, strict=True):
        np.testing.assert_array_equal(p.detach().numpy(), b)
        np.testing.assert_allclose(g.numpy(), p.grad.numpy(), rtol=RTOL, atol=ATOL)


def test_inputs_are_restored_when_fn_raises():
    x = t64([1.0, 2.0, 3.0])
    seen = []

    def fn(x):
        seen.append(x.detach().numpy().copy())
        if len(seen) == 3:
            raise RuntimeError("boom")
        return x.sum()

    with pytest.raises(RuntimeError, match="boom"):
        fg.numerical_grad(fn, x)
    np.testing.assert_array_equal(x.detach().numpy(), [1.0, 2.0, 3.0])
    assert seen[2][1] == 2.0 + 1e-6  # it failed while element 1 was perturbed


def test_noncontiguous_input_and_float32():
    base = normal(4, 3)
    x = fg.from_numpy(base).T  # a transposed view
    assert not x._data.flags.c_contiguous
    num = fg.numerical_grad(lambda x: (x ** 3).sum(), x)
    np.testing.assert_allclose(num[0].numpy(), 3 * base.T ** 2, rtol=RTOL)
    np.testing.assert_array_equal(base, normal(4, 3))
    x32 = fg.tensor(normal(4), dtype=fg.float32)
    g32 = fg.numerical_grad(lambda x: (x ** 2).sum(), x32)
    assert g32[0].dtype == np.float32 and g32.eps == (5e-3,)
    np.testing.assert_allclose(g32[0].numpy(), 2 * x32.numpy(), rtol=1e-3, atol=1e-3)


def test_exports_and_result_type():
    assert fg.numerical_grad is fg.autograd.numerical_grad
    g = fg.numerical_grad(lambda a, b: (a * b).sum(), [t64([1.0, 2.0]), t64([3.0])])
    assert isinstance(g, tuple) and isinstance(g, fg.autograd.NumericalGrad)
    assert g.passes == 6 and "passes=6" in repr(g)


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("call,error,match", [
    (lambda x: fg.numerical_grad(lambda x: x.sum(), x, method="backward"), ValueError,
     "method must be one of"),
    (lambda x: fg.numerical_grad(lambda x: x.sum(), x, eps=0), ValueError, "positive finite"),
    (lambda x: fg.numerical_grad(lambda x: x.sum(), x, eps=float("nan")), ValueError,
     "positive finite"),
    (lambda x: fg.numerical_grad(lambda x: x.sum(), x, eps=True), ValueError, "positive"),
    (lambda x: fg.numerical_grad(lambda x: x.sum(), x, eps="1e-6"), ValueError, "positive"),
    (lambda x: fg.numerical_grad(lambda x: x.sum(), []), ValueError, "no inputs"),
    (lambda x: fg.numerical_grad(lambda x: x.sum(), [np.ones(2)]), TypeError,
     "input 0 must be a Tensor"),
    (lambda x: fg.numerical_grad(lambda x: x.sum(), fg.ones(2, dtype=fg.int64)), TypeError,
     "finite differences need float64"),
    (lambda x: fg.numerical_grad(lambda x: x.sum(), fg.ones(2, dtype=fg.float16)), TypeError,
     "int64|float16"),
    (lambda x: fg.numerical_grad(lambda x: x.sum(), fg.ones(2, 3, device="meta")),
     ValueError, "meta tensor"),
    (lambda x: fg.numerical_grad(lambda x: x.sum(), x.broadcast_to((4, 3))), ValueError,
     "expanded view"),
    (lambda x: fg.numerical_grad(lambda x: 3.0, x), TypeError, "must return a Tensor"),
    (lambda x: fg.numerical_grad(lambda x: x * 2, x), ValueError, "must return a scalar"),
    (lambda x: fg.numerical_grad("f", x), TypeError, "fn must be callable"),
    (lambda x: fg.numerical_grad(lambda x: x.sum(), x * 1e12, eps=1e-6), ValueError,
     "x \\+ eps == x"),
])
def test_bad_inputs_are_clear_errors(call, error, match):
    x = t64(normal(3), grad=False)
    with pytest.raises(error, match=match):
        call(x)


# ---------------------------------------------------------------- gradcheck's bill

def test_gradcheck_bills_its_numerical_and_analytic_parts():
    a, b = t64(normal(2, 3)), t64(normal(3, 4, seed=1))
    fn = lambda a, b: (a @ b).tanh()  # noqa: E731
    per_pass = _pass_flops(fn, (a, b))
    with fg.profile() as outer:
        bill = fg.gradcheck(fn, (a, b), return_bill=True)
    n = a.numel() + b.numel()
    assert bill.flops(scope="gradcheck.numerical") == (1 + 2 * n) * per_pass
    assert bill.flops(scope="gradcheck.vjp") > 0 and bill.flops(scope="gradcheck.jvp") > 0
    assert bill.flops("backward", scope="gradcheck.vjp") > 0  # jacrev: a backward per output
    assert bill.flops() == sum(bill.flops(scope=f"gradcheck.{p}")
                               for p in ("numerical", "vjp", "jvp"))
    assert outer.flops() == bill.flops()  # the enclosing profile sees the same work
    assert fg.gradcheck(fn, (a, b)) is True


def test_gradcheck_error_carries_the_bill_and_inputs_are_untouched():
    x = t64([0.0, 1.0])  # relu's kink at 0: analytic slope 0, numeric 0.5
    with pytest.raises(fg.GradcheckError) as err:
        fg.gradcheck(lambda x: x.relu(), (x,))
    per_pass = _pass_flops(lambda x: x.relu(), (x,))
    assert err.value.bill.flops(scope="gradcheck.numerical") == (1 + 2 * 2) * per_pass > 0
    assert err.value.bill.flops(scope="gradcheck.vjp") > 0
    np.testing.assert_array_equal(x.detach().numpy(), [0.0, 1.0])
