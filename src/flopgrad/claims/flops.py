"""The claims about FLOPs, each read off a bill: matmul's share (000), doubling the width
(000), seed 000's 39.3 billion per epoch, backward = 2x forward (001, 003), 6ND (001) and
O(1) work per edge of the graph (004)."""

from __future__ import annotations

import contextlib

from flopgrad import ledger as L
from flopgrad.claims.core import Experiment, Finding, claim
from flopgrad.claims.seeds import (
    SEED_000_EPOCH,
    SEED_000_EXAMPLES,
    SEED_000_FORWARD,
    SEED_000_MLP,
    SEED_000_PER_EXAMPLE,
)
from flopgrad.claims.walltime import layer_flops
from flopgrad.creation import manual_seed, meta, randint, randn
from flopgrad.models import CNN, GPT, MLP, GPTConfig
from flopgrad.nn import Parameter
from flopgrad.nn import functional as F
from flopgrad.optim import AdamW
from flopgrad.planning import step_bill
from flopgrad.report import Bill, profile

__all__ = ["mlp_bill", "gpt_flops"]


def mlp_bill(sizes=SEED_000_MLP, batch: int = 32, input_grad: bool = False,
             on_meta: bool = False) -> Bill:
    """The bill of one forward and backward of an MLP (ReLU, cross-entropy) at `batch`.

    >>> mlp_bill(batch=1).flops("forward", kind="tensor")  # seed 000's 218,368
    218368
    """
    manual_seed(0)
    with meta() if on_meta else contextlib.nullcontext():
        model = MLP(sizes)
        x, y = randn(batch, sizes[0]), randint(0, sizes[-1], (batch,))
    x.requires_grad_(input_grad)
    with profile(memory=not on_meta) as bill:
        F.cross_entropy(model(x), y).backward()
    return bill


def _rule(bill: Bill, name: str, *args):
    return next(r for r in bill.rules(*args) if r.name == name)


@claim("matmul-flops", "matmul's share of the FLOPs")
def _matmul_flops(ex: Experiment) -> Finding:
    """The share of a training step's FLOPs in matmul (conv is one batched matmul)."""
    manual_seed(0)
    cnn = CNN(image_size=28)
    x, y = randn(32, 1, 28, 28), randint(0, 10, (32,))
    with profile(memory=False) as cnn_bill:
        F.cross_entropy(cnn(x), y).backward()
    cases = {"MLP 784-128-64-10, batch 32": _rule(mlp_bill(), "share of FLOPs in matmul"),
             "CNN 28x28 (LeNet-like), batch 32": _rule(cnn_bill, "share of FLOPs in matmul")}
    rows = tuple(f"{name}: {100 * r.measured:.2f}% ({r.reason})" for name, r in cases.items())
    shares = [r.measured for r in cases.values()]
    return Finding(
        claimed="matrix multiplication is the most expensive operation",
        measured=f"{100 * min(shares):.2f}% to {100 * max(shares):.2f}% of a training step's "
                 "FLOPs are matmul (measured bills)",
        holds=min(shares) >= 0.9,
        reason="a matmul or conv output element sums over all its inputs, 2 FLOPs each (2 x "
               "784 in the MLP's first layer, 2 x 9 x 16 in the CNN's second conv), while "
               "the elementwise ops around it (bias, ReLU, pooling, the loss) cost a few "
               "FLOPs per element",
        values={name: r.measured for name, r in cases.items()}, rows=rows)


@claim("width-4x", "doubling the width")
def _width(ex: Experiment) -> Finding:
    """Forward matmul FLOPs of 784-w-w-10 at w = 128 and 256, per layer."""
    bills = [mlp_bill((784, w, w, 10), batch=1, on_meta=True) for w in (128, 256)]
    per = {f"fc{k}": bills[1].flops("forward", kind="tensor", scope=f"fc{k}")
           / bills[0].flops("forward", kind="tensor", scope=f"fc{k}") for k in (1, 2, 3)}
    total = bills[1].flops(kind="tensor") / bills[0].flops(kind="tensor")
    return Finding(
        claimed="4x the operations",
        measured=(f"784-w-w-10 from w = 128 to 256: the hidden layer fc2 x{per['fc2']:g}, "
                  f"fc1 x{per['fc1']:g}, fc3 x{per['fc3']:g}; the whole step x{total:.2f} "
                  "(meta bills)"),
        holds=per["fc2"] == 4,
        reason="a layer's matmul costs 2·in·out per example: 4x when both of its sides "
               "double (hidden to hidden), 2x when one side is the fixed input (784) or "
               "output (10) width, so a shallow network grows by less than 4x",
        values={"per_layer": per, "total": total})


@claim("epoch-flops", "seed 000's 39.3 billion FLOPs per epoch")
def _epoch(ex: Experiment) -> Finding:
    """One step of batch 60,000 on meta tensors: the epoch's bill in one go."""
    counted = mlp_bill(batch=SEED_000_EXAMPLES, input_grad=True, on_meta=True)
    trained = mlp_bill(batch=SEED_000_EXAMPLES, on_meta=True)
    seed_count = counted.flops(kind="tensor")
    training = trained.flops(kind="tensor")
    forward = trained.flops("forward", kind="tensor")
    skipped = sum(s["flops"] for s in trained.skipped_dx())
    return Finding(
        claimed=f"{SEED_000_PER_EXAMPLE:,} FLOPs per example, {SEED_000_EPOCH / 1e9:.1f} "
                "billion per epoch",
        measured=(f"{training:,} matmul FLOPs per epoch as a training step runs it "
                  f"({training // SEED_000_EXAMPLES:,} per example); {seed_count:,} when "
                  "the input's gradient is computed too (meta bills of a 60,000-example step)"),
        holds=abs(training - SEED_000_EPOCH) <= 0.05 * SEED_000_EPOCH,
        reason=(f"the seed's count is reproduced exactly: forward {forward:,} "
                f"({forward // SEED_000_EXAMPLES:,} per example: the seed's "
                f"{SEED_000_FORWARD:,}) plus "
                "a backward of 2x forward gives "
                f"{seed_count:,}. But training never computes the gradient of the input "
                f"images: the first layer's dX matmul ({skipped // SEED_000_EXAMPLES:,} FLOPs "
                f"per example, {skipped:,} per epoch) is skipped, so the backward is "
                f"{(training - forward) / forward:.3f}x the forward, not 2x. With the bias "
                f"adds, ReLU and the loss the step is {trained.flops():,} FLOPs"),
        values={"with_input_grad": seed_count, "training": training, "forward": forward,
                "skipped_dx": skipped, "all_flops_training": trained.flops()})


@claim("backward-2x-flops", "backward = 2x forward in FLOPs")
def _backward_flops(ex: Experiment) -> Finding:
    """The seed 000 MLP's whole step, and each layer type fed an input that needs dX."""
    step = mlp_bill()
    ratio = step.backward_forward_ratio()
    per = {name: b / f for name, (f, b) in layer_flops(ex).items()}
    rows = (f"MLP 784-128-64-10 training step (batch 32): {ratio:.3f}",
            *(f"{name}: {r:.3f}" for name, r in per.items()))
    kinds = {name: name.split("(")[0].strip() for name in per}
    contracting = ("Linear", "Conv2d", "attention")
    matmuls = [r for name, r in per.items() if kinds[name] in contracting]
    others = {kinds[name]: r for name, r in per.items() if kinds[name] not in contracting}
    return Finding(
        claimed="backward = 2x forward (dW and dX, each the size of the forward)",
        measured=(f"{ratio:.3f}x for a whole MLP training step; {min(matmuls):.3f}x to "
                  f"{max(matmuls):.3f}x for Linear, Conv2d and attention layers whose input "
                  f"needs a gradient; {min(others.values()):.1f}x to "
                  f"{max(others.values()):.1f}x for elementwise and norm layers (bills)"),
        holds=abs(ratio - 2) <= 0.1,
        reason=(_rule(step, "backward/forward FLOPs").reason + ". A matmul layer is 2x "
                "when both dW and dX run; the first layer's dX never runs (its input is "
                "data), so a network's ratio sits below 2 by that layer's share. Elementwise "
                "and norm layers follow their own derivative: "
                + ", ".join(f"{k} {r:.1f}x" for k, r in others.items())
                + " (ReLU's backward is one masked copy, tanh's is 1 - y² times g)"),
        values={"mlp_step": ratio, "per_layer": per}, rows=rows)


@claim("exact-2x", "seed 003's exact 2x")
def _exact_2x(ex: Experiment) -> Finding:
    """X (B x D) @ W1 (D x D) @ W2 (D x C), loss = mean(H2²), B=32, D=512, C=10."""
    B, D, C = 32, 512, 10
    manual_seed(0)
    W1, W2 = Parameter(randn(D, D)), Parameter(randn(D, C))
    ratios = {}
    for x_grad in (True, False):
        X = randn(B, D, requires_grad=x_grad)
        W1.grad = W2.grad = None
        with profile(memory=False) as bill:
            ((X @ W1 @ W2) ** 2).mean().backward()
        ratios[x_grad] = (bill.flops("backward", kind="tensor"),
                          bill.flops("forward", kind="tensor"))
    (bwd, fwd), (bwd_t, fwd_t) = ratios[True], ratios[False]
    return Finding(
        claimed="backward = 4BDC + 4BDD = exactly 2x forward (2BDD + 2BDC)",
        measured=(f"backward {bwd:,} = {bwd / fwd:.6f}x forward {fwd:,} with dX of X computed "
                  f"(= 4BDC + 4BDD = {4 * B * D * C + 4 * B * D * D:,}); as training runs it "
                  f"(X needs no gradient) {bwd_t:,} = {bwd_t / fwd_t:.3f}x (matmul FLOPs, "
                  "bills)"),
        holds=bwd == 2 * fwd,
        reason="each matmul's backward is two matmuls of its forward's size, dW = Hᵀ·G and "
               "dX = G·Wᵀ; the seed itself says the last one, the gradient w.r.t. X, "
               "'isn't needed during training', and without it the backward is "
               "4BDC + 2BDD",
        values={"with_dx": bwd / fwd, "training": bwd_t / fwd_t, "backward": bwd,
                "forward": fwd})


def gpt_flops(bill: Bill, n: int, tokens: int) -> dict:
    """FLOPs per parameter per token of a GPT step's bill, split into the weight matmuls
    (scopes c_attn, c_proj, c_fc, lm_head), attention's QKᵀ and AV, and the rest.

    >>> cfg = GPTConfig(n_layer=1, n_head=2, d_model=16, ctx=8, vocab=32)
    >>> split = gpt_flops(step_bill(cfg)[0], cfg.num_params(), cfg.ctx)
    >>> round(split["weights"], 3), round(split["total"], 3)
    (5.441, 6.821)
    """
    weights = attention = 0
    for ev, c in zip(bill.events, bill.costs(), strict=True):
        if ev[L.PHASE] not in ("forward", "backward") or not c[0]:
            continue
        if ev[L.SCOPE].rsplit(".", 1)[-1] in ("c_attn", "c_proj", "c_fc", "lm_head"):
            weights += c[0]
        else:
            attention += c[0]
    total = bill.flops("forward") + bill.flops("backward")
    per = n * tokens
    return {"total": total / per, "weights": weights / per, "attention": attention / per,
            "other": (total - weights - attention) / per}


@claim("six-nd", "6·N·D training FLOPs")
def _six_nd(ex: Experiment) -> Finding:
    """GPT-2 small (124M, ctx 1024) on meta tensors, and a small GPT really run."""
    cfg = GPTConfig.preset("gpt2")
    big, _ = step_bill(cfg, batch=1)
    n, d = cfg.num_params(), cfg.ctx
    g2 = gpt_flops(big, n, d)
    matmul_params = n - cfg.ctx * cfg.d_model - _non_matmul(cfg)
    small_cfg = GPTConfig(n_layer=2, n_head=4, d_model=64, ctx=32, vocab=256)
    manual_seed(0)
    model = GPT(small_cfg)
    idx = randint(0, small_cfg.vocab, (4, small_cfg.ctx))
    opt = AdamW(model.parameters(), lr=1e-3)
    with profile(memory=False) as bill:
        model(idx, idx)[1].backward()
        opt.step()
    small = gpt_flops(bill, small_cfg.num_params(), idx.numel())
    rows = tuple(f"{name}: {v['total']:.3f} per parameter per token = weight matmuls "
                 f"{v['weights']:.3f} + attention QKᵀ/AV {v['attention']:.3f} + non-matmul "
                 f"ops {v['other']:.3f}"
                 for name, v in (("GPT-2 small, 124M, ctx 1024 (meta)", g2),
                                 ("GPT 2x64, ctx 32, vocab 256, 118K (run)", small)))
    return Finding(
        claimed="6 FLOPs per parameter per token (2 forward, 4 backward)",
        measured=f"{g2['total']:.3f} per parameter per token for GPT-2 small, "
                 f"{small['total']:.3f} for a small GPT (bills)",
        holds=abs(g2["total"] - 6) <= 0.3,
        reason=(f"the 6 is exact for the weight matmuls: they do 6 FLOPs per token for each "
                f"of the {matmul_params:,} weights that enter a matmul "
                f"({6 * matmul_params / n:.3f} per parameter of N = {n:,}, which also counts "
                "position embeddings, biases and norms that never enter one). On top come "
                "attention's QKᵀ and AV, which grow with the context (12·n_layer·ctx·d per "
                "token), and the non-matmul ops (softmax, GELU, norms, the loss)"),
        values={"gpt2": g2, "small": small, "matmul_params": matmul_params}, rows=rows)


def _non_matmul(cfg: GPTConfig) -> int:
    """Biases and layer-norm parameters: they are added or multiplied, never matmul'ed."""
    d, b = cfg.d_model, int(cfg.bias)
    per_layer = 2 * d + 2 * d * b + 3 * d * b + d * b + 4 * d * b + d * b
    return cfg.n_layer * per_layer + d + d * b


@claim("per-edge", "O(1) work per edge")
def _per_edge(ex: Experiment) -> Finding:
    """Backward FLOPs per op over forward FLOPs per op, at widths 16 to 1024."""
    widths = (16, 64, 256, 1024)
    per: dict[str, list[float]] = {}
    for w in widths:
        for name, r in _op_ratios(w).items():
            per.setdefault(name, []).append(r)
    spread = {name: (max(v) - min(v)) / max(v) for name, v in per.items() if max(v)}
    rows = tuple(f"{name:<11} " + "  ".join(f"{r:6.3f}" for r in v) for name, v in per.items())
    return Finding(
        claimed="O(1) cost per edge: backward work per op is a constant times its forward's",
        measured=(f"per op, backward/forward FLOPs varies by at most "
                  f"{100 * max(spread.values()):.1f}% over widths {', '.join(map(str, widths))}"
                  " (bills; one row per op below, one column per width)"),
        holds=max(spread.values()) <= 0.05,
        reason="each op's vjp is a fixed handful of ops on tensors of its own shapes (matmul: "
               "two matmuls, 2x; tanh: 1 - y², times g; softmax: s·(g - Σ g·s)), so a "
               "gradient costs a constant factor of the forward whatever the size; the "
               "constant is the op's, from 0 (a sum's backward is a broadcast) to 4 (tanh)",
        values={"ratios": per, "widths": widths}, rows=(f"{'op':<11} " + "  ".join(
            f"{w:>6}" for w in widths), *rows))


def _op_ratios(w: int, batch: int = 8) -> dict:
    """Backward over forward FLOPs of each op of a small composite of width w."""
    manual_seed(0)
    x = randn(batch, w, requires_grad=True)
    W1, b1, W2 = Parameter(randn(w, w) / w ** 0.5), Parameter(randn(w)), Parameter(randn(w, w))
    with profile(memory=False) as bill:
        h = F.layer_norm(F.linear(x, W1, b1), (w,))
        a = h.tanh() * h.sigmoid()
        s = (a @ W2).softmax(-1)
        ((s * s).sum() + F.gelu(a).mean()).backward()
    return {r.key: (r.backward_dx + r.backward_dw) / r.forward for r in bill.rows("op")
            if r.forward}
