"""Fixtures of the source tests: generated data, made once per session for each setting."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from medallion.source.generator import GeneratedData, GeneratorConfig, generate


@pytest.fixture(scope="session")
def data() -> Callable[..., GeneratedData]:
    """Generated data by (scale, seed, dirty_rate), each generated once per session."""
    cache: dict[tuple[float, int, float], GeneratedData] = {}

    def get(scale: float, seed: int = 42, dirty_rate: float = 0.0) -> GeneratedData:
        key = (scale, seed, dirty_rate)
        if key not in cache:
            cache[key] = generate(GeneratorConfig(scale=scale, seed=seed, dirty_rate=dirty_rate))
        return cache[key]

    return get
