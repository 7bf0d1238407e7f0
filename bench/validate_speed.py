"""How long `carepath validate pathways/` takes, start to exit, as a user runs it.

    .venv/bin/python bench/validate_speed.py [--runs N] [--target SECONDS]

Runs the installed console script as a subprocess N times (after one untimed warm-up, so the
figure is for a warm file cache) and prints the median, min and max wall time. It exits 1 when
the median is over the target (0.5 s), so `make bench` can flag a regression; it is not a unit
test, and nothing in the test suite times anything.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMAND = [str(Path(sys.executable).with_name("carepath")), "validate", "pathways/"]


def run_once() -> float:
    start = time.perf_counter()
    subprocess.run(COMMAND, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--target", type=float, default=0.5, help="seconds, for the median")
    args = parser.parse_args()
    run_once()
    times = [run_once() for _ in range(args.runs)]
    median = statistics.median(times)
    print(f"carepath validate pathways/: {args.runs} runs on {os.cpu_count()} cores, "
          f"median {median:.3f} s, min {min(times):.3f} s, max {max(times):.3f} s "
          f"(target < {args.target} s)")
    return 0 if median < args.target else 1


if __name__ == "__main__":
    sys.exit(main())
