"""Step 5 (irpo.evaluate): greedy and majority-vote answers of a real (untrained) tiny model, drawn by the hf
sampler, judged per question and summed into eval.json."""

from __future__ import annotations

import dataclasses

from irpo.evaluate import evaluate
from irpo.files import read_json, read_jsonl
from irpo.rundir import RunDir
from irpo.sampling import build_sampler
from irpo.stage_context import StageContext
from irpo.tasks.arithmetic import ArithmeticTask, ArithmeticTaskConfig
from irpo.tasks.base import Example


class FirstCharacterTask(ArithmeticTask):
    """An untrained model never writes "Final answer: N"; its first character is an answer it does give, so
    right and wrong answers both occur and the judging can be checked against its real outputs."""

    def extract_answer(self, example: Example, completion: str) -> str | None:
        return completion.strip()[:1] or None

    def is_correct(self, example: Example, answer: str | None) -> bool:
        return answer == example.gold_answer

    def canonical(self, answer: str) -> str:
        return answer


def test_greedy_and_majority_answers_are_judged_per_question_and_summed(make_config, untrained_tiny, tmp_path):
    cfg = make_config("experiment=smoke", "eval.majority_k=1", "eval.temperature=0", "generation.max_new_tokens=6")
    task = FirstCharacterTask(ArithmeticTaskConfig(num_train=2, num_valid=2, num_test=6, num_seed_sft=2))
    questions = task.load_splits().test
    prompts = {e.id: task.prompt(e) for e in questions}
    sampler, run = build_sampler(cfg.sampler, cfg.model), RunDir(tmp_path / "run")
    ctx = StageContext(task, prompts, sampler, cfg.generation, shard_prompts=4, seed=0, fits=lambda p, r: True)

    def evaluate_with(golds: list[str], t: int) -> tuple[dict, list[dict]]:
        examples = [dataclasses.replace(e, gold_answer=g) for e, g in zip(questions, golds, strict=True)]
        it = run.iteration(t).create()
        metrics = evaluate(it, untrained_tiny, examples, ctx, cfg.eval)
        return metrics, read_jsonl(it.eval_predictions)

    _, first = evaluate_with(["\n"] * 6, t=1)  # no answer is a newline: all wrong
    assert [r["id"] for r in first] == [e.id for e in questions]  # two shards of 4 and 2, in order
    answers = [r["greedy"].strip()[:1] or None for r in first]
    assert [r["greedy_answer"] for r in first] == answers and not any(r["greedy_correct"] for r in first)

    # Now every other question's gold is the answer the model gives, the rest something it does not give.
    golds = [a if i % 2 == 0 else "\n" for i, a in enumerate(answers)]
    metrics, rows = evaluate_with(golds, t=2)
    expected = [a is not None and i % 2 == 0 for i, a in enumerate(answers)]
    assert [r["greedy_answer"] for r in rows] == answers  # greedy decoding: the same answers again
    assert [r["greedy_correct"] for r in rows] == expected
    # One vote at temperature 0 is the greedy answer: the majority path judges it the same way.
    assert [r["majority_answer"] for r in rows] == answers and [r["majority_correct"] for r in rows] == expected
    assert metrics == read_json(run.iteration(2).eval_metrics)
    assert (metrics["examples"], metrics["majority_k"]) == (6, 1)
    assert metrics["greedy_accuracy"] == metrics["majority_accuracy"] == round(sum(expected) / 6, 4) > 0
    assert metrics["greedy_no_answer"] == answers.count(None)
    # A finished evaluation is read back, not drawn again (no sampler needed).
    unused = StageContext(task, {}, None, cfg.generation, shard_prompts=4, seed=0, fits=lambda p, r: True)  # type: ignore[arg-type]
    assert evaluate(run.iteration(2), untrained_tiny, [], unused, cfg.eval) == metrics
