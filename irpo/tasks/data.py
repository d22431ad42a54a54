"""Reading a task's rows: local JSONL files (the official releases) or the hub through `datasets`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from irpo.files import numbered_jsonl


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


def load_hub_split(hub_id: str, config: str | None, split: str) -> list[tuple[int, dict[str, Any]]]:
    """Rows of a hub dataset split, numbered like file lines; needs `pip install irpo[hub]` and a network."""
    try:
        import datasets
    except ImportError:
        raise ImportError(
            f"loading {hub_id} from the hub needs the `datasets` package (pip install -e '.[hub]'); "
            "or set task.data_dir to a local copy of the official files"
        ) from None
    data = datasets.load_dataset(hub_id, config, split=split)
    return [(i + 1, dict(row)) for i, row in enumerate(data)]
