"""Fixtures of the alert tests: real local receivers (see ``webhook_receiver``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from webhook_receiver import Hook, receiver, trickling

PROXIES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests to 127.0.0.1 go straight to the receiver, whatever the environment says."""
    for name in PROXIES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def hook() -> Iterator[Hook]:
    """A scripted receiver: 204 to every POST unless told otherwise."""
    with receiver() as hook:
        yield hook


@pytest.fixture
def trickling_url() -> Iterator[str]:
    """A server that answers one byte every 0.3 s (a read timeout of 1 s never fires)."""
    with trickling(0.3) as url:
        yield url
