"""Training: modules, optimizers, data, weights on disk; parity with PyTorch."""

import math

import numpy as np
import pytest
import torch

import flopgrad as fg
import flopgrad.nn.functional as F
from flopgrad import nn, optim
from flopgrad.models import CNN, GPT, MLP, GPTConfig


def _torch_mlp(model: MLP) -> torch.nn.Sequential:
    layers = []
    for k in range(model.n_layers):
        fc = getattr(model, f"fc{k + 1}")
        lin = torch.nn.Linear(fc.in_features, fc.out_features, dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(fc.weight._data.astype(np.float64)))
            lin.bias.copy_(torch.from_numpy(fc.bias._data.astype(np.float64)))
        layers.append(lin)
        if k < model.n_layers - 1:
            layers.append(torch.nn.Tanh())
    return torch.nn.Sequential(*layers)


def _batches(n_steps, batch, d_in, classes, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((batch, d_in)), rng.integers(0, classes, batch))
            for _ in range(n_steps)]


def test_sgd_momentum_trajectory_matches_pytorch():
    fg.manual_seed(0)
    model = MLP([6, 16, 8, 3], activation="tanh").double()
    tmodel = _torch_mlp(model)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, dampening=0.1, weight_decay=1e-3)
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.1, momentum=0.9, dampening=0.1,
                           weight_decay=1e-3)
    for x, y in _batches(20, 5, 6, 3):
        opt.zero_grad()
        loss = F.cross_entropy(model(fg.tensor(x)), fg.tensor(y))
        loss.backward()
        opt.step()
        topt.zero_grad()
        tloss = torch.nn.functional.cross_entropy(tmodel(torch.from_numpy(x)),
                                                  torch.from_numpy(y))
        tloss.backward()
        topt.step()
        assert loss.item() == pytest.approx(tloss.item(), rel=1e-9)


def test_nesterov_and_adam_trajectories_match_pytorch():
    for make, tmake in [
        (lambda p: optim.SGD(p, lr=0.05, momentum=0.8, nesterov=True),
         lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8, nesterov=True)),
        (lambda p: optim.Adam(p, lr=0.01, weight_decay=0.01),
         lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.01)),
    ]:
        fg.manual_seed(1)
        model = MLP([4, 8, 2], activation="tanh").double()
        tmodel = _torch_mlp(model)
        opt, topt = make(model.parameters()), tmake(tmodel.parameters())
        for x, y in _batches(20, 4, 4, 2, seed=3):
            opt.zero_grad()
            loss = F.cross_entropy(model(fg.tensor(x)), fg.tensor(y))
            loss.backward()
            opt.step()
            topt.zero_grad()
            tloss = torch.nn.functional.cross_entropy(tmodel(torch.from_numpy(x)),
                                                      torch.from_numpy(y))
            tloss.backward()
            topt.step()
            assert loss.item() == pytest.approx(tloss.item(), rel=1e-9)


def test_adamw_clip_cosine_trajectory_matches_pytorch():
    fg.manual_seed(2)
    model = MLP([6, 16, 8, 3], activation="tanh").double()
    tmodel = _torch_mlp(model)
    opt = optim.AdamW(model.parameters(), lr=0.02, weight_decay=0.1)
    topt = torch.optim.AdamW(tmodel.parameters(), lr=0.02, weight_decay=0.1)
    sched = optim.CosineWarmupLR(opt, warmup_steps=5, total_steps=20)
    tsched = torch.optim.lr_scheduler.LambdaLR(
        topt, lambda s: optim.cosine_warmup(s, 5, 20))
    for x, y in _batches(20, 5, 6, 3, seed=5):
        opt.zero_grad()
        loss = F.cross_entropy(model(fg.tensor(x)), fg.tensor(y))
        loss.backward()
        norm = nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        opt.step()
        sched.step()
        topt.zero_grad()
        tloss = torch.nn.functional.cross_entropy(tmodel(torch.from_numpy(x)),
                                                  torch.from_numpy(y))
        tloss.backward()
        tnorm = torch.nn.utils.clip_grad_norm_(tmodel.parameters(), 0.5)
        topt.step()
        tsched.step()
        assert loss.item() == pytest.approx(tloss.item(), rel=1e-9)
        assert float(norm) == pytest.approx(float(tnorm), rel=1e-9)
        assert sched.get_last_lr()[0] == pytest.approx(tsched.get_last_lr()[0], rel=1e-12)


def test_optimizer_step_is_billed_in_optimizer_phase():
    fg.manual_seed(0)
    model = MLP([8, 4])
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = fg.randn(3, 8), fg.tensor([0, 1, 2])
    for _ in range(2):  # the second step has a momentum buffer
        with fg.profile() as bill:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    n = model.num_parameters()
    # buf.mul_(m).add_(g): 2n (no multiply by 1 - dampening = 1); p.sub_(g, alpha=lr): 2n
    assert bill.flops("optimizer") == 4 * n
    assert bill.flops("optimizer", scope="optimizer") == 4 * n


def test_gradient_accumulation_over_micro_batches_equals_one_big_batch():
    fg.manual_seed(0)
    model = MLP([5, 7, 3]).double()
    x, y = fg.randn(8, 5, dtype=fg.float64), fg.randint(0, 3, (8,))
    F.cross_entropy(model(x), y).backward()
    full = [p.grad.numpy().copy() for p in model.parameters()]
    model.zero_grad()
    for k in range(4):  # 4 micro-batches of 2, losses scaled by 1/4
        (F.cross_entropy(model(x[2 * k: 2 * k + 2]), y[2 * k: 2 * k + 2]) / 4).backward()
    for g, p in zip(full, model.parameters(), strict=True):
        np.testing.assert_allclose(p.grad.numpy(), g, rtol=1e-12, atol=1e-15)


def test_mlp_reaches_96_percent_on_digits():
    fg.manual_seed(0)
    model = MLP([64, 128, 64, 10])
    loader = fg.data.DataLoader(fg.data.digits(), batch_size=32, shuffle=True, seed=0)
    opt = optim.Adam(model.parameters(), lr=2e-3)
    fg.training.fit(model, loader, opt, epochs=15, progress=False)
    acc = fg.training.evaluate(model, fg.data.DataLoader(fg.data.digits(train=False), 256))
    assert acc >= 0.96


def test_cnn_reaches_97_percent_on_digits():
    fg.manual_seed(0)
    model = CNN(image_size=8)
    train = fg.data.digits(image=True)
    loader = fg.data.DataLoader(train, batch_size=32, shuffle=True, seed=0)
    opt = optim.Adam(model.parameters(), lr=2e-3)
    fg.training.fit(model, loader, opt, epochs=15, progress=False)
    acc = fg.training.evaluate(
        model, fg.data.DataLoader(fg.data.digits(train=False, image=True), 256))
    assert acc >= 0.97


def test_tiny_gpt_overfits_a_short_text():
    fg.manual_seed(0)
    text = "flopgrad counts every FLOP of backprop. " * 3
    ds = fg.data.TextDataset(text, ctx=16)
    cfg = GPTConfig(n_layer=2, n_head=2, d_model=48, ctx=16, vocab=len(ds.vocab))
    model = GPT(cfg)
    opt = optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    x, y = (fg.tensor(a) for a in ds[np.arange(0, len(ds), 3)])
    for _ in range(150):
        opt.zero_grad()
        _, loss = model(x, y)
        loss.backward()
        opt.step()
    assert loss.item() < 0.1


def test_state_dict_round_trip_through_safetensors(tmp_path):
    fg.manual_seed(0)
    for model in (MLP([4, 6, 2]), CNN(8), GPT(GPTConfig(1, 2, 16, 8, 11))):
        opt = optim.AdamW(model.parameters(), lr=1e-3)
        x = (fg.randn(3, 4) if isinstance(model, MLP) else fg.randn(3, 1, 8, 8)
             if isinstance(model, CNN) else fg.randint(0, 11, (2, 8)))
        out = model(x)
        out.sum().backward()
        opt.step()
        path = tmp_path / f"{type(model).__name__}.safetensors"
        fg.save({"model": model.state_dict(), "opt": opt.state_dict()}, path)
        fresh = type(model)(*( [[4, 6, 2]] if isinstance(model, MLP) else
                              [8] if isinstance(model, CNN) else [GPTConfig(1, 2, 16, 8, 11)]))
        fresh_opt = optim.AdamW(fresh.parameters(), lr=5.0)
        loaded = fg.load(path)
        fresh.load_state_dict(loaded["model"])
        fresh_opt.load_state_dict(loaded["opt"])
        for (k, a), (k2, b) in zip(model.state_dict().items(), fresh.state_dict().items(),
                                   strict=True):
            assert k == k2
            np.testing.assert_array_equal(a.numpy() if not a.requires_grad else
                                          a.detach().numpy(), b.detach().numpy())
        assert fresh_opt.param_groups[0]["lr"] == 1e-3
        st = fresh_opt.state_dict()["state"][0]
        assert st["step"] == 1
        np.testing.assert_array_equal(st["exp_avg"].numpy(),
                                      opt.state_dict()["state"][0]["exp_avg"].numpy())


def test_load_state_dict_errors_name_key_and_shapes(tmp_path):
    model = MLP([4, 6, 2])
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    with pytest.raises(KeyError, match="missing keys.*fc2.bias"):
        model.load_state_dict({k: v for k, v in sd.items() if k != "fc2.bias"})
    with pytest.raises(KeyError, match="unexpected keys.*extra"):
        model.load_state_dict({**sd, "extra": fg.ones(1)})
    bad = dict(sd)
    bad["fc1.weight"] = fg.ones(5, 4)
    with pytest.raises(ValueError, match=r"fc1.weight has shape \(5, 4\).*\(6, 4\)"):
        model.load_state_dict(bad)
    fg.save(bad, tmp_path / "bad.safetensors")
    with pytest.raises(ValueError, match="fc1.weight"):
        model.load_state_dict(fg.load(tmp_path / "bad.safetensors"))


def test_save_is_atomic_and_load_rejects_garbage(tmp_path):
    path = tmp_path / "w.safetensors"
    fg.save({"a": fg.ones(3)}, path)
    before = path.read_bytes()
    with pytest.raises(TypeError, match="cannot store"):
        fg.save({"a": fg.ones(3), "b": object()}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="not a valid safetensors"):
        fg.load(tmp_path / "junk.safetensors")
    with pytest.raises(FileNotFoundError):
        fg.load(tmp_path / "missing.safetensors")


@pytest.mark.parametrize("name,expected", [
    ("gpt2", 124_439_808), ("gpt2-medium", 354_823_168), ("gpt2-large", 774_030_080),
    ("gpt2-xl", 1_557_611_200),
])
def test_gpt_preset_parameter_counts(name, expected):
    assert GPTConfig.preset(name).num_params() == expected


def test_gpt_parameter_count_from_shapes_matches_a_built_model():
    for cfg in (GPTConfig(2, 2, 32, 16, 50), GPTConfig(3, 4, 64, 8, 30, bias=False,
                                                       tied_embeddings=False)):
        assert GPT(cfg).num_parameters() == cfg.num_params()
    assert GPTConfig.preset("gpt2", bias=False).num_params() == 124_337_664


def test_module_api_basics():
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 2))
    names = [n for n, _ in net.named_parameters()]
    assert names == ["0.weight", "0.bias", "3.weight", "3.bias"]
    assert net.num_parameters() == 4 * 8 + 8 + 8 * 2 + 2
    assert "params" in repr(net)
    net.eval()
    assert not net[2].training
    x = fg.randn(5, 4)
    np.testing.assert_array_equal(net(x).numpy() if not net(x).requires_grad else
                                  net(x).detach().numpy(), net(x).detach().numpy())
    net.train()
    with fg.profile() as bill:
        net(x)
    assert {r.key for r in bill.rows("scope")} >= {"0", "1", "2", "3"}
    bn = nn.BatchNorm2d(3)
    assert [n for n, _ in bn.named_buffers()] == ["running_mean", "running_var"]
    with pytest.raises(AttributeError, match="super"):
        class Bad(nn.Module):
            def __init__(self):
                self.w = nn.Parameter(fg.ones(1))
        Bad()


def test_init_functions_follow_pytorch_formulas():
    fg.manual_seed(0)
    w = nn.Parameter(fg.empty(200, 300))
    nn.init.kaiming_uniform_(w, a=math.sqrt(5))
    bound = 1 / math.sqrt(300)
    assert float(w.detach().abs().max()) <= bound
    assert float(w.detach().abs().max()) > 0.95 * bound
    nn.init.trunc_normal_(w, std=0.02, a=-0.04, b=0.04)
    assert float(w.detach().abs().max()) <= 0.04
    assert float(w.detach().std()) == pytest.approx(0.02 * 0.88, rel=0.05)
    fg.manual_seed(3)
    a = nn.init.normal_(nn.Parameter(fg.empty(5)))
    fg.manual_seed(3)
    b = nn.init.normal_(nn.Parameter(fg.empty(5)))
    np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())


def test_data_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        fg.data.mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fg.data.text(tmp_path / "none.txt")
    ds = fg.data.text(ctx=32, max_chars=5000)
    x, y = ds[np.array([0, 1])]
    assert x.shape == (2, 32) and (x[:, 1:] == y[:, :-1]).all()
    assert ds.decode(ds.encode("def ")) == "def "


def test_mnist_reader_on_a_small_idx_file(tmp_path):
    import gzip
    import struct
    imgs = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.arange(5, dtype=np.uint8)
    with gzip.open(tmp_path / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">HBBIII", 0, 8, 3, 5, 28, 28) + imgs.tobytes())
    with open(tmp_path / "train-labels-idx1-ubyte", "wb") as f:
        f.write(struct.pack(">HBBI", 0, 8, 1, 5) + labels.tobytes())
    ds = fg.data.mnist(tmp_path)
    x, y = ds[np.arange(5)]
    assert x.shape == (5, 1, 28, 28) and x.dtype == np.float32
    np.testing.assert_allclose(x[2, 0], imgs[2] / 255.0, rtol=1e-6)
    assert y.tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("make", [lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
                                  lambda ps: optim.AdamW(ps, lr=0.1)], ids=["sgd", "adamw"])
def test_optimizers_update_parameters_in_place_without_new_memory(make):
    fg.manual_seed(0)
    model = MLP([8, 16, 4])
    opt = make(model.parameters())
    x, y = fg.randn(5, 8), fg.tensor([0, 1, 2, 3, 0])
    arrays = [p._data for p in model.parameters()]
    before = [a.copy() for a in arrays]
    for _ in range(2):  # the second step updates the optimizer state in place too
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        with fg.profile() as bill:
            opt.step()
    assert all(p._data is a for p, a in zip(model.parameters(), arrays, strict=True))
    assert all(not np.array_equal(a, b) for a, b in zip(arrays, before, strict=True))
    # only temporaries, one parameter at a time (AdamW holds at most 3 at once, SGD none)
    memory = bill.memory_breakdown()
    assert memory["peak_by_category"]["activations"] <= 3 * max(a.nbytes for a in arrays)
    # what the step touched is billed in its own category: parameters, gradients, state
    n_bytes = sum(a.nbytes for a in arrays)
    assert memory["live"]["parameters"] == memory["live"]["gradients"] == n_bytes
    tensors_per_param = sum(isinstance(v, fg.Tensor) for v in next(iter(opt.state.values()))
                            .values())  # SGD momentum 1, AdamW 2
    assert memory["live"]["optimizer_state"] == n_bytes * tensors_per_param


@pytest.mark.parametrize("make, per_element", [
    (lambda ps: optim.SGD(ps, lr=0.1), 2),
    (lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9), 4),
    (lambda ps: optim.SGD(ps, lr=0.1, weight_decay=0.1), 4),
    (lambda ps: optim.Adam(ps), 13),
    (lambda ps: optim.AdamW(ps), 14),
], ids=["sgd", "momentum", "sgd-decay", "adam", "adamw"])
def test_optimizer_flops_per_element_are_the_documented_ones(make, per_element):
    w = nn.Parameter(fg.randn(50))
    opt = make([w])
    for _ in range(2):  # the second step, with state
        opt.zero_grad()
        (w * w).sum().backward()
        with fg.profile() as bill:
            opt.step()
    assert bill.flops("optimizer") == per_element * 50
