"""Do the paper's orderings hold on the embedded default? Runs Table 1's rows per seed and checks.

    python launchers/benchmark_orderings.py --seeds 0 1 [extra overrides...]

For each seed: `python -m irpo experiment=paper_gsm8k seed=S` (the embedded task unless overridden),
then, from the run directories alone, prints the table and whether each of the paper's orderings holds,
each with its exact McNemar test on the same test questions (difference, p-value, discordant counts):
  1. Iterative RPO improves across iterations (last > M0, and each iteration > the previous)
  2. DPO+NLL beats DPO and SFT on the same pairs D0 (iteration 1, from M0)
  3. Iterative RPO (last iteration) beats SFT on gold and STaR
  4. two iterations beat one iteration on twice the data
  5. chosen log-probs rise during training with the NLL term and fall without it (DPO)
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
from irpo.rundir import RunDir, budget_train_log
from irpo.stats import PairedTest, compare_iterations


def chosen_logp_change(run: Path) -> float:
    log = [json.loads(line) for line in budget_train_log(run / "iter_1").read_text().splitlines()]
    k = max(1, len(log) // 5)  # mean of the last fifth minus mean of the first fifth of the steps
    return sum(e["chosen_logps"] for e in log[-k:]) / k - sum(e["chosen_logps"] for e in log[:k]) / k


def accuracy(run: Path, t: int) -> float:
    return json.loads((run / f"iter_{t}/metrics.json").read_text())["eval"]["greedy_accuracy"]


def versus(a: Path, ta: int, b: Path, tb: int) -> PairedTest:
    """Greedy answers of a's iteration ta against b's iteration tb on the same test questions (exact McNemar)."""
    test = compare_iterations(RunDir(a).iteration(ta), RunDir(b).iteration(tb))["greedy"]
    assert test is not None, f"{a}/iter_{ta} or {b}/iter_{tb} has no greedy evaluation"
    return test


def check(sweep: Path) -> dict[str, PairedTest]:
    """Each ordering as 'A beats B': the paired test of A against B (holds when A - B > 0)."""
    irpo = sweep / "irpo"
    iterations = sorted(int(p.name.split("_")[1]) for p in irpo.glob("iter_*") if (p / "metrics.json").exists())
    last = iterations[-1]
    result = {"IRPO: last iteration > M0": versus(irpo, last, irpo, 0)}
    for t in iterations[1:]:
        result[f"IRPO: iteration {t} > iteration {t - 1}"] = versus(irpo, t, irpo, t - 1)
    result.update(
        {
            "DPO+NLL > DPO (iteration 1, same pairs D0)": versus(irpo, 1, sweep / "dpo", 1),
            "DPO+NLL > SFT on chosen of D0 (STaR)": versus(irpo, 1, sweep / "star", 1),
            "IRPO (last) > SFT on gold": versus(irpo, last, sweep / "sft_gold", 1),
            "IRPO (last) > STaR": versus(irpo, last, sweep / "star", 1),
            "IRPO iteration 2 > IRPO 1 iteration on 2x data": versus(irpo, min(2, last), sweep / "irpo_2x", 1),
        }
    )
    print("IRPO greedy accuracy by iteration:", " -> ".join(f"{100 * accuracy(irpo, t):.1f}%" for t in iterations))
    print(
        f"chosen log-prob change in iteration 1: DPO+NLL {chosen_logp_change(irpo):+.2f}, "
        f"DPO {chosen_logp_change(sweep / 'dpo'):+.2f}, SFT on chosen {chosen_logp_change(sweep / 'star'):+.2f}"
    )
    return result


def logprob_checks(sweep: Path) -> dict[str, bool]:
    return {
        "chosen log-probs rise with NLL": chosen_logp_change(sweep / "irpo") > 0,
        "chosen log-probs fall without NLL (DPO)": chosen_logp_change(sweep / "dpo") < 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", default="outputs/benchmarks/orderings")
    args, overrides = parser.parse_known_args()
    verdicts: dict[int, dict[str, bool]] = {}
    for seed in args.seeds:
        sweep = Path(args.out) / f"seed{seed}"
        started = time.perf_counter()
        if not (sweep / "report.md").exists():
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "irpo",
                    "experiment=paper_gsm8k",
                    f"seed={seed}",
                    f"hydra.sweep.dir={sweep}",
                    *overrides,
                ],
                check=True,
                env=dict(os.environ),
            )
        print(f"\n=== seed {seed} ({(time.perf_counter() - started) / 60:.1f} min)")
        build_report(sweep)
        verdicts[seed] = {}
        for name, test in check(sweep).items():
            holds = (test.points or 0) > 0
            verdicts[seed][name] = holds
            print(
                f"  {'holds ' if holds else 'FAILS '} {name}: {test.describe()}"
                f"{'  (significant at 0.05)' if holds and test.p_value < 0.05 else ''}"
            )
        for name, holds in logprob_checks(sweep).items():
            verdicts[seed][name] = holds
            print(f"  {'holds ' if holds else 'FAILS '} {name}")
    print("\nsummary over seeds", args.seeds)
    for name in next(iter(verdicts.values())):
        held = sum(v[name] for v in verdicts.values())
        print(f"  {name}: holds in {held}/{len(verdicts)}")


if __name__ == "__main__":
    main()
