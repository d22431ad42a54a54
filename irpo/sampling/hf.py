"""Sampling with transformers' `generate`: batched, N samples per prompt, seeded."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import StoppingCriteria, StoppingCriteriaList

from irpo.models.loading import load_model, load_tokenizer, pick_device
from irpo.training.data import encode_prompt

log = logging.getLogger(__name__)


class AnswerLineDone(StoppingCriteria):
    """Per sequence: done once the text after the prompt holds `marker` and then a newline.

    Decodes only the last `window` tokens at each step, so a long completion costs linear, not
    quadratic, decoding; a marker that has slid out of the window is remembered.
    """

    def __init__(self, tokenizer, prompt_width: int, marker: str, window: int = 48):
        self.tokenizer = tokenizer
        self.prompt_width = prompt_width
        self.marker = marker.lower()
        self.window = window
        self.marker_seen: list[bool] | None = None

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        start = max(self.prompt_width, input_ids.shape[1] - self.window)
        texts = self.tokenizer.batch_decode(input_ids[:, start:], skip_special_tokens=True)
        if self.marker_seen is None:
            self.marker_seen = [False] * len(texts)
        done = []
        for row, text in enumerate(texts):
            at = text.lower().find(self.marker)
            if at != -1:
                self.marker_seen[row] = True
                done.append("\n" in text[at + len(self.marker):])
            else:  # the marker, if seen, lies before this window: every newline here comes after it
                done.append(self.marker_seen[row] and "\n" in text)
        return torch.tensor(done, device=input_ids.device)


class HFSampler:
    def __init__(self, sampler_cfg, model_cfg):
        self.cfg = sampler_cfg
        self.model_cfg = model_cfg
        self.last_stats: dict = {}

    def generate(self, model_dir: str | Path, prompts: list[str], request, desc: str = "sample") -> list[list[str]]:
        """Returns, for each prompt, `request.num_samples` completions (text after the prompt)."""
        return self.generate_each(model_dir, prompts, [request], [desc])[0]

    def generate_each(self, model_dir: str | Path, prompts: list[str], requests: list, descs: list[str]) -> list:
        """One result per request, from a single load of the model (evaluation draws greedy and voting samples)."""
        tokenizer = load_tokenizer(model_dir)
        model = load_model(model_dir, self.model_cfg.dtype, str(pick_device(self.cfg.device)))
        return [self.generate_with(model, tokenizer, prompts, r, d) for r, d in zip(requests, descs)]

    @torch.no_grad()
    def generate_with(self, model, tokenizer, prompts: list[str], request, desc: str = "sample") -> list[list[str]]:
        """The same, from a model already in memory (the trainer's checkpoint selection uses this)."""
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        n = request.num_samples
        prompts_per_batch = max(1, self.cfg.batch_size // n)
        greedy = request.temperature == 0
        completions: list[list[str]] = []
        new_tokens = 0
        too_long = 0
        started = time.perf_counter()
        for batch_number, start in enumerate(tqdm(range(0, len(prompts), prompts_per_batch), desc=desc,
                                                  unit="batch", leave=False)):
            batch_prompts = prompts[start:start + prompts_per_batch]
            encoded = [encode_prompt(tokenizer, p) for p in batch_prompts]
            # A prompt that fills the context gets empty completions (no answer: a loser), not a crash.
            fits = [len(e) < self.model_cfg.max_length for e in encoded]
            too_long += fits.count(False)
            encoded = [e if ok else e[:1] for e, ok in zip(encoded, fits)]
            width = max(map(len, encoded))
            input_ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(e)) + e for e in encoded], device=device)
            attention_mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded], device=device)
            # Seeding per batch makes a prompt's samples independent of how many batches ran before it.
            torch.manual_seed(request.seed * 1_000_003 + batch_number)
            stopping = StoppingCriteriaList([AnswerLineDone(tokenizer, width, request.stop_after)]) \
                if request.stop_after else None
            output = model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                do_sample=not greedy,
                temperature=None if greedy else request.temperature,
                top_p=None if greedy else request.top_p,
                top_k=None,
                num_return_sequences=n,
                max_new_tokens=max(1, min(request.max_new_tokens, self.model_cfg.max_length - width)),
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
                stopping_criteria=stopping,
                **({"stop_strings": list(request.stop), "tokenizer": tokenizer} if request.stop else {}),
            )
            generated = output[:, width:]
            new_tokens += int((generated != tokenizer.pad_token_id).sum())
            texts = tokenizer.batch_decode(generated, skip_special_tokens=True)
            completions.extend(texts[i * n:(i + 1) * n] if fits[i] else [""] * n for i in range(len(batch_prompts)))
        model.train(was_training)
        seconds = time.perf_counter() - started
        if too_long:
            log.warning("%d prompts are longer than model.max_length=%d tokens; their samples are empty",
                        too_long, self.model_cfg.max_length)
        self.last_stats = {"sequences": len(prompts) * n, "prompts_too_long": too_long, "new_tokens": new_tokens, "seconds": round(seconds, 2),
                           "tokens_per_s": round(new_tokens / max(seconds, 1e-9), 1)}
        return completions
