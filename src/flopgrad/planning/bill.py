"""The bill of one GPT training step on meta tensors, and the published formulas beside it.

>>> import flopgrad as fg
>>> cfg = fg.models.GPTConfig(n_layer=1, n_head=1, d_model=8, ctx=4, vocab=16)
>>> bill, _ = fg.planning.step_bill(cfg)
>>> fg.planning.training_flops(bill) == bill.flops("forward") + bill.flops("backward")
True
"""

from __future__ import annotations

from flopgrad import formulas, optim
from flopgrad.creation import meta, randint
from flopgrad.models import GPT, GPTConfig
from flopgrad.report import Bill, profile

__all__ = ["step_bill", "training_flops", "formula_table"]


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
