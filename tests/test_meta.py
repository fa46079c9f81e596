"""Meta mode: the same code on shape-only tensors, with a bill equal to the real one."""

import contextlib
import tracemalloc

import numpy as np
import pytest

import flopgrad as fg
import flopgrad.nn.functional as F
from flopgrad.models import CNN, GPT, MLP, GPTConfig


def _bill(make_model, make_x, make_y, meta: bool):
    fg.manual_seed(0)
    if meta:
        with fg.meta():
            model = make_model()
    else:
        model = make_model()
    opt = fg.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = make_x(), make_y()
    if meta and x.dtype.kind == "f":
        x = x.to("meta")
    with fg.profile() as bill:
        for _ in range(2):  # the second step has optimizer state and accumulated buffers
            opt.zero_grad()
            out = model(x)
            loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
            loss.backward()
            fg.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
    return bill, model


def _strip_lines(d):
    d = dict(d)
    d["saved"] = [{k: v for k, v in e.items() if k != "line"} for e in d["saved"]]
    return d


CASES = {
    "mlp": (lambda: MLP([20, 30, 10]), lambda: fg.randn(4, 20), lambda: fg.randint(0, 10, (4,))),
    "cnn": (lambda: CNN(8), lambda: fg.randn(3, 1, 8, 8), lambda: fg.randint(0, 10, (3,))),
    "gpt": (lambda: GPT(GPTConfig(2, 2, 16, 8, 11)), lambda: fg.randint(0, 11, (2, 8)),
            lambda: fg.randint(0, 11, (2, 8))),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_meta_bill_equals_real_bill_field_by_field(name):
    real, real_model = _bill(*CASES[name], meta=False)
    meta, meta_model = _bill(*CASES[name], meta=True)
    assert all(p.is_meta for p in meta_model.parameters())
    assert not any(p.is_meta for p in real_model.parameters())
    assert _strip_times(meta) == _strip_times(real)
    assert meta.peak_bytes == real.peak_bytes
    assert meta.saved_bytes_peak == real.saved_bytes_peak
    assert meta.flops() == real.flops() and meta.bytes() == real.bytes()


def _strip_times(bill):
    d = _strip_lines(bill.to_dict(events=True))
    d["events"] = [{k: v for k, v in e.items() if not k.endswith("_ns")} for e in d["events"]]
    return d


def test_meta_tensors_have_no_data_and_say_so():
    x = fg.randn(3, 4, device="meta", requires_grad=True)
    assert x.is_meta and x.device == "meta" and x.shape == (3, 4)
    assert "device='meta'" in repr(x) and "shape=(3, 4)" in repr(x)
    y = (x @ x.T).relu().sum()
    y.backward()
    assert x.grad.is_meta and x.grad.shape == (3, 4)
    for fn in (lambda: x.detach().numpy(), lambda: y.item(), lambda: x.tolist(),
               lambda: np.asarray(x.detach()), lambda: float(y), lambda: bool(y > 0)):
        with pytest.raises(fg.NoDataError, match="meta tensor"):
            fn()
    with pytest.raises(fg.NoDataError, match="boolean-mask"):
        x[x > 0]


def test_meta_allocates_nothing_for_a_huge_model():
    with fg.meta():
        w = fg.randn(200_000, 200_000, requires_grad=True)  # 160 GB in float32
        lin = fg.nn.Linear(200_000, 200_000)
    assert w.is_meta and lin.weight.is_meta
    with fg.profile() as bill:
        (fg.ones(8, 200_000, device="meta") @ w).sum().backward()
    assert bill.flops("forward", kind="tensor") == 2 * 8 * 200_000 * 200_000
    assert bill.flops("backward", role="weight", kind="tensor") == 2 * 8 * 200_000 * 200_000


def test_module_to_meta_and_meta_views_follow_numpy():
    model = MLP([4, 5, 2]).to("meta")
    assert all(p.is_meta for p in model.parameters())
    x = fg.zeros(2, 3, 4, device="meta")
    t = x.transpose(1, 2)
    assert t.shape == (2, 4, 3) and t._data.base is x._data
    assert t.reshape(2, 12)._data.base is None  # numpy would copy here too
    assert x.reshape(6, 4)._data.base is x._data  # ... and not here
    assert x[0, 1:, None].shape == np.zeros((2, 3, 4))[0, 1:, None].shape
    assert x[:, np.array([0, 2])].shape == (2, 2, 4)
    assert x[np.array([[0], [1]]), :, np.array([1, 2])].shape == (2, 2, 3)


def test_every_primitive_has_a_shape_rule():
    assert all(op.meta is not None for op in fg.ops.REGISTRY.values())


def test_meta_shape_errors_match_real_ones():
    a, b = fg.ones(2, 3, device="meta"), fg.ones(4, 5, device="meta")
    with pytest.raises(fg.ShapeError, match="matmul"):
        a @ b
    with pytest.raises(fg.ShapeError, match="add"):
        a + b


def test_meta_backward_of_fused_ops_allocates_no_data():
    import tracemalloc

    rows, classes = 4096, 1_000_000  # 16 GB per float32 array of this shape
    targets = np.arange(rows) % classes
    with fg.meta():
        logits = fg.randn(rows, classes, requires_grad=True)
        w = fg.ones(classes, requires_grad=True)
    tracemalloc.start()
    try:
        h = F.layer_norm(F.gelu(logits, approximate="tanh"), (classes,), w) ** 0
        loss = F.cross_entropy(h.softmax(-1) + logits.log_softmax(-1), targets)
        loss.backward()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert logits.grad.is_meta and logits.grad.shape == (rows, classes)
    assert peak < 50e6, f"meta backward allocated {peak / 1e6:.0f} MB"


# ---------------------------------------------------------------- meta index tensors

def _loss_cases():
    W = lambda: fg.ones(7)  # noqa: E731
    return {
        "cross_entropy": lambda lg, t: F.cross_entropy(lg, t),
        "cross_entropy_sum": lambda lg, t: F.cross_entropy(lg, t, reduction="sum"),
        "cross_entropy_none": lambda lg, t: F.cross_entropy(lg, t, reduction="none").sum(),
        "cross_entropy_weight": lambda lg, t: F.cross_entropy(lg, t, weight=W()),
        "cross_entropy_smoothing": lambda lg, t: F.cross_entropy(lg, t, label_smoothing=0.1),
        "cross_entropy_smoothing_weight": lambda lg, t: F.cross_entropy(
            lg, t, weight=W(), label_smoothing=0.2),
        "nll_loss": lambda lg, t: F.nll_loss(lg.log_softmax(1), t),
        "nll_loss_weight_sum": lambda lg, t: F.nll_loss(lg.log_softmax(1), t, weight=W(),
                                                        reduction="sum"),
        "cross_entropy_3d": lambda lg, t: F.cross_entropy(
            lg.reshape(2, 3, 7).transpose(1, 2), t.reshape(2, 3)),
        "gather": lambda lg, t: lg.gather(1, t.reshape(6, 1)).sum(),
        "index_select": lambda lg, t: lg.index_select(1, t).sum(),
        "scatter_add": lambda lg, t: fg.zeros(6, 7).scatter_add(
            1, t.reshape(6, 1), lg[:, :1]).sum(),
        "embedding": lambda lg, t: (F.embedding(t, lg.T) ** 2).sum(),
        "embedding_padding_idx": lambda lg, t: (F.embedding(t, lg.T, padding_idx=0) ** 2).sum(),
        "getitem": lambda lg, t: lg[fg.arange(6), t].sum(),
    }


@pytest.mark.parametrize("name", sorted(_loss_cases()))
def test_ops_on_meta_index_tensors_bill_like_real_ones(name):
    """Token ids made by fg.randint inside fg.meta() (the natural way to write a meta
    training step) run every op whose cost does not depend on the index values, with the
    bill of the same op on real indices."""
    fn = _loss_cases()[name]
    bills = []
    for meta in (False, True):
        fg.manual_seed(0)
        ctx = fg.meta() if meta else contextlib.nullcontext()
        with ctx:
            logits = fg.randn(6, 7, requires_grad=True)
            target = fg.randint(0, 6, (6,))
            assert target.is_meta == meta
        with fg.profile() as bill:
            loss = fn(logits, target)
            loss.backward()
        assert loss.is_meta == meta and logits.grad.is_meta == meta
        bills.append(bill)
    real, meta_ = bills
    assert _strip_times(meta_) == _strip_times(real)


def test_one_hot_of_meta_indices_needs_num_classes():
    with fg.meta():
        ids = fg.randint(0, 5, (3, 4))
    hot = F.one_hot(ids, 5)
    assert hot.is_meta and hot.shape == (3, 4, 5) and hot.dtype == np.int64
    with pytest.raises(fg.NoDataError, match="num_classes"):
        F.one_hot(ids)


def test_one_hot_matches_torch():
    torch = pytest.importorskip("torch")
    ids = np.array([[0, 3], [2, 1]])
    np.testing.assert_array_equal(
        F.one_hot(fg.tensor(ids)).numpy(), torch.nn.functional.one_hot(torch.tensor(ids)).numpy())
    np.testing.assert_array_equal(
        F.one_hot(fg.tensor(ids), 6).numpy(),
        torch.nn.functional.one_hot(torch.tensor(ids), 6).numpy())
    with pytest.raises(IndexError):
        F.one_hot(fg.tensor([0, 4]), 3)
    with pytest.raises(TypeError):
        F.one_hot(fg.tensor([0.0]), 3)


def test_data_dependent_ops_still_refuse_meta():
    with fg.meta():
        x = fg.randn(4)
    with pytest.raises(fg.NoDataError, match="boolean-mask"):
        x[x > 0]


def test_meta_step_bill_allocates_nothing_that_grows_with_batch():
    """`flopgrad bill --batch 1000000000000`: token ids and positions are meta too."""
    cfg = GPTConfig(n_layer=2, n_head=2, d_model=16, ctx=8, vocab=32)
    tracemalloc.start()
    try:
        small, _ = fg.planning.step_bill(cfg, batch=1)
        _, small_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        huge, _ = fg.planning.step_bill(cfg, batch=10 ** 12)
        _, huge_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert huge_peak < 4 * small_peak + (1 << 20)
    assert huge.flops("forward", kind="tensor") == 10 ** 12 * small.flops("forward",
                                                                          kind="tensor")


def test_meta_shapes_may_hold_more_elements_than_an_index_can_count():
    """Attention scores of a 10**12 batch: 1.2e19 elements, past int64 (numpy refuses)."""
    with fg.meta():
        q = fg.randn(10 ** 12, 12, 1024, 64)
    scores = (q @ q.transpose(-2, -1)) * 0.125
    assert scores.shape == (10 ** 12, 12, 1024, 1024)
    with pytest.raises(ValueError, match="cannot be broadcast"):
        fg.backend.broadcast_shapes((2, 3), (4, 3))
