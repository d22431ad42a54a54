"""`python -m irpo [overrides]`: compose conf/ and run the loop (which checks the config first)."""

from __future__ import annotations

import logging
import os
import sys

import hydra
from omegaconf import DictConfig

from irpo.config import ConfigError, register_configs


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
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
    except ConfigError as e:  # bad names, sizes and paths, found before any work: one line, no traceback
        sys.exit(f"irpo: config error: {e}")


def main() -> None:
    register_configs()  # the schema conf/ is composed against; here, not at import
    run_job()


if __name__ == "__main__":
    main()
