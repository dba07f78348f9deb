"""Experiments: assignment, sample size, analysis, CUPED, the ratio check, and the CLI."""

from __future__ import annotations

import datetime as dt
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _cli import marketloop
from marketloop.exceptions import ConfigError, MarketloopWarning, SchemaError
from marketloop.strategy.experiments import (
    analyse,
    assign,
    comparison_alpha,
    holm,
    parse_outcome,
    sample_size,
)


def test_assignment_is_stable_weighted_and_independent_across_experiments() -> None:
    ids = [f"c{i:06d}" for i in range(60_000)]
    arms = {"control": 2, "coupon": 1, "holdout": 1}
    first = assign(ids, "spring-sale", arms, salt="s1")
    assert first.equals(assign(ids, "spring-sale", arms, salt="s1"))  # reproducible
    shares = first.value_counts(normalize=True)
    for label, w in {"control": 0.5, "coupon": 0.25, "holdout": 0.25}.items():
        assert abs(shares[label] - w) < 4 * np.sqrt(w * (1 - w) / len(ids))
    other = assign(ids, "summer-sale", arms, salt="s1")
    table = pd.crosstab(first, other)
    # independence: the chi-square test of the cross-table does not reject
    from scipy.stats import chi2_contingency

    assert chi2_contingency(table).pvalue > 0.001
    assert not first.equals(assign(ids, "spring-sale", arms, salt="s2"))


def test_sample_size_gives_the_planned_power() -> None:
    n = sample_size(0.05, 0.01)
    assert 8_000 < n < 8_300  # textbook unpooled formula for 5% -> 6%
    rng = np.random.default_rng(0)
    sims = 4000
    control = rng.binomial(n, 0.05, sims) / n
    treated = rng.binomial(n, 0.06, sims) / n
    se = np.sqrt(control * (1 - control) / n + treated * (1 - treated) / n)
    power = np.mean(np.abs(treated - control) / se > 1.959964)
    assert power == pytest.approx(0.8, abs=0.03)
    assert sample_size(100.0, 0.1, relative=True, sd=50.0) == sample_size(100.0, 10.0, sd=50.0)
    with pytest.raises(ConfigError):
        sample_size(0.05, 0.0)


def _test_data(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    pre = rng.gamma(2.0, 50.0, n)
    arm = rng.choice(["control", "a", "b"], n)
    lift = np.select([arm == "a", arm == "b"], [5.0, 0.0], 0.0)
    y = 0.8 * pre + lift + rng.normal(0, 20, n)
    return pd.DataFrame({"arm": arm, "y": y, "pre": pre})


def test_intervals_cover_the_true_effect_and_cuped_narrows_them() -> None:
    covered = cuped_covered = 0
    widths, cuped_widths = [], []
    for seed in range(30):
        data = _test_data(3000, seed)
        plain = analyse(data.arm, data.y, "control")
        cuped = analyse(data.arm, data.y, "control", pre=data.pre)
        covered += plain.effects["a"].ci[0] <= 5.0 <= plain.effects["a"].ci[1]
        widths.append(np.diff(plain.effects["a"].ci)[0])
        cuped_widths.append(np.diff(cuped.effects["a"].ci)[0])
        cuped_covered += cuped.effects["a"].ci[0] <= 5.0 <= cuped.effects["a"].ci[1]
    assert covered >= 26 and cuped_covered >= 26  # 95% intervals: expect 28.5 of 30
    assert np.mean(cuped_widths) < 0.5 * np.mean(widths)  # corr(pre, y) ~ 0.9


def test_sample_ratio_mismatch_warns_loudly() -> None:
    arm = np.array(["control"] * 5200 + ["treated"] * 4800)
    y = np.zeros(len(arm))
    with pytest.warns(MarketloopWarning, match="sample ratio mismatch"):
        result = analyse(arm, y, "control")
    assert result.srm and result.srm_p_value < 0.001
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not analyse(arm, y, "control", weights={"control": 52, "treated": 48}).srm


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.sampled_from(["1", "0", " yes", "No ", "TRUE", "false", "y", "N", "2.5"]),
        min_size=1,
        max_size=30,
    )
)
def test_binary_outcomes_in_any_spelling(words: list[str]) -> None:
    parsed = parse_outcome(pd.Series(words), "col")
    expected = [
        2.5 if w == "2.5" else float(w.strip().lower() in ("1", "yes", "true", "y")) for w in words
    ]
    assert parsed.tolist() == expected


def test_unparseable_outcomes_name_the_rows() -> None:
    with pytest.raises(SchemaError, match="data rows 2, 4"):
        parse_outcome(pd.Series(["1", "maybe", "0", ""]), "file column visit")


@pytest.fixture
def test_file(tmp_path: Path) -> Path:
    data = _test_data(2000, 1)
    data["arm"] = data.arm.map({"control": " control ", "a": "a", "b": "b "})
    data["converted"] = np.where(data.y > 90, "Yes", "no")
    path = tmp_path / "test.csv.gz"
    data.to_csv(path, index=False, compression="gzip")
    return path


def test_cli_analyse_file_json(test_file: Path) -> None:
    out = marketloop(
        "experiment",
        "analyse",
        str(test_file),
        "--arm-col",
        "arm",
        "--outcome-col",
        "converted",
        "--control",
        "control",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    frame = pd.read_csv(test_file)
    frame["arm"] = frame.arm.str.strip()
    rate = (frame.converted == "Yes").groupby(frame.arm).mean()
    assert set(result["arms"]) == {"control", "a", "b"}
    for label, arm in result["arms"].items():
        assert arm["n"] == int((frame.arm == label).sum())
        assert arm["mean"] == pytest.approx(rate[label], abs=1e-12)
    assert set(result["effects"]) == {"a", "b"}
    diff = result["effects"]["a"]
    assert diff["diff"] == pytest.approx(rate["a"] - rate["control"], abs=1e-12)
    assert diff["ci"][0] < diff["diff"] < diff["ci"][1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--control", "nobody"], "one of the arms"),
        (["--outcome-col", "nope"], "a column 'nope'"),
        (["--outcome-col", "arm"], "a number, or 0/1"),
    ],
)
def test_cli_bad_analysis_exits_2(test_file: Path, args: list[str], message: str) -> None:
    base = [
        "experiment",
        "analyse",
        str(test_file),
        "--arm-col",
        "arm",
        "--outcome-col",
        "y",
        "--control",
        "control",
    ]
    out = marketloop(*base, *args)
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_cli_one_arm_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "one.csv"
    pd.DataFrame({"arm": ["control"] * 5, "y": [1, 0, 1, 0, 1]}).to_csv(path, index=False)
    out = marketloop("experiment", "analyse", str(path), "--outcome-col", "y")
    assert out.returncode == 2 and "at least two arms" in out.stderr, out.stderr


def test_cli_design() -> None:
    out = marketloop("experiment", "design", "--baseline", "0.05", "--mde", "0.01", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["per_arm"] == sample_size(0.05, 0.01)
    bad = marketloop("experiment", "design", "--baseline", "0.05", "--mde", "0.01", "--arms", "1")
    assert bad.returncode == 2
    for sd in ("-1", "0", "nan"):
        odd = marketloop("experiment", "design", "--baseline", "10", "--mde", "1", "--sd", sd)
        assert odd.returncode == 2 and "a positive, finite --sd" in odd.stderr, (sd, odd.stdout)


def test_cli_design_with_several_treatments_corrects_for_the_comparisons() -> None:
    def design(*extra: str) -> dict:
        out = marketloop("experiment", "design", "--baseline", "0.05", "--mde", "0.01",
                         "--json", *extra)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    two, four, loose = design(), design("--arms", "4"), design("--arms", "4", "--correction",
                                                                 "none")
    assert two["alpha_per_comparison"] == 0.05 and two["comparisons"] == 1
    assert four["alpha_per_comparison"] == pytest.approx(0.05 / 3)
    assert four["per_arm"] == sample_size(0.05, 0.01, alpha=0.05 / 3) > two["per_arm"]
    assert four["total"] == 4 * four["per_arm"] and four["correction"] == "bonferroni"
    assert loose["per_arm"] == two["per_arm"] and loose["alpha_per_comparison"] == 0.05
    text = marketloop("experiment", "design", "--baseline", "0.05", "--mde", "0.01",
                      "--arms", "4")
    assert "each of 3 treatments against control at alpha 0.0167 (Bonferroni)" in text.stdout
    bad = marketloop("experiment", "design", "--baseline", "0.05", "--mde", "0.01",
                     "--correction", "sidak")
    assert bad.returncode == 2 and "--correction: expected bonferroni or none" in bad.stderr


@settings(max_examples=200)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=8))
def test_holm_is_the_step_down_procedure(ps: list[float]) -> None:
    """Rejecting where the adjusted p < alpha is Holm's procedure: sort, compare the i-th
    smallest with alpha / (m - i), stop at the first that fails."""
    p_values = {f"a{i}": p for i, p in enumerate(ps)}
    adjusted = holm(p_values)
    assert all(p <= adjusted[k] <= 1.0 for k, p in p_values.items())
    for alpha in (0.01, 0.05, 0.2):
        rejected, m = set(), len(ps)
        for i, key in enumerate(sorted(p_values, key=lambda k: p_values[k])):
            if p_values[key] * (m - i) >= alpha:
                break
            rejected.add(key)
        assert {k for k, v in adjusted.items() if v < alpha} == rejected


def test_holm_keeps_the_family_wise_error_of_many_null_arms_at_alpha() -> None:
    """Five treatments with no effect at all: uncorrected, about 1 - 0.95^5 = 23% of tests
    find some 'effect'; with Holm's p-values at most 5% (a simulation, fixed seed)."""
    rng = np.random.default_rng(11)
    labels = np.repeat(["control", "a", "b", "c", "d", "e"], 400)
    raw_any = adjusted_any = 0
    runs = 600
    for _ in range(runs):
        result = analyse(labels, rng.binomial(1, 0.3, labels.size), "control")
        raw_any += min(e.p_value for e in result.effects.values()) < 0.05
        adjusted_any += min(e.p_adjusted for e in result.effects.values()) < 0.05
    assert raw_any / runs > 0.15  # the problem the correction solves
    assert adjusted_any / runs < 0.05 + 2 * np.sqrt(0.05 * 0.95 / runs)
    assert comparison_alpha(0.05, 6) == pytest.approx(0.01)


def test_a_blank_arm_label_is_no_arm() -> None:
    with pytest.raises(SchemaError, match="an arm label on every row"):
        analyse(["control", " ", "b", "b"], [0.0, 1.0, 1.0, 0.0], "control")
    with pytest.raises(ConfigError, match="a label for every arm"):
        assign(["c1", "c2"], key="e1", arms={"control": 1.0, "": 1.0})


def test_analysis_from_the_warehouse_decisions_and_outcomes(tmp_path: Path) -> None:
    from marketloop.data import warehouse as wh
    from marketloop.data.warehouse import connect

    url = f"duckdb:///{tmp_path}/w.duckdb"
    con = connect(url)
    wh.ensure_warehouse(con)
    ts = dt.datetime(2026, 3, 1)
    rng = np.random.default_rng(5)
    arms = assign([f"c{i}" for i in range(400)], "exp1", {"control": 1, "coupon": 1})
    decisions = pd.DataFrame(
        {
            "decision_id": [f"d{i}" for i in range(400)],
            "customer_id": arms.index,
            "ts": ts,
            "policy": "exp1",
            "action": arms.to_numpy(),
            "propensity": 0.5,
            "reasons": None,
        }
    )
    converted = rng.random(400) < np.where(arms.to_numpy() == "coupon", 0.3, 0.1)
    outcomes = pd.DataFrame(
        {
            "decision_id": decisions.decision_id[converted],
            "kind": "conversion",
            "ts": ts,
            "value": 1.0,
        }
    )
    con.insert("decisions", decisions)
    con.insert("outcomes", outcomes)
    con.disconnect()
    out = marketloop(
        "experiment",
        "analyse",
        "--experiment",
        "exp1",
        "--outcome",
        "conversion",
        "--control",
        "control",
        "--warehouse",
        url,
        "--json",
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    for label in ("control", "coupon"):
        mask = arms.to_numpy() == label
        assert result["arms"][label]["n"] == int(mask.sum())
        assert result["arms"][label]["mean"] == pytest.approx(converted[mask].mean())
    con = connect(url)
    con.insert(
        "outcomes",
        pd.DataFrame({"decision_id": ["ghost"], "kind": "conversion", "ts": ts, "value": 1.0}),
    )
    con.disconnect()
    out = marketloop(
        "experiment", "analyse", "--experiment", "exp1", "--control", "control", "--warehouse", url
    )
    assert out.returncode == 2 and "unknown decisions" in out.stderr, out.stderr


def test_a_planned_arm_with_no_units_and_two_sources_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "exp.csv"
    pd.DataFrame({"arm": ["control", "a"] * 50, "y": [0, 1] * 50}).to_csv(path, index=False)
    out = marketloop("experiment", "analyse", str(path), "--outcome-col", "y",
                     "--weights", "control=1,a=1,zz=1")
    assert out.returncode == 2 and "planned arms with no units: ['zz']" in out.stderr, out.stderr
    out = marketloop("experiment", "analyse", str(path), "--outcome-col", "y",
                     "--experiment", "e1")
    assert out.returncode == 2 and "a FILE, or --experiment KEY" in out.stderr, out.stderr
