"""The demo: the loop run end to end on a simulated shop, written up as one HTML report.

Stages (later work adds its own): simulate a shop and export it with dirty rows, ingest the
export into a fresh DuckDB warehouse, check the quarantine against the simulator's list of
broken rows, segment customers by RFM as the traditional baseline, write the report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from marketloop.data.ingest import IngestReport, ingest
from marketloop.data.warehouse import connect
from marketloop.demo._bandits import SeasonFigures, season_stage
from marketloop.demo._campaign import CampaignFigures, campaign_stage
from marketloop.demo._models import ModelFigures, model_stages
from marketloop.demo._recommend import RecommendFigures, add_recommend_section, recommend_stage
from marketloop.simulate import Market, write_export
from marketloop.strategy.rfm import rfm_segments, segment_summary
from marketloop.value import (
    Report,
    ingest_accounting_chart,
    quarantine_reasons_chart,
    segment_sizes_chart,
    segment_values_chart,
)
from marketloop.value._campaign_charts import plan_share_chart, qini_chart
from marketloop.value._model_charts import (
    clv_histogram,
    holdout_chart,
    lift_chart,
    reliability_chart,
)
from marketloop.value._online_charts import season_chart

Say = Callable[[str], None]


@dataclass
class DemoResult:
    """What the demo made and the figures it reports."""

    out_dir: Path
    report_path: Path
    warehouse_url: str
    ingest: IngestReport
    segments: pd.DataFrame
    broken_caught: int
    broken_total: int
    seconds: dict[str, float] = field(default_factory=dict)
    models: ModelFigures | None = None
    season: SeasonFigures | None = None
    campaign: CampaignFigures | None = None
    recommend: RecommendFigures | None = None


def run_demo(
    out_dir: str | Path = "demo-out",
    *,
    n_customers: int = 20_000,
    n_days: int = 365,
    dirty_rate: float = 0.01,
    random_state: int = 7,
    say: Say | None = None,
) -> DemoResult:
    """Simulate, ingest, segment and report; returns where everything went.

    Parameters
    ----------
    out_dir : str or Path, default="demo-out"
        Folder for the export (``shop/``), the warehouse (``marketloop.duckdb``, made
        anew) and ``report.html``.
    n_customers, n_days : int
        Size of the simulated shop.
    dirty_rate : float, default=0.01
        Share of export rows broken the way real exports break.
    random_state : int, default=7
        Seed of the simulator: the same seed gives the same demo.
    say : callable, optional
        Told a line at the start of each stage.
    """
    tell = say or (lambda _msg: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[stage] = round(now - clock, 2)
        clock = now

    tell(f"simulating {n_customers:,} customers over {n_days} days")
    market = Market(n_customers=n_customers, n_days=n_days, random_state=random_state)
    shop = market.simulate()
    export = write_export(shop, out / "shop", dirty_rate=dirty_rate, random_state=random_state)
    lap("simulate")

    tell("ingesting the export (dirty rows included)")
    db = out / "marketloop.duckdb"
    for stale in (db, db.with_suffix(".duckdb.wal")):
        stale.unlink(missing_ok=True)
    url = f"duckdb:///{db}"
    con = connect(url)
    report = ingest([out / "shop"], con=con)
    caught, total = _broken_rows_caught(con, report, export.dirty_rows, out / "shop")
    lap("ingest")

    tell("segmenting customers by RFM")
    as_of = pd.Timestamp(market.start) + pd.Timedelta(days=n_days)
    segmented = rfm_segments(con.table("orders"), as_of=as_of.to_pydatetime())
    summary = segment_summary(segmented).order_by("segment").to_pandas()
    lap("segment")

    tell("fitting CLV (BG/NBD, Gamma-Gamma) and churn models on point-in-time profiles")
    models = model_stages(con, shop.truth.customers, as_of=as_of)
    lap("models")

    tell("learning offers online: LinUCB and epsilon-greedy against an A/B/n test and the oracle")
    season = season_stage(shop, random_state=random_state)
    lap("bandits")

    tell("a coupon campaign: A/B test, uplift model, budgeted plan vs RFM, random and the oracle")
    campaign = campaign_stage(shop, random_state=random_state)
    lap("campaign")

    tell("recommenders on the warehouse by customer activity, and a win-back of dormant customers")
    recommend = recommend_stage(shop, con, as_of=as_of, random_state=random_state)
    lap("recommend")

    tell("writing the report")
    doc = _report(report, summary, caught, total, market, as_of)
    _model_sections(doc, models)
    _season_section(doc, season)
    _campaign_section(doc, campaign)
    add_recommend_section(doc, recommend, number=7)
    path = doc.write(out / "report.html")
    lap("report")
    con.disconnect()
    return DemoResult(out, path, url, report, summary, caught, total, seconds, models, season,
                      campaign=campaign, recommend=recommend)


def _broken_rows_caught(
    con: object, report: IngestReport, dirty: pd.DataFrame, folder: Path
) -> tuple[int, int]:
    """How many rows the simulator broke on purpose ingest quarantined or set aside."""
    quarantine = con.table("quarantine").select("source", "row_no").to_pandas()  # type: ignore[attr-defined]
    by_source = {Path(f.path).name: f.source for f in report.files}
    refused = set(zip(quarantine.source, quarantine.row_no, strict=True))
    caught = 0
    for file, row_no, kind in dirty[["file", "row_no", "kind"]].itertuples(index=False):
        if kind == "duplicate_row":
            caught += 1  # counted by the duplicates column; checked in the tests
        elif (by_source.get(file), int(row_no)) in refused:
            caught += 1
    return caught, len(dirty)


def _report(
    report: IngestReport,
    summary: pd.DataFrame,
    caught: int,
    total: int,
    market: Market,
    as_of: pd.Timestamp,
) -> Report:
    files = pd.DataFrame(
        [
            {
                "file": Path(f.path).name,
                "table": f.table,
                "read": f.read,
                "accepted": f.accepted,
                "duplicates": f.duplicates,
                "quarantined": f.quarantined,
                "replaced": f.replaced,
            }
            for f in report.files
        ]
    )
    reasons = pd.DataFrame(list(report.reasons.items()), columns=["reason", "count"])
    doc = Report("marketloop demo: a simulated shop, from raw exports to segments")
    doc.add_metrics(
        {
            "customers simulated": f"{market.n_customers:,}",
            "rows read": f"{report.read:,}",
            "accepted": f"{report.accepted:,}",
            "duplicates": f"{report.duplicates:,}",
            "quarantined": f"{report.quarantined:,}",
            "broken rows caught": f"{caught:,} / {total:,}",
        }
    )
    doc.add_heading("1. Ingest: every row accounted for")
    doc.add_text(
        f"The simulator exported {len(report.files)} files with about 1% of rows broken the "
        "way real shop exports break (missing and malformed ids, unparseable dates, absurd "
        "quantities, unknown currencies, duplicated rows, orphan lines, bad encodings, a "
        "truncated last line). Each row was **accepted**, recognised as a **duplicate**, or "
        "**quarantined** with a reason: read = accepted + duplicates + quarantined for "
        "every file."
    )
    doc.add_chart(ingest_accounting_chart(files, by="file"), caption="Rows per file")
    doc.add_table(files, caption="Ingest accounting per file")
    if len(reasons):
        doc.add_chart(quarantine_reasons_chart(reasons), caption="Quarantined rows by reason")
    doc.add_text(
        f"The simulator's own list of rows it broke holds {total:,} rows; ingest refused or "
        f"set aside {caught:,} of them. Rows can also be quarantined without being broken "
        "themselves: an order line whose order was broken is an orphan."
    )
    doc.add_heading("2. RFM segments: the traditional baseline")
    doc.add_text(
        f"Recency, frequency and monetary value from paid orders before {as_of:%Y-%m-%d}, "
        "scored in quintiles and mapped to the usual named segments."
    )
    doc.add_chart(segment_sizes_chart(summary), caption="Customers per segment")
    doc.add_chart(segment_values_chart(summary), caption="Value per segment")
    doc.add_table(summary, caption="Segment summary")  # shown to 3 places, not rounded to 2 first
    return doc


def _model_sections(doc: Report, m: ModelFigures) -> None:
    predicted, actual = m.holdout_total
    doc.add_heading("3. Customer lifetime value")
    doc.add_text(
        "BG/NBD (Fader, Hardie & Lee 2005) fitted on paid orders up to 13 weeks before the end, "
        f"then checked on those 13 weeks: {predicted:,.0f} repeat purchases predicted, "
        f"{actual:,.0f} made ({(predicted - actual) / actual:+.1%}). With Gamma-Gamma for spend, "
        "the 12-month CLV of every customer at the end of the period (1% monthly discount). "
        f"Correlation of predicted and true 52-week purchases: {m.truth_correlation:.3f} (the "
        "truth is zero for customers who already left, which no purchase history can show)."
    )
    doc.add_chart(holdout_chart(m.holdout_by_frequency), caption="Calibration plot")
    doc.add_table(m.holdout_by_frequency.round(3), caption="Holdout by frequency group")
    doc.add_chart(clv_histogram(m.clv), caption="CLV distribution")
    doc.add_heading("4. Churn")
    doc.add_text(
        "A calibrated LightGBM model on point-in-time profiles 90 days before the end, labelled "
        "by the 90 days after (no paid order = churned), scored on a held-out half of the "
        f"customers: AUC {m.churn_auc:.3f} beside {m.churn_auc_bgnbd:.3f} for the BG/NBD "
        f"probability-alive baseline; expected calibration error {m.churn_ece:.3f}. Against "
        f"the simulator's truth (the customer has left by the end of the 90 days): "
        f"{m.churn_auc_true:.3f} beside BG/NBD's {m.churn_auc_true_bgnbd:.3f}. The model "
        "predicts what it is trained on, no order in 90 days, which a live customer who buys "
        "rarely also shows; BG/NBD scores leaving itself (docs/churn.md)."
    )
    doc.add_chart(lift_chart(m.lift), caption="Lift")
    doc.add_chart(reliability_chart(m.reliability), caption="Calibration")


def _season_section(doc: Report, season: SeasonFigures) -> None:
    final = season.final()
    ab = final.loc["A/B/n test"]
    bandits = final.drop(["A/B/n test", "oracle"])
    best = bandits["cum_profit"].idxmax()
    gain = bandits.loc[best, "cum_profit"] / ab["cum_profit"] - 1
    regret_share = bandits.loc[best, "cum_regret"] / final.loc["oracle", "cum_expected_profit"]
    doc.add_heading("5. Learning offers online")
    doc.add_text(
        f"For {season.n_days} days, {season.contacts_per_day} customers a day are each given "
        f"one of {season.n_actions} actions (offer x channel x send hour x format, or no "
        "contact) by contextual bandits that learn from each day's realised profit (LinUCB, "
        "epsilon-greedy), by a fixed A/B/n test that splits customers evenly over the actions, and "
        "by the oracle that knows every customer's true response. The same customers on the "
        "same days, and the same random outcomes, for every policy. "
        f"{best} earned {gain:+.0%} profit over the A/B/n test; its regret (per decision, "
        "the true expected profit of the best action less that of its choice, summed; the "
        "customers' states follow each policy's own past contacts, so it is not the gap to "
        f"the oracle's total) was {regret_share:.0%} of the oracle's profit. Every "
        "choice was logged with its propensity, for off-policy evaluation of the next policy "
        "(docs/ope.md)."
    )
    for metric in ("cum_profit", "cum_conversions", "cum_regret"):
        doc.add_chart(season_chart(season.daily, metric))
    table = final.rename(columns=lambda c: c.replace("cum_", "")).round(1).reset_index()
    doc.add_table(table, caption="At the end of the season")


def _campaign_section(doc: Report, c: CampaignFigures) -> None:
    t = c.comparison.table
    diff, low, high = c.uplift_vs_rfm
    n_test = len(c.comparison.log) if c.comparison.log is not None else 0
    doc.add_heading("6. Who is worth a coupon")
    doc.add_text(
        f"A randomised test on {n_test:,} customers: 20% in control, the rest spread over four "
        "e-mail offers (a message without a discount, 10% and 20% off, free shipping). "
        "Conversion is an order within 14 days."
    )
    doc.add_table(c.experiment.round(4), caption="The A/B test, per arm (95% intervals)")
    doc.add_text(
        "An uplift model (a T-learner on LightGBM, on what the shop can see: order history, "
        "consents, demographics) learnt from one half of the test and ranked the other half. "
        "A Qini curve counts the extra conversions won by contacting the top-ranked share; "
        "the true effect's curve is the best any ranking could do on these rows."
    )
    doc.add_chart(qini_chart(c.qini), caption="Qini curves on the held-out half of the test")
    doc.add_table(c.qini_coefficients.round(4), caption="Qini coefficients")
    doc.add_text(
        f"Then the plans for the other customers, at one budget of "
        f"{c.comparison.budget:,.0f} EUR of expected contact and discount cost: **uplift** "
        "targeting (each customer the offer, or nothing, of most expected incremental profit: "
        "uplift x margin x order value, less the contact and the discount paid on orders that "
        "would have happened anyway), the **RFM** rule (10% off to segments in the order a "
        "traditional campaign serves them), **random** targeting, and the **oracle** that knows "
        "every customer's true effects. Each plan is valued by the simulator's truth and held "
        "to the same true budget. Uplift targeting earned "
        f"{t.loc['uplift', 'share']:.0%} of the oracle's true incremental profit, the RFM rule "
        f"{t.loc['rfm', 'share']:.0%} (it pays discounts to loyal customers who buy anyway), "
        f"random targeting {t.loc['random', 'share']:.0%}; uplift minus RFM "
        f"{diff:+.0%} [{low:+.0%}, {high:+.0%}]."
    )
    for note in c.comparison.notes:  # e.g. a shop too small for the test to teach the model
        doc.add_text(f"**Note:** {note[0].upper()}{note[1:]}.")
    doc.add_chart(plan_share_chart(t), caption="True incremental profit, share of the oracle's")
    table = t.reset_index()[["plan", "customers", "cut", "planned_spend", "true_spend",
                             "true_profit", "share", "share_low", "share_high"]]
    doc.add_table(table.round(3), caption="Plans at the same budget, valued by the truth")
