"""Times the embedded default end to end, M0 preparation included, and prints its table.

    python launchers/benchmark_default.py [extra overrides...]

Uses a fresh model cache so the seed SFT is part of the measurement. Prints wall time, peak resident
memory of the run, and test accuracy of M0 and of the last iteration.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], usage="%(prog)s [-h] [overrides ...]")
    _, overrides = parser.parse_known_args(argv)  # the rest go to `python -m irpo`
    run_dir = Path(tempfile.mkdtemp(prefix="irpo-bench-")) / "run"
    env = {**os.environ, "IRPO_CACHE": tempfile.mkdtemp(prefix="irpo-cache-")}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "irpo", f"hydra.run.dir={run_dir}", *overrides], env=env, check=True)
    seconds = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    rows = json.loads((run_dir / "results.json").read_text())["rows"]
    first, last = rows[0], rows[-1]
    print(
        f"\nwall time: {seconds / 60:.1f} min ({seconds:.0f} s) on {os.cpu_count()} CPU cores; "
        f"peak resident memory {peak_mib:.0f} MiB"
    )
    print(
        f"M0 test accuracy: greedy {100 * first['greedy_accuracy']:.1f}%, "
        f"majority {100 * (first['majority_accuracy'] or 0):.1f}%"
    )
    print(
        f"M{last['iteration']} test accuracy: greedy {100 * last['greedy_accuracy']:.1f}%, "
        f"majority {100 * (last['majority_accuracy'] or 0):.1f}%"
    )
    print(f"run directory: {run_dir}")


if __name__ == "__main__":
    main(sys.argv[1:])
