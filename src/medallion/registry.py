"""Named declarations (tables, queries) looked up by name: duplicates are rejected when the
registry is built, and an unknown name raises an error that lists the valid ones."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Generic, Protocol, TypeVar

from medallion.errors import CatalogError


class Named(Protocol):
    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=Named)


class Registry(Generic[T]):
    def __init__(self, what: str, items: Iterable[T]) -> None:
        self.what = what
        self._items: dict[str, T] = {}
        for item in items:
            if item.name in self._items:
                raise CatalogError(f"{what} {item.name!r} is declared twice")
            self._items[item.name] = item

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            valid = ", ".join(self._items)
            raise CatalogError(f"unknown {self.what} {name!r}; valid: {valid}") from None

    def __iter__(self) -> Iterator[T]:
        return iter(self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> list[str]:
        return list(self._items)
