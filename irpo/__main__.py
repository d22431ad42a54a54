"""`python -m irpo [overrides]`: compose conf/, check it, run the loop."""

from __future__ import annotations

import logging
import os
import sys

import hydra
from omegaconf import DictConfig

from irpo.config import register_configs


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def run_job(cfg: DictConfig) -> None:
    from irpo.config import validate
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
        validate(cfg)  # bad names, sizes and paths fail here with one line, before any work
    except (ValueError, KeyError, FileNotFoundError) as e:
        sys.exit(f"irpo: config error: {e.args[0] if e.args else e}")
    run(cfg)


def main() -> None:
    register_configs()  # the schema conf/ is composed against; here, not at import
    run_job()


if __name__ == "__main__":
    main()
