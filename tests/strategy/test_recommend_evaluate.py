"""Evaluation of recommenders: metrics by hand, the time split, the validated choice, the CLI."""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit reads it at import (threadpoolctl)

import json  # noqa: E402
import math  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from tests._cli import marketloop  # noqa: E402

from marketloop.exceptions import ConfigError, SchemaError  # noqa: E402
from marketloop.simulate import Market  # noqa: E402
from marketloop.strategy.recommend import (  # noqa: E402
    ALSRecommender,
    ItemItemRecommender,
    PopularityRecommender,
    shop_interactions,
)
from marketloop.strategy.recommend._metrics import (  # noqa: E402
    head_items,
    long_tail_share,
    ranking_metrics,
)
from marketloop.strategy.recommend.evaluate import (  # noqa: E402
    activity_levels,
    default_models,
    evaluate,
    time_split,
)

START = pd.Timestamp("2025-01-01")


@pytest.fixture(scope="module")
def shop_data() -> pd.DataFrame:
    market = Market(n_customers=2_000, n_days=365, random_state=3, history_share=1.0,
                    n_products=100, start=str(START.date()))
    return shop_interactions(market.simulate(("customers", "products", "orders", "order_lines")))


def test_ranking_metrics_equal_hand_computed_values():
    recs = pd.DataFrame({"rank": [1, 2, 3, 1, 2, 3], "product_id": list("abcxyz")},
                        index=pd.Index(["u", "u", "u", "v", "v", "v"], name="customer_id"))
    relevant = {"u": {"b", "c", "q"}, "v": {"x"}, "w": {"a"}}
    got = ranking_metrics(recs, relevant, k=3)
    # u: hits at 2 and 3 of 3 relevant; v: hit at 1; w: no list at all
    assert got.loc["u", "recall"] == pytest.approx(2 / 3)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert got.loc["u", "ndcg"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(4)) / idcg)
    assert got.loc["u", "ap"] == pytest.approx((1 / 2 + 2 / 3) / 3)
    assert got.loc["v"].tolist() == [1, 1.0, 1.0, 1.0]
    assert got.loc["w"].tolist() == [0, 0.0, 0.0, 0.0]


def test_long_tail_is_outside_the_top_fifth_by_sales():
    sales = pd.Series([50, 40, 30, 20, 10, 9, 8, 7, 6, 5], index=[f"p{i}" for i in range(10)])
    assert head_items(sales) == {"p0", "p1"}  # ceil(0.2 * 10) = 2 best sellers
    recs = pd.DataFrame({"product_id": ["p0", "p5", "p9", "p1"]})
    assert long_tail_share(recs, head_items(sales)) == 0.5


def test_time_split_and_activity_levels(shop_data):
    split = time_split(shop_data, cut="2025-09-01")
    assert split.train.ts.max() < pd.Timestamp("2025-09-01") <= split.test.ts.min()
    assert len(split.train) + len(split.test) == len(shop_data)
    default = time_split(shop_data)
    assert len(default.test) / len(shop_data) == pytest.approx(0.2, abs=0.01)
    per = time_split(shop_data, per_customer=True)
    last_train = per.train.groupby("customer_id").ts.max()
    first_test = per.test.groupby("customer_id").ts.min()
    assert (last_train.reindex(first_test.index) < first_test).all()
    assert set(per.train.customer_id) == set(shop_data.customer_id)  # nobody loses all history
    levels = activity_levels(split.train)
    n = split.train.drop_duplicates(["customer_id", "ts"]).groupby("customer_id").size()
    assert (levels[n == 1] == "1").all() and (levels[(n >= 2) & (n <= 4)] == "2-4").all()
    assert (levels[n >= 5] == "5+").all()
    with pytest.raises(SchemaError, match="interactions in the test"):
        time_split(shop_data, cut="2030-01-01")


def test_evaluation_table_and_a_choice_that_beats_popularity(shop_data):
    split = time_split(shop_data, cut=START + pd.Timedelta(days=240))
    models = {"popularity": PopularityRecommender(), "item-item": ItemItemRecommender(),
              "als": ALSRecommender(factors=32, random_state=0)}
    result = evaluate(models, split, k=20)
    table = result.table
    assert set(table.index.get_level_values("activity")) == {"all", "1", "2-4", "5+"}
    counts = table.xs("popularity", level="model")["customers"]
    assert counts["all"] == counts[["1", "2-4", "5+"]].sum()
    # measured: item-item 0.547 against popularity 0.524, paired interval [+0.005, +0.045];
    # ALS 0.28 on this popularity-dominated shop: the highest mean is not enough, the
    # interval against popularity decides, and here it picks item-item
    assert result.choice.model == "item-item" and result.choice.low > 0
    assert "serve item-item" in result.choice.reason
    out = result.to_dict()["models"]["als"]
    assert {"recall@20", "ndcg@20", "map@20", "coverage", "long_tail_share"} <= set(out)


def test_popularity_is_chosen_when_there_is_no_taste_to_learn():
    # every purchase drawn from one Zipf popularity: no personal signal exists at all
    rng = np.random.default_rng(0)
    items = np.array([f"p{i:03d}" for i in range(200)])
    weights = 1 / np.arange(1, 201)
    rows = []
    for c in range(1500):
        for _ in range(rng.integers(1, 7)):
            rows.append((f"c{c:04d}", rng.choice(items, p=weights / weights.sum()),
                         START + pd.Timedelta(days=float(rng.uniform(0, 365)))))
    data = pd.DataFrame(rows, columns=["customer_id", "product_id", "ts"])
    result = evaluate(default_models(["popularity", "item-item", "als"]),
                      time_split(data, cut=START + pd.Timedelta(days=270)), k=20)
    assert result.choice.model == "popularity", result.choice.reason
    assert result.choice.reason.startswith("serve popularity: no model beats it reliably")


def test_default_models_refuse_unknown_names():
    with pytest.raises(ConfigError, match="found lightfm"):
        default_models(["als", "lightfm"])


# ----- the command, as a user runs it ---------------------------------------------------
@pytest.fixture(scope="module")
def files(shop_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("recommend")
    data = shop_data.rename(columns={"customer_id": "user", "product_id": "item", "ts": "when"})
    data.to_csv(folder / "lines.csv.gz", index=False)
    data.to_parquet(folder / "lines.parquet", index=False)
    data.iloc[:0].to_csv(folder / "empty.csv", index=False)
    return folder


def test_cli_prints_the_metrics_of_every_model_as_json(files):
    args = ["--user-col", "user", "--item-col", "item", "--time-col", "when", "--k", "10",
            "--models", "popularity,item-item", "--cut", "2025-09-01", "--json"]
    done = marketloop("recommend", "evaluate", str(files / "lines.csv.gz"), *args)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)["models"]
    assert set(got) == {"popularity", "item-item"}
    assert {"recall@10", "ndcg@10", "coverage", "long_tail_share"} <= set(got["popularity"])
    # the same split computed in-process gives the same figures
    data = pd.read_csv(files / "lines.csv.gz", dtype=str)
    frame = data.rename(columns={"user": "customer_id", "item": "product_id", "when": "ts"})
    want = evaluate({"popularity": PopularityRecommender()},
                    time_split(frame, cut="2025-09-01"), k=10).overall()
    assert got["popularity"]["recall@10"] == pytest.approx(want.loc["popularity", "recall@10"])
    parquet = marketloop("recommend", "evaluate", str(files / "lines.parquet"), *args)
    for name, figures in json.loads(parquet.stdout)["models"].items():
        figures.pop("fit_seconds")
        assert figures == {k: v for k, v in got[name].items() if k != "fit_seconds"}


@pytest.mark.parametrize(("case", "message"), [
    ("missing", "an existing file; found nothing at that path"),
    ("column", "(item missing)"),
    ("empty", "expected at least one interaction"),
    ("k", "--k: expected a whole number of items >= 1; found 0"),
    ("model", "found lightfm"),
    ("twice", "--models: expected each model once; found popularity more than once"),
    ("bigk", "--k: expected fewer than the"),
])
def test_cli_bad_input_is_one_line_and_exit_2(files, case, message):
    path = {"missing": files / "nope.csv", "empty": files / "empty.csv"}.get(
        case, files / "lines.csv.gz")
    args = ["recommend", "evaluate", str(path), "--user-col", "user", "--item-col",
            "product" if case == "column" else "item", "--time-col", "when",
            "--k", {"k": "0", "bigk": "100000"}.get(case, "5"),
            "--models", {"model": "als,lightfm", "twice": "popularity,popularity"}.get(
                case, "popularity")]
    if case == "column":
        args[args.index("product")] = "item_x"
        message = "(item_x missing)"
    done = marketloop(*args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


def test_vectorised_ranking_metrics_equal_the_per_list_definitions():
    from marketloop.strategy.recommend._metrics import (
        average_precision_at_k,
        ndcg_at_k,
        recall_at_k,
    )

    rng = np.random.default_rng(0)
    rows, relevant = [], {}
    for c in range(300):
        for rank, item in enumerate(rng.choice(50, size=rng.integers(1, 25), replace=False)):
            rows.append((f"c{c}", rank + 1, f"p{item}"))
        if c % 7:  # some customers have lists but nothing relevant: they are not scored
            relevant[f"c{c}"] = {f"p{i}" for i in rng.choice(50, size=rng.integers(1, 10),
                                                              replace=False)}
    relevant["no-list"] = {"p1"}
    recs = pd.DataFrame(rows, columns=["customer_id", "rank", "product_id"]).set_index(
        "customer_id").sample(frac=1.0, random_state=1)  # rows in any order
    lists = recs.sort_values("rank").groupby(level=0)["product_id"].agg(list).to_dict()
    for k in (1, 5, 20):
        got = ranking_metrics(recs, relevant, k=k)
        assert list(got.index) == list(relevant)
        for customer, rel in relevant.items():
            rec = lists.get(customer, [])
            want = [recall_at_k(rec, rel, k), ndcg_at_k(rec, rel, k),
                    average_precision_at_k(rec, rel, k)]
            assert got.loc[customer, ["recall", "ndcg", "ap"]].tolist() == pytest.approx(want)


def test_fusing_bpr_with_popularity_beats_popularity_where_bpr_alone_does_not(shop_data):
    split = time_split(shop_data, cut=START + pd.Timedelta(days=240))
    models = default_models(["popularity", "bpr", "bpr+popularity"], n_threads=1)
    result = evaluate(models, split, k=20)
    recall = result.per_customer["recall"].unstack("model")
    # measured: popularity 0.524, BPR 0.309, the fusion 0.544 (8,000 default customers:
    # +0.023, interval [+0.014, +0.031]); two standard errors of the paired mean here
    diff = recall["bpr+popularity"] - recall["popularity"]
    assert diff.mean() - 2 * diff.std() / len(diff) ** 0.5 > 0, (diff.mean(), diff.std())
    assert recall["bpr"].mean() < recall["popularity"].mean()


def test_popularity_alone_is_served_without_a_comparison_with_itself(files):
    done = marketloop("recommend", "evaluate", str(files / "lines.csv.gz"), "--user-col", "user",
                      "--item-col", "item", "--time-col", "when", "--k", "5", "--models",
                      "popularity", "--cut", "2025-09-01", "--json")
    assert done.returncode == 0, done.stderr
    assert "it was the only model evaluated" in json.loads(done.stdout)["choice"]["reason"]
