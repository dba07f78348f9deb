"""Charts for the value report: ingest accounting and RFM segments, one job each.

Every helper takes a small pandas frame (already materialised by the caller), checks its
columns and returns an ``altair`` chart with a title, axis labels and a deterministic
order, ready for :meth:`marketloop.value.Report.add_chart`.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from marketloop._validation import check_frame
from marketloop.exceptions import SchemaError, describe

#: Ingest outcomes in stacking order, with their colours (accepted first, in green).
INGEST_OUTCOMES = ("accepted", "duplicates", "quarantined")
_OUTCOME_COLOURS = ("#3a8f5c", "#9aa5b1", "#d1495b")
_BAR = "#3b6ea8"
_WIDTH = 680
_STEP = 24  # pixels per bar


def ingest_accounting_chart(counts: pd.DataFrame, *, by: str = "source") -> alt.Chart:
    """Stacked bars of accepted, duplicate and quarantined rows per file or table.

    Parameters
    ----------
    counts : pandas.DataFrame
        One row per file or table: the label column ``by`` and the counts ``accepted``,
        ``duplicates`` and ``quarantined``, each also accepted with an ``n_`` prefix (as in
        the ``ingest_runs`` table). Several rows with one label are added up.
    by : str, default="source"
        The label column, such as ``"source"`` or ``"table_name"``.

    Returns
    -------
    altair.Chart
        Horizontal bars, one per label in alphabetical order, segments stacked in the
        order accepted, duplicates, quarantined.

    Raises
    ------
    SchemaError
        If ``by`` or one of the counts is missing.

    Examples
    --------
    >>> counts = pd.DataFrame({"source": ["orders.csv", "customers.csv"],
    ...                        "n_accepted": [980, 500], "n_duplicates": [5, 0],
    ...                        "n_quarantined": [15, 2]})
    >>> ingest_accounting_chart(counts).to_dict()["mark"]["type"]
    'bar'
    """
    where = "ingest_accounting_chart(counts)"
    check_frame(counts, required=[by], where=where)
    columns = {}
    for outcome in INGEST_OUTCOMES:
        found = [c for c in (outcome, f"n_{outcome}") if c in counts.columns]
        if not found:
            raise SchemaError(describe(
                where, f"a column {outcome} or n_{outcome}",
                ", ".join(map(str, counts.columns)) or "no columns",
            ))
        columns[found[0]] = outcome
    totals = counts.rename(columns=columns).groupby(by, sort=True)[list(INGEST_OUTCOMES)].sum()
    long = totals.reset_index().melt(id_vars=by, var_name="outcome", value_name="rows")
    long["order"] = long["outcome"].map(INGEST_OUTCOMES.index)
    labels = [str(label) for label in totals.index]
    long[by] = long[by].astype(str)
    return (
        alt.Chart(long, title="Ingest: what happened to each input row")
        .mark_bar()
        .encode(
            y=alt.Y(f"{by}:N", sort=labels, title=by.replace("_", " ").capitalize()),
            x=alt.X("sum(rows):Q", stack="zero", title="Rows", axis=alt.Axis(tickCount=6)),
            color=alt.Color(
                "outcome:N",
                sort=list(INGEST_OUTCOMES),
                scale=alt.Scale(domain=list(INGEST_OUTCOMES), range=list(_OUTCOME_COLOURS)),
                legend=alt.Legend(title="Outcome", orient="bottom"),
            ),
            order=alt.Order("order:Q", sort="ascending"),
        )
        .properties(width=_WIDTH, height=alt.Step(_STEP))
    )


def quarantine_reasons_chart(reasons: pd.DataFrame) -> alt.LayerChart:
    """Bars of quarantined rows per reason code, the most frequent first.

    Parameters
    ----------
    reasons : pandas.DataFrame
        Columns ``reason`` and ``count``; several rows with one reason (one per file,
        say) are added up.

    Returns
    -------
    altair.LayerChart
        Horizontal bars with their counts written beside them, ordered by count
        (descending), then reason.

    Raises
    ------
    SchemaError
        If ``reason`` or ``count`` is missing.

    Examples
    --------
    >>> reasons = pd.DataFrame({"reason": ["bad_amount", "unknown_currency"], "count": [12, 3]})
    >>> len(quarantine_reasons_chart(reasons).layer)
    2
    """
    check_frame(reasons, required=["reason", "count"], where="quarantine_reasons_chart(reasons)")
    totals = _ranked(reasons, label="reason", value="count")
    return _labelled_bars(
        totals, label="reason", value="count", label_title="Reason",
        value_title="Quarantined rows", title="Quarantined rows by reason", fmt=",d",
    )


def segment_sizes_chart(summary: pd.DataFrame) -> alt.LayerChart:
    """Bars of customers per segment, the largest first.

    Parameters
    ----------
    summary : pandas.DataFrame
        Columns ``segment`` and ``customers``, as
        :func:`marketloop.strategy.segment_summary` returns once materialised.

    Returns
    -------
    altair.LayerChart
        Horizontal bars with the count beside each, ordered by customers (descending),
        then segment name.

    Raises
    ------
    SchemaError
        If ``segment`` or ``customers`` is missing.

    Examples
    --------
    >>> summary = pd.DataFrame({"segment": ["lost", "champions"], "customers": [40, 10]})
    >>> segment_sizes_chart(summary).layer[0].to_dict()["encoding"]["y"]["sort"]
    ['lost', 'champions']
    """
    check_frame(summary, required=["segment", "customers"], where="segment_sizes_chart(summary)")
    totals = _ranked(summary, label="segment", value="customers")
    return _labelled_bars(
        totals, label="segment", value="customers", label_title="Segment",
        value_title="Customers", title="Customers per RFM segment", fmt=",d",
    )


def segment_values_chart(summary: pd.DataFrame) -> alt.HConcatChart:
    """Total and mean spend per segment, side by side, by total spend.

    Parameters
    ----------
    summary : pandas.DataFrame
        Columns ``segment``, ``total_monetary`` and ``mean_monetary``, as
        :func:`marketloop.strategy.segment_summary` returns once materialised.

    Returns
    -------
    altair.HConcatChart
        Two bar panels sharing the segment order: total spend (descending), then name.

    Raises
    ------
    SchemaError
        If a required column is missing.

    Examples
    --------
    >>> summary = pd.DataFrame({"segment": ["lost", "champions"],
    ...                         "total_monetary": [800.0, 5000.0], "mean_monetary": [20.0, 500.0]})
    >>> len(segment_values_chart(summary).hconcat)
    2
    """
    check_frame(summary, required=["segment", "total_monetary", "mean_monetary"],
                where="segment_values_chart(summary)")
    totals = _ranked(summary, label="segment", value="total_monetary")
    means = summary.groupby("segment", sort=True)["mean_monetary"].mean()
    totals["mean_monetary"] = totals["segment"].map(means)
    panels = [
        _labelled_bars(totals, label="segment", value=value, label_title=label_title,
                       value_title=value_title, title=value_title, fmt=",.0f",
                       order=list(totals["segment"]), width=_WIDTH // 2 - 20)
        for value, value_title, label_title in (
            ("total_monetary", "Total spend", "Segment"),
            ("mean_monetary", "Mean spend per customer", None),
        )
    ]
    return alt.hconcat(*panels, title="Spend per RFM segment").resolve_scale(y="shared")


def _ranked(frame: pd.DataFrame, *, label: str, value: str) -> pd.DataFrame:
    """Sum ``value`` per ``label``; order by value (descending), then label."""
    totals = frame.groupby(label, sort=True, as_index=False)[value].sum()
    totals[label] = totals[label].astype(str)
    return totals.sort_values([value, label], ascending=[False, True], ignore_index=True)


def _labelled_bars(
    frame: pd.DataFrame,
    *,
    label: str,
    value: str,
    label_title: str | None,
    value_title: str,
    title: str,
    fmt: str,
    order: list[str] | None = None,
    width: int = _WIDTH,
) -> alt.LayerChart:
    """Horizontal bars in the frame's row order (or ``order``), values written beside them."""
    order = list(frame[label]) if order is None else order
    base = alt.Chart(frame[[label, value]]).encode(
        y=alt.Y(f"{label}:N", sort=order, title=label_title),
        x=alt.X(f"{value}:Q", title=value_title, axis=alt.Axis(tickCount=6)),
    )
    bars = base.mark_bar(color=_BAR)
    text = base.mark_text(align="left", dx=3, fontSize=11).encode(
        text=alt.Text(f"{value}:Q", format=fmt)
    )
    return alt.layer(bars, text, title=title).properties(width=width, height=alt.Step(_STEP))
