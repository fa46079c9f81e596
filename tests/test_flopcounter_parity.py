"""flopgrad's tensor FLOPs against PyTorch's FlopCounterMode, forward and backward.

docs/counting.md claims flopgrad's `kind="tensor"` view equals what
`torch.utils.flop_counter.FlopCounterMode` counts (matmul, addmm, bmm, convolution,
attention; bias adds counted by neither). Each test builds the same shapes in flopgrad and
torch (FLOPs do not depend on values), counts torch's forward inside one FlopCounterMode
and its backward inside another, and compares with `bill.flops("forward"|"backward",
kind="tensor")`. Every number is also checked against a closed form written here.

Two places where torch 2.13's counter does not count what runs, each handled by a
documented adjustment rather than a fudge:

- scaled_dot_product_attention on CPU dispatches to
  `aten._scaled_dot_product_flash_attention_for_cpu`, which has no entry in torch's
  flop_registry, so FlopCounterMode counts it as 0 (pytorch/pytorch#195460). The parity
  tests therefore run torch's SDPA under `sdpa_kernel(SDPBackend.MATH)`, which is the same
  two bmms flopgrad runs (4·b·h·s_q·s_k·d forward, 8·... backward). Against torch's fused
  kernel formulas (`sdpa_flop_count`, `sdpa_backward_flop_count`) flopgrad's backward is
  one bmm lower: the fused kernels recompute q·kᵀ in backward, flopgrad saves the
  attention matrix instead (test_sdpa_against_torch_fused_kernel_formulas).
- convolution_backward with groups > 1: torch 2.13's `conv_backward_flop` computes
  grad_weight as conv(xᵀ, grad_outᵀ) with the full C_in and C_out, ignoring the group
  split, so it bills grad_weight at `groups` times 2·N·C_out·(C_in/groups)·kh·kw·Ho·Wo.
  flopgrad bills the work that runs (the forward's count, as for groups=1);
  the adjustment is `(groups - 1) × flopgrad's dW` of that layer
  (test_grouped_conv_weight_gradient, and the hand-built CNN; see pytorch/pytorch#183405).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as TF
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import (
    FlopCounterMode,
    bmm_flop,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)

import flopgrad as fg
import flopgrad.nn.functional as F
from flopgrad import nn
from flopgrad.models import CNN, GPT, MLP, GPTConfig
from flopgrad.nn import Parameter

torch.manual_seed(0)
fg.manual_seed(0)


# ---------------------------------------------------------------- counting helpers

def torch_flops(loss_fn) -> tuple[int, int]:
    """(forward, backward) FLOPs of torch: loss_fn() counted in one mode, backward in another."""
    with FlopCounterMode(display=False) as fwd:
        loss = loss_fn()
    with FlopCounterMode(display=False) as bwd:
        loss.backward()
    return fwd.get_total_flops(), bwd.get_total_flops()


def fg_bill(loss_fn) -> fg.Bill:
    with fg.profile(memory=False) as bill:
        loss_fn().backward()
    return bill


def tensor_flops(bill: fg.Bill) -> tuple[int, int]:
    return bill.flops("forward", kind="tensor"), bill.flops("backward", kind="tensor")


def same_parameter_shapes(fg_model, torch_model) -> None:
    ours = {k: tuple(p.shape) for k, p in fg_model.named_parameters()}
    theirs = {k: tuple(p.shape) for k, p in torch_model.named_parameters()}
    assert ours == theirs


# ---------------------------------------------------------------- (a) MLP

MLP_SIZES = [(13, 8, 5), (20, 16, 12, 3)]


def torch_mlp(sizes) -> tnn.Module:
    layers: list[tnn.Module] = []
    for k, (i, o) in enumerate(zip(sizes, sizes[1:], strict=False)):
        layers.append(tnn.Linear(i, o))
        if k < len(sizes) - 2:
            layers.append(tnn.ReLU())
    return tnn.Sequential(*layers)


@pytest.mark.parametrize("sizes", MLP_SIZES, ids=lambda s: "-".join(map(str, s)))
@pytest.mark.parametrize("batch", [1, 4, 17])
@pytest.mark.parametrize("x_grad", [False, True], ids=["x-no-grad", "x-grad"])
def test_mlp(sizes, batch, x_grad):
    model = MLP(sizes)
    x = fg.randn(batch, sizes[0], requires_grad=x_grad)
    y = fg.randint(0, sizes[-1], (batch,))
    bill = fg_bill(lambda: F.cross_entropy(model(x), y))

    tmodel = torch_mlp(sizes)
    tx = torch.randn(batch, sizes[0], requires_grad=x_grad)
    ty = torch.randint(0, sizes[-1], (batch,))
    assert tensor_flops(bill) == torch_flops(lambda: TF.cross_entropy(tmodel(tx), ty))

    layers = list(zip(sizes, sizes[1:], strict=False))
    per_layer = [2 * batch * i * o for i, o in layers]
    assert bill.flops("forward", kind="tensor") == sum(per_layer)
    # dW of every layer; dX of every layer whose input needs a gradient (the first layer's
    # input is x itself)
    assert bill.flops("backward", role="weight", kind="tensor") == sum(per_layer)
    assert bill.flops("backward", role="input", kind="tensor") == sum(
        f for k, f in enumerate(per_layer) if k > 0 or x_grad)
    for k, f in enumerate(per_layer):
        scope = f"fc{k + 1}"
        assert bill.flops("backward", role="weight", kind="tensor", scope=scope) == f
        dx = f if k > 0 or x_grad else 0
        assert bill.flops("backward", role="input", kind="tensor", scope=scope) == dx


@pytest.mark.parametrize("x_grad", [False, True], ids=["x-no-grad", "x-grad"])
def test_linear_layers_on_token_batches(x_grad):
    # F.linear with nn.Parameter weights on (B, T, D) input, one layer without bias
    B, T, D, H, C = 3, 5, 6, 10, 4
    w1, b1, w2 = Parameter(fg.randn(H, D)), Parameter(fg.randn(H)), Parameter(fg.randn(C, H))
    x = fg.randn(B, T, D, requires_grad=x_grad)
    bill = fg_bill(lambda: F.linear(F.gelu(F.linear(x, w1, b1)), w2).square().mean())

    tw1, tb1, tw2 = (torch.randn(*s, requires_grad=True) for s in ((H, D), (H,), (C, H)))
    tx = torch.randn(B, T, D, requires_grad=x_grad)
    fwd, bwd = torch_flops(lambda: TF.linear(TF.gelu(TF.linear(tx, tw1, tb1)), tw2)
                           .square().mean())
    assert tensor_flops(bill) == (fwd, bwd)
    assert fwd == 2 * B * T * (D * H + H * C)
    assert bill.flops("backward", role="weight", kind="tensor") == fwd
    assert bill.flops("backward", role="input", kind="tensor") == 2 * B * T * (
        H * C + (D * H if x_grad else 0))


# ---------------------------------------------------------------- (b) CNN

def torch_cnn(image_size=8, channels=(16, 32), hidden=64, classes=10, in_channels=1):
    c1, c2 = channels
    return tnn.Sequential(
        tnn.Conv2d(in_channels, c1, 3, padding=1), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Conv2d(c1, c2, 3, padding=1), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Flatten(), tnn.Linear(c2 * (image_size // 4) ** 2, hidden), tnn.ReLU(),
        tnn.Linear(hidden, classes))


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("image_size,channels", [(8, (16, 32)), (12, (4, 6))])
def test_model_zoo_cnn(batch, image_size, channels):
    model = CNN(image_size=image_size, channels=channels)
    x = fg.randn(batch, 1, image_size, image_size)
    y = fg.randint(0, 10, (batch,))
    bill = fg_bill(lambda: F.cross_entropy(model(x), y))

    tmodel = torch_cnn(image_size, channels)
    tx = torch.randn(batch, 1, image_size, image_size)
    ty = torch.randint(0, 10, (batch,))
    fwd, bwd = torch_flops(lambda: TF.cross_entropy(tmodel(tx), ty))
    assert tensor_flops(bill) == (fwd, bwd)

    c1, c2 = channels
    s, q = image_size, image_size // 4
    conv1 = 2 * batch * c1 * s * s * 1 * 9
    conv2 = 2 * batch * c2 * (s // 2) ** 2 * c1 * 9
    fc = 2 * batch * (c2 * q * q * 64 + 64 * 10)
    assert fwd == conv1 + conv2 + fc
    # the image needs no gradient: conv1 computes only its dW
    assert bwd == 2 * fwd - conv1
    assert bill.flops("backward", role="weight", kind="tensor") == fwd
    assert bill.flops("backward", role="input", kind="tensor") == conv2 + fc
    assert bill.flops("backward", role="input", kind="tensor") + bill.flops(
        "backward", role="weight", kind="tensor") == bwd


class HandCNN(nn.Module):
    """Strided, dilated, grouped and non-square convolutions, average pooling, linear head."""

    def __init__(self, groups):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=groups)
        self.c3 = nn.Conv2d(8, 6, (1, 3), padding=(0, 1), bias=False)
        self.head = nn.Linear(6 * 2 * 2, 5)

    def forward(self, x):
        x = F.relu(self.c1(x))
        x = F.relu(self.c2(x))
        x = F.avg_pool2d(self.c3(x), 2)
        return self.head(x.flatten(1))


def torch_hand_cnn(groups):
    return tnn.Sequential(
        tnn.Conv2d(3, 8, 3, stride=2, padding=1), tnn.ReLU(),
        tnn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=groups), tnn.ReLU(),
        tnn.Conv2d(8, 6, (1, 3), padding=(0, 1), bias=False), tnn.AvgPool2d(2),
        tnn.Flatten(), tnn.Linear(24, 5))


@pytest.mark.parametrize("groups", [1, 2, 8])
@pytest.mark.parametrize("x_grad", [False, True], ids=["x-no-grad", "x-grad"])
def test_hand_built_cnn(groups, x_grad):
    N = 2
    model = HandCNN(groups)
    x = fg.randn(N, 3, 8, 8, requires_grad=x_grad)
    bill = fg_bill(lambda: model(x).square().sum())

    tmodel = torch_hand_cnn(groups)
    tx = torch.randn(N, 3, 8, 8, requires_grad=x_grad)
    fwd, bwd = torch_flops(lambda: tmodel(tx).square().sum())

    # 8x8, stride 2, pad 1 -> 4x4; dilation 2, pad 2 keeps 4x4; (1, 3) pad (0, 1) keeps 4x4
    c1 = 2 * N * 8 * 16 * 3 * 9
    c2 = 2 * N * 8 * 16 * (8 // groups) * 9
    c3 = 2 * N * 6 * 16 * 8 * 3
    head = 2 * N * 24 * 5
    assert bill.flops("forward", kind="tensor") == fwd == c1 + c2 + c3 + head
    assert bill.flops("backward", kind="tensor") == 2 * (c1 + c2 + c3 + head) - (
        0 if x_grad else c1)
    # every layer's dW is its forward count, grouped or not
    for scope, f in (("c1", c1), ("c2", c2), ("c3", c3), ("head", head)):
        assert bill.flops("backward", role="weight", kind="tensor", scope=scope) == f
    # torch bills c2's grad_weight `groups` times over (see the module docstring)
    c2_dw = bill.flops("backward", role="weight", kind="tensor", scope="c2")
    assert bill.flops("backward", kind="tensor") + (groups - 1) * c2_dw == bwd


@pytest.mark.parametrize("groups", [2, 3, 6])
def test_grouped_conv_weight_gradient(groups):
    """The one conv count where torch 2.13 and flopgrad differ: grad_weight with groups."""
    N, C, O, k, H = 2, 6, 12, 3, 7
    x = fg.randn(N, C, H, H, requires_grad=True)
    w = Parameter(fg.randn(O, C // groups, k, k))
    bill = fg_bill(lambda: F.conv2d(x, w, padding=1, groups=groups).sum())

    tx = torch.randn(N, C, H, H, requires_grad=True)
    tw = torch.randn(O, C // groups, k, k, requires_grad=True)
    fwd, bwd = torch_flops(lambda: TF.conv2d(tx, tw, padding=1, groups=groups).sum())

    true = 2 * N * O * H * H * (C // groups) * k * k
    assert bill.flops("forward", kind="tensor") == fwd == true
    assert bill.flops("backward", role="input", kind="tensor") == true
    assert bill.flops("backward", role="weight", kind="tensor") == true
    # torch: grad_input right (true), grad_weight counted with full C_in x C_out
    assert bwd == true + groups * true


# ---------------------------------------------------------------- (c) attention

class AttentionBlock(nn.Module):
    """q, k, v projections, causal SDPA, an explicit batched-matmul attention, output proj."""

    def __init__(self, d, heads):
        super().__init__()
        self.h = heads
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d, bias=False)
        self.o = nn.Linear(d, d)

    def forward(self, x):
        b, t, d = x.shape

        def heads(z):
            return z.reshape(b, t, self.h, d // self.h).transpose(1, 2)

        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        fused = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        att = (q @ k.transpose(-2, -1) * (1.0 / math.sqrt(d // self.h))).softmax(-1)
        explicit = att @ v
        y = (fused + explicit).transpose(1, 2).reshape(b, t, d)
        return self.o(y)


class TorchAttentionBlock(tnn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.h = heads
        self.q, self.k, self.v = tnn.Linear(d, d), tnn.Linear(d, d), tnn.Linear(d, d, bias=False)
        self.o = tnn.Linear(d, d)

    def forward(self, x):
        b, t, d = x.shape

        def heads(z):
            return z.reshape(b, t, self.h, d // self.h).transpose(1, 2)

        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        fused = TF.scaled_dot_product_attention(q, k, v, is_causal=True)
        att = (q @ k.transpose(-2, -1) * (1.0 / math.sqrt(d // self.h))).softmax(-1)
        explicit = att @ v
        y = (fused + explicit).transpose(1, 2).reshape(b, t, d)
        return self.o(y)


@pytest.mark.parametrize("b,t,d,h", [(1, 4, 8, 2), (2, 7, 12, 3)])
@pytest.mark.parametrize("x_grad", [False, True], ids=["x-no-grad", "x-grad"])
def test_attention_block(b, t, d, h, x_grad):
    block = AttentionBlock(d, h)
    x = fg.randn(b, t, d, requires_grad=x_grad)
    bill = fg_bill(lambda: block(x).square().sum())

    tblock = TorchAttentionBlock(d, h)
    same_parameter_shapes(block, tblock)
    tx = torch.randn(b, t, d, requires_grad=x_grad)
    with sdpa_kernel(SDPBackend.MATH):  # the CPU flash kernel is counted as 0 by torch 2.13
        fwd, bwd = torch_flops(lambda: tblock(tx).square().sum())
    assert tensor_flops(bill) == (fwd, bwd)

    proj = 2 * b * t * d * d
    attn = 4 * b * h * t * t * (d // h)  # q kᵀ and att v, per attention path
    assert fwd == 4 * proj + 2 * attn
    # backward: dW of 4 projections; dX of o, and of q/k/v only when x needs it; both matmuls
    # of both attention paths get both gradients (q, k, v all depend on weights)
    assert bwd == 4 * proj + (4 * proj if x_grad else proj) + 2 * 2 * attn
    assert bill.flops("backward", role="weight", kind="tensor") == 4 * proj


@pytest.mark.parametrize("b,h,sq,sk,dq,dv", [(2, 3, 5, 5, 4, 4), (1, 2, 3, 6, 4, 5)])
def test_sdpa_against_torch_fused_kernel_formulas(b, h, sq, sk, dq, dv):
    q = fg.randn(b, h, sq, dq, requires_grad=True)
    k = fg.randn(b, h, sk, dq, requires_grad=True)
    v = fg.randn(b, h, sk, dv, requires_grad=True)
    bill = fg_bill(lambda: F.scaled_dot_product_attention(q, k, v).sum())
    qs, ks, vs = (b, h, sq, dq), (b, h, sk, dq), (b, h, sk, dv)
    assert bill.flops("forward", kind="tensor") == sdpa_flop_count(qs, ks, vs)
    # the fused kernels recompute q kᵀ in backward; flopgrad saved the attention matrix
    recompute = bmm_flop((b * h, sq, dq), (b * h, dq, sk))
    assert bill.flops("backward", kind="tensor") == (
        sdpa_backward_flop_count((b, h, sq, dv), qs, ks, vs) - recompute)

    # and against FlopCounterMode running torch's math kernel on the same shapes
    tq, tk, tv = (torch.randn(*s, requires_grad=True) for s in (qs, ks, vs))
    with sdpa_kernel(SDPBackend.MATH):
        assert tensor_flops(bill) == torch_flops(
            lambda: TF.scaled_dot_product_attention(tq, tk, tv).sum())


# ---------------------------------------------------------------- (c) GPT

class TorchBlock(tnn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        d, bias = cfg.d_model, cfg.bias
        self.n_head = cfg.n_head
        self.ln_1 = tnn.LayerNorm(d, bias=bias)
        self.attn = tnn.Module()
        self.attn.c_attn = tnn.Linear(d, 3 * d, bias=bias)
        self.attn.c_proj = tnn.Linear(d, d, bias=bias)
        self.ln_2 = tnn.LayerNorm(d, bias=bias)
        self.mlp = tnn.Module()
        self.mlp.c_fc = tnn.Linear(d, 4 * d, bias=bias)
        self.mlp.c_proj = tnn.Linear(4 * d, d, bias=bias)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.attn.c_attn(self.ln_1(x)).split(d, dim=2)
        q, k, v = (z.reshape(b, t, self.n_head, d // self.n_head).transpose(1, 2)
                   for z in (q, k, v))
        y = TF.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.attn.c_proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp.c_proj(TF.gelu(self.mlp.c_fc(self.ln_2(x)), approximate="tanh"))


class TorchGPT(tnn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.wte = tnn.Embedding(cfg.vocab, cfg.d_model)
        self.wpe = tnn.Embedding(cfg.ctx, cfg.d_model)
        self.blocks = tnn.ModuleList([TorchBlock(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = tnn.LayerNorm(cfg.d_model, bias=cfg.bias)
        if not cfg.tied_embeddings:
            self.lm_head = tnn.Linear(cfg.d_model, cfg.vocab, bias=False)

    def forward(self, idx, targets):
        b, t = idx.shape
        x = self.wte(idx) + self.wpe(torch.arange(t))
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        head = self.wte.weight if self.cfg.tied_embeddings else self.lm_head.weight
        logits = x @ head.T
        return TF.cross_entropy(logits.reshape(b * t, -1), targets.reshape(-1))


@pytest.mark.parametrize("cfg,b,t", [
    (GPTConfig(n_layer=2, n_head=2, d_model=16, ctx=8, vocab=40), 2, 8),
    (GPTConfig(n_layer=1, n_head=4, d_model=8, ctx=16, vocab=11, bias=False,
               tied_embeddings=False), 3, 5),
], ids=["tied-bias", "untied-nobias-short"])
def test_gpt(cfg, b, t):
    model = GPT(cfg)
    idx = fg.randint(0, cfg.vocab, (b, t))
    targets = fg.randint(0, cfg.vocab, (b, t))
    bill = fg_bill(lambda: model(idx, targets)[1])

    tmodel = TorchGPT(cfg)
    same_parameter_shapes(model, tmodel)
    tidx = torch.randint(0, cfg.vocab, (b, t))
    ttargets = torch.randint(0, cfg.vocab, (b, t))
    with sdpa_kernel(SDPBackend.MATH):
        fwd, bwd = torch_flops(lambda: tmodel(tidx, ttargets))
    assert tensor_flops(bill) == (fwd, bwd)

    d, tokens = cfg.d_model, b * t
    per_layer = 2 * tokens * d * (3 * d + d + 4 * d + 4 * d) + 4 * b * t * t * d
    assert fwd == cfg.n_layer * per_layer + 2 * tokens * d * cfg.vocab
    # the residual stream starts at the (trainable) embeddings: every matmul computes both
    # gradients, so backward is exactly twice forward here
    assert bwd == 2 * fwd


@pytest.mark.parametrize("causal", [False, True])
def test_multihead_attention_module(causal):
    b, t, e, h = 2, 6, 12, 3
    mha = nn.MultiheadAttention(e, h)
    x = fg.randn(b, t, e, requires_grad=True)
    bill = fg_bill(lambda: mha(x, x, x, is_causal=causal)[0].square().sum())

    tmha = tnn.MultiheadAttention(e, h, batch_first=True)
    same_parameter_shapes(mha, tmha)
    tx = torch.randn(b, t, e, requires_grad=True)
    mask = tnn.Transformer.generate_square_subsequent_mask(t) if causal else None
    with sdpa_kernel(SDPBackend.MATH):
        fwd, bwd = torch_flops(lambda: tmha(tx, tx, tx, need_weights=False, attn_mask=mask,
                                            is_causal=causal)[0].square().sum())
    assert tensor_flops(bill) == (fwd, bwd)
    assert fwd == 2 * b * t * e * 4 * e + 4 * b * t * t * e
    assert bwd == 2 * fwd
