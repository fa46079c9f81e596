"""The claims about wall time: matmul's share of a step's time (seed 000) and backward =
2x forward in time, per layer type (seed 002). Timed on one BLAS thread, best of k."""

from __future__ import annotations

from flopgrad import ledger as L
from flopgrad import nn
from flopgrad.claims.core import Experiment, Finding, claim
from flopgrad.claims.seeds import SEED_000_MLP
from flopgrad.claims.timing import best_ns, forward_backward_ns, one_blas_thread
from flopgrad.creation import manual_seed, randint, randn
from flopgrad.models import MLP
from flopgrad.nn import functional as F
from flopgrad.report import profile

__all__ = ["layer_cases", "layer_flops", "layer_times", "LAYER_SHAPES"]

# each layer type at a small size, fed an input that needs a gradient (a middle layer)
LAYER_SHAPES = {
    "Linear(256, 256)": (64, 256),
    "Conv2d(16, 16, 3)": (8, 16, 16, 16),
    "attention (4 heads, d 64)": (4, 32, 64),
    "LayerNorm(256)": (64, 256),
    "GELU": (64, 256),
    "ReLU": (64, 256),
    "Tanh": (64, 256),
}


def layer_cases() -> list[tuple]:
    """(name, call, input, parameters) for every layer type of LAYER_SHAPES.

    >>> [name.split("(")[0].strip() for name, *_ in layer_cases()][:3]
    ['Linear', 'Conv2d', 'attention']
    """
    manual_seed(0)
    modules = [nn.Linear(256, 256), nn.Conv2d(16, 16, 3, padding=1),
               nn.MultiheadAttention(64, 4, batch_first=True), nn.LayerNorm(256), nn.GELU(),
               nn.ReLU(), nn.Tanh()]
    cases = []
    for (name, shape), module in zip(LAYER_SHAPES.items(), modules, strict=True):
        x = randn(*shape).requires_grad_(True)
        if isinstance(module, nn.MultiheadAttention):
            call = (lambda m: lambda x: m(x, x, x, need_weights=False)[0])(module)
        else:
            call = module
        cases.append((name, call, x, list(module.parameters())))
    return cases


def layer_flops(ex: Experiment) -> dict:
    """name -> (forward FLOPs, backward FLOPs) of one forward and backward of each layer.

    >>> flops = layer_flops(Experiment())
    >>> flops["ReLU"], flops["Linear(256, 256)"][0] == 2 * 64 * 256 * 256 + 64 * 256
    ((16384, 16384), True)
    """
    def make():
        out = {}
        for name, call, x, _ in layer_cases():
            g = randn(*call(x).shape)
            with profile(memory=False) as bill:
                call(x).backward(g)
            out[name] = (bill.flops("forward"), bill.flops("backward"))
        return out

    return ex.shared("layer-flops", make)


def layer_times(ex: Experiment) -> dict:
    """name -> (forward ns, backward ns), each the best of ex.repeats, on one BLAS thread.

    >>> times = layer_times(Experiment(repeats=1))
    >>> len(times), all(f > 0 and b > 0 for f, b in times.values())
    (7, True)
    """
    def make():
        out = {}
        with one_blas_thread():
            for name, call, x, params in layer_cases():
                g = randn(*call(x).shape)
                out[name] = forward_backward_ns(lambda c=call, x=x: c(x), [x, *params], g,
                                                ex.repeats)
        return out

    return ex.shared("layer-times", make)


def _mlp_step_times(ex: Experiment, batch: int) -> dict:
    """Seed 000's MLP at `batch`: FLOP share of matmul, and its share of the step's time."""
    manual_seed(0)
    model = MLP(SEED_000_MLP)
    x, y = randn(batch, SEED_000_MLP[0]), randint(0, SEED_000_MLP[-1], (batch,))

    def step():
        for p in model.parameters():
            p.grad = None
        F.cross_entropy(model(x), y).backward()

    with one_blas_thread():
        wall = best_ns(step, ex.repeats)
        kernel_ns: list[list[int]] = []  # per run, every op's kernel time in op order
        for _ in range(ex.repeats):
            with profile(memory=False) as bill:
                step()
            kernel_ns.append([e[L.END] - e[L.START] for e in bill.events])
    fastest = [min(ts) for ts in zip(*kernel_ns, strict=True)]  # best of k, op by op
    costs = bill.costs()
    matmul = sum(t for t, c in zip(fastest, costs, strict=True) if c[0])
    kernels = sum(fastest)
    elementwise = {}
    for t, ev, c in zip(fastest, bill.events, costs, strict=True):
        if not c[0]:
            elementwise[ev[L.OP].name] = elementwise.get(ev[L.OP].name, 0) + t
    return {"batch": batch, "flop_share": bill.flops(kind="tensor") / bill.flops(),
            "time_share": matmul / wall, "kernel_share": kernels / wall, "wall_ns": wall,
            "matmul_ns": matmul, "ops": len(bill.events),
            "other_flops": bill.flops(kind="other"), "other_ns": elementwise}


@claim("matmul-time", "matmul's share of the wall time")
def _matmul_time(ex: Experiment) -> Finding:
    """Seed 000's MLP at batch 1 and 256: matmul's share of FLOPs against its share of time."""
    small, large = _mlp_step_times(ex, 1), _mlp_step_times(ex, 256)
    rows = tuple(
        f"batch {r['batch']:>3}: matmul {100 * r['flop_share']:.2f}% of FLOPs, "
        f"{100 * r['time_share']:.1f}% of the step's {r['wall_ns'] / 1e3:.0f} us; all "
        f"{r['ops']} op kernels {100 * r['kernel_share']:.1f}%, the rest is Python dispatch "
        "and autograd bookkeeping" for r in (small, large))
    top = sorted(small["other_ns"].items(), key=lambda kv: -kv[1])[:3]
    parts = ", ".join(f"{name} {100 * ns / small['wall_ns']:.1f}%" for name, ns in top)
    return Finding(
        claimed="elementwise ops are trivial next to matmul (so matmul dominates time too)",
        measured=(f"matmul {100 * small['time_share']:.0f}% of the wall time at batch 1 "
                  f"against {100 * small['flop_share']:.1f}% of the FLOPs; "
                  f"{100 * large['time_share']:.0f}% at batch 256 (measured, best of "
                  f"{ex.repeats}, one BLAS thread; linear's bias add runs inside its matmul "
                  "kernel)"),
        holds=small["time_share"] >= 0.9 * small["flop_share"],
        reason=(f"the non-matmul ops are {small['other_flops']:,} FLOPs at batch 1 "
                f"({100 * (1 - small['flop_share']):.2f}%) but take {parts} of the time: "
                "every op pays a fixed cost (dispatch, a NumPy call, an allocation) of "
                "microseconds whatever its FLOPs, and an elementwise op moves as many bytes "
                "as it does FLOPs; FLOPs count arithmetic, not overhead or memory traffic. "
                "At a larger batch the matmuls' share of the time grows towards their share "
                "of the FLOPs"),
        values={"batch1": small, "batch256": large}, rows=rows)


@claim("backward-2x-time", "backward = 2x forward in wall time, per layer type")
def _backward_time(ex: Experiment) -> Finding:
    """Forward and backward of each layer type: the time ratio beside the FLOP ratio."""
    flops, times = layer_flops(ex), layer_times(ex)
    per = {name: {"flop_ratio": b / f, "time_ratio": tb / tf, "forward_ns": tf,
                  "backward_ns": tb} for (name, (f, b)), (tf, tb)
           in zip(flops.items(), times.values(), strict=True)}
    rows = tuple(f"{name:<26} FLOPs backward/forward {v['flop_ratio']:5.2f}   time "
                 f"{v['time_ratio']:5.2f} ({v['forward_ns'] / 1e3:.0f} us / "
                 f"{v['backward_ns'] / 1e3:.0f} us)" for name, v in per.items())
    off = [name for name, v in per.items()
           if abs(v["time_ratio"] - v["flop_ratio"]) > 0.25 * v["flop_ratio"]]
    near = [_short(name) for name, v in per.items() if abs(v["time_ratio"] - 2) <= 0.3]
    lo = min(per.items(), key=lambda kv: kv[1]["time_ratio"])
    hi = max(per.items(), key=lambda kv: kv[1]["time_ratio"])
    why = list(dict.fromkeys(_WHY[_short(name)] for name in off))  # each reason once
    return Finding(
        claimed="backward time = 2x forward time",
        measured=(f"backward/forward time from {lo[1]['time_ratio']:.2f} ({_short(lo[0])}) to "
                  f"{hi[1]['time_ratio']:.2f} ({_short(hi[0])}); the FLOP ratio beside each "
                  f"(times measured, best of {ex.repeats}, one BLAS thread; FLOPs from bills)"),
        holds=len(near) == len(per),
        reason=(f"about 2x in time for {', '.join(near) or 'no layer'}; the time ratio is "
                f"not the FLOP ratio for {', '.join(map(_short, off)) or 'no layer'}. "
                "The 2x is a matmul's: its backward is two matmuls of the forward's size (dW "
                "and dX); other layers' time goes by passes over memory and by how many ops "
                "run, not by FLOPs" + "".join("; " + w for w in why)),
        values=per, rows=rows)


def _short(name: str) -> str:
    return name.split("(")[0].strip()


_SMALL = ("ReLU's and Tanh's ops take microseconds, mostly fixed per-op overhead, so their "
          "time ratio follows how many ops run, not their FLOPs")

# why a layer's backward/forward time ratio can part from its FLOP ratio
_WHY = {
    "Linear": "Linear's bias gradient is a reduction over the batch, slow for its FLOPs",
    "Conv2d": "Conv2d's backward also folds the windows' gradients back onto the image, a "
              "scatter that moves memory and does no FLOPs",
    "attention": "attention's reshapes, softmax and masking take time that its FLOPs "
                 "(mostly the projections) hardly show",
    "LayerNorm": "LayerNorm is a few passes over memory each way, counted at a few FLOPs per "
                 "element",
    "GELU": "GELU's time is in erf and exp, each counted as one FLOP: its forward and backward "
            "both evaluate them, so they take about the same time",
    "ReLU": _SMALL,
    "Tanh": _SMALL,
}
