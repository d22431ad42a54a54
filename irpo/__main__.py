"""`python -m irpo [overrides]`: compose conf/, check it, run the loop."""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from irpo.config import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from irpo.config import validate
    from irpo.loop import run

    logging.getLogger().setLevel(cfg.log_level)
    try:
        validate(cfg)  # bad names, sizes and paths fail here with one line, before any work
    except (ValueError, KeyError, FileNotFoundError) as e:
        sys.exit(f"irpo: config error: {e.args[0] if e.args else e}")
    run(cfg)


if __name__ == "__main__":
    main()
