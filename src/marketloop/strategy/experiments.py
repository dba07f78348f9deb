"""Randomised experiments: stable assignment, sample size, and the analysis of a finished test.

Assignment hashes the experiment's salt, its key and the customer id (BLAKE2b) into a
number in [0, 1) and cuts it by the arms' weights: the same customer always lands in the
same arm of the same experiment, different experiments are independent, and nothing needs
storing. The analysis gives per-arm means with intervals, each treated arm's difference
from control with a Welch interval, optionally CUPED-adjusted with a pre-period covariate
(Deng, Xu, Kohavi & Walker 2013), and a sample-ratio-mismatch check (a chi-square test of
the arm counts against the planned weights) that warns loudly: a mismatch means the
assignment or the logging is broken and the effects cannot be trusted.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from marketloop.data.warehouse import require_tables
from marketloop.exceptions import ConfigError, MarketloopWarning, SchemaError, describe

#: Spellings of a binary outcome (compared case-insensitively, after trimming).
TRUE_WORDS = ("1", "true", "yes", "y", "t")
FALSE_WORDS = ("0", "false", "no", "n", "f")
#: The p-value below which the arm counts are declared a sample-ratio mismatch.
SRM_P = 0.001


def _check_weights(arms: Mapping[str, float]) -> dict[str, float]:
    if len(arms) < 2:
        raise ConfigError(describe("experiment arms", "at least two arms", f"{list(arms)}"))
    if any(not str(k).strip() for k in arms):
        raise ConfigError(describe("experiment arms", "a label for every arm",
                                   f"an empty label in {list(arms)}"))
    bad = {k: v for k, v in arms.items() if not (np.isfinite(v) and v > 0)}
    if bad:
        raise ConfigError(describe("experiment arm weights", "positive numbers", str(bad)))
    total = float(sum(arms.values()))
    return {str(k): float(v) / total for k, v in arms.items()}


def hash_unit(ids: Iterable[object], key: str, salt: str = "") -> np.ndarray:
    """A uniform number in [0, 1) per id, a stable function of (salt, key, id)."""
    out = []
    for value in ids:
        digest = hashlib.blake2b(f"{salt}\x1f{key}\x1f{value}".encode(), digest_size=8).digest()
        out.append(int.from_bytes(digest, "big") / 2.0**64)
    return np.asarray(out, dtype=np.float64)


def assign(
    customer_ids: Iterable[object], key: str, arms: Mapping[str, float], *, salt: str = ""
) -> pd.Series:
    """Each customer's arm: reproducible, independent across experiments.

    Parameters
    ----------
    customer_ids : iterable
        Customer ids (any values with a stable text form).
    key : str
        The experiment's key; a different key gives an independent assignment.
    arms : mapping of str to float
        Arm label to weight (e.g. ``{"control": 1, "coupon10": 1, "holdout": 0.5}``).
    salt : str, default=""
        Per-experiment secret, so assignments cannot be guessed from ids.

    Returns
    -------
    pandas.Series
        Arm labels indexed by customer id.
    """
    weights = _check_weights(arms)
    ids = list(customer_ids)
    cuts = np.cumsum(list(weights.values()))
    cuts[-1] = 1.0
    idx = np.searchsorted(cuts, hash_unit(ids, key, salt), side="right")
    labels = np.asarray(list(weights), dtype=object)[np.minimum(idx, len(cuts) - 1)]
    return pd.Series(labels, index=pd.Index(ids, name="customer_id"), name="arm")


def sample_size(
    baseline: float,
    mde: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    sd: float | None = None,
    relative: bool = False,
) -> int:
    """Customers per arm to detect a difference of ``mde`` in a two-arm test (two-sided).

    Parameters
    ----------
    baseline : float
        Control conversion rate (binary outcome) or control mean (with ``sd``).
    mde : float
        Minimum detectable effect, absolute (or relative to ``baseline`` if ``relative``).
    alpha : float, default=0.05
        Significance level.
    power : float, default=0.8
        Probability of detecting an effect of size ``mde``.
    sd : float, optional
        Standard deviation of a continuous outcome; omitted, the outcome is binary.
    relative : bool, default=False
        Read ``mde`` as a share of ``baseline``.

    Returns
    -------
    int
        Customers per arm (rounded up).
    """
    delta = mde * baseline if relative else mde
    if not (0 < alpha < 1 and 0 < power < 1) or delta == 0:
        raise ConfigError(
            describe(
                "sample size",
                "0 < alpha < 1, 0 < power < 1 and mde != 0",
                f"{alpha}, {power}, {mde}",
            )
        )
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    if sd is None:
        p1, p2 = baseline, baseline + delta
        if not (0 < p1 < 1 and 0 < p2 < 1):
            raise ConfigError(
                describe("sample size", "rates strictly between 0 and 1", f"{p1:g} and {p2:g}")
            )
        variance = p1 * (1 - p1) + p2 * (1 - p2)
    else:
        if not (np.isfinite(sd) and sd > 0 and np.isfinite(baseline) and np.isfinite(delta)):
            raise ConfigError(
                describe("sample size", "a positive, finite --sd and finite baseline and mde",
                         f"sd {sd:g}, baseline {baseline:g}, mde {mde:g}")
            )
        variance = 2 * sd**2
    return int(np.ceil(z**2 * variance / delta**2))


@dataclass
class ArmSummary:
    n: int
    mean: float
    ci: tuple[float, float]
    sum: float


@dataclass
class Effect:
    """One treated arm against control; ``p_adjusted`` is Holm's over every such arm."""

    diff: float
    ci: tuple[float, float]
    p_value: float
    relative: float | None
    p_adjusted: float = float("nan")


def comparison_alpha(alpha: float, arms: int, correction: str = "bonferroni") -> float:
    """The significance level of each treatment-vs-control comparison in a test of ``arms``.

    With ``arms - 1`` treatments each compared with control, ``bonferroni`` keeps the chance
    of any false positive at most ``alpha``: ``alpha / (arms - 1)``. ``none`` gives ``alpha``
    (each comparison alone at ``alpha``; with many arms some false positive gets likely).
    """
    if correction not in ("bonferroni", "none"):
        raise ConfigError(describe("correction", "bonferroni or none", repr(correction)))
    if arms < 2:
        raise ConfigError(describe("arms", "at least 2 (a control and a treatment)", str(arms)))
    return alpha / (arms - 1) if correction == "bonferroni" else alpha


def holm(p_values: Mapping[str, float]) -> dict[str, float]:
    """Holm's step-down adjusted p-values (family-wise error at most the level used).

    Examples
    --------
    >>> {k: round(v, 4) for k, v in holm({"a": 0.01, "b": 0.04, "c": 0.03}).items()}
    {'a': 0.03, 'b': 0.06, 'c': 0.06}
    """
    order = sorted(p_values, key=lambda k: p_values[k])
    m, running, out = len(order), 0.0, {}
    for i, key in enumerate(order):
        running = max(running, min(1.0, (m - i) * p_values[key]))
        out[key] = running
    return {k: out[k] for k in p_values}


@dataclass
class ExperimentResult:
    """Per-arm summaries, effects against control and the sample-ratio check."""

    control: str
    arms: dict[str, ArmSummary]
    effects: dict[str, Effect]
    srm_p_value: float | None
    srm: bool
    cuped_theta: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "control": self.control,
            "arms": {k: {"n": a.n, "mean": a.mean, "ci": list(a.ci)} for k, a in self.arms.items()},
            "effects": {
                k: {"diff": e.diff, "ci": list(e.ci), "p_value": e.p_value,
                    "p_adjusted": e.p_adjusted, "relative": e.relative}
                for k, e in self.effects.items()
            },
            "srm_p_value": self.srm_p_value,
            "srm": self.srm,
            "cuped_theta": self.cuped_theta,
            "notes": self.notes,
        }


def parse_outcome(values: pd.Series, where: str) -> np.ndarray:
    """Numbers as they are; 0/1, true/false, yes/no in any case as 0/1; else a clear error."""
    text = values.astype("string").str.strip()
    number = pd.to_numeric(text, errors="coerce")
    lower = text.str.lower()
    words = lower.isin(TRUE_WORDS + FALSE_WORDS) & number.isna()
    number = number.where(~words, lower.isin(TRUE_WORDS).astype(float))
    bad = np.flatnonzero(number.isna().to_numpy() | ~np.isfinite(number.fillna(0).to_numpy()))
    if bad.size:
        rows = ", ".join(str(i + 1) for i in bad[:5])
        raise SchemaError(
            describe(
                where,
                "a number, or 0/1, true/false, yes/no, on every row",
                f"{values.iloc[bad[0]]!r} on data row{'s' if bad.size > 1 else ''} {rows}"
                + (f" (and {bad.size - 5} more)" if bad.size > 5 else ""),
            )
        )
    return number.to_numpy(dtype=float)


def analyse(
    arm: pd.Series | np.ndarray,
    outcome: pd.Series | np.ndarray,
    control: str,
    *,
    pre: pd.Series | np.ndarray | None = None,
    weights: Mapping[str, float] | None = None,
    alpha: float = 0.05,
) -> ExperimentResult:
    """Analyse a finished randomised test.

    Parameters
    ----------
    arm : array-like of str
        Each unit's arm label (compared after trimming white space).
    outcome : array-like of float
        Each unit's outcome (0/1 for conversion, money for revenue or profit).
    control : str
        The control arm's label.
    pre : array-like of float, optional
        A pre-period covariate (e.g. spend before the test) for CUPED variance reduction.
    weights : mapping, optional
        Planned arm weights for the sample-ratio check; default equal weights.
    alpha : float, default=0.05
        One minus the intervals' coverage.

    Returns
    -------
    ExperimentResult
        Each effect's ``p_value`` is its own comparison's; ``p_adjusted`` is Holm's over
        all treated arms (equal to ``p_value`` with one). The intervals are per comparison.
    """
    labels = pd.Series(np.asarray(arm, dtype=object)).astype("string").str.strip()
    labels = labels.mask(labels.eq(""))  # a blank label is no label
    y = np.asarray(outcome, dtype=float)
    control = str(control).strip()
    present = sorted(labels.dropna().unique().tolist())
    if labels.isna().any():
        raise SchemaError(describe("arm column", "an arm label on every row", "empty labels"))
    if len(present) < 2:
        raise SchemaError(describe("experiment", "at least two arms", f"only {present}"))
    if control not in present:
        raise SchemaError(describe("--control", f"one of the arms {present}", repr(control)))
    theta = None
    if pre is not None:
        x = np.asarray(pre, dtype=float)
        theta = float(np.cov(x, y)[0, 1] / np.var(x, ddof=1)) if np.var(x) > 0 else 0.0
        y = y - theta * (x - x.mean())
    z = stats.norm.ppf(1 - alpha / 2)
    arms: dict[str, ArmSummary] = {}
    moments: dict[str, tuple[int, float, float]] = {}
    raw = np.asarray(outcome, dtype=float)
    for label in present:
        mask = (labels == label).to_numpy()
        n = int(mask.sum())
        mean, se = float(raw[mask].mean()), _se(raw[mask])
        arms[label] = ArmSummary(n, mean, (mean - z * se, mean + z * se), float(raw[mask].sum()))
        moments[label] = (n, float(y[mask].mean()), _se(y[mask]) ** 2 * n)
    effects = {}
    n0, m0, v0 = moments[control]
    for label in present:
        if label == control:
            continue
        n1, m1, v1 = moments[label]
        diff, se = m1 - m0, float(np.sqrt(v1 / n1 + v0 / n0))
        p = float(2 * stats.norm.sf(abs(diff) / se)) if se > 0 else float(diff == 0)
        effects[label] = Effect(
            diff, (diff - z * se, diff + z * se), p, diff / m0 if m0 != 0 else None
        )
    for label, p in holm({k: e.p_value for k, e in effects.items()}).items():
        effects[label].p_adjusted = p
    srm_p = _srm(arms, weights)
    result = ExperimentResult(
        control, arms, effects, srm_p, srm_p is not None and srm_p < SRM_P, theta
    )
    if result.srm:
        message = (
            f"sample ratio mismatch: arm counts { ({k: a.n for k, a in arms.items()}) } are "
            f"unlikely under the planned split (chi-square p = {srm_p:.2g}); the assignment or "
            "the logging is broken, and the effects below cannot be trusted"
        )
        result.notes.append(message)
        warnings.warn(message, MarketloopWarning, stacklevel=2)
    return result


def _se(values: np.ndarray) -> float:
    return float(np.sqrt(values.var(ddof=1) / len(values))) if len(values) > 1 else 0.0


def _srm(arms: Mapping[str, ArmSummary], weights: Mapping[str, float] | None) -> float | None:
    planned = {k: 1.0 / len(arms) for k in arms} if weights is None else _check_weights(weights)
    missing = set(arms) - set(planned)
    if missing:
        raise SchemaError(
            describe(
                "arm weights",
                f"a weight for every arm {sorted(arms)}",
                f"none for {sorted(missing)}",
            )
        )
    empty = set(planned) - set(arms)
    if empty:  # a planned arm nobody was assigned to is the worst sample-ratio mismatch
        raise SchemaError(describe("arm weights", f"only the arms in the data {sorted(arms)}",
                                   f"planned arms with no units: {sorted(empty)}",
                                   "Check the assignment, or drop those arms' weights."))
    observed = np.array([arms[k].n for k in arms], dtype=float)
    expected = np.array([planned[k] for k in arms]) * observed.sum()
    expected *= observed.sum() / expected.sum()
    return float(stats.chisquare(observed, expected).pvalue)


def experiment_frame(con: object, experiment: str, outcome_kind: str) -> pd.DataFrame:
    """One row per customer of ``experiment`` from the warehouse: ``arm`` and ``outcome``.

    The arm is the action of the customer's decisions under policy ``experiment``; the
    outcome is the sum of the values of ``outcome_kind`` outcomes that followed them (0 when
    none did).

    Raises
    ------
    SchemaError
        If the experiment has no decisions, a customer was given two arms, or outcomes
        name decisions that were never made (outcomes for customers never assigned).
    """
    require_tables(con, ["decisions", "outcomes"],  # type: ignore[arg-type]
                   hint="Log the experiment's decisions first (marketloop serve).")
    decisions = con.table("decisions")
    outcomes = con.table("outcomes")
    ours = decisions.filter(decisions.policy == experiment)
    stray = outcomes.anti_join(decisions, "decision_id")
    n_stray = int(stray.count().to_pyarrow().as_py())
    if n_stray:
        first = stray.select("decision_id").limit(3).to_pyarrow().column(0).to_pylist()
        raise SchemaError(
            describe(
                "outcomes",
                "outcomes only for decisions that were made (assigned customers)",
                f"{n_stray} outcomes of unknown decisions, e.g. {', '.join(map(str, first))}",
            )
        )
    value = outcomes.filter(outcomes.kind == outcome_kind)
    per_decision = value.group_by("decision_id").aggregate(v=value.value.sum())
    joined = ours.left_join(per_decision, "decision_id")
    per_customer = joined.group_by(joined.customer_id).aggregate(
        arm=joined.action.min(),
        n_arms=joined.action.nunique(),
        outcome=joined.v.fill_null(0).sum(),
    )
    frame = per_customer.to_pandas()
    if frame.empty:
        raise SchemaError(describe("decisions", f"decisions under policy {experiment!r}", "none"))
    twice = frame[frame.n_arms > 1]
    if len(twice):
        raise SchemaError(
            describe(
                f"experiment {experiment!r}",
                "one arm per customer",
                f"{len(twice)} customers in several arms, e.g. {twice.customer_id.iloc[0]}",
            )
        )
    return frame[["customer_id", "arm", "outcome"]]
