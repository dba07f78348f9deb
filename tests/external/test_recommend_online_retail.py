"""Recommenders on the UCI Online Retail file: every model under the documented split.

Split (docs/recommend.md): purchases (ordinary invoices, positive quantity, merchandise
stock codes, see ``online_retail_interactions``) before 2011-09-01 train, from it test;
products a customer bought before the cut are excluded from their list and from their
relevant set; customers first seen after the cut are not scored. The issue measured
popularity 0.030, implicit ALS 0.071 (long-tail share 0.05), BPR 0.058, item-cosine 0.050
and torch_geometric's LightGCN 0.062 on this split with 1,886 customers; our filter keeps
1,875 (it drops postage, fees, samples and gift vouchers as non-products).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import copy  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from marketloop.strategy.recommend import online_retail_interactions  # noqa: E402
from marketloop.strategy.recommend.evaluate import (  # noqa: E402
    DEFAULT_MODELS,
    Evaluation,
    TimeSplit,
    default_models,
    evaluate,
    time_split,
)

pytestmark = pytest.mark.external

FILE = Path("online_retail") / "online_retail.csv.gz"
CUT = "2011-09-01"
#: The issue's implicit-ALS figures on this split (recall@20, long-tail share).
ISSUE_ALS = (0.071, 0.05)
#: Long-tail knob of the re-ranker for the "twice the long tail" target (docs/recommend.md).
TAIL_WEIGHT = 0.5


@pytest.fixture(scope="module")
def split(shared_data: Path) -> TimeSplit:
    """The documented split, read once for every test of this file."""
    path = shared_data / FILE
    if not path.is_file():
        pytest.skip(f"{path} not found under MARKETLOOP_DATA")
    return time_split(online_retail_interactions(path), cut=CUT)


@pytest.fixture(scope="module")
def result(split: TimeSplit) -> Evaluation:
    models = default_models([*DEFAULT_MODELS, "als+bpr"], n_threads=2, random_state=0)
    models["lightgcn"].set_params(max_epochs=15)  # validation recall peaks near epoch 11
    fitted = {name: model.fit(split.train) for name, model in models.items()}
    for base in ("als", "lightgcn"):  # the same fitted model served with the tail knob
        fitted[f"{base}+tail"] = copy.deepcopy(fitted[base]).set_params(tail_weight=TAIL_WEIGHT)
    out = evaluate(fitted, split, k=20, fit=False)
    with pd.option_context("display.width", 200, "display.max_rows", 200,
                           "display.max_columns", 20):
        print(f"\nonline_retail, train before {CUT}:\n{out.table.round(4)}\n{out.choice.reason}")
    return out


def _low_activity_recall(result: Evaluation) -> pd.Series:
    rows = result.per_customer[result.per_customer.activity.isin(["1", "2-4"])]
    return rows["recall"].groupby(level="model").mean()


def test_split_and_popularity_match_the_issue(result):
    overall = result.overall()
    assert overall.loc["popularity", "customers"] == 1_875
    assert overall.loc["popularity", "recall@20"] == pytest.approx(0.030, abs=0.006)


@pytest.mark.parametrize("name", ["als", "lightgcn"])
def test_model_beats_popularity_overall_and_for_customers_with_one_to_four_purchases(
        result, name):
    overall = result.overall()["recall@20"]
    low = _low_activity_recall(result)
    # measured: ALS 0.082 / 0.084 (1-4 purchases), LightGCN 0.069 / 0.073, popularity
    # 0.034 / 0.036; the paired intervals of the choice are about +-0.006 wide
    assert overall[name] > overall["popularity"] + 0.02, overall
    assert low[name] > low["popularity"] + 0.02, low


def test_choice_is_validated_against_popularity(result):
    recall = result.overall()["recall@20"]
    # ALS and the ALS+BPR blend tie to the fourth decimal (measured 0.0817 / 0.0815, and
    # 0.0818 for the blend in another run: BPR's two training threads are not bit-for-bit
    # repeatable), so either may be served; whichever it is must be the best and validated
    assert result.choice.model in ("als", "als+bpr"), result.choice.reason
    assert result.choice.model == recall.idxmax(), recall
    assert result.choice.low > 0, result.choice.reason


def test_tail_knob_doubles_the_long_tail_of_the_issues_als_without_losing_recall(result):
    row = result.overall().loc["als+tail"]
    # measured: recall 0.072, long-tail share 0.31 at tail_weight 0.5
    assert row["recall@20"] >= ISSUE_ALS[0]
    assert row["long_tail_share"] >= 2 * ISSUE_ALS[1]


#: implicit's own AlternatingLeastSquares defaults (raw purchase counts as confidence).
IMPLICIT_DEFAULTS = {"factors": 100, "regularization": 0.01, "alpha": 1.0, "weighting": "count"}
SEEDS = (0, 1, 2, 3)


@pytest.fixture(scope="module")
def als_beside_implicit_defaults(split: TimeSplit) -> pd.DataFrame:
    """Our ALS and implicit's ALS at the library's defaults, four seeds each, same split."""
    from marketloop.strategy.recommend._mf import ALSRecommender

    models = {}
    for seed in SEEDS:
        models[f"ours/{seed}"] = ALSRecommender(random_state=seed, n_jobs=2)
        models[f"implicit/{seed}"] = ALSRecommender(**IMPLICIT_DEFAULTS, random_state=seed,
                                                    n_jobs=2)
    overall = evaluate(models, split, k=20).overall()[["recall@20", "long_tail_share"]]
    overall.index = pd.MultiIndex.from_tuples([n.split("/") for n in overall.index],
                                              names=["model", "seed"])
    print(f"\nALS beside implicit's defaults, seeds {SEEDS}:\n{overall.round(4)}")
    return overall


def test_best_model_has_implicit_als_recall_with_twice_its_long_tail(als_beside_implicit_defaults):
    """The issue's target against the same library's ALS run on the same split in this run.

    Measured (means over seeds 0-3): ours 0.0813 recall, long-tail share 0.153; implicit at
    its defaults 0.0811, 0.068. Per seed the recalls differ by -0.0011 to +0.0015, well
    inside the paired interval of about +-0.006: equal recall, 2.2 times the long tail.
    """
    mean = als_beside_implicit_defaults.groupby(level="model").mean()
    assert mean.loc["ours", "recall@20"] >= mean.loc["implicit", "recall@20"], mean
    assert mean.loc["ours", "long_tail_share"] >= 2 * mean.loc["implicit", "long_tail_share"]
