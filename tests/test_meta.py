"""Meta mode: the same code on shape-only tensors, with a bill equal to the real one."""

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
