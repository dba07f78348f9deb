"""Offline evaluation of recommenders on a time split, and the choice of a model per shop.

The split is by time: everything before ``cut`` trains, everything from ``cut`` on tests.
A customer is evaluated when they were seen in training and bought in the test period at
least one product of the training catalogue that they had not bought before (products
already bought are excluded from the lists, so they are not counted as relevant either).
Customers first seen in the test period get the cold-start fallback in production and are
not counted here: no model can rank for them, so they would measure the split, not the model.

Metrics (definitions in :mod:`marketloop.strategy.recommend._metrics`): recall@k, NDCG@k,
MAP@k, catalogue coverage, long-tail share (slots outside the top 20 % of products by
training sales) and novelty, each for all evaluated customers and by activity level: the
number of distinct purchase times (orders, baskets) in training, ``1``, ``2-4`` or ``5+``.

The choice (:func:`choose_model`) is validated, not just the highest number: the best
model must beat the popularity baseline on recall@k with a paired bootstrap interval over
customers that excludes zero; otherwise the shop is told to serve best-sellers, which on
sparse data is the honest answer.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import clone

from marketloop.exceptions import ConfigError, SchemaError, describe
from marketloop.strategy.recommend._base import Recommender, check_k
from marketloop.strategy.recommend._data import check_interactions
from marketloop.strategy.recommend._metrics import (
    HEAD_SHARE,
    coverage,
    head_items,
    long_tail_share,
    novelty,
    ranking_metrics,
    relevant_sets,
)

#: Activity levels by past purchases, as the issue defines the long tail of customers.
ACTIVITY_LEVELS = ("1", "2-4", "5+")
#: Model names the CLI and :func:`default_models` know, in the order they are reported.
MODEL_NAMES = ("popularity", "item-item", "als", "bpr", "lightgcn", "als+bpr", "bpr+popularity")
#: The models run when none are named.
DEFAULT_MODELS = MODEL_NAMES[:5]
#: The baseline every other model must beat for :func:`choose_model` to pick it.
BASELINE = "popularity"


@dataclass(frozen=True)
class TimeSplit:
    """Training and test interactions either side of ``cut`` (per customer if so split)."""

    train: pd.DataFrame
    test: pd.DataFrame
    cut: pd.Timestamp
    per_customer: bool = False


@dataclass(frozen=True)
class ModelChoice:
    """The model a shop should serve, and why.

    ``difference`` is the chosen (or best) model's recall@k minus the baseline's, with a
    95 % paired bootstrap interval ``[low, high]`` over evaluated customers.
    """

    model: str
    best: str
    baseline: str | None
    difference: float
    low: float
    high: float
    reason: str


@dataclass
class Evaluation:
    """Metric table per model and activity level, per-customer metrics, and the choice."""

    k: int
    table: pd.DataFrame
    per_customer: pd.DataFrame
    split: TimeSplit
    choice: ModelChoice
    fit_seconds: dict[str, float] = field(default_factory=dict)

    def overall(self) -> pd.DataFrame:
        """One row per model: the metrics over all evaluated customers."""
        return self.table.xs("all", level="activity")

    def to_dict(self) -> dict[str, object]:
        """``{"models": {name: {"recall@k": ..., "ndcg@k": ..., ...}}, "choice": {...}}``."""
        k = self.k
        models: dict[str, dict[str, object]] = {}
        for name, row in self.overall().iterrows():
            entry = {col: float(row[col]) for col in _metric_columns(k)}
            entry["customers"] = int(row["customers"])
            entry["fit_seconds"] = float(self.fit_seconds.get(str(name), float("nan")))
            entry["by_activity"] = {
                level: {col: float(self.table.loc[(name, level), col]) for col in
                        (f"recall@{k}", f"ndcg@{k}", "customers")}
                for level in ACTIVITY_LEVELS if (name, level) in self.table.index}
            models[str(name)] = entry
        c = self.choice
        return {"k": k, "cut": str(self.split.cut), "train_rows": len(self.split.train),
                "test_rows": len(self.split.test), "models": models,
                "choice": {"model": c.model, "best": c.best, "baseline": c.baseline,
                           "difference": c.difference, "low": c.low, "high": c.high,
                           "reason": c.reason}}


def _metric_columns(k: int) -> list[str]:
    return [f"recall@{k}", f"ndcg@{k}", f"map@{k}", "coverage", "long_tail_share", "novelty"]


def time_split(interactions: pd.DataFrame, *, cut: str | pd.Timestamp | None = None,
               test_share: float = 0.2, per_customer: bool = False) -> TimeSplit:
    """Split interactions by time: before ``cut`` trains, from ``cut`` on tests.

    Parameters
    ----------
    interactions : pandas.DataFrame
        Columns ``customer_id``, ``product_id``, ``ts``.
    cut : str or pandas.Timestamp, optional
        First moment of the test period. Default: the time before which ``1 - test_share``
        of the interactions lie.
    test_share : float, default=0.2
        Share of interactions in the test period when ``cut`` is not given; in (0, 1).
    per_customer : bool, default=False
        Split each customer's own history instead: their last ``test_share`` of distinct
        purchase times (at least one, never all) test, the rest trains ("leave the last
        out", for data such as MovieLens where customers are active in different years).
        ``cut`` is then the median test time, for the record only.

    Raises
    ------
    SchemaError
        If either side of the split is empty.
    """
    data = check_interactions(interactions, where="time_split")
    if not 0.0 < test_share < 1.0:
        raise ConfigError(describe("time_split test_share", "a share in (0, 1)",
                                   repr(test_share)))
    if per_customer:
        times = data[["customer_id", "ts"]].drop_duplicates()
        rank = times.groupby("customer_id")["ts"].rank(method="first", ascending=False)
        n = times.groupby("customer_id")["ts"].transform("size")
        n_test = np.minimum(np.maximum(np.floor(test_share * n), 1), n - 1)
        late = times[rank.to_numpy() <= n_test.to_numpy()]
        key = pd.MultiIndex.from_frame(data[["customer_id", "ts"]])
        is_test = key.isin(pd.MultiIndex.from_frame(late))
        train, test = data[~is_test], data[is_test]
        cut = test.ts.median() if len(test) else data.ts.max()
    else:
        if cut is None:
            cut = data.ts.quantile(1.0 - test_share)
        try:
            cut = pd.Timestamp(cut)
        except (ValueError, TypeError):
            raise ConfigError(describe("time_split cut", "a date such as 2011-09-01",
                                       repr(cut))) from None
        train, test = data[data.ts < cut], data[data.ts >= cut]
    for side, part in (("training (before)", train), ("test (from)", test)):
        if part.empty:
            raise SchemaError(describe(
                f"time split at {cut}", f"interactions in the {side} period",
                f"none (data from {data.ts.min()} to {data.ts.max()})",
                "Choose a cut inside the data's time span."))
    return TimeSplit(train.reset_index(drop=True), test.reset_index(drop=True),
                     pd.Timestamp(cut), per_customer)


def activity_levels(train: pd.DataFrame) -> pd.Series:
    """Each customer's activity level: distinct purchase times in ``train``, as 1, 2-4, 5+."""
    n = train.drop_duplicates(["customer_id", "ts"]).groupby("customer_id").size()
    level = np.where(n <= 1, ACTIVITY_LEVELS[0], np.where(n <= 4, ACTIVITY_LEVELS[1],
                                                          ACTIVITY_LEVELS[2]))
    return pd.Series(level, index=n.index, name="activity")


def default_models(names: Iterable[str] = DEFAULT_MODELS, *, random_state: int | None = 0,
                   n_threads: int = 1) -> dict[str, Recommender]:
    """Fresh recommenders under their CLI names, with the settings documented in docs/recommend.md.

    Raises
    ------
    ConfigError
        If a name is not one of :data:`MODEL_NAMES`.
    """
    from marketloop.strategy.recommend._blend import BlendRecommender
    from marketloop.strategy.recommend._itemitem import ItemItemRecommender
    from marketloop.strategy.recommend._lightgcn import LightGCNRecommender
    from marketloop.strategy.recommend._mf import ALSRecommender, BPRRecommender
    from marketloop.strategy.recommend._popularity import PopularityRecommender

    makers = {
        "popularity": lambda: PopularityRecommender(),
        "item-item": lambda: ItemItemRecommender(),
        "als": lambda: ALSRecommender(random_state=random_state, n_jobs=n_threads),
        "bpr": lambda: BPRRecommender(random_state=random_state, n_jobs=n_threads),
        "lightgcn": lambda: LightGCNRecommender(random_state=random_state, n_threads=n_threads),
    }
    # fusions measured in docs/recommend.md: ALS's recall with more long tail; BPR's tastes
    # on top of a popularity that dominates
    makers["als+bpr"] = lambda: BlendRecommender([makers["als"](), makers["bpr"]()], [0.7, 0.3])
    makers["bpr+popularity"] = lambda: BlendRecommender(
        [makers["bpr"](), makers["popularity"]()], [0.3, 0.7])
    names = list(names)
    unknown = [n for n in names if n not in makers]
    if unknown or not names:
        raise ConfigError(describe("models", f"names among {', '.join(MODEL_NAMES)}",
                                   ", ".join(unknown) or "no model",
                                   "Separate several with commas, e.g. popularity,als."))
    return {name: makers[name]() for name in dict.fromkeys(names)}


def evaluate(models: Mapping[str, Recommender], split: TimeSplit, *, k: int = 20,
             fit: bool = True, n_boot: int = 1000, random_state: int | None = 0) -> Evaluation:
    """Train (unless ``fit=False``) and score every model on ``split``; choose one.

    Parameters
    ----------
    models : mapping of str to Recommender
        Named models; with ``fit=True`` each is cloned and fitted on ``split.train``, with
        ``fit=False`` they must already be fitted on it (e.g. the same model under two
        re-ranking knobs, set by ``set_params(tail_weight=...)`` after one fit).
    split : TimeSplit
        From :func:`time_split`.
    k : int, default=20
        Length of the lists.
    n_boot : int, default=1000
        Bootstrap resamples of the choice's interval.

    Returns
    -------
    Evaluation
        ``table`` indexed by (``model``, ``activity``) with ``activity`` in ``all``, ``1``,
        ``2-4``, ``5+``; columns ``customers``, recall@k, ndcg@k, map@k, ``coverage``,
        ``long_tail_share``, ``novelty``.

    Raises
    ------
    SchemaError
        If no customer of the training period bought a new product in the test period.
    """
    k = check_k(k, "evaluate")
    if not models:
        raise ConfigError(describe("evaluate models", "at least one model", "none"))
    fitted, seconds = {}, {}
    for name, model in models.items():
        start = time.perf_counter()
        fitted[name] = clone(model).fit(split.train) if fit else model
        seconds[name] = round(time.perf_counter() - start, 2)
    first = next(iter(fitted.values()))
    relevant = relevant_sets(first, split.test, where="evaluate test period")
    if not relevant:
        raise SchemaError(describe(
            "evaluate test period", "customers of the training period who buy a new product",
            f"none among {len(split.test)} test interactions",
            "Move the cut earlier or use a longer history."))
    levels = activity_levels(split.train).reindex(list(relevant))
    sales = pd.Series(np.asarray(first.user_items_.sum(axis=0)).ravel(),
                      index=first.product_ids_)
    head = head_items(sales, HEAD_SHARE)
    item_novelty = pd.Series(first.novelty_, index=first.product_ids_)
    rows, per_customer = [], []
    for name, model in fitted.items():
        recs = model.recommend(list(relevant), k=k)
        scores = ranking_metrics(recs, relevant, k=k).assign(activity=levels)
        per_customer.append(scores.assign(model=name))
        for level in ("all", *ACTIVITY_LEVELS):
            who = scores.index if level == "all" else scores.index[scores.activity == level]
            if len(who) == 0:
                continue
            sub = recs.loc[recs.index.isin(who)]
            part = scores.loc[who]
            rows.append({"model": name, "activity": level, "customers": len(who),
                         f"recall@{k}": part.recall.mean(), f"ndcg@{k}": part.ndcg.mean(),
                         f"map@{k}": part.ap.mean(), "coverage": coverage(sub, sales.index),
                         "long_tail_share": long_tail_share(sub, head),
                         "novelty": novelty(sub, item_novelty)})
    table = pd.DataFrame(rows).set_index(["model", "activity"])
    detail = pd.concat(per_customer).reset_index().set_index(["model", "customer_id"])
    choice = choose_model(detail, k=k, n_boot=n_boot, random_state=random_state)
    return Evaluation(k, table, detail, split, choice, seconds)


def choose_model(per_customer: pd.DataFrame, *, k: int, baseline: str = BASELINE,
                 n_boot: int = 1000, random_state: int | None = 0) -> ModelChoice:
    """The model to serve: the best by recall@k if it beats ``baseline`` reliably.

    The best model's per-customer recall minus the baseline's, on the same customers, is
    resampled ``n_boot`` times (customers with replacement); the 2.5 and 97.5 percentiles
    are the interval. The best model is chosen when the interval lies above zero, the
    baseline otherwise (the message says so). Without the baseline among the models the
    best is chosen and the reason says it was not validated.
    """
    recall = per_customer["recall"].unstack("model")
    means = recall.mean()
    best = str(means.idxmax())
    if baseline not in recall.columns:
        return ModelChoice(best, best, None, float("nan"), float("nan"), float("nan"),
                           f"{best} has the highest recall@{k} ({means[best]:.4f}); not "
                           f"validated: the {baseline} baseline was not evaluated.")
    if len(means) == 1:
        return ModelChoice(baseline, baseline, None, float("nan"), float("nan"), float("nan"),
                           f"serve {baseline}: it was the only model evaluated (recall@{k} "
                           f"{means[baseline]:.4f}); name others in --models to compare.")
    if best == baseline:
        best = str(means.drop(baseline).idxmax())
    diff = (recall[best] - recall[baseline]).to_numpy()
    rng = np.random.default_rng(random_state)
    boot = diff[rng.integers(len(diff), size=(n_boot, len(diff)))].mean(axis=1)
    low, high = (float(v) for v in np.percentile(boot, [2.5, 97.5]))
    d = float(diff.mean())
    span = f"{d:+.4f}, 95% interval [{low:+.4f}, {high:+.4f}] over {len(diff):,} customers"
    if best != baseline and low > 0:
        return ModelChoice(best, best, baseline, d, low, high,
                           f"serve {best}: recall@{k} {means[best]:.4f} against {baseline} "
                           f"{means[baseline]:.4f} ({span}).")
    return ModelChoice(baseline, best, baseline, d, low, high,
                       f"serve {baseline}: no model beats it reliably on this shop (best "
                       f"other, {best}: {span}); personalised models need more history "
                       "per customer here.")
