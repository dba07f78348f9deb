"""Budgeted offer allocation: the budget holds, the plan is near the LP bound, reasons explain.

The multiple-choice knapsack is checked against brute force on small instances (the greedy
never beats the true optimum, which never beats the LP bound), the expected-profit formula
against the simulator's own profit of each action, and the CLI on real files.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _cli import marketloop
from marketloop.exceptions import ConfigError, IngestError, SchemaError
from marketloop.strategy.allocate import (
    PLAN_COLUMNS,
    allocate,
    load_offers,
    offer_values,
    parse_offers,
    plan_campaign,
    scores_from_model,
)
from marketloop.strategy.campaign_eval import simulator_offers, true_scores

OFFERS_TOML = """\
margin = 0.4
order_value = 60.0
currency = "EUR"

[[offers]]
name = "mail"
type = "message"
contact_cost = 0.05

[[offers]]
name = "pct10"
type = "pct"
depth = 0.10
contact_cost = 0.05

[[offers]]
name = "fixed5"
type = "fixed"
depth = 5.0
contact_cost = 0.05
"""


def _frames(profit: np.ndarray, cost: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    index = pd.Index([f"c{i}" for i in range(profit.shape[0])], name="customer_id")
    cols = [f"o{j}" for j in range(profit.shape[1])]
    return pd.DataFrame(profit, index=index, columns=cols), pd.DataFrame(cost, index=index,
                                                                          columns=cols)


def _brute_force(profit: np.ndarray, cost: np.ndarray, budget: float) -> float:
    """Best total profit over every assignment (an option or none per customer)."""
    none = np.array([])
    return _brute_force_limited(profit, cost, budget, np.full(len(profit), -1), none, none)


instances = st.integers(1, 5).flatmap(lambda n: st.integers(1, 3).flatmap(lambda m: st.tuples(
    st.lists(st.one_of(st.floats(-3, 10), st.just(np.nan)), min_size=n * m, max_size=n * m),
    st.lists(st.floats(0.0, 5.0), min_size=n * m, max_size=n * m),
    st.floats(0.1, 12.0), st.just((n, m)))))


@settings(max_examples=150)
@given(instances)
def test_budget_holds_and_the_plan_sits_between_optimum_and_lp_bound(case) -> None:
    p, c, budget, shape = case
    profit, cost = np.array(p).reshape(shape), np.array(c).reshape(shape)
    pf, cf = _frames(profit, cost)
    result = allocate(pf, cf, budget=budget)
    plan = result.plan
    assert result.spend <= budget + 1e-9
    assert plan["expected_cost"].sum() == pytest.approx(result.spend)
    assert plan["expected_incremental_profit"].sum() == pytest.approx(result.profit)
    sent = plan["offer"].notna()
    assert (plan.loc[sent, "expected_incremental_profit"] > 0).all()  # never a loss-maker
    optimum = _brute_force(profit, cost, budget)
    assert result.profit <= optimum + 1e-9
    assert optimum <= result.upper_bound + 1e-9
    assert plan["reason"].str.len().gt(0).all()


def _brute_force_limited(profit: np.ndarray, cost: np.ndarray, budget: float,
                         group: np.ndarray, max_count: np.ndarray,
                         max_spend: np.ndarray) -> float:
    """Best total profit within the budget and every group's count and spend limits."""
    n, m = profit.shape
    best = 0.0
    for pick in itertools.product(range(-1, m), repeat=n):
        rows = [(i, j) for i, j in enumerate(pick) if j >= 0]
        if any(not np.isfinite(profit[i, j]) for i, j in rows):
            continue
        if sum(cost[i, j] for i, j in rows) > budget + 1e-9:
            continue
        within = True
        for g in range(len(max_count)):
            mine = [(i, j) for i, j in rows if group[i] == g]
            within &= len(mine) <= max_count[g]
            within &= sum(cost[i, j] for i, j in mine) <= max_spend[g]  # as the plan does
        if within:
            best = max(best, sum(profit[i, j] for i, j in rows))
    return best


limited = instances.flatmap(lambda case: st.tuples(
    st.just(case),
    st.lists(st.integers(-1, 1), min_size=case[3][0], max_size=case[3][0]),
    st.lists(st.one_of(st.just(np.inf), st.integers(0, 3).map(float)), min_size=2, max_size=2),
    st.lists(st.one_of(st.just(np.inf), st.floats(0.0, 6.0)), min_size=2, max_size=2)))


@settings(max_examples=150)
@given(limited)
def test_with_segment_limits_the_bound_holds_the_optimum_and_is_tighter(case) -> None:
    from marketloop.strategy import _mckp

    (p, c, budget, shape), group, max_count, max_spend = case
    profit, cost = np.array(p).reshape(shape), np.array(c).reshape(shape)
    group, max_count, max_spend = np.array(group), np.array(max_count), np.array(max_spend)
    sol = _mckp.solve(profit, cost, budget, group=group, max_count=max_count,
                      max_spend=max_spend)
    optimum = _brute_force_limited(profit, cost, budget, group, max_count, max_spend)
    alone = _mckp.solve(profit, cost, budget).upper_bound
    assert sol.profit <= optimum + 1e-9
    assert optimum <= sol.upper_bound + 1e-9
    assert sol.upper_bound <= alone + 1e-9


def test_a_binding_segment_limit_tightens_the_bound_to_the_plan() -> None:
    """Four customers worth 10 each, a budget for all of them, a segment of three that may
    have one offer: the best plan earns 20, and so does the bound (the LP alone says 40)."""
    from marketloop.strategy import _mckp

    profit, cost = np.full((4, 1), 10.0), np.ones((4, 1))
    sol = _mckp.solve(profit, cost, 10.0, group=np.array([0, 0, 0, -1]),
                      max_count=np.array([1.0]), max_spend=np.array([np.inf]))
    assert sol.profit == 20.0 and sol.upper_bound == 20.0
    assert _mckp.solve(profit, cost, 10.0).upper_bound == 40.0


def test_many_small_customers_are_planned_within_a_tiny_gap_of_the_bound() -> None:
    rng = np.random.default_rng(0)
    profit = rng.normal(1.0, 2.0, (5_000, 4))
    cost = rng.uniform(0.1, 3.0, (5_000, 4))
    pf, cf = _frames(profit, cost)
    result = allocate(pf, cf, budget=1_000.0)
    assert result.spend <= 1_000.0
    assert result.gap is not None and result.gap < 0.002


def test_segment_limits_bound_count_and_spend() -> None:
    book = parse_offers(OFFERS_TOML + """
[[limits]]
segment = "vip"
max_count = 3

[[limits]]
segment = "new"
max_spend = 2.0
""")
    rng = np.random.default_rng(1)
    n = 60
    scores = pd.DataFrame({
        "customer_id": [f"c{i}" for i in range(n)],
        "segment": np.repeat(["vip", "new", "other"], n // 3),
        "uplift_mail": rng.uniform(0.0, 0.1, n), "uplift_pct10": rng.uniform(0.0, 0.2, n),
        "uplift_fixed5": rng.uniform(0.0, 0.2, n), "p_control": rng.uniform(0.0, 0.2, n)})
    result = plan_campaign(scores, book, budget=1e6)
    plan = result.plan.join(scores.set_index("customer_id")["segment"])
    sent = plan[plan["offer"].notna()]
    assert (sent["segment"] == "vip").sum() == 3
    assert sent.loc[sent["segment"] == "new", "expected_cost"].sum() <= 2.0 + 1e-9
    assert (sent["segment"] == "other").sum() > 3
    limited = plan[(plan["segment"] == "vip") & plan["offer"].isna()]
    assert limited["reason"].str.contains("segment limit reached \\(vip: max_count 3\\)").any()


def test_offer_values_follow_the_formula() -> None:
    book = parse_offers(OFFERS_TOML)
    scores = pd.DataFrame({"customer_id": ["a"], "uplift_mail": [0.02], "uplift_pct10": [0.06],
                           "uplift_fixed5": [0.05], "p_control": [0.10], "order_value": [80.0]})
    v = offer_values(scores, book)
    m, value = 0.4, 80.0
    # pct10: margin on the extra orders, 10 % of the value paid on every treated order
    want = m * value * 0.06 - (0.10 + 0.06) * 0.10 * value - 0.05
    assert v.profit.loc["a", "pct10"] == pytest.approx(want)
    assert v.cost.loc["a", "pct10"] == pytest.approx(0.05 + 0.16 * 8.0)
    assert v.profit.loc["a", "fixed5"] == pytest.approx(m * value * 0.05 - 0.15 * 5.0 - 0.05)
    assert v.profit.loc["a", "mail"] == pytest.approx(m * value * 0.02 - 0.05)


def test_simulator_offers_price_every_action_as_the_simulator_does() -> None:
    """offer_values on the true scores equals the simulator's own true profit uplift."""
    from marketloop.simulate import Market

    truth = Market(n_customers=1_500, n_days=200, random_state=3).simulate(("customers",)).truth
    book = simulator_offers(truth)  # every channel
    ids = pd.Index(truth.customers.index.astype(str)[:400], name="customer_id")
    values = offer_values(true_scores(truth, book, ids), book)
    effects = truth.treatment_effects
    effects = effects[effects["customer_id"].isin(ids)]
    want = effects.pivot(index="customer_id", columns="action", values="profit_uplift")
    want = want.loc[ids, book.names].astype(np.float64)
    np.testing.assert_allclose(values.profit.to_numpy(), want.to_numpy(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(("text", "message"), [
    (OFFERS_TOML.replace('type = "pct"', 'type = "pct"\ncolour = "red"'),
     "offers[2] (pct10) field 'colour': expected only the fields"),
    (OFFERS_TOML.replace("contact_cost = 0.05\n\n[[offers]]\nname = \"fixed5\"",
                         "contact_cost = -1\n\n[[offers]]\nname = \"fixed5\""),
     "offers[2] (pct10) field 'contact_cost': expected input should be greater than or equal"),
    (OFFERS_TOML.replace("depth = 0.10", "depth = 1.5"), "a pct offer's depth is a share below 1"),
    (OFFERS_TOML.replace("margin = 0.4", "margin = 0.4\nmargn = 0.3"), "unknown field 'margn'"),
    ("margin = [", "invalid TOML"),
    (OFFERS_TOML.replace('name = "fixed5"', 'name = "pct10"'), "offer names must be unique"),
])
def test_bad_offers_files_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_offers(text, where="offers.toml")


def test_missing_offers_file(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="nothing at that path"):
        load_offers(tmp_path / "nope.toml")


@pytest.mark.parametrize("budget", [0, -5.0, float("nan"), float("inf"), "lots"])
def test_budget_must_be_a_positive_amount(budget: object) -> None:
    pf, cf = _frames(np.ones((2, 1)), np.ones((2, 1)))
    with pytest.raises(ConfigError, match="expected a positive amount of money"):
        allocate(pf, cf, budget=budget)  # type: ignore[arg-type]


def test_scores_problems_are_schema_errors() -> None:
    book = parse_offers(OFFERS_TOML)
    good = pd.DataFrame({"customer_id": ["a", "b"], "uplift_mail": [0.1, 0.0],
                         "uplift_pct10": [0.1, 0.0], "uplift_fixed5": [0.1, 0.0],
                         "p_control": [0.1, 0.2]})
    with pytest.raises(SchemaError, match="uplift_fixed5 missing"):
        offer_values(good.drop(columns="uplift_fixed5"), book)
    with pytest.raises(SchemaError, match=r"numbers in \[0.0, 1.0\].*1.5"):
        offer_values(good.assign(p_control=[0.1, 1.5]), book)
    with pytest.raises(SchemaError, match="one row per customer"):
        offer_values(good.assign(customer_id=["a", "a"]), book)
    for blank in ("", "  ", None):  # a CSV's empty field reads as "", not as missing
        with pytest.raises(SchemaError, match="1 rows without one"):
            offer_values(good.assign(customer_id=["a", blank]), book)
    with pytest.raises(SchemaError, match="'p_treated_mail' or 'p_control'"):
        offer_values(good.drop(columns="p_control"), book)


# -- the command, on real files ------------------------------------------------------------


@pytest.fixture
def campaign_files(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(5)
    n = 2_000
    scores = pd.DataFrame({
        "customer_id": [f"cust{i:05d}" for i in range(n)],
        "uplift_mail": rng.normal(0.01, 0.02, n).clip(-0.5, 0.5),
        "uplift_pct10": rng.normal(0.03, 0.04, n).clip(-0.5, 0.5),
        "uplift_fixed5": rng.normal(0.02, 0.03, n).clip(-0.5, 0.5),
        "p_control": rng.uniform(0.02, 0.3, n),
        "order_value": rng.gamma(4.0, 15.0, n).round(2)})
    scores_path = tmp_path / "scores.csv.gz"
    scores.to_csv(scores_path, index=False)
    offers_path = tmp_path / "offers.toml"
    offers_path.write_text(OFFERS_TOML, encoding="utf-8")
    return offers_path, scores_path


def test_cli_plan_campaign_writes_a_plan_within_budget(campaign_files, tmp_path: Path) -> None:
    offers, scores = campaign_files
    out = tmp_path / "plan.csv"
    proc = marketloop("plan", "campaign", "--offers", str(offers), "--budget", "150",
                      "--scores", str(scores), "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    totals = json.loads(proc.stdout)
    plan = pd.read_csv(out, dtype={"customer_id": str})
    assert list(plan.columns) == list(PLAN_COLUMNS)
    assert len(plan) == 2_000 and plan["customer_id"].is_unique
    assert plan["expected_cost"].sum() <= 150.0 + 0.01
    assert totals["expected_spend"] <= 150.0
    assert totals["targeted"] == int(plan["offer"].notna().sum()) > 0
    assert totals["expected_incremental_profit"] == pytest.approx(
        plan["expected_incremental_profit"].sum(), abs=0.05)
    assert totals["expected_incremental_profit"] <= totals["upper_bound"] + 1e-6
    assert plan["reason"].notna().all()
    assert plan.loc[plan["offer"].notna(), "reason"].str.contains("profit per").all()
    # the same plan as the library makes
    book = load_offers(offers)
    lib = plan_campaign(pd.read_csv(scores, dtype={"customer_id": str}), book, budget=150.0)
    assert plan["offer"].fillna("").tolist() == lib.plan["offer"].fillna("").tolist()

    table = marketloop("plan", "campaign", "--offers", str(offers), "--budget", "150",
                       "--scores", str(scores), "--out", str(out))
    assert table.returncode == 0 and "expected incremental profit" in table.stdout


@pytest.mark.parametrize(("change", "message"), [
    (["--budget", "-5"], "--budget: expected a positive amount of money; found -5.0"),
    (["--budget", "abc"], "--budget: expected a positive amount of money; found 'abc'"),
    (["--budget", "0"], "--budget: expected a positive amount of money"),
    (["--offers", "BAD"], "unknown field 'colour'"),
    (["--offers", "NEG"], "field 'contact_cost'"),
    (["--offers", "MISSING"], "nothing at that path"),
    (["--scores", "NOCOL"], "uplift_fixed5 missing"),
    (["--scores", "NONE"], "--scores FILE, or --model MODEL with --customers FILE"),
    (["--scores", "HEADER"], "expected at least one customer row; found only a header"),
    (["--scores", "PSUM"], "expected a probability of at most 1 (within 0.05) for every"),
    (["--out", "plan.parquet"], "plan file: expected a name ending in .csv or .csv.gz"),
    (["--out", "/proc/plan.csv"], "plan file /proc/plan.csv: expected a folder that can be"),
])
def test_cli_plan_campaign_bad_input_exits_2(campaign_files, tmp_path: Path,
                                              change: list[str], message: str) -> None:
    offers, scores = campaign_files
    bad = tmp_path / "bad.toml"
    bad.write_text(OFFERS_TOML.replace('type = "pct"', 'type = "pct"\ncolour = "red"'))
    neg = tmp_path / "neg.toml"
    neg.write_text(OFFERS_TOML.replace("contact_cost = 0.05", "contact_cost = -0.05", 1))
    nocol = tmp_path / "nocol.csv"
    pd.read_csv(scores).drop(columns="uplift_fixed5").to_csv(nocol, index=False)
    header = tmp_path / "header.csv"
    pd.read_csv(scores).head(0).to_csv(header, index=False)
    psum = tmp_path / "psum.csv"
    pd.read_csv(scores).assign(p_control=0.99, uplift_pct10=0.5).to_csv(psum, index=False)
    files = {"BAD": bad, "NEG": neg, "MISSING": tmp_path / "missing.toml", "NOCOL": nocol,
             "HEADER": header, "PSUM": psum, "plan.parquet": tmp_path / "plan.parquet"}
    args = {"--offers": str(offers), "--budget": "100", "--scores": str(scores),
            "--out": str(tmp_path / "plan.csv")}
    key, value = change
    if value == "NONE":
        del args[key]
    else:
        args[key] = str(files.get(value, value))
    proc = marketloop("plan", "campaign", *itertools.chain.from_iterable(args.items()))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "plan.csv").exists() and not (tmp_path / "plan.parquet").exists()


def test_cli_plan_campaign_from_a_saved_uplift_model(tmp_path: Path) -> None:
    """A T-learner fit on a randomised test plans for new customers; p_control from it."""
    from marketloop.strategy.uplift import TLearner

    rng = np.random.default_rng(2)
    n = 6_000
    x = rng.normal(size=(n, 2))
    arm = rng.choice(["control", "pct10"], n)
    p0 = 1 / (1 + np.exp(-(-2.0 + 0.5 * x[:, 0])))
    effect = np.where(x[:, 1] > 0, 0.15, 0.0)  # only half the customers are persuadable
    y = rng.random(n) < p0 + (arm == "pct10") * effect
    X = pd.DataFrame(x, columns=["f0", "f1"])
    model = TLearner(random_state=0).fit(X, arm, y.astype(int))
    model_path = tmp_path / "uplift.pkl"
    model.save(model_path)
    new = pd.DataFrame(rng.normal(size=(1_000, 2)), columns=["f0", "f1"])
    new.insert(0, "customer_id", [f"n{i}" for i in range(1_000)])
    customers = tmp_path / "customers.parquet"
    new.to_parquet(customers)
    offers = tmp_path / "offers.toml"
    offers.write_text('margin = 0.5\norder_value = 50.0\n[[offers]]\nname = "pct10"\n'
                      'type = "pct"\ndepth = 0.1\ncontact_cost = 0.1\n')
    out = tmp_path / "plan.csv"
    proc = marketloop("plan", "campaign", "--offers", str(offers), "--budget", "200",
                      "--model", str(model_path), "--customers", str(customers),
                      "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    plan = pd.read_csv(out).set_index("customer_id").join(new.set_index("customer_id"))
    sent = plan["offer"].notna()
    assert plan.loc[sent, "expected_cost"].sum() <= 200.0 + 0.01
    assert sent.sum() > 50
    assert (plan.loc[sent, "f1"] > 0).mean() > 0.75  # mostly the persuadable half (half of all)
    frame = new.set_index("customer_id")
    scores = scores_from_model(model, frame, load_offers(offers))
    np.testing.assert_allclose(scores["p_control"], model.control_outcome(frame))


def test_cli_says_a_segment_limit_that_matches_nobody(campaign_files, tmp_path: Path) -> None:
    offers, scores = campaign_files
    typo = tmp_path / "typo.toml"
    typo.write_text(OFFERS_TOML + '\n[[limits]]\nsegment = "vlp"\nmax_count = 5\n')
    with_segments = tmp_path / "scores.csv"
    pd.read_csv(scores).assign(segment="vip").to_csv(with_segments, index=False)
    proc = marketloop("plan", "campaign", "--offers", str(typo), "--budget", "150",
                      "--scores", str(with_segments), "--out", str(tmp_path / "plan.csv"))
    assert proc.returncode == 0, proc.stderr
    assert ("WARNING: segment limits for ['vlp'] match no customer; they change nothing."
            in proc.stderr.splitlines())


def test_cli_says_why_a_plan_sends_nothing(campaign_files, tmp_path: Path) -> None:
    """A budget below every paying offer's cost is named as the cause; scores where nothing
    pays say so instead."""
    offers, scores = campaign_files
    out = tmp_path / "plan.csv"
    tiny = marketloop("plan", "campaign", "--offers", str(offers), "--budget", "0.01",
                      "--scores", str(scores), "--out", str(out))
    assert tiny.returncode == 0, tiny.stderr
    warning = [line for line in tiny.stderr.splitlines() if line.startswith("WARNING:")]
    assert len(warning) == 1 and "but none fits the budget of 0.01 EUR" in warning[0]
    assert "no offer is expected to pay" not in tiny.stderr
    plan = pd.read_csv(out)
    n = int(plan["reason"].str.startswith("budget exhausted").sum())
    assert n > 0 and f"{n:,} customers have an offer expected to pay" in warning[0]

    losing = tmp_path / "losing.csv"
    frame = pd.read_csv(scores)
    frame[["uplift_mail", "uplift_pct10", "uplift_fixed5"]] = -0.05
    frame.to_csv(losing, index=False)
    none = marketloop("plan", "campaign", "--offers", str(offers), "--budget", "150",
                      "--scores", str(losing), "--out", str(out))
    assert none.returncode == 0, none.stderr
    assert ("WARNING: no offer is expected to pay for any customer; the plan sends nothing."
            in none.stderr.splitlines())
