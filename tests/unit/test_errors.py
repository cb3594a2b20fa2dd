"""One exception root in one module: every error class lives in `medallion.errors`, derives
from `MedallionError`, and survives pickling (an Airflow worker sends it across processes)."""

from __future__ import annotations

import ast
import inspect
import pickle
from pathlib import Path

import pytest

from medallion import errors

SRC = Path(__file__).resolve().parents[2] / "src" / "medallion"
ERRORS = [
    c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__
]


def test_no_exception_class_is_declared_outside_the_errors_module() -> None:
    names = {c.__name__ for c in ERRORS} | {"Exception", "BaseException"}
    stray = [
        f"{path.relative_to(SRC)}:{node.lineno} {node.name}"
        for path in SRC.rglob("*.py")
        if path.name != "errors.py"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef)
        and any(isinstance(b, ast.Name) and b.id in names for b in node.bases)
    ]
    assert stray == []


@pytest.mark.parametrize("error", ERRORS, ids=lambda c: c.__name__)
def test_every_error_is_a_medallion_error_and_pickles(error: type[Exception]) -> None:
    assert issubclass(error, errors.MedallionError)
    copy = pickle.loads(pickle.dumps(error("silver.orders: 3 rows read != 2 merged")))
    assert type(copy) is error and str(copy) == "silver.orders: 3 rows read != 2 merged"
