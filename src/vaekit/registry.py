"""Small registries of named parts: the config names a part, the registry builds it.

Each registry maps a name (the value of a config key such as ``model.encoder``) to a factory. Adding a
part is one ``@REGISTRY.register("name")`` beside its class; nothing else in vaekit changes. An unknown
name is a one-line :class:`~vaekit.errors.VaekitError` naming the config key and the known names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from vaekit.errors import VaekitError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named factories of one kind of part (``what``), selected by the config key ``key``."""

    def __init__(self, what: str, key: str) -> None:
        self.what, self.key = what, key
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@NETWORKS.register("mlp")`` over a class or function registers it under ``name``."""
        def add(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.what} '{name}' is already registered")
            self._items[name] = item
            return item
        return add

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a part registered for a test or an experiment)."""
        del self._items[name]

    def get(self, name: str) -> T:
        """The factory registered as ``name``; a VaekitError naming ``key`` and the choices otherwise."""
        try:
            return self._items[name]
        except KeyError:
            raise VaekitError(f"config key '{self.key}': unknown {self.what} '{name}'; use one of "
                              f"{', '.join(self.names())}") from None

    def names(self) -> tuple[str, ...]:
        return tuple(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
