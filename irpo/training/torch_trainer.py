"""A plain PyTorch trainer for DPO+NLL, DPO and SFT: the CPU default and the reference for others."""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from irpo.files import publish_dir, write_json
from irpo.models.loading import load_model, load_tokenizer, pick_device
from irpo.models.precision import autocast, autocast_dtype, check_mixed_precision
from irpo.models.tokens import EncodedSequence
from irpo.protocols import Checkpoint, Scorer
from irpo.training import lora
from irpo.training.batches import step_batches, total_steps
from irpo.training.logps import encode_pairs, reference_logps
from irpo.training.malloc import release_freed_memory
from irpo.training.optim import make_optimizer, prepare_model
from irpo.training.resume import (
    due,
    job_identity,
    load_torch_checkpoint,
    prepare_tmp_dir,
    resume_dir,
    rng_state,
    save_torch_checkpoint,
    set_rng_state,
)
from irpo.training.step import StepSettings, check_trainable, common_summary, run_steps
from irpo.training.workdir import TRAIN_LOG, work_dir

log = logging.getLogger(__name__)


class TorchTrainer:
    def __init__(self, trainer_cfg, model_cfg, cluster_cfg=None):
        self.cfg = trainer_cfg
        self.model_cfg = model_cfg
        # Reference log-probs this trainer computed, per pair, for one reference model (see `reference`).
        self.reference_memo: tuple[tuple, dict[bytes, tuple[torch.Tensor, torch.Tensor]]] = ((), {})
        if trainer_cfg.release_freed_memory:  # before the model's first allocations
            release_freed_memory()

    @staticmethod
    def check(cfg) -> None:
        """trainer.torch.device: a device torch knows (the device's presence is known only where it trains);
        trainer.torch.mixed_precision: auto, bf16 or none."""
        check_mixed_precision(cfg.trainer.torch.mixed_precision, "trainer.torch.mixed_precision")
        device = cfg.trainer.torch.device
        if device != "auto":
            try:
                torch.device(device)
            except RuntimeError:
                message = f"trainer.torch.device must be auto or a torch device (cpu, cuda:0), not {device!r}"
                raise ValueError(message) from None

    def train(
        self,
        init_model_dir: str | Path,
        pairs: list[dict],
        output_dir: Path,
        loss_cfg,
        seed: int,
        desc: str = "train",
        scorer: Scorer | None = None,
        max_steps: int | None = None,
    ) -> dict:
        """`irpo.protocols.Trainer.train`: train from `init_model_dir` on `pairs`, save to `output_dir`.

        pairs: rows with "prompt", "chosen" and (for preference losses) "rejected"; rejected responses
        are scored and logged under any loss, so SFT runs show them too (the paper's Figure 2).
        The reference model is the initial model: its log-probs are computed once, before any update.
        scorer: scores the model in memory every trainer.eval_every steps (and the last); the weights of
        the best-scoring evaluation are the ones saved, and the step is recorded.
        """
        cfg = self.cfg
        check_trainable(pairs, scorer, cfg, desc)
        device = pick_device(cfg.torch.device)
        mixed = autocast_dtype(cfg.torch.mixed_precision, device, self.model_cfg.dtype)
        torch.manual_seed(seed)
        tokenizer = load_tokenizer(init_model_dir)
        model = prepare_model(load_model(init_model_dir, self.model_cfg.dtype, str(device)), cfg, seed)
        data = encode_pairs(tokenizer, pairs, loss_cfg.name, cfg.packing, cfg.logprob_chunk_size)
        steps = total_steps(cfg, len(pairs), max_steps)
        tmp_dir = work_dir(output_dir)
        identity = job_identity(init_model_dir, len(pairs), steps, seed, desc)
        resumed = load_torch_checkpoint(tmp_dir, identity) if prepare_tmp_dir(tmp_dir) else None
        if data.uses_rejected:  # the reference log-probs: from the checkpoint, or computed once, before any update
            saved = resumed.get("reference") if resumed else None
            pad_id = tokenizer.pad_token_id
            data.reference = (
                saved if saved is not None else self.reference(model, data, pad_id, device, mixed, init_model_dir, desc)
            )

        trained, optimizer, schedule = make_optimizer(model, cfg, steps)
        steps_run = TorchSteps(
            cfg, model, tokenizer, trained, optimizer, schedule, steps, tmp_dir, identity, data.reference, scorer
        )
        start_step = steps_run.resume(resumed, desc) if resumed else 0
        model.train()
        settings = StepSettings(
            loss_cfg, tokenizer.pad_token_id, device, cfg.micro_batch_size, tmp_dir / TRAIN_LOG, desc, mixed
        )
        run_steps(model, data, step_batches(len(pairs), cfg.batch_size, steps, seed), start_step, steps_run, settings)

        saved = steps_run.save_model()
        summary = common_summary(cfg, loss_cfg, steps, len(pairs), steps_run.seconds(), init_model_dir)
        summary.update(
            resumed_from_step=start_step,
            mixed_precision=str(mixed).removeprefix("torch.") if mixed else "none",
            **saved,
        )
        write_json(tmp_dir / "train_summary.json", summary)
        publish_dir(tmp_dir, output_dir)
        shutil.rmtree(resume_dir(output_dir), ignore_errors=True)  # M_t's directory holds the model, not the run
        return summary

    def reference(self, model, data, pad_id: int, device, mixed, init_model_dir, desc: str) -> dict[str, torch.Tensor]:
        """The reference model's log-probs of both sides of every pair. Pairs this trainer already scored with
        the same reference (the selection run's, when the retrain adds the held-out pairs to them) are
        reused, not recomputed: the retrain's forward passes over the reference shrink to the held-out pairs."""
        model.eval()
        key = (str(Path(init_model_dir).resolve()), data.packing, mixed)
        if self.reference_memo[0] != key:
            self.reference_memo = (key, {})
        memo = self.reference_memo[1]
        pairs = [pair_key(c, r) for c, r in zip(data.chosen, data.rejected or [], strict=True)]
        missing = [i for i, k in enumerate(pairs) if k not in memo]
        if missing:
            todo = data.subset(missing)
            with autocast(mixed, device):  # as the policy's forwards run, so they start equal
                scored = reference_logps(model, todo, pad_id, device, chunk=self.cfg.micro_batch_size * 2)
            for j, i in enumerate(missing):
                memo[pairs[i]] = (scored["chosen"][j], scored["rejected"][j])
        if len(missing) < len(pairs):
            reused = len(pairs) - len(missing)
            log.info("%s: reference log-probs of %d pairs reused, %d computed", desc, reused, len(missing))
        return {side: torch.stack([memo[k][s] for k in pairs]) for s, side in enumerate(("chosen", "rejected"))}


def pair_key(chosen: EncodedSequence, rejected: EncodedSequence) -> bytes:
    """A digest of the pair's two encoded sequences (the memo holds 20 bytes a pair, not its tokens)."""
    digest = hashlib.sha1()
    for sequence in (chosen, rejected):
        digest.update(array("q", [sequence.response_start, len(sequence.input_ids), *sequence.input_ids]).tobytes())
    return digest.digest()


@dataclass
class TorchSteps:
    """The torch trainer's side of the step loop: one process, torch's AdamW, checkpoint selection in process
    (the best step's trainable weights kept in memory), the whole state in one checkpoint file."""

    cfg: Any
    model: Any
    tokenizer: Any
    trained: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LambdaLR
    steps: int
    tmp_dir: Path
    identity: dict
    reference: dict | None  # the reference log-probs, saved with each checkpoint
    scorer: Scorer | None  # scores the model in memory every trainer.eval_every steps; None = no selection
    is_main: bool = True
    best: dict = field(default_factory=lambda: {"score": -1.0, "step": None, "state": None})
    scores: dict[int, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    elapsed_before: float = 0.0  # training seconds before the checkpoint this run resumed from
    checkpoint_seconds: float = 0.0
    checkpoint_bytes: int = 0

    def resume(self, resumed: dict, desc: str) -> int:
        """Restores a checkpoint's weights, optimizer, schedule, RNG and selection; returns its step."""
        self.model.load_state_dict(resumed["model"])
        self.optimizer.load_state_dict(resumed["optimizer"])
        self.schedule.load_state_dict(resumed["scheduler"])
        set_rng_state(resumed["rng"])
        self.scores, self.elapsed_before = resumed["scores"], resumed.get("seconds", 0.0)
        self.best = {"score": resumed["best_score"], "step": resumed["best_step"], "state": resumed.get("best_state")}
        log.info("%s: resuming from the checkpoint at step %d of %d", desc, resumed["step"], self.steps)
        return resumed["step"]

    def seconds(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def share(self, batch: list[int]) -> list[int]:
        return batch

    def backward(self, losses: torch.Tensor, batch_size: int) -> None:
        (losses.sum() / batch_size).backward()

    def step(self) -> float:
        grad_norm = torch.nn.utils.clip_grad_norm_(self.trained, self.cfg.max_grad_norm)
        self.optimizer.step()
        self.schedule.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(grad_norm)

    def gather(self, sums: dict[str, float], tokens: int) -> tuple[dict[str, float], float]:
        return sums, tokens

    def lr(self) -> float:
        return float(self.schedule.get_last_lr()[0])

    def evaluate(self, step: int, stats: dict) -> None:
        if self.scorer is not None and (step % self.cfg.eval_every == 0 or step == self.steps):
            checkpoint = Checkpoint(step, model=self.model, tokenizer=self.tokenizer)
            self.scores[step] = stats["held_out_accuracy"] = self.scorer.score(checkpoint)
            if self.scores[step] > self.best["score"]:  # ties keep the earlier, less-trained step
                self.best = {"score": self.scores[step], "step": step, "state": lora.trainable_state(self.model)}

    def save_model(self) -> dict:
        """Writes M_t (the selected step's weights, with checkpoint selection; LoRA merged) and its tokenizer into
        the work dir; returns what train_summary.json records about it."""
        if self.scorer is not None:
            lora.restore_trainable_state(self.model, self.best["state"])
        parameters = lora.count_parameters(self.model)
        if lora.enabled(self.cfg.lora):
            lora.save_merged(self.model, self.tmp_dir, self.cfg.lora)
        else:
            self.model.save_pretrained(self.tmp_dir, safe_serialization=True)
        self.tokenizer.save_pretrained(self.tmp_dir)
        return {
            "selected_step": self.best["step"] if self.scorer is not None else self.steps,
            "held_out_accuracy": self.scores or None,
            "checkpoint_seconds": round(self.checkpoint_seconds, 3),
            "checkpoint_bytes": self.checkpoint_bytes,
            **parameters,
        }

    def save(self, step: int) -> None:
        if not due(step, self.cfg.save_every, self.steps):
            return
        saving_since = time.perf_counter()
        self.checkpoint_bytes = save_torch_checkpoint(
            self.tmp_dir,
            {
                "identity": self.identity,
                "step": step,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.schedule.state_dict(),
                "rng": rng_state(),
                "scores": self.scores,
                "best_step": self.best["step"],
                "best_score": self.best["score"],
                "best_state": self.best["state"],
                "reference": self.reference,
                "seconds": self.seconds(),
            },
        )
        self.checkpoint_seconds += time.perf_counter() - saving_since
