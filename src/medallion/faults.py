"""Crash injection for tests: ``MEDALLION_CRASH_AT=<point>`` kills the process at that point.

Used to prove that a crash anywhere followed by a re-run gives the same lake as one clean run.
"""

from __future__ import annotations

import os

ENV = "MEDALLION_CRASH_AT"


def crash_point(point: str) -> None:
    """Exit the process at once (no cleanup, like a kill -9) when ``point`` is armed."""
    if os.environ.get(ENV) == point:
        os._exit(86)
