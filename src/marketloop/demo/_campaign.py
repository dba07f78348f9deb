"""The demo's campaign stage: an A/B test, an uplift model, and a budgeted plan judged by truth.

A randomised test on half the simulated customers (control and four e-mail offers), its
analysis per arm, an uplift model's Qini curves on the half of the test it did not learn
from, and the plans for the other customers at one budget: uplift targeting, the RFM rule,
random targeting and the oracle that knows every customer's true effects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from marketloop.simulate import Shop
from marketloop.strategy.campaign_eval import (
    PlanComparison,
    evaluate_on_simulator,
    observable_features,
    simulator_offers,
    true_scores,
)
from marketloop.strategy.experiments import analyse
from marketloop.strategy.uplift import TLearner, qini_coefficient, qini_curve


@dataclass
class CampaignFigures:
    """What the campaign stage reports.

    Attributes
    ----------
    comparison : PlanComparison
        The four plans valued by the truth (shares of the oracle, intervals).
    experiment : pandas.DataFrame
        Per arm of the test: ``customers``, ``conversion`` and, for offers, ``difference``
        from control with its 95% interval (``low``, ``high``).
    qini : pandas.DataFrame
        Qini curves on the held-out half of the test: ``offer``, ``ranking`` (the model, or
        the true effect), ``targeted`` (share of rows), ``qini`` (incremental conversions).
    qini_coefficients : pandas.DataFrame
        Per offer: the model's and the true effect's Qini coefficient on those rows.
    """

    comparison: PlanComparison
    experiment: pd.DataFrame
    qini: pd.DataFrame
    qini_coefficients: pd.DataFrame

    @property
    def uplift_vs_rfm(self) -> tuple[float, float, float]:
        """Share of the oracle's profit: uplift plan minus RFM rule, with its interval."""
        return self.comparison.difference("uplift", "rfm")


def campaign_stage(shop: Shop, *, random_state: int = 0) -> CampaignFigures:
    """Run the test, fit the model, make and judge the plans (see the module docstring)."""
    comparison = evaluate_on_simulator(shop, n_bootstrap=400, random_state=random_state)
    log = comparison.log
    assert log is not None  # evaluate_on_simulator always runs a test
    result = analyse(log["arm"], log["converted"].to_numpy(dtype=np.float64), "control")
    rows = []
    for label, arm in result.arms.items():
        effect = result.effects.get(label)
        rows.append({"arm": label, "customers": arm.n, "conversion": arm.mean,
                     "difference": np.nan if effect is None else effect.diff,
                     "low": np.nan if effect is None else effect.ci[0],
                     "high": np.nan if effect is None else effect.ci[1]})
    experiment = pd.DataFrame(rows)
    qini, coefficients = _held_out_qini(shop, log, random_state)
    return CampaignFigures(comparison, experiment, qini, coefficients)


def _held_out_qini(shop: Shop, log: pd.DataFrame, seed: int
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A T-learner fit on one half of the test, ranked on the other half, beside the truth."""
    offers = simulator_offers(shop.truth, channels=("email",))
    features = observable_features(shop)
    learn = np.random.default_rng(seed).random(len(log)) < 0.5
    fit_log, held = log[learn], log[~learn]
    model = TLearner(random_state=seed).fit(features.loc[fit_log.index], fit_log["arm"],
                                            fit_log["converted"])
    estimated = model.predict(features.loc[held.index])
    truth = true_scores(shop.truth, offers, held.index)
    curves, coefficients = [], []
    for offer in offers.names:
        rows = held["arm"].isin(["control", offer]).to_numpy()
        y = held["converted"].to_numpy()[rows]
        treated = (held["arm"].to_numpy()[rows] == offer).astype(int)
        rankings = {"uplift model": estimated[offer].to_numpy()[rows],
                    "true effect": truth[f"uplift_{offer}"].to_numpy()[rows]}
        coef = {"offer": offer}
        for name, score in rankings.items():
            x, q = qini_curve(y, score, treated)
            step = max(1, len(x) // 200)
            curves.append(pd.DataFrame({"offer": offer, "ranking": name,
                                        "targeted": x[::step] / rows.sum(),
                                        "qini": q[::step]}))
            coef[name] = qini_coefficient(y, score, treated)
        coefficients.append(coef)
    return pd.concat(curves, ignore_index=True), pd.DataFrame(coefficients)
