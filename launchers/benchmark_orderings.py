"""Do the paper's orderings hold on the embedded default? Runs Table 1's rows per seed and checks.

    python launchers/benchmark_orderings.py --seeds 0 1 [extra overrides...]

For each seed: `python -m irpo experiment=paper_gsm8k seed=S` (the embedded task unless overridden),
then, from the run directories alone, prints the table and whether each ordering holds:
  1. Iterative RPO improves across iterations (last > M0, and each iteration >= the previous)
  2. DPO+NLL beats DPO (iteration 1, both from M0)
  3. Iterative RPO (last iteration) beats SFT on gold and STaR
  4. chosen log-probs rise during training with the NLL term and fall without it (DPO)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from irpo.report import build_report


def chosen_logp_change(run: Path) -> float:
    log = [json.loads(line) for line in (run / "iter_1/model/train_log.jsonl").read_text().splitlines()]
    k = max(1, len(log) // 5)  # mean of the last fifth minus mean of the first fifth of the steps
    return sum(e["chosen_logps"] for e in log[-k:]) / k - sum(e["chosen_logps"] for e in log[:k]) / k


def accuracy(run: Path, t: int) -> float:
    return json.loads((run / f"iter_{t}/metrics.json").read_text())["eval"]["greedy_accuracy"]


def check(sweep: Path) -> dict[str, bool]:
    irpo = sweep / "irpo"
    iterations = sorted(int(p.name.split("_")[1]) for p in irpo.glob("iter_*") if (p / "metrics.json").exists())
    curve = [accuracy(irpo, t) for t in iterations]
    last = curve[-1]
    result = {
        "IRPO: last iteration > M0": last > curve[0],
        "IRPO: monotone over iterations": all(b >= a for a, b in zip(curve, curve[1:])),
        "DPO+NLL > DPO (iteration 1)": accuracy(irpo, 1) > accuracy(sweep / "dpo", 1),
        "IRPO > SFT on gold": last > accuracy(sweep / "sft_gold", 1),
        "IRPO > STaR": last > accuracy(sweep / "star", 1),
        "chosen log-probs rise with NLL": chosen_logp_change(irpo) > 0,
        "chosen log-probs fall without NLL (DPO)": chosen_logp_change(sweep / "dpo") < 0,
    }
    print("IRPO greedy accuracy by iteration:", " -> ".join(f"{100 * a:.1f}%" for a in curve))
    print(f"chosen log-prob change in iteration 1: DPO+NLL {chosen_logp_change(irpo):+.2f}, "
          f"DPO {chosen_logp_change(sweep / 'dpo'):+.2f}, SFT on chosen {chosen_logp_change(sweep / 'sft_chosen'):+.2f}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", default="outputs/benchmarks/orderings")
    args, overrides = parser.parse_known_args()
    verdicts = {}
    for seed in args.seeds:
        sweep = Path(args.out) / f"seed{seed}"
        started = time.perf_counter()
        if not (sweep / "report.md").exists():
            subprocess.run([sys.executable, "-m", "irpo", "experiment=paper_gsm8k", f"seed={seed}",
                            f"hydra.sweep.dir={sweep}", *overrides], check=True, env=dict(os.environ))
        print(f"\n=== seed {seed} ({(time.perf_counter() - started) / 60:.1f} min)")
        build_report(sweep)
        verdicts[seed] = check(sweep)
        for name, holds in verdicts[seed].items():
            print(f"  {'holds ' if holds else 'FAILS '} {name}")
    print("\nsummary over seeds", args.seeds)
    for name in next(iter(verdicts.values())):
        held = sum(v[name] for v in verdicts.values())
        print(f"  {name}: holds in {held}/{len(verdicts)}")


if __name__ == "__main__":
    main()
