"""`python -m irpo.report <run or sweep dir>`: the paper's tables and figures, rebuilt from run directories.

Reads only what the runs wrote (config.yaml, iter_t/metrics.json, train_log.jsonl, pairs_stats.json);
nothing is recomputed but the statistics (irpo.stats). Writes, into the directory given:
  report.md / report.csv    one row per method and iteration (the layout of Tables 1 and 2); "train steps
                            kept" is the checkpoint-selected step when trainer.eval_every > 0. Each accuracy
                            has its standard error (CSV: *_se), and each row is compared with the reference
                            IRPO run at the same iteration on the same test questions (exact McNemar test;
                            CSV: *_vs_irpo_points/_b/_c/_p/_n). report.md ends with the paired tests behind
                            the paper's orderings (also in paired_tests.csv): each method's last row against
                            IRPO's last iteration, and each IRPO iteration against the one before and M0
  accuracy.png              test accuracy per iteration for each method, with standard-error bars
  logprobs_*.png            chosen and rejected log-probs over training steps (Figures 2-4)
  alpha_beta.png            for runs of one method that differ in loss.alpha and loss.beta (the paper's
                            ablation): final greedy test accuracy on an alpha x beta grid
  pairs.txt                 pair statistics per iteration
  seeds.csv, accuracy_across_seeds.png
                            where runs differ only in their seed (irpo.config.experiment_key): per experiment
                            and iteration, each accuracy's mean over the runs and its standard error across
                            them, and the mean gain over each run's M0 (also a section of report.md)

    discover.py      the runs under a directory, and the reference run the others are tested against
    tables.py        report.md / report.csv, paired_tests.csv, pairs.txt
    across_seeds.py  seeds.csv, accuracy_across_seeds.png and report.md's section on them
    figures.py       accuracy.png, logprobs_*.png, alpha_beta.png
    build.py         build_report: all of the above;  callback.py: after a multirun;  __main__.py: the CLI
"""

from irpo.report.build import build_report
from irpo.report.callback import ReportCallback
from irpo.report.discover import Run, find_runs

__all__ = ["ReportCallback", "Run", "build_report", "find_runs"]
