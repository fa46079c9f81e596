"""fg.Function (user-defined ops: forward, backward, jvp, declared cost) and fg.gradcheck."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.func as tf

import flopgrad as fg


def t64(values, requires_grad: bool = False) -> fg.Tensor:
    return fg.tensor(np.asarray(values, dtype=np.float64), requires_grad=requires_grad)


def close(a, b, rtol=1e-10, atol=1e-12) -> None:
    a = a.detach().numpy() if isinstance(a, fg.Tensor) else np.asarray(a)
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


class Cube(fg.Function):
    """x ** 3 with every rule declared."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * 3 * fg.tensor(x) ** 2

    @staticmethod
    def jvp(ctx, t):
        (x,) = ctx.saved_tensors
        return t * 3 * fg.tensor(x) ** 2

    @staticmethod
    def cost(out_shape, in_shapes):
        return (0, 2 * fg.ops.size(out_shape), 0)


class Mul(fg.Function):
    """a * b, counting backward calls and recording what the rules see."""

    calls = 0
    seen: list = []

    @staticmethod
    def forward(ctx, a, b):
        Mul.seen.append(("forward", type(a), type(b)))
        ctx.save_for_backward(a, b)
        ctx.note = "kept"
        return a * b

    @staticmethod
    def backward(ctx, g):
        Mul.calls += 1
        Mul.seen.append(("backward", type(g), ctx.note, ctx.needs_input_grad))
        a, b = ctx.saved_tensors
        return g * fg.tensor(b), g * fg.tensor(a)


class Undeclared(fg.Function):
    @staticmethod
    def forward(ctx, x):
        return np.sin(x)

    @staticmethod
    def backward(ctx, g):
        raise AssertionError("not differentiated in these tests")


@pytest.fixture(autouse=True)
def _reset_mul():
    Mul.calls = 0
    Mul.seen = []


# ---------------------------------------------------------------- Function

def test_function_forward_backward_matches_torch():
    x = t64([0.5, -1.0, 2.0], True)
    y = Cube.apply(x)
    assert y.grad_fn is not None and y.grad_fn.name() == "Cube"
    (y.sin()).sum().backward()
    xt = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64, requires_grad=True)
    (xt ** 3).sin().sum().backward()
    close(y, (xt ** 3).detach())
    close(x.grad, xt.grad)


def test_function_rules_see_arrays_tensors_and_ctx():
    a, b = t64([1.0, 2.0], True), t64([3.0, 4.0])
    Mul.apply(a, b).sum().backward()
    assert Mul.seen == [("forward", np.ndarray, np.ndarray),
                        ("backward", fg.Tensor, "kept", (True, False))]
    assert a.grad.tolist() == [3.0, 4.0]


def test_function_with_constant_argument():
    x = t64([1.0, 2.0], True)
    y = Mul.apply(x, 5.0)
    y.sum().backward()
    assert x.grad.tolist() == [5.0, 5.0]


def test_function_backward_runs_once_per_pass():
    a, b = t64([1.0, 2.0], True), t64([3.0, 4.0], True)
    y = Mul.apply(a, b).sum()
    y.backward(retain_graph=True)
    assert Mul.calls == 1
    fg.grad(y, [a, b], retain_graph=True)
    assert Mul.calls == 2


def test_function_repeated_backward_uses_each_new_gradient():
    a, b = t64([1.0, 2.0], True), t64([3.0, 4.0], True)
    y = Mul.apply(a, b)
    (ga1,) = fg.grad(y, a, grad_outputs=t64([1.0, 0.0]), retain_graph=True)
    (ga2,) = fg.grad(y, a, grad_outputs=t64([0.0, 10.0]), retain_graph=True)
    assert ga1.tolist() == [3.0, 0.0]
    assert ga2.tolist() == [0.0, 40.0]
    y.backward(t64([1.0, 1.0]), retain_graph=True)
    y.backward(t64([2.0, 2.0]))
    assert a.grad.tolist() == [9.0, 12.0]
    assert b.grad.tolist() == [3.0, 6.0]


def test_function_used_twice_in_one_graph():
    a, b = t64([1.0, 2.0], True), t64([3.0, 4.0], True)
    loss = (Mul.apply(a, b) * Mul.apply(b, a).exp()).sum()
    loss.backward()
    at = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    bt = torch.tensor([3.0, 4.0], dtype=torch.float64, requires_grad=True)
    ((at * bt) * (bt * at).exp()).sum().backward()
    close(a.grad, at.grad)
    close(b.grad, bt.grad)
    assert Mul.calls == 2


def test_jacobians_of_function_match_torch():
    a, b = np.array([1.0, -2.0, 0.5]), np.array([0.3, 0.7, -1.1])
    ja, jb = fg.jacrev(Mul.apply, argnums=(0, 1))(t64(a), t64(b))
    jta, jtb = tf.jacrev(torch.mul, argnums=(0, 1))(torch.tensor(a), torch.tensor(b))
    close(ja, jta)
    close(jb, jtb)
    close(fg.jacfwd(Cube.apply)(t64(a)), tf.jacfwd(lambda x: x ** 3)(torch.tensor(a)))
    close(fg.jacrev(Cube.apply)(t64(a)), tf.jacrev(lambda x: x ** 3)(torch.tensor(a)))


def test_function_jvp_matches_torch():
    x, t = np.array([0.5, 1.5]), np.array([1.0, -2.0])
    out, tan = fg.jvp(lambda v: Cube.apply(v).sin(), (t64(x),), (t64(t),))
    out_t, tan_t = tf.jvp(lambda v: (v ** 3).sin(), (torch.tensor(x),), (torch.tensor(t),))
    close(out, out_t)
    close(tan, tan_t)


def test_function_under_no_grad_records_nothing():
    x = t64([1.0], True)
    with fg.no_grad():
        y = Cube.apply(x)
    assert not y.requires_grad and y.grad_fn is None


def test_function_in_higher_order_graph():
    class Double(fg.Function):
        @staticmethod
        def forward(ctx, x):
            return 2 * x

        @staticmethod
        def backward(ctx, g):
            return g * 2

    x = t64([1.5], True)
    (g1,) = fg.grad(Double.apply(x) ** 2, x, create_graph=True)  # 8x
    (g2,) = fg.grad(g1.sum(), x)
    assert g1.tolist() == [12.0] and g2.tolist() == [8.0]


def test_function_subclass_gets_its_own_op():
    class Cube2(Cube):
        pass

    Cube.apply(t64([1.0]))
    Cube2.apply(t64([1.0]))
    assert Cube2._op is not Cube._op and Cube2._op.name == "Cube2"
    out, tan = fg.jvp(Cube2.apply, (t64([2.0]),), (t64([1.0]),))  # jvp is inherited
    assert tan.tolist() == [12.0]


def test_declared_cost_is_billed_and_unknown_is_flagged():
    x = t64(np.ones((3, 4)))
    with fg.profile() as bill:
        Cube.apply(x)
        Undeclared.apply(x)
    assert Cube._op.unknown_cost is False
    assert Cube._op.cost((3, 4), [(3, 4)], ()) == (0, 24, 0)
    assert bill.flops(phase="forward", op="Cube") == 24
    assert Undeclared._op.unknown_cost is True
    assert bill.unknown_ops() == ["Undeclared"]


# ---------------------------------------------------------------- gradcheck

@pytest.mark.parametrize("name,fn,inputs", [
    ("tanh", lambda x: x.tanh(), [(3,)]),
    ("matmul", lambda a, b: a @ b, [(2, 3), (3, 2)]),
    ("softmax", lambda x: x.softmax(-1), [(2, 3)]),
    ("tuple outputs", lambda a, b: (a * b, (a - b).exp().sum()), [(3,), (3,)]),
    ("Cube", Cube.apply, [(4,)]),
    ("Mul", Mul.apply, [(2,), (2,)]),
])
def test_gradcheck_passes_on_correct_functions(name, fn, inputs):
    rng = np.random.default_rng(3)
    args = [t64(rng.standard_normal(s), True) for s in inputs]
    check_jvp = name != "Mul"  # Mul declares no jvp
    assert fg.gradcheck(fn, args, check_jvp=check_jvp) is True


def test_gradcheck_with_non_tensor_and_constant_arguments():
    x = t64(np.random.default_rng(4).standard_normal((2, 3)), True)
    w = t64([1.0, 2.0, 3.0])  # a tensor that is not checked
    assert fg.gradcheck(lambda a, dim, c: (a * c).logsumexp(dim), (x, 1, w))


class WrongSquare(fg.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * 3 * fg.tensor(x)  # should be 2x

    @staticmethod
    def jvp(ctx, t):
        (x,) = ctx.saved_tensors
        return t * 2 * fg.tensor(x)


def test_gradcheck_reports_worst_entry_of_wrong_backward():
    x = t64([1.0, -2.0, 3.0], True)
    with pytest.raises(fg.GradcheckError) as err:
        fg.gradcheck(WrongSquare.apply, (x,))
    msg = str(err.value)
    assert msg.startswith("gradcheck (vjp): d output[2] / d input 0[2]")
    m = re.search(r"analytic (\S+), numeric (\S+) ", msg)
    assert float(m.group(1)) == 9.0
    assert float(m.group(2)) == pytest.approx(6.0, rel=1e-6)
    assert isinstance(err.value, AssertionError)


def test_gradcheck_reports_wrong_jvp():
    class WrongJvp(WrongSquare):
        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * 2 * fg.tensor(x)

        @staticmethod
        def jvp(ctx, t):
            return t

    x = t64([1.0, 4.0], True)
    assert fg.gradcheck(WrongJvp.apply, (x,), check_jvp=False)
    msg = r"^gradcheck \(jvp\): d output\[1\] / d input 0\[1\]"
    with pytest.raises(fg.GradcheckError, match=msg):
        fg.gradcheck(WrongJvp.apply, (x,))


def test_gradcheck_names_the_input():
    a = t64([1.0, 2.0], True)
    b = t64([0.5, 0.25], True)
    with pytest.raises(fg.GradcheckError, match=r"d input 1\["):
        fg.gradcheck(lambda u, v: u + WrongSquare.apply(v), (a, b))


def test_saved_inputs_come_back_as_tensors_so_a_function_is_twice_differentiable():
    class Cube3(fg.Function):  # backward written with flopgrad ops on the saved input
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x, x * 0 + 7.0)
            return x ** 3

        @staticmethod
        def backward(ctx, g):
            x, seven = ctx.saved_tensors
            assert isinstance(x, fg.Tensor) and isinstance(seven, fg.Tensor)
            assert not seven.requires_grad  # not an input: a constant
            return g * 3 * x ** 2

    x = t64([1.5, -2.0], True)
    (g1,) = fg.grad(Cube3.apply(x).sum(), x, create_graph=True)  # 3x^2
    (g2,) = fg.grad(g1.sum(), x)  # 6x
    assert g1.tolist() == [6.75, 12.0] and g2.tolist() == [9.0, -12.0]
