"""Reading and writing the run's files: the one place that knows how a file is written whole and read back.

Every file is written under a temporary name (`<name>.tmp`) and renamed into place, so a file that exists
is complete, and a killed run resumes at the first missing artifact. A JSONL row that does not parse fails
naming the file and the line; logs still being appended to (or cut by a kill) are read up to their last
whole line instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yields a temporary path to write `path` at; renamed into place only once the write is whole.

    A failed write (a full disk: OSError ENOSPC) removes the temporary file and raises naming `path`, whose
    previous content, if any, is unchanged."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise OSError(
                e.errno, f"writing {path} failed ({e.strerror or e}); its previous content, if any, is unchanged"
            ) from e
        raise


def write_text(path: Path, content: str | bytes) -> None:
    """Writes under a temporary name and renames into place, so a reader never sees half a file."""
    with replacing(path) as tmp:
        tmp.write_bytes(content if isinstance(content, bytes) else content.encode())


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def copy_file(source: Path, path: Path) -> None:
    """`source`'s bytes at `path`, whole or not at all."""
    with replacing(path) as tmp:
        shutil.copyfile(source, tmp)


def publish_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Moves a fully written directory into place (a rename: atomic on one filesystem)."""
    if final_dir.exists():
        shutil.rmtree(final_dir)
    os.replace(tmp_dir, final_dir)


def jsonl_line(row: dict) -> str:
    return json.dumps(row, ensure_ascii=False) + "\n"


def write_jsonl(path: Path, rows: Iterable[dict]) -> int:
    count = 0
    with replacing(path) as tmp, tmp.open("w") as f:
        for row in rows:
            f.write(jsonl_line(row))
            count += 1
    return count


def append_jsonl(file: IO[str], row: dict) -> None:
    """One row at the end of a log that others read while it grows (dashboards, the W&B tracker)."""
    file.write(jsonl_line(row))
    file.flush()


def numbered_jsonl(path: Path, fix: str | None = None) -> Iterator[tuple[int, dict]]:
    """(line number, row) for each non-empty line. A line that is not a JSON object fails naming the file,
    the line and `fix` (what to delete to recover, for a stage's artifact)."""
    with Path(path).open() as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}: line {line_number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(
                    f"{where} is not valid JSON ({e.msg}; cut off?)" + (f"; {fix}" if fix else "")
                ) from None
            if not isinstance(row, dict):
                raise ValueError(f"{where} is not a JSON object but {type(row).__name__}" + (f"; {fix}" if fix else ""))
            yield line_number, row


def iter_jsonl(path: Path, fix: str | None = None) -> Iterator[dict]:
    return (row for _, row in numbered_jsonl(path, fix))


def read_jsonl(path: Path, fix: str | None = None) -> list[dict]:
    return list(iter_jsonl(path, fix))


def read_log(path: Path) -> list[dict]:
    """The rows of a JSONL log that may still be written to, or was cut by a kill: every whole line (one that
    ends in a newline and parses) up to the first that is not. A missing log has no rows."""
    try:
        lines = Path(path).read_text().split("\n")[:-1]  # the last piece is "" or a line still being written
    except FileNotFoundError:
        return []
    rows = []
    for line in lines:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows
