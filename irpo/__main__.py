"""`python -m irpo [overrides]` or `irpo [overrides]`: compose conf/, then run the loop (it checks the config first)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException
from hydra.types import RunMode
from omegaconf import DictConfig

from irpo.config import ConfigError, register_configs
from irpo.training.resume import ResumeError

# conf/ beside the package (an editable install): a path, so the `irpo` console script, which imports this
# module rather than running it, finds it too.
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def run_job(cfg: DictConfig) -> None:
    from irpo.loop import run

    logging.getLogger().setLevel(cfg.log_level)
    if os.environ.get("SUBMITIT_EXECUTOR") == "slurm" and int(os.environ.get("SLURM_PROCID", "0")) > 0:
        # A job over several nodes starts one task per node; the loop runs once, in the first, and
        # trainer=deepspeed reaches the other nodes itself (srun + torchrun).
        logging.getLogger("irpo").info(
            "Slurm task %s: the loop runs in task 0; nothing to do here", os.environ["SLURM_PROCID"]
        )
        return
    try:
        run(cfg)
    except ConfigError as e:  # bad names, sizes and paths, found before any work
        stop("config error", e)
    except USER_ERRORS as e:
        stop("error", e)
    except KeyboardInterrupt:
        if debugging():
            raise
        sys.exit(f"irpo: interrupted. To resume, run the same command with hydra.run.dir={cfg.run_dir}")


# Errors whose message says what is wrong and what to do (bad config, a missing file or package, an
# unreachable hub, a damaged run directory): the message alone, its traceback only under IRPO_DEBUG=1.
USER_ERRORS = (ValueError, KeyError, OSError, ImportError, ResumeError)


def debugging() -> bool:
    return os.environ.get("IRPO_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}


class JobError(CompactHydraException):
    """A sweep job's user error: Hydra prints its message without a traceback (HYDRA_FULL_ERROR=1 shows it)
    once the other jobs of the batch have run, naming the job's overrides."""


def stop(kind: str, error: BaseException) -> None:
    if debugging():
        raise error
    message = error.args[0] if len(error.args) == 1 and isinstance(error.args[0], str) else str(error)
    if HydraConfig.get().mode == RunMode.MULTIRUN:  # leave the sweep's other jobs to run, as Hydra does
        raise JobError(f"irpo: {kind}: {message}") from error
    sys.exit(f"irpo: {kind}: {message}\n(IRPO_DEBUG=1 shows the traceback)")


def main() -> None:
    register_configs()  # the schema conf/ is composed against; here, not at import
    run_job()


if __name__ == "__main__":
    main()
