"""The config's keys as data: each key's help and tags (read from the schema's field metadata), and the walks
over a resolved config that the resume check, sweep dir names and the report's grouping share."""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any, NamedTuple

from irpo.config.schema import Config
from irpo.setting import HELP, RESUME_MAY_CHANGE, RUNTIME_ONLY, SEEDING, tags_of
from irpo.tasks import TASKS

# Keys whose values come from the machine's environment (where M0 is cached), not from the experiment.
MACHINE_LOCAL_KEYS = ("model.tiny.cache_dir",)


class ConfigKey(NamedTuple):
    """One key of a config section, as the docs list it. A section is a key too: its type is its dataclass's
    name and its default None. `tags` include those inherited from a tagged section."""

    key: str
    type: str
    default: Any
    help: str
    tags: tuple[str, ...]


def config_keys(schema: type = Config, prefix: str = "", inherited: tuple[str, ...] = ()) -> list[ConfigKey]:
    """Every key of `schema` (the root config by default; `task_config_keys` for the tasks' sections), sections
    first and then the keys under them, in field order."""
    keys = []
    for f in dataclasses.fields(schema):
        tags = tuple(dict.fromkeys(inherited + tags_of(f)))
        section = _section(f)
        if section is not None:
            keys.append(ConfigKey(prefix + f.name, section.__name__, None, f.metadata[HELP], tags))
            keys += config_keys(section, f"{prefix}{f.name}.", tags)
        else:
            keys.append(ConfigKey(prefix + f.name, _type_name(f), _default(f), f.metadata.get(HELP, ""), tags))
    return keys


def task_config_keys() -> dict[str, list[ConfigKey]]:
    """Each registered task's keys (`task.<field>`), by task name."""
    return {name: config_keys(TASKS.get(name).config_class, "task.") for name in TASKS.names()}


def tagged_keys(tag: str) -> list[str]:
    """The dotted keys whose field metadata holds `tag`; a tagged section is one key."""
    return [key for key, _ in _tagged_fields(tag, Config, "")]


def resumable(key: str) -> bool:
    """Whether a resumed run may change `key` (a dotted key of the resolved config)."""
    allowed = tagged_keys(RUNTIME_ONLY) + tagged_keys(RESUME_MAY_CHANGE)
    return any(key == k or key.startswith(k + ".") for k in allowed)


def sweep_dir_exclude_keys() -> list[str]:
    """Overrides that leave a sweep job's directory name alone: every runtime-only key, and each key under a
    runtime-only section (Hydra matches an override's key exactly: `cluster=slurm`, `cluster.nodes=2`)."""
    keys = []
    for key, tagged in _tagged_fields(RUNTIME_ONLY, Config, ""):
        keys += [key, *_keys_under(_section(tagged), key + ".")]
    return keys


def flat_config(config: Any, prefix: str = "") -> dict[str, Any]:
    """A resolved config as {dotted key: value}; lists and empty sections are values."""
    if isinstance(config, dict) and config:
        flat: dict[str, Any] = {}
        for key, value in config.items():
            flat.update(flat_config(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): config} if prefix else {}


def with_defaults(flat: dict[str, Any]) -> dict[str, Any]:
    """A flat config with each key it lacks at the schema's default (None for an optional key): a run recorded
    before a key existed ran as that key's default does, since a new key's default keeps the old behaviour. Keys
    under a section the config set to a value (`model.tiny: null`) stay out."""
    left_out = tuple(key + "." for key in flat)
    missing = {key: value for key, value in _schema_defaults().items() if key not in flat}
    return {**{key: value for key, value in missing.items() if not key.startswith(left_out)}, **flat}


def changed_keys(before: Any, after: Any) -> list[str]:
    """The dotted keys whose values differ between two resolved configs, each key one of them lacks at its
    default (`with_defaults`), so a run recorded before a key existed matches a config that leaves it there."""
    a, b = with_defaults(flat_config(before)), with_defaults(flat_config(after))
    return sorted(key for key in a.keys() | b.keys() if a.get(key) != b.get(key))


def experiment_identity(config: Any, resolved: dict[str, Any] | None = None) -> dict[str, Any]:
    """What runs of one experiment share, as {dotted key: value}: the resolved config, each `auto` as the run's
    machine resolved it (`resolved`, from its resolved.json: `auto` and an explicit value that it resolved to
    compute the same), less its seeds, the keys a resumed run may change (where and how fast it runs, how many
    iterations) and unset keys; a key an older run did not record is at its default, as in `changed_keys`."""
    left_out = set(tagged_keys(SEEDING)) | set(MACHINE_LOCAL_KEYS)
    flat = {**with_defaults(flat_config(config)), **(resolved or {})}.items()
    return {key: value for key, value in flat if value is not None and key not in left_out and not resumable(key)}


def experiment_key(config: Any, resolved: dict[str, Any] | None = None) -> str:
    """`experiment_identity` as one string: runs with equal keys repeat one experiment over seeds."""
    return json.dumps(experiment_identity(config, resolved), sort_keys=True, default=str)


def _tagged_fields(tag: str, schema: type, prefix: str) -> list[tuple[str, dataclasses.Field]]:
    found = []
    for f in dataclasses.fields(schema):
        section = _section(f)
        if f.metadata.get(tag):
            found.append((prefix + f.name, f))
        elif section is not None:
            found += _tagged_fields(tag, section, f"{prefix}{f.name}.")
    return found


@functools.cache
def _schema_defaults() -> dict[str, Any]:
    """The root config's `_value_defaults`, walked once (read-only: callers copy what they keep)."""
    return _value_defaults(Config, "")


def _value_defaults(schema: type, prefix: str) -> dict[str, Any]:
    """{dotted key: default} of each value key under `schema` that has a default to fill in: not a required
    key (`???`) and not a mapping (whose recorded entries are keys of their own)."""
    defaults: dict[str, Any] = {}
    for f in dataclasses.fields(schema):
        section, value = _section(f), _default(f)
        if section is not None:
            defaults.update(_value_defaults(section, f"{prefix}{f.name}."))
        elif value is not dataclasses.MISSING and value != "???" and not isinstance(value, dict):
            defaults[prefix + f.name] = value
    return defaults


def _section(f: dataclasses.Field) -> type | None:
    """The dataclass a field holds (a config section), or None for a value."""
    default = _default(f)
    return type(default) if dataclasses.is_dataclass(default) else None


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _type_name(f: dataclasses.Field) -> str:
    return f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))


def _keys_under(schema: type | None, prefix: str) -> list[str]:
    keys: list[str] = []
    for f in dataclasses.fields(schema) if schema is not None else ():
        keys += [prefix + f.name, *_keys_under(_section(f), f"{prefix}{f.name}.")]
    return keys
