"""Sampling with transformers' `generate`: batched, N samples per prompt, seeded."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import torch
from tqdm.auto import tqdm
from transformers import StoppingCriteria, StoppingCriteriaList

from irpo.models.loading import load_model, load_tokenizer, pick_device
from irpo.models.precision import check_sampling_dtype, sampling_dtype
from irpo.models.tokens import encode_prompt
from irpo.protocols import Completion, PromptShard, Samples, SamplingRequest, SamplingStats, StopRule
from irpo.sampling.decode import Draw, sample_token_ids

log = logging.getLogger(__name__)


class AnswerLineDone(StoppingCriteria):
    """Per sequence: done once the text after the prompt holds the rule's marker and its finished answer line.

    Looks for the marker in the last `window` tokens only, so a long completion costs linear, not
    quadratic, decoding. Once a row's marker is found (it ends in the newest token then), the text after
    it is decoded from that point on, up to `answer_tokens` tokens; an answer line that long has its
    answer, so after that the next newline finishes it.
    """

    def __init__(self, tokenizer, prompt_width: int, rule: StopRule, window: int = 48, answer_tokens: int = 256):
        self.tokenizer = tokenizer
        self.prompt_width = prompt_width
        self.rule = rule
        self.marker = rule.marker
        self.window = window
        self.answer_tokens = answer_tokens
        # Per row, once the marker is seen: (where the tokens after it start, the text after it in that token).
        self.after_marker: dict[int, tuple[int, str]] = {}

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        length = input_ids.shape[1]
        start = max(self.prompt_width, length - self.window)
        texts = self.tokenizer.batch_decode(input_ids[:, start:], skip_special_tokens=True)
        done = []
        for row, text in enumerate(texts):
            if row not in self.after_marker:
                at = text.lower().rfind(self.marker.lower())
                if at == -1:
                    done.append(False)
                    continue
                self.after_marker[row] = (length, text[at + len(self.marker) :])
            begin, head = self.after_marker[row]
            if length - begin > self.answer_tokens:
                done.append("\n" in text)
                continue
            after = head + self.tokenizer.decode(input_ids[row, begin:], skip_special_tokens=True)
            done.append(self.rule.answered(after))
        return cast(torch.BoolTensor, torch.tensor(done, device=input_ids.device))


def ended_by_model(
    text: str, token_ids: list[int], end_ids: set[int], rule: StopRule | None, stop: tuple[str, ...]
) -> bool:
    """Whether a generated row ended before the token budget: an EOS or padding token (generate pads a row
    once a stopping rule finished it), the task's stop rule, or a stop string."""
    return bool(end_ids.intersection(token_ids)) or text_finished(text, rule, stop)


def text_finished(text: str, rule: StopRule | None, stop: tuple[str, ...]) -> bool:
    """Whether `text` has reached the end the task's stop rule sets, or holds one of the stop strings."""
    return bool(rule and rule.finished(text)) or any(s in text for s in stop)


def shared_prefill(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, n: int) -> dict:
    """`generate`'s inputs for n samples of each prompt, with the prompts run once instead of n times.

    The prompts (B, L) but their last token go through the model once; the cache (B, L-1) is repeated n ways
    (B*n, L-1) and `generate` starts from the last prompt token of each of the B*n rows. Positions follow
    the left padding as `generate` computes them, so the samples are drawn from the same distribution.
    """
    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    prefix = model(
        input_ids=input_ids[:, :-1],
        attention_mask=attention_mask[:, :-1],
        position_ids=positions[:, :-1],
        use_cache=True,
    ).past_key_values
    prefix.batch_repeat_interleave(n)
    return {
        "input_ids": input_ids.repeat_interleave(n, dim=0),
        "attention_mask": attention_mask.repeat_interleave(n, dim=0),
        "cache": prefix,
    }


class HFSampler:
    """The model in this process, `sampler.hf.batch_size` sequences at a time: drawn by irpo/sampling/decode.py's
    loop (decoder=loop), or by transformers' `generate` (decoder=generate, the reference)."""

    name = "hf"

    def __init__(self, sampler_cfg, model_cfg):
        self.cfg = sampler_cfg.hf
        self.model_cfg = model_cfg
        self._masks: dict[tuple, torch.Tensor] = {}

    @classmethod
    def check(cls, cfg: Any) -> None:
        if cfg.sampler.hf.batch_size < 1:
            raise ValueError(f"sampler.hf.batch_size must be >= 1, not {cfg.sampler.hf.batch_size}")
        pick_device(cfg.sampler.hf.device)  # an unknown device fails now
        check_sampling_dtype(cfg.sampler.hf.dtype, "sampler.hf.dtype")
        if cfg.sampler.hf.decoder not in ("loop", "generate"):
            raise ValueError(f"sampler.hf.decoder must be loop or generate, not {cfg.sampler.hf.decoder!r}")

    def sample(
        self, model_dir: str | Path, shards: list[PromptShard], requests: list[SamplingRequest]
    ) -> Iterator[list[Samples]]:
        """From a single load of the model, yields each shard's draws (one per request) as soon as they are drawn."""
        tokenizer = load_tokenizer(model_dir)
        device = pick_device(self.cfg.device)
        dtype, why = sampling_dtype(self.cfg.dtype, self.model_cfg.dtype, device, model_dir)
        log.info("sampler=hf: %s weights on %s (%s)", dtype, device, why)
        model = load_model(model_dir, dtype, str(device))
        for shard in shards:
            yield [
                self.sample_loaded(model, tokenizer, shard.prompts, r, first_index=shard.first_index) for r in requests
            ]

    def sample_loaded(
        self, model, tokenizer, prompts: list[str], request: SamplingRequest, first_index: int = 0
    ) -> Samples:
        """The same, from a model already in memory (the trainer's checkpoint selection uses this).
        `first_index`: the index of prompts[0] among the stage's prompts (see PromptShard).

        Sampling seeds torch's global generators (transformers' generate takes no generator of its own); the
        caller's RNG state, CPU and the model's GPU, is restored afterwards, so scoring a checkpoint
        mid-training leaves the trainer's random stream (dropout) as it was."""
        device = next(model.parameters()).device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            return self._sample_loaded(model, tokenizer, prompts, request, first_index)

    def _draw_loop(
        self, model, tokenizer, encoded: list[list[int]], request, max_new: int, end_ids: set[int], keys: list[int]
    ) -> list[list[int]]:
        """irpo/sampling/decode.py's loop; each prompt's samples are seeded by (request.seed, its index in the
        stage), so they are the same whichever batches, shards or calls ran before it."""
        rule, stop = request.stop_rule, tuple(request.stop)
        ends = (list(rule.end_chars) if rule else []) + [s[-1] for s in stop if s]

        def is_done(ids: list[int]) -> bool:
            return text_finished(tokenizer.decode(ids, skip_special_tokens=True), rule, stop)

        return sample_token_ids(
            model,
            encoded,
            Draw(request.num_samples, request.temperature, request.top_p, max_new, request.seed),
            tokenizer.pad_token_id,
            end_ids,
            is_done if ends else None,
            self._tokens_containing(tokenizer, tuple(ends)) if ends else None,
            keys,
        )

    def _tokens_containing(self, tokenizer, chars: tuple[str, ...]) -> torch.Tensor:
        """(vocab,) mask of the tokens whose text holds any of `chars`: only after one of them can an answer
        line or a stop string end. Built once per tokenizer and set of characters."""
        key = (tokenizer.name_or_path, len(tokenizer), chars)
        if key not in self._masks:
            texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
            self._masks[key] = torch.tensor([any(c in t for c in chars) for t in texts])
        return self._masks[key]

    def _draw_generate(
        self, model, tokenizer, encoded: list[list[int]], request, max_new: int, batch_index: int
    ) -> list[list[int]]:
        """transformers' generate (the reference). Seeding per batch, by its index in the stage, makes a batch's
        samples the same whichever batches, shards or calls ran before it. Where shard_prompts is not a multiple
        of the batch, the two part-batches around a shard's end share a seed (other prompts: no sample repeats)."""
        n, greedy, width = request.num_samples, request.temperature == 0, max(map(len, encoded))
        device = next(model.parameters()).device
        pad = tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded], device=device)
        attention_mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded], device=device)
        torch.manual_seed(request.seed * 1_000_003 + batch_index)
        rule = request.stop_rule
        stopping = StoppingCriteriaList([AnswerLineDone(tokenizer, width, rule)]) if rule else None
        shared = self.cfg.shared_prefill and n > 1 and width > 1
        output = model.generate(
            **(shared_prefill(model, input_ids, attention_mask, n) if shared else {}),
            **({} if shared else {"input_ids": input_ids, "attention_mask": attention_mask}),
            do_sample=not greedy,
            temperature=None if greedy else request.temperature,
            top_p=None if greedy else request.top_p,
            top_k=None,
            num_return_sequences=1 if shared else n,
            max_new_tokens=max_new,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            stopping_criteria=stopping,
            **({"stop_strings": list(request.stop), "tokenizer": tokenizer} if request.stop else {}),
        )
        return output[:, width:].tolist()

    def close(self) -> None:
        """Nothing is kept between calls: each `sample` loads its model."""

    @torch.no_grad()
    def _sample_loaded(
        self, model, tokenizer, prompts: list[str], request: SamplingRequest, first_index: int
    ) -> Samples:
        was_training = model.training
        model.eval()
        n = request.num_samples
        prompts_per_batch = max(1, self.cfg.batch_size // n)
        completions: list[list[Completion]] = []
        end_ids = {i for i in (tokenizer.eos_token_id, tokenizer.pad_token_id) if i is not None}
        new_tokens = 0
        too_long = 0
        started = time.perf_counter()
        for start in tqdm(range(0, len(prompts), prompts_per_batch), desc=request.desc, unit="batch", leave=False):
            batch_prompts = prompts[start : start + prompts_per_batch]
            encoded = [encode_prompt(tokenizer, p) for p in batch_prompts]
            # A prompt that fills the context gets empty completions (no answer: a loser), not a crash.
            fits = [len(e) < self.model_cfg.max_length for e in encoded]
            too_long += fits.count(False)
            encoded = [e if ok else e[:1] for e, ok in zip(encoded, fits, strict=True)]
            width = max(map(len, encoded))
            max_new = max(1, min(request.max_new_tokens, self.model_cfg.max_length - width))
            if self.cfg.decoder == "loop":
                keys = [first_index + start + i for i in range(len(encoded))]
                drawn = self._draw_loop(model, tokenizer, encoded, request, max_new, end_ids, keys)
            else:
                batch_index = (first_index + start) // prompts_per_batch
                drawn = self._draw_generate(model, tokenizer, encoded, request, max_new, batch_index)
            new_tokens += sum(len([t for t in ids if t != tokenizer.pad_token_id]) for ids in drawn)
            texts = tokenizer.batch_decode(drawn, skip_special_tokens=True)
            rows = [
                Completion(
                    request.stop_rule.cut(text) if request.stop_rule else text,
                    not ended_by_model(text, ids, end_ids, request.stop_rule, request.stop),
                )
                for text, ids in zip(texts, drawn, strict=True)
            ]
            # A prompt that did not fit has no room to answer: its empty samples count as cut off.
            completions.extend(
                rows[i * n : (i + 1) * n] if fits[i] else [Completion("", True)] * n for i in range(len(batch_prompts))
            )
        model.train(was_training)
        if too_long:
            log.warning(
                "%d prompts are longer than model.max_length=%d tokens; their samples are empty",
                too_long,
                self.model_cfg.max_length,
            )
        stats = SamplingStats(
            self.name,
            sequences=len(prompts) * n,
            new_tokens=new_tokens,
            truncated=sum(c.truncated for row in completions for c in row),
            prompts_too_long=too_long,
            seconds=time.perf_counter() - started,
        )
        return Samples(completions, stats)
