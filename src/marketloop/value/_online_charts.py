"""Charts of an online season: cumulative conversions, profit and regret per policy."""

from __future__ import annotations

import altair as alt
import pandas as pd

_WIDTH = 560

#: Column of ``run_season``'s table -> axis title.
SEASON_METRICS = {
    "cum_conversions": "cumulative conversions",
    "cum_profit": "cumulative profit (realised)",
    "cum_regret": "cumulative regret vs the oracle (true expected profit)",
}


def season_chart(daily: pd.DataFrame, metric: str) -> alt.Chart:
    """One line per policy over the days of the season."""
    title = SEASON_METRICS[metric]
    return (
        alt.Chart(daily[["policy", "day", metric]], title=title[0].upper() + title[1:])
        .mark_line(point=False)
        .encode(
            x=alt.X("day:Q", title="day of the season"),
            y=alt.Y(f"{metric}:Q", title=title),
            color=alt.Color("policy:N", title=None),
        )
        .properties(width=_WIDTH, height=240)
    )
