"""One DeepSpeed rank: `torchrun --nproc_per_node=P -m irpo.training.deepspeed_worker spec.json`.

Each optimizer step takes the torch trainer's batch of pairs (same seeded order) and splits it across
ranks; every rank accumulates its share in micro-batches, and DeepSpeed averages the gradients, so
the update equals the torch trainer's. Rank 0 writes the log, the model and the summary.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from omegaconf import OmegaConf
from tqdm.auto import tqdm

from irpo.models.loading import DTYPES, load_tokenizer
from irpo.rundir import read_jsonl, write_json
from irpo.training import lora
from irpo.training.deepspeed_trainer import deepspeed_config, use_bf16
from irpo.training.resume import (
    ResumeError,
    cut_log,
    due,
    read_state,
    resume_dir,
    rng_state,
    set_rng_state,
    write_state,
)
from irpo.training.step import (
    encode_pairs,
    lr_multiplier,
    micro_batch_loss,
    score_sequences,
    step_batches,
    total_steps,
    train_summary,
)


def main(spec_path: str) -> None:
    import deepspeed
    from transformers import AutoModelForCausalLM
    from transformers.integrations import HfDeepSpeedConfig

    spec = json.loads(Path(spec_path).read_text())
    cfg, loss_cfg = OmegaConf.create(spec["trainer"]), OmegaConf.create(spec["loss"])
    on_gpu = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if on_gpu:
        torch.cuda.set_device(local_rank)
    deepspeed.init_distributed(dist_backend="nccl" if on_gpu else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", local_rank) if on_gpu else torch.device("cpu")
    bf16 = use_bf16(cfg.bf16, on_gpu)
    ds_config = deepspeed_config(cfg, world, bf16)
    seed = spec["seed"]
    torch.manual_seed(seed)

    # Under ZeRO-3 this makes from_pretrained load each parameter straight into its shard.
    keep_alive = HfDeepSpeedConfig(ds_config) if cfg.zero_stage == 3 else None  # noqa: F841
    tokenizer = load_tokenizer(spec["init_model_dir"])
    model = AutoModelForCausalLM.from_pretrained(spec["init_model_dir"], dtype=DTYPES[spec["model"]["dtype"]])
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    if lora.enabled(cfg.lora):  # the same seeded adapters as the torch trainer's, on every rank
        model = lora.wrap(model, cfg.lora, seed, cfg.gradient_checkpointing)
    parameters = lora.count_parameters(model)
    pairs = read_jsonl(Path(spec["pairs"]))
    data = encode_pairs(tokenizer, pairs, loss_cfg.name, cfg.packing)
    steps = total_steps(cfg, len(pairs), spec["max_steps"])
    trained = [p for p in model.parameters() if p.requires_grad]  # the adapters only, under LoRA
    optimizer = torch.optim.AdamW(trained, lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(cfg, steps))
    engine, optimizer, _, schedule = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=schedule, config=ds_config
    )
    pad_id = tokenizer.pad_token_id

    output_dir = Path(spec["output_dir"])
    resume = resume_dir(output_dir)
    state = read_state(output_dir, spec["identity"])
    start_step, elapsed_before = 0, 0.0
    if state is not None:  # continue from the last checkpoint: weights, optimizer and lr schedule from DeepSpeed
        if state["world_size"] != world:
            raise ResumeError(
                f"{resume} was saved by {state['world_size']} ranks and this run has {world}; resume "
                f"with as many ranks (trainer.num_processes x cluster.nodes), or delete {resume} to "
                "restart this training stage from step 0"
            )
        engine.load_checkpoint(str(resume / "deepspeed"), tag=state["tag"])
        set_rng_state(torch.load(resume / f"rng_rank{rank}.pt", weights_only=True))
        start_step, elapsed_before = state["step"], state["seconds"]
        if rank == 0:
            print(f"{spec['desc']}: resuming from the checkpoint at step {start_step} of {steps}", flush=True)

    if data.uses_rejected:  # the reference is the initial model: score every pair once, before any update
        if state is not None:
            data.reference = torch.load(resume / "reference.pt", weights_only=True)
        else:
            engine.eval()
            data.reference = {
                name: _sharded_scores(engine, seqs, pad_id, device, cfg.micro_batch_size * 2, rank, world, cfg.packing)
                for name, seqs in (("chosen", data.chosen), ("rejected", data.rejected))
            }
            engine.train()

    share = cfg.batch_size // world
    started = time.perf_counter()
    if rank == 0:
        cut_log(output_dir / "train_log.jsonl", start_step)
    log_file = (output_dir / "train_log.jsonl").open("a") if rank == 0 else None
    batches = step_batches(len(pairs), cfg.batch_size, steps, seed)
    for step, batch_indices in enumerate(
        tqdm(
            batches[start_step:],
            desc=spec["desc"],
            unit="step",
            leave=False,
            initial=start_step,
            total=steps,
            disable=rank != 0,
        ),
        start=start_step + 1,
    ):
        step_start = time.perf_counter()
        mine = batch_indices[rank * share : (rank + 1) * share]
        sums, tokens = {}, 0
        for start in range(0, len(mine), cfg.micro_batch_size):
            idx = mine[start : start + cfg.micro_batch_size]
            losses, micro_sums, micro_tokens = micro_batch_loss(engine, idx, data, loss_cfg, pad_id, device)
            engine.backward(losses.mean())  # DeepSpeed divides by the accumulation steps and averages ranks
            engine.step()  # updates only at the accumulation boundary
            tokens += micro_tokens
            for key, value in micro_sums.items():
                sums[key] = sums.get(key, 0.0) + value
        keys = sorted(sums)
        totals = torch.tensor([sums[k] for k in keys] + [tokens], dtype=torch.float64, device=device)
        dist.all_reduce(totals)
        if rank == 0:
            stats = {k: float(v) / len(batch_indices) for k, v in zip(keys, totals[:-1], strict=True)}
            grad_norm = engine.get_global_grad_norm()
            stats.update(
                step=step,
                lr=schedule.get_last_lr()[0],
                grad_norm=float(grad_norm) if grad_norm is not None else None,
                tokens_per_s=float(totals[-1]) / (time.perf_counter() - step_start),
            )
            log_file.write(json.dumps(stats) + "\n")
            log_file.flush()
        if spec["save_every"] and step % spec["save_every"] == 0 and step < steps:
            save(engine, tokenizer, output_dir / "checkpoints" / f"step_{step}", cfg, rank)
        if due(step, cfg.save_every, steps):
            checkpoint(
                engine,
                resume,
                step,
                data.reference,
                rank,
                spec["identity"],
                world,
                elapsed_before + time.perf_counter() - started,
            )

    save(engine, tokenizer, output_dir, cfg, rank)
    if rank == 0:
        log_file.close()
        summary = train_summary(
            cfg, loss_cfg, steps, len(pairs), elapsed_before + time.perf_counter() - started, spec["init_model_dir"]
        )
        summary.update(
            world_size=world, zero_stage=cfg.zero_stage, bf16=bf16, resumed_from_step=start_step, **parameters
        )
        write_json(output_dir / "train_summary.json", summary)
    dist.barrier()
    dist.destroy_process_group()


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
        state = engine._zero3_consolidated_16bit_state_dict() if cfg.zero_stage == 3 else engine.module.state_dict()
        weights_dir = directory
    if rank == 0:
        engine.module.save_pretrained(weights_dir, state_dict=state, safe_serialization=True)
        tokenizer.save_pretrained(directory)


def _sharded_scores(engine, sequences, pad_id, device, chunk, rank, world, packing) -> torch.Tensor:
    """Each rank scores every world-th chunk; under ZeRO-3 all ranks must run the same number of forwards."""
    chunks = [sequences[i : i + chunk] for i in range(0, len(sequences), chunk)]
    rounds = -(-len(chunks) // world)
    mine = {}
    for r in range(rounds):
        index = r * world + rank
        scored = score_sequences(engine, chunks[min(index, len(chunks) - 1)], pad_id, device, chunk, packing)
        if index < len(chunks):  # past the end: a repeat forward that keeps the ranks in step, discarded
            mine[index] = scored
    gathered: list = [None] * world
    dist.all_gather_object(gathered, mine)
    every = {k: v for part in gathered for k, v in part.items()}
    return torch.cat([every[i] for i in range(len(chunks))])


if __name__ == "__main__":
    main(sys.argv[1])
