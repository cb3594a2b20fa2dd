"""The HTML run report: sections, charts, escaping, no external resources, and a real browser."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from medallion import api
from medallion.audit import AuditStore
from medallion.cli import app
from medallion.errors import MedallionError
from medallion.report import FIGURES, report_name
from medallion.report import run as report_run
from medallion.settings import Settings

SECTIONS = ("summary", "timeline", "rows", "quarantine", "checks", "drift", "business",
            "streaming", "errors")  # fmt: skip
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:[a-z][a-z0-9+.-]*:)?//""", re.IGNORECASE)
NASTY = """<script>alert("x")</script> & 'quoted' <img src=x onerror=alert(1)>"""
CHROMIUM_APT = "apt-get install -y --no-install-recommends chromium fonts-dejavu-core"


@dataclass(frozen=True)
class Home:
    settings: Settings
    full_run: str
    incremental_run: str
    report: Path


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    """A small lake with a full run and an incremental run, and the latest run's report."""
    settings = Settings(home=tmp_path_factory.mktemp("report") / "home")
    api.init_source(settings)
    api.generate_source(settings, scale=0.01, seed=5)
    full = api.run(settings)
    api.change_source(settings, api.ChangeSpec(seed=2, new_orders=5, status_updates=5))
    incremental = api.run(settings)
    assert full.ok and incremental.ok
    return Home(settings, full.run_id, incremental.run_id, api.report(settings))


@pytest.fixture(scope="module")
def page(home: Home) -> str:
    return home.report.read_text(encoding="utf-8")


def insert_run(settings: Settings, run_id: str, error: str) -> None:
    """A hand-made run: a task that failed twice, a skipped one, and two check results."""
    store = AuditStore(settings.audit_location).open()
    t0 = datetime(2024, 5, 1, 12, 0, 0)
    common = {"run_id": run_id, "job": "medallion_pipeline", "layer": "silver"}
    attempts = [
        {"task": "silver.orders", "table_name": "orders", "attempt": 1, "error": "lock held"},
        {"task": "silver.orders", "table_name": "orders", "attempt": 2, "error": error},
    ]
    try:
        with store.engine.begin() as conn:
            for i, row in enumerate(attempts):
                start = t0 + timedelta(seconds=2 * i)
                values = {**common, **row, "status": "FAILED", "started_at": start}
                conn.execute(
                    sa.insert(store.t["run_logs"]).values(
                        **values, ended_at=start + timedelta(seconds=1)
                    )
                )
            conn.execute(
                sa.insert(store.t["run_logs"]).values(
                    **{**common, "layer": "gold"},
                    table_name="fact_order",
                    task="gold.fact_order",
                    attempt=0,
                    status="SKIPPED",
                    started_at=t0 + timedelta(seconds=4),
                    ended_at=t0 + timedelta(seconds=4),
                )
            )
            for name, status in (("orders_key_unique", "fail"), ("row_count_drift", "warn")):
                conn.execute(
                    sa.insert(store.t["dq_results"]).values(
                        run_id=run_id,
                        layer="silver",
                        table_name="orders",
                        check_name=name,
                        severity="fail",
                        status=status,
                        failing_rows=3,
                        sample=NASTY,
                        checked_at=t0,
                    )
                )
    finally:
        store.close()


def section(html: str, sid: str) -> str:
    """The body of one report section."""
    return html.partition(f'<section id="{sid}">')[2].partition("</section>")[0]


# -- content ----------------------------------------------------------------------------------
def test_every_section_is_there_with_a_nav_link(page: str) -> None:
    for section in SECTIONS:
        assert f'<section id="{section}">' in page
        assert f'href="#{section}"' in page


def test_summary_names_the_run_and_every_task(home: Home, page: str) -> None:
    assert home.report.name == f"{home.incremental_run}.html"
    assert home.incremental_run in page
    assert "SUCCESS" in page
    for row in api.audit_log(home.settings, run_id=home.incremental_run):
        assert f">{row['task']}<" in page
    assert "Bronze \u2192 Silver" in page
    assert "<h3>Gold</h3>" in page
    assert "unknown members" in page and "customer_sk 0" in page  # facts all found their customer


def test_latest_is_a_copy_of_the_run_report(home: Home) -> None:
    latest = home.settings.reports_dir / "latest.html"
    assert latest.read_bytes() == home.report.read_bytes()


def test_the_previous_report_is_linked_when_it_exists(home: Home) -> None:
    first = api.report(home.settings, home.full_run)
    assert first.name == f"{home.full_run}.html"
    assert "none (first run)" in first.read_text(encoding="utf-8")
    again = api.report(home.settings).read_text(encoding="utf-8")
    assert f'<a href="{home.full_run}.html">' in again
    assert again == (home.settings.reports_dir / "latest.html").read_text(encoding="utf-8")


def test_quarantine_and_check_sections_have_content(page: str) -> None:
    quarantine = section(page, "quarantine")
    assert "This run quarantined" in quarantine
    checks = section(page, "checks")
    tally_and_table = "pass</span>" in checks and "<table" in checks
    assert tally_and_table or "No check results recorded" in checks  # checks may be off


def test_no_stream_yet_is_one_line(page: str) -> None:
    streaming = section(page, "streaming")
    line = "No review stream consumed yet: <code>medallion stream consume</code>."
    assert streaming.strip() == f'<h2>Streaming</h2>\n<p class="note">{line}</p>'


def test_every_business_chart_is_an_inline_svg(page: str) -> None:
    business = section(page, "business")
    assert "not available" not in business
    for figure in FIGURES:
        block = business.partition(f'id="q-{figure.query}"')[2].partition('<div class="card">')[0]
        assert block.count("<svg") == len(figure.charts), figure.query
        assert "<table" in block  # the data behind the chart
    assert page.count("<svg") == 1 + sum(len(f.charts) for f in FIGURES)  # + the timeline


def test_numbers_have_thousands_separators(page: str) -> None:
    assert re.search(r'<td class="num">\d{1,3}(,\d{3})+</td>', page)


def test_no_external_resources(page: str) -> None:
    assert not EXTERNAL.search(page)
    for banned in ("<script", "<link", "@import", "url(", "<img", "<iframe"):
        assert banned not in page.lower()


# -- errors, escaping, secrets ----------------------------------------------------------------
def test_text_is_escaped_and_missing_gold_is_not_available(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path / "home",
        source_url="postgresql://etl:s3cr3t-pw@db.example:5432/olist",
        slack_webhook_url="https://hooks.slack.example/services/T0/B0/SECRET-TOKEN",
        storage_options={"aws_secret_access_key": "AKIA-SECRET-KEY"},
    )
    insert_run(settings, "r-escape", NASTY)
    html = api.report(settings).read_text(encoding="utf-8")
    assert "<script" not in html.lower()
    assert "<img" not in html.lower()
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &#39;quoted&#39;" in html
    errors = section(html, "errors")
    assert errors.count('<div class="error">') == 2
    assert "FAILED" in html and "SKIPPED" in html and "\u21bb 2 attempts" in html
    assert "orders_key_unique" in section(html, "checks")
    assert "row_count_drift" in section(html, "drift")
    assert html.count("not available") == len(FIGURES)
    for secret in ("s3cr3t-pw", "SECRET-TOKEN", "AKIA-SECRET-KEY", "hooks.slack"):
        assert secret not in html
    assert "postgresql://etl:****@db.example:5432/olist" in html


def test_no_run_yet_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MedallionError, match="no run in the audit log yet"):
        api.report(Settings(home=tmp_path / "home"))


def test_an_unknown_run_is_an_error(home: Home) -> None:
    with pytest.raises(MedallionError, match="not in the audit log"):
        api.report(home.settings, "no-such-run")


def test_run_ids_become_safe_file_names() -> None:
    assert report_name("20240501T120000Z-abc123") == "20240501T120000Z-abc123.html"
    assert report_name("../../etc/passwd") == "_.._etc_passwd.html"
    assert "/" not in report_name("a/b\\c") and "\\" not in report_name("a/b\\c")


def test_cli_prints_the_path(home: Home) -> None:
    result = CliRunner().invoke(
        app, ["report", "--run", home.full_run, "--home", str(home.settings.home)]
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(home.settings.reports_dir / f"{home.full_run}.html")


# -- a real browser ---------------------------------------------------------------------------
def chromium() -> str:
    """The Chromium binary; in CI a missing one is a failure, locally a skip."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail(f"chromium is required in CI: {CHROMIUM_APT}")
    pytest.skip(f"chromium not installed ({CHROMIUM_APT})")


def run_chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1400,3000",
        *args,
    ]
    env = {**os.environ, "HOME": str(tmp_path)}
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env, check=False)


def png_facts(path: Path) -> tuple[int, int, int]:
    """Width, height and how many distinct byte values the (filtered) pixel data holds.

    A blank page filters to a handful of byte values; text and charts give hundreds.
    """
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    idat, offset = bytearray(), 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        if kind == b"IDAT":
            idat += data[offset + 8 : offset + 8 + length]
        offset += 12 + length
    return width, height, len(set(zlib.decompress(bytes(idat))))


@pytest.mark.browser
def test_chromium_renders_the_report(home: Home, tmp_path: Path) -> None:
    report = api.report(home.settings)
    shot = tmp_path / "shot.png"
    result = run_chromium(tmp_path, f"--screenshot={shot}", report.as_uri())
    assert shot.exists(), result.stderr[-2000:]
    width, height, distinct = png_facts(shot)
    assert (width, height) == (1400, 3000)
    assert shot.stat().st_size > 20_000
    assert distinct > 64
    dom = run_chromium(tmp_path, "--dump-dom", report.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    for section in SECTIONS:
        assert f'id="{section}"' in dom.stdout
    assert dom.stdout.count("<svg") == 1 + sum(len(f.charts) for f in FIGURES)
    assert dom.stdout.count("<rect") > 50  # bars of the timeline and the charts
    assert dom.stdout.count("<table") >= 3 + len(FIGURES)


def test_a_kept_answer_stands_until_a_table_it_reads_changes(
    home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report's figures are answered from the answers kept beside the reports while no
    table their query names changed rows; a table that moves makes its queries run again."""
    from medallion.api import inspect
    from medallion.gold.queries import named_query
    from medallion.storage import Lake

    settings = Settings(home=tmp_path / "home")
    shutil.copytree(home.settings.home, settings.home)
    shutil.rmtree(settings.reports_dir / ".answers", ignore_errors=True)
    answers = {f.query: api.query(settings, f.query) for f in FIGURES}
    ran: list[str] = []
    real = inspect._answer
    monkeypatch.setattr(inspect, "_answer", lambda q, h: ran.append(q) or real(q, h))
    for name, answer in answers.items():
        assert inspect.kept_query(settings, name).equals(answer)
    assert len(ran) == len(FIGURES)  # first time: every query runs
    ran.clear()
    for name, answer in answers.items():
        assert inspect.kept_query(settings, name).equals(answer)
    assert ran == []  # nothing moved: every answer kept
    Lake.from_settings(settings).table("gold", "fact_order").record({}, {"step": "test"})
    for name in answers:
        inspect.kept_query(settings, name)
    texts = [named_query(f.query).sql for f in FIGURES]
    reading = {t for t in texts if re.search(r"\bfact_order\b", t)}  # not fact_order_item
    assert reading and set(ran) == reading


def test_a_kept_answer_is_stamped_in_its_own_file_and_computed_again_when_stale(
    tmp_path: Path,
) -> None:
    """The stamp (the tables' ids and data versions, what computes the answer) lives in the
    answer's own file: a commit to a table read, another recipe or an unreadable file make it
    computed again, and never an error."""
    from deltalake import write_deltalake

    from medallion.api import inspect
    from medallion.storage import Lake

    settings = Settings(home=tmp_path)
    lake = Lake.from_settings(settings)
    write_deltalake(lake.table_uri("gold", "t"), pa.table({"x": [1, 2]}))
    computed: list[int] = []

    def answer() -> pa.Table:
        computed.append(1)
        return pa.table({"n": [len(computed)]})

    def kept(recipe: str = "r1") -> int:
        table = inspect._kept(settings, "a", {"t": lake.table("gold", "t")}, answer, recipe)
        return int(table["n"][0].as_py())

    assert kept() == 1 and kept() == 1  # the second one read back
    lake.table("gold", "t").record({}, {"step": "test"})  # a commit: the table moved
    assert kept() == 2 and kept() == 2
    assert kept("r2") == 3  # another recipe
    (settings.reports_dir / ".answers" / "a.arrow").write_bytes(b"not arrow")
    assert kept("r2") == 4 and kept("r2") == 4
    assert sorted(p.name for p in (settings.reports_dir / ".answers").iterdir()) == ["a.arrow"]


def test_the_report_s_quarantine_summary_is_the_one_computed(home: Home) -> None:
    from medallion.api import inspect

    assert inspect.quarantine_summary(home.settings, kept=True) == inspect.quarantine_summary(
        home.settings
    )


# -- which run, and which before it, in a long log ------------------------------------------
JOBS = ("medallion_pipeline", "medallion_check", "medallion_stream", "medallion_export")


def _log_attempts(settings: Settings, attempts: list[tuple[int, str]]) -> None:
    """One run-log row per (run number, job), in this order."""
    store = AuditStore(settings.audit_location).open()
    rows = [
        {"run_id": f"r{run}", "job": job, "layer": "bronze", "table_name": "t",
         "task": f"bronze.t{i}", "attempt": 1, "status": "SUCCESS",
         "started_at": datetime(2024, 5, 1)}
        for i, (run, job) in enumerate(attempts)
    ]  # fmt: skip
    if rows:
        with store.engine.begin() as conn:
            conn.execute(sa.insert(store.t["run_logs"]), rows)


def _started_in_order(attempts: list[tuple[int, str]]) -> list[str]:
    """The reference: pipeline runs by their first attempt (the whole log read)."""
    first: dict[str, int] = {}
    for i, (run, job) in enumerate(attempts):
        if job in ("medallion_pipeline", "medallion_check"):
            first.setdefault(f"r{run}", i)
    return sorted(first, key=first.__getitem__)


def test_interleaved_runs_each_follow_the_one_that_started_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """r2 starts while r1 runs, and r1 writes last: r2 is still the latest run (it started
    last) and r1 its predecessor; a stream consume between them is no page."""
    monkeypatch.setattr(report_run, "_WINDOW", 2)  # look back two attempts at a time
    settings = Settings(home=tmp_path)
    attempts = [(0, "medallion_pipeline"), (1, "medallion_pipeline"), (9, "medallion_stream"),
                (2, "medallion_pipeline"), (1, "medallion_pipeline"), (1, "medallion_pipeline"),
                (8, "medallion_export")]  # fmt: skip
    _log_attempts(settings, attempts)
    latest = report_run.load_run(settings)
    assert (latest.run_id, latest.previous) == ("r2", "r1")
    assert report_run.load_run(settings, "r1").previous == "r0"
    assert report_run.load_run(settings, "r0").previous is None
    with pytest.raises(MedallionError, match="not in the audit log"):
        report_run.load_run(settings, "r9")  # a stream consume is not a run with a page


@settings(max_examples=40, deadline=None)
@given(
    attempts=st.lists(st.tuples(st.integers(0, 5), st.sampled_from(JOBS)), max_size=40),
    window=st.integers(1, 8),
)
def test_the_run_before_any_run_is_the_one_started_before_it_as_in_the_whole_log(
    attempts: list[tuple[int, str]], window: int
) -> None:
    """Against the whole log read in order: whatever the interleaving of runs and jobs, and
    however narrow the first look back, the latest run and each run's predecessor agree."""
    with tempfile.TemporaryDirectory() as home, pytest.MonkeyPatch.context() as patch:
        patch.setattr(report_run, "_WINDOW", window)
        s = Settings(home=Path(home))
        _log_attempts(s, attempts)
        order = _started_in_order(attempts)
        if not order:
            with pytest.raises(MedallionError):
                report_run.load_run(s)
            return
        assert report_run.load_run(s).run_id == order[-1]
        for at, run_id in enumerate(order):
            assert report_run.load_run(s, run_id).previous == (order[at - 1] if at else None)


def test_only_the_newest_run_pages_are_kept(tmp_path: Path) -> None:
    """A scheduler writes a page every few minutes: ``reports_kept`` newest pages stay (the
    one just written always among them), ``latest.html`` and the kept answers too; a page
    for an old run written again counts as new; 0 keeps every page."""
    settings = Settings(home=tmp_path / "home", reports_kept=3)
    runs = [f"r{i}" for i in range(5)]
    for run_id in runs:
        insert_run(settings, run_id, "boom")
    for run_id in runs:
        api.report(settings, run_id)
    pages = settings.reports_dir
    assert sorted(p.name for p in pages.glob("*.html")) == [
        "latest.html", "r2.html", "r3.html", "r4.html",
    ]  # fmt: skip
    api.report(settings, "r0")  # asked for again: the newest page now
    assert sorted(p.name for p in pages.glob("r*.html")) == ["r0.html", "r3.html", "r4.html"]
    again = api.report(settings, "r3").read_text(encoding="utf-8")
    assert "r2 (no report kept)" in again  # its predecessor's page is gone: no broken link
    every = settings.model_copy(update={"reports_kept": 0})
    for run_id in runs:
        api.report(every, run_id)
    assert len(list(pages.glob("r*.html"))) == 5
