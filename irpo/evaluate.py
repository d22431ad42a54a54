"""Step 5 of Figure 1: greedy exact match on the test split, and majority vote over k samples."""

from __future__ import annotations

import logging

from irpo.protocols import Sampler, SamplingRequest
from irpo.rundir import IterationDir, read_json, write_json
from irpo.sampling import sample_all
from irpo.shards import ShardedFile

log = logging.getLogger(__name__)


def greedy_request(generation_cfg, seed: int, desc: str = "greedy") -> SamplingRequest:
    return SamplingRequest(1, 0.0, 1.0, generation_cfg.max_new_tokens, seed, stop=tuple(generation_cfg.stop), desc=desc)


def judge_greedy(task, example, completion: str) -> dict:
    completion = task.finish(completion)
    answer = task.extract_answer(example, completion)
    return {"greedy": completion, "greedy_answer": answer, "greedy_correct": task.is_correct(example, answer)}


def evaluate(
    it: IterationDir,
    model_dir,
    examples: list,
    prompts: dict[str, str],
    sampler: Sampler,
    task,
    eval_cfg,
    generation_cfg,
    seed: int,
    shard_prompts: int,
) -> dict:
    """Writes eval.jsonl (per question) and eval.json (accuracies) for the model in `model_dir`; the questions
    are drawn in shards of `shard_prompts` (irpo.shards), so a killed evaluation resumes at its first missing one."""
    if it.eval_metrics.exists():
        return read_json(it.eval_metrics)
    by_id = {e.id: e for e in examples}
    requests = [greedy_request(generation_cfg, seed, desc=f"iter {it.t} eval greedy")]
    if eval_cfg.majority_k > 0:
        requests.append(
            SamplingRequest(
                eval_cfg.majority_k,
                eval_cfg.temperature,
                generation_cfg.top_p,
                generation_cfg.max_new_tokens,
                seed,
                stop=tuple(generation_cfg.stop),
                desc=f"iter {it.t} eval majority@{eval_cfg.majority_k}",
            )
        )

    def make_rows(shard, results) -> list[dict]:
        greedy, *voted = (r.completions for r in results)
        votes = voted[0] if voted else [[] for _ in shard.ids]
        rows = []
        for example_id, greedy_out, samples in zip(shard.ids, greedy, votes, strict=True):
            example = by_id[example_id]
            majority = task.majority_vote(example, [task.finish(s.text) for s in samples]) if samples else None
            rows.append(
                {
                    "id": example.id,
                    "gold": example.gold_answer,
                    **judge_greedy(task, example, greedy_out[0].text),
                    "greedy_truncated": greedy_out[0].truncated,
                    "majority_answer": majority,
                    "majority_correct": task.is_correct(example, majority),
                }
            )
        return rows

    stage = ShardedFile(it.eval_predictions, [e.id for e in examples], shard_prompts)
    rows = stage.draw(prompts, sampler, model_dir, requests, make_rows, what=f"iter {it.t} eval")
    n = max(len(rows), 1)
    metrics = {
        "split": eval_cfg.split,
        "examples": len(rows),
        "greedy_accuracy": round(sum(r["greedy_correct"] for r in rows) / n, 4),
        "majority_accuracy": round(sum(r["majority_correct"] for r in rows) / n, 4)
        if eval_cfg.majority_k > 0
        else None,
        "majority_k": eval_cfg.majority_k,
        "greedy_no_answer": sum(r["greedy_answer"] is None for r in rows),
        "greedy_truncated": sum(r["greedy_truncated"] for r in rows),
    }
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


class HeldOutScorer:
    """Greedy accuracy on held-out examples, for checkpoint selection: `scorer(model, tokenizer)` for a
    model in memory (trainer=torch), `scorer.score_dir(path)` for a saved checkpoint (trainer=deepspeed,
    drawn by the configured sampler, e.g. vLLM)."""

    def __init__(self, examples: list, prompts: dict[str, str], sampler: Sampler, task, generation_cfg, seed: int):
        self.examples, self.sampler, self.task = examples, sampler, task
        self.batch = [prompts[e.id] for e in examples]
        self.request = greedy_request(generation_cfg, seed, desc="select")

    def __call__(self, model, tokenizer) -> float:
        return self._accuracy(self.sampler.sample_loaded(model, tokenizer, self.batch, self.request).completions)

    def score_dir(self, model_dir) -> float:
        (drawn,) = sample_all(self.sampler, model_dir, self.batch, [self.request])
        return self._accuracy(drawn.completions)

    def _accuracy(self, outputs) -> float:
        correct = sum(
            judge_greedy(self.task, e, out[0].text)["greedy_correct"]
            for e, out in zip(self.examples, outputs, strict=True)
        )
        return correct / len(self.examples)
