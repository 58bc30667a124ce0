"""A minimal name -> object registry with aliases and helpful errors."""
from __future__ import annotations

from typing import Callable


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, object] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, aliases: tuple[str, ...] = ()) -> Callable:
        def deco(obj):
            if name in self._items:
                raise KeyError(f"{self.kind} {name!r} registered twice")
            self._items[name] = obj
            for a in aliases:
                self._aliases[a] = name
            return obj
        return deco

    def canonical(self, name: str) -> str:
        key = name.strip().lower()
        key = self._aliases.get(key, key)
        if key not in self._items:
            raise KeyError(f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}")
        return key

    def get(self, name: str):
        return self._items[self.canonical(name)]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        try:
            self.canonical(name)
            return True
        except KeyError:
            return False
