"""The true response to an action: conversion, order value, profit, complaints, unsubscribes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from marketloop.simulate._params import (
    CHANNELS,
    CONTACT_COST,
    FORMATS,
    NO_CONTACT,
    OFFER_DEPTH,
    OFFERS,
    RESPONSE,
    WEEK_DAYS,
)
from marketloop.simulate._util import (
    STR,
    UnknownIdError,
    circular_hour_distance,
    describe,
    logit,
    sigmoid,
)

if TYPE_CHECKING:
    from marketloop.simulate._market import Truth

ACTION_COLUMNS = ["offer", "channel", "send_hour", "format"]
#: Reference action for the uplift groups: a 10 % coupon by email, well timed and formatted.
REFERENCE = ("pct10", "email")
GROUPS = ("persuadable", "sure_thing", "lost_cause", "sleeping_dog")


def action_catalogue() -> pd.DataFrame:
    """The compact catalogue: every offer x channel, and no contact; hour/format per customer."""
    rows = [(NO_CONTACT, NO_CONTACT, NO_CONTACT)]
    rows += [(f"{o}@{c}", o, c) for c in CHANNELS for o in OFFERS]
    frame = pd.DataFrame(rows, columns=["action", "offer", "channel"]).astype(STR)
    frame["discount"] = [OFFERS.get(o, (0.0, 0.0, 0.0))[0] for o in frame["offer"]]
    frame["coupon_cost"] = [OFFERS.get(o, (0.0, 0.0, 0.0))[1] for o in frame["offer"]]
    frame["value_lift"] = [OFFERS.get(o, (0.0, 0.0, 0.0))[2] for o in frame["offer"]]
    frame["contact_cost"] = [CONTACT_COST[c] for c in frame["channel"]]
    return frame


def response_arrays(
    tc: pd.DataFrame,
    pos: np.ndarray,
    offer: np.ndarray,
    channel: np.ndarray,
    hour: np.ndarray,
    fmt: np.ndarray,
    *,
    alive: np.ndarray | None = None,
    recent: np.ndarray | float = 0.0,
    day: int = 0,
    scenarios: Sequence[str] = (),
) -> dict[str, np.ndarray]:
    """Exact response of customers at positions ``pos`` of ``tc`` to the given actions.

    ``offer``/``channel`` are strings (``no_contact`` for either means no contact), ``hour``
    0-23 and ``fmt`` a format name. ``recent`` counts contacts in the last 14 days.
    """
    R = RESPONSE
    lam = tc["lambda"].to_numpy()[pos] / WEEK_DAYS
    alive = tc["alive_at_end"].to_numpy()[pos] if alive is None else alive
    tol = tc["contact_tolerance"].to_numpy()[pos]
    sat = tc["satisfaction"].to_numpy()[pos]
    offer = np.asarray(offer, dtype=object)
    channel = np.asarray(channel, dtype=object)
    contact = (channel != NO_CONTACT) & (offer != NO_CONTACT)
    base = np.where(alive, logit(-np.expm1(-lam * R.window_days)), R.dead_logit)

    resp = np.zeros(len(pos))
    for c in CHANNELS:
        sel = channel == c
        resp[sel] = tc[f"resp_{c}"].to_numpy()[pos[sel]]
    pref_h = tc["preferred_hour"].to_numpy()[pos]
    hour = np.where(contact, np.asarray(hour, dtype=np.float64), pref_h)
    fit = np.exp(-0.5 * (circular_hour_distance(hour, pref_h) / R.hour_width) ** 2)
    hour_mult = R.hour_floor + (1 - R.hour_floor) * fit
    fmt_ok = np.asarray(fmt, dtype=object) == tc["preferred_format"].to_numpy()[pos]
    fmt_mult = np.where(fmt_ok, 1.0, R.format_miss)
    chan_eff = resp * hour_mult * fmt_mult
    if "channel_degradation" in scenarios and day >= R.degraded_day:
        chan_eff = np.where(channel == R.degraded_channel, chan_eff * R.degraded_factor, chan_eff)
    depth = np.array([OFFER_DEPTH.get(o, 0.0) for o in offer]) if len(offer) else np.zeros(0)
    offer_eff = R.offer_slope * depth * tc["price_sensitivity"].to_numpy()[pos]
    reach = np.where(alive, np.exp(-lam * WEEK_DAYS / R.habit_rate), R.dead_response)
    annoy = (R.annoy_scale * np.maximum(0.0, R.annoy_tol - tol) / R.annoy_tol
             + R.fatigue_per_contact * np.asarray(recent) / (0.5 + tol))
    lift = np.where(contact, reach * (chan_eff + offer_eff) - annoy, 0.0)
    p0 = sigmoid(base)
    p = sigmoid(base + lift)

    disc = np.array([OFFERS.get(o, (0.0, 0.0, 0.0))[0] for o in offer]) if len(offer) else lift
    coupon = np.array([OFFERS.get(o, (0.0, 0.0, 0.0))[1] for o in offer]) if len(offer) else lift
    vlift = np.array([OFFERS.get(o, (0.0, 0.0, 0.0))[2] for o in offer]) if len(offer) else lift
    disc, coupon, vlift = disc * contact, coupon * contact, vlift * contact
    mean_z = tc["mean_spend"].to_numpy()[pos]
    value = mean_z * (1 + vlift)
    cost = np.array([CONTACT_COST.get(c, 0.0) for c in channel]) * contact
    profit = p * (value * (1 - disc) * R.gross_margin - coupon) - cost
    profit0 = p0 * mean_z * R.gross_margin

    load = (np.asarray(recent) + 1.0) / (1.0 + 4.0 * tol)
    backlash = 0.0
    if "content_backlash" in scenarios:
        backlash = R.backlash_logit * ((np.asarray(fmt, dtype=object) == R.backlash_format)
                                       & (tol < 0.3))
    p_comp = sigmoid(R.complaint_base + R.complaint_load * load - R.complaint_sat * sat + backlash)
    p_unsub = sigmoid(R.unsubscribe_base + R.unsubscribe_load * load + 0.5 * backlash)
    return {
        "p_convert": p,
        "p_baseline": p0,
        "uplift": p - p0,
        "expected_order_value": value * (1 - disc),
        "expected_profit": profit,
        "profit_uplift": profit - profit0,
        "p_complaint": np.where(contact, p_comp, 0.0),
        "p_unsubscribe": np.where(contact, p_unsub, 0.0),
    }


def check_actions(actions: object, *, where: str, columns: Sequence[str] = ACTION_COLUMNS
                  ) -> pd.DataFrame:
    """``actions`` as a frame whose offers, channels, hours and formats the simulator knows.

    Raises
    ------
    ValueError
        A column missing, or a value outside the catalogue (named with the row), e.g. an
        offer ``pct50``, a channel ``fax``, an hour 99 or NaN, a format ``gif``. Rows without
        a contact (``no_contact`` offer or channel) need no hour or format.
    """
    if not isinstance(actions, pd.DataFrame):
        raise ValueError(describe(where, f"a DataFrame with columns {', '.join(columns)}",
                                   type(actions).__name__))
    missing = [c for c in columns if c not in actions.columns]
    if missing:
        raise ValueError(describe(where, f"columns {', '.join(columns)}",
                                   f"{', '.join(map(str, actions.columns))} ({', '.join(missing)} "
                                   "missing)"))
    def texts(column: str) -> np.ndarray:  # pd.NA and other non-texts as None
        return np.array([v if isinstance(v, str) else None for v in actions[column]],
                        dtype=object)

    offer, channel = texts("offer"), texts("channel")
    contact = (offer != NO_CONTACT) & (channel != NO_CONTACT)
    hour = pd.to_numeric(actions["send_hour"], errors="coerce").to_numpy(dtype=np.float64)
    rules = [  # the other field of a row with no contact may be blank
        ("offer", (channel != NO_CONTACT) & ~np.isin(offer, [*OFFERS, NO_CONTACT]),
         f"one of {[*OFFERS, NO_CONTACT]}"),
        ("channel", (offer != NO_CONTACT) & ~np.isin(channel, [*CHANNELS, NO_CONTACT]),
         f"one of {[*CHANNELS, NO_CONTACT]}"),
        ("send_hour", contact & ~((hour >= 0) & (hour < 24)), "an hour from 0 to 23"),
        ("format", contact & ~np.isin(texts("format"), FORMATS),
         f"one of {list(FORMATS)}"),
    ]
    for column, bad, expected in rules:
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            value = actions[column].iloc[i]
            value = value.item() if isinstance(value, np.generic) else value
            raise ValueError(describe(
                f"{where} {column}", expected,
                f"{value!r} on row {i + 1} ({int(bad.sum()):,} such rows)"))
    return actions


def true_response(
    truth: Truth,
    customer_ids: Sequence[str] | pd.Index | pd.Series,
    actions: pd.DataFrame,
    *,
    recent_contacts: np.ndarray | float = 0.0,
    day: int = 0,
) -> pd.DataFrame:
    """Exact conversion probability, uplift and expected profit of any actions.

    Parameters
    ----------
    truth : Truth
        The truth of a simulated shop.
    customer_ids : sequence of str
        Customers, one per row of ``actions`` (or any number when ``actions`` has one row).
    actions : pandas.DataFrame
        Columns ``offer`` (``none``, ``pct10``, ``pct20``, ``freeship`` or ``no_contact``),
        ``channel`` (``email``, ``sms``, ``push``, ``app`` or ``no_contact``), ``send_hour``
        (0-23) and ``format`` (``plain``, ``visual``, ``personal``).
    recent_contacts : float or array, default=0.0
        Contacts of each customer in the 14 days before this one (fatigue, complaints).
    day : int, default=0
        Day after the period end (matters for the ``channel_degradation`` scenario).

    Returns
    -------
    pandas.DataFrame
        One row per customer and action: the action columns, ``p_convert`` (an order within
        14 days), ``p_baseline`` (without contact), ``uplift``, ``expected_order_value``
        (paid, after discount), ``expected_profit``, ``profit_uplift``, ``p_complaint``,
        ``p_unsubscribe``.

    Examples
    --------
    >>> from marketloop.simulate import Market, true_response
    >>> shop = Market(n_customers=500, n_days=90, random_state=0).simulate()
    >>> ids = shop.customers["customer_id"][:3]
    >>> act = pd.DataFrame({"offer": ["pct20"], "channel": ["sms"], "send_hour": [19],
    ...                     "format": ["plain"]})
    >>> out = true_response(shop.truth, ids, act)
    >>> bool(out["p_convert"].between(0, 1).all())
    True
    """
    ids = pd.Index(np.asarray(customer_ids, dtype=object))
    pos = truth.customers.index.get_indexer(ids)
    if (pos < 0).any():
        unknown = ids[pos < 0][:3].tolist()
        raise UnknownIdError(describe("true_response customer_ids",
                                      "ids of the market's customers",
                                      f"unknown ids, e.g. {unknown}"))
    check_actions(actions, where="true_response actions")
    act = actions[ACTION_COLUMNS].reset_index(drop=True)
    if len(act) == 1 and len(pos) != 1:
        act = act.loc[np.zeros(len(pos), dtype=np.int64)].reset_index(drop=True)
    if len(act) != len(pos):
        raise ValueError(f"{len(act)} actions for {len(pos)} customers; give one or one each")
    out = response_arrays(
        truth.customers, pos, act["offer"].to_numpy(dtype=object),
        act["channel"].to_numpy(dtype=object), act["send_hour"].to_numpy(dtype=np.float64),
        act["format"].to_numpy(dtype=object), recent=recent_contacts, day=day,
        scenarios=truth.params.get("scenarios", ()),
    )
    frame = pd.DataFrame({"customer_id": pd.Series(ids, dtype=STR)})
    for c in ACTION_COLUMNS:
        frame[c] = act[c].to_numpy()
    for k, v in out.items():
        frame[k] = v
    return frame


def treatment_effects(tc: pd.DataFrame, scenarios: Sequence[str] = ()) -> pd.DataFrame:
    """Every customer x catalogue action at the customer's preferred hour and format."""
    cat = action_catalogue()
    n = len(tc)
    pos = np.tile(np.arange(n), len(cat))
    reps = np.repeat(np.arange(len(cat)), n)
    out = response_arrays(
        tc, pos, cat["offer"].to_numpy(dtype=object)[reps],
        cat["channel"].to_numpy(dtype=object)[reps],
        tc["preferred_hour"].to_numpy()[pos], tc["preferred_format"].to_numpy(dtype=object)[pos],
        scenarios=scenarios,
    )
    return pd.DataFrame({
        "customer_id": pd.Series(np.asarray(tc.index, dtype=object)[pos], dtype=STR),
        "action": pd.Categorical(cat["action"].to_numpy(dtype=object)[reps],
                                 categories=list(cat["action"])),
        "p_convert": out["p_convert"],
        "uplift": out["uplift"],
        "expected_profit": out["expected_profit"],
        "profit_uplift": out["profit_uplift"],
    })


def uplift_groups(tc: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Classic four groups from the reference action's true uplift; returns (labels, uplift).

    sleeping_dog: uplift < -0.002; persuadable: uplift >= 0.03; else sure_thing if the
    no-contact probability is >= 0.2; else lost_cause.
    """
    n = len(tc)
    pos = np.arange(n)
    out = response_arrays(
        tc, pos, np.full(n, REFERENCE[0], dtype=object), np.full(n, REFERENCE[1], dtype=object),
        tc["preferred_hour"].to_numpy(), tc["preferred_format"].to_numpy(dtype=object),
    )
    u, p0 = out["uplift"], out["p_baseline"]
    label = np.where(u < -0.002, "sleeping_dog",
                     np.where(u >= 0.03, "persuadable",
                              np.where(p0 >= 0.2, "sure_thing", "lost_cause")))
    return label, u

