"""Self-contained HTML reports: headings, text, headline figures, tables and charts.

A report is one HTML file with inline CSS and charts drawn as inline SVG (rendered by
vl-convert from the altair spec), so it opens offline, needs no JavaScript and can be
mailed or archived as it is. All text is escaped.
"""

from __future__ import annotations

import html
import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

import altair as alt
import pandas as pd

import marketloop
from marketloop.exceptions import ConfigError, SchemaError, describe

_CSS = """
:root { --ink: #1f2933; --muted: #616e7c; --line: #d9e2ec; --accent: #3b6ea8; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #f5f7fa;
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
main, header, footer { max-width: 1080px; margin: 0 auto; padding: 0 24px; }
header { padding-top: 28px; padding-bottom: 8px; border-bottom: 3px solid var(--accent); }
header h1 { margin: 0 0 4px; font-size: 28px; }
header p, footer p, figcaption, .caption, .note { color: var(--muted); font-size: 13px; }
h2 { margin: 32px 0 8px; font-size: 21px; }
h3 { margin: 24px 0 6px; font-size: 17px; }
section { margin: 16px 0; }
.metrics { display: flex; flex-wrap: wrap; gap: 12px; }
.metric { flex: 1 1 160px; background: #fff; border: 1px solid var(--line);
          border-radius: 6px; padding: 12px 16px; }
.metric .value { font-size: 24px; font-weight: 600; }
.metric .label { color: var(--muted); font-size: 13px; }
.table-wrap { overflow-x: auto; background: #fff; border: 1px solid var(--line);
              border-radius: 6px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
caption { caption-side: top; text-align: left; padding: 8px 12px; color: var(--muted); }
th, td { padding: 6px 12px; border-bottom: 1px solid var(--line); text-align: left;
         white-space: nowrap; }
th { background: #eef2f7; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:last-child td { border-bottom: none; }
figure { margin: 0; background: #fff; border: 1px solid var(--line); border-radius: 6px;
         padding: 12px; overflow-x: auto; }
figure svg { max-width: 100%; height: auto; }
code { background: #eef2f7; padding: 0 4px; border-radius: 3px; }
footer { margin-top: 40px; padding-bottom: 24px; border-top: 1px solid var(--line); }
"""


#: Vega-Lite config applied to every chart: readable type, titles on the left, no frame.
_CHART_CONFIG = {
    "font": "system-ui, -apple-system, Segoe UI, Roboto, DejaVu Sans, sans-serif",
    "title": {"fontSize": 15, "anchor": "start", "offset": 10, "color": "#1f2933"},
    "axis": {"labelFontSize": 12, "titleFontSize": 13, "titleColor": "#1f2933",
             "labelColor": "#3e4c59", "gridColor": "#e4e7eb"},
    "legend": {"labelFontSize": 12, "titleFontSize": 12},
    "view": {"stroke": None},
}


@dataclass(frozen=True)
class _Section:
    """One rendered block of the report body, in HTML."""

    kind: str
    html: str


class Report:
    """An HTML report built section by section and written as one self-contained file.

    Parameters
    ----------
    title : str
        Shown in the header and the browser tab.

    Attributes
    ----------
    sections : list of str
        The kind of each section added so far, in order (``"heading"``, ``"text"``,
        ``"metrics"``, ``"table"``, ``"chart"``).

    Examples
    --------
    >>> import altair as alt, pandas as pd, tempfile
    >>> frame = pd.DataFrame({"segment": ["champions", "lost"], "customers": [120, 480]})
    >>> report = (Report("Segments")
    ...           .add_heading("Who buys")
    ...           .add_metrics({"Customers": 600, "Champions share": "20%"})
    ...           .add_table(frame, caption="Customers per segment")
    ...           .add_chart(alt.Chart(frame).mark_bar().encode(x="customers", y="segment")))
    >>> report.sections
    ['heading', 'metrics', 'table', 'chart']
    >>> path = report.write(Path(tempfile.mkdtemp()) / "segments.html")
    >>> "<svg" in path.read_text(encoding="utf-8")
    True
    """

    def __init__(self, title: str) -> None:
        self.title = title
        self._sections: list[_Section] = []

    @property
    def sections(self) -> list[str]:
        return [s.kind for s in self._sections]

    def add_heading(self, text: str, *, level: int = 2) -> Self:
        """Add a section heading (``level`` 2, or 3 for a sub-heading)."""
        if level not in (2, 3):
            raise ConfigError(describe("Report.add_heading(level)", "2 or 3", repr(level)))
        return self._add("heading", f"<h{level}>{_esc(text)}</h{level}>")

    def add_text(self, text: str) -> Self:
        """Add prose: plain text or a small, safe Markdown subset.

        Blank lines separate paragraphs; lines starting with ``- `` form a list;
        ``**bold**``, ``*italic*`` and ```code``` are honoured. Everything else,
        HTML included, is shown literally.
        """
        blocks = [b for b in re.split(r"\n\s*\n", text.strip()) if b.strip()]
        return self._add("text", "\n".join(_markdown_block(b) for b in blocks))

    def add_metrics(self, metrics: Mapping[str, str | float]) -> Self:
        """Add a row of headline figures, label → value (numbers get thousands separators)."""
        if not metrics:
            raise ConfigError(describe("Report.add_metrics(metrics)", "at least one figure",
                                       "an empty mapping"))
        cards = "".join(
            f'<div class="metric"><div class="value">{_esc(_format_value(value))}</div>'
            f'<div class="label">{_esc(label)}</div></div>'
            for label, value in metrics.items()
        )
        return self._add("metrics", f'<div class="metrics">{cards}</div>')

    def add_table(
        self, df: pd.DataFrame, *, caption: str = "", max_rows: int = 200, index: bool = False
    ) -> Self:
        """Add a table; numbers are right-aligned, rows beyond ``max_rows`` are left out."""
        if not isinstance(df, pd.DataFrame):
            raise SchemaError(describe("Report.add_table(df)", "a pandas DataFrame",
                                       type(df).__name__))
        frame = df.reset_index() if index else df
        shown = frame.head(max_rows)
        numeric = [pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(
            frame[c]) for c in frame.columns]
        head = "".join(
            f'<th{" class=num" if num else ""}>{_esc(col)}</th>'
            for col, num in zip(frame.columns, numeric, strict=True)
        )
        body = "".join(
            "<tr>" + "".join(
                f'<td{" class=num" if num else ""}>{_esc(_format_value(value))}</td>'
                for value, num in zip(row, numeric, strict=True)
            ) + "</tr>"
            for row in shown.itertuples(index=False, name=None)
        )
        cap = f"<caption>{_esc(caption)}</caption>" if caption else ""
        note = (f'<p class="note">Showing the first {max_rows:,} of {len(frame):,} rows.</p>'
                if len(frame) > max_rows else "")
        table = (f'<div class="table-wrap"><table>{cap}<thead><tr>{head}</tr></thead>'
                 f"<tbody>{body}</tbody></table></div>{note}")
        return self._add("table", table)

    def add_chart(self, chart: alt.TopLevelMixin, *, caption: str = "") -> Self:
        """Add an altair chart, drawn now as inline SVG (no network, no JavaScript).

        The report's type sizes apply where the chart does not configure its own; data
        the chart would fetch from a URL is refused, so the file stays self-contained.
        """
        import vl_convert  # imported here: rendering loads a JavaScript engine

        if not isinstance(chart, alt.TopLevelMixin):
            raise SchemaError(describe("Report.add_chart(chart)", "an altair chart",
                                       type(chart).__name__))
        svg = vl_convert.vegalite_to_svg(
            chart.to_dict(), config=_CHART_CONFIG, allowed_base_urls=[]
        )
        svg = re.sub(r"^\s*<\?xml[^>]*>\s*", "", svg)
        cap = f"<figcaption>{_esc(caption)}</figcaption>" if caption else ""
        return self._add("chart", f"<figure>{svg}{cap}</figure>")

    def to_html(self, *, generated_at: datetime | None = None) -> str:
        """The whole report as an HTML document; ``generated_at`` defaults to now (UTC)."""
        moment = (generated_at or datetime.now(UTC)).astimezone(UTC)
        stamp = moment.strftime("%Y-%m-%d %H:%M UTC")
        body = "\n".join(f"<section>{s.html}</section>" for s in self._sections)
        return (
            "<!DOCTYPE html>\n"
            '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{_esc(self.title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            f"<header><h1>{_esc(self.title)}</h1>"
            f'<p>Generated <time datetime="{moment.isoformat()}">{stamp}</time></p></header>\n'
            f"<main>\n{body}\n</main>\n"
            f"<footer><p>Made with marketloop {_esc(marketloop.__version__)}. "
            "This file is self-contained: it loads nothing from the network.</p></footer>\n"
            "</body>\n</html>\n"
        )

    def write(self, path: str | Path, *, generated_at: datetime | None = None) -> Path:
        """Write the report as UTF-8 HTML to ``path`` (folders are made) and return it."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(self.to_html(generated_at=generated_at), encoding="utf-8")
        return target

    def _add(self, kind: str, html_text: str) -> Self:
        self._sections.append(_Section(kind, html_text))
        return self


def _esc(value: object) -> str:
    """Escape text for HTML content and attribute values."""
    return html.escape(str(value), quote=True)


def _format_value(value: object) -> str:
    """Cell text: thousands separators, 2 decimals (3 below 1), blank when missing."""
    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        number = float(value)
        if number.is_integer() and abs(number) >= 1e4:
            return f"{number:,.0f}"
        return f"{number:.3f}" if 0 < abs(number) < 1 else f"{number:,.2f}"
    if isinstance(value, pd.Timestamp | datetime):
        return value.isoformat(sep=" ")
    return str(value)


def _markdown_block(block: str) -> str:
    """One paragraph or bullet list of the Markdown subset, escaped first."""
    lines = [line.strip() for line in block.strip().splitlines()]
    if all(line.startswith("- ") for line in lines):
        items = "".join(f"<li>{_inline(line[2:])}</li>" for line in lines)
        return f"<ul>{items}</ul>"
    return f"<p>{' '.join(_inline(line) for line in lines)}</p>"


def _inline(text: str) -> str:
    """Escape ``text``, then turn ``code``, **bold** and *italic* into tags."""
    out = _esc(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"(?<![*\w])\*([^*\s][^*]*)\*(?!\w)", r"<em>\1</em>", out)
