"""Sampling with vLLM's offline engine, in a child process that keeps one engine per model directory.

The loop's config becomes vLLM's arguments here (`engine_args`, `sampling_args`, both plain dicts, so
they are tested without vLLM installed); `irpo.sampling.vllm_worker` runs the engine. Prompts go in as
token ids encoded exactly as the hf sampler and the trainers encode them, so every backend sees the
same inputs. The worker stays up between calls: M_t's evaluation and iteration t+1's samples (the same
directory) share one engine start; a call on another directory, or `close()`, stops it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from irpo.child import StageProcessError, run_child
from irpo.models.loading import load_tokenizer
from irpo.models.precision import sampling_dtype
from irpo.models.tokens import encode_prompt
from irpo.protocols import Completion, PromptShard, Samples, SamplingRequest, SamplingStats
from irpo.sampling.hf import HFSampler

log = logging.getLogger(__name__)


def vllm_python(vllm_cfg) -> str:
    """The interpreter that runs the worker: sampler.vllm.python, or this one."""
    return os.path.expanduser(vllm_cfg.python) if vllm_cfg.python else sys.executable


def has_vllm(vllm_cfg) -> bool:
    """Whether the worker's interpreter can import vLLM (asked without importing it: that takes seconds)."""
    python = vllm_python(vllm_cfg)
    if python == sys.executable:
        import importlib.util

        return importlib.util.find_spec("vllm") is not None
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"
    try:
        return subprocess.run([python, "-c", probe], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def vllm_default_dtype(model_cfg, model_dir: str | Path) -> str:
    """sampler.vllm.dtype unset: as sampler.hf.dtype=auto picks (bfloat16 where the device has it natively and
    the model is large enough to gain), else model.dtype."""
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return sampling_dtype("auto", model_cfg.dtype, device, model_dir)[0]


def engine_args(sampler_cfg, model_cfg, model_dir: str | Path) -> dict:
    """Keyword arguments of `vllm.LLM` for one model directory (`sampler_cfg`: the sampler.vllm section)."""
    return {
        "model": str(model_dir),
        "tokenizer": str(model_dir),
        "dtype": sampler_cfg.dtype or vllm_default_dtype(model_cfg, model_dir),
        "max_model_len": sampler_cfg.max_model_len or model_cfg.max_length,
        "tensor_parallel_size": sampler_cfg.tensor_parallel_size,
        "gpu_memory_utilization": sampler_cfg.gpu_memory_utilization,
        "enforce_eager": sampler_cfg.enforce_eager,
        "enable_chunked_prefill": sampler_cfg.chunked_prefill,  # None: decided by the worker's platform
        "enable_prefix_caching": sampler_cfg.prefix_caching,
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


def completions_from_worker(
    result: dict, requests: list[SamplingRequest], fits: list[bool]
) -> list[list[list[Completion]]]:
    """The worker's shard file as completions per request and prompt; prompts that did not fit get empty ones.

    vLLM has no answer-line stop: its samples are cut here where the task's stop rule ends them, as the hf
    sampler stops, and one that reached that end and then ran on to max_tokens is not cut off; only one
    that did not (vLLM's finish_reason "length") counts as cut off.
    """
    results = []
    for request, texts, cut in zip(requests, result["completions"], result["truncated"], strict=True):
        by_prompt = iter(
            [
                [
                    Completion(
                        request.stop_rule.cut(t) if request.stop_rule else t,
                        c and not (request.stop_rule and request.stop_rule.finished(t)),
                    )
                    for t, c in zip(row_texts, row_cut, strict=True)
                ]
                for row_texts, row_cut in zip(texts, cut, strict=True)
            ]
        )
        # A prompt that did not fit has no room to answer: its empty samples count as cut off.
        results.append([next(by_prompt) if ok else [Completion("", True)] * request.num_samples for ok in fits])
    return results


class VLLMSampler:
    name = "vllm"

    def __init__(self, sampler_cfg, model_cfg):
        self.sampler_cfg = sampler_cfg
        self.cfg = sampler_cfg.vllm
        self.model_cfg = model_cfg
        self.engine_starts = 0  # over this sampler's life (the sampling benchmark reads it)
        self._worker: _Worker | None = None

    @classmethod
    def check(cls, cfg: Any) -> None:
        vllm_cfg = cfg.sampler.vllm
        if vllm_cfg.python:
            python = os.path.expanduser(vllm_cfg.python)
            if not (os.access(python, os.X_OK) or shutil.which(python)):
                raise FileNotFoundError(f"sampler.vllm.python={vllm_cfg.python}: no such interpreter")
        elif not has_vllm(vllm_cfg):
            raise ValueError(
                "sampler=vllm needs vLLM: pip install -e '.[vllm]', or point sampler.vllm.python at an "
                "interpreter that has it (docs/scaling.md)"
            )
        if not 0 < vllm_cfg.gpu_memory_utilization <= 1:
            raise ValueError(
                f"sampler.vllm.gpu_memory_utilization must be in (0, 1], not {vllm_cfg.gpu_memory_utilization}"
            )
        if vllm_cfg.tensor_parallel_size < 1:
            raise ValueError(f"sampler.vllm.tensor_parallel_size must be >= 1, not {vllm_cfg.tensor_parallel_size}")

    def sample(
        self, model_dir: str | Path, shards: list[PromptShard], requests: list[SamplingRequest]
    ) -> Iterator[list[Samples]]:
        """Yields each shard's draws (one per request) as soon as the worker has written them, so the stage can
        save a shard while the engine draws the next one. The engine already serving `model_dir` draws them;
        if none does, one starts (and any other stops)."""
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
                            "desc": r.desc,
                            "params": [
                                sampling_args(r, shard.first_index + i, len(token_ids[i]), max_len) for i in kept
                            ],
                        }
                        for r in requests
                    ],
                }
            )
            shard_fits.append(fits)
        too_long = sum(fits.count(False) for fits in shard_fits)
        if too_long:
            log.warning("%d prompts are longer than %d tokens; their samples are empty", too_long, max_len)
        worker = self._worker_for(
            engine_args(self.cfg, self.model_cfg, model_dir), what=f"vLLM sampler ({requests[0].desc})"
        )
        try:
            for result, fits in zip(worker.draw(spec_shards), shard_fits, strict=True):
                yield self._shard_results(result, requests, fits)
        except BaseException:
            self.close()  # a failed or abandoned draw leaves no engine half-way through a job
            raise

    def sample_loaded(self, model, tokenizer, prompts: list[str], request: SamplingRequest) -> Samples:
        """Scoring a model still in the trainer's memory (checkpoint selection): the hf sampler draws from it,
        with the sampler.hf section (its decoder: sampler.hf.decoder)."""
        return HFSampler(self.sampler_cfg, self.model_cfg).sample_loaded(model, tokenizer, prompts, request)

    def close(self) -> None:
        """Stops the engine (its memory is free when this returns); a later `sample` starts one again."""
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop()

    def __enter__(self) -> VLLMSampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _worker_for(self, engine: dict, what: str) -> _Worker:
        if self._worker is not None and self._worker.engine != engine:
            log.info(
                "vLLM: %s is not the engine's model (%s): restarting it", engine["model"], self._worker.engine["model"]
            )
            self.close()
        if self._worker is None:
            self._worker = _Worker(vllm_python(self.cfg), engine, what)
            self.engine_starts += 1
        return self._worker

    def _shard_results(self, result: dict, requests: list[SamplingRequest], fits: list[bool]) -> list[Samples]:
        drawn = completions_from_worker(result, requests, fits)
        samples = []
        for number, (completions, request_stats) in enumerate(zip(drawn, result["stats"], strict=True)):
            first = number == 0
            stats = SamplingStats(
                self.name,
                sequences=request_stats["sequences"],
                new_tokens=request_stats["new_tokens"],
                seconds=request_stats["seconds"],
                truncated=sum(c.truncated for row in completions for c in row),
                prompts_too_long=fits.count(False),
                # The engine's start is counted once, with the first request of the shard it started for.
                engine_starts=int(first and result["engine_started"]),
                engine_start_seconds=result["engine_start_seconds"] if first else 0.0,
            )
            samples.append(Samples(completions, stats))
        return samples


class _Worker:
    """One vLLM engine in a child process (`vllm_worker.py <work dir>`), serving jobs until stopped.

    Jobs go in as files (work/jobs/00000.json, 00001.json, ...); each shard's results come back as
    work/out/<job>/<shard>.json, written whole. A thread runs the child through `run_child`, which streams
    its output and turns a failure into an error raised here."""

    def __init__(self, python: str, engine: dict, what: str):
        self.engine, self.what = engine, what
        self.work = Path(tempfile.mkdtemp(prefix="irpo-vllm-"))  # kept if the child fails: its log is in there
        (self.work / "jobs").mkdir()
        (self.work / "engine.json").write_text(json.dumps(engine))
        self.jobs = 0
        # Run by path, not as irpo.sampling.vllm_worker: the worker's interpreter needs vLLM only, not irpo.
        command = [python, str(Path(__file__).with_name("vllm_worker.py")), str(self.work)]
        self.thread = _ChildThread(command, self.work / "vllm.log", what)
        self.thread.start()

    def draw(self, spec_shards: list[dict]) -> Iterator[dict]:
        job = f"{self.jobs:05d}"
        self.jobs += 1
        tmp = self.work / "jobs" / f"{job}.tmp"
        tmp.write_text(json.dumps({"shards": spec_shards}))
        os.replace(tmp, self.work / "jobs" / f"{job}.json")  # whole, by rename: the worker polls for it
        for number in range(len(spec_shards)):
            yield json.loads(self.thread.wait_for(self.work / "out" / job / f"{number:05d}.json").read_text())

    def stop(self) -> None:
        (self.work / "stop").touch()
        self.thread.finish()
        shutil.rmtree(self.work, ignore_errors=True)


class _ChildThread(threading.Thread):
    """Runs the vLLM worker (through `run_child`, which streams its output) while the caller waits for its
    files; a failure of the worker is raised in the caller."""

    def __init__(self, command: list[str], log_path: Path, what: str):
        super().__init__(daemon=True)  # a killed loop does not wait for it (the worker exits when its parent does)
        self.command, self.log_path, self.what = command, log_path, what
        self.error: BaseException | None = None

    def run(self) -> None:
        # vLLM's INFO lines (hundreds per engine start) would bury the loop's own; its progress bar stays.
        env = {"VLLM_LOGGING_LEVEL": "WARNING", **os.environ}
        try:
            run_child(self.command, self.log_path, what=self.what, env=env)
        except BaseException as e:  # raised in the caller's thread by wait_for / finish
            self.error = e

    def wait_for(self, path: Path, poll_seconds: float = 0.2) -> Path:
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
