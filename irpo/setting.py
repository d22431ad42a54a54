"""`setting(...)`: a config field with its help text and tags beside it.

Every field of every config dataclass (irpo.config.schema, and each task's in irpo/tasks/) is declared as
`name: type = setting(default, help="...")`, so what a key means lives in one place, next to its type and
default, where `irpo.config.config_keys` (and the docs built from it) read it back from the field's metadata.

Tags say what a key is to a run, beside what it means (a tagged section tags every key under it):
  runtime_only       where and how fast a run goes (ranks, memory, dashboards, the cluster), never what it
                     computes: a resumed run may change it, and a sweep leaves it out of job dir names.
  resume_may_change  a resumed run may change it (finished work stays valid), yet it can change what is left
                     to compute, so unlike a runtime-only key it names sweep dirs (`iterations`, a device).
  seeding            it only seeds random draws: runs that differ in it alone repeat one experiment.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

HELP = "help"
RUNTIME_ONLY = "runtime_only"
RESUME_MAY_CHANGE = "resume_may_change"
SEEDING = "seeding"
TAGS = (RUNTIME_ONLY, RESUME_MAY_CHANGE, SEEDING)


def setting(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    factory: Callable[[], Any] | None = None,
    runtime_only: bool = False,
    resume_may_change: bool = False,
    seeding: bool = False,
) -> Any:
    """A dataclass field with `help` and its tags in its metadata; `factory` makes a mutable default (a list, a
    section) afresh for each instance, as `dataclasses.field(default_factory=...)` does."""
    if not help.strip():
        raise ValueError("a setting needs help text: what it means, in a sentence")
    flags = {RUNTIME_ONLY: runtime_only, RESUME_MAY_CHANGE: resume_may_change, SEEDING: seeding}
    metadata = {HELP: help, **{tag: True for tag, on in flags.items() if on}}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def tags_of(f: dataclasses.Field) -> tuple[str, ...]:
    """The tags set on one field (not those it inherits from a tagged section)."""
    return tuple(tag for tag in TAGS if f.metadata.get(tag))


RENAMED_TO = "renamed_to"


def renamed(new_name: str) -> Any:
    """A key's old name, kept so that a config that still sets it fails naming the new one (`check_renamed`)
    instead of "key not in struct"; it is None unless set."""
    return dataclasses.field(
        default=None, metadata={HELP: f"Renamed {new_name}: setting this fails, naming it.", RENAMED_TO: new_name}
    )


def check_renamed(section: Any, prefix: str) -> None:
    """Fails, in one line naming the new key, when a config sets a key by its old name (`renamed`)."""
    for f in dataclasses.fields(section):
        if RENAMED_TO in f.metadata and getattr(section, f.name) is not None:
            new = prefix + f.metadata[RENAMED_TO]
            raise ValueError(f"{prefix}{f.name} is now {new}: set {new}={getattr(section, f.name)} instead")


def renames(schema: type) -> dict[str, str]:
    """{old name: new name} of the renamed keys of a config dataclass."""
    return {f.name: f.metadata[RENAMED_TO] for f in dataclasses.fields(schema) if RENAMED_TO in f.metadata}


def asdict_by_first_names(section: Any) -> dict[str, Any]:
    """`dataclasses.asdict` with each renamed key under its old name (and no old-name placeholder), in field
    order: what a cache key made before the rename was computed from, so it stays valid."""
    old = {new: old for old, new in renames(type(section)).items()}
    return {old.get(k, k): v for k, v in dataclasses.asdict(section).items() if k not in old.values()}
