"""Start-up time of the command line: wall time of ``vaekit --help`` in a fresh process.

Usage: python bench/startup.py [--repeats 9]

Prints the median and min-max over ``repeats`` subprocess runs of ``vaekit --help`` (the console script
next to this Python), and for scale the same for ``python -c pass`` and ``python -c "import torch"``.
Target: ``vaekit --help`` < 0.5 s (it must not import torch; tests/test_speed_design.py checks that).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def wall_times(cmd: list[str], repeats: int) -> list[float]:
    """Seconds of ``repeats`` runs of ``cmd`` (output discarded; a failing command raises)."""
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out.append(time.perf_counter() - start)
    return out


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    p = argparse.ArgumentParser(description="vaekit --help start-up time")
    p.add_argument("--repeats", type=int, default=9)
    args = p.parse_args(argv)
    script = Path(sys.executable).with_name("vaekit")
    commands = {
        "vaekit --help": [str(script), "--help"] if script.exists() else [sys.executable, "-m", "vaekit", "--help"],
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    }
    print(f"load average {os.getloadavg()}; {args.repeats} runs each")
    print("| command | median s | min-max s |\n|---|---|---|")
    results = {}
    for name, cmd in commands.items():
        wall_times(cmd, 1)  # warm the file cache
        times = results[name] = wall_times(cmd, args.repeats)
        print(f"| `{name}` | {statistics.median(times):.3f} | {min(times):.3f}-{max(times):.3f} |", flush=True)
    return results


if __name__ == "__main__":
    main()
