"""Training data from scored samples: the paper's preference pairs, and SFT sets for the baselines.

Each builder takes the iteration's scored questions and returns (rows, stats). A row has "id",
"prompt", "chosen" and, for preference pairs, "rejected".
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from irpo.files import copy_file, read_json, read_jsonl, write_json, write_jsonl
from irpo.registry import Registry
from irpo.rundir import IterationDir

log = logging.getLogger(__name__)

# fits(prompt, response) -> whether prompt + response fit in the model's context.
Fits = Callable[[str, str], bool]
# A training row ("id", "split", "prompt", "chosen" and, for preference pairs, "rejected"), and a builder's
# counts (pairs made and kept, prompts used and skipped and why, mean lengths).
Row = dict[str, Any]
Stats = dict[str, float]


class PairSettings(Protocol):
    """The `pairs` config section, as the builders read it (irpo.config.PairsConfig)."""

    pairs_per_prompt: int
    data_multiplier: int
    include_gold: bool
    dedupe: bool
    distinct_pairs: bool
    max_pairs: int | None
    seed: int


@dataclass
class ScoredQuestion:
    id: str
    prompt: str
    gold_solution: str | None
    samples: list[str]
    rewards: list[float]
    split: str = "train"  # "valid" rows are used only when retraining with the held-out prompts
    # Per sample: the sampler stopped it at the token budget or the context's end, not the model. Such
    # samples are dropped (paper: "filter out examples that were too long"); empty = none truncated.
    truncated: list[bool] = field(default_factory=list)

    def usable_samples(self, stats: Counter[str], fits: Fits) -> list[tuple[str, float]]:
        """(sample, reward) for the samples the model ended itself and that fit the context once encoded
        for training; the others are counted (samples_truncated, dropped_too_long) and left out."""
        truncated = self.truncated or [False] * len(self.samples)
        usable = []
        for sample, reward, cut in zip(self.samples, self.rewards, truncated, strict=True):
            if cut:
                stats["samples_truncated"] += 1
            elif not fits(self.prompt, sample):
                stats["dropped_too_long"] += 1
            else:
                usable.append((sample, reward))
        return usable


@dataclass(frozen=True)
class PairBuilder:
    name: str
    needs_samples: bool  # False: built from the task's gold solutions, no generation stage
    build: Callable[[list[ScoredQuestion], PairSettings, Fits], tuple[list[Row], Stats]]


def _unique(texts: list[str], dedupe: bool) -> list[str]:
    return list(dict.fromkeys(texts)) if dedupe else list(texts)


def cap(rows: list[Row], max_pairs: int | None, seed: int) -> list[Row]:
    """A seeded random subsample of at most `max_pairs` rows, kept in their original order."""
    if max_pairs is None or len(rows) <= max_pairs:
        return rows
    keep = sorted(random.Random(seed).sample(range(len(rows)), max_pairs))
    return [rows[i] for i in keep]


def pair_walk(num_winners: int, num_losers: int, count: int, distinct: bool) -> list[tuple[int, int]]:
    """(winner, loser) indices of `count` pairs: both lists walked together, each restarting at its end.

    The literal walk repeats itself after lcm(#winners, #losers) pairs. With `distinct`, each repeat of
    that cycle shifts the loser list by one instead, which visits all #winners x #losers combinations
    once (the cells i - j = -shift mod gcd are new for each shift); the first lcm pairs are the paper's.
    """
    if not distinct:
        return [(k % num_winners, k % num_losers) for k in range(count)]
    cycle = math.lcm(num_winners, num_losers)
    return [
        (k % cycle % num_winners, (k % cycle + k // cycle) % num_losers)
        for k in range(min(count, num_winners * num_losers))
    ]


def build_preference_pairs(questions: list[ScoredQuestion], cfg: PairSettings, fits: Fits) -> tuple[list[Row], Stats]:
    """K (winner, loser) pairs per question, as in Section 2 of the paper.

    Winners are the correct samples (after the gold CoT, if included), losers the incorrect ones;
    samples the sampler cut off are in neither. Both lists are walked together and restarted at their
    ends (footnote 2), so K pairs are made even when one list is shorter than K (see `pair_walk`). A
    question with no winner or no loser is skipped.
    """
    stats: Counter[str] = Counter()
    pairs: list[Row] = []
    for q in questions:
        finished = q.usable_samples(stats, fits)
        winners = _unique([s for s, r in finished if r > 0], cfg.dedupe)
        losers = _unique([s for s, r in finished if r <= 0], cfg.dedupe)
        if cfg.include_gold and q.gold_solution:
            if fits(q.prompt, q.gold_solution):
                winners = _unique([q.gold_solution, *winners], cfg.dedupe)
            else:
                stats["dropped_too_long"] += 1
        if not winners:
            stats["skipped_no_winner"] += 1
            continue
        if not losers:
            stats["skipped_no_loser"] += 1
            continue
        stats["prompts_used"] += 1
        for w, loser in pair_walk(
            len(winners), len(losers), cfg.pairs_per_prompt * cfg.data_multiplier, cfg.distinct_pairs
        ):
            pairs.append(
                {"id": q.id, "split": q.split, "prompt": q.prompt, "chosen": winners[w], "rejected": losers[loser]}
            )
    return _finish(pairs, stats, questions, cfg)


def build_self_sft(questions: list[ScoredQuestion], cfg: PairSettings, fits: Fits) -> tuple[list[Row], Stats]:
    """Up to K of a question's own correct samples per question (no gold CoT), for SFT: the
    `sft_self_correct` row. (The paper's STaR row is SFT on the chosen side of the pairs instead.)"""
    stats: Counter[str] = Counter()
    rows: list[Row] = []
    for q in questions:
        winners = _unique([s for s, r in q.usable_samples(stats, fits) if r > 0], cfg.dedupe)
        if not winners:
            stats["skipped_no_winner"] += 1
            continue
        stats["prompts_used"] += 1
        for w, _ in pair_walk(len(winners), 1, cfg.pairs_per_prompt * cfg.data_multiplier, cfg.distinct_pairs):
            rows.append({"id": q.id, "split": q.split, "prompt": q.prompt, "chosen": winners[w]})
    return _finish(rows, stats, questions, cfg)


def build_gold_sft(questions: list[ScoredQuestion], cfg: PairSettings, fits: Fits) -> tuple[list[Row], Stats]:
    """SFT on the task's gold chain of thought, one row per question that has one."""
    stats: Counter[str] = Counter()
    rows: list[Row] = []
    for q in questions:
        if not q.gold_solution:
            stats["skipped_no_gold"] += 1
        elif not fits(q.prompt, q.gold_solution):
            stats["dropped_too_long"] += 1
        else:
            stats["prompts_used"] += 1
            rows.append({"id": q.id, "split": q.split, "prompt": q.prompt, "chosen": q.gold_solution})
    return _finish(rows, stats, questions, cfg)


def _finish(
    rows: list[Row], stats: Counter[str], questions: list[ScoredQuestion], cfg: PairSettings
) -> tuple[list[Row], Stats]:
    made = len(rows)
    rows = cap(rows, cfg.max_pairs * cfg.data_multiplier if cfg.max_pairs is not None else None, cfg.seed)
    summary: Stats = {
        "questions": len(questions),
        "pairs_made": made,
        "pairs_kept": len(rows),
        "pairs_distinct": len({(r["id"], r["chosen"], r.get("rejected")) for r in rows}),
        "prompts_used": 0,
        "skipped_no_winner": 0,
        "skipped_no_loser": 0,
        "skipped_no_gold": 0,
        "dropped_too_long": 0,
        "samples_truncated": 0,
    }
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


def build_pairs(
    it: IterationDir, builder: PairBuilder, questions: list[ScoredQuestion], cfg: PairSettings, fits: Fits
) -> list[Row]:
    """Step 3 of Figure 1: writes pairs.jsonl and pairs_stats.json."""
    if it.pairs.exists() and it.pairs_stats.exists():
        return read_jsonl(it.pairs, "delete that file and rerun to build the pairs again")
    rows, stats = builder.build(questions, cfg, fits)
    log.info(
        "iter %d: %s built %d rows (kept %d, %d distinct) from %d prompts; skipped %d (no winner %d, no "
        "loser %d, no gold %d); %d truncated samples and %d over-long rows dropped",
        it.t,
        builder.name,
        stats["pairs_made"],
        stats["pairs_kept"],
        stats["pairs_distinct"],
        stats["questions"],
        stats["prompts_skipped"],
        stats["skipped_no_winner"],
        stats["skipped_no_loser"],
        stats["skipped_no_gold"],
        stats["samples_truncated"],
        stats["dropped_too_long"],
    )
    write_jsonl(it.pairs, rows)
    write_json(it.pairs_stats, stats)
    return rows


def copy_pairs(it: IterationDir, source: IterationDir, source_name: str) -> list[Row]:
    """Step 3 for rows that train on another run's pairs (`pairs.from_run`): its pairs.jsonl, byte for byte.

    The copy records the source's checksum; a resumed run whose source has changed since (the source run
    was redone) refuses to go on with the old copy."""
    if it.pairs.exists() and it.pairs_stats.exists():
        copied = read_json(it.pairs_stats).get("source_sha256")
        if copied and source.pairs.exists() and _sha256(source.pairs) != copied:
            raise ValueError(
                f"{it.pairs} is a copy of {source.pairs}, which has changed since; delete {it.path} "
                "to train this iteration on the new pairs"
            )
        return read_jsonl(it.pairs)
    if not (source.pairs.exists() and source.pairs_stats.exists()):
        raise FileNotFoundError(
            f"pairs.from_run={source_name}: {source.pairs} does not exist yet (run that "
            "method first; in a sweep it must come earlier)"
        )
    copy_file(source.pairs, it.pairs)
    write_json(
        it.pairs_stats,
        {**read_json(source.pairs_stats), "copied_from": str(source.pairs), "source_sha256": _sha256(it.pairs)},
    )
    log.info("iter %d: training on the pairs of %s", it.t, source.pairs)
    return read_jsonl(it.pairs)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
