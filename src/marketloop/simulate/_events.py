"""Web/app sessions and their events: browsing, carts (often abandoned) and purchases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from marketloop.simulate._catalogue import ItemChooser
from marketloop.simulate._params import TASTE_DIMS, WEEK_DAYS
from marketloop.simulate._util import (
    STR,
    day_to_timestamp,
    grouped_cumsum,
    make_ids,
    rank_in_group,
)

EVENT_TYPES = np.array(["page_view", "product_view", "add_to_cart", "checkout", "purchase"])
PV, VIEW, CART, CHECKOUT, PURCHASE = range(5)

#: Browsing sessions per day while alive: BASE + SLOPE * lambda (per day).
BROWSE_BASE = 0.006
BROWSE_SLOPE = 0.3
P_CART = 0.3  # a browsing session puts its last viewed item in the cart
P_CHECKOUT = 0.3  # an abandoned cart reached checkout first
ANON_SESSIONS_PER_CUSTOMER_YEAR = 0.25
#: Dwell time: log-normal with median DWELL_MEDIAN_MS * exp(DWELL_AFFINITY * u.v).
DWELL_MEDIAN_MS = 15_000.0
DWELL_AFFINITY = 0.5
DWELL_NOISE = 0.6


def _take(ids: pa.Array, idx: np.ndarray, missing: np.ndarray | None = None) -> pd.Series:
    taken = ids.take(pa.array(idx, mask=missing))
    return pd.Series(taken, dtype=STR)


def build_events(
    cust: pd.DataFrame,
    orders: dict[str, np.ndarray],
    lines: dict[str, np.ndarray],
    customer_ids: pa.Array,
    product_ids: pa.Array,
    chooser: ItemChooser,
    *,
    n_days: int,
    start: pd.Timestamp,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Every event of the period, sorted by time, in the canonical column order."""
    # -- purchase sessions: one per order inside the period
    in_period = (orders["day"] >= 0) & (orders["day"] < n_days)
    o_idx = np.flatnonzero(in_period)
    n_lines = np.bincount(lines["order"], minlength=len(orders["day"]))
    line_start = np.concatenate([[0], np.cumsum(n_lines)[:-1]])
    k = n_lines[o_idx]
    m = 2 * k + 3
    owner = np.repeat(np.arange(len(o_idx)), m)
    r = rank_in_group(m)
    kk = k[owner]
    etype = np.select([r == 0, r <= kk, r <= 2 * kk, r == 2 * kk + 1], [PV, VIEW, CART, CHECKOUT],
                      PURCHASE)
    line_of = line_start[o_idx][owner] + np.where(r <= kk, r - 1, r - 1 - kk)
    has_item = (etype == VIEW) | (etype == CART)
    prod_p = np.where(has_item, lines["product"][np.where(has_item, line_of, 0)], -1)
    gaps = rng.exponential(60.0, len(owner))
    back = grouped_cumsum(gaps[::-1], m[::-1])[::-1] - gaps  # seconds until the purchase
    day_p = orders["day"][o_idx][owner] - back / 86_400.0
    cust_p = orders["customer"][o_idx][owner]
    sess_p = owner

    # -- browsing sessions while alive in the period
    acq = cust["acquired_day"].to_numpy()
    lam = cust["lambda"].to_numpy() / WEEK_DAYS
    gone = cust["dropout_day"].to_numpy()
    lo = np.clip(acq, 0, n_days)
    hi = np.clip(np.where(np.isnan(gone), n_days, gone), lo, n_days)
    n_sess = rng.poisson((BROWSE_BASE + BROWSE_SLOPE * lam) * (hi - lo))
    s_cust = np.repeat(np.arange(len(acq)), n_sess)
    s_day = lo[s_cust] + rng.random(len(s_cust)) * (hi - lo)[s_cust]
    s_day = np.floor(s_day) + ((cust["preferred_hour"].to_numpy()[s_cust]
                               + rng.normal(0, 3, len(s_cust))) % 24) / 24.0
    views = 1 + rng.poisson(0.8, len(s_cust))
    cart = rng.random(len(s_cust)) < P_CART
    checkout = cart & (rng.random(len(s_cust)) < P_CHECKOUT)
    mb = 1 + views + cart + checkout
    owner_b = np.repeat(np.arange(len(s_cust)), mb)
    rb = rank_in_group(mb)
    vb = views[owner_b]
    etype_b = np.select([rb == 0, rb <= vb, rb == vb + 1], [PV, VIEW, CART], CHECKOUT)
    cust_b = s_cust[owner_b]
    day_b = s_day[owner_b] + grouped_cumsum(rng.exponential(60.0, len(owner_b)), mb) / 86_400.0
    is_view = etype_b == VIEW
    taste_pick = rng.random(len(owner_b)) < 0.5
    prod_b = np.full(len(owner_b), -1)
    pick = np.flatnonzero(is_view & taste_pick)
    prod_b[pick] = chooser.draw(cust_b[pick], day_b[pick], rng)
    pop = np.flatnonzero(is_view & ~taste_pick)
    prod_b[pop] = chooser.draw_popular(len(pop), rng)
    carts = np.flatnonzero(etype_b == CART)
    prod_b[carts] = prod_b[carts - 1]  # the last viewed item
    sess_b = owner_b + len(o_idx)

    # -- anonymous visitors
    n_anon = rng.poisson(ANON_SESSIONS_PER_CUSTOMER_YEAR * len(acq) * n_days / 365.0)
    visitor = rng.integers(0, max(1, int(n_anon / 1.5)), n_anon)
    ma = 1 + 1 + rng.poisson(0.7, n_anon)
    owner_a = np.repeat(np.arange(n_anon), ma)
    ra = rank_in_group(ma)
    etype_a = np.where(ra == 0, PV, VIEW)
    day_a = (rng.random(n_anon) * n_days)[owner_a] + grouped_cumsum(
        rng.exponential(60.0, len(owner_a)), ma) / 86_400.0
    prod_a = np.where(etype_a == VIEW, chooser.draw_popular(len(owner_a), rng), -1)
    sess_a = owner_a + len(o_idx) + len(s_cust)

    cust_all = np.concatenate([cust_p, cust_b, np.full(len(owner_a), -1)])
    prod_all = np.concatenate([prod_p, prod_b, prod_a])
    type_all = np.concatenate([etype, etype_b, etype_a])
    day_all = np.clip(np.concatenate([day_p, day_b, day_a]), 0, n_days - 1e-6)
    sess_all = np.concatenate([sess_p, sess_b, sess_a])
    anon_all = np.concatenate([np.full(len(owner) + len(owner_b), -1), visitor[owner_a]])

    # dwell rises with the customer's taste affinity for the item
    viewed = type_all == VIEW
    dwell = np.full(len(type_all), -1, dtype=np.int64)
    known = viewed & (cust_all >= 0)
    taste = cust[[f"taste_{j}" for j in range(TASTE_DIMS)]].to_numpy()
    aff = np.einsum("ij,ij->i", taste[cust_all[known]], chooser.vec[prod_all[known]])
    noise = rng.normal(0, DWELL_NOISE, int(viewed.sum()))
    base = np.zeros(len(type_all))
    base[known] = DWELL_AFFINITY * aff
    dwell[viewed] = np.rint(DWELL_MEDIAN_MS * np.exp(base[viewed] + noise)).astype(np.int64)
    dwell = np.minimum(dwell, 86_400_000)

    order = np.argsort(day_all, kind="stable")
    n = len(order)
    c, p, a = cust_all[order], prod_all[order], anon_all[order]
    return pd.DataFrame(
        {
            "event_id": make_ids("e", np.arange(1, n + 1), 9),
            "customer_id": _take(customer_ids, np.maximum(c, 0), c < 0),
            "anonymous_id": _take(pa.array(make_ids("v", np.arange(max(1, a.max() + 1)), 7)),
                                  np.maximum(a, 0), a < 0),
            "session_id": make_ids("s", sess_all[order] + 1, 8),
            "ts": day_to_timestamp(start, day_all[order]),
            "type": pd.Series(EVENT_TYPES[type_all[order]], dtype=STR),
            "product_id": _take(product_ids, np.maximum(p, 0), p < 0),
            "dwell_ms": pd.array(np.where(dwell[order] < 0, 0, dwell[order]), dtype="Int64"),
        }
    ).assign(dwell_ms=lambda f: f["dwell_ms"].mask(dwell[order] < 0))
