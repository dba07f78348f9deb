"""CDNow (Fader & Hardie): the published BG/NBD, Pareto/NBD and Gamma-Gamma estimates.

Published figures from ``shared/data/cdnow/README.md``; the holdout counts are computed
here from ``CDNOW_sample.txt`` with the 39-week calibration ending 1997-09-30 and the
39-week holdout ending 1998-06-30, same-day purchases merged.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from tests._cli import marketloop

from marketloop.predict import (
    BetaGeoModel,
    GammaGammaModel,
    ParetoNBDModel,
    summary_from_transactions,
)

pytestmark = pytest.mark.external

CDNOW_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}  # FHL (2005)
CDNOW_PARETO = {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669}  # FH (2005) note
CDNOW_GG = {"p": 6.25, "q": 3.74, "gamma": 15.44}  # FHL (2005) "RFM and CLV", 946 buyers
LL_BGNBD, LL_PARETO = -9582.4, -9595.0
#: Gamma-Gamma E[Z | z-bar, x] of the first ten customers (Hardie's spreadsheet, tol 0.1).
CDNOW_SPEND_10 = [24.65, 18.91, 35.17, 35.17, 35.17, 71.46, 18.91, 35.17, 27.28, 35.17]

HOLDOUT_ACTUAL = 1_882  # repeat purchases 1997-10-01 .. 1998-06-30 (issue, README)
#: Measured here: BG/NBD and Pareto/NBD fitted on CDNOW_sample.txt's own summary.
HOLDOUT_PREDICTED = {"bgnbd": 1653.4, "pareto-nbd": 1665.5}
#: Actual holdout repeat purchases by calibration frequency 0..6, 7+ (measured here).
HOLDOUT_BY_FREQUENCY = [334, 306, 298, 156, 157, 112, 112, 407]


@pytest.fixture(scope="module")
def cdnow(shared_data: Path) -> Path:
    folder = shared_data / "cdnow"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    return folder


@pytest.fixture(scope="module")
def published_summary(cdnow: Path) -> pd.DataFrame:
    summary = pd.read_csv(cdnow / "cdnow_customers_summary_with_transactions.csv", index_col="ID")
    return summary.rename(columns={"x": "frequency", "t_x": "recency", "zbar": "monetary_value"})


@pytest.fixture(scope="module")
def sample_summary(cdnow: Path) -> pd.DataFrame:
    tx = pd.read_csv(cdnow / "CDNOW_sample.txt", sep=r"\s+", header=None, dtype=str,
                     names=["master_id", "customer_id", "date", "quantity", "amount"])
    return summary_from_transactions(
        tx, customer_col="customer_id", date_col="date", amount_col="amount",
        calibration_end="1997-09-30", holdout_end="1998-06-30", date_format="%Y%m%d",
    )


@pytest.mark.parametrize(
    ("model_class", "published", "ll"),
    [(BetaGeoModel, CDNOW_BGNBD, LL_BGNBD), (ParetoNBDModel, CDNOW_PARETO, LL_PARETO)],
)
def test_purchase_models_match_published(published_summary, model_class, published, ll) -> None:
    model = model_class().fit(published_summary)
    for name, value in published.items():
        assert model.params_[name] == pytest.approx(value, rel=0.01), name
    assert model.log_likelihood_ == pytest.approx(ll, abs=0.1)


def test_gamma_gamma_matches_published(published_summary) -> None:
    model = GammaGammaModel().fit(published_summary)
    assert model.n_customers_ == 946
    for name, value in CDNOW_GG.items():
        assert model.params_[name] == pytest.approx(value, rel=0.01), name
    spend = model.expected_spend(published_summary).iloc[:10].tolist()
    assert spend == pytest.approx(CDNOW_SPEND_10, abs=0.1)


def test_pareto_conditional_expectation_matches_btyd_walkthrough(published_summary) -> None:
    model = ParetoNBDModel().fit(published_summary)
    one = pd.DataFrame({"frequency": [26], "recency": [30.86], "T": [31.0]})
    assert model.expected_purchases(one, horizon=52).iloc[0] == pytest.approx(25.46, abs=0.01)


def test_summary_from_sample_transactions_reproduces_published_summary(
    sample_summary, published_summary
) -> None:
    ours = sample_summary.loc[published_summary.index.astype(str).str.zfill(4)]
    assert len(sample_summary) == 2_357 and int(ours["frequency"].sum()) == 2_457
    assert (ours["frequency"].to_numpy() == published_summary["frequency"].to_numpy()).all()
    for column in ("recency", "T", "monetary_value"):  # published to 2 decimals
        diff = (ours[column].to_numpy() - published_summary[column].to_numpy())
        assert abs(diff).max() <= 0.005 + 1e-9, column


@pytest.mark.parametrize(("model_class", "key"),
                         [(BetaGeoModel, "bgnbd"), (ParetoNBDModel, "pareto-nbd")])
def test_holdout_forecast_beside_actual(sample_summary, model_class, key) -> None:
    model = model_class().fit(sample_summary)
    predicted = model.predict(sample_summary, horizon=None)
    actual = sample_summary["frequency_holdout"]
    assert int(actual.sum()) == HOLDOUT_ACTUAL
    assert predicted.sum() == pytest.approx(HOLDOUT_PREDICTED[key], abs=0.1)
    groups = sample_summary["frequency"].clip(upper=7)
    table = pd.DataFrame({"predicted": predicted, "actual": actual}).groupby(groups).sum()
    print(f"\n{key} holdout by calibration frequency (7 = 7+):\n{table.round(1)}")
    assert table["actual"].tolist() == HOLDOUT_BY_FREQUENCY


def test_cli_on_cdnow_sample(cdnow: Path) -> None:
    done = marketloop("clv", "fit", str(cdnow / "CDNOW_sample.txt"), "--format", "cdnow",
                      "--customer-col", "customer_id", "--date-col", "date",
                      "--calibration-end", "1997-09-30", "--holdout-end", "1998-06-30", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["holdout_actual"] == HOLDOUT_ACTUAL
    assert result["holdout_predicted"] == pytest.approx(HOLDOUT_PREDICTED["bgnbd"], abs=0.1)
    for name, value in CDNOW_BGNBD.items():
        assert result["params"][name] == pytest.approx(value, rel=0.01), name
