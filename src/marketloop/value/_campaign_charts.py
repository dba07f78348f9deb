"""Charts of a campaign: Qini curves per offer, and each plan's true profit vs the oracle."""

from __future__ import annotations

import altair as alt
import pandas as pd

_WIDTH = 560


def qini_chart(curves: pd.DataFrame) -> alt.Chart:
    """Qini curve per ranking, one panel per offer, with the random-targeting diagonal."""
    ends = curves.groupby(["offer", "ranking"], sort=False).last().reset_index()
    diagonal = pd.concat([
        pd.DataFrame({"offer": ends["offer"].unique(), "targeted": 0.0, "qini": 0.0}),
        ends.groupby("offer", sort=False)["qini"].mean().reset_index().assign(targeted=1.0),
    ]).assign(ranking="random")
    data = pd.concat([curves, diagonal], ignore_index=True)
    return (
        alt.Chart(data)
        .mark_line()
        .encode(
            x=alt.X("targeted:Q", title="share of customers targeted",
                    axis=alt.Axis(format="%")),
            y=alt.Y("qini:Q", title="incremental conversions"),
            color=alt.Color("ranking:N", title=None),
            strokeDash=alt.condition(alt.datum.ranking == "random", alt.value([4, 4]),
                                     alt.value([1, 0])),
        )
        .properties(width=_WIDTH // 2 - 20, height=200)
        .facet(facet=alt.Facet("offer:N", title=None), columns=2)
    )


def plan_share_chart(table: pd.DataFrame) -> alt.Chart:
    """Each plan's true incremental profit as a share of the oracle's, with its interval."""
    data = table.reset_index()[["plan", "share", "share_low", "share_high"]]
    order = list(data.sort_values("share", ascending=False)["plan"])
    base = alt.Chart(data).encode(y=alt.Y("plan:N", sort=order, title=None))
    bars = base.mark_bar().encode(
        x=alt.X("share:Q", title="true incremental profit, share of the oracle's",
                axis=alt.Axis(format="%")))
    whiskers = base.mark_rule().encode(x="share_low:Q", x2="share_high:Q")
    return (bars + whiskers).properties(width=_WIDTH, height=160)
