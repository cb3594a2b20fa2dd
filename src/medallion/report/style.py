"""Shared look of the report: colours, status classes, and the row type of the audit log."""

from __future__ import annotations

from typing import Any

NO_RUN = "no run in the audit log yet; run `medallion run` first"
LAYERS = ("bronze", "silver", "gold")
STATUS_COLOURS = {
    "SUCCESS": "#2e7d32",
    "FAILED": "#c62828",
    "SKIPPED": "#9e9e9e",
    "RUNNING": "#f9a825",
    "ABANDONED": "#6a1b9a",
}
STATUS_CLASSES = {  # of their badges
    "SUCCESS": "ok",
    "FAILED": "bad",
    "SKIPPED": "muted",
    "RUNNING": "warn",
    "ABANDONED": "bad",
}
LAYER_COLOURS = {"bronze": "#f3e1cf", "silver": "#e8eaed", "gold": "#f7edc4"}
CHECK_CLASSES = {"pass": "ok", "warn": "warn", "fail": "bad"}
BAR_COLOUR = "#3f6fb5"
ACCENT_COLOUR = "#d9822b"
DASH = "\u2014"

Row = dict[str, Any]
