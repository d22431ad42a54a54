"""The configuration reference page, generated from the config dataclasses at every docs build.

A mkdocs hook (mkdocs.yml, `hooks:`): before the build it walks `irpo.config.Config` and each task's config
dataclass (`irpo.tasks.TASKS`) with `dataclasses.fields` and lists every key with its type, default, help
(the field's `metadata["help"]`), the conf/ option files that set it, and its tags (runtime-only, may change
on resume, seeding). The page exists only in the built site, so it cannot drift from the code.

`python docs/hooks/config_reference.py` prints the page.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
PAGE = "reference/configuration.md"
HEADER = "| key | type | default | help | set by | tags |"
TAGS = {  # field metadata tag -> what the page says
    "runtime_only": "runtime-only",
    "resume_may_change": "may change on resume",
    "seeding": "seeding",
}


@dataclass(frozen=True)
class Key:
    name: str  # dotted, e.g. trainer.torch.mixed_precision
    type: str
    default: str
    help: str
    tags: tuple[str, ...]
    section: str  # the page section it is listed under: "loss", "trainer", "task (task=gsm8k)", ...


def config_keys() -> list[Key]:
    """Every key of the root config and, under `task.`, of each registered task's config."""
    from irpo.config import Config
    from irpo.tasks import TASKS

    keys = list(walk(Config, prefix="", inherited=()))
    for name in TASKS.names():
        task_keys = walk(TASKS.get(name).config_class, prefix="task.", inherited=())
        keys += [dataclasses.replace(key, section=f"task (task={name})") for key in task_keys]
    return [key for key in keys if key.name != "task"]  # `task` is a section, typed per task


def walk(schema: type, prefix: str, inherited: tuple[str, ...]) -> Iterator[Key]:
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        tags = inherited + tuple(tag for tag in TAGS if f.metadata.get(tag))
        name = prefix + f.name
        value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(value):  # a section: its keys, not itself
            yield from walk(type(value), f"{name}.", tags)
            continue
        section = name.split(".")[0] if "." in name else "top-level keys"
        yield Key(name, type_name(hints[f.name]), default_text(value), f.metadata.get("help", ""), tags, section)
        optional_section = section_type(hints[f.name])
        if optional_section is not None:  # a section that may be null (model.tiny): its keys too
            yield from walk(optional_section, f"{name}.", tags)


def section_type(hint: Any) -> type | None:
    """The dataclass of an optional section's type hint (Optional[TinyModelConfig]), else None."""
    found = [a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)]
    return found[0] if found else None


def type_name(hint: Any) -> str:
    args = typing.get_args(hint)
    if type(None) in args:  # Optional[X] / X | None
        return " or ".join(type_name(a) for a in args if a is not type(None)) + " or null"
    if args and typing.get_origin(hint) in (list, dict):
        return f"{typing.get_origin(hint).__name__}[{', '.join(type_name(a) for a in args)}]"
    if dataclasses.is_dataclass(hint):
        return "section"
    return "any" if hint is Any else getattr(hint, "__name__", str(hint))


def default_text(value: Any) -> str:
    if value == "???":  # omegaconf's MISSING: the option file or the command line must set it
        return "(required)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def option_files(conf_dir: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(`group=option` or the root file's name, its YAML) for each file under conf/."""
    for path in sorted(conf_dir.rglob("*.yaml")):
        text = path.read_text()
        group = path.parent.relative_to(conf_dir).as_posix()
        content = yaml.safe_load(text) or {}
        content.pop("defaults", None)
        content.pop("hydra", None)  # Hydra's own settings, not irpo's keys
        if group == ".":
            yield path.name, content
        elif "@package _global_" in text.splitlines()[0]:
            yield f"{group}={path.stem}", content
        else:  # packaged at its group: conf/loss/dpo.yaml holds loss.*
            yield f"{group}={path.stem}", {group.replace("/", "."): content}


def dotted(content: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in content.items():
        if isinstance(value, dict) and value:
            yield from dotted(value, f"{prefix}{key}.")
        else:
            yield prefix + str(key)


def setters(keys: list[Key], conf_dir: Path = ROOT / "conf") -> dict[str, list[str]]:
    """For each key, the option files that set it (a value under a dict-typed key counts for that key)."""
    names = {key.name for key in keys}
    found: dict[str, list[str]] = {name: [] for name in names}
    for source, content in option_files(conf_dir):
        for name in dotted(content):
            owner = next((p for p in prefixes(name) if p in names), None)
            if owner is not None and source not in found[owner]:
                found[owner].append(source)
    return found


def prefixes(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:n]) for n in range(len(parts), 0, -1)]


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render() -> str:
    keys = config_keys()
    set_by = setters(keys)
    lines = [
        "# Configuration reference",
        "",
        "Every key of the composed config, generated from the config dataclasses (`irpo.config.Config` and",
        "each task's dataclass in `irpo.tasks`) when the docs are built. **Default** is the dataclass's; the",
        "option files in **Set by** (`group=option`, chosen on the command line or by the defaults list in",
        "`conf/config.yaml`) may set another. **Tags**: *runtime-only* keys cannot change results, name no sweep",
        "job directory and may change when a run resumes; *may change on resume* keys may differ on resume;",
        "*seeding* keys only seed random draws (runs differing in them repeat one experiment). How composition",
        "works: [Configuration](../configuration.md).",
        "",
    ]
    section = None
    for key in keys:
        if key.section != section:
            section = key.section
            lines += ["", f"## {section}", "", HEADER, "|---|---|---|---|---|---|"]
        row = [
            f"`{key.name}`",
            cell(key.type),
            f"`{cell(key.default)}`",
            cell(key.help),
            ", ".join(f"`{s}`" for s in set_by[key.name]),
            ", ".join(TAGS[t] for t in dict.fromkeys(key.tags)),
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def on_files(files: Any, config: Any) -> Any:
    """mkdocs hook: the page joins the site's files before the navigation is built."""
    from mkdocs.structure.files import File

    files.append(File.generated(config, PAGE, content=render()))
    return files


if __name__ == "__main__":
    print(render())
