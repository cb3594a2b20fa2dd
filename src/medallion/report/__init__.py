"""The run report: one static, self-contained HTML page per run (and ``latest.html``).

Everything is inline (CSS, SVG charts drawn here, no script, font or image from elsewhere) so
the page works offline, as an e-mail attachment or a CI artifact. Every piece of text that
comes from data (task errors, quarantine reasons, check samples, categories) goes through
``html.escape``; settings are never printed, only locations with URL passwords redacted.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

from medallion.report.html import badge, esc, fmt_time
from medallion.report.run import LakeViews, RunData, load_run, report_name
from medallion.report.sections import (
    FIGURES,
    business_section,
    checks_section,
    drift_section,
    errors_section,
    quarantine_section,
    rowflow_section,
    summary_section,
    timeline_section,
    totals,
)
from medallion.settings import Settings

__all__ = ["FIGURES", "LakeViews", "build_report", "report_name"]


# -- entry point ------------------------------------------------------------------------------
def build_report(settings: Settings, views: LakeViews, run_id: str | None = None) -> Path:
    """Write ``reports/<run_id>.html`` and a copy as ``reports/latest.html``; return the first.

    ``run_id`` defaults to the latest run in the audit log.
    """
    data = load_run(settings, run_id)
    page = render_page(settings, views, data)
    out = settings.reports_dir
    out.mkdir(parents=True, exist_ok=True)
    path = out / report_name(data.run_id)
    _write_atomic(path, page)
    _write_atomic(out / "latest.html", page)
    return path


def _write_atomic(path: Path, text: str) -> None:
    """Write then rename, so a browser refreshing the page never reads half a file."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# -- page -------------------------------------------------------------------------------------
def render_page(settings: Settings, views: LakeViews, data: RunData) -> str:
    sections = [
        summary_section(settings, data),
        timeline_section(data),
        rowflow_section(data),
        quarantine_section(views, data),
        checks_section(data),
        drift_section(data),
        business_section(views),
        errors_section(data),
    ]
    nav = "".join(f'<a href="#{sid}">{esc(title)}</a>' for sid, title, _ in sections)
    body = "".join(
        f'<section id="{sid}"><h2>{esc(title)}</h2>{content}</section>'
        for sid, title, content in sections
    )
    status = totals(data).status
    generated = fmt_time(datetime.now(UTC).replace(tzinfo=None))
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>medallion run {esc(data.run_id)} \u2014 {esc(status)}</title>"
        f"<style>{CSS}</style></head><body>"
        f"<header><h1>medallion run <code>{esc(data.run_id)}</code> {badge(status).html}</h1>"
        f"<nav>{nav}</nav></header><main>{body}</main>"
        f"<footer>generated {esc(generated)} by medallion</footer></body></html>\n"
    )


CSS = """
:root{--fg:#1f2933;--muted:#66707a;--line:#dde1e6;--bg:#f6f7f9;--card:#fff}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
color:var(--fg);background:var(--bg)}
header{background:#17324d;color:#fff;padding:14px 28px 0;position:sticky;top:0;z-index:2}
header h1{margin:0 0 8px;font-size:20px;font-weight:600}
header code{font-size:18px;background:none;color:#fff}
nav{display:flex;flex-wrap:wrap;gap:2px}
nav a{color:#cfe0f1;text-decoration:none;padding:6px 10px;border-radius:6px 6px 0 0}
nav a:hover{background:#24486b;color:#fff}
main{max-width:1240px;margin:0 auto;padding:8px 28px 28px}
section{background:var(--card);border:1px solid var(--line);border-radius:8px;
padding:10px 20px 16px;margin:18px 0;scroll-margin-top:90px}
h2{font-size:17px;margin:6px 0 10px;border-bottom:1px solid var(--line);padding-bottom:6px}
h3{font-size:15px;margin:14px 0 6px}
h4{margin:8px 0 4px;font-size:14px}
table{border-collapse:collapse;margin:6px 0 10px;font-size:13px}
th,td{padding:4px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{background:#eef1f5;font-weight:600;white-space:nowrap}
tbody tr:nth-child(even){background:#fafbfc}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.checks td:last-child{max-width:440px;overflow-wrap:anywhere}
code{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12px;
background:#f0f2f5;padding:1px 4px;border-radius:3px}
pre{background:#2b2b2b;color:#f3f3f3;padding:10px 12px;border-radius:6px;overflow:auto;
white-space:pre-wrap;word-break:break-word;font-size:12px;max-height:320px}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:4px 18px;margin:4px 0}
dl.facts dt{color:var(--muted)}
dl.facts dd{margin:0}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;
color:#fff;background:#607d8b;vertical-align:middle}
.badge.ok{background:#2e7d32}.badge.bad{background:#c62828}.badge.warn{background:#e0a800;
color:#222}.badge.muted{background:#6b7378}
.counts{color:var(--muted);margin-left:6px}
.note{color:var(--muted);margin:6px 0}
.na{color:#b26a00;font-weight:600}
.muted{color:var(--muted);font-weight:400;font-size:12px}
.card{padding:4px 0 8px}
.card + .card{border-top:1px solid var(--line)}
.plots{display:flex;flex-wrap:wrap;gap:16px}
.plot{flex:1 1 520px;max-width:580px}
.scroll,.tw{overflow-x:auto}
svg.chart{max-width:100%;height:auto;display:block}
svg.chart text{font-family:system-ui,"DejaVu Sans",sans-serif;font-size:11px;fill:#333}
svg.chart text.val{font-size:10px;fill:#1f2933;paint-order:stroke;stroke:#fff;stroke-width:3px;
stroke-linejoin:round}
svg.chart text.axis-title{font-size:11px;fill:var(--muted)}
svg.chart text.layer{font-weight:700;font-size:11px;fill:#5b4a2f;letter-spacing:.06em}
svg.chart text.retry{fill:#b26a00;font-weight:600;font-size:10px}
svg.chart line.grid{stroke:#e6e8eb;stroke-width:1}
svg.chart line.axis{stroke:#8a939c;stroke-width:1}
.legend{display:flex;gap:16px;font-size:12px;color:var(--muted);margin-top:6px}
.legend i{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:5px;
vertical-align:-1px}
.legend i.dashed{border:1px dashed #333;background:#fff}
details summary{cursor:pointer;color:#24486b;margin:4px 0}
.error{border-left:4px solid #c62828;padding-left:10px;margin:10px 0}
footer{text-align:center;color:var(--muted);font-size:12px;padding:0 0 24px}
"""
