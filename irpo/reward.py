"""Step 2 of Figure 1: extract each sample's final answer and reward 1 if it matches the gold answer."""

from __future__ import annotations

import logging

from irpo.files import read_json, read_jsonl, write_json, write_jsonl
from irpo.rundir import IterationDir

log = logging.getLogger(__name__)


def reward(it: IterationDir, generations: list[dict], examples: dict, task) -> list[dict]:
    """Writes rewards.jsonl (answers and 0/1 rewards per sample) and reward_stats.json."""
    if it.rewards.exists():
        return read_jsonl(it.rewards, "delete that file and rerun to score the samples again")
    rows, total, correct, no_answer = [], 0, 0, 0
    for gen in generations:
        example = examples[gen["id"]]
        scored = [task.reward(example, sample) for sample in gen["samples"]]
        answers = [answer for answer, _ in scored]
        rewards = [value for _, value in scored]
        rows.append({"id": gen["id"], "answers": answers, "rewards": rewards})
        total += len(rewards)
        correct += int(sum(rewards))
        no_answer += sum(a is None for a in answers)
    stats = {
        "samples": total,
        "correct": correct,
        "no_answer": no_answer,
        "sample_accuracy": round(correct / max(total, 1), 4),
    }
    log.info(
        "iter %d: %d/%d samples correct, %d with no extractable answer (counted as losers)",
        it.t,
        correct,
        total,
        no_answer,
    )
    write_json(it.path / "reward_stats.json", stats)
    write_jsonl(it.rewards, rows)
    return rows


def reward_stats(it: IterationDir) -> dict:
    path = it.path / "reward_stats.json"
    return read_json(path) if path.exists() else {}
