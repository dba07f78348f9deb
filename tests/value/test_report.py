"""The HTML report is self-contained, escapes text and renders in a real browser."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import altair as alt
import pandas as pd
import pytest

import marketloop
from marketloop.exceptions import ConfigError, SchemaError
from marketloop.value import (
    Report,
    ingest_accounting_chart,
    quarantine_reasons_chart,
    segment_sizes_chart,
    segment_values_chart,
)

GENERATED_AT = datetime(2024, 7, 1, 8, 30, tzinfo=UTC)
CHROMIUM = Path("/usr/bin/chromium")

SUMMARY = pd.DataFrame({
    "segment": ["lost", "champions", "at_risk", "new", "loyal"],
    "customers": [410, 95, 120, 60, 95],
    "share": [0.526, 0.122, 0.154, 0.077, 0.122],
    "mean_monetary": [35.5, 812.25, 240.0, 42.0, 390.8],
    "total_monetary": [14_555.0, 77_163.75, 28_800.0, 2_520.0, 37_126.0],
})
INGEST = pd.DataFrame({
    "source": ["orders.csv", "customers.csv", "order_lines.csv"],
    "n_accepted": [9_812, 2_000, 30_400],
    "n_duplicates": [120, 0, 35],
    "n_quarantined": [68, 4, 210],
})
REASONS = pd.DataFrame({
    "reason": ["bad_amount", "unknown_currency", "bad_amount", "missing_order"],
    "count": [40, 28, 12, 202],
})


def demo_report() -> Report:
    return (
        Report("Marketing value <demo> & more")
        .add_heading("Ingest")
        .add_metrics({"Rows read": 42_649, "Quarantined": 282, "Accepted share": "99.3%"})
        .add_chart(ingest_accounting_chart(INGEST), caption="Every row is accounted for.")
        .add_chart(quarantine_reasons_chart(REASONS))
        .add_heading("RFM segments")
        .add_text("Segments from **paid** orders before `as_of`.\n\n"
                  "- champions: bought recently and often\n- lost: <gone> for long")
        .add_table(SUMMARY.assign(note=["<b>x</b>", "", "a & b", "", ""]),
                   caption="Segment summary")
        .add_chart(segment_sizes_chart(SUMMARY))
        .add_chart(segment_values_chart(SUMMARY), caption="Spend in the shop's currency")
    )


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = demo_report().write(tmp_path_factory.mktemp("report") / "sub" / "report.html",
                               generated_at=GENERATED_AT)
    return path, path.read_text(encoding="utf-8")


def test_report_is_written_with_inline_svg(written: tuple[Path, str]) -> None:
    path, text = written
    assert path.is_file()
    assert text.startswith("<!DOCTYPE html>")
    assert text.count("<svg") == 4
    assert "<figcaption>Every row is accounted for.</figcaption>" in text


def test_report_loads_nothing_from_the_network(written: tuple[Path, str]) -> None:
    _, text = written
    lowered = text.lower()
    assert "<script" not in lowered
    assert "<link" not in lowered
    assert "@import" not in lowered
    assert "<iframe" not in lowered
    # SVG namespaces (xmlns="http://www.w3.org/...") are names, not references
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", lowered)
    assert not re.search(r"url\(\s*['\"]?\s*(https?:|//)", lowered)


def test_all_text_is_escaped(written: tuple[Path, str]) -> None:
    _, text = written
    assert "<td>&lt;b&gt;x&lt;/b&gt;</td>" in text
    assert "<b>x</b>" not in text
    assert "<td>a &amp; b</td>" in text
    assert "<title>Marketing value &lt;demo&gt; &amp; more</title>" in text
    assert "<h1>Marketing value &lt;demo&gt; &amp; more</h1>" in text
    assert "<li>lost: &lt;gone&gt; for long</li>" in text
    assert "<strong>paid</strong>" in text and "<code>as_of</code>" in text


def test_sections_come_in_order_between_header_and_footer(written: tuple[Path, str]) -> None:
    _, text = written
    marks = ["<header>", "2024-07-01 08:30 UTC", "<h2>Ingest</h2>", 'class="metrics"',
             "<h2>RFM segments</h2>", "<ul>", "<table>", "<footer>",
             f"marketloop {marketloop.__version__}"]
    positions = [text.index(mark) for mark in marks]
    assert positions == sorted(positions)


def test_metrics_and_numbers_are_formatted(written: tuple[Path, str]) -> None:
    _, text = written
    assert '<div class="value">42,649</div><div class="label">Rows read</div>' in text
    assert "<td class=num>77,163.75</td>" in text
    assert "<td class=num>0.526</td>" in text


def test_same_report_same_html() -> None:
    assert demo_report().to_html(generated_at=GENERATED_AT) == demo_report().to_html(
        generated_at=GENERATED_AT)


def test_long_tables_are_cut_with_a_note() -> None:
    html = Report("t").add_table(pd.DataFrame({"n": range(30)}), max_rows=10).to_html()
    assert html.count("<td class=num>") == 10
    assert "Showing the first 10 of 30 rows." in html


def test_bad_input_is_refused() -> None:
    with pytest.raises(SchemaError, match=re.escape("expected a pandas DataFrame; found dict")):
        Report("t").add_table({"a": [1]})  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match=re.escape("expected an altair chart; found str")):
        Report("t").add_chart("<svg>")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=re.escape("expected at least one figure")):
        Report("t").add_metrics({})


# ---------------------------------------------------------------- chart helpers


def test_charts_order_bars_deterministically() -> None:
    sizes = segment_sizes_chart(SUMMARY).layer[0].to_dict()["encoding"]["y"]["sort"]
    # by customers descending, ties (champions, loyal: 95) by name
    assert sizes == ["lost", "at_risk", "champions", "loyal", "new"]
    shuffled = segment_sizes_chart(SUMMARY.sample(frac=1, random_state=3))
    assert shuffled.to_dict() == segment_sizes_chart(SUMMARY).to_dict()
    values = segment_values_chart(SUMMARY).to_dict()["hconcat"]
    total_order, mean_order = (panel["layer"][0]["encoding"]["y"]["sort"] for panel in values)
    assert total_order == ["champions", "loyal", "at_risk", "lost", "new"]
    assert mean_order == total_order
    reasons = quarantine_reasons_chart(REASONS).layer[0].to_dict()["encoding"]["y"]["sort"]
    assert reasons == ["missing_order", "bad_amount", "unknown_currency"]  # 202, 40+12, 28


def test_ingest_chart_accepts_bare_or_prefixed_counts() -> None:
    bare = INGEST.rename(columns=lambda c: c.removeprefix("n_"))
    assert ingest_accounting_chart(bare).to_dict() == ingest_accounting_chart(INGEST).to_dict()
    spec = ingest_accounting_chart(INGEST).to_dict()
    assert spec["encoding"]["y"]["sort"] == ["customers.csv", "order_lines.csv", "orders.csv"]
    assert spec["encoding"]["color"]["scale"]["domain"] == ["accepted", "duplicates",
                                                            "quarantined"]
    by_table = INGEST.rename(columns={"source": "table_name"})
    assert ingest_accounting_chart(by_table, by="table_name").to_dict()["encoding"]["y"][
        "title"] == "Table name"


@pytest.mark.parametrize(
    ("helper", "frame", "message"),
    [
        (ingest_accounting_chart, INGEST.drop(columns="n_duplicates"),
         "expected a column duplicates or n_duplicates"),
        (quarantine_reasons_chart, REASONS.rename(columns={"count": "n"}), "(count missing)"),
        (segment_sizes_chart, SUMMARY.drop(columns="customers"), "(customers missing)"),
        (segment_values_chart, SUMMARY.drop(columns="mean_monetary"), "(mean_monetary missing)"),
    ],
)
def test_chart_helpers_name_missing_columns(
    helper: Callable[[pd.DataFrame], alt.TopLevelMixin], frame: pd.DataFrame, message: str
) -> None:
    with pytest.raises(SchemaError, match=re.escape(message)):
        helper(frame)


# ---------------------------------------------------------------- a real browser


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium not installed")
def test_report_renders_in_headless_chromium(written: tuple[Path, str], tmp_path: Path) -> None:
    path, _ = written
    png = tmp_path / "report.png"
    subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--hide-scrollbars",
         f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={png}",
         "--window-size=1200,2000", path.resolve().as_uri()],
        check=True, capture_output=True, timeout=120,
    )
    assert png.is_file()
    # a blank 1200x2000 PNG compresses to a few kB; charts, tables and text take far more
    assert png.stat().st_size > 50_000
