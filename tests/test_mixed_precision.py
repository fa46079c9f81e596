"""bfloat16 and fg.autocast: dtypes as PyTorch's CUDA autocast, bytes halved, training works,
and float32 master weights fix the stuck update."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import flopgrad as fg
from flopgrad import data, models, optim, training
from flopgrad.nn import functional as F


def test_bfloat16_values_match_torch():
    x = np.random.default_rng(0).standard_normal((5, 7)).astype(np.float32)
    w = np.random.default_rng(1).standard_normal((3, 7)).astype(np.float32)
    ours = fg.tensor(x).to(fg.bfloat16)
    theirs = torch.from_numpy(x).to(torch.bfloat16)
    assert ours.numpy().astype(np.float32).tolist() == theirs.float().tolist()  # rounding
    tw = torch.from_numpy(w).to(torch.bfloat16)
    for f, g in ((lambda a, b: F.linear(a, b), lambda a, b: torch.nn.functional.linear(a, b)),
                 (lambda a, b: (a * 2.5 + 1).exp(), lambda a, b: (a * 2.5 + 1).exp()),
                 (lambda a, b: a.sum(1), lambda a, b: a.sum(1)),
                 (lambda a, b: a.mean(0), lambda a, b: a.mean(0))):
        out, ref = f(ours, fg.tensor(w).to(fg.bfloat16)), g(theirs, tw)
        assert out.dtype == fg.bfloat16 and ref.dtype == torch.bfloat16
        np.testing.assert_allclose(out.numpy().astype(np.float32), ref.float().numpy(),
                                   rtol=1e-2, atol=1e-2)
    assert (ours + ours.to(fg.float32)).dtype == fg.float32  # promotion as torch
    assert (ours + ours.half()).dtype == fg.float32 and (ours * 3).dtype == fg.bfloat16


def test_autocast_follows_the_cuda_lists_and_gradients_come_back_float32():
    x = fg.randn(4, 8)
    w = fg.nn.Parameter(fg.randn(6, 8))
    with fg.autocast(dtype=fg.bfloat16):
        h = F.linear(x, w)
        logp = h.log_softmax(-1)
        loss = F.cross_entropy(h, fg.tensor([0, 1, 2, 3]))
    assert h.dtype == fg.bfloat16 and logp.dtype == fg.float32 and loss.dtype == fg.float32
    loss.backward()
    assert w.grad.dtype == fg.float32
    with fg.autocast(dtype=fg.bfloat16), fg.autocast(enabled=False):
        assert (x @ w.T).dtype == fg.float32
    with pytest.raises(ValueError, match="bfloat16 or fg.float16"):
        fg.autocast(dtype=fg.float64)
    tx = torch.from_numpy(x.numpy())
    tw = torch.from_numpy(w.detach().numpy())
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=False):
        pass  # (no GPU here: the CUDA lists are taken from PyTorch's documentation)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.nn.functional.linear(tx, tw).dtype == torch.bfloat16  # lower on CPU too


def test_the_bill_bytes_halve_and_the_flops_stay():
    fg.manual_seed(0)
    model = models.MLP([64, 128, 10])
    x, y = fg.randn(32, 64), fg.randint(0, 10, (32,))
    with fg.profile() as full:
        F.cross_entropy(model(x), y).backward()
    low = models.MLP([64, 128, 10], dtype=fg.bfloat16)
    with fg.profile() as half:
        F.cross_entropy(low(x.to(fg.bfloat16)), y).backward()
    assert half.flops() == full.flops()
    rows = {r.key: r for r in full.rows()}
    for r in half.rows():
        if r.key in ("matmul", "relu", "relu_backward") and r.bytes:
            assert r.bytes * 2 == rows[r.key].bytes, r.key  # every tensor at 2 bytes
    for p in model.parameters():
        p.grad = None
    with fg.autocast(dtype=fg.bfloat16), fg.profile() as auto:
        F.cross_entropy(model(x), y).backward()
    assert auto.flops() == full.flops()
    assert auto.bytes(op="matmul") < full.bytes(op="matmul")


def test_a_bfloat16_autocast_mlp_trains_to_float32_accuracy():
    accs = {}
    for name in ("float32", "autocast"):
        fg.manual_seed(0)
        train, test = data.digits(train=True), data.digits(train=False)
        model = models.MLP([64, 128, 64, 10])
        loader = data.DataLoader(train, batch_size=32, shuffle=True, seed=0)
        opt = optim.Adam(model.parameters(), lr=2e-3)
        if name == "autocast":
            with fg.autocast(dtype=fg.bfloat16):
                training.fit(model, loader, opt, epochs=12, progress=False)
        else:
            training.fit(model, loader, opt, epochs=12, progress=False)
        accs[name] = training.evaluate(model, data.DataLoader(test, batch_size=256))
    assert accs["float32"] > 0.95
    assert abs(accs["autocast"] - accs["float32"]) <= 0.01, accs


def test_master_weights_fix_the_stuck_update():
    """1 + (-1e-3) rounds back to 1.0 in bfloat16 (its spacing at 1 is 2**-7 = 0.0078): without
    a float32 copy, small updates are lost every step."""
    assert fg.tensor(1.0 - 1e-3).to(fg.bfloat16).item() == 1.0
    for master, expected in ((False, 1.0), (True, 0.98828125)):
        w = fg.nn.Parameter(fg.ones(4).to(fg.bfloat16))
        opt = optim.SGD([w], lr=1e-3, master_weights=master)
        with fg.profile() as bill:
            for _ in range(10):
                w.grad = fg.ones(4).to(fg.bfloat16)
                opt.step()
        assert w.tolist() == [expected] * 4  # 0.99 in float32, rounded
        if master:
            kept = opt.state[id(w)]["master_weight"]
            assert kept.dtype == fg.float32 and kept.tolist()[0] == pytest.approx(0.99, 1e-6)
            assert bill.memory_breakdown()["live"]["optimizer_state"] == 4 * 4
            assert bill.bytes("optimizer") > 0
    with pytest.raises(TypeError, match="master_weights"):
        optim.AdamW([fg.nn.Parameter(fg.ones(1))], master_weights="yes")
    w = fg.nn.Parameter(fg.ones(3).to(fg.bfloat16))
    opt = optim.AdamW([w], lr=1e-3, master_weights=True)
    w.grad = fg.ones(3).to(fg.bfloat16)
    opt.step()
    assert set(opt.state[id(w)]) == {"master_weight", "step", "exp_avg", "exp_avg_sq"}
    assert opt.state[id(w)]["exp_avg"].dtype == fg.float32


def test_a_2_byte_tensor_with_a_number_is_computed_in_float32_and_rounded_once():
    for fg_dtype, torch_dtype in ((fg.float16, torch.float16), (fg.bfloat16, torch.bfloat16)):
        x = np.array([1e-3, 0.7, -3.1], dtype=np.float32)
        for number in (65536.0, 3.3, 1e-5):
            ours = fg.tensor(x).to(fg_dtype) * number
            theirs = torch.from_numpy(x).to(torch_dtype) * number
            assert ours.numpy().astype(np.float32).tolist() == theirs.float().tolist()


def test_a_checkpoint_recomputes_under_the_forwards_autocast():
    fg.manual_seed(0)
    w = fg.nn.Parameter(fg.randn(8, 8))
    x = fg.randn(4, 8)

    def block(h):
        return ((h @ w).tanh() @ w).float()

    grads = []
    for ckpt in (False, True):
        w.grad = None
        with fg.autocast(dtype=fg.bfloat16):
            y = fg.checkpoint(block, x) if ckpt else block(x)
        y.sum().backward()  # backward outside the autocast region, as usual
        grads.append(w.grad.numpy().copy())
    assert np.array_equal(grads[0], grads[1])
