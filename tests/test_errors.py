"""Bad input gets a clear error: the message names the op, the shapes, the keyword or the
remedy. Never a silently wrong gradient."""

from __future__ import annotations

import re

import numpy as np
import pytest

import flopgrad as fg
import flopgrad.nn.functional as F


def t64(values, requires_grad: bool = False) -> fg.Tensor:
    return fg.tensor(np.asarray(values, dtype=np.float64), requires_grad=requires_grad)


# ---------------------------------------------------------------- shapes

@pytest.mark.parametrize("a,b", [((2, 3), (4, 5)), ((3,), (4,)), ((2, 3, 4), (3, 5, 6)),
                                 ((5, 2), (3,))])
def test_matmul_shape_mismatch_names_op_and_shapes(a, b):
    with pytest.raises(fg.ShapeError) as err:
        fg.ones(*a) @ fg.ones(*b)
    msg = str(err.value)
    assert "matmul" in msg
    for shape in (a, b):
        # the operand shapes (1-D operands are shown as the matrices they become)
        assert str(shape) in msg or str((1,) + shape) in msg or str(shape + (1,)) in msg


def test_matmul_of_scalar():
    with pytest.raises(fg.ShapeError, match=r"matmul.*\(\).*\(3,\)"):
        fg.tensor(2.0) @ fg.ones(3)


@pytest.mark.parametrize("op,sym", [("add", lambda a, b: a + b), ("mul", lambda a, b: a * b),
                                    ("sub", lambda a, b: a - b), ("div", lambda a, b: a / b),
                                    ("maximum", fg.maximum)])
def test_broadcast_mismatch_names_op_and_shapes(op, sym):
    with pytest.raises(fg.ShapeError, match=rf"^{op}: .*\(2, 3\) and \(4,\)"):
        sym(fg.ones(2, 3), fg.ones(4))


def test_shape_error_is_a_value_error():
    assert issubclass(fg.ShapeError, ValueError)
    with pytest.raises(ValueError):
        fg.ones(2) + fg.ones(3)


def test_reshape_and_cat_mismatch():
    with pytest.raises(fg.ShapeError, match=r"reshape.*\(2, 3\).*\(4,\)"):
        fg.ones(2, 3).reshape(4)
    with pytest.raises(fg.ShapeError, match=r"cat.*\(2, 3\) and \(3, 2\)"):
        fg.cat([fg.ones(2, 3), fg.ones(3, 2)])


# ---------------------------------------------------------------- backward misuse

def test_backward_non_scalar_without_gradient():
    y = fg.ones(2, 3, requires_grad=True) * 2
    with pytest.raises(RuntimeError, match=r"shape \(2, 3\).*single-element.*gradient="):
        y.backward()
    with pytest.raises(RuntimeError, match=r"grad: .*shape \(2, 3\).*grad_outputs="):
        fg.grad(y, y)


def test_backward_gradient_of_wrong_shape():
    y = fg.ones(2, requires_grad=True) * 2
    with pytest.raises(RuntimeError, match=r"gradient has shape \(3,\).*output has shape \(2,\)"):
        y.backward(fg.ones(3))


def test_backward_gradient_count_mismatch():
    x = fg.ones(2, requires_grad=True)
    with pytest.raises(ValueError, match="2 outputs but 1 gradients"):
        fg.grad([x * 2, x * 3], x, grad_outputs=[fg.ones(2)])


def test_second_backward_says_retain_graph():
    x = t64([1.0, 2.0], True)
    y = (x.exp() * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match=r"second time.*retain_graph=True"):
        y.backward()
    z = (x.sin() * x).sum()
    fg.grad(z, x)
    with pytest.raises(RuntimeError, match=r"(?s)\b(exp|sin|mul)\b.*retain_graph=True"):
        fg.grad(z, x)


def test_backward_with_empty_inputs():
    y = (fg.ones(2, requires_grad=True) * 2).sum()
    with pytest.raises(ValueError, match="inputs= is empty"):
        y.backward(inputs=[])


def test_backward_on_tensor_without_graph():
    with pytest.raises(RuntimeError, match="does not require grad"):
        fg.ones(2).sum().backward()
    x = fg.ones(2, requires_grad=True)
    with fg.no_grad():
        y = (x * 2).sum()
    with pytest.raises(RuntimeError, match="no_grad"):
        y.backward()


@pytest.mark.parametrize("make", [
    lambda: fg.tensor([1, 2], requires_grad=True),
    lambda: fg.tensor([1, 2]).requires_grad_(),
    lambda: fg.zeros(2, dtype=fg.int64, requires_grad=True),
    lambda: fg.arange(3, requires_grad=True),
    lambda: fg.full((2,), 3, requires_grad=True),
    lambda: fg.tensor([True]).requires_grad_(),
])
def test_requires_grad_on_integer_tensor(make):
    with pytest.raises(TypeError, match=r"requires_grad=True needs a floating-point.*(int64|bool)"):
        make()


def test_grad_of_unused_input_without_allow_unused():
    x, u = fg.ones(2, requires_grad=True), fg.ones(3, requires_grad=True)
    msg = r"input 1 \(shape \(3,\)\).*not used.*allow_unused=True"
    with pytest.raises(RuntimeError, match=msg):
        fg.grad((x * 2).sum(), [x, u])


def test_grad_of_input_that_is_not_differentiable():
    x = fg.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="input 1 does not require grad"):
        fg.grad((x * 2).sum(), [x, fg.ones(2)])
    with pytest.raises(RuntimeError, match="input 0 is ndarray"):
        fg.grad((x * 2).sum(), [np.ones(2)])
    with pytest.raises(RuntimeError, match="output does not require grad"):
        fg.grad(fg.ones(2).sum(), x)


def test_other_misuse_messages():
    x = fg.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"detach\(\)\.numpy\(\)"):
        x.numpy()
    with pytest.raises(ValueError, match="2 elements"):
        x.item()
    with pytest.raises(RuntimeError, match="leaf"):
        (x * 2).requires_grad_(False)
    with pytest.raises(RuntimeError, match="no_grad"):
        x.add_(1)
    with pytest.raises(RuntimeError, match="no_grad"):
        x[0] = 3.0


# ---------------------------------------------------------------- in-place after save

INPLACE = [
    ("data.add_", lambda w: w.data.add_(1)),
    ("no_grad add_", lambda w: _no_grad(lambda: w.add_(1))),
    ("no_grad mul_", lambda w: _no_grad(lambda: w.mul_(2))),
    ("no_grad zero_", lambda w: _no_grad(w.zero_)),
    ("no_grad copy_", lambda w: _no_grad(lambda: w.copy_(fg.zeros(3)))),
    ("no_grad setitem", lambda w: _no_grad(lambda: w.__setitem__(0, 5.0))),
    ("detach fill_", lambda w: w.detach().fill_(3.0)),
]


def _no_grad(fn):
    with fg.no_grad():
        fn()


@pytest.mark.parametrize("name,modify", INPLACE, ids=[c[0] for c in INPLACE])
def test_modifying_a_saved_input_in_place_is_an_error(name, modify):
    x = fg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    w = fg.tensor([4.0, 5.0, 6.0], requires_grad=True)
    y = (x * w).sum()
    modify(w)
    with pytest.raises(RuntimeError, match=r"mul \(input 1, of shape \(3,\)\).*modified in place"):
        y.backward()
    assert x.grad is None


def test_modifying_a_saved_non_leaf_or_output_is_an_error():
    x = fg.tensor([1.0, 2.0], requires_grad=True)
    h = x * 2
    y = (h * x).sum()  # h saved for x's gradient
    with fg.no_grad():
        h.add_(1)
    with pytest.raises(RuntimeError, match="in place"):
        y.backward()
    e = x.exp()  # exp saves its output
    z = e.sum()
    e.data.mul_(2)
    with pytest.raises(RuntimeError, match=r"exp \(its output.*in place"):
        z.backward()
    with pytest.raises(RuntimeError, match="in place"):
        fg.grad(z, x)


def test_modifying_an_unsaved_tensor_is_fine():
    x = fg.tensor([1.0, 2.0], requires_grad=True)
    w = fg.tensor([4.0, 5.0], requires_grad=True)
    y = (x + w).sum()  # add saves nothing: the values are not needed
    with fg.no_grad():
        w.add_(1)
    y.backward()
    assert x.grad.tolist() == [1.0, 1.0]


def test_modifying_after_backward_is_fine():
    x = fg.tensor([1.0, 2.0], requires_grad=True)
    w = fg.tensor([4.0, 5.0], requires_grad=True)
    (x * w).sum().backward()
    with fg.no_grad():
        w.add_(1)
    assert x.grad.tolist() == [4.0, 5.0]


@pytest.mark.parametrize("view", [lambda d: d[0:2], lambda d: d.reshape(3, 1), lambda d: d.flip(0)])
def test_modifying_a_saved_tensor_through_a_view_is_an_error(view):
    x = fg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    w = fg.tensor([4.0, 5.0, 6.0], requires_grad=True)
    y = (x * w).sum()
    view(w.detach()).add_(10)
    with pytest.raises(RuntimeError, match="in place"):
        y.backward()


def test_modifying_a_function_saved_input_is_an_error():
    class Scale(fg.Function):
        @staticmethod
        def forward(ctx, a, b):
            ctx.save_for_backward(a, b)
            return a * b

        @staticmethod
        def backward(ctx, g):
            a, b = ctx.saved_tensors
            return g * fg.tensor(b), g * fg.tensor(a)

    x = fg.tensor([1.0, 2.0], requires_grad=True)
    w = fg.tensor([3.0, 4.0], requires_grad=True)
    y = Scale.apply(x, w).sum()
    with fg.no_grad():
        w.mul_(10)
    with pytest.raises(RuntimeError, match=r"Scale \(input 1, of shape \(2,\)\).*in place"):
        y.backward()


def test_modifying_a_function_saved_output_is_an_error():
    class Exp(fg.Function):
        @staticmethod
        def forward(ctx, a):
            out = np.exp(a)
            ctx.save_for_backward(out)
            return out

        @staticmethod
        def backward(ctx, g):
            (out,) = ctx.saved_tensors
            return g * fg.tensor(out)

    x = fg.tensor([1.0, 2.0], requires_grad=True)
    y = Exp.apply(x)
    loss = y.sum()
    y.data.zero_()
    with pytest.raises(RuntimeError, match=r"Exp \(its output, of shape \(2,\)\).*in place"):
        loss.backward()


# ---------------------------------------------------------------- unknown keywords

KEYWORDS = [
    ("Tensor.sum", lambda: fg.ones(2).sum(dimm=0), "dimm"),
    ("Tensor.mean", lambda: fg.ones(2).mean(keepdimz=True), "keepdimz"),
    ("Tensor.softmax", lambda: fg.ones(2).softmax(dimension=0), "dimension"),
    ("Tensor.reshape", lambda: fg.ones(2).reshape(2, order="C"), "order"),
    ("Tensor.to", lambda: fg.ones(2).to(non_blocking=True), "non_blocking"),
    ("Tensor.backward", lambda: fg.ones(1, requires_grad=True).backward(foo=1), "foo"),
    ("fg.sum", lambda: fg.sum(fg.ones(2), foo=0), "foo"),
    ("fg.exp", lambda: fg.exp(fg.ones(2), out=None), "out"),
    ("fg.tensor", lambda: fg.tensor([1.0], device_id=0), "device_id"),
    ("fg.zeros", lambda: fg.zeros(2, layout=None), "layout"),
    ("fg.arange", lambda: fg.arange(3, stop=5), "stop"),
    ("fg.grad", lambda: fg.grad(fg.ones(1, requires_grad=True) * 2, [], allow_unsued=True),
     "allow_unsued"),
    ("fg.jvp", lambda: fg.jvp(lambda a: a, (fg.ones(1),), (fg.ones(1),), has_aux=True),
     "has_aux"),
    ("F.relu", lambda: F.relu(fg.ones(2), inplace=True), "inplace"),
    ("F.mse_loss", lambda: F.mse_loss(fg.ones(2), fg.ones(2), reduce=True), "reduce"),
]


@pytest.mark.parametrize("name,call,kw", KEYWORDS, ids=[c[0] for c in KEYWORDS])
def test_unknown_keyword_is_a_type_error_naming_it(name, call, kw):
    with pytest.raises(TypeError, match=rf"unexpected keyword argument '{re.escape(kw)}'"):
        call()


# ---------------------------------------------------------------- forward mode and Function misuse

def test_jvp_misuse():
    with pytest.raises(ValueError, match=r"tangent shape \(3,\) differs from primal shape \(2,\)"):
        fg.jvp(lambda a: a, (fg.ones(2),), (fg.ones(3),))
    with pytest.raises(ValueError, match="2 primals but 1 tangents"):
        fg.jvp(lambda a, b: a, (fg.ones(2), fg.ones(2)), (fg.ones(2),))
    with pytest.raises(RuntimeError, match="nested forward mode"):
        fg.jvp(lambda a: fg.jvp(lambda b: b, (a,), (a,))[1], (fg.ones(2),), (fg.ones(2),))


def test_vjp_cotangent_count():
    _, f = fg.vjp(lambda a: (a, a * 2), fg.ones(2))
    with pytest.raises(ValueError, match="2 outputs but 1 cotangents"):
        f(fg.ones(2))


class _NoJvp(fg.Function):
    @staticmethod
    def forward(ctx, a):
        return a * 2

    @staticmethod
    def backward(ctx, g):
        return g * 2


def test_function_without_jvp_in_forward_mode():
    with pytest.raises(NotImplementedError, match=r"_NoJvp defines no jvp"):
        fg.jvp(_NoJvp.apply, (fg.ones(2),), (fg.ones(2),))
    with pytest.raises(NotImplementedError, match="no jvp"):
        fg.jacfwd(_NoJvp.apply)(fg.ones(2))
    # reverse mode through it still works
    assert fg.jacrev(_NoJvp.apply)(fg.ones(2)).tolist() == [[2.0, 0.0], [0.0, 2.0]]


def test_function_backward_returning_wrong_number_of_gradients():
    class Two(fg.Function):
        @staticmethod
        def forward(ctx, a, b):
            return a + b

        @staticmethod
        def backward(ctx, g):
            return g

    y = Two.apply(fg.ones(2, requires_grad=True), fg.ones(2, requires_grad=True)).sum()
    msg = r"Two\.backward returned 1 gradients but forward took 2"
    with pytest.raises(RuntimeError, match=msg):
        y.backward()


def test_function_backward_returning_wrong_shape():
    class Bad(fg.Function):
        @staticmethod
        def forward(ctx, a):
            return a * 2

        @staticmethod
        def backward(ctx, g):
            return fg.ones(5)

    y = Bad.apply(fg.ones(2, 3, requires_grad=True)).sum()
    with pytest.raises(RuntimeError, match=r"Bad.*input 0 has shape \(5,\).*\(2, 3\)"):
        y.backward()


def test_gradcheck_needs_float64():
    with pytest.raises(ValueError, match=r"input 0 is float32.*float64.*double"):
        fg.gradcheck(lambda a: a * 2, (fg.ones(2, requires_grad=True),))
    with pytest.raises(ValueError, match="no input has requires_grad"):
        fg.gradcheck(lambda a: a * 2, (fg.ones(2, dtype=fg.float64),))
