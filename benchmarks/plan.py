"""`flopgrad plan gpt3-175b --gpus 1024 --search` as a whole process: every layout of 1024
H100s (dp x tp x pp, sp, ZeRO 0-3, recompute, micro-batch) for GPT-3 175B, each from meta
runs of one tensor-parallel shard of a layer. Target: under 10 s.

    python benchmarks/plan.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

COMMAND = [sys.executable, "-m", "flopgrad", "plan", "gpt3-175b", "--gpus", "1024", "--search",
           "--batch", "1536"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    times, out = [], ""
    for _ in range(args.repeat):
        start = time.perf_counter()
        out = subprocess.run(COMMAND, check=True, capture_output=True, text=True).stdout
        times.append(time.perf_counter() - start)
    print(out)
    print(f"{' '.join(COMMAND[1:])}: best {min(times):.2f} s, all "
          f"{', '.join(f'{t:.2f}' for t in times)} s (target < 10 s)")


if __name__ == "__main__":
    main()
