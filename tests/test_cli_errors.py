"""What a user sees when a command of theirs cannot run: the real CLI in a subprocess, as typed.

Each mistake ends in one line that names what is wrong and what to do, with exit status 1 and no traceback;
IRPO_DEBUG=1 brings the traceback back. Every command here stops before any work (each costs the CLI's start,
a few seconds), so the tests that fit in the fast tier are the mistakes a newcomer makes first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNREACHABLE_HUB = "http://127.0.0.1:9"  # nothing listens on port 9: a request fails at once


def irpo(*args: str, tmp_path: Path, blocked: tuple[str, ...] = (), **env: str) -> subprocess.CompletedProcess:
    """`python -m irpo <args>` from the repository root; `blocked` modules import as if not installed."""
    command = [sys.executable, "-m", "irpo", *args, f"hydra.run.dir={tmp_path / 'run'}"]
    if blocked:  # find_spec and import both fail on a module whose sys.modules entry is None
        script = f"import sys; sys.modules.update(dict.fromkeys({list(blocked)!r})); sys.argv = {command[2:]!r}; "
        command = [sys.executable, "-c", script + "from irpo.__main__ import main; main()"]
    environment = {key: value for key, value in os.environ.items() if key != "IRPO_DEBUG"}
    environment.update(PYTHONPATH=str(ROOT), IRPO_CACHE=str(tmp_path / "cache"), **env)
    return subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300)


def one_line_error(done: subprocess.CompletedProcess) -> str:
    """The error line, after checking that the command failed with it and nothing else of note."""
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output, output
    lines = done.stderr.strip().splitlines()
    assert lines[-1] == "(IRPO_DEBUG=1 shows the traceback)", output
    assert lines[-2].startswith("irpo: "), output
    return lines[-2]


def no_retries(done: subprocess.CompletedProcess, tmp_path: Path) -> bool:
    """The hub's client logs each retry ("Retrying in 1s [Retry 1/5]"), to the console and the run's log."""
    log = tmp_path / "run" / "irpo.log"
    return "Retry" not in done.stdout + done.stderr + (log.read_text() if log.exists() else "")


def test_a_task_from_the_hub_offline_fails_at_once_saying_what_to_do(tmp_path):
    done = irpo("task=math", "loss.alpha=1", tmp_path=tmp_path, HF_HUB_OFFLINE="1")
    line = one_line_error(done)
    assert "HF_HUB_OFFLINE is set" in line and "EleutherAI/hendrycks_math" in line
    assert "task.data_dir=" in line
    assert no_retries(done, tmp_path)


def test_a_missing_data_dir_names_the_file_and_the_key(tmp_path):
    line = one_line_error(irpo("task=gsm8k", "task.data_dir=/nonexistent", tmp_path=tmp_path))
    assert line == "irpo: error: data file /nonexistent/train.jsonl does not exist (check task.data_dir)"


def test_a_config_typo_ends_with_hydras_message_naming_the_key(tmp_path):
    done = irpo("loss.alhpa=1", tmp_path=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "Key 'alhpa' not in 'LossConfig'" in done.stderr
    assert not (tmp_path / "run").exists()  # nothing started


@pytest.mark.slow
def test_the_debug_switch_shows_the_traceback(tmp_path):
    done = irpo("task=gsm8k", "task.data_dir=/nonexistent", tmp_path=tmp_path, IRPO_DEBUG="1")
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "FileNotFoundError: data file /nonexistent/train.jsonl" in done.stderr


@pytest.mark.slow
def test_in_a_sweep_the_other_jobs_still_run_and_hydra_reports_the_failed_one(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "irpo", "-m", "task=gsm8k", "task.data_dir=/nonexistent1,/nonexistent2",
         f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "IRPO_CACHE": str(tmp_path / "cache")},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 1 and "Traceback" not in output, output
    assert "#1 : task=gsm8k task.data_dir=/nonexistent2" in output  # launched after job #0 failed
    assert "Error executing job with overrides: ['task=gsm8k', 'task.data_dir=/nonexistent1']" in output
    assert "irpo: error: data file /nonexistent1/train.jsonl does not exist (check task.data_dir)" in output


@pytest.mark.slow
def test_an_unreachable_hub_fails_on_the_first_failed_request(tmp_path):
    done = irpo("task=math", tmp_path=tmp_path, HF_ENDPOINT=UNREACHABLE_HUB)
    line = one_line_error(done)
    assert "the Hugging Face hub cannot be reached for EleutherAI/hendrycks_math" in line
    assert "task.data_dir=" in line and "HF_HUB_OFFLINE=1" in line
    assert no_retries(done, tmp_path)  # the libraries' five retries with back-off take ~25 s


@pytest.mark.slow
@pytest.mark.parametrize(
    ("overrides", "blocked", "says"),
    [
        (["trainer=deepspeed"], ("deepspeed",), "pip install -e '.[deepspeed]'"),
        (["trainer.lora.rank=16"], ("peft",), "pip install -e '.[lora]'"),
        (["logger=wandb"], ("wandb",), "pip install -e '.[wandb]'"),
        (["model=smollm2_135m_instruct"], ("gguf",), "pip install -e '.[smol]'"),
        (["task=gsm8k"], ("datasets",), "pip install -e '.[hub]'"),
    ],
)
def test_a_missing_extra_names_the_install_command(overrides, blocked, says, tmp_path):
    assert says in one_line_error(irpo(*overrides, tmp_path=tmp_path, blocked=blocked))


@pytest.mark.slow
def test_a_hub_model_id_on_an_unreachable_hub_says_to_give_a_local_directory(tmp_path):
    # A local path that does not exist fails at config time (tests/test_config.py); an id goes to the hub.
    done = irpo("model.name_or_path=no-org/no-model", tmp_path=tmp_path, HF_ENDPOINT=UNREACHABLE_HUB)
    line = one_line_error(done)
    assert "hub cannot be reached for no-org/no-model" in line and "model.name_or_path=<a local model" in line
    assert no_retries(done, tmp_path)


# pip puts console scripts beside the interpreter, which is not always on PATH (pyenv's shims need a rehash).
CONSOLE_SCRIPT = shutil.which("irpo", path=str(Path(sys.executable).parent)) or shutil.which("irpo")


@pytest.mark.slow
@pytest.mark.skipif(CONSOLE_SCRIPT is None, reason="the irpo console script is not installed (pip install -e .)")
def test_the_console_script_is_the_cli(tmp_path):
    done = subprocess.run(
        [str(CONSOLE_SCRIPT), "task=gsm8k", "task.data_dir=/nonexistent", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert one_line_error(done).endswith("data file /nonexistent/train.jsonl does not exist (check task.data_dir)")
