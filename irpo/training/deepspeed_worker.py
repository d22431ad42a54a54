"""One DeepSpeed rank: `torchrun --nproc_per_node=P -m irpo.training.deepspeed_worker spec.json`.

Each optimizer step takes the torch trainer's batch of pairs (same seeded order) and splits it across
ranks; every rank accumulates its share in micro-batches, and DeepSpeed averages the gradients, so
the update equals the torch trainer's. Rank 0 writes the log, the model and the summary.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from omegaconf import OmegaConf

from irpo.files import read_json, read_jsonl, write_json
from irpo.models.loading import DTYPES, load_tokenizer, no_progress_bars
from irpo.training import lora
from irpo.training.batches import step_batches, total_steps
from irpo.training.deepspeed_trainer import deepspeed_config, use_bf16
from irpo.training.logps import PairData, encode_pairs, reference_logps
from irpo.training.malloc import release_freed_memory
from irpo.training.optim import make_optimizer, prepare_model
from irpo.training.resume import (
    ResumeError,
    due,
    read_state,
    resume_dir,
    rng_state,
    set_rng_state,
    write_state,
)
from irpo.training.step import StepSettings, common_summary, run_steps
from irpo.training.workdir import TRAIN_LOG


def main(spec_path: str) -> None:
    spec = read_json(Path(spec_path))
    cfg, loss_cfg = OmegaConf.create(spec["trainer"]), OmegaConf.create(spec["loss"])
    if cfg.release_freed_memory:
        release_freed_memory()
    device, bf16 = start_rank(cfg)
    rank, world = dist.get_rank(), dist.get_world_size()
    ds_config = deepspeed_config(cfg, world, bf16)
    seed = spec["seed"]
    torch.manual_seed(seed)
    tokenizer = load_tokenizer(spec["init_model_dir"])
    pairs = read_jsonl(Path(spec["pairs"]))
    data = encode_pairs(tokenizer, pairs, loss_cfg.name, cfg.packing, cfg.logprob_chunk_size)
    steps = total_steps(cfg, len(pairs), spec["max_steps"])
    # Under ZeRO-3, HfDeepSpeedConfig (kept alive here) makes from_pretrained load each parameter into its shard.
    engine, schedule, parameters, keep_alive = start_engine(spec, cfg, ds_config, steps)  # noqa: RUF059

    output_dir = Path(spec["output_dir"])
    state = read_state(output_dir, spec["identity"])
    if state is not None:  # continue from the last checkpoint: weights, optimizer and lr schedule from DeepSpeed
        resume_engine(engine, output_dir, state, spec["desc"], steps)
    if data.uses_rejected:  # the reference is the initial model: score every pair once, before any update
        if state is not None:
            data.reference = torch.load(resume_dir(output_dir) / "reference.pt", weights_only=True)
        else:
            engine.eval()
            pad_id = tokenizer.pad_token_id
            data.reference = _sharded_reference(engine, data, pad_id, device, cfg.micro_batch_size * 2, rank, world)
            engine.train()

    steps_run = DeepSpeedSteps(engine, schedule, tokenizer, cfg, spec, output_dir, data.reference, steps, device)
    start_step = state["step"] if state is not None else 0
    steps_run.elapsed_before = state["seconds"] if state is not None else 0.0
    settings = StepSettings(
        loss_cfg, tokenizer.pad_token_id, device, cfg.micro_batch_size, output_dir / TRAIN_LOG, spec["desc"]
    )
    run_steps(engine, data, step_batches(len(pairs), cfg.batch_size, steps, seed), start_step, steps_run, settings)

    save(engine, tokenizer, output_dir, cfg, rank)
    if rank == 0:
        summary = common_summary(cfg, loss_cfg, steps, len(pairs), steps_run.seconds(), spec["init_model_dir"])
        summary.update(
            world_size=world, zero_stage=cfg.deepspeed.zero_stage, bf16=bf16, resumed_from_step=start_step, **parameters
        )
        write_json(output_dir / "train_summary.json", summary)
    dist.barrier()
    dist.destroy_process_group()


def start_rank(cfg) -> tuple[torch.device, bool]:
    """Joins the process group (nccl on GPUs, gloo on CPUs); this rank's device, and whether it trains in bf16."""
    import deepspeed

    on_gpu = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if on_gpu:
        torch.cuda.set_device(local_rank)
    deepspeed.init_distributed(dist_backend="nccl" if on_gpu else "gloo")
    device = torch.device("cuda", local_rank) if on_gpu else torch.device("cpu")
    return device, use_bf16(cfg.deepspeed.bf16, on_gpu)


def start_engine(spec: dict, cfg, ds_config: dict, steps: int):
    """(engine, lr schedule, parameter counts, the HfDeepSpeedConfig to keep alive): M_{t-1} loaded, prepared
    as the torch trainer prepares it (the same seeded LoRA adapters, on every rank), under a ZeRO engine."""
    import deepspeed
    from transformers import AutoModelForCausalLM
    from transformers.integrations import HfDeepSpeedConfig

    keep_alive = HfDeepSpeedConfig(ds_config) if cfg.deepspeed.zero_stage == 3 else None
    with no_progress_bars():
        model = AutoModelForCausalLM.from_pretrained(spec["init_model_dir"], dtype=DTYPES[spec["model"]["dtype"]])
    model = prepare_model(model, cfg, spec["seed"])
    parameters = lora.count_parameters(model)
    _, optimizer, schedule = make_optimizer(model, cfg, steps)
    engine, optimizer, _, schedule = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=schedule, config=ds_config
    )
    return engine, schedule, parameters, keep_alive


def resume_engine(engine, output_dir: Path, state: dict, desc: str, steps: int) -> None:
    """The engine's weights, optimizer and schedule, and this rank's RNG, from the checkpoint `state` names."""
    resume, rank, world = resume_dir(output_dir), dist.get_rank(), dist.get_world_size()
    if state["world_size"] != world:
        raise ResumeError(
            f"{resume} was saved by {state['world_size']} ranks and this run has {world}; resume "
            f"with as many ranks (trainer.deepspeed.num_processes x cluster.nodes), or delete {resume} to "
            "restart this training stage from step 0"
        )
    engine.load_checkpoint(str(resume / "deepspeed"), tag=state["tag"])
    set_rng_state(torch.load(resume / f"rng_rank{rank}.pt", weights_only=True))
    if rank == 0:
        print(f"{desc}: resuming from the checkpoint at step {state['step']} of {steps}", flush=True)


@dataclass
class DeepSpeedSteps:
    """The DeepSpeed ranks' side of the step loop: each rank computes its share of the batch, the engine
    averages gradients and steps at the accumulation boundary, the logged sums are all-reduced, and
    checkpoints are DeepSpeed's own (plus, with checkpoint selection, a model directory to score later)."""

    engine: Any
    schedule: torch.optim.lr_scheduler.LambdaLR
    tokenizer: Any
    cfg: Any
    spec: dict
    output_dir: Path
    reference: dict | None
    steps: int
    device: torch.device
    rank: int = field(default_factory=dist.get_rank)
    world: int = field(default_factory=dist.get_world_size)
    started: float = field(default_factory=time.perf_counter)
    elapsed_before: float = 0.0  # training seconds before the checkpoint this run resumed from

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def seconds(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def share(self, batch: list[int]) -> list[int]:
        size = self.cfg.batch_size // self.world
        return batch[self.rank * size : (self.rank + 1) * size]

    def backward(self, losses: torch.Tensor, batch_size: int) -> None:
        self.engine.backward(losses.mean())  # DeepSpeed divides by the accumulation steps and averages ranks
        self.engine.step()  # updates only at the accumulation boundary

    def step(self) -> float | None:
        grad_norm = self.engine.get_global_grad_norm()
        return float(grad_norm) if grad_norm is not None else None

    def gather(self, sums: dict[str, float], tokens: int) -> tuple[dict[str, float], float]:
        keys = sorted(sums)
        totals = torch.tensor([sums[k] for k in keys] + [tokens], dtype=torch.float64, device=self.device)
        dist.all_reduce(totals)
        return {k: float(v) for k, v in zip(keys, totals[:-1], strict=True)}, float(totals[-1])

    def lr(self) -> float:
        return float(self.schedule.get_last_lr()[0])

    def evaluate(self, step: int, stats: dict) -> None:
        """Checkpoints are scored after the ranks exit (irpo.training.deepspeed_trainer.select_checkpoint)."""

    def save(self, step: int) -> None:
        every = self.spec["selection_checkpoint_every"]
        if every and step % every == 0 and step < self.steps:  # a model dir for checkpoint selection to score
            save(self.engine, self.tokenizer, self.output_dir / "checkpoints" / f"step_{step}", self.cfg, self.rank)
        if due(step, self.cfg.save_every, self.steps):
            checkpoint(
                self.engine,
                resume_dir(self.output_dir),
                step,
                self.reference,
                self.rank,
                self.spec["identity"],
                self.world,
                self.seconds(),
            )


def checkpoint(
    engine, resume: Path, step: int, reference, rank: int, identity: dict, world: int, seconds: float
) -> None:
    """DeepSpeed's own checkpoint (sharded optimizer state under ZeRO), each rank's RNG, the reference
    log-probs; state.json last, so it only ever names a complete checkpoint. Older ones go after it."""
    tag = f"step_{step}"
    engine.save_checkpoint(str(resume / "deepspeed"), tag=tag)
    torch.save(rng_state(), resume / f"rng_rank{rank}.pt")
    if rank == 0 and reference is not None and not (resume / "reference.pt").exists():
        torch.save(reference, resume / "reference.pt")
    dist.barrier()
    if rank == 0:
        previous = read_state(resume.parent, identity)
        write_state(
            resume.parent, {"identity": identity, "step": step, "tag": tag, "world_size": world, "seconds": seconds}
        )
        if previous is not None:
            shutil.rmtree(resume / "deepspeed" / previous["tag"], ignore_errors=True)
    dist.barrier()


def save(engine, tokenizer, directory: Path, cfg, rank: int) -> None:
    """save_pretrained (safetensors) of the full model; under ZeRO-3 every rank takes part in the gather.
    Under LoRA only the adapter is saved, in directory/adapter/; the launcher merges it into M_{t-1}."""
    if lora.enabled(cfg.lora):
        import deepspeed

        adapters = [p for p in engine.module.parameters() if p.requires_grad]
        with deepspeed.zero.GatheredParameters(adapters):  # a no-op below ZeRO-3
            state = lora.trainable_state(engine.module) if rank == 0 else None
        weights_dir = directory / lora.ADAPTER_DIR
    else:
        state = (
            engine._zero3_consolidated_16bit_state_dict()
            if cfg.deepspeed.zero_stage == 3
            else engine.module.state_dict()
        )
        weights_dir = directory
    if rank == 0:
        engine.module.save_pretrained(weights_dir, state_dict=state, safe_serialization=True)
        tokenizer.save_pretrained(directory)


def _sharded_reference(engine, data: PairData, pad_id, device, chunk, rank, world) -> dict[str, torch.Tensor]:
    """Reference log-probs of both sides of every pair, chunk / 2 pairs at a time, through the torch trainer's
    `reference_logps` (with shared-prompt packing each prompt once, in one forward; padded, one forward a
    side). Each rank scores every world-th chunk; under ZeRO-3 all ranks must run the same number of forwards."""
    per_chunk = max(1, chunk // 2)
    chunks = [range(i, min(i + per_chunk, len(data.chosen))) for i in range(0, len(data.chosen), per_chunk)]
    rounds = -(-len(chunks) // world)
    mine = {}
    for r in range(rounds):
        index = r * world + rank
        pairs = chunks[min(index, len(chunks) - 1)]
        scored = reference_logps(engine, data.subset(pairs), pad_id, device, chunk)
        if index < len(chunks):  # past the end: a repeat forward that keeps the ranks in step, discarded
            mine[index] = scored
    gathered: list = [None] * world
    dist.all_gather_object(gathered, mine)
    every = {k: v for part in gathered for k, v in part.items()}
    return {side: torch.cat([every[i][side] for i in range(len(chunks))]) for side in ("chosen", "rejected")}


if __name__ == "__main__":
    main(sys.argv[1])
