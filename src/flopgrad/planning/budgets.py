"""The training-budget planner: exact FLOPs per token from a meta step, GPU-hours and money.

>>> import flopgrad as fg
>>> b = fg.budget(params=7e9, tokens=2e12, gpu="h100", gpus=1024, mfu=0.4)
>>> f"{b.flops:.3g}", round(b.days, 1)
('8.4e+22', 2.4)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from flopgrad.models import GPTConfig
from flopgrad.planning.bill import CHECKPOINT_CHOICES, checkpointed_step_bill, training_flops
from flopgrad.planning.hardware import GPU, GPUS
from flopgrad.planning.memory import saved_activation_bytes, state_bytes
from flopgrad.planning.presets import model_config

__all__ = ["Budget", "budget"]


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


def _positive(name: str, value: float | None) -> None:
    """Refuse a value that is missing, not positive or not finite, naming it.

    >>> _positive("tokens", float("inf"))
    Traceback (most recent call last):
    ValueError: tokens must be a positive number, got inf
    """
    if value is None or not (value > 0) or not math.isfinite(value):
        raise ValueError(f"{name} must be a positive number, got {value}")


def budget(params: float | None = None, tokens: float | None = None,
           model: str | GPTConfig | None = None,
           gpu: str = "h100", gpus: int = 1, mfu: float = 0.4,
           price_per_gpu_hour: float | None = None, checkpoint: str = "none",
           memory_budget: int | str | None = None) -> Budget:
    """FLOPs, GPU-hours, days and cost of training on `tokens` tokens.

    With `params` only, FLOPs are 6·N·D. With `model` (a preset name or GPTConfig), the
    FLOPs per token are counted exactly from one meta training step (forward + backward;
    the optimizer's per-step cost is excluded since it does not scale with tokens), and
    memory comes from the same bill. `checkpoint` ("full", "selective", or "auto": the
    planner's blocks under `memory_budget`, by default the GPU's memory) recomputes
    activations: fewer bytes kept, the recompute FLOPs added per token.

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
    if checkpoint not in CHECKPOINT_CHOICES:
        raise ValueError(f"checkpoint must be one of {', '.join(CHECKPOINT_CHOICES)}, got "
                         f"{checkpoint!r}")
    if checkpoint != "none" and model is None:
        raise ValueError("checkpointing needs model= (a preset or GPTConfig) to count it")
    warnings = []
    if model is not None:
        cfg = model_config(model)
        if checkpoint == "auto" and memory_budget is None:
            memory_budget = GPUS[gpu].memory_bytes
        bill, plan = checkpointed_step_bill(cfg, checkpoint, memory_budget=memory_budget)
        n = cfg.num_params()
        per_token = training_flops(bill) / cfg.ctx
        source = f"exact count of a {cfg.ctx}-token training step"
        if checkpoint != "none":
            chosen = "" if plan is None else f": {len(plan.modules)} of {cfg.n_layer} blocks"
            source += (f", checkpoint {checkpoint}{chosen} (+"
                       f"{100 * bill.flops('recompute') / (per_token * cfg.ctx):.1f}% "
                       "recomputed)")
        breakdown = {**state_bytes(n), "activations": saved_activation_bytes(bill)}
        if params is not None and int(params) != n:
            warnings.append(f"params={params:,} ignored: the model has {n:,}")
    else:
        _positive("params", params)
        n = int(params)
        per_token = 6.0 * n
        source = "6·N per token"
        breakdown = state_bytes(n)
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
