"""PyTorch's semantics where flopgrad used to differ silently (issue 9): dims, 0-d and empty
tensors, float16 accumulation, masks, NaN gradients, argument parsing. Each case is compared
with torch where torch defines the behaviour."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch

import flopgrad as fg


def t64(values, requires_grad: bool = False) -> fg.Tensor:
    return fg.tensor(np.asarray(values, dtype=np.float64), requires_grad=requires_grad)


def torch_error(fn) -> Exception:
    with pytest.raises(Exception) as err:
        fn()
    return err.value


# ---------------------------------------------------------------- dims out of range

X23 = np.arange(6.0).reshape(2, 3)
IDX = np.zeros((2, 3), dtype=np.int64)

OUT_OF_RANGE = {
    "unsqueeze": (lambda x: x.unsqueeze(5), lambda x: x.unsqueeze(5)),
    "unsqueeze-neg": (lambda x: x.unsqueeze(-4), lambda x: x.unsqueeze(-4)),
    "cat": (lambda x: fg.cat([x, x], 5), lambda x: torch.cat([x, x], 5)),
    "stack": (lambda x: fg.stack([x, x], 5), lambda x: torch.stack([x, x], 5)),
    "split": (lambda x: x.split(1, 5), lambda x: x.split(1, 5)),
    "chunk": (lambda x: x.chunk(1, 5), lambda x: x.chunk(1, 5)),
    "gather": (lambda x: x.gather(5, fg.tensor(IDX)), lambda x: x.gather(5, torch.tensor(IDX))),
    "scatter_add": (lambda x: x.scatter_add(-3, fg.tensor(IDX), x),
                    lambda x: x.scatter_add(-3, torch.tensor(IDX), x)),
    "index_select": (lambda x: x.index_select(2, fg.tensor([0])),
                     lambda x: x.index_select(2, torch.tensor([0]))),
    "flatten": (lambda x: x.flatten(5), lambda x: x.flatten(5)),
    "roll": (lambda x: x.roll(1, 5), lambda x: x.roll(1, 5)),
    "transpose": (lambda x: x.transpose(0, 5), lambda x: x.transpose(0, 5)),
    "sum": (lambda x: x.sum(2), lambda x: x.sum(2)),
    "softmax": (lambda x: x.softmax(2), lambda x: x.softmax(2)),
    "cumsum": (lambda x: x.cumsum(-3), lambda x: x.cumsum(-3)),
    "flip": (lambda x: x.flip(2), lambda x: x.flip(2)),
    "max": (lambda x: x.max(2), lambda x: x.max(2)),
}


@pytest.mark.parametrize("name", OUT_OF_RANGE)
def test_dims_out_of_range_raise_like_torch(name):
    ours, theirs = OUT_OF_RANGE[name]
    expected = torch_error(lambda: theirs(torch.tensor(X23)))
    assert isinstance(expected, IndexError)
    with pytest.raises(IndexError) as err:
        ours(fg.tensor(X23))
    # the same message as torch's: "Dimension out of range (expected to be in range of
    # [-2, 1], but got 5)", after the op's name
    assert str(err.value).endswith(str(expected)), (str(err.value), str(expected))


@pytest.mark.parametrize("fn,torch_fn,error", [
    (lambda x: fg.ones(3).expand(-1, 3), lambda x: torch.ones(3).expand(-1, 3), fg.ShapeError),
    (lambda x: x.expand(3), lambda x: x.expand(3), fg.ShapeError),
    (lambda x: x.split([5, -1], 1), lambda x: x.split([5, -1], 1), ValueError),
    (lambda x: x.split(0), lambda x: x.split(0), ValueError),
    (lambda x: x.split(-1), lambda x: x.split(-1), ValueError),
    (lambda x: x.flatten(1, 0), lambda x: x.flatten(1, 0), fg.ShapeError),
    (lambda x: x.chunk(0), lambda x: x.chunk(0), ValueError),
    (lambda x: fg.cat([fg.tensor(1.0), fg.tensor(2.0)]),
     lambda x: torch.cat([torch.tensor(1.0), torch.tensor(2.0)]), fg.ShapeError),
    (lambda x: fg.ones(2, 3, 4).t(), lambda x: torch.ones(2, 3, 4).t(), fg.ShapeError),
    (lambda x: fg.arange(5).roll((2, 1), 0), lambda x: torch.arange(5).roll((2, 1), 0),
     ValueError),
    (lambda x: fg.arange(5).roll((2, 1)), lambda x: torch.arange(5).roll((2, 1)), ValueError),
    (lambda x: x.sum((0, 0)), lambda x: x.sum((0, 0)), ValueError),
    (lambda x: x.permute(0, 0), lambda x: x.permute(0, 0), ValueError),
    (lambda x: x.gather(1, fg.zeros(2, dtype="int64")),
     lambda x: x.gather(1, torch.zeros(2, dtype=torch.long)), fg.ShapeError),
])
def test_invalid_shape_arguments_raise_where_torch_does(fn, torch_fn, error):
    torch_error(lambda: torch_fn(torch.tensor(X23)))
    with pytest.raises(error):
        fn(fg.tensor(X23))


@pytest.mark.parametrize("index", [
    (np.array([True, False]),),  # shorter than its axis
    (slice(None), np.array([True, False])),
    (np.ones((4, 2), dtype=bool),),
    (Ellipsis, np.array([True, False])),
])
def test_boolean_mask_must_match_the_dims_it_indexes(index):
    x = np.arange(12.0).reshape(4, 3)
    expected = torch_error(lambda: torch.tensor(x)[tuple(
        torch.tensor(i) if isinstance(i, np.ndarray) else i for i in index)])
    assert isinstance(expected, IndexError)
    with pytest.raises(IndexError, match="shape of the mask"):
        fg.tensor(x)[tuple(fg.tensor(i) if isinstance(i, np.ndarray) else i for i in index)]
    with pytest.raises(IndexError, match="shape of the mask"):
        with fg.no_grad():
            fg.tensor(x)[index] = 0.0


@pytest.mark.parametrize("index", [
    (np.array([True, False, True, True]), 1),
    (slice(None), np.array([True, False, True])),
    (Ellipsis, np.array([True, False, True])),
    (None, np.array([True, False, False, True])),
    (np.ones((4, 3), dtype=bool),),
])
def test_boolean_masks_that_fit_index_as_in_torch(index):
    x = np.arange(12.0).reshape(4, 3)
    ours = fg.tensor(x)[index]
    theirs = torch.tensor(x)[tuple(torch.tensor(i) if isinstance(i, np.ndarray) else i
                                   for i in index)]
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_valid_negative_and_edge_dims_still_work():
    x = fg.tensor(X23)
    assert x.unsqueeze(-3).shape == (1, 2, 3) and x.unsqueeze(2).shape == (2, 3, 1)
    assert fg.stack([x, x], -1).shape == (2, 3, 2) and fg.cat([x, x], -1).shape == (2, 6)
    assert x.expand(4, -1, -1).shape == (4, 2, 3)
    assert [p.shape for p in fg.ones(0, 2).split(0)] == [(0, 2)]
    assert [p.shape for p in fg.ones(0).chunk(2)] == [(0,), (0,)]
    assert x.flatten(1, 1).shape == (2, 3) and x.flatten(-2, -1).shape == (6,)
    assert fg.ones(2).t().shape == (2,) and fg.tensor(1.0).t().shape == ()
    r = fg.arange(6).reshape(2, 3).roll((1, 1), (0, 1))
    assert r.tolist() == torch.arange(6).reshape(2, 3).roll((1, 1), (0, 1)).tolist()
    assert x.index_select(0, fg.tensor(1)).shape == (1, 3)  # a 0-d index, as in torch


# ---------------------------------------------------------------- 0-d tensors: dims -1 and 0

def _method(name):
    return lambda x, d: getattr(x, name)(d)


ZERO_D = {name: _method(name) for name in (
    "sum mean amax amin prod logsumexp flip cumsum softmax log_softmax squeeze unsqueeze"
).split()}
ZERO_D.update({
    "max-values": lambda x, d: x.max(d)[0],
    "min-values": lambda x, d: x.min(d)[0],
    "gather": lambda x, d: x.gather(d, (torch if isinstance(x, torch.Tensor) else fg).tensor(0)),
    "transpose": lambda x, d: x.transpose(d, 0),
    "sum-keepdim": lambda x, d: x.sum(d, keepdim=True),
    "std-biased": lambda x, d: x.std(d, unbiased=False),
})


@pytest.mark.parametrize("dim", [0, -1])
@pytest.mark.parametrize("name", ZERO_D)
def test_zero_dim_tensors_have_dims_minus_one_and_zero(name, dim):
    fn = ZERO_D[name]
    x = t64(1.5, requires_grad=True)
    tx = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    ours, theirs = fn(x, dim), fn(tx, dim)
    assert ours.shape == tuple(theirs.shape)
    np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy())
    if theirs.requires_grad:
        ours.sum().backward()
        theirs.sum().backward()
        np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy())


def test_zero_dim_max_and_argmax_indices():
    values, indices = fg.tensor(3.0).max(0)
    assert values.shape == () and indices.shape == () and indices.item() == 0
    assert fg.tensor(3.0).argmax(-1).shape == ()
    with pytest.raises(IndexError, match=re.escape("[-1, 0], but got 1")):
        fg.tensor(3.0).sum(1)


def test_zero_dim_std_over_its_dim_is_nan_like_torch():
    with np.errstate(invalid="ignore", divide="ignore"):
        assert np.isnan(fg.tensor(3.0).std(0).item())
    assert torch.tensor(3.0).std(0).isnan()


# ---------------------------------------------------------------- clear errors, empty layers

def test_linear_with_zero_in_features_works_like_torch():
    with pytest.warns(UserWarning, match="zero-element"):
        lin = fg.nn.Linear(0, 3)
    with pytest.warns(UserWarning, match="zero-element"):
        tlin = torch.nn.Linear(0, 3)
    x = fg.ones(2, 0, requires_grad=True)
    y = lin(x)
    ty = tlin(torch.ones(2, 0))
    assert y.shape == tuple(ty.shape) == (2, 3)
    np.testing.assert_array_equal(y.detach().numpy(), ty.detach().numpy())  # zeros, bias 0
    y.sum().backward()
    assert x.grad.shape == (2, 0) and lin.weight.grad.shape == (3, 0)
    assert lin.bias.grad.tolist() == [2.0, 2.0, 2.0]


def test_arange_with_zero_step_is_a_clear_error():
    torch_error(lambda: torch.arange(0, 5, 0))
    with pytest.raises(ValueError, match="step must be nonzero"):
        fg.arange(0, 5, 0)


# ---------------------------------------------------------------- MultiheadAttention masks

def _mha_pair(e=8, h=2):
    """A flopgrad and a torch MultiheadAttention with the same float64 weights."""
    fg.manual_seed(0)
    ours = fg.nn.MultiheadAttention(e, h)
    theirs = torch.nn.MultiheadAttention(e, h, batch_first=True).double()
    rng = np.random.default_rng(1)
    for p in ours.parameters():
        p._data = p._data.astype(np.float64)
    ours.in_proj_bias._data[...] = rng.standard_normal(3 * e)
    ours.out_proj.bias._data[...] = rng.standard_normal(e)
    with torch.no_grad():
        theirs.in_proj_weight.copy_(torch.tensor(ours.in_proj_weight.detach().numpy()))
        theirs.in_proj_bias.copy_(torch.tensor(ours.in_proj_bias.detach().numpy()))
        theirs.out_proj.weight.copy_(torch.tensor(ours.out_proj.weight.detach().numpy()))
        theirs.out_proj.bias.copy_(torch.tensor(ours.out_proj.bias.detach().numpy()))
    return ours, theirs


_rng = np.random.default_rng(0)
N_, L_, S_, H_ = 2, 4, 5, 2
ATTN_BOOL = _rng.random((L_, S_)) < 0.4
ATTN_BOOL[:, 0] = False  # every query may attend somewhere
KPM_BOOL = np.zeros((N_, S_), dtype=bool)
KPM_BOOL[0, 3:] = True
KPM_BOOL[1, 1] = True
HEAD_BOOL = _rng.random((N_ * H_, L_, S_)) < 0.4
HEAD_BOOL[..., 2] = False


@pytest.mark.parametrize("masks", [
    {"attn_mask": ATTN_BOOL},
    {"key_padding_mask": KPM_BOOL},
    {"attn_mask": ATTN_BOOL, "key_padding_mask": KPM_BOOL},
    {"attn_mask": HEAD_BOOL, "key_padding_mask": KPM_BOOL},
    {"attn_mask": np.where(ATTN_BOOL, -1e9, 0.0)},
    {"attn_mask": np.where(ATTN_BOOL, -np.inf, 0.5), "key_padding_mask": KPM_BOOL},
], ids=["attn", "padding", "both", "per-head", "float", "float-and-bool"])
def test_multihead_attention_masks_mean_masked_out_as_in_torch(masks):
    ours, theirs = _mha_pair(e=8, h=H_)
    rng = np.random.default_rng(2)
    q, kv = rng.standard_normal((N_, L_, 8)), rng.standard_normal((N_, S_, 8))
    xq, xkv = t64(q, requires_grad=True), t64(kv, requires_grad=True)
    tq = torch.tensor(q, requires_grad=True)
    tkv = torch.tensor(kv, requires_grad=True)
    out = ours(xq, xkv, xkv, **{k: fg.tensor(v) for k, v in masks.items()})[0]
    with warnings.catch_warnings():  # torch deprecates masks of mixed types
        warnings.simplefilter("ignore", UserWarning)
        tout = theirs(tq, tkv, tkv, need_weights=False,
                      **{k: torch.tensor(v) for k, v in masks.items()})[0]
    np.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy(), rtol=1e-10,
                               atol=1e-12)
    out.square().sum().backward()
    tout.square().sum().backward()
    np.testing.assert_allclose(xq.grad.numpy(), tq.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(xkv.grad.numpy(), tkv.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_multihead_attention_causal_with_padding_mask():
    ours, theirs = _mha_pair()
    x = np.random.default_rng(3).standard_normal((N_, S_, 8))
    causal = np.triu(np.ones((S_, S_), dtype=bool), 1)
    out = ours(t64(x), t64(x), t64(x), is_causal=True, key_padding_mask=fg.tensor(KPM_BOOL))[0]
    tout = theirs(*(torch.tensor(x),) * 3, need_weights=False, is_causal=True,
                  attn_mask=torch.tensor(causal), key_padding_mask=torch.tensor(KPM_BOOL))[0]
    np.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy(), rtol=1e-10,
                               atol=1e-12)


# ---------------------------------------------------------------- float16 accumulates in float32

_HALF = (np.random.default_rng(0).standard_normal(70_000) * 10 + 300).astype(np.float16)


@pytest.mark.parametrize("name", ["sum", "mean", "var", "std"])
def test_float16_reductions_accumulate_in_float32_like_torch(name):
    ours = getattr(fg.tensor(_HALF), name)()
    theirs = getattr(torch.tensor(_HALF), name)()
    assert ours.dtype == np.float16
    np.testing.assert_allclose(ours.numpy().astype(np.float64), theirs.double().numpy(),
                               rtol=2e-3)
    if name != "sum":  # the sum itself is beyond float16's range: inf in both
        assert np.isfinite(ours.item())


def test_float16_sum_along_a_strided_dim_does_not_stall():
    a = np.full((10_000, 2), 0.1, dtype=np.float16)  # float16 accumulation stops at 256
    for fn in (lambda t: t.sum(0), lambda t: t.mean(0)):
        np.testing.assert_allclose(fn(fg.tensor(a)).numpy().astype(np.float64),
                                   fn(torch.tensor(a)).double().numpy(), rtol=1e-3)


@pytest.mark.parametrize("name", ["mean", "var"])
def test_float16_mean_and_var_gradients_are_float16_and_accurate(name):
    x = fg.tensor(_HALF[:5000], requires_grad=True)
    getattr(x, name)().backward()
    assert x.grad.dtype == np.float16
    # against the float64 gradient (torch's float16 var gradient is off by the rounding of
    # the float16 mean it subtracts; flopgrad differentiates through that mean as well)
    exact = torch.tensor(_HALF[:5000], dtype=torch.float64, requires_grad=True)
    getattr(exact, name)().backward()
    np.testing.assert_allclose(x.grad.numpy().astype(np.float64), exact.grad.numpy(),
                               rtol=2e-3, atol=1e-7)


@pytest.mark.parametrize("affine", [False, True])
def test_float16_layer_norm_matches_torch(affine):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((4, 768)) * 10).astype(np.float16)
    w = (rng.standard_normal(768) + 1).astype(np.float16) if affine else None
    b = rng.standard_normal(768).astype(np.float16) if affine else None
    fw, fb = (fg.tensor(w), fg.tensor(b)) if affine else (None, None)
    tw, tb = (torch.tensor(w), torch.tensor(b)) if affine else (None, None)
    ours = fg.nn.functional.layer_norm(fg.tensor(x), (768,), fw, fb)
    theirs = torch.nn.functional.layer_norm(torch.tensor(x), (768,), tw, tb)
    assert ours.dtype == np.float16 and np.abs(ours.numpy()).max() > 1
    np.testing.assert_allclose(ours.numpy().astype(np.float64), theirs.double().numpy(),
                               rtol=2e-3, atol=2e-3)
    # the fused input gradient too
    xg = fg.tensor(x, requires_grad=True)
    txg = torch.tensor(x, requires_grad=True)
    g = rng.standard_normal((4, 768)).astype(np.float16)
    fg.nn.functional.layer_norm(xg, (768,), fw, fb).backward(fg.tensor(g))
    torch.nn.functional.layer_norm(txg, (768,), tw, tb).backward(torch.tensor(g))
    assert xg.grad.dtype == np.float16
    np.testing.assert_allclose(xg.grad.numpy().astype(np.float64), txg.grad.double().numpy(),
                               rtol=1e-2, atol=2e-3)


@pytest.mark.parametrize("name", ["sigmoid", "erf"])
def test_float16_sigmoid_and_erf_keep_the_dtype(name):
    x = _HALF[:10] / 100
    ours = getattr(fg.tensor(x), name)()
    assert ours.dtype == np.float16
    np.testing.assert_allclose(ours.numpy(), getattr(torch.tensor(x), name)().numpy(),
                               rtol=1e-3)


def test_float16_mean_bills_the_flops_of_float32_and_its_stored_bytes():
    with fg.profile() as half:
        fg.tensor(_HALF).mean(keepdim=True)
    with fg.profile() as single:
        fg.tensor(_HALF.astype(np.float32)).mean(keepdim=True)
    assert half.flops() == single.flops() == _HALF.size
    rows = {e["primitive"]: e["bytes"] for e in half.event_rows()}
    # the input is read at 2 bytes; the float32 sum (one value) is divided, then cast
    assert rows == {"sum": _HALF.size * 2 + 4, "div": 8, "cast": 4 + 2}


# ---------------------------------------------------------------- sign, abs on 0-d tensors

def test_sign_of_nan_is_zero_as_in_torch():
    # torch 2.13 gives 0 for sign(nan) (a NumPy-style NaN is not what it does), so abs'
    # gradient at NaN is 0 in both
    x = np.array([np.nan, -2.0, 0.0, 3.0])
    np.testing.assert_array_equal(fg.tensor(x).sign().numpy(), torch.tensor(x).sign().numpy())
    np.testing.assert_array_equal(fg.tensor(np.nan).sign().numpy(),
                                  torch.tensor(np.nan).sign().numpy())


@pytest.mark.parametrize("fn", [
    lambda w, F: w.sum().abs(),
    lambda w, F: w.sum().sign() * w.sum(),
    lambda w, F: F.softplus(w.sum()),
    lambda w, F: F.binary_cross_entropy_with_logits(w.sum(), w.sum().detach() * 0 + 1),
], ids=["abs", "sign", "softplus", "bce-with-logits"])
def test_zero_dim_sign_abs_softplus_bce_backward(fn):
    w = t64([0.5, -2.0], requires_grad=True)
    tw = torch.tensor([0.5, -2.0], dtype=torch.float64, requires_grad=True)
    out = fn(w, fg.nn.functional)
    tout = fn(tw, torch.nn.functional)
    assert out.shape == ()
    out.backward()
    tout.backward()
    np.testing.assert_allclose(out.item(), tout.item())
    np.testing.assert_allclose(w.grad.numpy(), tw.grad.numpy())


# ---------------------------------------------------------------- gradients at NaN

@pytest.mark.parametrize("values", [
    [1.0, np.nan, 3.0], [1.0, np.nan, np.nan, 0.5], [2.0, 5.0, 5.0], [np.nan],
    [[1.0, np.nan], [np.nan, 4.0]],
])
@pytest.mark.parametrize("name", ["max", "min", "amax", "amin"])
def test_max_min_gradients_at_nan_and_ties_match_torch(name, values):
    x, tx = t64(values, requires_grad=True), torch.tensor(values, requires_grad=True)
    out, tout = getattr(x, name)(), getattr(tx, name)()
    np.testing.assert_array_equal(out.detach().numpy(), tout.detach().numpy())
    out.backward()
    tout.backward()
    # max()/min() send the gradient evenly to the NaNs; amax/amin give NaN, as in torch
    np.testing.assert_array_equal(x.grad.numpy(), tx.grad.numpy())


def test_max_min_at_nan_forward_mode_matches_reverse():
    x = t64([1.0, np.nan, np.nan, 0.5])
    _, tangent = fg.jvp(lambda v: v.max(), (x,), (t64([1.0, 2.0, 4.0, 8.0]),))
    assert tangent.item() == 3.0  # the mean of the NaNs' tangents


# ---------------------------------------------------------------- clamp with tensor bounds

CLAMP_CASES = {
    "min-tie": ([0.0, 1.0, 2.0], [1.0, 1.0, 1.0], None),
    "max-tie": ([0.0, 1.0, 2.0], None, [1.0, 1.0, 1.0]),
    "both-equal": ([0.0, 1.0, 2.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]),
    "min-above-max": ([0.0, 1.0, 2.0], [2.0, 2.0, 2.0], [1.0, 1.0, 1.0]),
    "inside": ([0.0, 1.5, 2.0], [0.5, 1.0, 1.0], [1.5, 1.5, 3.0]),
    "broadcast-min": ([[0.0, 1.0], [2.0, -1.0]], [1.0], None),
}


def _bound(v, lib):
    if v is None or not isinstance(v, list):
        return v
    if lib is fg:
        return t64(v, requires_grad=True)
    return torch.tensor(v, dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize("name", CLAMP_CASES)
def test_clamp_with_tensor_bounds_has_torch_gradients(name):
    xv, lo, hi = CLAMP_CASES[name]
    x, tx = t64(xv, requires_grad=True), torch.tensor(xv, requires_grad=True)
    flo, fhi, tlo, thi = _bound(lo, fg), _bound(hi, fg), _bound(lo, torch), _bound(hi, torch)
    out, tout = x.clamp(flo, fhi), tx.clamp(tlo, thi)
    np.testing.assert_array_equal(out.detach().numpy(), tout.detach().numpy())
    g = np.arange(1.0, 1.0 + out.numel()).reshape(out.shape)
    out.backward(t64(g))
    tout.backward(torch.tensor(g))
    for ours, theirs in ((x, tx), (flo, tlo), (fhi, thi)):
        if isinstance(theirs, torch.Tensor):
            np.testing.assert_array_equal(ours.grad.numpy(), theirs.grad.numpy())
    # forward mode: the same masks
    tangents = [t64(np.ones_like(np.asarray(v, dtype=float))) for v in (xv, lo, hi)
                if isinstance(v, list)]
    primals = [t64(v) for v in (xv, lo, hi) if isinstance(v, list)]

    def fn(*args):  # the same for flopgrad and torch tensors
        it = iter(args)
        a = next(it)
        return a.clamp(next(it) if isinstance(lo, list) else lo,
                       next(it) if isinstance(hi, list) else hi)

    _, tan = fg.jvp(fn, tuple(primals), tuple(tangents))
    _, ttan = torch.func.jvp(fn, tuple(torch.tensor(p.numpy()) for p in primals),
                             tuple(torch.tensor(t.numpy()) for t in tangents))
    np.testing.assert_array_equal(tan.numpy(), ttan.numpy())


def test_clamp_with_a_tensor_bound_is_one_billed_clamp():
    x, lo = fg.ones(3, 4), fg.zeros(4)
    with fg.profile() as bill:
        x.clamp(lo, 2.0)
    assert [e["primitive"] for e in bill.event_rows()] == ["clamp"]
    assert bill.flops() == 12
    meta = fg.ones(3, 4, device="meta").clamp(fg.zeros(4, device="meta"))
    assert meta.is_meta and meta.shape == (3, 4)


# ---------------------------------------------------------------- optimizers: duplicate params

@pytest.mark.parametrize("name,kwargs", [
    ("SGD", {"lr": 0.1}), ("SGD", {"lr": 0.1, "momentum": 0.9}), ("Adam", {"lr": 0.1}),
    ("AdamW", {"lr": 0.1, "weight_decay": 0.1}),
])
def test_duplicate_parameters_in_a_group_warn_and_step_once(name, kwargs):
    # torch 2.13 warns (and says this will become an error), then steps the parameter once
    # per listing with state that depends on its code path (SGD with momentum starts two
    # buffers, Adam counts two steps); flopgrad warns the same and keeps each parameter once
    p = fg.nn.Parameter(t64([1.0, -2.0]))
    tp = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    with pytest.warns(UserWarning, match="duplicate parameters"):
        opt = getattr(fg.optim, name)([p, p], **kwargs)
    with pytest.warns(UserWarning, match="duplicate parameters"):
        getattr(torch.optim, name)([tp, tp], **kwargs)
    assert len(opt.param_groups[0]["params"]) == 1 and opt.param_groups[0]["params"][0] is p
    topt = getattr(torch.optim, name)([tp], **kwargs)
    for _ in range(2):
        p.grad, tp.grad = t64([0.5, 1.0]), torch.tensor([0.5, 1.0], dtype=torch.float64)
        opt.step()
        topt.step()
    np.testing.assert_allclose(p.detach().numpy(), tp.detach().numpy(), rtol=1e-12)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_a_parameter_in_two_groups_raises_as_in_torch(name):
    p = fg.nn.Parameter(fg.ones(2))
    tp = torch.nn.Parameter(torch.ones(2))
    expected = torch_error(lambda: getattr(torch.optim, name)(
        [{"params": [tp]}, {"params": [tp]}], lr=0.1))
    with pytest.raises(ValueError, match=re.escape(str(expected))):
        getattr(fg.optim, name)([{"params": [p]}, {"params": [p]}], lr=0.1)


# ---------------------------------------------------------------- dtypes flopgrad cannot hold

@pytest.mark.parametrize("make", [
    lambda: fg.tensor(np.array([1, None], dtype=object)),
    lambda: fg.tensor([1, None]),
    lambda: fg.tensor([1 + 2j]),
    lambda: fg.tensor(np.complex128(1)),
    lambda: fg.from_numpy(np.zeros(2, np.complex64)),
    lambda: fg.Tensor(np.zeros(2, np.complex64)),
    lambda: fg.nn.Parameter(np.array([None])),
    lambda: fg.zeros(2, dtype=np.complex64),
    lambda: fg.ones(2).to(np.complex128),
    lambda: fg.tensor(["a"]),
], ids=["object-array", "list-with-none", "complex-list", "complex-scalar", "from_numpy",
        "Tensor", "Parameter", "zeros-dtype", "to", "strings"])
def test_object_complex_and_string_data_raise_a_clear_type_error(make):
    with pytest.raises(TypeError, match="not supported; flopgrad tensors hold bool, integer"):
        make()


# ---------------------------------------------------------------- empty tensors

@pytest.mark.parametrize("shape,dim", [((0, 3), 0), ((0, 3), 1), ((3, 0), 1), ((0,), 0),
                                       ((2, 0, 3), 1), ((2, 0, 3), -1)])
@pytest.mark.parametrize("name", ["softmax", "log_softmax", "logsumexp"])
def test_softmax_family_on_empty_tensors_like_torch(name, shape, dim):
    x = fg.zeros(*shape, dtype="float64", requires_grad=True)
    tx = torch.zeros(shape, dtype=torch.float64, requires_grad=True)
    out, tout = getattr(x, name)(dim), getattr(tx, name)(dim)
    assert out.shape == tuple(tout.shape)
    np.testing.assert_array_equal(out.detach().numpy(), tout.detach().numpy())  # -inf sums
    out.sum().backward()
    tout.sum().backward()
    assert x.grad.shape == shape


# ---------------------------------------------------------------- argument parsing

_V = [1.0, 2.0, 4.0, 7.0]
_M = [[1.0, 2.0, 0.5], [4.0, 8.0, -1.0]]


@pytest.mark.parametrize("values,fn", [
    (_V, lambda x: x.std(False)),  # std(unbiased): the biased std of everything
    (_V, lambda x: x.var(True)),
    (_V, lambda x: x.std(correction=None)),
    (_V, lambda x: x.var(0, correction=None)),
    (_M, lambda x: x.var(0, False)),  # var(dim, unbiased)
    (_M, lambda x: x.std(1, True, True)),  # std(dim, unbiased, keepdim)
    (_M, lambda x: x.var(1, keepdim=True, unbiased=False)),
    (_M, lambda x: x.var(dim=(0, 1), correction=0.5)),
    (_M, lambda x: x.std(-1, correction=2, keepdim=True)),
], ids=["std(False)", "var(True)", "std-correction-None", "var-dim-correction-None",
        "var(0,False)", "std(1,True,True)", "var-keywords", "var-correction-0.5",
        "std-correction-2"])
def test_var_and_std_take_torchs_arguments(values, fn):
    ours, theirs = fn(t64(values)), fn(torch.tensor(values, dtype=torch.float64))
    assert ours.shape == tuple(theirs.shape)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-12)


@pytest.mark.parametrize("fn", [
    lambda x: x.sum(True), lambda x: x.mean(True), lambda x: x.amax(True),
    lambda x: x.softmax(True), lambda x: x.cumsum(True), lambda x: x.max(True),
    lambda x: x.unsqueeze(True), lambda x: x.var(0, correction=1, unbiased=True),
], ids=["sum", "mean", "amax", "softmax", "cumsum", "max", "unsqueeze", "var-both"])
def test_a_bool_is_not_a_dim(fn):
    assert isinstance(torch_error(lambda: fn(torch.tensor(_M))), TypeError)
    with pytest.raises(TypeError):
        fn(fg.tensor(_M))


# ---------------------------------------------------------------- rms_norm

@pytest.mark.parametrize("shape,normalized,weight", [
    ((2, 3), (4,), None), ((2, 3), 3, (4,)), ((2, 3), (2,), None), ((2, 3), (), None)])
def test_rms_norm_checks_normalized_shape_like_layer_norm(shape, normalized, weight):
    w = None if weight is None else fg.ones(*weight)
    tw = None if weight is None else torch.ones(weight)
    n = (normalized,) if isinstance(normalized, int) else normalized
    torch_error(lambda: torch.nn.functional.rms_norm(torch.ones(shape), n, tw))
    with pytest.raises(ValueError, match="rms_norm: "):
        fg.nn.functional.rms_norm(fg.ones(*shape), normalized, w)


# ---------------------------------------------------------------- rsqrt, fg.add

def test_rsqrt_gradient_is_torchs_at_minus_inf_zero_and_inf():
    v = [-np.inf, 0.0, -1.0, np.inf, 4.0]
    x, tx = t64(v, requires_grad=True), torch.tensor(v, requires_grad=True)
    with np.errstate(all="ignore"):
        x.rsqrt().sum().backward()
    tx.rsqrt().sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), tx.grad.numpy())  # NaN at -inf, not -0
    _, tangent = fg.jvp(lambda a: a.rsqrt(), (t64([4.0]),), (t64([1.0]),))
    assert tangent.item() == -0.0625


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name,kwargs", [
    ("add", {}), ("add", {"alpha": 3}), ("sub", {}), ("sub", {"alpha": 0.5}), ("mul", {}),
    ("div", {}), ("div", {"rounding_mode": "floor"}), ("pow", {}),
])
def test_a_number_first_is_exact_like_the_operator(name, kwargs, dtype):
    v = np.array([1.25, 2.0, -3.5], dtype=dtype)
    ours = getattr(fg, name)(5.576, fg.tensor(v), **kwargs)
    theirs = getattr(torch, name)(5.576, torch.tensor(v), **kwargs)
    assert ours.dtype == v.dtype
    # 5.576 is not rounded to float32 first (float32 pow may differ from torch's by an ulp)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=0 if dtype == "float64"
                               else 2e-7)
    if not kwargs:
        op = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
              "pow": np.power}[name]
        assert ours.numpy().tobytes() == op(5.576, v).tobytes()
        with fg.profile() as bill:
            getattr(fg, name)(5.576, fg.tensor(v))
        assert bill.bytes() == 2 * v.nbytes  # the number is free, as in t + 5.576


def test_roll_of_a_0d_tensor_along_a_dim_raises_like_torch():
    with pytest.raises(IndexError):
        torch.tensor(1.0).roll(1, 0)
    with pytest.raises(IndexError, match="no dimensions"):
        fg.tensor(1.0).roll(1, 0)
    assert fg.tensor(1.0).roll(1).item() == torch.tensor(1.0).roll(1).item()


def test_a_0d_true_mask_adds_a_dim_like_torch_and_false_is_a_clear_error():
    x = fg.ones(3, requires_grad=True)
    y = x[fg.tensor(True)]
    assert y.shape == tuple(torch.ones(3)[torch.tensor(True)].shape) == (1, 3)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.ones(3, np.float32))
    with pytest.raises(IndexError, match="0-d False mask"):
        x[fg.tensor(False)]


def test_arange_against_its_step_raises_like_torch():
    with pytest.raises(RuntimeError):
        torch.arange(0, 5, -1)
    with pytest.raises(ValueError, match="inconsistent with the sign of step"):
        fg.arange(0, 5, -1)
    assert fg.arange(5, 0, -2).tolist() == torch.arange(5, 0, -2).tolist()
    assert fg.arange(3, 3).tolist() == []
