"""The BG/NBD repeat-purchase process, Gamma-Gamma order values, orders and their lines."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from marketloop.simulate._catalogue import ItemChooser
from marketloop.simulate._params import GAMMA_GAMMA, STATUS_PROBS, WEEK_DAYS
from marketloop.simulate._util import grouped_cumsum, rank_in_group

#: Horizon of the expected-purchases truth, in weeks.
HORIZON_WEEKS = 52.0


@dataclass(frozen=True)
class Purchases:
    """Flat arrays of every order (sorted by customer, then time) and the per-customer truth."""

    customer: np.ndarray  # customer position of each order
    day: np.ndarray  # days after the period start (float, may be negative)
    value: np.ndarray  # order value z in EUR (cents-rounded)
    n_repeat: np.ndarray  # per customer: repeat purchases in the observed span
    alive: np.ndarray  # per customer: alive at the period end
    dropout_day: np.ndarray  # per customer: day of the last purchase if dropped out, else NaN


def draw_purchases(cust: pd.DataFrame, n_days: int, rng: np.random.Generator) -> Purchases:
    """Run BG/NBD from each customer's acquisition to the period end.

    After the acquisition order at ``acquired_day`` repeat purchases arrive as a Poisson
    process with rate ``lambda`` per week; after each repeat purchase the customer drops out
    with probability ``p``. So the number of repeat purchases before dropout ``J`` is
    geometric on {1, 2, ...}, the count in the span ``N ~ Poisson(lambda T)``, the observed
    count ``x = min(N, J)`` and the customer is alive at the end iff ``N < J``. The first
    ``x`` of ``N`` uniform order statistics on ``[0, T]`` are ``T S_k / (S_x + G)`` with
    ``S_k`` sums of exponentials and ``G ~ Gamma(N + 1 - x)``.
    """
    acq = cust["acquired_day"].to_numpy()
    lam = cust["lambda"].to_numpy()
    p = cust["p"].to_numpy()
    n = len(acq)
    t_weeks = (n_days - acq) / WEEK_DAYS
    total = rng.poisson(lam * t_weeks)
    limit = rng.geometric(p)
    x = np.minimum(total, limit)
    alive = total < limit
    gaps = rng.standard_exponential(int(x.sum()))
    s = grouped_cumsum(gaps, x)
    last = np.zeros(n)
    has = x > 0
    ends = np.cumsum(x) - 1
    last[has] = s[ends[has]]
    denom = last + rng.gamma(np.maximum(total + 1 - x, 1e-12))
    owner = np.repeat(np.arange(n), x)
    repeat_day = acq[owner] + t_weeks[owner] * WEEK_DAYS * s / denom[owner]
    dropout = np.full(n, np.nan)
    gone = ~alive
    dropout[gone & has] = repeat_day[ends[gone & has]]

    counts = x + 1
    customer = np.repeat(np.arange(n), counts)
    first = rank_in_group(counts) == 0
    day = np.empty(len(customer))
    day[first] = acq
    day[~first] = repeat_day
    nu = cust["nu"].to_numpy()
    value = rng.gamma(GAMMA_GAMMA["p"], 1.0 / nu[customer])
    value = np.maximum(np.round(value, 2), 0.01)
    return Purchases(customer, day, value, x, alive, dropout)


def expected_purchases(lam: np.ndarray, p: np.ndarray, alive: np.ndarray,
                       weeks: float = HORIZON_WEEKS) -> np.ndarray:
    """Exact E[repeat purchases in the next ``weeks``] given (lambda, p) and alive at the end.

    Alive, the remaining purchases before dropout are geometric again, so
    ``E[min(N(t), M)] = sum_k P(N >= k) (1 - p)^(k-1) = (1 - exp(-lambda p t)) / p``.
    """
    return np.where(alive, -np.expm1(-lam * p * weeks) / p, 0.0)


def order_hours(day: np.ndarray, pref_hour: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Move each event to the customer's habitual hour (keeps the date)."""
    hour = (pref_hour + np.rint(rng.normal(0, 2.5, len(day)))) % 24
    return np.floor(day) + (hour * 3600 + rng.integers(0, 3600, len(day))) / 86_400.0


def build_lines(
    purchases: Purchases,
    order_cust: np.ndarray,
    order_day: np.ndarray,
    order_value: np.ndarray,
    prices: np.ndarray,
    chooser: ItemChooser,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Order lines whose list value covers the order value; discount reconciles the two.

    ``order_cust`` must be sorted ascending. Returns flat arrays (order position, line_no,
    product, quantity, unit price, discount).
    """
    n_orders = len(order_cust)
    k = 1 + rng.poisson(0.6 * np.minimum(order_value / 60.0, 4.0))
    owner = np.repeat(np.arange(n_orders), k)
    line_no = rank_in_group(k) + 1
    product = chooser.draw(order_cust[owner], order_day[owner] + 0.0, rng)
    price = prices[product]
    target = order_value[owner] / k[owner]
    qty = np.maximum(1, np.ceil(target / price - 0.15)).astype(np.int64)
    gross = np.rint(qty * price * 100).astype(np.int64)
    order_gross = np.bincount(owner, weights=gross, minlength=n_orders)
    value_c = np.rint(order_value * 100).astype(np.int64)
    # where the lines fall short, add one unit to the first line until they cover the value
    short = np.maximum(value_c - order_gross, 0)
    first = line_no == 1
    price_c = np.rint(price * 100).astype(np.int64)
    extra = np.where(first, np.ceil(short[owner] / price_c).astype(np.int64), 0)
    qty = qty + extra
    gross = qty * price_c
    order_gross = np.bincount(owner, weights=gross, minlength=n_orders).astype(np.int64)
    over = order_gross - value_c
    share = gross / order_gross[owner]
    disc = np.floor(share * over[owner]).astype(np.int64)
    resid = over - np.bincount(owner, weights=disc, minlength=n_orders).astype(np.int64)
    disc = disc + np.where(first, resid[owner], 0)
    return {
        "order": owner,
        "line_no": line_no,
        "product": product,
        "quantity": qty,
        "unit_price": price_c / 100.0,
        "discount": disc / 100.0,
    }


def draw_status(n: int, rng: np.random.Generator) -> np.ndarray:
    """Order status codes (index into ORDER_STATUSES)."""
    return rng.choice(len(STATUS_PROBS), size=n, p=STATUS_PROBS)
