"""The bill of one GPT training step on meta tensors, and the published formulas beside it.

>>> import flopgrad as fg
>>> cfg = fg.models.GPTConfig(n_layer=1, n_head=1, d_model=8, ctx=4, vocab=16)
>>> bill, _ = fg.planning.step_bill(cfg)
>>> fg.planning.training_flops(bill) == bill.flops("forward") + bill.flops("backward")
True
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import replace

from flopgrad import formulas, optim
from flopgrad.creation import meta, randint
from flopgrad.models import GPT, GPTConfig
from flopgrad.nn.utils import checkpoint_modules
from flopgrad.planning.checkpoint import CheckpointPlan, plan_checkpoints
from flopgrad.report import Bill, profile

__all__ = ["step_bill", "gpt_step", "plan_gpt_checkpoints", "checkpointed_step_bill",
           "CHECKPOINT_CHOICES", "training_flops", "formula_table"]


def step_bill(cfg: GPTConfig, batch: int = 1, seq: int | None = None,
              checkpoint: Sequence[str] | None = None) -> tuple[Bill, GPT]:
    """The exact bill of one AdamW training step of a GPT, on meta tensors (no memory).

    `checkpoint` lists modules to checkpoint (a plan's `.modules`); `cfg.checkpoint`
    ("none", "full", "selective") is the preset switch.

    >>> import flopgrad as fg
    >>> cfg = fg.models.GPTConfig(n_layer=2, n_head=2, d_model=16, ctx=8, vocab=32)
    >>> bill, model = fg.planning.step_bill(cfg, batch=2)
    >>> bill.flops("forward", kind="tensor"), next(model.parameters()).is_meta
    (229376, True)
    >>> fg.planning.step_bill(cfg, checkpoint=["blocks.1"])[0].flops("recompute") > 0
    True
    """
    if batch <= 0:
        raise ValueError(f"batch must be positive, got {batch}")
    with meta():
        model = GPT(cfg)
    if checkpoint is not None:
        checkpoint_modules(model, checkpoint)
    step = gpt_step(cfg, batch, seq)
    with profile() as bill:
        step(model)
    return bill, model


def gpt_step(cfg: GPTConfig, batch: int = 1, seq: int | None = None) -> Callable:
    """step(model): one AdamW training step of a GPT on meta token ids, for
    `fg.plan_checkpoints` (each model keeps its optimizer, and so its state, across calls).

    >>> import flopgrad as fg
    >>> cfg = fg.models.GPTConfig(n_layer=2, n_head=2, d_model=16, ctx=8, vocab=32)
    >>> with fg.meta():
    ...     model = fg.models.GPT(cfg)
    >>> fg.planning.gpt_step(cfg, batch=2)(model)
    """
    seq = cfg.ctx if seq is None else seq
    idx = randint(0, cfg.vocab, (batch, seq), device="meta")  # token ids: no memory
    optimizers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def step(model) -> None:
        opt = optimizers.get(model)
        if opt is None:
            opt = optimizers[model] = optim.AdamW(model.parameters(), lr=1e-4)
        _, loss = model(idx, idx)
        loss.backward()
        opt.step()

    return step


def plan_gpt_checkpoints(cfg: GPTConfig, budget: int | str, batch: int = 1,
                         seq: int | None = None) -> CheckpointPlan:
    """The blocks of a GPT to checkpoint so that one AdamW step fits in `budget`, with the
    fewest recompute FLOPs (`fg.plan_checkpoints` on the meta step).

    >>> import flopgrad as fg
    >>> cfg = fg.models.GPTConfig(n_layer=4, n_head=2, d_model=64, ctx=64, vocab=32)
    >>> plan = fg.planning.plan_gpt_checkpoints(cfg, "15MiB", batch=16)
    >>> plan.peak_bytes <= plan.budget < plan.baseline_peak_bytes, len(plan.modules)
    (True, 2)
    """
    with meta():
        model = GPT(cfg)
    return plan_checkpoints(model, gpt_step(cfg, batch, seq), budget)


CHECKPOINT_CHOICES = ("none", "full", "selective", "auto")


def checkpointed_step_bill(cfg: GPTConfig, checkpoint: str = "none", batch: int = 1,
                           seq: int | None = None, memory_budget: int | str | None = None
                           ) -> tuple[Bill, CheckpointPlan | None]:
    """The meta step bill of a GPT under a checkpoint policy: "none", "full" (every block),
    "selective" (attention cores) or "auto" (the planner's blocks under `memory_budget`);
    with "auto", also the plan.

    >>> import flopgrad as fg
    >>> cfg = fg.models.GPTConfig(n_layer=2, n_head=2, d_model=16, ctx=8, vocab=32)
    >>> bill, plan = fg.planning.checkpointed_step_bill(cfg, "full")
    >>> bill.flops("recompute") > 0, plan
    (True, None)
    """
    if checkpoint not in CHECKPOINT_CHOICES:
        raise ValueError(f"checkpoint must be one of {', '.join(CHECKPOINT_CHOICES)}, got "
                         f"{checkpoint!r}")
    if checkpoint == "auto":
        if memory_budget is None:
            raise ValueError("checkpoint 'auto' needs a memory budget (e.g. 80GiB) to plan for")
        plan = plan_gpt_checkpoints(replace(cfg, checkpoint="none"), memory_budget, batch, seq)
        return step_bill(replace(cfg, checkpoint="none"), batch, seq, plan.modules)[0], plan
    return step_bill(replace(cfg, checkpoint=checkpoint), batch, seq)[0], None


def training_flops(bill: Bill) -> int:
    """FLOPs of a step's forward and backward, and of any checkpoint recomputation: what
    scales with tokens (the optimizer's per-step update does not, so it is left out).

    >>> import flopgrad as fg
    >>> cfg = fg.models.GPTConfig(n_layer=2, n_head=2, d_model=16, ctx=8, vocab=32)
    >>> fg.planning.training_flops(fg.planning.step_bill(cfg)[0]) / cfg.ctx
    49896.25
    """
    return bill.flops("forward") + bill.flops("backward") + bill.flops("recompute")


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
    train = training_flops(bill)
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
