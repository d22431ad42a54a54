"""Step 5 of Figure 1: greedy exact match on the test split, and majority vote over k samples."""

from __future__ import annotations

import logging

from irpo.files import read_json, write_json
from irpo.protocols import Checkpoint, SamplingRequest
from irpo.rundir import IterationDir
from irpo.sampling import sample_all
from irpo.seeds import eval_seed, selection_seed
from irpo.shards import ShardedFile
from irpo.stage_context import StageContext

log = logging.getLogger(__name__)


def judge_greedy(task, example, completion: str) -> dict:
    completion = task.finish(completion)
    answer = task.extract_answer(example, completion)
    return {"greedy": completion, "greedy_answer": answer, "greedy_correct": task.is_correct(example, answer)}


def evaluate(it: IterationDir, model_dir, examples: list, ctx: StageContext, eval_cfg) -> dict:
    """Writes eval.jsonl (per question) and eval.json (accuracies) for the model in `model_dir`; the questions
    are drawn in shards (irpo.shards), so a killed evaluation resumes at its first missing one."""
    if it.eval_metrics.exists():
        return read_json(it.eval_metrics)
    by_id = {e.id: e for e in examples}

    def make_rows(shard, results) -> list[dict]:
        greedy, *voted = (r.completions for r in results)
        votes = voted[0] if voted else [[] for _ in shard.ids]
        return [
            judge_row(ctx.task, by_id[example_id], greedy_out[0], samples)
            for example_id, greedy_out, samples in zip(shard.ids, greedy, votes, strict=True)
        ]

    stage = ShardedFile(it.eval_predictions, [e.id for e in examples], ctx.shard_prompts)
    requests = eval_requests(ctx, eval_cfg, it.t)
    rows = stage.draw(ctx.prompts, ctx.sampler, model_dir, requests, make_rows, what=f"iter {it.t} eval")
    metrics = accuracies(rows, eval_cfg)
    log.info(
        "iter %d: greedy accuracy %.3f, majority@%d %s on %d %s examples",
        it.t,
        metrics["greedy_accuracy"],
        eval_cfg.majority_k,
        metrics["majority_accuracy"],
        len(rows),
        eval_cfg.split,
    )
    write_json(it.eval_metrics, metrics)
    return metrics


def eval_requests(ctx: StageContext, eval_cfg, t: int) -> list[SamplingRequest]:
    """The greedy answer of each question, and its eval.majority_k samples for the vote (when k > 0)."""
    seed = eval_seed(ctx.seed, t)
    requests = [ctx.greedy_request(seed, desc=f"iter {t} eval greedy")]
    if eval_cfg.majority_k > 0:
        desc = f"iter {t} eval majority@{eval_cfg.majority_k}"
        requests.append(ctx.request(eval_cfg.majority_k, eval_cfg.temperature, seed, desc))
    return requests


def judge_row(task, example, greedy, samples: list) -> dict:
    """eval.jsonl's row of one question: its greedy answer and the majority vote of its samples, judged."""
    majority = task.majority_vote(example, [task.finish(s.text) for s in samples]) if samples else None
    return {
        "id": example.id,
        "gold": example.gold_answer,
        **judge_greedy(task, example, greedy.text),
        "greedy_truncated": greedy.truncated,
        "majority_answer": majority,
        "majority_correct": task.is_correct(example, majority),
    }


def accuracies(rows: list[dict], eval_cfg) -> dict:
    """eval.json: the accuracies over eval.jsonl's rows, and how many greedy answers were missing or cut off."""
    n = max(len(rows), 1)
    majority = round(sum(r["majority_correct"] for r in rows) / n, 4) if eval_cfg.majority_k > 0 else None
    return {
        "split": eval_cfg.split,
        "examples": len(rows),
        "greedy_accuracy": round(sum(r["greedy_correct"] for r in rows) / n, 4),
        "majority_accuracy": majority,
        "majority_k": eval_cfg.majority_k,
        "greedy_no_answer": sum(r["greedy_answer"] is None for r in rows),
        "greedy_truncated": sum(r["greedy_truncated"] for r in rows),
    }


class HeldOutScorer:
    """`irpo.protocols.Scorer`: greedy accuracy on held-out examples, for checkpoint selection, decoded by the
    configured sampler: a model in the trainer's memory (trainer=torch) by its `sample_loaded`, a saved
    checkpoint (trainer=deepspeed) by its `sample` (e.g. vLLM's engine)."""

    def __init__(self, examples: list, ctx: StageContext):
        self.examples, self.sampler, self.task = examples, ctx.sampler, ctx.task
        self.batch = [ctx.prompts[e.id] for e in examples]
        self.request = ctx.greedy_request(selection_seed(ctx.seed), desc="select")

    def score(self, checkpoint: Checkpoint) -> float:
        if checkpoint.model is not None:
            drawn = self.sampler.sample_loaded(checkpoint.model, checkpoint.tokenizer, self.batch, self.request)
        else:
            (drawn,) = sample_all(self.sampler, checkpoint.model_dir, self.batch, [self.request])
        outputs = drawn.completions
        correct = sum(
            judge_greedy(self.task, e, out[0].text)["greedy_correct"]
            for e, out in zip(self.examples, outputs, strict=True)
        )
        return correct / len(self.examples)
