"""Sweeps: a 2x2 alpha/beta multirun through submitit's local executor, resumed in place, and the
Slurm launcher config that cluster=slurm composes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from irpo.files import read_json

GRID = ["loss.alpha=0.5,2", "loss.beta=0.1,0.5"]


def irpo(*args, env):
    return subprocess.run([sys.executable, "-m", "irpo", *args], capture_output=True, text=True, env=env, timeout=900)


@pytest.mark.slow
@pytest.mark.distributed
def test_alpha_beta_sweep_through_submitit_local_then_resumes_in_place(tmp_path, model_cache):
    sweep = tmp_path / "sweep"
    env = {**os.environ, "IRPO_CACHE": str(model_cache)}
    args = ["-m", "experiment=smoke", "iterations=1", "cluster=submitit_local", *GRID, f"hydra.sweep.dir={sweep}"]
    result = irpo(*args, env=env)
    assert result.returncode == 0, result.stderr[-3000:]

    # Named by the overrides that change results; cluster= and experiment= say only where and how big.
    jobs = {f"iterations=1,loss.alpha={a},loss.beta={b}": (a, b) for a in (0.5, 2) for b in (0.1, 0.5)}
    assert {p.name for p in sweep.iterdir() if (p / "config.yaml").exists()} == set(jobs)
    for name, (alpha, beta) in jobs.items():
        run_dir = sweep / name
        config = OmegaConf.load(run_dir / "config.yaml")
        assert (config.loss.alpha, config.loss.beta) == (alpha, beta)
        summary = read_json(run_dir / "iter_1" / "model" / "train_summary.json")
        assert (summary["alpha"], summary["beta"]) == (alpha, beta)
        assert len(read_json(run_dir / "results.json")["rows"]) == 2
    assert list(sweep.glob(".submitit/*/*_log.out")), "each job ran as a submitit job"
    assert (sweep / "report.md").exists() and (sweep / "alpha_beta.png").stat().st_size > 10_000

    # An interrupted job (here: its last evaluation lost) reruns into the same directory, as a requeued
    # Slurm job does, and redoes only what is missing.
    interrupted = sweep / "iterations=1,loss.alpha=2,loss.beta=0.5"
    generations = interrupted / "iter_1" / "generations.jsonl"
    stamp = generations.stat().st_mtime_ns
    for name in ("metrics.json", "eval.json", "eval.jsonl"):
        (interrupted / "iter_1" / name).unlink()
    result = irpo(*args, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (interrupted / "iter_1" / "metrics.json").exists()
    assert generations.stat().st_mtime_ns == stamp  # finished stages were not redone


def test_cluster_slurm_composes_the_sbatch_parameters(make_config):
    from conftest import CONF_DIR
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(
            "config",
            return_hydra_config=True,
            overrides=[
                "cluster=slurm",
                "cluster.partition=gpu",
                "cluster.account=lab",
                "cluster.nodes=2",
                "cluster.gpus_per_node=4",
                "cluster.mem_gb=400",
                "cluster.timeout_min=600",
                "cluster.max_num_timeout=5",
                "cluster.setup=[module load cuda,source venv/bin/activate]",
                "+cluster.additional_parameters.mail_type=END",
                "hydra.sweep.dir=/tmp/sweep",
            ],
        )
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert {
        k: launcher[k]
        for k in (
            "partition",
            "account",
            "nodes",
            "gpus_per_node",
            "mem_gb",
            "timeout_min",
            "max_num_timeout",
            "tasks_per_node",
        )
    } == {
        "partition": "gpu",
        "account": "lab",
        "nodes": 2,
        "gpus_per_node": 4,
        "mem_gb": 400,
        "timeout_min": 600,
        "max_num_timeout": 5,
        "tasks_per_node": 1,
    }
    assert launcher["setup"] == ["module load cuda", "source venv/bin/activate"]
    assert launcher["additional_parameters"] == {"mail_type": "END"}
    assert launcher["submitit_folder"] == "/tmp/sweep/.submitit/%j"


def slurm_cluster_running() -> bool:
    try:
        return subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10
        ).stdout.strip() not in ("", "down")
    except (OSError, subprocess.TimeoutExpired):
        return False


# A real cluster: .ci/slurm-up starts a one-node one (slurmctld + slurmd) as root.
def needs_slurm(test):
    return pytest.mark.slurm(
        pytest.mark.skipif(
            not slurm_cluster_running(),
            reason="no Slurm cluster answers sinfo here (.ci/slurm-up starts a one-node cluster as root)",
        )(test)
    )


# One tiny iteration per job, sized for the CI machine's one-node cluster.
SLURM_SMOKE = [
    "-m",
    "experiment=smoke",
    "iterations=1",
    "cluster=slurm",
    "cluster.gpus_per_node=0",
    "cluster.mem_gb=2",
    "cluster.timeout_min=10",
]


@pytest.mark.slow
@pytest.mark.distributed
@needs_slurm
def test_two_job_sweep_on_a_real_slurm_cluster(tmp_path, model_cache):
    sweep = tmp_path / "sweep"
    result = irpo(
        *SLURM_SMOKE,
        "cluster.cpus_per_task=1",
        "loss.alpha=0.5,2",
        "cluster.setup=[echo irpo-setup-ran]",
        f"hydra.sweep.dir={sweep}",
        env={**os.environ, "IRPO_CACHE": str(model_cache)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for alpha in (0.5, 2):
        run_dir = sweep / f"iterations=1,loss.alpha={alpha}"  # cluster.* settings do not name the run
        assert read_json(run_dir / "iter_1" / "model" / "train_summary.json")["alpha"] == alpha
        assert (run_dir / "results.json").exists()
    (script,) = sweep.glob(".submitit/*/*_submission.sh")
    text = script.read_text()
    for line in (
        "#SBATCH --cpus-per-task=1",
        "#SBATCH --mem=2GB",
        "#SBATCH --time=10",
        "#SBATCH --array=0-1%",
        "#SBATCH --signal=USR2@",
        "echo irpo-setup-ran",
    ):
        assert line in text, line
    assert all("irpo-setup-ran" in log.read_text() for log in sweep.glob(".submitit/*_*/*_log.out"))
    assert (sweep / "report.md").exists()


@pytest.mark.slow
@pytest.mark.distributed
@needs_slurm
def test_a_job_with_several_slurm_tasks_runs_the_loop_once(tmp_path, model_cache):
    # cluster.nodes=N starts one task per node; two tasks on one node stand in for two nodes here.
    sweep = tmp_path / "sweep"
    result = irpo(
        *SLURM_SMOKE,
        "cluster.cpus_per_task=1",
        "hydra.launcher.tasks_per_node=2",
        "seed=5",
        f"hydra.sweep.dir={sweep}",
        env={**os.environ, "IRPO_CACHE": str(model_cache)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (sweep / "iterations=1,seed=5" / "results.json").exists()
    second_task_log = "".join(p.read_text() for p in sweep.glob(".submitit/*/*_1_log.*"))
    assert "the loop runs in task 0" in second_task_log
    first_task_log = "".join(p.read_text() for p in sweep.glob(".submitit/*/*_0_log.*"))
    assert "iter 1: training on" in first_task_log and "iter 1: training on" not in second_task_log


@pytest.mark.slow
@pytest.mark.distributed
@needs_slurm
def test_deepspeed_ranks_train_inside_a_slurm_job(tmp_path, model_cache):
    sweep = tmp_path / "sweep"
    result = irpo(
        *SLURM_SMOKE,
        "cluster.cpus_per_task=2",
        "cluster.mem_gb=4",
        "trainer=deepspeed",
        "trainer.deepspeed.num_processes=2",
        "trainer.micro_batch_size=8",
        f"hydra.sweep.dir={sweep}",
        env={**os.environ, "IRPO_CACHE": str(model_cache)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = [p for p in sweep.iterdir() if (p / "config.yaml").exists()]
    summary = read_json(run_dir / "iter_1" / "model" / "train_summary.json")
    assert (summary["trainer"], summary["world_size"]) == ("deepspeed", 2)
    assert (run_dir / "results.json").exists()


@pytest.mark.slow
@pytest.mark.distributed
@needs_slurm
def test_a_requeued_slurm_job_resumes_mid_training(tmp_path, model_cache):
    """scontrol requeue kills a running job and queues it again, as a preemption does: the requeued job
    continues its training stage from the last checkpoint and ends where an uninterrupted run ends."""
    import time

    env = {**os.environ, "IRPO_CACHE": str(model_cache), "OMP_NUM_THREADS": "1"}
    training = [
        "experiment=smoke",
        "iterations=1",
        "trainer.max_steps=1200",
        "trainer.save_every=4",
        "trainer.eval_every=0",
        "trainer.retrain_with_heldout=false",
    ]
    alone = tmp_path / "uninterrupted"
    assert irpo(*training, f"hydra.run.dir={alone}", env=env).returncode == 0

    sweep = tmp_path / "sweep"
    job = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "irpo",
            "-m",
            *training,
            "cluster=slurm",
            "cluster.gpus_per_node=0",
            "cluster.mem_gb=2",
            "cluster.timeout_min=20",
            "cluster.cpus_per_task=1",
            f"hydra.sweep.dir={sweep}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 600
    while not list(sweep.glob("*/iter_1/model.tmp/resume/checkpoint.pt")) and time.monotonic() < deadline:
        assert job.poll() is None, job.communicate()[1][-3000:]
        time.sleep(0.2)
    assert list(sweep.glob("*/iter_1/model.tmp/resume/checkpoint.pt")), "the job made no checkpoint in time"
    job_ids = subprocess.run(
        ["squeue", "-h", "-t", "RUNNING", "-o", "%i"], capture_output=True, text=True
    ).stdout.split()
    assert job_ids, "no running job in the queue"
    requeue = subprocess.run(["scontrol", "requeue", *job_ids], capture_output=True, text=True)
    assert requeue.returncode == 0, f"scontrol requeue {job_ids}: {requeue.stderr}"
    _, stderr = job.communicate(timeout=900)
    assert job.returncode == 0, stderr[-3000:]

    (resumed,) = [p for p in sweep.iterdir() if (p / "config.yaml").exists()]
    summary = read_json(resumed / "iter_1" / "model" / "train_summary.json")
    assert summary["resumed_from_step"] > 0 and summary["steps"] == 1200
    assert (resumed / "iter_1" / "model" / "model.safetensors").read_bytes() == (
        alone / "iter_1" / "model" / "model.safetensors"
    ).read_bytes()
    assert (resumed / "iter_1" / "eval.jsonl").read_bytes() == (alone / "iter_1" / "eval.jsonl").read_bytes()
