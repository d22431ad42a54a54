"""A plain PyTorch trainer for DPO+NLL, DPO and SFT: the CPU default and the reference for others."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm.auto import tqdm

from irpo.models.loading import load_model, load_tokenizer, pick_device
from irpo.rundir import publish_dir, write_json
from irpo.training import lora
from irpo.training.resume import (
    cut_log,
    due,
    job_identity,
    load_torch_checkpoint,
    prepare_tmp_dir,
    resume_dir,
    rng_state,
    save_torch_checkpoint,
    set_rng_state,
)
from irpo.training.step import (
    encode_pairs,
    lr_multiplier,
    micro_batch_loss,
    reference_logps,
    step_batches,
    total_steps,
    train_summary,
)

log = logging.getLogger(__name__)


class TorchTrainer:
    def __init__(self, trainer_cfg, model_cfg, cluster_cfg=None):
        self.cfg = trainer_cfg
        self.model_cfg = model_cfg

    def train(
        self,
        init_model_dir: str | Path,
        pairs: list[dict],
        output_dir: Path,
        loss_cfg,
        seed: int,
        desc: str = "train",
        select: Callable | None = None,
        max_steps: int | None = None,
    ) -> dict:
        """Train from `init_model_dir` on `pairs` and save the result to `output_dir`.

        pairs: rows with "prompt", "chosen" and (for preference losses) "rejected"; rejected responses
        are scored and logged under any loss, so SFT runs show them too (the paper's Figure 2).
        The reference model is the initial model: its log-probs are computed once, before any update.
        select: score(model, tokenizer) on held-out data; with trainer.eval_every > 0, the weights of
        the best-scoring evaluation are the ones saved, and the step is recorded.
        """
        cfg = self.cfg
        if not pairs:
            raise ValueError(f"{desc}: no training pairs; nothing to train on (see pairs_stats.json)")
        device = pick_device(cfg.device)
        torch.manual_seed(seed)
        tokenizer = load_tokenizer(init_model_dir)
        model = load_model(init_model_dir, self.model_cfg.dtype, str(device))
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        if lora.enabled(cfg.lora):  # starts as M_{t-1} itself (B = 0): the reference below is unchanged
            model = lora.wrap(model, cfg.lora, seed, cfg.gradient_checkpointing)

        data = encode_pairs(tokenizer, pairs, loss_cfg.name, cfg.packing)
        steps = total_steps(cfg, len(pairs), max_steps)
        tmp_dir = output_dir.with_name(output_dir.name + ".tmp")
        identity = job_identity(init_model_dir, len(pairs), steps, seed, desc)
        resumed = load_torch_checkpoint(tmp_dir, identity) if prepare_tmp_dir(tmp_dir) else None
        if data.uses_rejected:
            if resumed and resumed.get("reference") is not None:
                data.reference = resumed["reference"]
            else:
                model.eval()
                chunk = cfg.micro_batch_size * 2
                data.reference = reference_logps(model, data, tokenizer.pad_token_id, device, chunk)

        selecting = select is not None and cfg.eval_every > 0
        best = {"score": -1.0, "step": None, "state": None}
        scores: dict[int, float] = {}
        trained = [p for p in model.parameters() if p.requires_grad]  # the adapters only, under LoRA
        optimizer = torch.optim.AdamW(trained, lr=cfg.lr, weight_decay=cfg.weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(cfg, steps))
        order = step_batches(len(pairs), cfg.batch_size, steps, seed)
        start_step, elapsed_before, checkpoint_seconds, checkpoint_bytes = 0, 0.0, 0.0, 0
        if resumed:
            model.load_state_dict(resumed["model"])
            optimizer.load_state_dict(resumed["optimizer"])
            schedule.load_state_dict(resumed["scheduler"])
            set_rng_state(resumed["rng"])
            start_step, scores, elapsed_before = resumed["step"], resumed["scores"], resumed.get("seconds", 0.0)
            best = {"score": resumed["best_score"], "step": resumed["best_step"], "state": resumed.get("best_state")}
            log.info("%s: resuming from the checkpoint at step %d of %d", desc, start_step, steps)
        log_path = tmp_dir / "train_log.jsonl"
        cut_log(log_path, start_step)

        model.train()
        started = time.perf_counter()
        with log_path.open("a") as log_file:
            for step, batch_indices in enumerate(
                tqdm(order[start_step:], desc=desc, unit="step", leave=False, initial=start_step, total=steps),
                start=start_step + 1,
            ):
                step_start = time.perf_counter()
                sums, tokens = {}, 0
                for start in range(0, len(batch_indices), cfg.micro_batch_size):
                    idx = batch_indices[start : start + cfg.micro_batch_size]
                    losses, micro_sums, micro_tokens = micro_batch_loss(
                        model, idx, data, loss_cfg, tokenizer.pad_token_id, device
                    )
                    (losses.sum() / len(batch_indices)).backward()
                    tokens += micro_tokens
                    for key, value in micro_sums.items():
                        sums[key] = sums.get(key, 0.0) + value
                grad_norm = torch.nn.utils.clip_grad_norm_(trained, cfg.max_grad_norm)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                stats = {key: value / len(batch_indices) for key, value in sums.items()}
                stats.update(
                    step=step,
                    lr=schedule.get_last_lr()[0],
                    grad_norm=float(grad_norm),
                    tokens_per_s=tokens / (time.perf_counter() - step_start),
                )
                if selecting and (step % cfg.eval_every == 0 or step == steps):
                    scores[step] = stats["held_out_accuracy"] = select(model, tokenizer)
                    if scores[step] > best["score"]:  # ties keep the earlier, less-trained step
                        best = {"score": scores[step], "step": step, "state": lora.trainable_state(model)}
                log_file.write(json.dumps(stats) + "\n")
                log_file.flush()  # dashboards tail this file while training runs
                if due(step, cfg.save_every, steps):
                    saving_since = time.perf_counter()
                    checkpoint_bytes = save_torch_checkpoint(
                        tmp_dir,
                        {
                            "identity": identity,
                            "step": step,
                            "model": model.state_dict(),
                            "optimizer": optimizer.state_dict(),
                            "scheduler": schedule.state_dict(),
                            "rng": rng_state(),
                            "scores": scores,
                            "best_step": best["step"],
                            "best_score": best["score"],
                            "best_state": best["state"],
                            "reference": data.reference,
                            "seconds": elapsed_before + time.perf_counter() - started,
                        },
                    )
                    checkpoint_seconds += time.perf_counter() - saving_since

        if selecting:
            lora.restore_trainable_state(model, best["state"])

        parameters = lora.count_parameters(model)
        if lora.enabled(cfg.lora):
            lora.save_merged(model, tmp_dir, cfg.lora)
        else:
            model.save_pretrained(tmp_dir, safe_serialization=True)
        tokenizer.save_pretrained(tmp_dir)
        summary = train_summary(
            cfg, loss_cfg, steps, len(pairs), elapsed_before + time.perf_counter() - started, init_model_dir
        )
        summary.update(
            selected_step=best["step"] if selecting else steps,
            held_out_accuracy=scores or None,
            resumed_from_step=start_step,
            checkpoint_seconds=round(checkpoint_seconds, 3),
            checkpoint_bytes=checkpoint_bytes,
            **parameters,
        )
        write_json(tmp_dir / "train_summary.json", summary)
        publish_dir(tmp_dir, output_dir)
        shutil.rmtree(resume_dir(output_dir), ignore_errors=True)  # M_t's directory holds the model, not the run
        return summary
