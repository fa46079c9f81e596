"""PyTorch twins of flopgrad.models' MLP, CNN and GPT: the same layers under the same
module paths, with the weights copied, so a native bill and a bridge bill of one model
can be set side by side (tests/test_torch_parity.py does, field by field).

`twin(model)` builds the twin of a flopgrad model. GPT's tied unembedding and its loss get
modules of their own ("lm_head", "loss", without parameters) because the native GPT bills
them under those scopes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from flopgrad import models

_ACTIVATIONS = {"ReLU": nn.ReLU, "GELU": nn.GELU, "Tanh": nn.Tanh, "SiLU": nn.SiLU,
                "Sigmoid": nn.Sigmoid}


class MLP(nn.Module):
    """flopgrad.models.MLP's twin: its children (fc1, act1, fc2, ...) applied in order."""

    def __init__(self, sizes, activation: str = "ReLU"):
        super().__init__()
        for k, (n_in, n_out) in enumerate(zip(sizes, sizes[1:], strict=False), 1):
            self.add_module(f"fc{k}", nn.Linear(n_in, n_out))
            if k < len(sizes) - 1:
                self.add_module(f"act{k}", _ACTIVATIONS[activation]())

    def forward(self, x):
        for layer in self.children():
            x = layer(x)
        return x


class CNN(nn.Module):
    """flopgrad.models.CNN's twin: two conv + ReLU + max-pool stages, two linear layers."""

    def __init__(self, in_channels: int, c1: int, c2: int, flat: int, hidden: int,
                 classes: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, c1, 3, padding=1)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(flat, hidden)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x):
        x = self.pool1(torch.relu(self.conv1(x)))
        x = self.pool2(torch.relu(self.conv2(x)))
        return self.fc2(torch.relu(self.fc1(self.flatten(x))))


class _Attention(nn.Module):
    def __init__(self, d: int, n_head: int, bias: bool):
        super().__init__()
        self.n_head = n_head
        self.c_attn = nn.Linear(d, 3 * d, bias=bias)
        self.c_proj = nn.Linear(d, d, bias=bias)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.c_attn(x).split(d, dim=2)
        q, k, v = (z.reshape(b, t, self.n_head, d // self.n_head).transpose(1, 2)
                   for z in (q, k, v))
        y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).reshape(b, t, d))


class _MLP(nn.Module):
    def __init__(self, d: int, bias: bool):
        super().__init__()
        self.c_fc = nn.Linear(d, 4 * d, bias=bias)
        self.c_proj = nn.Linear(4 * d, d, bias=bias)

    def forward(self, x):
        return self.c_proj(nn.functional.gelu(self.c_fc(x), approximate="tanh"))


class _Block(nn.Module):
    def __init__(self, d: int, n_head: int, bias: bool):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d, bias=bias)
        self.attn = _Attention(d, n_head, bias)
        self.ln_2 = nn.LayerNorm(d, bias=bias)
        self.mlp = _MLP(d, bias)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class _Unembedding(nn.Module):
    def forward(self, x, weight):
        return x @ weight.T


class _Loss(nn.Module):
    def forward(self, logits, targets):
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                           targets.reshape(-1))


class GPT(nn.Module):
    """flopgrad.models.GPT's twin (pre-LayerNorm blocks, causal SDPA, GELU(tanh) MLP);
    forward(idx, targets=None) returns logits, or (logits, loss) with targets."""

    def __init__(self, cfg: models.GPTConfig):
        super().__init__()
        if cfg.dropout or cfg.tp != 1 or cfg.checkpoint != "none":
            raise ValueError("flopgrad.torch.twins.GPT: a twin needs dropout 0, tp 1 and "
                             f"checkpoint 'none', got {cfg.dropout}, {cfg.tp}, "
                             f"{cfg.checkpoint!r}")
        self.wte = nn.Embedding(cfg.vocab, cfg.d_model)
        self.wpe = nn.Embedding(cfg.ctx, cfg.d_model)
        self.blocks = nn.ModuleList([_Block(cfg.d_model, cfg.n_head, cfg.bias)
                                     for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        if cfg.tied_embeddings:
            self.lm_head = _Unembedding()
        else:
            self.lm_head = nn.Linear(cfg.d_model, cfg.vocab, bias=False)
        self.loss = _Loss()
        self.tied = cfg.tied_embeddings

    def forward(self, idx, targets=None):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        logits = self.lm_head(x, self.wte.weight) if self.tied else self.lm_head(x)
        if targets is None:
            return logits
        return logits, self.loss(logits, targets)


def twin(model) -> nn.Module:
    """The torch twin of a flopgrad.models MLP, CNN or GPT, with its weights copied.

    >>> import flopgrad as fg, torch
    >>> fg.manual_seed(0)
    >>> native = fg.models.MLP([4, 3, 2])
    >>> twin_ = twin(native)
    >>> x = fg.randn(5, 4)
    >>> theirs = twin_(torch.from_numpy(x.numpy())).detach().numpy()
    >>> bool(abs(theirs - native(x).detach().numpy()).max() < 1e-6)
    True
    """
    if isinstance(model, models.MLP):
        acts = {type(m).__name__ for name, m in model.named_children() if name.startswith("act")}
        made = MLP(model.sizes, acts.pop() if acts else "ReLU")
    elif isinstance(model, models.CNN):
        made = CNN(model.conv1.weight.shape[1], model.conv1.weight.shape[0],
                   model.conv2.weight.shape[0], model.fc1.weight.shape[1],
                   model.fc1.weight.shape[0], model.fc2.weight.shape[0])
    elif isinstance(model, models.GPT):
        made = GPT(model.cfg)
    else:
        raise TypeError(f"flopgrad.torch.twin: a flopgrad.models MLP, CNN or GPT, got "
                        f"{type(model).__name__}")
    theirs = dict(made.named_parameters())
    ours = {name: p.detach().numpy() for name, p in model.named_parameters()}
    if set(theirs) != set(ours):
        raise ValueError(f"flopgrad.torch.twin: parameters differ: "
                         f"{sorted(set(theirs) ^ set(ours))}")
    with torch.no_grad():
        for name, p in theirs.items():
            p.copy_(torch.from_numpy(np.ascontiguousarray(ours[name], dtype=np.float32)))
    return made
