"""`medallion demo --stream` shows the whole path on one machine: a bundled broker, review
events produced and consumed exactly once, and Gold unifying them with the batch reviews."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.compute as pc
import pytest
from tests.support import read

from medallion.settings import Settings

pytestmark = pytest.mark.slow  # whole runs: `make test-fast` leaves them out


def test_demo_streams_reviews_into_gold(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    args = ["demo", "--scale", "0.02", "--stream", "--dir", str(home)]
    done = subprocess.run(
        [sys.executable, "-m", "medallion", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "review stream: 198 event(s) consumed" in done.stdout
    settings = Settings(home=home)
    bronze = read(settings, "bronze", "review_events")
    assert bronze.num_rows == 198
    reviews = read(settings, "gold", "fact_review")
    streamed = reviews.filter(pc.equal(reviews["source"], "stream"))
    assert streamed.num_rows > 150  # the valid events of known orders, one row per review
