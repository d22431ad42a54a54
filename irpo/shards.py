"""A sampling stage's rows written in shards of prompts, so a killed stage resumes at the prompts not yet drawn.

`iter_t/generations.shards/00000.jsonl`, `00001.jsonl`, ... hold the rows of prompts [0, S), [S, 2S), ...
(S = sampler.shard_prompts), each written whole (tmp + rename) as soon as its prompts are drawn, so a shard
file that exists is complete. A rerun draws only the shards that have no file. Once every shard is there,
their rows become the stage's file (generations.jsonl, eval.jsonl), written whole, and the folder is removed.

A shard is drawn with the same prompts, batches and seeds (samplers seed from a prompt's index in the stage)
whether the stage was interrupted or not, so the stage's file is the same bytes either way.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from irpo.protocols import PromptShard, Sampler, Samples, SamplingRequest
from irpo.rundir import check_rows_match, read_jsonl, write_jsonl

log = logging.getLogger(__name__)

_SHARD_NAME = re.compile(r"^(\d{5})\.jsonl$")
# What to do about a bad shard, or a bad stage file: its prompts are drawn again, with the same seeds.
_REDRAW_SHARD = "delete that file and rerun to sample those prompts again"
_REDRAW_STAGE = "delete that file and rerun to sample its prompts again"


@dataclass(frozen=True)
class Shard:
    number: int
    first_index: int  # the index of its first prompt among the stage's prompts
    ids: tuple[str, ...]


def plan_shards(ids: list[str], shard_prompts: int) -> list[Shard]:
    """Consecutive runs of `shard_prompts` ids (the last one shorter), in order."""
    if shard_prompts < 1:
        raise ValueError(f"sampler.shard_prompts must be >= 1, not {shard_prompts}")
    return [
        Shard(number, start, tuple(ids[start : start + shard_prompts]))
        for number, start in enumerate(range(0, len(ids), shard_prompts))
    ]


class ShardedFile:
    """The stage's file `final` (one row per id, in order, each row with its "id") and its shard folder."""

    def __init__(self, final: Path, ids: list[str], shard_prompts: int):
        self.final = Path(final)
        self.ids = list(ids)
        self.folder = self.final.with_name(self.final.stem + ".shards")
        self.shards = plan_shards(self.ids, shard_prompts)

    def path(self, shard: Shard) -> Path:
        return self.folder / f"{shard.number:05d}.jsonl"

    def draw(
        self,
        prompts: dict[str, str],
        sampler: Sampler,
        model_dir,
        requests: list[SamplingRequest],
        make_rows: Callable[[Shard, list[Samples]], list[dict]],
        what: str,
    ) -> list[dict]:
        """The stage's rows: read from its file if it exists; else the missing shards drawn (`make_rows` turns
        a shard and its draws, one per request, into its rows), then every shard joined into the file."""
        if self.final.exists():
            rows = check_rows_match(self.final, read_jsonl(self.final, _REDRAW_STAGE), self.ids, _REDRAW_STAGE)
            shutil.rmtree(self.folder, ignore_errors=True)  # left over when killed right after the join
            return rows
        todo = self.missing()
        total = len(self.shards)
        if len(todo) < total:
            log.info(
                "%s: %d of %d shards already drawn (%s), drawing the other %d",
                what,
                total - len(todo),
                total,
                self.folder,
                len(todo),
            )
        if todo:
            self.folder.mkdir(parents=True, exist_ok=True)
            results = sampler.sample(
                model_dir, [PromptShard(s.first_index, [prompts[i] for i in s.ids]) for s in todo], requests
            )
            for shard, result in zip(todo, results, strict=True):
                write_jsonl(self.path(shard), make_rows(shard, result))
                log.info("%s: shard %d/%d done (%d prompts)", what, shard.number + 1, total, len(shard.ids))
        return self.join()

    def missing(self) -> list[Shard]:
        """The shards with no file. The files there are checked first (their rows parse, and are the shard's
        ids in order), so a bad one fails before any sampling, naming the file to delete."""
        present = self._present()
        for shard in self.shards:
            if shard.number in present:
                self.read(shard)
        todo = [s for s in self.shards if s.number not in present]
        gaps = [s.number for s in todo if s.number < max(present, default=-1)]
        if gaps:  # a shard deleted by hand (the fix for a bad one): drawn again, with its own seeds
            log.warning("%s: shards %s are missing between drawn ones; drawing them again", self.folder, gaps)
        return todo

    def read(self, shard: Shard) -> list[dict]:
        path = self.path(shard)
        if not path.exists():
            raise FileNotFoundError(
                f"{path} is missing (deleted while the stage ran?); rerun to draw those prompts again"
            )
        return check_rows_match(path, read_jsonl(path, _REDRAW_SHARD), list(shard.ids), _REDRAW_SHARD)

    def join(self) -> list[dict]:
        """Writes the stage's file from every shard (whole or not at all), then removes the shard folder."""
        rows = [row for shard in self.shards for row in self.read(shard)]
        write_jsonl(self.final, rows)
        shutil.rmtree(self.folder, ignore_errors=True)
        return rows

    def _present(self) -> set[int]:
        if not self.folder.is_dir():
            return set()
        numbers = set()
        for path in self.folder.iterdir():
            match = _SHARD_NAME.match(path.name)
            if match is None:
                if not path.name.endswith(".tmp"):  # .tmp: a write that was killed; it is written again
                    log.warning("%s: ignoring %s, which is not a shard", self.folder, path.name)
                continue
            number = int(match.group(1))
            if number >= len(self.shards):
                raise ValueError(
                    f"{path}: the stage has {len(self.shards)} shards of {len(self.ids)} prompts, "
                    f"numbered up to {len(self.shards) - 1:05d} (were the prompts or shard size "
                    f"changed?); delete {self.folder} and rerun to draw every shard again"
                )
            numbers.add(number)
        return numbers
