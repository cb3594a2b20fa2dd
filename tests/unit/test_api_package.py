"""``medallion.api`` loads each function's module on first use: every public name resolves,
and to the function, never to a submodule of the same name."""

from __future__ import annotations

import importlib
import inspect

from medallion import api


def test_every_public_name_resolves_to_what_its_module_defines() -> None:
    homes = api._HOME
    assert sorted(api.__all__) == sorted(homes)
    for name in api.__all__:
        module = importlib.import_module(f"medallion.api.{homes[name]}")
        assert getattr(api, name) is getattr(module, name)
        assert not inspect.ismodule(getattr(api, name))


def test_an_unknown_name_is_an_attribute_error() -> None:
    try:
        api.nothing_here  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "nothing_here" in str(exc)
    else:
        raise AssertionError("no AttributeError")
