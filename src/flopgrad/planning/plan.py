"""fg.plan: does a GPT training run fit, on how many GPUs, how fast: the per-GPU plan for
data, tensor, pipeline and sequence parallelism with ZeRO, mixed precision and recompute.

Each number is counted exactly where it can be and set beside its published formula:
- model states per GPU: the parameters of the first pipeline stage (its layers' tensor-
  parallel share, the embeddings) under ZeRO, by a named bytes-per-parameter convention
  (`planning.parallel`);
- activations per GPU: a meta step of ONE tensor-parallel shard of a layer (the model code
  run at the shard's widths, `GPTConfig(tp=...)`, in the run's dtype) gives its saved bytes
  exactly; sequence parallelism splits the replicated ones (the full-width tensors) by tp;
  times the stage's layers and the micro-batches in flight (1F1B: p on the first stage,
  times 1 + (p − 1)/(p·v) when interleaved), beside Korthikanti et al. 2022's formula;
- communication per GPU per step (ring collectives) and the pipeline bubble;
- time per step: each op of the shard's meta step on a roofline (FLOPs at the GPU's dense
  peak times `efficiency`, bytes at its memory bandwidth), communication at the link
  bandwidths, not overlapped, and the bubble: an estimate, and close to a lower bound.

>>> import flopgrad as fg
>>> p = fg.plan("gpt3-175b", gpus=1024, tp=8, pp=8, sp=True, recompute="selective",
...             zero=1, batch=1536)
>>> p.fits, round(p.memory["activations"] / 2**30, 4), round(p.korthikanti / 2**30, 4)
(True, 9.0, 9.5625)
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

from flopgrad import ledger as L
from flopgrad.creation import meta, randint
from flopgrad.dtypes import as_dtype
from flopgrad.files import write_atomic
from flopgrad.models import GPT, GPTConfig
from flopgrad.planning import parallel as P
from flopgrad.planning.hardware import GPUS
from flopgrad.planning.presets import model_config
from flopgrad.report import profile
from flopgrad.report.html import _STYLE, _legend
from flopgrad.report.tables import human, human_bytes

__all__ = ["Plan", "plan", "search", "to_html"]

_DTYPES = {"bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16",
           "float16": "float16", "fp32": "float32", "float32": "float32"}


@dataclass
class Plan:
    """One layout of a training run and what it costs per GPU; `fits` says whether its
    memory is within the GPU's."""

    config: GPTConfig
    gpus: int
    dp: int
    tp: int
    pp: int
    sp: bool
    zero: int
    recompute: str
    micro_batch: int
    micro_batches: int
    interleave: int
    dtype: str
    gpu: str
    memory: dict  # per GPU, first pipeline stage: weights, gradients, optimizer_state, ...
    korthikanti: float  # Korthikanti et al.'s activation bytes for the same layout
    communication: dict  # bytes per GPU per step: dp, tp, pp
    bubble: float  # pipeline bubble over ideal compute
    step_seconds: float
    mfu: float
    tokens_per_second: float
    fits: bool
    reason: str = ""
    run: dict = field(default_factory=dict)  # days and cost for `tokens`, when given

    def summary(self) -> str:
        """A few lines: the layout, the memory per GPU beside the formulas, time."""
        m, hb = self.memory, human_bytes
        lines = [
            f"{self.gpus} x {GPUS[self.gpu].name}: dp {self.dp} x tp {self.tp} x pp "
            f"{self.pp}{' (sp)' if self.sp else ''}, ZeRO {self.zero}, recompute "
            f"{self.recompute}, {self.dtype}, micro-batch {self.micro_batch} x "
            f"{self.micro_batches}"
            + (f", interleave {self.interleave}" if self.interleave > 1 else ""),
            f"memory per GPU {hb(m['total'])} of {hb(GPUS[self.gpu].memory_bytes)}"
            f" ({'fits' if self.fits else 'does not fit: ' + self.reason}): weights "
            f"{hb(m['weights'])}, gradients {hb(m['gradients'])}, optimizer state "
            f"{hb(m['optimizer_state'])}, activations {hb(m['activations'])} (Korthikanti "
            f"et al.: {hb(self.korthikanti)})",
            f"communication per GPU per step: data parallel {hb(self.communication['dp'])}, "
            f"tensor parallel {hb(self.communication['tp'])}, pipeline "
            f"{hb(self.communication['pp'])}; pipeline bubble {100 * self.bubble:.1f}% of "
            "compute",
            f"step {self.step_seconds:.3g} s, MFU {100 * self.mfu:.1f}%, "
            f"{human(self.tokens_per_second)} tokens/s",
        ]
        if self.run:
            cost = f", ${self.run['cost']:,.0f}" if self.run.get("cost") is not None else ""
            lines.append(f"run of {self.run['tokens']:.3g} tokens: {self.run['days']:,.1f} days"
                         f"{cost}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def plan(model: str | GPTConfig, gpus: int, batch: int = 512, seq: int | None = None,
         dp: int | None = None, tp: int = 1, pp: int = 1, sp: bool = False, zero: int = 0,
         micro_batch: int = 1, recompute: str = "none", interleave: int = 1,
         dtype: str = "bf16", gpu: str = "h100", convention: str = "zero",
         efficiency: float = 0.75, tokens: float | None = None,
         price_per_gpu_hour: float | None = None) -> Plan:
    """The per-GPU plan of training `model` (a preset, a GPTConfig or a GPT) on `gpus` GPUs
    with a global batch of `batch` sequences of `seq` tokens (default the model's context).
    recompute="auto" takes the least recompute (none, selective, full) that fits.

    >>> import flopgrad as fg
    >>> p = fg.plan("gpt2", gpus=8, batch=64, micro_batch=8)
    >>> p.dp, p.micro_batches, p.fits
    (8, 1, True)
    """
    planner = _Planner(model, seq, dtype, gpu, convention, efficiency)
    choices = P.RECOMPUTE if recompute == "auto" else (recompute,)
    for rec in choices:
        p = planner.plan(gpus, batch, dp, tp, pp, sp, zero, micro_batch, rec, interleave,
                         tokens, price_per_gpu_hour)
        if p.fits:
            break
    return p


def search(model: str | GPTConfig, gpus: int, batch: int = 512, seq: int | None = None,
           dtype: str = "bf16", gpu: str = "h100", convention: str = "zero",
           efficiency: float = 0.75, max_tp: int = 8, tokens: float | None = None,
           price_per_gpu_hour: float | None = None) -> list[Plan]:
    """Every layout (dp, tp ≤ max_tp, pp, sp, ZeRO, recompute, micro-batch) of `gpus` GPUs,
    the ones that fit first, ranked by predicted step time; the others say why not.

    >>> import flopgrad as fg
    >>> plans = fg.planning.search("gpt2", gpus=8, batch=64)
    >>> plans[0].fits, plans[0].step_seconds <= plans[1].step_seconds
    (True, True)
    """
    planner = _Planner(model, seq, dtype, gpu, convention, efficiency)
    cfg = planner.cfg
    out = []
    for tp in (t for t in (1, 2, 4, 8, 16) if t <= max_tp):
        if cfg.n_head % tp or cfg.d_model % tp or gpus % tp:
            continue
        for pp in (p for p in range(1, cfg.n_layer + 1) if cfg.n_layer % p == 0):
            if gpus % (tp * pp):
                continue
            dp = gpus // (tp * pp)
            for mb in (1, 2, 4, 8):
                if batch % (dp * mb):
                    continue
                for sp, zero, rec in itertools.product((False, True) if tp > 1 else (False,),
                                                       range(4), P.RECOMPUTE):
                    out.append(planner.plan(gpus, batch, dp, tp, pp, sp, zero, mb, rec, 1,
                                            tokens, price_per_gpu_hour))
    if not out:
        raise ValueError(f"search: no layout of {gpus} GPUs divides the batch {batch} and the "
                         f"model ({cfg.n_layer} layers, {cfg.n_head} heads)")
    return sorted(out, key=lambda p: (not p.fits, p.step_seconds))


class _Planner:
    """Measures shards once per (tp, recompute, micro-batch) and builds plans from them."""

    def __init__(self, model, seq, dtype, gpu, convention, efficiency):
        self.cfg = (model_config(model) if isinstance(model, str)
                    else model.cfg if isinstance(model, GPT) else model)
        if not isinstance(self.cfg, GPTConfig):
            raise TypeError(f"plan: model must be a preset name, a GPTConfig or a GPT, got "
                            f"{type(model).__name__}")
        self.seq = self.cfg.ctx if seq is None else P._count("seq", seq)
        if self.seq > self.cfg.ctx:
            raise ValueError(f"plan: seq {self.seq} exceeds the model's context {self.cfg.ctx}")
        if dtype not in _DTYPES:
            raise ValueError(f"plan: dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
        self.dtype = _DTYPES[dtype]
        if gpu not in GPUS:
            raise KeyError(f"unknown gpu {gpu!r}; known: {', '.join(sorted(GPUS))}")
        self.gpu = GPUS[gpu]
        self.gpu_name = gpu
        if self.gpu.memory_bandwidth is None:
            raise ValueError(f"plan: no bandwidth figures for {gpu}; plan for one of "
                             f"{', '.join(k for k, g in GPUS.items() if g.memory_bandwidth)}")
        P._convention(convention)
        self.convention = convention
        if not 0 < efficiency <= 1:
            raise ValueError(f"plan: efficiency must be in (0, 1], got {efficiency}")
        self.efficiency = efficiency
        self._shards: dict = {}

    def shard(self, tp: int, recompute: str, b: int) -> dict:
        """A meta step of a one-layer model at one tensor-parallel shard's widths: the
        layer's saved bytes (all, and those of full width), and the roofline seconds and
        FLOPs of the layer and of the rest (embeddings, head, loss)."""
        key = (tp, recompute, b)
        if key not in self._shards:
            cfg = replace(self.cfg, n_layer=1, tp=tp, dropout=0.0,
                          checkpoint=recompute if recompute != "none" else "none")
            with meta():
                model = GPT(cfg)
            model.to(as_dtype(self.dtype))
            idx = randint(0, cfg.vocab, (b, self.seq), device="meta")
            with profile() as bill:
                model(idx, targets=idx)[1].backward()
            self._shards[key] = self._read(bill)
        return self._shards[key]

    def _read(self, bill) -> dict:
        saved = replicated = 0
        for e in bill.saved():
            in_layer = e["scope"] == "blocks.0" or e["scope"].startswith("blocks.0.") or (
                e["op"] == "checkpoint")
            if in_layer and not e["leaf"] and e["phase"] == "forward":
                saved += e["bytes"]
                if e["shape"][-1:] == (self.cfg.d_model,):
                    replicated += e["bytes"]
        peak, bw = self.gpu.peak_flops * self.efficiency, self.gpu.memory_bandwidth
        seconds = {"layer": 0.0, "rest": 0.0}
        flops = {"layer": 0, "rest": 0, "model": 0, "layer_model": 0}  # model: no recompute
        for ev, c in zip(bill.events, bill.costs(), strict=True):
            part = "layer" if ev[L.SCOPE].startswith("blocks.0") else "rest"
            seconds[part] += max((c[0] + c[1]) / peak, c[3] / bw)
            flops[part] += c[0] + c[1]
            if ev[L.PHASE] != "recompute":
                flops["model"] += c[0] + c[1]
                if part == "layer":
                    flops["layer_model"] += c[0] + c[1]
        return {"saved": saved, "replicated": replicated, "seconds": seconds, "flops": flops}

    def plan(self, gpus, batch, dp, tp, pp, sp, zero, micro_batch, recompute, interleave,
             tokens, price) -> Plan:
        cfg = self.cfg
        dp = P.check_layout(cfg.n_layer, cfg.n_head, cfg.d_model, gpus, dp, tp, pp)
        rec = P._recompute(recompute)
        b, v = P._count("micro_batch", micro_batch), P._count("interleave", interleave)
        if sp and tp == 1:
            raise ValueError("plan: sequence parallelism (sp) needs tp > 1")
        if batch % (dp * b):
            raise ValueError(f"plan: the batch {batch} is not a whole number of micro-batches "
                             f"of {b} on each of dp {dp} data-parallel ranks")
        if cfg.n_layer % (pp * v):
            raise ValueError(f"plan: pp {pp} x interleave {v} does not divide {cfg.n_layer} "
                             "layers")
        m = batch // (dp * b)
        s, h, a, n_layer = self.seq, cfg.d_model, cfg.n_head, cfg.n_layer
        shard = self.shard(tp, rec, b)
        layers = n_layer // pp
        per_layer_params = (replace(cfg, n_layer=2, tp=tp).num_params()
                            - replace(cfg, n_layer=1, tp=tp).num_params())
        embeddings = cfg.vocab * h // tp + cfg.ctx * h
        params = layers * per_layer_params + embeddings  # the first stage's
        states = P.model_state_bytes(params, dp, zero, self.convention)
        layer_bytes = shard["saved"] - (shard["replicated"] * (tp - 1) // tp if sp else 0)
        in_flight = min(pp, m)
        factor = 1 + (pp - 1) / (pp * v) if v > 1 else 1
        activations = int(layer_bytes * layers * in_flight * factor)
        memory = {**{k: states[k] for k in ("weights", "gradients", "optimizer_state")},
                  "activations": activations}
        memory["total"] = sum(memory.values())
        korthikanti = P.korthikanti_activation_bytes(s, b, h, a, n_layer, tp, pp, sp, rec, v)
        nbytes = as_dtype(self.dtype).itemsize
        comm = {"dp": P.data_parallel_bytes(params, dp, zero, self.convention, m)["total"],
                "tp": P.tensor_parallel_bytes(s, b, h, layers, tp, m, sp, rec, nbytes)
                if tp > 1 else 0.0,
                "pp": P.pipeline_p2p_bytes(s, b, h, pp, m, v, nbytes)}
        bubble = float(P.pipeline_bubble(pp, m, v))
        t_micro = layers * shard["seconds"]["layer"] + shard["seconds"]["rest"] / tp
        compute = m * t_micro * (1 + bubble)
        step = (compute + comm["tp"] / self.gpu.nvlink_bandwidth
                + (comm["dp"] + comm["pp"]) / self.gpu.network_bandwidth)
        full = self.shard(1, "none", b)  # the model's FLOPs, no recompute, one GPU's view
        model_flops = (full["flops"]["layer_model"] * (n_layer - 1)
                       + full["flops"]["model"]) * (batch // b)
        mfu = model_flops / (step * gpus * self.gpu.peak_flops)
        fits = memory["total"] <= self.gpu.memory_bytes
        reason = "" if fits else (
            f"{memory['total'] / 1e9:,.2f} GB > {self.gpu.memory_bytes / 1e9:,.0f} GB "
            f"(activations {activations / 1e9:,.2f} GB, model states "
            f"{states['total'] / 1e9:,.2f} GB)")
        tps = batch * s / step
        run = {}
        if tokens is not None:
            seconds = P._count("tokens", int(tokens)) / tps
            run = {"tokens": float(tokens), "days": seconds / 86400,
                   "cost": None if price is None else seconds / 3600 * gpus * price}
        return Plan(cfg, gpus, dp, tp, pp, sp, zero, rec, b, m, v, self.dtype, self.gpu_name,
                    memory, korthikanti, comm, bubble, step, mfu, tps, fits, reason, run)


_PLAN_COLOURS = {"weights": "#4c78a8", "gradients": "#e45756", "optimizer_state": "#54a24b",
                 "activations": "#f58518"}


def to_html(plans: list[Plan], path, title: str = "flopgrad plan", top: int = 20) -> None:
    """Write plans (one, or a search's ranked list) as one self-contained HTML page: the
    first plan's summary, a stacked bar of memory per GPU for each plan (the GPU's memory
    drawn as a line), and a table, atomically.

    >>> import flopgrad as fg, os, tempfile
    >>> from flopgrad.planning.plan import to_html
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     to_html([fg.plan("gpt2", gpus=8, batch=64)], os.path.join(tmp, "p.html"))
    ...     "<svg" in open(os.path.join(tmp, "p.html")).read()
    True
    """
    import html as _html

    shown = plans[:top]
    limit = GPUS[shown[0].gpu].memory_bytes
    peak = max([p.memory["total"] for p in shown] + [limit])
    width, label, bar_h = 900, 260, 18
    svg = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' "
           f"height='{bar_h * len(shown) + 20}' class='bars'>"]
    for i, p in enumerate(shown):
        y, x = i * bar_h + 5, label
        name = (f"dp {p.dp} tp {p.tp} pp {p.pp}{' sp' if p.sp else ''} Z{p.zero} "
                f"{p.recompute} mb{p.micro_batch}")
        svg.append(f"<text x='0' y='{y + 13}' font-size='12'>{_html.escape(name)}</text>")
        for part, colour in _PLAN_COLOURS.items():
            w = (width - label - 90) * p.memory[part] / peak
            svg.append(f"<rect class='bar' x='{x:.1f}' y='{y}' width='{w:.1f}' "
                       f"height='{bar_h - 4}' fill='{colour}'><title>{part}: "
                       f"{human_bytes(p.memory[part])}</title></rect>")
            x += w
        svg.append(f"<text x='{x + 4:.1f}' y='{y + 13}' font-size='11'>"
                   f"{p.step_seconds:.3g} s</text>")
    line = label + (width - label - 90) * limit / peak
    svg.append(f"<line x1='{line:.1f}' x2='{line:.1f}' y1='0' y2='{bar_h * len(shown) + 10}' "
               "stroke='#333' stroke-dasharray='4'/></svg>")
    head = "".join(f"<th>{h}</th>" for h in ("dp", "tp", "pp", "sp", "ZeRO", "recompute",
                                               "micro-batch", "memory", "fits", "step s",
                                               "MFU", "tokens/s"))
    body = "".join(
        f"<tr><td>{p.dp}</td><td>{p.tp}</td><td>{p.pp}</td><td>{'y' if p.sp else '-'}</td>"
        f"<td>{p.zero}</td><td>{p.recompute}</td><td>{p.micro_batch}</td>"
        f"<td data-v='{p.memory['total']}'>{human_bytes(p.memory['total'])}</td>"
        f"<td>{'yes' if p.fits else 'no'}</td><td>{p.step_seconds:.3g}</td>"
        f"<td>{100 * p.mfu:.1f}%</td><td>{human(p.tokens_per_second)}</td></tr>"
        for p in shown)
    summary = "<br>".join(_html.escape(line) for line in shown[0].summary().splitlines())
    write_atomic(path, (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_html.escape(title)}"
        f"</title><style>{_STYLE}</style></head><body><h1>{_html.escape(title)}</h1>"
        f"<p>{summary}</p><h2>Memory per GPU (dashed: the GPU's {human_bytes(limit)})</h2>"
        + _legend(_PLAN_COLOURS) + "".join(svg)
        + f"<h2>Layouts</h2><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>"
          "</table></body></html>"))
