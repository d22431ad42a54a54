"""The Hydra callback that builds a multirun's report in its sweep directory (conf/config.yaml)."""

from __future__ import annotations

import sys

from hydra.experimental.callback import Callback

from irpo.report.build import build_report


class ReportCallback(Callback):
    """Builds the report in the sweep directory when a multirun ends."""

    def on_multirun_end(self, config, **kwargs) -> None:
        try:
            build_report(config.hydra.sweep.dir)
        except FileNotFoundError as e:
            print(f"irpo.report: {e}", file=sys.stderr)
