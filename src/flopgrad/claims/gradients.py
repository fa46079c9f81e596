"""The claims of seed 004 about gradients and memory: naive finite differences against one
backward, activations as backprop's main memory cost, checkpointing's trade, and vanishing
gradients in a deep sigmoid network."""

from __future__ import annotations

import numpy as np

from flopgrad.autograd import no_grad, numerical_grad
from flopgrad.claims.core import Experiment, Finding, claim
from flopgrad.claims.timing import best_ns, one_blas_thread
from flopgrad.creation import manual_seed, randint, randn
from flopgrad.models import CNN, GPT, MLP, GPTConfig
from flopgrad.nn import Parameter, init
from flopgrad.nn import functional as F
from flopgrad.optim import SGD, AdamW
from flopgrad.report import human, human_bytes, profile
from flopgrad.tensor import float64

__all__ = ["FD_SIZES", "fd_model"]

# n = h·(d + 1) weights of a d -> h -> 1 tanh network without biases
FD_SIZES = {100: (9, 10), 1_000: (99, 10), 10_000: (99, 100), 100_000: (999, 100)}


def fd_model(n: int, batch: int = 16):
    """(loss, weights): the mean squared error of a d -> h -> 1 tanh MLP with n weights
    (FD_SIZES), float64, as a function of nothing (it reads its weights).

    >>> loss, weights = fd_model(100)
    >>> sum(w.numel() for w in weights), loss().shape
    (100, ())
    """
    d, h = FD_SIZES[n]
    manual_seed(0)
    W1 = Parameter(randn(h, d, dtype=float64) / d ** 0.5)
    W2 = Parameter(randn(1, h, dtype=float64) / h ** 0.5)
    x, y = randn(batch, d, dtype=float64), randn(batch, 1, dtype=float64)

    def loss(*_):
        return ((F.linear(F.linear(x, W1).tanh(), W2) - y) ** 2).mean()

    return loss, [W1, W2]


def _fd_case(ex: Experiment, n: int, measure: bool) -> dict:
    """Finite differences against backprop for n weights: FLOPs from bills, times best of k."""
    loss, weights = fd_model(n)
    with profile(memory=False) as one:
        with no_grad():
            loss()
    with profile(memory=False) as bp:
        loss().backward()
    analytic = [w.grad.numpy() for w in weights]
    per_pass = one.flops()

    def backprop():
        for w in weights:
            w.grad = None
        loss().backward()

    with one_blas_thread():
        bp_ns = best_ns(backprop, ex.repeats)
        row = {"n": n, "pass_flops": per_pass, "backprop_flops": bp.flops(),
               "backprop_ns": bp_ns, "measured": measure}
        if measure:  # the bill from one run, the time from unprofiled runs
            with profile(memory=False, events=False) as fd:
                grads = numerical_grad(loss, weights)
            row["fd_flops"], row["passes"] = fd.flops(), grads.passes
            row["max_error"] = max(float(np.abs(g.numpy() - a).max())
                                   for g, a in zip(grads, analytic, strict=True))
            row["fd_ns"] = best_ns(lambda: numerical_grad(loss, weights), ex.repeats)
        else:
            with no_grad():
                row["fd_ns"] = 2 * n * best_ns(loss, ex.repeats)
            row["fd_flops"], row["passes"] = 2 * n * per_pass, 2 * n
    row["flop_ratio"] = row["fd_flops"] / row["backprop_flops"]
    row["time_ratio"] = row["fd_ns"] / row["backprop_ns"]
    return row


@claim("naive-fd", "naive finite differences against one backward")
def _naive_fd(ex: Experiment, measured_up_to: int = 1_000) -> Finding:
    """numerical_grad (central: 2n passes) against one forward + backward, n = 1e2 .. 1e5."""
    cases = [_fd_case(ex, n, n <= measured_up_to) for n in FD_SIZES]
    rows = tuple(
        f"n = {r['n']:,}: {r['passes']:,} passes, {human(r['fd_flops'])} FLOPs vs "
        f"{human(r['backprop_flops'])} (x{r['flop_ratio']:,.0f}); {r['fd_ns'] / 1e9:.3f} s vs "
        f"{r['backprop_ns'] / 1e6:.3f} ms (x{r['time_ratio']:,.0f}), "
        + ("numerical_grad billed and timed" if r["measured"]
           else "computed: 2n x one pass, billed and timed")
        for r in cases)
    measured = [r for r in cases if r["measured"]]
    per_n = [r["flop_ratio"] / r["n"] for r in cases]
    exact = all(r["fd_flops"] == 2 * r["n"] * r["pass_flops"] for r in measured)
    err = max(r["max_error"] for r in measured)
    return Finding(
        claimed="O(n) forward passes for n parameters (backprop: one forward + one backward)",
        measured=(f"finite differences cost {per_n[-1]:.2f}·n times one backprop step in "
                  f"FLOPs at n = {cases[-1]['n']:,} (x{cases[-1]['flop_ratio']:,.0f}), and "
                  f"x{cases[0]['time_ratio']:,.0f} to x{cases[-1]['time_ratio']:,.0f} in time "
                  f"from n = {cases[0]['n']} to {cases[-1]['n']:,}; numerical_grad run "
                  f"(billed: exactly 2n passes, and timed) up to n = {measured[-1]['n']:,}, "
                  "larger n computed from one pass's bill and time"),
        holds=exact and max(per_n) <= 1.5 * min(per_n) and err < 1e-6,
        reason=("a central difference evaluates the loss twice per weight, 2n passes of F "
                "FLOPs, where backprop's forward + backward costs about 2-3 F for all n "
                f"weights at once, so the ratio grows as n (its FLOP ratio per n stays "
                f"{min(per_n):.2f} to {max(per_n):.2f}). The time ratio grows as n too, from "
                "a smaller start: a pass of a small model is mostly fixed per-op overhead. "
                f"The differences agree with backward to {err:.1e}"),
        values={"cases": cases}, rows=rows)


def _memory_rule(bill):
    return next(r for r in bill.rules() if r.name.startswith("activations saved"))


def _cnn_step(batch: int):
    manual_seed(0)
    model = CNN(image_size=28)
    opt = SGD(model.parameters(), lr=0.1)
    x, y = randn(batch, 1, 28, 28), randint(0, 10, (batch,))
    with profile() as bill:
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return bill


def _gpt_step(batch: int, checkpoint: str = "none"):
    manual_seed(0)
    cfg = GPTConfig(n_layer=2, n_head=4, d_model=64, ctx=64, vocab=256, checkpoint=checkpoint)
    model = GPT(cfg)
    opt = AdamW(model.parameters(), lr=1e-3)
    idx = randint(0, cfg.vocab, (batch, cfg.ctx))
    with profile() as bill:
        model(idx, idx)[1].backward()
        opt.step()
    return bill


@claim("activation-memory", "activations as backprop's main memory cost")
def _activation_memory(ex: Experiment) -> Finding:
    """bill.rules()'s memory rule on a CNN and a GPT, at batch 1 and at a training batch."""
    cases = {"CNN 28x28, batch 1": _cnn_step(1), "CNN 28x28, batch 32": _cnn_step(32),
             "GPT 2x64 ctx 64, batch 1": _gpt_step(1), "GPT 2x64 ctx 64, batch 8": _gpt_step(8)}
    rules = {name: _memory_rule(bill) for name, bill in cases.items()}
    rows = tuple(f"{name}: saved activations {100 * r.measured:.0f}% of peak "
                 f"{human_bytes(cases[name].peak_bytes)} ({'holds' if r.holds else 'differs'})"
                 for name, r in rules.items())
    training = [r for name, r in rules.items() if not name.endswith("batch 1")]
    return Finding(
        claimed="storing activations for backward is the main memory cost",
        measured=(", ".join(f"{100 * r.measured:.0f}%" for r in training) + " of peak memory "
                  "is activations saved for backward at training batches (CNN batch 32, GPT "
                  "batch 8), more than weights, gradients and optimizer state together; "
                  "less than them at batch 1 (measured memory)"),
        holds=all(r.holds for r in training),
        reason=("saved activations grow with batch x sequence and depth while weights, "
                "gradients and optimizer state are fixed: at batch 1 the model states win, "
                "at a training batch the activations do. The GPT at batch 8, "
                + rules["GPT 2x64 ctx 64, batch 8"].reason),
        values={name: r.measured for name, r in rules.items()}, rows=rows)


@claim("checkpointing", "checkpointing trades compute for memory")
def _checkpointing(ex: Experiment) -> Finding:
    """The small GPT at batch 8 with and without full checkpointing of its blocks."""
    plain, ckpt = _gpt_step(8), _gpt_step(8, "full")
    rule = next(r for r in ckpt.rules() if r.name.startswith("checkpointing"))
    saved = (plain.saved_bytes_peak, ckpt.saved_bytes_peak)
    return Finding(
        claimed="recomputing activations saves memory for extra compute",
        measured=(f"peak saved for backward {human_bytes(saved[0])} -> "
                  f"{human_bytes(saved[1])} ({100 * (1 - saved[1] / saved[0]):.0f}% less), "
                  f"peak memory {human_bytes(plain.peak_bytes)} -> "
                  f"{human_bytes(ckpt.peak_bytes)}, for {100 * rule.measured:.1f}% more FLOPs "
                  "(measured bills)"),
        holds=saved[1] < saved[0] and rule.holds,
        reason=rule.reason,
        values={"saved": saved, "peak": (plain.peak_bytes, ckpt.peak_bytes),
                "recompute_share": rule.measured})


def _layer_grad_norms(activation: str, layers: int = 20, width: int = 32) -> list[float]:
    """‖dL/dW‖ of every layer of a `layers`-layer MLP after one backward, first to last."""
    manual_seed(0)
    model = MLP([width] * layers + [10], activation=activation)
    if activation == "relu":  # He initialisation: the variance-preserving start for ReLU
        for name, p in model.named_parameters():
            if name.endswith("weight"):
                init.kaiming_normal_(p, nonlinearity="relu")
    x, y = randn(64, width), randint(0, 10, (64,))
    F.cross_entropy(model(x), y).backward()
    return [float(np.linalg.norm(getattr(model, f"fc{k}").weight.grad.numpy()))
            for k in range(1, layers + 1)]


@claim("vanishing-gradients", "vanishing gradients in a deep sigmoid network")
def _vanishing(ex: Experiment) -> Finding:
    """‖dL/dW‖ of the first layer over the last's, 20-layer MLPs of width 32."""
    sig, relu = _layer_grad_norms("sigmoid"), _layer_grad_norms("relu")
    ratio, relu_ratio = sig[0] / sig[-1], relu[0] / relu[-1]
    per_layer = ratio ** (1 / (len(sig) - 1))
    return Finding(
        claimed="∂L/∂z → 0 in deep sigmoid networks",
        measured=(f"20-layer sigmoid MLP: ‖dL/dW1‖ / ‖dL/dW20‖ = {ratio:.2e} "
                  f"({sig[0]:.2e} / {sig[-1]:.2e}); the same with ReLU and He init "
                  f"{relu_ratio:.2f} (p.grad after one backward)"),
        holds=ratio < 1e-3,
        reason=(f"each sigmoid layer multiplies the gradient by Wᵀ and by σ'(z), which is at "
                f"most 1/4; PyTorch's default init (uniform, std 1/√(3·fan_in)) shrinks a "
                f"vector by about 0.58 more: {per_layer:.2f} per layer measured, "
                f"{per_layer:.2f}^19 over 19 layers. ReLU's derivative is 1 where it is on, "
                "and He init keeps the variance, so its gradients keep their size"),
        values={"sigmoid": sig, "relu": relu, "ratio": ratio, "relu_ratio": relu_ratio})
