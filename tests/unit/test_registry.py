"""Registries reject duplicate names and list the valid ones for an unknown name."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from medallion.errors import CatalogError
from medallion.gold.model import gold_table
from medallion.registry import Registry
from medallion.silver.contracts import silver_table


@dataclass(frozen=True)
class Item:
    name: str


def test_lookup_duplicates_and_unknown_names() -> None:
    reg = Registry("widget", [Item("a"), Item("b")])
    assert reg["b"] == Item("b") and reg.names() == ["a", "b"] and len(reg) == 2
    with pytest.raises(CatalogError, match="unknown widget 'c'; valid: a, b"):
        reg["c"]
    with pytest.raises(CatalogError, match="widget 'a' is declared twice"):
        Registry("widget", [Item("a"), Item("a")])


def test_layers_use_it() -> None:
    assert gold_table("fact_order").name == "fact_order"
    with pytest.raises(CatalogError, match=r"unknown Silver table 'order'; valid: .*orders"):
        silver_table("order")
