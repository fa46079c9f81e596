"""The training-budget planner: exact FLOPs per token from a meta step, GPU-hours and money.

>>> import flopgrad as fg
>>> b = fg.budget(params=7e9, tokens=2e12, gpu="h100", gpus=1024, mfu=0.4)
>>> f"{b.flops:.3g}", round(b.days, 1)
('8.4e+22', 2.4)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from flopgrad import formulas, optim
from flopgrad.creation import meta, randint
from flopgrad.models import GPT, PRESETS, GPTConfig
from flopgrad.report import Bill, profile

__all__ = ["GPUS", "GPU", "Budget", "budget", "step_bill", "model_config"]


@dataclass(frozen=True)
class GPU:
    """Dense (no sparsity) 16-bit tensor-core peak and memory of one accelerator.

    >>> import flopgrad as fg
    >>> h100 = fg.planning.GPUS["h100"]
    >>> h100.name, h100.peak_flops / 1e12, h100.memory_bytes / 1e9
    ('NVIDIA H100 SXM', 989.0, 80.0)
    """

    name: str
    peak_flops: float  # FLOP/s, dense BF16/FP16
    memory_bytes: float
    source: str


GPUS: dict[str, GPU] = {
    "b200": GPU("NVIDIA B200", 2.25e15, 192e9, "NVIDIA DGX B200 datasheet: 2.25 PFLOPS dense BF16"),
    "h200": GPU("NVIDIA H200 SXM", 989e12, 141e9, "NVIDIA H200 datasheet: 989 TFLOPS BF16 dense"),
    "h100": GPU("NVIDIA H100 SXM", 989e12, 80e9, "NVIDIA H100 datasheet: 1,979 TFLOPS BF16 "
                "with sparsity, 989 dense"),
    "h100-pcie": GPU("NVIDIA H100 PCIe", 756e12, 80e9, "NVIDIA H100 datasheet: 1,513 with "
                     "sparsity, 756 dense"),
    "a100": GPU("NVIDIA A100 SXM 80GB", 312e12, 80e9, "NVIDIA A100 datasheet: 312 TFLOPS "
                "BF16 dense"),
    "a100-40gb": GPU("NVIDIA A100 40GB", 312e12, 40e9, "NVIDIA A100 datasheet"),
    "l4": GPU("NVIDIA L4", 121e12, 24e9, "NVIDIA L4 datasheet: 242 TFLOPS FP16 with sparsity, "
              "121 dense"),
    "a10g": GPU("NVIDIA A10G", 125e12, 24e9, "NVIDIA A10 datasheet: 125 TFLOPS FP16 dense"),
    "v100": GPU("NVIDIA V100 SXM2 32GB", 125e12, 32e9, "NVIDIA V100 datasheet: 125 TFLOPS "
                "FP16 tensor"),
    "mi300x": GPU("AMD Instinct MI300X", 1307.4e12, 192e9, "AMD MI300X datasheet: 1,307.4 "
                  "TFLOPS BF16 dense"),
}

# GPT-architecture configurations for planning, beside the GPT-2 presets of flopgrad.models.
PLANNING_PRESETS: dict[str, GPTConfig] = {
    **PRESETS,
    "gpt3-175b": GPTConfig(96, 96, 12288, 2048, 50257),
    "gpt3-6.7b": GPTConfig(32, 32, 4096, 2048, 50257),
    # LLaMA-7B's dimensions on the GPT block (4x GELU MLP, LayerNorm, learned positions):
    # 6.7B parameters like LLaMA-7B's 6.74B, not its SwiGLU/RMSNorm/RoPE architecture.
    "llama-7b-style": GPTConfig(32, 32, 4096, 4096, 32000, bias=False, tied_embeddings=False),
    "llama-13b-style": GPTConfig(40, 40, 5120, 4096, 32000, bias=False, tied_embeddings=False),
}


def model_config(model) -> GPTConfig:
    """A GPTConfig from a preset name or a GPTConfig (unknown names list the known ones).

    >>> import flopgrad as fg
    >>> fg.planning.model_config("llama-7b-style").num_params()
    6721638400
    """
    if isinstance(model, GPTConfig):
        return model
    if model not in PLANNING_PRESETS:
        raise KeyError(f"unknown model {model!r}; known presets: "
                       f"{', '.join(sorted(PLANNING_PRESETS))}")
    return PLANNING_PRESETS[model]


def step_bill(cfg: GPTConfig, batch: int = 1, seq: int | None = None) -> tuple[Bill, GPT]:
    """The exact bill of one AdamW training step of a GPT, on meta tensors (no memory).

    >>> import flopgrad as fg
    >>> cfg = fg.models.GPTConfig(n_layer=2, n_head=2, d_model=16, ctx=8, vocab=32)
    >>> bill, model = fg.planning.step_bill(cfg, batch=2)
    >>> bill.flops("forward", kind="tensor"), next(model.parameters()).is_meta
    (229376, True)
    """
    if batch <= 0:
        raise ValueError(f"batch must be positive, got {batch}")
    seq = cfg.ctx if seq is None else seq
    with meta():
        model = GPT(cfg)
    opt = optim.AdamW(model.parameters(), lr=1e-4)
    idx = randint(0, cfg.vocab, (batch, seq), device="meta")  # token ids: no memory
    with profile() as bill:
        _, loss = model(idx, idx)
        loss.backward()
        opt.step()
    return bill, model


@dataclass
class Budget:
    """What a training run costs.

    >>> import flopgrad as fg
    >>> b = fg.budget(params=1e9, tokens=2e10, gpu="a100", gpus=8, price_per_gpu_hour=2.0)
    >>> b.flops, round(b.gpu_hours), round(b.cost), b.fits
    (1.2e+20, 267, 534, True)
    """

    params: int
    tokens: float
    flops_per_token: float
    flops: float
    gpu: GPU
    gpus: int
    mfu: float
    gpu_hours: float
    days: float
    cost: float | None
    memory_per_gpu: float  # bytes, plain data parallelism, micro-batch of one sequence
    memory_breakdown: dict = field(default_factory=dict)
    fits: bool = True
    chinchilla_tokens: float = 0.0
    source: str = ""
    warnings: list = field(default_factory=list)

    def summary(self) -> str:
        """A few readable lines.

        >>> import flopgrad as fg
        >>> print(fg.budget(params=1e9, tokens=2e10).summary().splitlines()[0])
        1,000,000,000 parameters x 2e+10 tokens: 1.2e+20 FLOPs (6e+09 per token, 6·N per token)
        """
        cost = f", cost ${self.cost:,.0f}" if self.cost is not None else ""
        lines = [
            f"{self.params:,} parameters x {self.tokens:.4g} tokens: {self.flops:.4g} FLOPs "
            f"({self.flops_per_token:.4g} per token, {self.source})",
            f"on {self.gpus} x {self.gpu.name} at {self.mfu:.0%} MFU "
            f"({self.gpu.peak_flops / 1e12:.0f} TFLOP/s peak): {self.gpu_hours:,.0f} GPU-hours, "
            f"{self.days:,.1f} days{cost}",
            "memory per GPU (data parallel, one sequence per micro-batch): "
            f"{self.memory_per_gpu / 1e9:,.1f} GB of {self.gpu.memory_bytes / 1e9:.0f} GB "
            f"({', '.join(f'{k} {v / 1e9:,.1f} GB' for k, v in self.memory_breakdown.items())})",
            f"compute-optimal (Chinchilla, ~20 tokens per parameter): "
            f"{self.chinchilla_tokens:.3g} tokens",
        ]
        lines += [f"WARNING: {w}" for w in self.warnings]
        return "\n".join(lines)


def _positive(name: str, value) -> None:
    if value is None or not (value > 0) or not math.isfinite(value):
        raise ValueError(f"{name} must be a positive number, got {value}")


def budget(params: float | None = None, tokens: float | None = None, model=None,
           gpu: str = "h100", gpus: int = 1, mfu: float = 0.4,
           price_per_gpu_hour: float | None = None) -> Budget:
    """FLOPs, GPU-hours, days and cost of training on `tokens` tokens.

    With `params` only, FLOPs are 6·N·D. With `model` (a preset name or GPTConfig), the
    FLOPs per token are counted exactly from one meta training step (forward + backward;
    the optimizer's per-step cost is excluded since it does not scale with tokens), and
    memory comes from the same bill.

    >>> import flopgrad as fg
    >>> cfg = fg.models.GPTConfig(n_layer=2, n_head=2, d_model=16, ctx=8, vocab=32)
    >>> b = fg.budget(model=cfg, tokens=1e6)
    >>> b.params, b.flops_per_token, b.source
    (7232, 49896.25, 'exact count of a 8-token training step')
    """
    _positive("tokens", tokens)
    if not 0 < mfu <= 1:
        raise ValueError(f"mfu must be in (0, 1], got {mfu}")
    if not isinstance(gpus, int) or gpus < 1:
        raise ValueError(f"gpus must be a whole number >= 1, got {gpus}")
    if gpu not in GPUS:
        raise KeyError(f"unknown gpu {gpu!r}; known: {', '.join(sorted(GPUS))}")
    if price_per_gpu_hour is not None and price_per_gpu_hour < 0:
        raise ValueError(f"price_per_gpu_hour must be >= 0, got {price_per_gpu_hour}")
    if params is None and model is None:
        raise ValueError("give params= (for 6ND) or model= (for an exact count)")
    warnings = []
    if model is not None:
        cfg = model_config(model)
        bill, _ = step_bill(cfg, batch=1)
        n = cfg.num_params()
        per_token = (bill.flops("forward") + bill.flops("backward")) / cfg.ctx
        source = f"exact count of a {cfg.ctx}-token training step"
        params_b = 4 * n
        saved = sum(e["bytes"] for e in bill.saved() if not e["leaf"])
        breakdown = {"weights": params_b, "gradients": params_b,
                     "optimizer state": 2 * params_b, "activations": saved}
        if params is not None and int(params) != n:
            warnings.append(f"params={params:,} ignored: the model has {n:,}")
    else:
        _positive("params", params)
        n = int(params)
        per_token = 6.0 * n
        source = "6·N per token"
        breakdown = {"weights": 4 * n, "gradients": 4 * n, "optimizer state": 8 * n}
        warnings.append("activation memory unknown without a model; pass model= for it")
    total = per_token * tokens
    gpu_spec = GPUS[gpu]
    gpu_hours = total / (gpu_spec.peak_flops * mfu) / 3600
    memory = float(sum(breakdown.values()))
    fits = memory <= gpu_spec.memory_bytes
    if not fits:
        warnings.append(
            f"does not fit: {memory / 1e9:,.1f} GB per GPU under plain data parallelism > "
            f"{gpu_spec.memory_bytes / 1e9:.0f} GB; shard weights and optimizer state "
            "(ZeRO/FSDP), use tensor or pipeline parallelism, or recompute activations")
    return Budget(
        params=n, tokens=float(tokens), flops_per_token=per_token, flops=total, gpu=gpu_spec,
        gpus=gpus, mfu=mfu, gpu_hours=gpu_hours, days=gpu_hours / gpus / 24,
        cost=None if price_per_gpu_hour is None else gpu_hours * price_per_gpu_hour,
        memory_per_gpu=memory, memory_breakdown=breakdown, fits=fits,
        chinchilla_tokens=20.0 * n, source=source, warnings=warnings)


def formula_table(cfg: GPTConfig, bill: Bill, batch: int = 1) -> list[dict]:
    """The published formulas for this configuration beside the counted FLOPs, per step.

    >>> import flopgrad as fg
    >>> cfg = fg.models.GPTConfig(n_layer=2, n_head=2, d_model=16, ctx=8, vocab=32)
    >>> rows = fg.planning.formula_table(cfg, fg.planning.step_bill(cfg)[0])
    >>> len(rows), rows[0]["formula"], rows[0]["value"], rows[0]["counted"]
    (5, 'Kaplan C_forward (per step)', 102400, 114688)
    """
    seq = cfg.ctx
    tokens = batch * seq
    d, L, h = cfg.d_model, cfg.n_layer, cfg.n_head
    fwd_t = bill.flops("forward", kind="tensor")
    bwd_t = bill.flops("backward", kind="tensor")
    train = bill.flops("forward") + bill.flops("backward")
    k = formulas.kaplan(L, d, seq)
    n_no_positions = cfg.num_params() - cfg.ctx * d  # nanoGPT's N: tied wte counts as lm_head
    lm_head = 2 * tokens * d * cfg.vocab
    second_attention = 2 * L * seq * d * tokens
    rows = [
        {"formula": "Kaplan C_forward (per step)", "value": k.forward_flops * tokens,
         "counted": fwd_t,
         "reason": "Kaplan omits the unembedding matmul (2·d·vocab per token) and counts the "
                   "attention context term once; QK^T and AV are two products "
                   f"(+{second_attention:.4g}); with both added back it is exact: "
                   f"{k.forward_flops * tokens + lm_head + second_attention:.6g}"},
        {"formula": "PaLM/nanoGPT 6N + 12·L·H·Q·T (per step)",
         "value": formulas.palm_per_token(n_no_positions, L, h, d // h, seq) * tokens,
         "counted": fwd_t + bwd_t,
         "reason": "N without position embeddings (nanoGPT): the tied token embedding stands "
                   "for the unembedding matmul; biases and layer norms are counted as if "
                   "they were matmul weights, a small overcount"},
        {"formula": "Chinchilla App. F (x3 for training)",
         "value": 3 * formulas.chinchilla_forward(L, d, h, seq, cfg.vocab) * batch,
         "counted": train,
         "reason": "counts the embedding lookup as a matmul and the softmax at 3 FLOPs per "
                   "entry; leaves out layer norms, GELU, residual adds and the loss"},
        {"formula": "Narayanan 2021, no recomputation",
         "value": formulas.narayanan_per_iteration(batch, seq, L, d, cfg.vocab, False),
         "counted": fwd_t + bwd_t,
         "reason": "matmuls only, like flopgrad's tensor FLOPs; it also counts the logits' "
                   "backward dX and treats the embedding as free"},
        {"formula": "6·N·D (N = all parameters)",
         "value": formulas.six_nd(cfg.num_params(), tokens), "counted": train,
         "reason": "ignores attention over the context (grows with ctx/d_model) and counts "
                   "the position and token embeddings as if they were matmul weights"},
    ]
    for r in rows:
        r["ratio"] = r["counted"] / r["value"] if r["value"] else float("nan")
    return rows
