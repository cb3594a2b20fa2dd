"""Fault injection for tests: ``MEDALLION_CRASH_AT=<point>`` kills the process at that point;
``MEDALLION_PAUSE_AT=<point>`` holds it there for a minute (so a test can signal or kill a run
while a task is surely in progress).

Used to prove that a crash anywhere followed by a re-run gives the same lake as one clean run.
"""

from __future__ import annotations

import os
import time

ENV = "MEDALLION_CRASH_AT"
PAUSE_ENV = "MEDALLION_PAUSE_AT"


def crash_point(point: str) -> None:
    """Exit the process at once (no cleanup, like a kill -9) when ``point`` is armed."""
    if os.environ.get(ENV) == point:
        os._exit(86)
    if os.environ.get(PAUSE_ENV) == point:
        time.sleep(60)
