import math
from types import SimpleNamespace

import pytest

from irpo.pairs import (
    PAIR_BUILDERS,
    ScoredQuestion,
    build_gold_sft,
    build_pairs,
    build_preference_pairs,
    build_self_sft,
    cap,
    pair_walk,
)
from irpo.rundir import RunDir
from irpo.tasks.arithmetic import ArithmeticTask, ArithmeticTaskConfig


def pairs_cfg(**overrides):
    """The paper's literal walk by default (distinct_pairs=False); the distinct walk has its own tests."""
    values = dict(
        pairs_per_prompt=4,
        data_multiplier=1,
        include_gold=False,
        dedupe=True,
        max_pairs=None,
        seed=0,
        distinct_pairs=False,
    )
    values.update(overrides)
    return SimpleNamespace(**values)


def fits_all(prompt, response):
    return True


def question(qid, samples, rewards, gold=None):
    return ScoredQuestion(qid, f"prompt {qid}", gold, samples, rewards)


def test_walks_both_lists_together_restarting_each_at_its_end():
    q = question("q", ["w1", "l1", "w2", "l2", "l3"], [1, 0, 1, 0, 0])
    pairs, stats = build_preference_pairs([q], pairs_cfg(pairs_per_prompt=5), fits_all)
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [
        ("w1", "l1"),
        ("w2", "l2"),
        ("w1", "l3"),
        ("w2", "l1"),
        ("w1", "l2"),
    ]
    assert stats["pairs_made"] == 5 and stats["prompts_used"] == 1


def test_gold_solution_joins_the_winners_when_included():
    q = question("q", ["l1", "l2"], [0, 0], gold="gold")
    assert build_preference_pairs([q], pairs_cfg(include_gold=False), fits_all)[1]["skipped_no_winner"] == 1
    pairs, _ = build_preference_pairs([q], pairs_cfg(include_gold=True, pairs_per_prompt=3), fits_all)
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [("gold", "l1"), ("gold", "l2"), ("gold", "l1")]
    distinct, _ = build_preference_pairs(
        [q], pairs_cfg(include_gold=True, pairs_per_prompt=3, distinct_pairs=True), fits_all
    )
    assert [(p["chosen"], p["rejected"]) for p in distinct] == [("gold", "l1"), ("gold", "l2")]


def test_questions_with_an_empty_side_are_skipped_and_counted():
    all_right = question("a", ["w", "w2"], [1, 1])
    all_wrong = question("b", ["l", "l2"], [0, 0])
    mixed = question("c", ["w", "l"], [1, 0])
    pairs, stats = build_preference_pairs([all_right, all_wrong, mixed], pairs_cfg(pairs_per_prompt=2), fits_all)
    assert {p["id"] for p in pairs} == {"c"}
    assert (stats["skipped_no_loser"], stats["skipped_no_winner"], stats["prompts_skipped"]) == (1, 1, 2)


def test_duplicate_samples_count_once_unless_dedupe_is_off():
    q = question("q", ["w", "w", "l"], [1, 1, 0])
    deduped, _ = build_preference_pairs([q], pairs_cfg(pairs_per_prompt=2), fits_all)
    kept, _ = build_preference_pairs([q], pairs_cfg(pairs_per_prompt=2, dedupe=False), fits_all)
    assert [p["chosen"] for p in deduped] == ["w", "w"] and [p["chosen"] for p in kept] == ["w", "w"]
    q2 = question("q", ["w", "w", "v", "l"], [1, 1, 1, 0])
    assert [p["chosen"] for p in build_preference_pairs([q2], pairs_cfg(pairs_per_prompt=3), fits_all)[0]] == [
        "w",
        "v",
        "w",
    ]


def test_samples_that_overflow_the_context_are_dropped_before_the_walk():
    q = question("q", ["short win", "a very long losing answer", "short loss", "other loss"], [1, 0, 0, 0])
    pairs, stats = build_preference_pairs([q], pairs_cfg(pairs_per_prompt=2), lambda p, r: len(r) < 15)
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [("short win", "short loss"), ("short win", "other loss")]
    assert stats["dropped_too_long"] == 1
    gold_too_long = question("g", ["l"], [0], gold="a gold solution far too long")
    pairs, stats = build_preference_pairs([gold_too_long], pairs_cfg(include_gold=True), lambda p, r: len(r) < 15)
    assert pairs == [] and stats["dropped_too_long"] == 1 and stats["skipped_no_winner"] == 1


def test_truncated_samples_are_neither_winners_nor_losers_and_are_counted():
    # "w-cut" would be a winner and "l-cut" a loser, but the sampler cut both off at the token budget.
    q = ScoredQuestion(
        "q", "prompt", None, ["w-cut", "w", "l-cut", "l"], [1, 1, 0, 0], truncated=[True, False, True, False]
    )
    for build in (build_preference_pairs, build_self_sft):
        rows, stats = build([q], pairs_cfg(pairs_per_prompt=3), fits_all)
        assert {r["chosen"] for r in rows} == {"w"} and {r.get("rejected", "l") for r in rows} == {"l"}
        assert stats["samples_truncated"] == 2
    only_cut_losers = ScoredQuestion("q", "prompt", None, ["w", "l-cut"], [1, 0], truncated=[False, True])
    assert build_preference_pairs([only_cut_losers], pairs_cfg(), fits_all)[1]["skipped_no_loser"] == 1
    with pytest.raises(ValueError):  # a truncation flag per sample, or none at all
        build_preference_pairs(
            [ScoredQuestion("q", "p", None, ["w", "l"], [1, 0], truncated=[False])], pairs_cfg(), fits_all
        )


@pytest.mark.parametrize("winners,losers", [(1, 1), (1, 5), (2, 4), (3, 3), (4, 6), (5, 7), (6, 4), (10, 20)])
def test_distinct_walk_starts_as_the_papers_and_never_repeats_a_pair(winners, losers):
    k = 3 * winners * losers  # more than there are combinations
    walk, literal = pair_walk(winners, losers, k, distinct=True), pair_walk(winners, losers, k, distinct=False)
    cycle = math.lcm(winners, losers)
    assert walk[:cycle] == literal[:cycle]  # identical to the paper's walk until that walk repeats itself
    assert len(walk) == len(set(walk)) == winners * losers  # then every combination once, and no more


def test_doubling_k_doubles_the_distinct_pairs_and_the_cap():
    # 2 winners x 4 losers: 8 combinations, but the literal walk repeats itself after lcm(2, 4) = 4 pairs.
    questions = [question(str(i), ["w1", "w2", "l1", "l2", "l3", "l4"], [1, 1, 0, 0, 0, 0]) for i in range(30)]
    _one, stats1 = build_preference_pairs(questions, pairs_cfg(distinct_pairs=True, max_pairs=100), fits_all)
    _two, stats2 = build_preference_pairs(
        questions, pairs_cfg(distinct_pairs=True, max_pairs=100, data_multiplier=2), fits_all
    )
    assert (stats1["pairs_kept"], stats2["pairs_kept"]) == (100, 200)  # the cap doubles with the data
    assert (stats1["pairs_distinct"], stats2["pairs_distinct"]) == (100, 200)
    _literal, stats = build_preference_pairs(questions, pairs_cfg(data_multiplier=2), fits_all)
    assert (stats["pairs_kept"], stats["pairs_distinct"]) == (240, 120)  # the literal walk repeats at K=8 > lcm=4


def test_cap_is_a_seeded_subsample_in_original_order():
    rows = [{"i": i} for i in range(100)]
    first, again, other = cap(rows, 10, seed=1), cap(rows, 10, seed=1), cap(rows, 10, seed=2)
    assert first == again and first != other
    assert len(first) == 10 and [r["i"] for r in first] == sorted(r["i"] for r in first)
    assert cap(rows, None, seed=1) == rows and cap(rows, 500, seed=1) == rows


def test_cap_applies_to_the_built_pairs_and_is_reported():
    questions = [question(str(i), ["w", "l"], [1, 0]) for i in range(20)]
    pairs, stats = build_preference_pairs(questions, pairs_cfg(pairs_per_prompt=3, max_pairs=7, seed=3), fits_all)
    assert (len(pairs), stats["pairs_made"], stats["pairs_kept"]) == (7, 60, 7)
    assert pairs == build_preference_pairs(questions, pairs_cfg(pairs_per_prompt=3, max_pairs=7, seed=3), fits_all)[0]


def test_sft_builders_for_the_baselines():
    q = question("q", ["w1", "l1", "w2"], [1, 0, 1], gold="gold")
    star, _ = build_self_sft([q], pairs_cfg(pairs_per_prompt=3), fits_all)
    assert [r["chosen"] for r in star] == ["w1", "w2", "w1"] and "rejected" not in star[0]
    gold, stats = build_gold_sft([q, question("n", [], [])], pairs_cfg(), fits_all)
    assert [r["chosen"] for r in gold] == ["gold"] and stats["skipped_no_gold"] == 1
    assert not PAIR_BUILDERS.get("gold_sft").needs_samples and PAIR_BUILDERS.get("preference").needs_samples


def test_unknown_builder_lists_the_valid_ones():
    with pytest.raises(KeyError, match="gold_sft, preference, self_sft"):
        PAIR_BUILDERS.get("random")


def scored_arithmetic_questions(count: int) -> list[ScoredQuestion]:
    """Real task questions, each with its gold solution and samples scored by the task's own reward: the gold
    chain of thought (right), and that chain with its final answer off by one or two (wrong)."""
    task = ArithmeticTask(ArithmeticTaskConfig(num_train=count, num_valid=2, num_test=2, num_seed_sft=2))
    questions = []
    for example in task.load_splits().train:
        body = example.gold_solution.rsplit("Final answer:", 1)[0]
        samples = [example.gold_solution] + [f"{body}Final answer: {int(example.gold_answer) + d}" for d in (1, 2)]
        rewards = [task.reward(example, s)[1] for s in samples]
        questions.append(ScoredQuestion(example.id, task.prompt(example), example.gold_solution, samples, rewards))
    return questions


def test_same_seed_same_pairs_file_and_another_seed_another_subsample(tmp_path):
    questions = scored_arithmetic_questions(40)
    assert {tuple(q.rewards) for q in questions} == {(1.0, 0.0, 0.0)}
    builder = PAIR_BUILDERS.get("preference")
    settings = dict(pairs_per_prompt=2, include_gold=True, distinct_pairs=True, max_pairs=25)

    def pairs_file(name: str, seed: int) -> bytes:
        it = RunDir(tmp_path / name).iteration(1).create()
        build_pairs(it, builder, questions, pairs_cfg(seed=seed, **settings), fits_all)
        return it.pairs.read_bytes()

    first = pairs_file("first", seed=7)
    assert pairs_file("again", seed=7) == first  # byte for byte
    other = pairs_file("other", seed=8)
    assert other != first and len(other.splitlines()) == len(first.splitlines()) == 25  # 80 made, 25 kept
    uncapped = dict(settings, max_pairs=None)
    assert build_preference_pairs(questions, pairs_cfg(seed=7, **uncapped), fits_all) == build_preference_pairs(
        questions, pairs_cfg(seed=8, **uncapped), fits_all
    )  # without a cap the seed changes nothing
