"""Helpers shared by the benchmark scripts: which BLAS ran, with how many threads.

NumPy's BLAS is picked at run time: OpenBLAS chooses a kernel for the CPU unless
OPENBLAS_CORETYPE forces one (and OPENBLAS_L2_SIZE overrides the cache size it tunes
for). The scripts never change these variables; they print what was set and which
kernel actually ran, so a result can be read against its setup. To let OpenBLAS choose:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/<script>.py
"""

from __future__ import annotations

import os

BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
            "MKL_NUM_THREADS")


def _owner(info: dict) -> str:
    """Which package shipped the library: 'numpy', 'scipy', 'torch', ... (from its path)."""
    path = (info.get("filepath") or "").replace(os.sep, "/")
    for part in reversed(path.split("/")[:-1]):
        if part not in ("lib", "libs", ".libs"):
            return part.removesuffix(".libs")
    return "?"


def blas_info() -> str:
    """'numpy: openblas 0.3.31 SkylakeX threads=2; ...' for every BLAS/OpenMP library loaded
    (threadpoolctl); the architecture is the kernel OpenBLAS actually selected."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    return "; ".join(
        f"{_owner(i)}: " + " ".join(str(i[k]) for k in ("internal_api", "version", "architecture")
                                    if i.get(k)) + f" threads={i.get('num_threads')}"
        for i in threadpool_info()) or "no BLAS found"


def blas_env() -> str:
    """The BLAS/threading environment variables that are set (they change which kernel runs)."""
    found = [f"{k}={os.environ[k]}" for k in BLAS_ENV if k in os.environ]
    return " ".join(found) if found else "none set"


def numpy_blas_threads() -> int:
    """Threads NumPy's own BLAS uses (threadpoolctl), else the CPU count."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return os.cpu_count() or 1
    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    mine = [i for i in blas if _owner(i) == "numpy"] or blas
    return int(mine[0]["num_threads"]) if mine else os.cpu_count() or 1


def torch_blas_info() -> str:
    """PyTorch's own BLAS (it links MKL or OpenBLAS itself, separately from NumPy's)."""
    try:
        import torch
    except ImportError:
        return "torch not installed"
    blas = next((part.split("=", 1)[1] for part in torch.__config__.show().replace(",", "\n")
                 .split() if part.startswith("BLAS_INFO=")), "?")
    return (f"torch {torch.__version__} BLAS={blas} threads={torch.get_num_threads()} "
            f"cpu={torch.backends.cpu.get_cpu_capability()}")


def print_setup() -> None:
    """Print NumPy's BLAS (kernel, architecture, threads), its environment, and PyTorch's."""
    import numpy as np

    print(f"BLAS: {blas_info()}")
    print(f"BLAS environment: {blas_env()}")
    print(f"numpy {np.__version__}; {torch_blas_info()}")


def interleaved(fns: dict, repeat: int, number: int, settle: float = 0.0) -> dict:
    """Seconds per call of each function, `repeat` samples each, measured in rounds that
    alternate between the functions (the order rotated and reversed from round to round)
    so that drift in clock speed or background load hits them all alike. Like timeit,
    the garbage collector is off while a sample runs.

    settle > 0: before each sample, sleep that long and make one untimed call. Use it when
    the functions run on different thread pools: an idle OpenBLAS worker busy-waits for a
    while (a tenth of a second or more) before it sleeps, and on a machine with few cores
    it steals the core that the next library's threads (PyTorch's OpenMP) need.
    """
    import time
    import timeit

    timers = {name: timeit.Timer(fn) for name, fn in fns.items()}
    samples: dict = {name: [] for name in fns}
    names, n = list(fns), len(fns)
    for r in range(repeat):
        # every function takes every position, after every other one, equally often
        order = names[r % n:] + names[:r % n]
        for name in (order if (r // n) % 2 == 0 else order[::-1]):
            if settle:
                time.sleep(settle)
                fns[name]()
            samples[name].append(timers[name].timeit(number) / number)
    return samples


def calibrate(fn, seconds: float, warmup: int = 3) -> int:
    """Run fn `warmup` times, then return how many calls take about `seconds`."""
    import time

    for _ in range(warmup):
        fn()
    t = time.perf_counter()
    fn()
    one = time.perf_counter() - t
    return max(1, round(seconds / max(one, 1e-9)))


def cprofile_stats(fn, n: int):
    """cProfile of n calls of fn: the pstats.Stats (total_tt, total_calls, print_stats)."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    for _ in range(n):
        fn()
    prof.disable()
    return pstats.Stats(prof)


def paired_ratio(a: list, b: list) -> tuple:
    """Geometric mean of the per-round ratios a[i] / b[i] and its ~95% confidence interval
    (mean of the log ratios +- 2 standard errors): (ratio, low, high)."""
    import math
    import statistics

    logs = [math.log(x / y) for x, y in zip(a, b, strict=True)]
    mean = statistics.fmean(logs)
    se = statistics.stdev(logs) / math.sqrt(len(logs)) if len(logs) > 1 else float("inf")
    return math.exp(mean), math.exp(mean - 2 * se), math.exp(mean + 2 * se)
