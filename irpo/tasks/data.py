"""Reading a task's rows: local JSONL files (the official releases) or the hub through `datasets`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from irpo.files import numbered_jsonl
from irpo.hub import offline, require_hub


def read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) for each non-empty line; a missing file or bad JSON names file and line."""
    path = Path(os.path.expanduser(str(path)))
    if not path.exists():
        raise FileNotFoundError(f"data file {path} does not exist (check task.data_dir)")
    return list(numbered_jsonl(path))


def require_fields(row: dict[str, Any], fields: tuple[str, ...], where: str) -> None:
    missing = [f for f in fields if not isinstance(row.get(f), (str, dict, list))]
    if missing:
        raise ValueError(f"{where}: row lacks field(s) {', '.join(missing)}")


# What to do when a task's data cannot come from the hub.
LOCAL_DATA = "pass task.data_dir=<a folder with the official release files>"


def load_hub_split(hub_id: str, config: str | None, split: str) -> list[tuple[int, dict[str, Any]]]:
    """Rows of a hub dataset split, numbered like file lines; needs `pip install irpo[hub]` and a network.
    An unreachable hub fails at once (`irpo.hub`), saying what to do."""
    try:
        import datasets
    except ImportError:
        raise ImportError(
            f"loading {hub_id} from the hub needs the `datasets` package: {LOCAL_DATA}, "
            "or pip install -e '.[hub]' on a machine with network"
        ) from None
    require_hub(hub_id, "dataset", instead=f"{LOCAL_DATA}, or run on a machine with network")
    try:
        data = datasets.load_dataset(hub_id, config, split=split)
    except ConnectionError as e:  # offline, and the hub's cache lacks it (or the hub went away mid-way)
        why = f"HF_HUB_OFFLINE is set and the hub's cache has no copy of {hub_id}" if offline() else str(e)
        raise ConnectionError(f"{why}: {LOCAL_DATA}, or run without HF_HUB_OFFLINE on a machine with network") from None
    return [(i + 1, dict(row)) for i, row in enumerate(data)]
