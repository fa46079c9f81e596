"""Forward mode and function transforms against torch.func (CPU, float64): jvp, vjp,
jacrev, jacfwd and hvp."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.func as tf

import flopgrad as fg

RNG = np.random.default_rng(1)


def arr(*shape, lo=None):
    a = RNG.standard_normal(shape)
    return np.abs(a) + lo if lo is not None else a


def close(a, b, rtol=1e-9, atol=1e-11) -> None:
    a = a.detach().numpy() if isinstance(a, fg.Tensor) else np.asarray(a)
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def F(a):
    return fg.tensor(np.asarray(a, dtype=np.float64))


def T(a):
    return torch.tensor(np.asarray(a, dtype=np.float64))


# Each case: (name, function written once against the shared Tensor API, primal arrays).
# flopgrad and torch share enough method names that one body serves both.
CASES = [
    ("polynomial", lambda x: x ** 3 - 2 * x * x + 1, [arr(4)]),
    ("transcendental", lambda x: (x.sin() * x.exp()).tanh() + x.sigmoid(), [arr(2, 3)]),
    ("log sqrt div", lambda x: x.log() / x.sqrt() + 1 / x, [arr(5, lo=0.5)]),
    ("matmul", lambda a, b: (a @ b).tanh(), [arr(3, 4), arr(4, 2)]),
    ("broadcast", lambda a, b: (a * b + b.exp()).sum(0), [arr(3, 1), arr(1, 4)]),
    ("reductions", lambda x: x.softmax(-1) * x.logsumexp(-1, keepdim=True), [arr(2, 5)]),
    ("shape ops", lambda x: x.reshape(4, 3).T.flip(0)[1:] * 2, [arr(2, 6)]),
    ("max min", lambda a, b: a.maximum(b) - a.minimum(b) * a.amax(), [arr(6), arr(6)]),
    ("tuple out", lambda a, b: (a * b, (a - b).exp().sum()), [arr(3), arr(3)]),
    ("scalar out", lambda x: (x * x).sum(), [arr(2, 2)]),
    ("unused primal", lambda a, b: a.cos(), [arr(3), arr(2)]),
]


def _outs(x):
    return x if isinstance(x, tuple | list) else (x,)


@pytest.mark.parametrize("name,fn,primals", CASES, ids=[c[0] for c in CASES])
def test_jvp_matches_torch(name, fn, primals):
    tangents = [RNG.standard_normal(p.shape) for p in primals]
    out, tan = fg.jvp(fn, tuple(F(p) for p in primals), tuple(F(t) for t in tangents))
    out_t, tan_t = tf.jvp(fn, tuple(T(p) for p in primals), tuple(T(t) for t in tangents))
    assert isinstance(out, tuple) == isinstance(out_t, tuple)
    for a, b in zip(_outs(out), _outs(out_t), strict=True):
        close(a, b)
    for a, b in zip(_outs(tan), _outs(tan_t), strict=True):
        close(a, b)


@pytest.mark.parametrize("name,fn,primals", CASES, ids=[c[0] for c in CASES])
def test_vjp_matches_torch(name, fn, primals):
    out, vjp_fn = fg.vjp(fn, *(F(p) for p in primals))
    out_t, vjp_t = tf.vjp(fn, *(T(p) for p in primals))
    cots = [RNG.standard_normal(o.shape) for o in _outs(out_t)]
    cot = tuple(F(c) for c in cots) if isinstance(out_t, tuple) else F(cots[0])
    cot_t = tuple(T(c) for c in cots) if isinstance(out_t, tuple) else T(cots[0])
    for a, b in zip(_outs(out), _outs(out_t), strict=True):
        close(a, b)
        assert not a.requires_grad
    gs, gts = vjp_fn(cot), vjp_t(cot_t)
    assert len(gs) == len(gts) == len(primals)
    for a, b in zip(gs, gts, strict=True):
        close(a, b)
    for a, b in zip(vjp_fn(cot), gts, strict=True):  # vjp_fn can be called again
        close(a, b)


SINGLE = [c for c in CASES if c[0] not in ("tuple out",)]


@pytest.mark.parametrize("name,fn,primals", SINGLE, ids=[c[0] for c in SINGLE])
@pytest.mark.parametrize("mode", ["rev", "fwd"])
def test_jacobians_match_torch(name, fn, primals, mode):
    ours, theirs = (fg.jacrev, tf.jacrev) if mode == "rev" else (fg.jacfwd, tf.jacfwd)
    argnums = tuple(range(len(primals)))
    jac = ours(fn, argnums=argnums)(*(F(p) for p in primals))
    jac_t = theirs(fn, argnums=argnums)(*(T(p) for p in primals))
    for a, b in zip(jac, jac_t, strict=True):
        close(a, b)
    j0 = ours(fn)(*(F(p) for p in primals))  # argnums=0: a tensor, not a tuple
    close(j0, theirs(fn)(*(T(p) for p in primals)))


@pytest.mark.parametrize("ours,theirs", [(fg.jacrev, tf.jacrev), (fg.jacfwd, tf.jacfwd)])
def test_jacobian_argnums_and_non_tensor_arguments(ours, theirs):
    def f(x, scale, w, dim):
        return (x * scale).tanh().sum(dim) * w

    x, w = arr(2, 3), arr(2)
    jac = ours(f, argnums=(2, 0))(F(x), 1.5, F(w), 1)
    jac_t = theirs(f, argnums=(2, 0))(T(x), 1.5, T(w), 1)
    assert len(jac) == 2
    close(jac[0], jac_t[0])
    close(jac[1], jac_t[1])
    close(ours(f, argnums=2)(F(x), 1.5, F(w), 1), jac_t[0])


@pytest.mark.parametrize("ours,theirs", [(fg.jacrev, tf.jacrev), (fg.jacfwd, tf.jacfwd)])
def test_jacobian_of_constant_function_is_zero(ours, theirs):
    x = arr(3)
    jac = ours(lambda a: fg.ones(2, dtype=fg.float64))(F(x))
    close(jac, theirs(lambda a: torch.ones(2))(T(x)))


def test_jacobians_agree_on_random_mlp():
    w1, w2 = arr(4, 5), arr(5, 3)

    def mlp(x, a, b):
        return ((x @ a).tanh() @ b).softmax(-1)

    x = arr(2, 4)
    jr = fg.jacrev(mlp, argnums=(0, 1, 2))(F(x), F(w1), F(w2))
    jf = fg.jacfwd(mlp, argnums=(0, 1, 2))(F(x), F(w1), F(w2))
    jt = tf.jacrev(mlp, argnums=(0, 1, 2))(T(x), T(w1), T(w2))
    for a, b, c in zip(jr, jf, jt, strict=True):
        close(a, c)
        close(b, c)


HVP_CASES = [
    ("cubic", lambda x: (x ** 3).sum(), [arr(4)]),
    ("logsumexp", lambda x: x.logsumexp(0), [arr(5)]),
    ("two inputs", lambda a, b: ((a @ b).tanh() ** 2).sum(), [arr(2, 3), arr(3, 2)]),
    ("softplus-ish", lambda x: (1 + x.exp()).log().sum() * x.sin().sum(), [arr(3)]),
    ("broadcast", lambda a, b: (a * b).exp().sum() * a.sum(), [arr(3, 1), arr(1, 4)]),
]


@pytest.mark.parametrize("name,fn,primals", HVP_CASES, ids=[c[0] for c in HVP_CASES])
def test_hvp_matches_torch(name, fn, primals):
    vs = [RNG.standard_normal(p.shape) for p in primals]
    value, hv = fg.hvp(fn, tuple(F(p) for p in primals), tuple(F(v) for v in vs))
    value_t, hv_t = torch.autograd.functional.hvp(
        fn, tuple(T(p) for p in primals), tuple(T(v) for v in vs))
    close(value, value_t)
    assert isinstance(hv, tuple) and len(hv) == len(primals)
    for a, b in zip(hv, hv_t, strict=True):
        close(a, b)
    # torch.func route: forward-over-reverse
    _, hv_f = tf.jvp(tf.grad(fn, argnums=tuple(range(len(primals)))),
                     tuple(T(p) for p in primals), tuple(T(v) for v in vs))
    for a, b in zip(hv, hv_f, strict=True):
        close(a, b)


def test_hvp_single_tensor_returns_tensor():
    x, v = arr(3), arr(3)
    fn = lambda a: (a.sin() * a).sum()  # noqa: E731
    value, hv = fg.hvp(fn, F(x), F(v))
    value_t, hv_t = torch.autograd.functional.hvp(fn, T(x), T(v))
    assert isinstance(hv, fg.Tensor)
    close(value, value_t)
    close(hv, hv_t)


def test_hvp_of_requires_grad_primal_leaves_it_alone():
    x = F(arr(3)).requires_grad_()
    _, hv = fg.hvp(lambda a: (a ** 3).sum(), (x,), (fg.ones(3, dtype=fg.float64),))
    close(hv[0], 6 * x.detach().numpy())
    assert x.grad is None and x.is_leaf


def test_jvp_output_used_twice():
    x, t = F([1.0, 2.0]), F([1.0, 1.0])

    def f(a):
        y = a * 3
        return y, y

    (y1, y2), (t1, t2) = fg.jvp(f, (x,), (t,))
    assert t1.tolist() == [3.0, 3.0] and t2.tolist() == [3.0, 3.0]


def test_jvp_identity_and_constant_outputs():
    x, t = F([1.0, 2.0]), F([0.5, -1.0])
    out, tan = fg.jvp(lambda a: a, (x,), (t,))
    assert tan.tolist() == [0.5, -1.0]
    out, tan = fg.jvp(lambda a: fg.ones(2, dtype=fg.float64), (x,), (t,))
    assert tan.tolist() == [0.0, 0.0]


def test_jvp_leaves_no_tangent_behind():
    x, t = F([1.0, 2.0]), F([1.0, 1.0])
    out, _ = fg.jvp(lambda a: a.exp(), (x,), (t,))
    assert out._tangent is None and x._tangent is None
    out2, tan2 = fg.jvp(lambda a: a * out, (x,), (t,))  # reusing `out` adds no stale tangent
    close(tan2, np.exp([1.0, 2.0]))


def test_jvp_float32_tangent_is_cast_to_primal_dtype():
    out, tan = fg.jvp(lambda a: a * 2, (F([1.0]),), (fg.tensor([1.0]),))
    assert tan.dtype == np.float64


def test_jvp_through_graph_of_requires_grad_input():
    x = F([0.5, 1.5]).requires_grad_()
    out, tan = fg.jvp(lambda a: a.sin(), (x,), (F([1.0, 1.0]),))
    out.sum().backward()
    close(x.grad, np.cos([0.5, 1.5]))
    close(tan, np.cos([0.5, 1.5]))
