"""Sampling with vLLM's offline engine, in a child process that loads the iteration's model directory.

The loop's config becomes vLLM's arguments here (`engine_args`, `sampling_args`, both plain dicts, so
they are tested without vLLM installed); `irpo.sampling.vllm_worker` runs the engine. Prompts go in as
token ids encoded exactly as the hf sampler and the trainers encode them, so every backend sees the
same inputs. vLLM has no "stop after the answer line" rule: it stops at EOS, a `generation.stop`
string or the token budget, and the task trims text after the answer line for both samplers.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from irpo.child import StageProcessError, run_child
from irpo.models.loading import load_tokenizer
from irpo.models.tokens import encode_prompt
from irpo.sampling.hf import answer_line_finished
from irpo.sampling.types import Completion, PromptShard

log = logging.getLogger(__name__)


def engine_args(sampler_cfg, model_cfg, model_dir: str | Path) -> dict:
    """Keyword arguments of `vllm.LLM` for one generation stage."""
    return {
        "model": str(model_dir),
        "tokenizer": str(model_dir),
        "dtype": sampler_cfg.dtype or model_cfg.dtype,
        "max_model_len": sampler_cfg.max_model_len or model_cfg.max_length,
        "tensor_parallel_size": sampler_cfg.tensor_parallel_size,
        "gpu_memory_utilization": sampler_cfg.gpu_memory_utilization,
        "enforce_eager": sampler_cfg.enforce_eager,
        "enable_chunked_prefill": sampler_cfg.chunked_prefill,  # None: decided by the worker's platform
        "seed": 0,  # sampling is seeded per request below; this only fixes the engine's own state
        "skip_tokenizer_init": False,
    }


def sampling_args(request, prompt_index: int, prompt_tokens: int, max_model_len: int) -> dict:
    """Keyword arguments of `vllm.SamplingParams` for one prompt of a request.

    Each prompt gets its own seed from its index among the stage's prompts (`prompt_index`, not its place in
    this call), so its samples do not depend on which other prompts share the batch, or the shard split.
    """
    greedy = request.temperature == 0
    return {
        "n": request.num_samples,
        "temperature": 0.0 if greedy else request.temperature,
        "top_p": 1.0 if greedy else request.top_p,
        "max_tokens": max(1, min(request.max_new_tokens, max_model_len - prompt_tokens)),
        "stop": list(request.stop),
        "include_stop_str_in_output": True,  # as transformers' stop_strings leave them in
        "seed": request.seed * 1_000_003 + prompt_index,
        "skip_special_tokens": True,
    }


def completions_from_worker(result: dict, requests: list, fits: list[bool]) -> list[list[list[Completion]]]:
    """The worker's out.json as completions per request and prompt; prompts that did not fit get empty ones.

    vLLM has no answer-line stop: a sample that finished its answer line and then ran on to max_tokens
    ends at that line once trimmed, as hf's would, so only one without a finished answer line (vLLM's
    finish_reason "length") counts as cut off.
    """
    results = []
    for request, texts, cut in zip(requests, result["completions"], result["truncated"], strict=True):
        by_prompt = iter(
            [
                [
                    Completion(t, c and not (request.stop_after and answer_line_finished(t, request.stop_after)))
                    for t, c in zip(row_texts, row_cut, strict=True)
                ]
                for row_texts, row_cut in zip(texts, cut, strict=True)
            ]
        )
        # A prompt that did not fit has no room to answer: its empty samples count as cut off.
        results.append([next(by_prompt) if ok else [Completion("", True)] * request.num_samples for ok in fits])
    return results


class VLLMSampler:
    def __init__(self, sampler_cfg, model_cfg):
        self.cfg = sampler_cfg
        self.model_cfg = model_cfg
        self.last_stats: dict = {}

    @staticmethod
    def check(cfg) -> None:
        """vLLM is reachable: in `sampler.python`'s interpreter, or installed here."""
        if cfg.sampler.python:
            python = os.path.expanduser(cfg.sampler.python)
            if not (os.access(python, os.X_OK) or shutil.which(python)):
                raise FileNotFoundError(f"sampler.python={cfg.sampler.python}: no such interpreter")
        elif importlib.util.find_spec("vllm") is None:
            raise ValueError(
                "sampler=vllm needs vLLM: pip install -e '.[vllm]', or point sampler.python at an "
                "interpreter that has it (README, 'Scaling out')"
            )

    def generate(self, model_dir, prompts: list[str], request, desc: str = "sample") -> list[list[Completion]]:
        return self.generate_each(model_dir, prompts, [request], [desc])[0]

    def generate_each(self, model_dir, prompts: list[str], requests: list, descs: list[str]) -> list:
        """One engine start for all requests (evaluation draws greedy and voting samples from one load)."""
        (results,) = self.generate_shards(model_dir, [PromptShard(0, prompts)], requests, descs)
        return results

    def generate_shards(self, model_dir, shards: list[PromptShard], requests: list, descs: list[str]) -> Iterator[list]:
        """One engine start for all shards; yields each shard's results (one per request) as soon as the
        worker has written them, so the stage can save a shard while the engine draws the next one."""
        tokenizer = load_tokenizer(model_dir)
        max_len = self.cfg.max_model_len or self.model_cfg.max_length
        spec_shards, shard_fits = [], []
        for shard in shards:
            token_ids = [encode_prompt(tokenizer, p) for p in shard.prompts]
            fits = [len(ids) < max_len for ids in token_ids]
            kept = [i for i, ok in enumerate(fits) if ok]
            spec_shards.append(
                {
                    "prompt_token_ids": [token_ids[i] for i in kept],
                    "requests": [
                        {
                            "desc": desc,
                            "params": [
                                sampling_args(r, shard.first_index + i, len(token_ids[i]), max_len) for i in kept
                            ],
                        }
                        for r, desc in zip(requests, descs, strict=True)
                    ],
                }
            )
            shard_fits.append(fits)
        too_long = sum(fits.count(False) for fits in shard_fits)
        if too_long:
            log.warning("%d prompts are longer than %d tokens; their samples are empty", too_long, max_len)
        work = Path(tempfile.mkdtemp(prefix="irpo-vllm-"))  # kept if the child fails: its log is in there
        spec_path, out_dir = work / "spec.json", work / "out"
        spec_path.write_text(
            json.dumps({"engine": engine_args(self.cfg, self.model_cfg, model_dir), "shards": spec_shards})
        )
        worker = _WorkerThread(self.cfg, spec_path, out_dir, work / "vllm.log", what=f"vLLM sampler ({descs[0]})")
        worker.start()
        for number, fits in enumerate(shard_fits):
            result = json.loads(worker.wait_for(out_dir / f"{number:05d}.json").read_text())
            yield self._shard_results(result, requests, fits)
        worker.finish()
        shutil.rmtree(work, ignore_errors=True)

    def _shard_results(self, result: dict, requests: list, fits: list[bool]) -> list:
        results = completions_from_worker(result, requests, fits)
        self.last_stats = {
            **result["stats"][0],
            "prompts_too_long": fits.count(False),
            "truncated": sum(c.truncated for row in results[0] for c in row),
            "engine_start_seconds": result["engine_start_seconds"],
        }
        return results

    def generate_with(
        self, model, tokenizer, prompts: list[str], request, desc: str = "sample"
    ) -> list[list[Completion]]:
        """Scoring a model still in the trainer's memory (checkpoint selection) uses transformers' generate."""
        from irpo.sampling.hf import HFSampler

        return HFSampler(self.cfg, self.model_cfg).generate_with(model, tokenizer, prompts, request, desc)


class _WorkerThread(threading.Thread):
    """Runs the vLLM worker (through `run_child`, which streams its output) while the caller waits for its
    shard files; a failure of the worker is raised in the caller."""

    def __init__(self, sampler_cfg, spec_path: Path, out_dir: Path, log_path: Path, what: str):
        super().__init__(daemon=True)  # a killed loop does not wait for it (the engine's process is its own)
        python = os.path.expanduser(sampler_cfg.python) if sampler_cfg.python else sys.executable
        # Run by path, not as irpo.sampling.vllm_worker: the worker's interpreter needs vLLM only, not irpo.
        self.command = [python, str(Path(__file__).with_name("vllm_worker.py")), str(spec_path), str(out_dir)]
        self.log_path, self.what = log_path, what
        self.error: BaseException | None = None

    def run(self) -> None:
        # vLLM's INFO lines (hundreds per engine start) would bury the loop's own; its progress bar stays.
        env = {"VLLM_LOGGING_LEVEL": "WARNING", **os.environ}
        try:
            run_child(self.command, self.log_path, what=self.what, env=env)
        except BaseException as e:  # raised in the caller's thread by wait_for / finish
            self.error = e

    def wait_for(self, path: Path, poll_seconds: float = 0.5) -> Path:
        """`path` once the worker has written it; the worker's error if it stopped without writing it."""
        while not path.exists():
            if not self.is_alive():
                if path.exists():
                    break
                raise self.error or StageProcessError(f"{self.what} exited without writing {path.name}")
            self.join(poll_seconds)
        return path

    def finish(self) -> None:
        self.join()
        if self.error is not None:
            raise self.error
