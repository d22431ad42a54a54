"""The DeepSpeed trainer, launcher side: writes the job, starts the ranks with torchrun, waits, publishes.

The ranks run `irpo.training.deepspeed_worker`, which takes the same steps as the torch trainer
(irpo/training/step.py) under a ZeRO engine. With checkpoint selection (trainer.eval_every > 0) the
ranks save a checkpoint every eval_every steps and this side scores each with the loop's sampler on
the held-out questions once the ranks have exited (so vLLM can have the GPUs), keeping the best.
The DeepSpeed config is generated here from `trainer.*` and `trainer.deepspeed.*` (`deepspeed_config`), so
the effective batch is `trainer.batch_size` whatever the number of ranks; `trainer.deepspeed.deepspeed_config`
names a JSON file merged over it for anything else.
With trainer.lora the ranks save only the adapters (checkpoints included) and this side merges each into
M_{t-1}'s weights, so what is scored and published is a plain model directory.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import socket
import sys
from collections.abc import Mapping
from pathlib import Path

from omegaconf import OmegaConf

from irpo.child import project_pythonpath, run_child
from irpo.files import publish_dir, read_json, write_json, write_jsonl
from irpo.protocols import Checkpoint, Scorer
from irpo.training import lora
from irpo.training.batches import total_steps
from irpo.training.resume import job_identity, prepare_tmp_dir, resume_dir
from irpo.training.step import check_trainable
from irpo.training.workdir import work_dir

log = logging.getLogger(__name__)


def check_batch_split(trainer_cfg, world_size: int) -> None:
    """Every rank must accumulate the same number of micro-batches for the batch to equal batch_size."""
    if trainer_cfg.batch_size % (trainer_cfg.micro_batch_size * world_size):
        raise ValueError(
            f"trainer.batch_size ({trainer_cfg.batch_size}) must be a multiple of "
            f"trainer.micro_batch_size x ranks ({trainer_cfg.micro_batch_size} x {world_size})"
        )


def use_bf16(setting, on_gpu: bool) -> bool:
    """trainer.deepspeed.bf16: auto (where the GPU supports it) | true | false."""
    value = str(setting).lower()
    if value not in ("auto", "true", "false"):
        raise ValueError(f"trainer.deepspeed.bf16 must be auto, true or false, not {setting!r}")
    if value == "auto":
        import torch

        return on_gpu and torch.cuda.is_bf16_supported()
    return value == "true"


def deepspeed_config(trainer_cfg, world_size: int, bf16: bool) -> dict:
    """DeepSpeed's JSON config for `world_size` ranks; batch sizes count pairs."""
    check_batch_split(trainer_cfg, world_size)
    backend = trainer_cfg.deepspeed
    per_step = trainer_cfg.micro_batch_size * world_size
    config = {
        "train_batch_size": trainer_cfg.batch_size,
        "train_micro_batch_size_per_gpu": trainer_cfg.micro_batch_size,
        "gradient_accumulation_steps": trainer_cfg.batch_size // per_step,
        "gradient_clipping": trainer_cfg.max_grad_norm,
        "zero_optimization": {"stage": backend.zero_stage},
        "bf16": {"enabled": bf16},
        "zero_allow_untested_optimizer": True,  # torch's AdamW, as in the torch trainer
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if backend.zero_stage == 3:
        # save_pretrained needs the full weights: gather the shards onto rank 0 at save time.
        config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] = True
    if backend.deepspeed_config:
        config = _merge(config, read_json(Path(backend.deepspeed_config).expanduser()))
    return config


def ranks_per_node(trainer_cfg) -> int:
    if trainer_cfg.deepspeed.num_processes > 0:
        return trainer_cfg.deepspeed.num_processes
    import torch

    return max(1, torch.cuda.device_count())


def launch_command(
    trainer_cfg, cluster_cfg, spec_path: Path, python: str = sys.executable, env: Mapping[str, str] | None = None
) -> list[str]:
    """torchrun on this node; across nodes, one torchrun per node started by srun inside the Slurm job."""
    env = os.environ if env is None else env
    worker = ["-m", "irpo.training.deepspeed_worker", str(spec_path)]
    per_node = f"--nproc_per_node={ranks_per_node(trainer_cfg)}"
    if cluster_cfg.nodes <= 1:
        return [python, "-m", "torch.distributed.run", "--standalone", per_node, *worker]
    if "SLURM_JOB_ID" not in env:
        raise RuntimeError(
            f"cluster.nodes={cluster_cfg.nodes} needs a Slurm allocation of that many nodes "
            "(cluster=slurm); this process is not in one"
        )
    head = env.get("SLURMD_NODENAME") or socket.gethostname()  # the loop runs on the job's first node
    port = trainer_cfg.deepspeed.master_port or 29500
    # A job step sees only the GPUs it asks for, even inside the job's allocation.
    gpus = [f"--gpus-per-node={cluster_cfg.gpus_per_node}"] if cluster_cfg.gpus_per_node else []
    return [
        "srun",
        f"--nodes={cluster_cfg.nodes}",
        "--ntasks-per-node=1",
        "--overlap",
        "--kill-on-bad-exit=1",
        *gpus,
        python,
        "-m",
        "torch.distributed.run",
        f"--nnodes={cluster_cfg.nodes}",
        per_node,
        "--rdzv_backend=c10d",
        f"--rdzv_endpoint={head}:{port}",
        f"--rdzv_id=irpo-{env['SLURM_JOB_ID']}",
        *worker,
    ]


class DeepSpeedTrainer:
    def __init__(self, trainer_cfg, model_cfg, cluster_cfg):
        self.cfg = trainer_cfg
        self.model_cfg = model_cfg
        self.cluster_cfg = cluster_cfg

    @staticmethod
    def check(cfg) -> None:
        """trainer.deepspeed.*: a batch the ranks can split, a ZeRO stage, a bf16 setting, DeepSpeed installed."""
        backend = cfg.trainer.deepspeed
        if backend.num_processes > 0:  # 0 = one per GPU: known only on the node that trains
            check_batch_split(cfg.trainer, backend.num_processes * cfg.cluster.nodes)
        if backend.zero_stage not in (0, 1, 2, 3):
            raise ValueError(f"trainer.deepspeed.zero_stage must be 0, 1, 2 or 3, not {backend.zero_stage}")
        use_bf16(backend.bf16, on_gpu=False)
        if importlib.util.find_spec("deepspeed") is None:
            raise ValueError("deepspeed is not installed: pip install -e '.[deepspeed]'")

    def train(
        self,
        init_model_dir,
        pairs: list[dict],
        output_dir: Path,
        loss_cfg,
        seed: int,
        desc: str = "train",
        scorer: Scorer | None = None,
        max_steps: int | None = None,
    ) -> dict:
        """`irpo.protocols.Trainer.train`; checkpoints are scored once the ranks have exited, as saved dirs."""
        check_trainable(pairs, scorer, self.cfg, desc)
        tmp_dir = work_dir(output_dir)
        prepare_tmp_dir(tmp_dir)  # kept when it holds a checkpoint: the ranks continue from it
        job = tmp_dir / "job"
        if (tmp_dir / "train_summary.json").exists():  # the ranks finished before a kill: on to selection
            log.info("%s: the DeepSpeed ranks finished in an earlier run", desc)
        else:
            spec = self.job_spec(init_model_dir, pairs, job, loss_cfg, seed, desc, scorer is not None, max_steps)
            self.run_ranks(spec, tmp_dir, desc)
        if not (tmp_dir / "train_summary.json").exists():
            raise RuntimeError(f"DeepSpeed trainer ({desc}) exited cleanly but saved no model; see {tmp_dir}")
        shutil.rmtree(job, ignore_errors=True)
        summary = read_json(tmp_dir / "train_summary.json")
        if lora.enabled(self.cfg.lora):  # the ranks saved adapters: merge each into M_{t-1}'s weights
            for directory in [tmp_dir, *sorted((tmp_dir / "checkpoints").glob("step_*"))]:
                if (directory / lora.ADAPTER_DIR).exists():  # (from M_{t-1} each time: a rerun merges the same)
                    lora.merge_saved_adapter(
                        init_model_dir, directory, self.model_cfg.dtype, keep_adapter=self.cfg.lora.save_adapter
                    )
        if scorer is not None and summary.get("held_out_accuracy") is None:  # not yet selected (or killed while)
            summary.update(select_checkpoint(tmp_dir, summary["steps"], scorer))
            write_json(tmp_dir / "train_summary.json", summary)
        publish_dir(tmp_dir, output_dir)
        shutil.rmtree(resume_dir(output_dir), ignore_errors=True)  # M_t's directory holds the model, not the run
        return summary

    def job_spec(
        self, init_model_dir, pairs: list[dict], job: Path, loss_cfg, seed: int, desc: str, selecting: bool, max_steps
    ) -> Path:
        """Writes the ranks' job (job/pairs.jsonl, job/spec.json); returns the spec's path."""
        job.mkdir(exist_ok=True)
        write_jsonl(job / "pairs.jsonl", pairs)
        steps = total_steps(self.cfg, len(pairs), max_steps)
        spec = {
            "init_model_dir": str(init_model_dir),
            "output_dir": str(job.parent),
            "pairs": str(job / "pairs.jsonl"),
            "trainer": OmegaConf.to_container(self.cfg, resolve=True),
            "model": OmegaConf.to_container(self.model_cfg, resolve=True),
            "loss": OmegaConf.to_container(loss_cfg, resolve=True),
            "seed": seed,
            "max_steps": max_steps,
            "desc": desc,
            # With checkpoint selection the ranks save a model dir to score every eval_every steps.
            "selection_checkpoint_every": self.cfg.eval_every if selecting else 0,
            "identity": job_identity(
                init_model_dir, len(pairs), steps, seed, desc, zero_stage=self.cfg.deepspeed.zero_stage
            ),
        }
        write_json(job / "spec.json", spec)
        return job / "spec.json"

    def run_ranks(self, spec: Path, tmp_dir: Path, desc: str) -> None:
        """torchrun (srun + torchrun across nodes) on the job; its output goes to tmp_dir/launch.log."""
        env = dict(os.environ, PYTHONPATH=project_pythonpath(os.environ))
        if not _has_cuda():
            env.setdefault("DS_ACCELERATOR", "cpu")
        ranks = ranks_per_node(self.cfg) * self.cluster_cfg.nodes
        log.info("%s: DeepSpeed ZeRO-%d on %d rank(s)", desc, self.cfg.deepspeed.zero_stage, ranks)
        run_child(
            launch_command(self.cfg, self.cluster_cfg, spec, env=env),
            tmp_dir / "launch.log",
            what=f"DeepSpeed trainer ({desc})",
            env=env,
        )


def select_checkpoint(model_dir: Path, last_step: int, scorer: Scorer) -> dict:
    """Scores model_dir/checkpoints/step_* and model_dir (the last step); the best weights end up in
    model_dir (ties keep the earlier, less-trained step) and the checkpoints are deleted."""
    candidates = {int(p.name.split("_")[1]): p for p in (model_dir / "checkpoints").glob("step_*")}
    candidates[last_step] = model_dir
    # Scores already computed (by a run that was then killed) are kept, not recomputed.
    scored = model_dir / "selection_scores.json"
    scores = {int(k): v for k, v in read_json(scored).items()} if scored.exists() else {}
    for step in sorted(candidates):
        if step not in scores:
            scores[step] = scorer.score(Checkpoint(step, model_dir=candidates[step]))
            write_json(scored, scores)
        log.info("checkpoint at step %d: held-out accuracy %.3f", step, scores[step])
    best = max(sorted(scores), key=lambda step: scores[step])
    if best != last_step:
        for old in [*model_dir.glob("*.safetensors"), *model_dir.glob("*.safetensors.index.json")]:
            old.unlink()
        for weights in [*candidates[best].glob("*.safetensors"), *candidates[best].glob("*.safetensors.index.json")]:
            shutil.move(str(weights), model_dir / weights.name)
        if (candidates[best] / lora.ADAPTER_DIR).exists():  # trainer.lora.save_adapter: the selected step's
            shutil.rmtree(model_dir / lora.ADAPTER_DIR)
            shutil.move(str(candidates[best] / lora.ADAPTER_DIR), model_dir / lora.ADAPTER_DIR)
    shutil.rmtree(model_dir / "checkpoints", ignore_errors=True)
    scored.unlink(missing_ok=True)
    return {"selected_step": best, "held_out_accuracy": scores}


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out
