"""Result dtypes follow PyTorch's promotion, not NumPy's: an int tensor with a float32 tensor
is float32 (NumPy: float64), an int tensor times 2.5 or divided by an int is float32, and a
floating op on integers computes in float32. Meta tensors get the same dtypes."""

import itertools

import numpy as np
import pytest

import flopgrad as fg

torch = pytest.importorskip("torch")

DTYPES = ["bool", "uint8", "int16", "int32", "int64", "float16", "float32", "float64"]
BINARY = {
    "add": (torch.add, fg.add), "sub": (torch.sub, fg.sub), "mul": (torch.mul, fg.mul),
    "div": (torch.div, fg.div), "maximum": (torch.maximum, fg.maximum),
    "minimum": (torch.minimum, fg.minimum), "pow": (torch.pow, fg.pow),
    "where": (lambda a, b: torch.where(a > 0, a, b), lambda a, b: fg.where(a > 0, a, b)),
    "floor_divide": (lambda a, b: torch.div(a, b, rounding_mode="floor"),
                     lambda a, b: fg.div(a, b, rounding_mode="floor")),
}


def _torch_dtype(fn, *args):
    try:
        return str(fn(*args).dtype).replace("torch.", "")
    except RuntimeError:
        return None  # torch refuses (bool - bool, bool ** bool)


@pytest.mark.parametrize("name", sorted(BINARY))
@pytest.mark.parametrize("other_shape", [(3,), ()], ids=["tensor", "0-d"])
def test_binary_result_dtypes_are_torchs(name, other_shape):
    t_fn, f_fn = BINARY[name]
    for a, b in itertools.product(DTYPES, DTYPES):
        ta, tb = torch.ones(3, dtype=getattr(torch, a)), torch.ones(other_shape,
                                                                    dtype=getattr(torch, b))
        want = _torch_dtype(t_fn, ta, tb)
        if want is None:
            continue
        fa, fb = fg.tensor(np.ones(3, a)), fg.tensor(np.ones(other_shape, b))
        got = f_fn(fa, fb)
        assert str(got.dtype) == want, (name, a, b, other_shape)
        np.testing.assert_array_equal(got.numpy(), t_fn(ta, tb).numpy())
        with fg.meta():
            ma, mb = fg.zeros(3, dtype=a), fg.zeros(*other_shape, dtype=b)
        assert str(f_fn(ma, mb).dtype) == want, ("meta", name, a, b, other_shape)


@pytest.mark.parametrize("number", [2, 2.5, True])
def test_tensor_with_a_number_has_torchs_dtype(number):
    for a in DTYPES:
        ta, fa = torch.ones(3, dtype=getattr(torch, a)), fg.tensor(np.ones(3, a))
        for f in (lambda x: x * number, lambda x: number * x, lambda x: x / number,
                  lambda x: x + number, lambda x: number - x):
            want = _torch_dtype(f, ta)
            if want is not None:  # torch refuses to subtract with a bool tensor
                assert str(f(fa).dtype) == want, (a, number)
        if not (a == "bool" and number is True):  # torch's bool ** True is its own case
            assert str((fa ** number).dtype) == _torch_dtype(lambda x: x ** number, ta)


@pytest.mark.parametrize("name", ["exp", "log", "sqrt", "sin", "cos", "tanh", "sigmoid", "erf",
                                  "log1p", "rsqrt"])
def test_floating_ops_on_integers_compute_in_float32(name):
    for a in ("bool", "uint8", "int32", "int64"):
        ta, fa = torch.arange(1, 4).to(getattr(torch, a)), fg.tensor(np.arange(1, 4).astype(a))
        want = getattr(ta, name)()
        got = getattr(fa, name)()
        assert str(got.dtype) == str(want.dtype).replace("torch.", "") == "float32"
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6)


def test_mixed_dtypes_bill_float32_bytes_not_float64():
    ids = fg.arange(1000)
    w = fg.ones(1000)
    with fg.profile() as bill:
        y = ids * w + ids / 3
    assert y.dtype == np.float32
    assert bill.bytes() == (8 + 4 + 4) * 1000 + (8 + 4) * 1000 + (4 + 4 + 4) * 1000


def test_gradients_through_mixed_dtypes_stay_float32():
    w = fg.ones(4, requires_grad=True)
    mask = fg.tensor([1, 0, 1, 1])  # int64
    (w * mask / 2).sum().backward()
    assert w.grad.dtype == np.float32
    np.testing.assert_array_equal(w.grad.numpy(), [0.5, 0, 0.5, 0.5])
