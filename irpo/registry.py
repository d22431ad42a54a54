"""Name -> factory registries for the swappable parts (task, sampler, trainer, loss, pair builder)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A named table of factories; an unknown name fails with the list of valid ones."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = entry
            return entry

        return add

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise KeyError(f"unknown {self.kind} '{name}'; valid choices: {', '.join(self.names())}")
        return self._entries[name]

    def check(self, name: str, cfg: Any) -> None:
        """Asks the entry `name` to check its own config (`irpo.protocols.ChecksConfig`) where it has a check;
        an unknown name fails listing the valid ones."""
        check = getattr(self.get(name), "check", None)
        if check is not None:
            check(cfg)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries
