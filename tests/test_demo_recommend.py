"""The demo's recommender stage on a small shop: the table, the win-back truth, the section."""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import ibis  # noqa: E402
import pandas as pd  # noqa: E402

from marketloop.demo._recommend import add_recommend_section, recommend_stage  # noqa: E402
from marketloop.simulate import Market  # noqa: E402
from marketloop.value import Report  # noqa: E402


def test_recommend_stage_reports_every_model_and_beats_the_rule():
    market = Market(n_customers=3_000, n_days=365, random_state=5)
    shop = market.simulate()
    con = ibis.duckdb.connect()
    for name in ("customers", "products", "orders", "order_lines"):
        con.create_table(name, getattr(shop, name))
    as_of = pd.Timestamp(market.start) + pd.Timedelta(days=market.n_days)
    fig = recommend_stage(shop, con, as_of=as_of, random_state=0)
    models = set(fig.table.index.get_level_values("model"))
    assert models == {"popularity", "item-item", "als", "bpr", "lightgcn", "bpr+popularity"}
    assert set(fig.table.index.get_level_values("activity")) == {"all", "1", "2-4", "5+"}
    rule = fig.reactivation.loc["category best-sellers (rule)"]
    model = fig.reactivation.loc["history and season bundle"]
    assert model["diff_low"] > 0 and model["rate"] > rule["rate"], fig.reactivation
    doc = Report("test")
    add_recommend_section(doc, fig, number=7)
    html = doc.to_html()
    assert "7. Recommendations and win-back" in html and "Reactivation of dormant" in html
