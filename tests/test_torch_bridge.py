"""flopgrad.torch.profile: the Bill of ordinary PyTorch code."""

from __future__ import annotations

import gc
import time

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import flopgrad as fg
import flopgrad.torch as fgt
from flopgrad.models import MLP
from flopgrad.nn import functional as F


def _torch_mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(),
                               torch.nn.Linear(128, 64), torch.nn.ReLU(),
                               torch.nn.Linear(64, 10))


def test_tensor_flops_equal_flop_counter_mode_and_the_native_bill():
    model = _torch_mlp()
    x, y = torch.randn(32, 784), torch.randint(0, 10, (32,))
    with fgt.profile(model) as bill:
        torch.nn.functional.cross_entropy(model(x), y).backward()
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(model(x), y).backward()
    ours = bill.flops("forward", kind="tensor") + bill.flops("backward", kind="tensor")
    assert ours == counter.get_total_flops()
    fg.manual_seed(0)
    native_model = MLP([784, 128, 64, 10])
    with fg.profile() as native:
        F.cross_entropy(native_model(fg.randn(32, 784)), fg.randint(0, 10, (32,))).backward()
    for phase, role in (("forward", None), ("backward", "weight"), ("backward", "input")):
        assert bill.flops(phase, role=role, kind="tensor") == native.flops(
            phase, role=role, kind="tensor"), (phase, role)
    assert bill.flops("forward", op="matmul") == native.flops("forward", op="matmul")


def test_phases_scopes_and_roles():
    model = _torch_mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with fgt.profile(model) as bill:
        torch.nn.functional.cross_entropy(model(torch.randn(8, 784)),
                                          torch.randint(0, 10, (8,))).backward()
        opt.step()
    assert bill.flops("optimizer") > 0 and bill.flops("backward") > 0
    scopes = {r.key for r in bill.rows("scope")}
    assert {"0", "2", "4"} <= scopes
    # dW of the first layer: the weight's GEMM and the bias's sum over the batch
    assert bill.flops("backward", role="weight", scope="0") == 2 * 8 * 784 * 128 + 7 * 128
    assert bill.flops("backward", role="input", scope="0", kind="tensor") == 0  # data: no dX
    assert bill.unknown_ops() == []


def test_ops_without_a_formula_are_listed_not_counted_as_zero():
    x = torch.randn(4, 5, requires_grad=True)
    with fgt.profile() as bill:
        torch.cumprod(x, 1).sum().backward()
    assert "cumprod" in bill.unknown_ops()
    assert "UNKNOWN COST" in bill.table()


def test_saved_bytes_of_100_linears_on_the_meta_device():
    """torchinfo#144: 100 applications of one Linear(1024, 1024) to a float32 (10240, 1024)
    input save 4,194,304,000 bytes of activations for backward (the tool printed 84 MB)."""
    with torch.device("meta"):
        layer = torch.nn.Linear(1024, 1024)
        x = torch.randn(10240, 1024)
    start = time.perf_counter()
    with fgt.profile(layer) as bill:
        h = x
        for _ in range(100):
            h = layer(h)
    assert time.perf_counter() - start < 5  # well under a second when the machine is idle
    saved = [e for e in bill.saved() if e["shape"] != (1024, 1024) and e["shape"] != (1024,)]
    assert sum(e["bytes"] for e in saved) == 4_194_304_000
    assert all(e["shape"] == (10240, 1024) for e in saved)
    assert bill.flops("forward", kind="tensor") == 100 * 2 * 10240 * 1024 * 1024


def test_values_are_untouched():
    model = _torch_mlp()
    x = torch.randn(4, 784)
    plain = model(x).detach().numpy()
    with fgt.profile(model):
        inside = model(x).detach().numpy()
    assert np.array_equal(plain, inside)
    with pytest.raises(TypeError):
        fgt.profile(model=3)


def test_the_core_never_imports_torch():
    import subprocess
    import sys

    code = ("import sys, flopgrad; flopgrad.plan('gpt2', gpus=8, batch=64); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.parametrize("groups", [1, 4])
def test_convolution_against_flop_counter_mode_and_the_native_conv(groups):
    """torch 2.13's FlopCounterMode bills a grouped convolution's weight gradient `groups`
    times too high; flopgrad's count is the native conv's."""
    conv = torch.nn.Conv2d(8, 16, 3, padding=1, groups=groups)
    x = torch.randn(2, 8, 8, 8, requires_grad=True)
    with fgt.profile(conv) as bill:
        conv(x).sum().backward()
    with FlopCounterMode(display=False) as counter:
        conv(x).sum().backward()
    counts = {str(k): v for k, v in counter.get_flop_counts()["Global"].items()}
    fwd = bill.flops("forward", kind="tensor")
    dx = bill.flops("backward", role="input", kind="tensor")
    dw = bill.flops("backward", role="weight", kind="tensor")
    assert fwd == counts["aten.convolution"] == dx == dw
    assert counts["aten.convolution_backward"] == dx + groups * dw
    native_conv = fg.nn.Conv2d(8, 16, 3, padding=1, groups=groups)
    xn = fg.randn(2, 8, 8, 8, requires_grad=True)
    with fg.profile() as native:
        native_conv(xn).sum().backward()
    assert native.flops("forward", kind="tensor") == fwd
    assert native.flops("backward", role="weight", kind="tensor") == dw
    assert native.flops("backward", role="input", kind="tensor") == dx


def _storages_alive() -> dict:
    """Every torch storage reachable from a Python object now (the gc's view, independent of
    the bridge's weak references): key -> bytes."""
    from flopgrad.torch.memory import Saved

    found = {}
    for obj in gc.get_objects():
        t = obj.tensor if type(obj) is Saved else obj
        if type(t) in (torch.Tensor, torch.nn.Parameter) and t.device.type == "cpu":
            s = t.untyped_storage()
            found[s._cdata] = s.nbytes()
    return found


def test_live_bytes_equal_the_storages_the_gc_finds():
    torch.manual_seed(0)
    model = _torch_mlp()
    opt = torch.optim.Adam(model.parameters())
    x, y = torch.randn(32, 784), torch.randint(0, 10, (32,))
    gc.collect()  # no garbage from earlier tests freed (and its addresses reused) meanwhile
    gc.disable()
    try:
        before = _storages_alive()
        params = sum(p.numel() * 4 for p in model.parameters())
        seen = []
        with fgt.profile(model) as bill:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            made = {k: n for k, n in _storages_alive().items() if k not in before}
            seen.append((bill.live_bytes, params + sum(made.values())))
            loss.backward()
            del loss
            made = {k: n for k, n in _storages_alive().items() if k not in before}
            seen.append((bill.live_bytes, params + sum(made.values())))
            opt.step()
    finally:
        gc.enable()
    for ours, gc_view in seen:
        assert ours == gc_view
    m = bill.memory_breakdown()
    assert m["live"] == {"parameters": params, "gradients": params,
                         "optimizer_state": 2 * params, "activations": 0}  # Adam: m and v
    peak = max(bill.timeline(), key=lambda r: r["live_bytes"])
    assert peak["live_bytes"] == bill.peak_bytes
    parts = ("parameters", "gradients", "optimizer_state", "saved_activations", "temporaries")
    assert sum(peak[k] for k in parts) == peak["live_bytes"]
    assert bill.saved_bytes == 0  # backward freed what the forward saved


def test_torch_checkpoint_is_billed_as_recompute():
    from torch.utils.checkpoint import checkpoint

    torch.manual_seed(0)
    blocks = torch.nn.Sequential(*[torch.nn.Sequential(torch.nn.Linear(64, 64),
                                                       torch.nn.Tanh()) for _ in range(4)])
    x = torch.randn(32, 64, requires_grad=True)
    bills, grads = [], []
    for use in (False, True):
        h = x
        with fgt.profile(blocks) as bill:
            for b in blocks:
                h = checkpoint(b, h, use_reentrant=False) if use else b(h)
            h.sum().backward()
        bills.append(bill)
        grads.append([p.grad.clone() for p in blocks.parameters()])
        blocks.zero_grad()
        x.grad = None
    plain, ckpt = bills
    per_block = 2 * 32 * 64 * 64 + 32 * 64  # the matmul and the bias add; tanh other
    assert ckpt.flops("recompute", kind="tensor") == plain.flops("forward", kind="tensor") \
        == 4 * 2 * 32 * 64 * 64
    assert ckpt.flops("recompute") == plain.flops("forward") - (32 * 64 - 1)  # not the sum
    assert ckpt.flops("recompute", scope="2") == per_block + 32 * 64
    assert ckpt.flops("backward") == plain.flops("backward")
    assert all(torch.equal(a, b) for a, b in zip(*grads, strict=True))
    assert ckpt.saved_bytes_peak < plain.saved_bytes_peak


def test_the_html_report_and_exports_work_on_a_bridge_bill(tmp_path):
    model = _torch_mlp()
    with fgt.profile(model) as bill:
        torch.nn.functional.cross_entropy(model(torch.randn(8, 784)),
                                          torch.randint(0, 10, (8,))).backward()
    path = tmp_path / "bill.html"
    bill.to_html(str(path), "torch MLP")
    page = path.read_text()
    assert "<svg" in page and "Memory over the step" in page and "no memory timeline" not in page
    assert bill.to_dict()["totals"]["forward"]["tensor"] == bill.flops("forward", kind="tensor")
    assert "memory: peak live" in bill.table()


_DDP = '''
import json, os, sys, torch, torch.distributed as dist
import flopgrad.torch as fgt

def main(rank, port, out):
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    model = torch.nn.parallel.DistributedDataParallel(net)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    torch.manual_seed(1 + rank)
    x, y = torch.randn(16, 32), torch.randint(0, 10, (16,))
    with fgt.profile(model) as bill:
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    result = dict(communication=bill.bytes("communication"),
                  parameters=sum(p.numel() * p.element_size() for p in net.parameters()),
                  scopes=sorted(r.key for r in bill.rows("scope")),
                  forward=bill.flops("forward", kind="tensor"),
                  dw=bill.flops("backward", role="weight", kind="tensor"),
                  weight=net[0].weight.detach().sum().item())
    with open(f"{out}.{rank}", "w") as f:
        json.dump(result, f)
    dist.destroy_process_group()

if __name__ == "__main__":
    import socket
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    torch.multiprocessing.spawn(main, args=(port, sys.argv[1]), nprocs=2)
'''


def test_a_ddp_step_on_gloo_bills_the_all_reduce_as_communication(tmp_path):
    import json
    import subprocess
    import sys

    import torch.distributed as dist

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with the gloo backend is not available here")
    script = tmp_path / "ddp.py"
    script.write_text(_DDP)
    out = tmp_path / "rank"
    run = subprocess.run([sys.executable, str(script), str(out)], capture_output=True,
                         text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-2000:]
    ranks = [json.loads((tmp_path / f"rank.{r}").read_text()) for r in range(2)]
    for r in ranks:
        assert r["parameters"] == 4 * (32 * 64 + 64 + 64 * 10 + 10)
        assert r["communication"] == r["parameters"]  # every gradient byte all-reduced
        assert {"0", "2"} <= set(r["scopes"])  # the module's scopes, not "module.0"
        assert r["forward"] == 2 * 16 * (32 * 64 + 64 * 10)
        assert r["dw"] == r["forward"]
    assert ranks[0]["weight"] == ranks[1]["weight"]  # the step was data parallel


def test_two_threads_profile_two_models_at_once():
    """Dispatch modes and saved-tensor hooks are per thread in torch; module and optimizer
    step hooks are global, and the bridge keeps each thread's own."""
    import threading

    def run(width: int, steps: int, barrier=None) -> dict:
        torch.manual_seed(width)
        model = torch.nn.Sequential(torch.nn.Linear(32, width), torch.nn.ReLU(),
                                    torch.nn.Linear(width, 4))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        x = torch.randn(16, 32)
        if barrier is not None:
            barrier.wait()
        with fgt.profile(model) as bill:
            for _ in range(steps):
                model(x).square().mean().backward()
                opt.step()
                opt.zero_grad()
        return {"forward": bill.flops("forward"), "dw": bill.flops("backward", role="weight"),
                "optimizer": bill.flops("optimizer"), "peak": bill.peak_bytes,
                "scopes": sorted(r.key for r in bill.rows("scope"))}

    alone = {w: run(w, 20) for w in (64, 256)}
    results, barrier = {}, threading.Barrier(2)
    threads = [threading.Thread(target=lambda w=w: results.setdefault(w, run(w, 20, barrier)))
               for w in (64, 256)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results == alone


def test_an_error_inside_the_profile_leaves_nothing_behind():
    from torch.nn.modules import module as torch_module

    hooks = (len(torch_module._global_forward_pre_hooks), len(torch_module._global_forward_hooks))
    model = _torch_mlp()
    with pytest.raises(RuntimeError, match="mat1 and mat2"), fgt.profile(model):
        model(torch.randn(4, 5))  # the wrong width
    assert (len(torch_module._global_forward_pre_hooks),
            len(torch_module._global_forward_hooks)) == hooks
    with fgt.profile(model) as bill:
        model(torch.randn(4, 784)).sum().backward()
    assert bill.flops("forward", scope="0", kind="tensor") == 2 * 4 * 784 * 128


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_the_same_bill_on_a_gpu():
    model = _torch_mlp()
    x, y = torch.randn(32, 784), torch.randint(0, 10, (32,))
    with fgt.profile(model) as cpu:
        torch.nn.functional.cross_entropy(model(x), y).backward()
    model = model.cuda()
    with fgt.profile(model) as gpu:
        torch.nn.functional.cross_entropy(model(x.cuda()), y.cuda()).backward()
    for phase, role in (("forward", None), ("backward", "weight"), ("backward", "input")):
        assert gpu.flops(phase, role=role) == cpu.flops(phase, role=role)
    assert gpu.peak_bytes > 0 and gpu.unknown_ops() == []


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_forward_equals_flopgrads_composite(training):
    """torch's fused batch norm is billed as flopgrad's F.batch_norm composes it (the
    running statistics' update too); torch adds one more FLOP, num_batches_tracked += 1."""
    x = np.random.default_rng(0).standard_normal((4, 3, 5, 5)).astype(np.float32)
    native = fg.nn.BatchNorm2d(3)
    native.train(training)
    with fg.profile() as ours:
        native(fg.tensor(x, requires_grad=True)).sum().backward()
    theirs = torch.nn.BatchNorm2d(3)
    theirs.train(training)
    with fgt.profile(theirs) as bill:
        theirs(torch.from_numpy(x).requires_grad_()).sum().backward()
    assert bill.flops("forward") == ours.flops("forward") + (1 if training else 0)
    n, c = x.size, 3
    dx = 7 * n + 2 * c if training else n + c  # from the saved statistics, as the kernel
    assert bill.flops("backward", role="input", op="batch_norm") == dx
    assert bill.flops("backward", role="weight", op="batch_norm") == 3 * n + n - c
    assert bill.unknown_ops() == []


_COMPOSITES = {  # name: (torch call, flopgrad call) on (x, target)
    "mse_loss": (lambda T, x, t: T.mse_loss(x, t), lambda F, x, t: F.mse_loss(x, t)),
    "mse_loss sum": (lambda T, x, t: T.mse_loss(x, t, reduction="sum"),
                     lambda F, x, t: F.mse_loss(x, t, reduction="sum")),
    "smooth_l1_loss": (lambda T, x, t: T.smooth_l1_loss(x, t, beta=0.5),
                       lambda F, x, t: F.smooth_l1_loss(x, t, beta=0.5)),
    "huber_loss": (lambda T, x, t: T.huber_loss(x, t, delta=2.0),
                   lambda F, x, t: F.huber_loss(x, t, delta=2.0)),
    "bce_with_logits": (lambda T, x, t: T.binary_cross_entropy_with_logits(x, t.sigmoid()),
                        lambda F, x, t: F.binary_cross_entropy_with_logits(x, t.sigmoid())),
    "softplus": (lambda T, x, t: T.softplus(x, beta=2.0).sum(),
                 lambda F, x, t: F.softplus(x, beta=2.0).sum()),
    "elu": (lambda T, x, t: T.elu(x, alpha=0.5).sum(), lambda F, x, t: F.elu(x, alpha=0.5).sum()),
    "mish": (lambda T, x, t: T.mish(x).sum(), lambda F, x, t: F.mish(x).sum()),
    "leaky_relu": (lambda T, x, t: T.leaky_relu(x, 0.2).sum(),
                   lambda F, x, t: F.leaky_relu(x, 0.2).sum()),
    "logsigmoid": (lambda T, x, t: T.logsigmoid(x).sum(), lambda F, x, t: F.logsigmoid(x).sum()),
}


@pytest.mark.parametrize("name", sorted(_COMPOSITES))
def test_fused_aten_ops_cost_what_flopgrads_composite_costs(name):
    """mse_loss, softplus, ... are one fused aten op each; the bridge bills each at what
    flopgrad's composite of the same function costs, forward and backward, params and all."""
    theirs, ours = _COMPOSITES[name]
    x = np.random.default_rng(0).standard_normal((6, 7)).astype(np.float32)
    t = np.random.default_rng(1).standard_normal((6, 7)).astype(np.float32)
    with fgt.profile() as bill:
        theirs(torch.nn.functional, torch.from_numpy(x).requires_grad_(),
               torch.from_numpy(t)).backward()
    with fg.profile() as native:
        ours(F, fg.tensor(x, requires_grad=True), fg.tensor(t)).backward()
    assert bill.unknown_ops() == []
    # torch's BCE-with-logits backward is no fused op but its closed form, (sigmoid(x) -
    # t)·g/N, run as plain aten ops and billed as they run: cheaper than differentiating
    # flopgrad's stable composite
    phases = ("forward",) if name == "bce_with_logits" else ("forward", "backward")
    for phase in phases:
        assert bill.flops(phase) == native.flops(phase), phase
        assert bill.transcendentals(phase) == native.transcendentals(phase), phase
    assert 0 < bill.flops("backward") <= native.flops("backward")


def test_without_torch_the_import_says_what_to_install():
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None\n"
            "try:\n    import flopgrad.torch\nexcept ImportError as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert 'pip install "flopgrad[torch]"' in out.stdout, out.stderr


def test_a_meta_bill_says_no_op_ran_on_data():
    with torch.device("meta"):
        layer = torch.nn.Linear(8, 8)
    with fgt.profile(layer) as bill:
        layer(torch.empty(4, 8, device="meta")).sum().backward()
    assert bill.ledger.saw_meta  # the report places ops at their roof, not at their times
    with fgt.profile() as cpu:
        torch.ones(3).exp()
    assert not cpu.ledger.saw_meta
