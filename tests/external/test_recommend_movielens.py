"""Recommenders on MovieLens ml-latest-small, a second, non-retail check.

Split (docs/recommend.md): every rating is an interaction (implicit feedback: the user
chose to watch and rate the film); each user's last 20 % of distinct rating times test,
the rest trains ("leave the last out", since MovieLens users are active in different
years: a global cut keeps only 28 users on both sides). GroupLens calls this a development
set with no reference ranking figures, so models are compared with popularity on the
same split, as the data README advises.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from marketloop.strategy.recommend import read_interactions  # noqa: E402
from marketloop.strategy.recommend.evaluate import (  # noqa: E402
    DEFAULT_MODELS,
    Evaluation,
    default_models,
    evaluate,
    time_split,
)

pytestmark = pytest.mark.external

FILE = Path("movielens_latest_small") / "ratings.csv.gz"


@pytest.fixture(scope="module")
def result(shared_data: Path) -> Evaluation:
    path = shared_data / FILE
    if not path.is_file():
        pytest.skip(f"{path} not found under MARKETLOOP_DATA")
    data = read_interactions(path, user_col="userId", item_col="movieId", time_col="timestamp")
    split = time_split(data, per_customer=True, test_share=0.2)
    models = default_models([*DEFAULT_MODELS, "als+bpr"], n_threads=2, random_state=0)
    models["lightgcn"].set_params(max_epochs=25, validation_by="customer")  # as the split
    out = evaluate(models, split, k=20)
    with pd.option_context("display.width", 200, "display.max_rows", 200,
                           "display.max_columns", 20):
        print(f"\nmovielens, last 20% per user:\n{out.table.round(4)}\n{out.choice.reason}")
        print(out.fit_seconds)
    return out


def test_split_keeps_every_user(result):
    assert result.overall().loc["popularity", "customers"] >= 600  # 610 users in the file
    assert len(result.split.train) + len(result.split.test) == 100_836


@pytest.mark.parametrize("name", ["als", "lightgcn"])
def test_model_beats_popularity_on_recall(result, name):
    overall = result.overall()["recall@20"]
    assert overall[name] > overall["popularity"] + 0.01, overall
    recall = result.per_customer["recall"].unstack("model")
    diff = recall[name] - recall["popularity"]
    # a paired interval over users, as the model choice computes it: two standard errors
    assert diff.mean() - 2 * diff.std() / len(diff) ** 0.5 > 0, (diff.mean(), diff.std())


def test_the_choice_is_a_personalised_model(result):
    assert result.choice.model != "popularity" and result.choice.low > 0, result.choice.reason
