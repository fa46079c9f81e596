"""Pooling options (ceil_mode, return_indices, divisor_override, 1-D pools), F.pad's
reflect / replicate / circular modes, div's rounding modes and the rounding ops, against
torch (values, gradients, JVPs, gradcheck); their bills, meta shapes, modules and errors.
Plus regression tests for the defects tests/test_opinfo.py found.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as TF
from conftest import Case, check_against_torch, fixed, make_inputs, noncontiguous, real, to_fg

import flopgrad as fg
import flopgrad.nn.functional as F
from flopgrad import nn

C = Case

POOLS = [
    C("max_pool2d-ceil", lambda x: F.max_pool2d(x, 3, 2, ceil_mode=True),
      lambda x: TF.max_pool2d(x, 3, 2, ceil_mode=True), [real(2, 3, 6, 7)]),
    C("max_pool2d-ceil-pad-dilation",
      lambda x: F.max_pool2d(x, (3, 2), (2, 3), (1, 1), (1, 2), ceil_mode=True),
      lambda x: TF.max_pool2d(x, (3, 2), (2, 3), (1, 1), (1, 2), ceil_mode=True),
      [real(1, 2, 7, 8)]),
    C("max_pool2d-ceil-no-extra", lambda x: F.max_pool2d(x, 2, ceil_mode=True),
      lambda x: TF.max_pool2d(x, 2, ceil_mode=True), [real(1, 2, 4, 4)]),
    C("max_pool2d-indices", lambda x: F.max_pool2d(x, 3, 2, 1, ceil_mode=True,
                                                   return_indices=True),
      lambda x: TF.max_pool2d(x, 3, 2, 1, ceil_mode=True, return_indices=True),
      [real(2, 2, 5, 6)], jvp=False),
    C("max_pool2d-unbatched-indices", lambda x: F.max_pool2d(x, 2, 1, return_indices=True),
      lambda x: TF.max_pool2d(x, 2, 1, return_indices=True), [real(3, 4, 5)], jvp=False),
    C("max_pool1d", lambda x: F.max_pool1d(x, 3, 2, 1, ceil_mode=True),
      lambda x: TF.max_pool1d(x, 3, 2, 1, ceil_mode=True), [real(2, 3, 8)]),
    C("max_pool1d-indices-dilation", lambda x: F.max_pool1d(x, 2, 1, 0, 2, return_indices=True),
      lambda x: TF.max_pool1d(x, 2, 1, 0, 2, return_indices=True), [real(3, 7)], jvp=False),
    C("avg_pool2d-ceil", lambda x: F.avg_pool2d(x, 3, 2, ceil_mode=True),
      lambda x: TF.avg_pool2d(x, 3, 2, ceil_mode=True), [real(1, 2, 6, 7)]),
    C("avg_pool2d-ceil-exclude-pad",
      lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False),
      lambda x: TF.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False),
      [real(2, 2, 6, 5)]),
    C("avg_pool2d-ceil-include-pad", lambda x: F.avg_pool2d(x, (2, 3), (2, 2), (1, 1), True),
      lambda x: TF.avg_pool2d(x, (2, 3), (2, 2), (1, 1), True), [real(1, 3, 5, 6)]),
    C("avg_pool2d-divisor", lambda x: F.avg_pool2d(x, 3, 1, 1, divisor_override=2),
      lambda x: TF.avg_pool2d(x, 3, 1, 1, divisor_override=2), [real(1, 2, 4, 4)]),
    C("avg_pool1d", lambda x: F.avg_pool1d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False),
      lambda x: TF.avg_pool1d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False),
      [real(2, 3, 8)]),
]

PADS = [
    C(f"pad-{mode}-{'x'.join(map(str, shape))}-{'_'.join(map(str, p))}",
      lambda x, p=p, mode=mode: F.pad(x, p, mode=mode),
      lambda x, p=p, mode=mode: TF.pad(x, p, mode=mode), [real(*shape)])
    for mode in ("reflect", "replicate", "circular")
    for shape, p in [((2, 5), (2, 3)), ((1, 2, 5), (0, 4)), ((2, 4, 5), (1, 2, 3, 0)),
                     ((1, 2, 3, 4), (2, 1, 1, 2)), ((1, 2, 3, 4, 5), (1, 1, 2, 0, 1, 2)),
                     ((1, 2, 4, 5), (-1, 2, 1, -2))]
    if not (mode == "reflect" and max(p) >= min(shape[-len(p) // 2:]))
] + [
    C("pad-constant-negative", lambda x: F.pad(x, (-1, 2, 1, -2), value=0.5),
      lambda x: TF.pad(x, (-1, 2, 1, -2), value=0.5), [real(2, 4, 5)]),
]

DIVS = [
    C("div-trunc", lambda a, b: a.div(b, rounding_mode="trunc"),
      lambda a, b: a.div(b, rounding_mode="trunc"), [real(3, 4), real(4)], gradcheck=False),
    C("div-floor", lambda a, b: fg.div(a, b, rounding_mode="floor"),
      lambda a, b: torch.div(a, b, rounding_mode="floor"), [real(2, 3), real(2, 1)],
      gradcheck=False),
    C("floor_divide-op", lambda a, b: a // b, lambda a, b: a // b,
      [fixed([-7.5, -7.0, -0.5, 0.0, 0.5, 7.0, 7.5, 1.0, -1.0]),
       fixed([2.0, -2.0, 0.25, 3.0, -0.25, 2.0, -2.5, 0.0, 0.0])], gradcheck=False,
      grad=False, jvp=False),  # torch has no derivative for `//`; flopgrad's is zero
    C("floor", lambda x: x.floor(), lambda x: x.floor(), [real(3, 4)], gradcheck=False),
    C("ceil", lambda x: fg.ceil(x), lambda x: torch.ceil(x), [real(3, 4)], gradcheck=False),
    C("trunc", lambda x: x.trunc(), lambda x: x.trunc(), [real(3, 4)], gradcheck=False),
    C("round", lambda x: x.round(), lambda x: x.round(),
      [fixed([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.4])], gradcheck=False),
    C("round-decimals", lambda x: (x * 10).round(1), lambda x: (x * 10).round(decimals=1),
      [real(3, 4)], gradcheck=False),
]

CASES = POOLS + PADS + DIVS


def test_case_names_are_unique():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("layout", ["contiguous", "strided"])
@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_matches_torch(case, layout):
    arrays = make_inputs(case.inputs, seed=0)
    if layout == "strided":
        arrays = [noncontiguous(a) for a in arrays]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # floor division by zero
        check_against_torch(case, arrays)


@pytest.mark.parametrize("case", [c.param() for c in POOLS + PADS])
def test_gradcheck(case):
    arrays = make_inputs(case.inputs, seed=1)
    fn = case.fg_fn
    if "indices" in case.name:
        fn = lambda x, fn=fn: fn(x)[0]  # noqa: E731 - the values, not the indices
    assert fg.gradcheck(fn, tuple(to_fg(a, requires_grad=True) for a in arrays))


# ---------------------------------------------------------------- rounding division

def test_integer_division_rounds_like_torch():
    a = np.array([-7, -6, -1, 0, 1, 6, 7])
    b = np.array([2, -4, 3, 5, -3, 4, -2])
    for mode in ("trunc", "floor"):
        got = fg.tensor(a).div(fg.tensor(b), rounding_mode=mode)
        expected = torch.tensor(a).div(torch.tensor(b), rounding_mode=mode)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got.numpy(), expected.numpy())
    np.testing.assert_array_equal((fg.tensor(a) // 3).numpy(), (torch.tensor(a) // 3).numpy())
    np.testing.assert_array_equal((7 // fg.tensor(b)).numpy(), (7 // torch.tensor(b)).numpy())


def test_integer_division_by_zero_raises_like_torch():
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        torch.tensor([1, 2]) // torch.tensor([1, 0])
    with pytest.raises(ZeroDivisionError):
        fg.tensor([1, 2]) // fg.tensor([1, 0])


def test_rounding_division_has_zero_gradient_like_torch():
    x = fg.tensor([1.5, -2.5], dtype="float64", requires_grad=True)
    y = fg.tensor([2.0, 0.5], dtype="float64", requires_grad=True)
    out = x.div(y, rounding_mode="floor")
    assert out.requires_grad  # torch's output requires grad too; its gradient is zero
    out.sum().backward()
    assert x.grad.tolist() == [0.0, 0.0] and y.grad.tolist() == [0.0, 0.0]


def test_bad_rounding_mode_is_named():
    with pytest.raises(ValueError, match="rounding_mode.*'round'"):
        fg.ones(2).div(2, rounding_mode="round")


def test_rounding_ops_keep_integers():
    x = fg.tensor([1, -2])
    for name in ("floor", "ceil", "trunc", "round"):
        out = getattr(x, name)()
        assert out.dtype == np.int64 and out.tolist() == [1, -2]


# ---------------------------------------------------------------- pooling: indices, modules

def test_max_pool_indices_match_torch_exactly():
    x = np.random.default_rng(3).standard_normal((2, 3, 7, 6))
    for kw in ({"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True},
               {"kernel_size": (2, 3), "stride": 1, "dilation": (2, 1)}):
        _, got = F.max_pool2d(fg.tensor(x), return_indices=True, **kw)
        _, expected = TF.max_pool2d(torch.tensor(x), return_indices=True, **kw)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got.numpy(), expected.numpy())
        # torch's max_unpool would put each value back where the index points
        flat = x.reshape(2, 3, -1)
        values, _ = F.max_pool2d(fg.tensor(x), return_indices=True, **kw)
        np.testing.assert_array_equal(
            np.take_along_axis(flat, got.numpy().reshape(2, 3, -1), 2).reshape(got.shape),
            values.numpy())


@pytest.mark.parametrize("make", [
    lambda m: m.MaxPool2d(3, 2, 1, return_indices=True, ceil_mode=True),
    lambda m: m.MaxPool2d((2, 3), stride=(1, 2), dilation=(2, 1)),
    lambda m: m.MaxPool1d(3, 2, ceil_mode=True),
    lambda m: m.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False),
    lambda m: m.AvgPool2d(2, divisor_override=3),
    lambda m: m.AvgPool1d(3, 2, 1, ceil_mode=True),
], ids=["max2d-indices", "max2d-dilation", "max1d", "avg2d", "avg2d-divisor", "avg1d"])
def test_pool_modules_match_torch(make):
    ours, theirs = make(nn), make(tnn)
    shape = (2, 3, 7, 8) if "2d" in type(ours).__name__ else (2, 3, 9)
    x = np.random.default_rng(4).standard_normal(shape)
    got, expected = ours(fg.tensor(x)), theirs(torch.tensor(x))
    for g, e in zip(got if isinstance(got, tuple) else [got],
                    expected if isinstance(expected, tuple) else [expected], strict=True):
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-12)


def test_pool_bills_one_unfold_and_the_ceil_padding():
    x = fg.randn(1, 2, 6, 7)
    with fg.profile() as bill:
        F.max_pool2d(x, 3, 2, ceil_mode=True)
    rows = {r["primitive"]: r for r in bill.event_rows()}
    assert rows["pad"]["out_shape"] == [1, 2, 7, 7]  # one extra row: the last window hangs over
    assert rows["unfold"]["out_shape"] == [1, 2, 3, 3, 3, 3]
    assert bill.flops(kind="tensor") == 0


@pytest.mark.parametrize("fn", [
    lambda x: F.max_pool2d(x, 3, 2, 1, ceil_mode=True, return_indices=True),
    lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False),
    lambda x: F.pad(x, (1, 2, 2, 1), mode="reflect"),
    lambda x: F.pad(x, (-1, 2, 0, 3), mode="circular"),
], ids=["max-indices", "avg", "reflect", "circular"])
def test_meta_shapes_and_bill_match_real(fn):
    x = fg.randn(2, 3, 7, 8, requires_grad=True)
    xm = x.detach().to("meta").requires_grad_(True)
    with fg.profile() as real_bill:
        out = fn(x)
        first = out[0] if isinstance(out, tuple) else out
        first.sum().backward()
    with fg.profile() as meta_bill:
        out_m = fn(xm)
        first_m = out_m[0] if isinstance(out_m, tuple) else out_m
        first_m.sum().backward()
    shapes = lambda o: [t.shape for t in (o if isinstance(o, tuple) else (o,))]  # noqa: E731
    assert shapes(out_m) == shapes(out)
    assert meta_bill.flops() == real_bill.flops()


@pytest.mark.parametrize("call, message", [
    (lambda x: F.max_pool2d(x, 2, padding=2), "at most half"),
    (lambda x: F.max_pool2d(x, 0), "kernel_size must be positive"),
    (lambda x: F.max_pool2d(x, 2, padding=-1), "non-negative"),
    (lambda x: F.max_pool2d(x, 9), "too small"),
    (lambda x: F.avg_pool2d(x, 2, divisor_override=0), "divisor_override"),
    (lambda x: F.max_pool1d(x[0], (2, 2)), "1-tuple"),
    (lambda x: F.pad(x, (1, 1), mode="symmetric"), "mode must be one of"),
    (lambda x: F.pad(x[0], (4, 0), mode="reflect"), "smaller than the dim"),
    (lambda x: F.pad(x[0], (5, 0), mode="circular"), "at most the dim"),
    (lambda x: F.pad(x, (1, 1), mode="circular"), "got 2 pad values"),
    (lambda x: F.pad(x[0, 0, 0], (1, 1), mode="replicate"), "last 1, 2 or 3 dims"),
    (lambda x: F.pad(x, (1, 1), mode="reflect", value=2.0), "takes no fill value"),
], ids=["pad-half", "kernel", "pad-negative", "small", "divisor", "1d-tuple", "mode",
        "reflect-size", "circular-size", "pad-length", "dims", "value"])
def test_unsupported_options_are_named(call, message):
    with pytest.raises((ValueError, NotImplementedError), match=message):
        call(fg.randn(1, 2, 4, 4))


# ---------------------------------------------------------------- regressions (OpInfo)

def test_maximum_at_nan_passes_the_gradient_to_both_sides_like_torch():
    values = [np.nan, 1.0, np.inf, 2.0]
    other = [1.0, np.nan, np.inf, 3.0]
    for fn in ("maximum", "minimum"):
        fx, fy = (fg.tensor(v, dtype="float64", requires_grad=True) for v in (values, other))
        tx, ty = (torch.tensor(v, dtype=torch.float64, requires_grad=True)
                  for v in (values, other))
        getattr(fg, fn)(fx, fy).sum().backward()
        getattr(torch, fn)(tx, ty).sum().backward()
        np.testing.assert_array_equal(fx.grad.numpy(), tx.grad.numpy())
        np.testing.assert_array_equal(fy.grad.numpy(), ty.grad.numpy())


def test_where_of_two_numbers_has_the_default_dtype():
    assert fg.where(fg.tensor([True, False]), 1.5, -2.0).dtype == np.float32


def test_masked_fill_value_must_be_a_number_or_0d():
    x = fg.zeros(2, 2)
    with pytest.raises(ValueError, match="0-d"):
        x.masked_fill(fg.tensor(True), fg.ones(1))
    with pytest.raises(TypeError, match="complex"):
        x.masked_fill(fg.tensor(True), 1j)
    assert x.masked_fill(fg.tensor([True, False]), fg.tensor(3.0)).tolist() == [[3, 0], [3, 0]]


def test_mean_of_integers_raises_like_torch():
    with pytest.raises(TypeError, match="floating"):
        fg.arange(4).mean()
    assert fg.arange(4).mean(dtype="float64").item() == 1.5


def test_scatter_add_needs_matching_dtypes():
    with pytest.raises(TypeError, match="dtype"):
        fg.zeros(3, dtype="float64").scatter_add(0, fg.tensor([0]), fg.ones(1))


def test_embedding_needs_a_2d_weight():
    with pytest.raises(ValueError, match="2-D"):
        F.embedding(fg.tensor([0]), fg.ones(1, 1, 1))


def test_conv_takes_unbatched_input_and_refuses_mixed_dtypes():
    x = np.random.default_rng(5).standard_normal((3, 6, 5))
    w = np.random.default_rng(6).standard_normal((4, 3, 2, 2))
    got = F.conv2d(fg.tensor(x), fg.tensor(w), padding=1)
    np.testing.assert_allclose(got.numpy(), TF.conv2d(torch.tensor(x), torch.tensor(w),
                                                      padding=1).numpy(), rtol=1e-10)
    w1 = np.random.default_rng(7).standard_normal((2, 6, 2))
    got1 = F.conv1d(fg.tensor(x[0]), fg.tensor(w1), stride=2)
    np.testing.assert_allclose(got1.numpy(), TF.conv1d(torch.tensor(x[0]), torch.tensor(w1),
                                                       stride=2).numpy(), rtol=1e-10)
    with pytest.raises(TypeError, match="same dtype"):
        F.conv2d(fg.ones(1, 1, 3, 3, dtype="int64"), fg.ones(1, 1, 2, 2, dtype="int64"),
                 fg.ones(1, dtype="float64"))


def test_logsumexp_over_an_empty_dim_is_minus_inf():
    x = fg.zeros(0, dtype="float64", requires_grad=True)
    out = x.logsumexp(0)
    assert out.item() == -np.inf
    out.backward()
    assert x.grad.shape == (0,)


def test_dtype_arguments_of_cumsum_and_softmax():
    x = fg.tensor([1.0, 2.0])
    assert x.cumsum(0, dtype="float64").dtype == np.float64
    assert x.softmax(0, dtype="float64").dtype == np.float64
    assert x.log_softmax(0, dtype="float64").dtype == np.float64


def test_flip_takes_dims_by_keyword():
    x = fg.arange(6).reshape(2, 3)
    assert x.flip(dims=[1]).tolist() == x.flip(1).tolist() == [[2, 1, 0], [5, 4, 3]]
    assert x.flip(dims=()).tolist() == x.tolist()


# ---------------------------------------------------------------- activations and losses added

ACTIVATIONS = [
    C("hardtanh", lambda x: F.hardtanh(x, -0.5, 0.7), lambda x: TF.hardtanh(x, -0.5, 0.7),
      [real(4, 5)]),
    C("relu6", lambda x: F.relu6(x * 4), lambda x: TF.relu6(x * 4), [real(4, 5)]),
    C("elu", lambda x: F.elu(x, 0.8), lambda x: TF.elu(x, 0.8), [real(4, 5)]),
    C("logsigmoid", F.logsigmoid, TF.logsigmoid, [real(4, 5)]),
    C("mish", F.mish, TF.mish, [real(4, 5)]),
    C("softmin", lambda x: F.softmin(x, 1), lambda x: TF.softmin(x, 1), [real(4, 5)]),
    C("l1_loss", F.l1_loss, TF.l1_loss, [real(4, 5), real(4, 5)]),
    C("smooth_l1_loss", lambda x, y: F.smooth_l1_loss(x, y, "sum", 0.5),
      lambda x, y: TF.smooth_l1_loss(x, y, reduction="sum", beta=0.5), [real(4, 5), real(5)]),
    C("huber_loss", lambda x, y: F.huber_loss(x, y, "none", 0.7),
      lambda x, y: TF.huber_loss(x, y, reduction="none", delta=0.7), [real(4, 5), real(4, 5)]),
    C("tril", lambda x: x.tril(-1), lambda x: x.tril(-1), [real(2, 4, 5)]),
    C("triu", lambda x: fg.triu(x, 2), lambda x: torch.triu(x, 2), [real(4, 5)]),
]


@pytest.mark.parametrize("case", [c.param() for c in ACTIVATIONS])
def test_added_functions_match_torch(case):
    check_against_torch(case, make_inputs(case.inputs, seed=2))
    arrays = make_inputs(case.inputs, seed=3)
    assert fg.gradcheck(case.fg_fn, tuple(to_fg(a, requires_grad=True) for a in arrays))


def test_hardtanh_gradient_is_zero_at_the_bounds_and_at_nan_like_torch():
    values = [-1.0, 1.0, 0.5, np.nan, 2.0]
    fx = fg.tensor(values, dtype="float64", requires_grad=True)
    F.hardtanh(fx).sum().backward()
    # torch: 0 at NaN in its vectorised kernel (its scalar tail gives 1)
    assert fx.grad.tolist() == [0.0, 0.0, 1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="min_val"):
        F.hardtanh(fx, 1.0, -1.0)


def test_elu_gradient_at_inf_is_one_not_nan():
    x = fg.tensor([np.inf, -np.inf, 0.0], dtype="float64", requires_grad=True)
    F.elu(x).sum().backward()
    assert x.grad.tolist() == [1.0, 0.0, 1.0]


def test_rounding_ops_on_meta_tensors_bill_as_real_ones():
    def step(x):
        return (x.div(fg.ones(3), rounding_mode="trunc") + (x // 2) + x.floor() + x.round(1)
                + x.ceil() + x.trunc())
    real_x = fg.ones(2, 3)
    with fg.profile() as real_bill:
        out = step(real_x)
    with fg.profile() as meta_bill:
        out_m = step(real_x.to("meta"))
    assert out_m.is_meta and out_m.shape == out.shape and out_m.dtype == out.dtype
    assert meta_bill.flops() == real_bill.flops() == 2 * 6 + 2 * 6 + 4 * 6 + 5 * 6


def test_prod_takes_a_dtype():
    out = fg.tensor([[1.0, 2.0], [3.0, 4.0]]).prod(1, dtype="float64")
    assert out.dtype == np.float64 and out.tolist() == [2.0, 12.0]
