"""Overhead of `flopgrad.torch.profile` over plain PyTorch and over FlopCounterMode.

A step is forward, cross-entropy, backward and an optimizer step, run three ways in one
process: plain PyTorch, under `torch.utils.flop_counter.FlopCounterMode(display=False)`,
and under `flopgrad.torch.profile(model)`. A fourth timed variant, "bill read", reads one
of flopgrad's bills (`bill.flops()` and `str(bill)`, the table), each from a fresh
profile's bill (its costs are computed on the first read). Workloads:

- gpt: the torch GPT of benchmarks/train_step.py (4 layers, 4 heads, d_model 256, ctx 128,
  vocab 256, batch 8, CPU float32, SGD), the model imported from there;
- llama7b: transformers' LlamaForCausalLM with Llama-7B's shapes (32 layers, hidden 4096,
  MLP 11008, 32 heads, vocab 32000) built on the meta device (no memory allocated: checked),
  on 1 x 2048 meta token ids with labels, AdamW.

The variants alternate round by round (_common.interleaved) and the median and minimum
over rounds are reported. overhead = variant - plain; target (issue): flopgrad's overhead
at most 2x FlopCounterMode's (judged on the median of the per-round ratios; no verdict when
the run was too noisy, e.g. another process took the cores), while billing what
FlopCounterMode does not (elementwise and reduction FLOPs, bytes, memory, phases, scopes,
dW/dX roles, saved tensors). The FLOPs of one step by both are printed, not asserted:
flopgrad also counts elementwise ops, reductions and the optimizer, and on CPU the fused
attention kernel (`_scaled_dot_product_flash_attention_for_cpu`) that FlopCounterMode
skips; on the meta device the Llama's masked SDPA runs as its math composite (bmm,
softmax), which both count.

    python benchmarks/torch_bridge.py [--repeat 15] [--seconds 0.3] [--only gpt llama7b]
    python benchmarks/torch_bridge.py --only llama7b --layers 4 --tokens 512   # smaller
    python benchmarks/torch_bridge.py --cprofile llama7b   # where flopgrad's time goes

OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, if the machine sets them, are left as they are and
printed (PyTorch's CPU GEMMs use its own MKL; the meta device runs no kernels at all).
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import time

import torch
from _common import calibrate, cprofile_stats, interleaved, numpy_blas_threads, print_setup
from torch.utils.flop_counter import FlopCounterMode

import flopgrad.torch as fgt

TARGET = 2.0  # flopgrad's overhead / FlopCounterMode's overhead
NOISY = 1.5  # plain's median / its minimum above which a run gives no verdict
VARIANTS = ("plain", "FlopCounterMode", "flopgrad", "bill read")
LLAMA7B = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
               num_attention_heads=32, num_key_value_heads=32, vocab_size=32000)
LLAMA_TOKENS = 2048


def _rss_bytes() -> int:
    """This process's resident memory now (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores"
    except OSError:
        return "?"


def gpt_workload(batch: int = 8):
    """(label, model, step) for train_step.py's torch GPT on CPU with SGD."""
    from train_step import CONFIGS, LR, make_data, torch_models

    _, cfg, default_batch = CONFIGS["gpt"]
    batch = batch or default_batch
    torch.manual_seed(0)
    _, TorchGPT = torch_models()
    model = TorchGPT(**cfg)
    idx, tgt = make_data("gpt")
    idx, tgt = torch.from_numpy(idx[:batch]), torch.from_numpy(tgt[:batch])
    opt = torch.optim.SGD(model.parameters(), lr=LR)

    def step():
        opt.zero_grad()
        model(idx, tgt).backward()  # TorchGPT.forward returns the cross-entropy
        opt.step()

    label = (f"GPT L{cfg['n_layer']} d{cfg['d_model']} h{cfg['n_head']} T{cfg['ctx']} "
             f"b{batch} (CPU float32, SGD)")
    return label, model, step, ""


def llama_workload(layers: int = 32, tokens: int = LLAMA_TOKENS):
    """(label, model, step, note) for Llama-7B's shapes on the meta device with AdamW."""
    import transformers
    from transformers.models.llama import modeling_llama  # noqa: F401 (imported before
    # the memory is measured: only the model's own allocations should count)

    config = transformers.LlamaConfig(**{**LLAMA7B, "num_hidden_layers": layers})
    rss = _rss_bytes()
    start = time.perf_counter()
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(config)
    built = time.perf_counter() - start
    grown = _rss_bytes() - rss
    params = list(model.parameters())
    n = sum(p.numel() for p in params)
    weight_bytes = sum(p.numel() * p.element_size() for p in params)
    devices = {p.device.type for p in params} | {b.device.type for b in model.buffers()}
    if devices != {"meta"} or grown > weight_bytes / 10:
        raise RuntimeError(f"building the meta Llama allocated memory: devices {devices}, "
                           f"resident memory +{grown / 2**20:.0f} MiB")
    ids = torch.zeros((1, tokens), dtype=torch.long, device="meta")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        opt.zero_grad()
        model(input_ids=ids, labels=ids).loss.backward()  # shifted cross-entropy inside
        opt.step()

    note = (f"built in {built:.2f} s on meta: {n:,} parameters ({weight_bytes / 2**30:.1f} "
            f"GiB in float32), resident memory +{grown / 2**20:.0f} MiB (nothing allocated), "
            f"attention {model.config._attn_implementation!r}")
    label = (f"Llama-7B shapes L{layers} d{config.hidden_size} b1 T{tokens} "
             f"(meta, AdamW)")
    return label, model, step, note


WORKLOADS = {"gpt": gpt_workload, "llama7b": llama_workload}


def variants(model, step, number: int) -> dict:
    """{variant: callable}. The flopgrad variant leaves each bill in a queue that the
    "bill read" variant consumes, so every read is a first read of a fresh bill; the queue
    starts with `number` bills so that a round may read before it profiles."""
    bills: collections.deque = collections.deque()

    def under_flop_counter():
        with FlopCounterMode(display=False):
            step()

    def under_flopgrad():
        with fgt.profile(model) as bill:
            step()
        bills.append(bill)

    def read():
        bill = bills.popleft()
        bill.flops()
        str(bill)

    for _ in range(number):
        under_flopgrad()
    return {"plain": step, "FlopCounterMode": under_flop_counter, "flopgrad": under_flopgrad,
            "bill read": read}


def counts(model, step) -> dict:
    """One step under each counter: FlopCounterMode's total, flopgrad's bill."""
    with FlopCounterMode(display=False) as counter:
        step()
    with fgt.profile(model) as bill:
        step()
    return {"fcm": counter.get_total_flops(), "bill": bill}


def print_counts(label: str, c: dict) -> None:
    bill, fcm = c["bill"], c["fcm"]
    total, tensor = bill.flops(), bill.flops(kind="tensor")
    ours_fwd_bwd = bill.flops("forward", kind="tensor") + bill.flops("backward", kind="tensor")
    print(f"{label}: FLOPs of one step: flopgrad {total:,} (tensor {tensor:,}; forward + "
          f"backward tensor {ours_fwd_bwd:,}, optimizer {bill.flops('optimizer'):,}), "
          f"FlopCounterMode {fcm:,}; flopgrad / FlopCounterMode = {total / fcm:.4f} "
          f"(tensor {tensor / fcm:.4f}); {len(bill.ledger.events):,} aten ops billed")
    unknown = bill.unknown_ops()
    print(f"{label}: bill.unknown_ops(): {unknown if unknown else 'none'}")


def cprofile(names, top: int = 25) -> None:
    """cProfile of the flopgrad variant (steps under flopgrad.torch.profile), top by tottime."""
    for name in names:
        label, model, step, _ = WORKLOADS[name]()
        fns = variants(model, step, 1)
        n = calibrate(fns["flopgrad"], 3.0, warmup=2)
        plain = cprofile_stats(step, n)
        stats = cprofile_stats(fns["flopgrad"], n)
        print(f"\n=== cProfile: {label} under flopgrad.torch.profile, {n} steps, "
              f"{stats.total_tt / n * 1e3:.1f} ms per step under the profiler "
              f"({plain.total_tt / n * 1e3:.1f} ms plain), {stats.total_calls / n:.0f} calls "
              f"per step ({plain.total_calls / n:.0f} plain); top {top} by tottime ===")
        stats.strip_dirs().sort_stats("tottime").print_stats(top)
        stats.sort_stats("cumulative").print_stats(top)


def _ms(xs) -> str:
    return f"{statistics.median(xs) * 1e3:>10.2f} ({min(xs) * 1e3:>9.2f})"


def report(label: str, number: int, t: dict) -> str:
    """Print one workload's table; return its verdict line."""
    med = {k: statistics.median(v) for k, v in t.items()}
    low = {k: min(v) for k, v in t.items()}
    print(f"\n{label}: {number} step(s) per sample, {len(t['plain'])} samples per variant")
    print(f"{'ms per step':<18}{'median (min)':>23}{'overhead: median (min)':>27}")
    for k in VARIANTS:
        over = ""
        if k in ("FlopCounterMode", "flopgrad"):
            over = (f"{(med[k] - med['plain']) * 1e3:>+13.2f} "
                    f"({(low[k] - low['plain']) * 1e3:>+9.2f})")
        print(f"{k:<18}{_ms(t[k]):>23}{over:>27}")
    fcm_over = med["FlopCounterMode"] - med["plain"]
    fg_over = med["flopgrad"] - med["plain"]
    ratio = fg_over / fcm_over if fcm_over > 0 else float("inf")
    ratio_min = ((low["flopgrad"] - low["plain"]) / (low["FlopCounterMode"] - low["plain"])
                 if low["FlopCounterMode"] > low["plain"] else float("inf"))
    per_round = [(f - p) / (c - p) for p, c, f in
                 zip(t["plain"], t["FlopCounterMode"], t["flopgrad"], strict=True) if c > p]
    paired = statistics.median(per_round) if per_round else float("inf")
    with_read = (fg_over + med["bill read"]) / fcm_over if fcm_over > 0 else float("inf")
    verdict = "PASS" if paired <= TARGET else "MISS"
    left_out = len(t["plain"]) - len(per_round)
    if left_out:
        print(f"({left_out} round(s) where FlopCounterMode was not slower than plain are left "
              "out of the paired ratio)")
    if left_out > len(t["plain"]) // 4 or med["plain"] > NOISY * low["plain"]:
        verdict = "NO VERDICT (noisy run: plain's median over its minimum "
        verdict += f"{med['plain'] / low['plain']:.2f}x, {left_out} rounds left out; rerun)"
    print(f"flopgrad overhead / FlopCounterMode overhead: {paired:.2f}x paired (median of the "
          f"per-round ratios), {ratio:.2f}x (medians), {ratio_min:.2f}x (minima); "
          f"{with_read:.2f}x with the bill read (medians); target <= {TARGET:.0f}x: {verdict}")
    print(f"over plain PyTorch: FlopCounterMode {med['FlopCounterMode'] / med['plain']:.2f}x, "
          f"flopgrad {med['flopgrad'] / med['plain']:.2f}x (medians)")
    return (f"{label}: flopgrad overhead {fg_over * 1e3:.1f} ms, FlopCounterMode's "
            f"{fcm_over * 1e3:.1f} ms (medians): {paired:.2f}x paired, {ratio:.2f}x of the "
            f"medians (target <= {TARGET:.0f}x): {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="samples per variant")
    parser.add_argument("--seconds", type=float, default=0.3,
                        help="approximate length of one sample of the plain step")
    parser.add_argument("--only", nargs="+", choices=list(WORKLOADS), default=list(WORKLOADS))
    parser.add_argument("--layers", type=int, default=32,
                        help="decoder layers of the meta Llama (7B has 32)")
    parser.add_argument("--batch", type=int, default=8, help="batch of the GPT (8)")
    parser.add_argument("--tokens", type=int, default=LLAMA_TOKENS,
                        help="sequence length of the meta Llama (2048)")
    parser.add_argument("--cprofile", nargs="+", choices=list(WORKLOADS),
                        help="instead of timing, cProfile the flopgrad variant")
    args = parser.parse_args()
    torch.set_num_threads(numpy_blas_threads())
    print_setup()
    if args.cprofile:
        cprofile(args.cprofile)
        return
    print(f"load average before: {_load()} (other processes on the machine distort the "
          "medians; the paired ratio, within a round, is less affected)")
    print(f"{args.repeat} samples per variant of about {args.seconds}s (at least one step), "
          "interleaved round by round; ms per step: median (min)")
    verdicts = []
    for name in args.only:
        if name == "gpt":
            label, model, step, note = gpt_workload(args.batch)
        else:
            label, model, step, note = llama_workload(args.layers, args.tokens)
            if args.layers != LLAMA7B["num_hidden_layers"]:
                label += f" [{args.layers} of Llama-7B's 32 layers]"
        if note:
            print(f"{label}: {note}")
        print_counts(label, counts(model, step))
        number = calibrate(step, args.seconds, warmup=2)
        fns = variants(model, step, number)
        for fn in fns.values():  # warm-up: allocator, optimizer state, caches
            for _ in range(number):
                fn()
        verdicts.append(report(label, number, interleaved(fns, args.repeat, number)))
    print("\nbill read = bill.flops() and str(bill) on a fresh bill (costing every event, "
          "the table), not part of the flopgrad step")
    print("paired = median over rounds of (flopgrad - plain) / (FlopCounterMode - plain) "
          "within a round (the three ran seconds apart, so a slow spell mostly cancels)")
    print(f"load average after: {_load()}")
    for v in verdicts:
        print(v)


if __name__ == "__main__":
    main()
