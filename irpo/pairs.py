"""Training data from scored samples: the paper's preference pairs, and SFT sets for the baselines.

Each builder takes the iteration's scored questions and returns (rows, stats). A row has "id",
"prompt", "chosen" and, for preference pairs, "rejected".
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Optional

from irpo.registry import Registry

# fits(prompt, response) -> whether prompt + response fit in the model's context.
Fits = Callable[[str, str], bool]


@dataclass
class ScoredQuestion:
    id: str
    prompt: str
    gold_solution: Optional[str]
    samples: list[str]
    rewards: list[float]
    split: str = "train"  # "valid" rows are used only when retraining with the held-out prompts


@dataclass(frozen=True)
class PairBuilder:
    name: str
    needs_samples: bool  # False: built from the task's gold solutions, no generation stage
    build: Callable[..., tuple[list[dict], dict]]


def _unique(texts: list[str], dedupe: bool) -> list[str]:
    return list(dict.fromkeys(texts)) if dedupe else list(texts)


def cap(rows: list[dict], max_pairs: Optional[int], seed: int) -> list[dict]:
    """A seeded random subsample of at most `max_pairs` rows, kept in their original order."""
    if max_pairs is None or len(rows) <= max_pairs:
        return rows
    keep = sorted(random.Random(seed).sample(range(len(rows)), max_pairs))
    return [rows[i] for i in keep]


def build_preference_pairs(questions: list[ScoredQuestion], cfg, fits: Fits) -> tuple[list[dict], dict]:
    """K (winner, loser) pairs per question, as in Section 2 of the paper.

    Winners are the correct samples (after the gold CoT, if included), losers the incorrect ones.
    Both lists are walked together and restarted at their ends (footnote 2), so K pairs are made
    even when one list is shorter than K. A question with no winner or no loser is skipped.
    """
    stats = Counter()
    pairs: list[dict] = []
    for q in questions:
        winners = _unique([s for s, r in zip(q.samples, q.rewards) if r > 0], cfg.dedupe)
        losers = _unique([s for s, r in zip(q.samples, q.rewards) if r <= 0], cfg.dedupe)
        if cfg.include_gold and q.gold_solution:
            winners = _unique([q.gold_solution] + winners, cfg.dedupe)
        if not winners:
            stats["skipped_no_winner"] += 1
            continue
        if not losers:
            stats["skipped_no_loser"] += 1
            continue
        stats["prompts_used"] += 1
        for k in range(cfg.pairs_per_prompt * cfg.data_multiplier):
            chosen, rejected = winners[k % len(winners)], losers[k % len(losers)]
            if not (fits(q.prompt, chosen) and fits(q.prompt, rejected)):
                stats["dropped_too_long"] += 1
                continue
            pairs.append({"id": q.id, "split": q.split, "prompt": q.prompt, "chosen": chosen, "rejected": rejected})
    return _finish(pairs, stats, questions, cfg)


def build_self_sft(questions: list[ScoredQuestion], cfg, fits: Fits) -> tuple[list[dict], dict]:
    """STaR's data: up to K of a question's own correct samples (the chosen sequences), for SFT."""
    stats = Counter()
    rows: list[dict] = []
    for q in questions:
        winners = _unique([s for s, r in zip(q.samples, q.rewards) if r > 0], cfg.dedupe)
        if not winners:
            stats["skipped_no_winner"] += 1
            continue
        stats["prompts_used"] += 1
        for k in range(cfg.pairs_per_prompt * cfg.data_multiplier):
            chosen = winners[k % len(winners)]
            if not fits(q.prompt, chosen):
                stats["dropped_too_long"] += 1
                continue
            rows.append({"id": q.id, "split": q.split, "prompt": q.prompt, "chosen": chosen})
    return _finish(rows, stats, questions, cfg)


def build_gold_sft(questions: list[ScoredQuestion], cfg, fits: Fits) -> tuple[list[dict], dict]:
    """SFT on the task's gold chain of thought, one row per question that has one."""
    stats = Counter()
    rows: list[dict] = []
    for q in questions:
        if not q.gold_solution:
            stats["skipped_no_gold"] += 1
        elif not fits(q.prompt, q.gold_solution):
            stats["dropped_too_long"] += 1
        else:
            stats["prompts_used"] += 1
            rows.append({"id": q.id, "split": q.split, "prompt": q.prompt, "chosen": q.gold_solution})
    return _finish(rows, stats, questions, cfg)


def _finish(rows: list[dict], stats: Counter, questions: list[ScoredQuestion], cfg) -> tuple[list[dict], dict]:
    made = len(rows)
    rows = cap(rows, cfg.max_pairs, cfg.seed)
    summary = {"questions": len(questions), "pairs_made": made, "pairs_kept": len(rows),
               "prompts_used": 0, "skipped_no_winner": 0, "skipped_no_loser": 0, "skipped_no_gold": 0,
               "dropped_too_long": 0}
    summary.update(stats)
    summary["prompts_skipped"] = summary["skipped_no_winner"] + summary["skipped_no_loser"] + summary["skipped_no_gold"]
    if rows:
        summary["mean_chosen_chars"] = round(sum(len(r["chosen"]) for r in rows) / len(rows), 1)
        if "rejected" in rows[0]:
            summary["mean_rejected_chars"] = round(sum(len(r["rejected"]) for r in rows) / len(rows), 1)
    return rows, summary


PAIR_BUILDERS: Registry[PairBuilder] = Registry("pair builder")
PAIR_BUILDERS.register("preference")(PairBuilder("preference", True, build_preference_pairs))
PAIR_BUILDERS.register("self_sft")(PairBuilder("self_sft", True, build_self_sft))
PAIR_BUILDERS.register("gold_sft")(PairBuilder("gold_sft", False, build_gold_sft))


def build_pairs(it, builder: PairBuilder, questions: list[ScoredQuestion], cfg, fits: Fits) -> list[dict]:
    """Step 3 of Figure 1: writes pairs.jsonl and pairs_stats.json."""
    import logging

    from irpo.rundir import read_jsonl, write_json, write_jsonl

    if it.pairs.exists() and it.pairs_stats.exists():
        return read_jsonl(it.pairs)
    rows, stats = builder.build(questions, cfg, fits)
    logging.getLogger(__name__).info(
        "iter %d: %s built %d rows (kept %d) from %d prompts; skipped %d (no winner %d, no loser %d, no gold %d); "
        "%d dropped as too long", it.t, builder.name, stats["pairs_made"], stats["pairs_kept"], stats["questions"],
        stats["prompts_skipped"], stats["skipped_no_winner"], stats["skipped_no_loser"], stats["skipped_no_gold"],
        stats["dropped_too_long"])
    write_jsonl(it.pairs, rows)
    write_json(it.pairs_stats, stats)
    return rows
