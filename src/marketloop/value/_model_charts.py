"""Charts of model checks: CLV calibration and distribution, churn lift and calibration."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

_WIDTH = 560


def holdout_chart(by_frequency: pd.DataFrame) -> alt.Chart:
    """Mean predicted beside mean actual holdout purchases per calibration-frequency group."""
    long = by_frequency.melt(
        id_vars=["group"], value_vars=["predicted", "actual"], var_name="series", value_name="mean"
    )
    order = sorted(by_frequency["group"], key=lambda g: (len(g), g))
    return (
        alt.Chart(long, title="Holdout purchases by calibration-period repeat purchases")
        .mark_bar()
        .encode(
            x=alt.X("group:N", sort=order, title="repeat purchases in calibration"),
            xOffset=alt.XOffset("series:N", sort=["predicted", "actual"]),
            y=alt.Y("mean:Q", title="mean purchases in holdout"),
            color=alt.Color("series:N", sort=["predicted", "actual"], title=None),
        )
        .properties(width=_WIDTH, height=260)
    )


def clv_histogram(clv: pd.Series, *, bins: int = 40) -> alt.Chart:
    """Distribution of 12-month CLV (binned here; the top 1% are clipped to keep it readable)."""
    values = clv.dropna().to_numpy()
    cap = float(np.quantile(values, 0.99)) if len(values) else 1.0
    counts, edges = np.histogram(np.clip(values, None, cap), bins=bins)
    frame = pd.DataFrame({"low": edges[:-1], "high": edges[1:], "customers": counts})
    return (
        alt.Chart(frame, title="12-month customer lifetime value")
        .mark_bar()
        .encode(
            x=alt.X("low:Q", bin="binned", title="CLV (shop currency, top 1% clipped)"),
            x2="high:Q",
            y=alt.Y("customers:Q", title="customers"),
        )
        .properties(width=_WIDTH, height=240)
    )


def lift_chart(lift: pd.DataFrame) -> alt.Chart:
    """Churn rate of each risk decile over the overall rate."""
    return (
        alt.Chart(lift, title="Churn lift by predicted-risk decile (1 = riskiest)")
        .mark_bar()
        .encode(
            x=alt.X("decile:O", title="decile"),
            y=alt.Y("lift:Q", title="churn rate / overall churn rate"),
        )
        .properties(width=_WIDTH, height=240)
    )


def reliability_chart(table: pd.DataFrame) -> alt.LayerChart:
    """Observed churn share against mean predicted probability per bin, with the diagonal."""
    diagonal = pd.DataFrame({"p_mean": [0.0, 1.0], "observed": [0.0, 1.0]})
    line = (
        alt.Chart(diagonal)
        .mark_line(strokeDash=[4, 4], color="gray")
        .encode(x="p_mean:Q", y="observed:Q")
    )
    points = (
        alt.Chart(table)
        .mark_line(point=True)
        .encode(
            x=alt.X(
                "p_mean:Q", title="mean predicted churn probability", scale=alt.Scale(domain=[0, 1])
            ),
            y=alt.Y("observed:Q", title="observed churn share", scale=alt.Scale(domain=[0, 1])),
        )
    )
    return (line + points).properties(
        title="Churn calibration (held-out half)", width=_WIDTH, height=280
    )
