"""The bill: exact FLOPs, bytes and memory, checked against the seeds' worked examples."""

import csv
import gc
import json

import numpy as np
import pytest

import flopgrad as fg
import flopgrad.nn.functional as F
from flopgrad.nn import Parameter


def seed_003_bill(B, D, C, x_needs_grad):
    X = fg.randn(B, D, requires_grad=x_needs_grad)
    W1, W2 = Parameter(fg.randn(D, D)), Parameter(fg.randn(D, C))
    with fg.profile() as bill:
        loss = ((X @ W1 @ W2) ** 2).mean()
        loss.backward()
    return bill


@pytest.mark.parametrize("B,D,C", [(1, 4, 3), (8, 16, 5), (32, 64, 10), (3, 7, 2)])
def test_seed_003_forward_backward_and_roles(B, D, C):
    bill = seed_003_bill(B, D, C, x_needs_grad=False)
    assert bill.flops("forward", kind="tensor") == 2 * B * D * D + 2 * B * D * C
    assert bill.flops("backward", kind="tensor") == 4 * B * D * C + 2 * B * D * D
    assert bill.flops("backward", role="weight", kind="tensor") == 2 * B * D * D + 2 * B * D * C
    assert bill.flops("backward", role="input", kind="tensor") == 2 * B * D * C

    bill = seed_003_bill(B, D, C, x_needs_grad=True)
    assert bill.flops("backward", kind="tensor") == 4 * B * D * C + 4 * B * D * D
    assert bill.flops("backward", role="weight", kind="tensor") == 2 * B * D * D + 2 * B * D * C
    assert bill.flops("backward", role="input", kind="tensor") == 2 * B * D * C + 2 * B * D * D
    assert bill.macs("forward") == B * D * D + B * D * C


def test_plain_leaves_are_weights_when_no_parameter_is_used():
    B, D, C = 4, 6, 3
    X = fg.randn(B, D)
    W1, W2 = fg.randn(D, D, requires_grad=True), fg.randn(D, C, requires_grad=True)
    with fg.profile() as bill:
        ((X @ W1 @ W2) ** 2).mean().backward()
    assert bill.flops("backward", role="weight", kind="tensor") == 2 * B * D * D + 2 * B * D * C
    assert bill.flops("backward", role="input", kind="tensor") == 2 * B * D * C


def seed_000_bill(batch=1):
    fg.manual_seed(0)
    sizes = [784, 128, 64, 10]
    layers = [(Parameter(fg.randn(o, i) * 0.05), Parameter(fg.zeros(o)))
              for i, o in zip(sizes, sizes[1:], strict=False)]
    x, y = fg.randn(batch, 784), fg.randint(0, 10, (batch,))
    with fg.profile() as bill:
        h = x
        for k, (w, b) in enumerate(layers):
            with fg.scope(f"fc{k + 1}"):
                h = F.linear(h, w, b)
                if k < 2:
                    h = F.relu(h)
        F.cross_entropy(h, y).backward()
    return bill


def test_seed_000_mlp_matmul_flops_and_the_1_08_ratio():
    bill = seed_000_bill()
    assert bill.flops("forward", kind="tensor") == 218_368
    assert bill.flops("backward", kind="tensor") == 236_032
    assert bill.backward_forward_ratio("tensor") == pytest.approx(236_032 / 218_368)
    assert round(bill.backward_forward_ratio("tensor"), 2) == 1.08
    # dW of every layer, dX of layers 2 and 3 only
    assert bill.flops("backward", role="weight", kind="tensor") == 218_368
    assert bill.flops("backward", role="input", kind="tensor") == 2 * (128 * 64 + 64 * 10)
    skipped = bill.skipped_dx()
    assert [(s["op"], s["scope"], s["flops"]) for s in skipped] == [("matmul", "fc1", 200_704)]
    ratio_rule = next(r for r in bill.rules() if r.name == "backward/forward FLOPs")
    assert not ratio_rule.holds
    assert "fc1" in ratio_rule.reason and "never computed" in ratio_rule.reason
    assert ratio_rule.measured == pytest.approx(bill.backward_forward_ratio())
    share = next(r for r in bill.rules() if r.name == "share of FLOPs in matmul")
    assert share.holds and share.measured > 0.99


def test_scopes_and_per_layer_rows():
    bill = seed_000_bill(batch=4)
    assert bill.flops("forward", kind="tensor", scope="fc1") == 2 * 4 * 784 * 128
    assert bill.flops("backward", kind="tensor", scope="fc1") == 2 * 4 * 784 * 128  # dW only
    assert bill.flops("backward", kind="tensor", scope="fc2", role="input") == 2 * 4 * 128 * 64
    rows = {r.key: r for r in bill.rows("scope")}
    assert set(rows) == {"fc1", "fc2", "fc3", "(top level)"}
    # fc1's only dX work is relu's (elementwise): its matmul's dX was never computed
    assert bill.flops("backward", role="input", kind="tensor", scope="fc1") == 0
    assert rows["fc1"].backward_dx == bill.flops("backward", role="input", op="relu",
                                                 scope="fc1")
    assert rows["fc1"].backward_dw > 0


def test_consistency_rows_phases_roles_sum_to_totals():
    bill = seed_000_bill(batch=3)
    total = bill.flops()
    for by in ("op", "scope", "phase"):
        rows = bill.rows(by)
        assert sum(r.total for r in rows) == total
        assert sum(r.bytes for r in rows) == bill.bytes()
    assert sum(bill.flops(p) for p in ("forward", "backward", "recompute", "optimizer")) == total
    assert (bill.flops("backward", role="weight") + bill.flops("backward", role="input")
            == bill.flops("backward"))
    assert bill.flops(kind="tensor") + bill.flops(kind="other") == total
    assert bill.macs() == bill.flops(kind="tensor") // 2


def test_matmul_bytes_1000():
    a, b = fg.ones(1000, 1000), fg.ones(1000, 1000)
    with fg.profile() as bill:
        a @ b
    assert bill.bytes() == 12_000_000
    assert bill.flops() == 2 * 1000 ** 3


def test_views_move_no_bytes():
    x = fg.ones(10, 20)
    with fg.profile() as bill:
        x.T.reshape(20, 10).reshape(200)
    first = bill.event_rows()[0]
    assert first["primitive"] == "permute" and first["bytes"] == 0
    # reshaping a transposed (non-contiguous) array has to copy: billed as a copy
    assert bill.event_rows()[1]["bytes"] == 2 * 200 * 4


def test_no_grad_ops_are_billed_and_profiles_nest():
    x = fg.ones(3, 3)
    with fg.profile() as outer:
        x @ x
        with fg.profile() as inner, fg.no_grad():
            x @ x
    assert inner.flops() == 54
    assert outer.flops() == 108


def test_mlp_saved_bytes_equal_what_its_ops_save_and_memory_falls_back():
    fg.manual_seed(1)
    sizes = [20, 30, 40, 5]
    B = 7
    with fg.profile() as bill:
        params = [(Parameter(fg.randn(o, i)), Parameter(fg.randn(o)))
                  for i, o in zip(sizes, sizes[1:], strict=False)]
        x, target = fg.randn(B, sizes[0]), fg.randn(B, sizes[-1])
        h = x
        acts = []
        for k, (w, b) in enumerate(params):
            h = F.linear(h, w, b)
            if k < len(params) - 1:
                h = F.relu(h)
                acts.append(h)
        loss = F.mse_loss(h, target)
        before_backward = bill.saved_bytes
        loss.backward()
        after = bill.saved_bytes
        del loss, h, acts
        gc.collect()
        live_after = bill.live_bytes
    # What the ops save, counted by hand: x and each relu output (saved by relu and by the
    # next matmul: one buffer), the weights of layers 2 and 3 (for their dX; W.T is a view of
    # W; layer 1 needs no dX, so W1 is not saved), and the loss's difference (x - target).
    f32 = 4
    expected = B * sizes[0] * f32
    expected += sum(B * o * f32 for o in sizes[1:-1])
    expected += sum(i * o * f32 for i, o in zip(sizes[1:], sizes[2:], strict=False))
    expected += B * sizes[-1] * f32
    assert before_backward == expected
    assert bill.saved_bytes_peak == expected
    assert after == 0
    param_bytes = sum(w._data.nbytes + b._data.nbytes for w, b in params)
    assert live_after == 2 * param_bytes + x._data.nbytes + target._data.nbytes
    entries = bill.saved()
    assert {e["op"] for e in entries} == {"matmul", "relu", "mul"}
    assert all(e["line"].startswith("test_bill.py:") for e in entries)
    assert sum(e["bytes"] for e in entries) == expected


def test_unknown_cost_function_is_flagged_loudly():
    class Mystery(fg.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g * 2

    x = fg.ones(3, requires_grad=True)
    with fg.profile() as bill:
        Mystery.apply(x).sum().backward()
    assert bill.unknown_ops() == ["Mystery"]
    assert "UNKNOWN COST" in bill.table()
    assert bill.to_dict()["unknown_ops"] == ["Mystery"]


def test_declared_cost_function_is_billed():
    class Triple(fg.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 3

        @staticmethod
        def backward(ctx, g):
            return g * 3

        @staticmethod
        def cost(out_shape, in_shapes):
            return (0, int(np.prod(out_shape)), 0)

    x = fg.ones(5, requires_grad=True)
    with fg.profile() as bill:
        Triple.apply(x).sum().backward()
    assert bill.unknown_ops() == []
    assert bill.flops("forward", op="Triple") == 5
    assert bill.flops("backward", op="Triple") == 5


def test_table_and_exports(tmp_path):
    bill = seed_000_bill(batch=2)
    text = str(bill)
    assert "matmul" in text and "bwd dW" in text and "rule checks" in text
    assert "fc1" in bill.table(by="scope")
    d = bill.to_dict()
    assert d["totals"]["forward"]["tensor"] == 2 * 218_368
    assert sum(r["total"] for r in d["by_op"]) == bill.flops()
    bill.to_json(tmp_path / "bill.json")
    loaded = json.loads((tmp_path / "bill.json").read_text())
    assert loaded["totals"]["backward"]["dW"] == bill.flops("backward", role="weight")
    assert len(loaded["events"]) == len(bill.events)
    bill.to_csv(tmp_path / "bill.csv")
    with open(tmp_path / "bill.csv") as f:
        rows = list(csv.DictReader(f))
    assert sum(int(r["tensor_flops"]) + int(r["other_flops"]) for r in rows) == bill.flops()
    bill.to_chrome_trace(tmp_path / "trace.json")
    trace = json.loads((tmp_path / "trace.json").read_text())["traceEvents"]
    ops = [e for e in trace if e["ph"] == "X"]
    assert {e["cat"] for e in ops} == {"forward", "backward"}
    assert sum(e["args"]["tensor_flops"] for e in ops) == bill.flops(kind="tensor")
    assert any(e["ph"] == "C" and e["name"] == "memory" for e in trace)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_export_to_missing_folder_fails_cleanly(tmp_path):
    bill = seed_000_bill()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        bill.to_json(tmp_path / "nope" / "bill.json")


def test_bad_filters_are_named():
    bill = seed_000_bill()
    with pytest.raises(ValueError, match="phase"):
        bill.flops("sideways")
    with pytest.raises(ValueError, match="role"):
        bill.flops(role="bias")
    with pytest.raises(ValueError, match="kind"):
        bill.flops(kind="tensorcore")
    with pytest.raises(ValueError, match="by must be"):
        bill.table(by="colour")


def test_flops_per_param_per_token_rule():
    bill = seed_000_bill(batch=16)
    n_params = 784 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10
    rule = next(r for r in bill.rules(tokens=16) if r.name == "FLOPs per parameter per token")
    assert rule.measured == pytest.approx(bill.flops("forward") / (n_params * 16)
                                          + bill.flops("backward") / (n_params * 16))
    inferred = next(r for r in bill.rules(params=n_params, tokens=16)
                    if r.name == "FLOPs per parameter per token")
    assert inferred.measured == pytest.approx(rule.measured)
