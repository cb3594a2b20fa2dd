"""The unit tier needs no server and starts no process: any network connection, listening
socket or subprocess in a unit test fails it (move such a test to tests/integration)."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest


def _refuse(what: str) -> Any:
    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"a unit test may not {what}; move it to tests/integration")

    return refused


@pytest.fixture(autouse=True)
def _no_servers_no_processes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(socket.socket, "connect", _refuse("open a network connection"))
    monkeypatch.setattr(socket.socket, "bind", _refuse("listen on a socket"))
    monkeypatch.setattr(subprocess, "Popen", _refuse("start a process"))
    yield
