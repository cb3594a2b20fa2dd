"""The report page from hand-made run data: hostile text anywhere in the data is shown as text,
never as markup, and every template renders (StrictUndefined fails on a missing name)."""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pyarrow as pa
import pytest
from jinja2 import DictLoader, Environment

from medallion.errors import MedallionError
from medallion.report import FIGURES
from medallion.report.page import _compiled_templates, render_page
from medallion.report.run import LakeViews, RunData
from medallion.settings import Settings

HOSTILE = """<script>alert(1)</script>"'&"""
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;&#34;&#39;&amp;"
SECTIONS = ("summary", "timeline", "rows", "quarantine", "checks", "drift", "business",
            "streaming", "errors")  # fmt: skip
T0 = datetime(2024, 5, 1, 12, 0, 0)


class Page(HTMLParser):
    """The tags, attributes and text of each section of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.attributes: set[str] = set()
        self.text: dict[str, str] = {}
        self.section = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes |= {name for name, _ in attrs}
        if tag == "section":
            self.section = dict(attrs)["id"] or ""

    def handle_data(self, data: str) -> None:
        self.text[self.section] = self.text.get(self.section, "") + data


def attempt(
    i: int, task: str, layer: str, status: str, error: str | None = None
) -> dict[str, object]:
    return {
        "id": i,
        "run_id": f"run-{HOSTILE}",
        "job": f"job {HOSTILE}",
        "task": task,
        "layer": layer,
        "table_name": task.partition(".")[2],
        "attempt": 1,
        "status": status,
        "started_at": T0 + timedelta(seconds=i),
        "ended_at": T0 + timedelta(seconds=i + 1),
        "rows_read": 1_234_567,
        "rows_written": 3,
        "rows_quarantined": 2,
        "error": error,
        "metrics": '{"unknown_members": {"customer_sk": 3}}',
    }


def check(name: str, status: str) -> dict[str, object]:
    return {
        "check_name": name,
        "table_name": HOSTILE,
        "layer": "silver",
        "severity": "fail",
        "status": status,
        "failing_rows": 3,
        "observed": 0.25,
        "details": HOSTILE,
        "sample": HOSTILE,
    }


def batch(i: int, run_id: str) -> dict[str, object]:
    """A micro-batch of a stream consume as the audit log holds it."""
    return {
        "id": i,
        "run_id": run_id,
        "status": "SUCCESS",
        "started_at": T0 + timedelta(seconds=i),
        "ended_at": T0 + timedelta(seconds=i + 1),
        "rows_read": 100,
        "metrics": '{"seconds": 0.5, "commit_seconds": 0.01}',
    }


def query(name: str) -> pa.Table:
    """Each figure's columns; category labels are hostile; one query fails with hostile text."""
    if name == FIGURES[-1].query:
        raise MedallionError(f"cannot read {HOSTILE}")
    figure = next(f for f in FIGURES if f.query == name)
    columns: dict[str, list[object]] = {}
    for chart in figure.charts:
        columns[chart.label] = [f"{HOSTILE} {i}" for i in range(3)]
        columns[chart.value] = [1.5, 20.0, 300.0]
    return pa.table(columns)


@pytest.fixture
def page(tmp_path: Path) -> str:
    task = f"silver.{HOSTILE}"
    data = RunData(
        run_id=f"run-{HOSTILE}",
        attempts=[
            attempt(1, task, "silver", "FAILED", f"boom {HOSTILE}"),
            attempt(2, f"gold.{HOSTILE}", "gold", "SUCCESS"),
        ],
        previous=f"before-{HOSTILE}",
        checks=[check(f"key {HOSTILE}", "fail"), check(f"drift {HOSTILE}", "warn")],
        stream=[batch(3, f"stream-{HOSTILE}"), batch(4, f"stream-{HOSTILE}")],
    )
    quarantine = [{"table": HOSTILE, "rule": HOSTILE, "rows": 2, "reason": HOSTILE}]
    stream_quarantine = [{"run_id": f"stream-{HOSTILE}", "reason": HOSTILE, "rows": 5,
                          "released": 0}]  # fmt: skip
    views = LakeViews(lambda: quarantine, query, lambda: stream_quarantine)
    return render_page(Settings(home=tmp_path / "home"), views, data)


def test_hostile_text_is_escaped_everywhere(page: str) -> None:
    assert "<script" not in page.lower()
    assert HOSTILE not in page
    assert page.count(ESCAPED) >= 20  # run id, tasks, tables, errors, checks, chart labels...
    parsed = Page()
    parsed.feed(page)
    assert parsed.tags.isdisjoint({"script", "img", "iframe", "object", "embed", "link"})
    assert not {a for a in parsed.attributes if a.startswith("on")}
    for sid in SECTIONS:  # shown to the reader as the text it is
        if sid != "timeline":  # the legend only; the chart's labels are checked below
            assert HOSTILE in parsed.text[sid], sid


def test_chart_labels_and_tooltips_are_text(page: str) -> None:
    assert f"<title>{ESCAPED} 2: 300</title>" in page  # a bar's tooltip
    assert f">{ESCAPED} 0</text>" in page  # an axis label
    assert f"<code>run-{ESCAPED}</code>" in page  # the run id in the header


def test_every_section_renders(page: str) -> None:
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in page and f'<a href="#{sid}">' in page
    assert page.count('<p class="na">not available</p>') == 1
    assert "(no report kept)" in page
    assert page.endswith("</html>\n")


def test_a_store_of_compiled_templates_that_fails_costs_only_the_compile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No safe folder in the temp directory: no store. A store whose folder went away (a
    full or cleaned ``/tmp``): templates compile and render as without one."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    assert _compiled_templates() is None
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    store = _compiled_templates()
    assert store is not None and Path(store.directory).is_dir()
    env = Environment(loader=DictLoader({"t": "{{ x }}!"}), bytecode_cache=store)
    shutil.rmtree(store.directory)
    assert env.get_template("t").render(x=1) == "1!"  # dump failed quietly
    Path(store.directory).mkdir()
    assert (
        Environment(loader=DictLoader({"t": "{{ x }}?"}), bytecode_cache=store)
        .get_template("t")
        .render(x=2)
        == "2?"
    )
    assert len(list(Path(store.directory).iterdir())) == 1  # kept this time
