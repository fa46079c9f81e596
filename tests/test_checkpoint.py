"""fg.checkpoint: PyTorch's non-reentrant semantics, bit-identical gradients, billed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.checkpoint import checkpoint as torch_checkpoint
from torch.utils.flop_counter import FlopCounterMode

import flopgrad as fg
from flopgrad.models import CNN, GPT, MLP, GPTConfig
from flopgrad.nn import functional as F
from flopgrad.nn.utils import checkpoint_modules


def _grads(model) -> dict:
    return {n: p.grad.numpy().copy() for n, p in model.named_parameters() if p.grad is not None}


def _step(model, x, y, seed=1):
    fg.manual_seed(seed)  # dropout masks: the same stream in both runs
    for p in model.parameters():
        p.grad = None
    out = model(x, targets=y)[1] if isinstance(model, GPT) else F.cross_entropy(model(x), y)
    out.backward()
    return _grads(model)


CASES = {
    "mlp": (lambda: MLP([12, 16, 16, 5]), lambda: fg.randn(6, 12), lambda: fg.randint(0, 5, (6,)),
            ["fc1", "act1", "fc2", "act2"]),
    "cnn": (lambda: CNN(8), lambda: fg.randn(3, 1, 8, 8), lambda: fg.randint(0, 10, (3,)),
            ["conv1", "pool1", "conv2", "pool2"]),
    "gpt": (lambda: GPT(GPTConfig(3, 2, 16, 8, 11, dropout=0.1)), lambda: fg.randint(0, 11, (2, 8)),
            lambda: fg.randint(0, 11, (2, 8)), ["blocks.0", "blocks.1", "blocks.2"]),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(CASES))
def test_gradients_are_bit_identical_with_checkpointing(name, dtype):
    make_model, make_x, make_y, blocks = CASES[name]
    fg.manual_seed(0)
    model = make_model()
    if dtype is np.float64:
        model.to(fg.float64)
    x, y = make_x(), make_y()
    if x.dtype.kind == "f":
        x = x.to(model.parameters().__next__().dtype)
    names = [n for n, _ in model.named_modules()]
    assert set(blocks) <= set(names)
    plain = _step(model, x, y)
    checkpoint_modules(model, blocks)
    with fg.profile() as bill:
        again = _step(model, x, y)
    assert bill.bytes("recompute") > 0
    assert plain.keys() == again.keys()
    for k in plain:
        assert np.array_equal(plain[k], again[k]), k
    checkpoint_modules(model, [])
    with fg.profile() as off:
        _step(model, x, y)
    assert off.bytes("recompute") == 0


def test_dropout_masks_are_replayed():
    fg.manual_seed(0)
    w = fg.nn.Parameter(fg.randn(8, 8))
    x = fg.randn(4, 8)

    def block(h):
        return F.dropout(h @ w, 0.5, True).tanh() @ w

    fg.manual_seed(3)
    block(x).sum().backward()
    plain, w.grad = w.grad.numpy().copy(), None
    fg.manual_seed(3)
    fg.checkpoint(block, x).sum().backward()
    assert np.array_equal(plain, w.grad.numpy())


def test_nested_checkpoints_give_the_same_gradients():
    fg.manual_seed(0)
    w1, w2 = fg.nn.Parameter(fg.randn(5, 5)), fg.nn.Parameter(fg.randn(5, 5))
    x = fg.randn(3, 5)

    def inner(h):
        return (h @ w2).sin() * h

    def outer(h):
        return fg.checkpoint(inner, (h @ w1).tanh()) @ w1 + h

    (outer(x) ** 2).sum().backward()
    plain = (w1.grad.numpy().copy(), w2.grad.numpy().copy())
    w1.grad = w2.grad = None
    with fg.profile() as bill:
        (fg.checkpoint(outer, x) ** 2).sum().backward()
    assert np.array_equal(plain[0], w1.grad.numpy()) and np.array_equal(plain[1], w2.grad.numpy())
    assert bill.flops("recompute", op="sin") == 2 * 15  # the inner block ran three times


def test_recomputation_stops_once_every_saved_value_is_back():
    w = fg.nn.Parameter(fg.ones(4, 4))
    x = fg.ones(2, 4)
    with fg.profile() as bill:
        fg.checkpoint(lambda h: (h @ w).relu() + h, x).sum().backward()
    assert bill.flops("recompute", op="matmul") == 2 * 2 * 4 * 4
    assert bill.flops("recompute", op="relu") == 8
    assert bill.flops("recompute", op="add") == 0  # the block's last op saves nothing


def test_checkpoint_under_no_grad_just_runs_the_function():
    x = fg.ones(3, requires_grad=True)
    with fg.no_grad(), fg.profile() as bill:
        y = fg.checkpoint(lambda h: h * 2, x)
    assert not y.requires_grad and y.tolist() == [2.0, 2.0, 2.0]
    assert bill.flops("recompute") == 0


def test_checkpoint_keeps_only_its_inputs():
    fg.manual_seed(0)
    w = fg.nn.Parameter(fg.randn(64, 64))
    x = fg.randn(32, 64)

    def block(h):
        for _ in range(4):
            h = (h @ w).tanh()
        return h

    with fg.profile() as plain:
        out = block(x)
        saved_plain = plain.saved_bytes
        out.sum().backward()
    with fg.profile() as ckpt:
        out = fg.checkpoint(block, x)
        saved_ckpt = ckpt.saved_bytes
        out.sum().backward()
    assert saved_ckpt == x._data.nbytes  # the input, kept by the checkpoint
    assert saved_plain > 4 * saved_ckpt
    assert ckpt.peak_bytes == plain.peak_bytes  # one block: backward brings it all back
    h = x
    with fg.profile() as chain:
        for _ in range(2):
            h = fg.checkpoint(lambda z: ((z @ w).tanh() @ w).tanh(), h)
        h.sum().backward()
    assert chain.peak_bytes < plain.peak_bytes


def test_create_graph_and_second_derivatives_go_through_checkpoints():
    x = fg.tensor([0.3, -1.2, 2.0], dtype=fg.float64, requires_grad=True)
    f = lambda h: (h.sin() * h).exp()  # noqa: E731
    (g_plain,) = fg.grad(f(x).sum(), x, create_graph=True)
    (h_plain,) = fg.grad(g_plain.sum(), x)
    (g,) = fg.grad(fg.checkpoint(f, x).sum(), x, create_graph=True)
    (h,) = fg.grad(g.sum(), x)
    assert np.array_equal(g.detach().numpy(), g_plain.detach().numpy())
    assert np.allclose(h.numpy(), h_plain.numpy())


def test_forward_mode_goes_through_a_checkpoint():
    x, t = fg.tensor([0.5, 1.5]), fg.tensor([1.0, 2.0])
    out, tangent = fg.jvp(lambda h: fg.checkpoint(lambda z: (z * z).sin(), h), (x,), (t,))
    _, plain = fg.jvp(lambda z: (z * z).sin(), (x,), (t,))
    assert np.array_equal(tangent.numpy(), plain.numpy())


def test_checkpoint_in_meta_mode_bills_the_recompute():
    with fg.meta():
        w = fg.nn.Parameter(fg.randn(1024, 1024))
        x = fg.randn(4096, 1024)
    with fg.profile() as bill:
        fg.checkpoint(lambda h: (h @ w).relu() @ w, x).sum().backward()
    # the first matmul and the relu run again; the last matmul saves only its inputs, which
    # are back once the relu has run, so it does not (as in PyTorch)
    assert bill.flops("recompute", kind="tensor") == 2 * 4096 * 1024 * 1024


def test_a_second_backward_and_an_edited_input_are_clear_errors():
    w = fg.nn.Parameter(fg.ones(2, 2))
    x = fg.ones(2, 2)
    y = fg.checkpoint(lambda h: (h @ w).tanh(), x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()
    x2 = fg.ones(2, 2)
    y2 = fg.checkpoint(lambda h: (h @ w).tanh(), x2).sum()
    x2.add_(1.0)
    with pytest.raises(RuntimeError, match="checkpoint.*modified in place"):
        y2.backward()


def test_a_function_that_runs_other_ops_when_recomputed_is_refused():
    w = fg.nn.Parameter(fg.ones(2, 2))
    calls = []

    def moody(h):
        calls.append(1)
        return (h @ w).tanh() if len(calls) == 1 else (h @ w).sigmoid()

    y = fg.checkpoint(moody, fg.ones(2, 2)).sum()
    with pytest.raises(RuntimeError, match="recomputing the function ran sigmoid"):
        y.backward()


def test_bad_arguments_are_clear_errors():
    with pytest.raises(TypeError, match="callable"):
        fg.checkpoint(3, fg.ones(2))
    with pytest.raises(ValueError, match="use_reentrant=True"):
        fg.checkpoint(lambda h: h, fg.ones(2), use_reentrant=True)
    with pytest.raises(ValueError, match="no submodule 'nope'"):
        checkpoint_modules(MLP([2, 2]), ["nope"])
    with pytest.raises(TypeError, match="list of module paths"):
        checkpoint_modules(MLP([2, 2]), "layers.0")
    with pytest.raises(ValueError, match="segments"):
        fg.checkpoint_sequential(fg.nn.Sequential(fg.nn.ReLU()), 0, fg.ones(2))
    with pytest.raises(ValueError, match="checkpoint must be one of"):
        GPTConfig(checkpoint="some")


def test_checkpoint_sequential_matches_pytorch_segments():
    fg.manual_seed(0)
    net = fg.nn.Sequential(*[m for _ in range(3) for m in (fg.nn.Linear(6, 6), fg.nn.Tanh())])
    tnet = torch.nn.Sequential(*[m for _ in range(3) for m in (torch.nn.Linear(6, 6),
                                                                 torch.nn.Tanh())]).double()
    with torch.no_grad():
        for (_, p), (_, q) in zip(net.named_parameters(), tnet.named_parameters(), strict=True):
            q.copy_(torch.from_numpy(p.detach().numpy().astype(np.float64)))
    net.to(fg.float64)
    x = fg.randn(4, 6).to(fg.float64)
    tx = torch.from_numpy(x.numpy())
    with fg.profile() as bill:
        fg.checkpoint_sequential(net, 3, x).sum().backward()
    torch.utils.checkpoint.checkpoint_sequential(tnet, 3, tx, use_reentrant=False).sum().backward()
    for p, q in zip(net.parameters(), tnet.parameters(), strict=True):
        assert np.allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-12, atol=1e-14)
    assert bill.flops("recompute", scope="4") == 0 and bill.flops("recompute", scope="0") > 0


def test_selective_and_full_recompute_of_a_gpt():
    cfg = dict(n_layer=2, n_head=2, d_model=16, ctx=8, vocab=11)
    idx = fg.randint(0, 11, (2, 8))
    bills = {}
    for policy in ("none", "selective", "full"):
        fg.manual_seed(0)
        model = GPT(GPTConfig(**cfg, checkpoint=policy))
        with fg.profile() as bill:
            model(idx, targets=idx)[1].backward()
        bills[policy] = bill
    assert bills["none"].flops("recompute") == 0
    sel, full = bills["selective"], bills["full"]
    assert 0 < sel.flops("recompute") < full.flops("recompute")
    recomputed = {r.key.removesuffix(" (recompute)") for r in sel.rows() if r.recompute}
    assert recomputed <= {"matmul", "softmax", "where", "mul", "add", "div", "sub", "expand",
                          "reshape", "permute"}
    assert full.flops("recompute", kind="tensor") < full.flops("forward", kind="tensor")
    assert sel.peak_bytes < bills["none"].peak_bytes and full.peak_bytes < sel.peak_bytes


def test_flops_match_pytorch_checkpoint_under_flop_counter():
    """torch's backward count includes the recomputed forward; flopgrad bills it apart."""
    fg.manual_seed(0)
    lin1, lin2 = fg.nn.Linear(32, 64), fg.nn.Linear(64, 32)
    t1, t2 = torch.nn.Linear(32, 64), torch.nn.Linear(64, 32)
    with torch.no_grad():
        for a, b in ((lin1, t1), (lin2, t2)):
            b.weight.copy_(torch.from_numpy(a.weight.detach().numpy()))
            b.bias.copy_(torch.from_numpy(a.bias.detach().numpy()))
    x = fg.randn(16, 32, requires_grad=True)
    tx = torch.from_numpy(x.detach().numpy()).requires_grad_()
    with fg.profile() as bill:
        fg.checkpoint(lambda h: lin2(lin1(h).relu()), x).sum().backward()
    with FlopCounterMode(display=False) as counter:
        torch_checkpoint(lambda h: t2(t1(h).relu()), tx, use_reentrant=False).sum().backward()
    torch_total = counter.get_total_flops()
    ours = (bill.flops("forward", kind="tensor") + bill.flops("backward", kind="tensor")
            + bill.flops("recompute", kind="tensor"))
    assert ours == torch_total
    assert bill.flops("recompute", kind="tensor") == 2 * 16 * 32 * 64  # lin1 only, as torch


def test_two_threads_checkpoint_at_once():
    import threading

    fg.manual_seed(0)
    ws = [fg.nn.Parameter(fg.randn(16, 16)) for _ in range(2)]
    xs = [fg.randn(8, 16) for _ in range(2)]

    def block(w):
        return lambda h: ((h @ w).tanh() @ w).sin()

    expected = []
    for w, x in zip(ws, xs, strict=True):
        block(w)(x).sum().backward()
        expected.append(w.grad.numpy().copy())
        w.grad = None
    errors, recomputed = [], {}

    def run(k):
        try:
            for _ in range(20):
                ws[k].grad = None
                with fg.profile() as bill:
                    fg.checkpoint(block(ws[k]), xs[k]).sum().backward()
                assert np.array_equal(ws[k].grad.numpy(), expected[k])
            recomputed[k] = bill.flops("recompute", kind="tensor")
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert recomputed == {0: 2 * 2 * 8 * 16 * 16, 1: 2 * 2 * 8 * 16 * 16}  # per thread: its own
