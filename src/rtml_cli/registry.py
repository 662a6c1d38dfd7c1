"""One registry type for every plug-in kind rtml has.

Strategies (online replay), routing policies (bandits vs A/B), OPE estimators, target
policies, reward models, contextual policies, drift detectors and retraining schedules
each live in a :class:`Registry`. A plug-in registers under a name with a one-line
description; the CLI lists ``names()`` in its help and takes its defaults from the
registry, and ``rtml_cli.checks`` runs the same contract over every entry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from rtml_cli.errors import UsageError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered plug-in: its name, the object (a class or factory), what it is."""

    name: str
    obj: T
    description: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Named plug-ins of one kind, in registration order."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def add(self, name: str, obj: T, *, description: str = "", **meta: Any) -> T:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = Entry(name, obj, description, dict(meta))
        return obj

    def register(self, name: str, *, description: str = "", **meta: Any) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def decorate(obj: T) -> T:
            return self.add(name, obj, description=description, **meta)

        return decorate

    def remove(self, name: str) -> None:
        """Forget ``name`` (a plug-in registered again from its own source replaces itself)."""
        del self._entries[name]

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise UsageError(
                f"unknown {self.kind} {name!r}: choose from {', '.join(self.names())}"
            ) from None

    def get(self, name: str) -> T:
        """The registered object; an unknown name is a ``UsageError`` listing the choices."""
        return self.entry(name).obj

    def names(self) -> list[str]:
        return list(self._entries)

    def entries(self) -> list[Entry[T]]:
        return list(self._entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
