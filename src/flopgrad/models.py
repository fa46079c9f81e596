"""The model zoo: MLP, a LeNet-like CNN, and GPT (GPT-2 architecture, nanoGPT's layout).

>>> import flopgrad as fg
>>> fg.models.GPTConfig.preset("gpt2").num_params()
124439808
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from functools import partial

from flopgrad import nn
from flopgrad.autograd.checkpoint import checkpoint
from flopgrad.creation import arange
from flopgrad.ledger import scope
from flopgrad.nn import functional as F
from flopgrad.nn import init

__all__ = ["MLP", "CNN", "GPT", "GPTConfig", "PRESETS"]

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU,
                "sigmoid": nn.Sigmoid}


class MLP(nn.Module):
    """Fully connected layers `sizes[0] -> sizes[1] -> ... -> sizes[-1]` with an activation
    between them (none after the last). Layers are named fc1, fc2, ... in the bill.

    >>> import flopgrad as fg
    >>> fg.manual_seed(0)
    >>> mlp = fg.models.MLP([64, 32, 10])
    >>> mlp(fg.ones(5, 64)).shape, [name for name, _ in mlp.named_children()]
    ((5, 10), ['fc1', 'act1', 'fc2'])
    """

    def __init__(self, sizes, activation: str = "relu", dtype=None):
        super().__init__()
        sizes = list(sizes)
        if len(sizes) < 2 or any(int(s) <= 0 for s in sizes):
            raise ValueError(f"MLP: sizes must be at least two positive ints, got {sizes}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"MLP: activation must be one of {sorted(_ACTIVATIONS)}, "
                             f"got {activation!r}")
        self.sizes = sizes
        self.n_layers = len(sizes) - 1
        for k in range(self.n_layers):
            setattr(self, f"fc{k + 1}", nn.Linear(sizes[k], sizes[k + 1], dtype=dtype))
            if k < self.n_layers - 1:
                setattr(self, f"act{k + 1}", _ACTIVATIONS[activation]())

    def forward(self, x):
        """Logits of x, shape (..., sizes[-1])."""
        for k in range(self.n_layers):
            x = getattr(self, f"fc{k + 1}")(x)
            if k < self.n_layers - 1:
                x = getattr(self, f"act{k + 1}")(x)
        return x


class CNN(nn.Module):
    """LeNet-like: two conv(3x3, padding 1) + ReLU + 2x2 max-pool stages, then two linear
    layers. For 8x8 digits (image_size=8) or 28x28 MNIST (image_size=28).

    >>> import flopgrad as fg
    >>> fg.manual_seed(0)
    >>> fg.models.CNN(image_size=8)(fg.ones(2, 1, 8, 8)).shape
    (2, 10)
    """

    def __init__(self, image_size: int = 8, channels=(16, 32), hidden: int = 64,
                 classes: int = 10, in_channels: int = 1):
        super().__init__()
        if image_size % 4:
            raise ValueError(f"CNN: image_size must be divisible by 4, got {image_size}")
        c1, c2 = channels
        self.conv1 = nn.Conv2d(in_channels, c1, 3, padding=1)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(c2 * (image_size // 4) ** 2, hidden)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x):
        """Logits of images x of shape (N, in_channels, image_size, image_size)."""
        x = self.pool1(F.relu(self.conv1(x)))
        x = self.pool2(F.relu(self.conv2(x)))
        return self.fc2(F.relu(self.fc1(self.flatten(x))))


CHECKPOINT_POLICIES = ("none", "full", "selective")


@dataclass(frozen=True)
class GPTConfig:
    """Shape of a GPT: layers, heads, width, context, vocabulary and options.

    >>> import flopgrad as fg
    >>> cfg = fg.models.GPTConfig(n_layer=2, n_head=2, d_model=16, ctx=8, vocab=32)
    >>> cfg.d_model // cfg.n_head, cfg.tied_embeddings
    (8, True)
    """

    n_layer: int = 12
    n_head: int = 12
    d_model: int = 768
    ctx: int = 1024
    vocab: int = 50257
    bias: bool = True
    tied_embeddings: bool = True
    dropout: float = 0.0
    checkpoint: str = "none"  # "full": every block recomputed; "selective": attention cores
    tp: int = 1  # one tensor-parallel shard of tp: heads and MLP units split (fg.plan bills it)

    def __post_init__(self):
        for k in ("n_layer", "n_head", "d_model", "ctx", "vocab"):
            if getattr(self, k) <= 0:
                raise ValueError(f"GPTConfig: {k} must be positive, got {getattr(self, k)}")
        if self.d_model % self.n_head:
            raise ValueError(f"GPTConfig: d_model {self.d_model} is not divisible by n_head "
                             f"{self.n_head}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"GPTConfig: dropout must be in [0, 1), got {self.dropout}")
        if self.tp < 1 or self.n_head % self.tp or self.d_model % self.tp:
            raise ValueError(f"GPTConfig: tp {self.tp} must divide n_head {self.n_head} and "
                             f"d_model {self.d_model}")
        if self.checkpoint not in CHECKPOINT_POLICIES:
            raise ValueError(f"GPTConfig: checkpoint must be one of {CHECKPOINT_POLICIES}, got "
                             f"{self.checkpoint!r}")

    @staticmethod
    def preset(name: str, **overrides) -> GPTConfig:
        """A named configuration ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", ...).

        >>> import flopgrad as fg
        >>> cfg = fg.models.GPTConfig.preset("gpt2", ctx=256)
        >>> cfg.n_layer, cfg.d_model, cfg.ctx
        (12, 768, 256)
        """
        if name not in PRESETS:
            raise KeyError(f"unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}")
        return replace(PRESETS[name], **overrides)

    def num_params(self) -> int:
        """Parameter count from the shapes alone (tied embeddings counted once).

        >>> import flopgrad as fg
        >>> cfg = fg.models.GPTConfig(n_layer=2, n_head=2, d_model=16, ctx=8, vocab=32)
        >>> cfg.num_params()
        7232
        """
        d, b, inner = self.d_model, int(self.bias), self.d_model // self.tp
        per_layer = (2 * d + 2 * d * b  # two layer norms
                     + 3 * d * inner + 3 * inner * b + inner * d + d * b  # attention
                     + 8 * d * inner + 4 * inner * b + d * b)  # MLP (a tp shard's share)
        total = self.vocab * d + self.ctx * d + self.n_layer * per_layer + d + d * b
        if not self.tied_embeddings:
            total += self.vocab * d
        return total

    def to_dict(self) -> dict:
        """The fields as a plain dict.

        >>> import flopgrad as fg
        >>> d = fg.models.GPTConfig(n_layer=1, n_head=1, d_model=4, ctx=2, vocab=3).to_dict()
        >>> d["n_layer"], d["vocab"], d["dropout"], len(d)
        (1, 3, 0.0, 10)
        """
        return asdict(self)


PRESETS: dict[str, GPTConfig] = {
    "gpt2": GPTConfig(12, 12, 768),
    "gpt2-medium": GPTConfig(24, 16, 1024),
    "gpt2-large": GPTConfig(36, 20, 1280),
    "gpt2-xl": GPTConfig(48, 25, 1600),
}


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention: one qkv projection, SDPA, output projection.

    >>> import flopgrad as fg
    >>> fg.manual_seed(0)
    >>> attn = fg.models.CausalSelfAttention(fg.models.GPTConfig(n_head=2, d_model=16))
    >>> x = fg.randn(1, 4, 16)
    >>> attn(x).shape, attn.c_attn.weight.shape  # q, k and v from one projection
    ((1, 4, 16), (48, 16))
    >>> float((attn(x)[:, :2] - attn(x[:, :2])).abs().max()) < 1e-6  # causal: no peeking ahead
    True
    """

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        # a tensor-parallel shard (cfg.tp > 1) has n_head / tp heads of the same width
        self.n_head, self.d_model = cfg.n_head // cfg.tp, cfg.d_model
        self.head_dim, inner = cfg.d_model // cfg.n_head, cfg.d_model // cfg.tp
        self.c_attn = nn.Linear(cfg.d_model, 3 * inner, bias=cfg.bias)
        self.c_proj = nn.Linear(inner, cfg.d_model, bias=cfg.bias)
        self.dropout = cfg.dropout
        self.checkpoint_core = cfg.checkpoint == "selective"

    def forward(self, x):
        """Attention output of x of shape (batch, seq, d_model), same shape. With selective
        checkpointing the attention core (softmax(q k^T) v) is recomputed in backward."""
        b, t, _ = x.shape
        inner = self.n_head * self.head_dim
        q, k, v = self.c_attn(x).split(inner, dim=2)
        shape = (b, t, self.n_head, self.head_dim)
        q, k, v = (z.reshape(shape).transpose(1, 2) for z in (q, k, v))
        attend = F.scaled_dot_product_attention
        if self.checkpoint_core:
            attend = partial(checkpoint, attend)
        y = attend(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(b, t, inner)
        return F.dropout(self.c_proj(y), self.dropout, self.training)


class GPTMLP(nn.Module):
    """d -> 4d -> GELU (tanh form, as GPT-2) -> d.

    >>> import flopgrad as fg
    >>> mlp = fg.models.GPTMLP(fg.models.GPTConfig(n_head=2, d_model=16))
    >>> mlp.c_fc.weight.shape, mlp.c_proj.weight.shape, mlp(fg.ones(2, 4, 16)).shape
    ((64, 16), (16, 64), (2, 4, 16))
    """

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        hidden = 4 * cfg.d_model // cfg.tp  # a tensor-parallel shard's share
        self.c_fc = nn.Linear(cfg.d_model, hidden, bias=cfg.bias)
        self.c_proj = nn.Linear(hidden, cfg.d_model, bias=cfg.bias)
        self.dropout = cfg.dropout

    def forward(self, x):
        """c_proj(gelu(c_fc(x))), with dropout in training."""
        return F.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")), self.dropout,
                         self.training)


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln1(x)), then x + mlp(ln2(x)).

    >>> import flopgrad as fg
    >>> fg.manual_seed(0)
    >>> cfg = fg.models.GPTConfig(n_layer=2, n_head=2, d_model=16, ctx=8, vocab=32)
    >>> fg.models.Block(cfg)(fg.ones(2, 4, 16)).shape
    (2, 4, 16)
    """

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.mlp = GPTMLP(cfg)

    def forward(self, x):
        """The block applied to x of shape (batch, seq, d_model)."""
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """GPT-2 style language model. forward(idx) -> logits; with targets also the loss.

    >>> import flopgrad as fg
    >>> fg.manual_seed(0)
    >>> cfg = fg.models.GPTConfig(n_layer=2, n_head=2, d_model=16, ctx=8, vocab=32)
    >>> model, idx = fg.models.GPT(cfg), fg.tensor([[1, 2, 3, 4]])
    >>> logits, loss = model(idx, targets=idx)
    >>> logits.shape, loss.shape, model.num_parameters() == cfg.num_params()
    ((1, 4, 32), (), True)
    """

    def __init__(self, cfg: GPTConfig | None = None):
        super().__init__()
        cfg = cfg or GPTConfig()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab, cfg.d_model)
        self.wpe = nn.Embedding(cfg.ctx, cfg.d_model)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        if not cfg.tied_embeddings:
            self.lm_head = nn.Linear(cfg.d_model, cfg.vocab, bias=False)
        self._init_weights()
        if cfg.checkpoint == "full":
            nn.utils.checkpoint_modules(self, [f"blocks.{i}" for i in range(cfg.n_layer)])

    def _init_weights(self) -> None:
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                init.zeros_(p)
            elif ".ln_" in name or name.startswith("ln_f"):
                init.ones_(p)
            elif name.endswith("c_proj.weight"):
                init.normal_(p, 0.0, 0.02 / math.sqrt(2 * self.cfg.n_layer))
            else:
                init.normal_(p, 0.0, 0.02)

    def forward(self, idx, targets=None):
        """Logits (batch, seq, vocab) of token ids idx; (logits, loss) with targets."""
        b, t = idx.shape
        if t > self.cfg.ctx:
            raise ValueError(f"GPT: sequence length {t} exceeds ctx {self.cfg.ctx}")
        positions = arange(t, device="meta" if getattr(idx, "is_meta", False) else None)
        x = self.wte(idx) + self.wpe(positions)
        x = F.dropout(x, self.cfg.dropout, self.training)
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        head = self.lm_head.weight if not self.cfg.tied_embeddings else self.wte.weight
        with scope("lm_head"):
            logits = x @ head.T
        if targets is None:
            return logits
        with scope("loss"):
            loss = F.cross_entropy(logits.reshape(b * t, -1), targets.reshape(-1))
        return logits, loss
