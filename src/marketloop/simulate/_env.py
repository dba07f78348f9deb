"""``MarketEnv``: an online environment whose outcomes are drawn from the true response."""

from __future__ import annotations

import numpy as np
import pandas as pd

from marketloop.simulate._market import Market, Shop
from marketloop.simulate._params import CHANNELS, GAMMA_GAMMA, NO_CONTACT, OFFERS, WEEK_DAYS
from marketloop.simulate._response import ACTION_COLUMNS, check_actions, response_arrays
from marketloop.simulate._util import UnknownIdError, describe

_WINDOW = 14  # days of contact history that count as recent


class MarketEnv:
    """Run decisions against the simulated customers, one day per :meth:`step`.

    The state starts at the period end: who is alive (``truth.customers.alive_at_end``),
    the contacts of the last 14 days (fatigue, complaints) and unsubscribes per channel.
    Each step draws, per decision, an order within the 14-day response window, its revenue,
    a complaint and an unsubscribe from the true probabilities given that state; then every
    alive customer may buy on their own that day (rate ``lambda``) and, after any purchase,
    drop out with probability ``p`` (BG/NBD).

    Parameters
    ----------
    shop_or_market : Shop or Market
        A simulated shop, or a market to simulate (customers and orders only).
    random_state : int or None, default=None
        Seed of the outcome draws.

    Examples
    --------
    >>> from marketloop.simulate import Market, MarketEnv
    >>> env = MarketEnv(Market(n_customers=500, n_days=90, random_state=0), random_state=0)
    >>> ids = env.customer_ids[:2]
    >>> d = pd.DataFrame({"customer_id": ids, "offer": "pct10", "channel": "email",
    ...                   "send_hour": 10, "format": "plain"})
    >>> list(env.step(d).columns)[-5:]
    ['delivered', 'converted', 'revenue', 'complaint', 'unsubscribe']
    """

    def __init__(self, shop_or_market: Shop | Market, random_state: int | None = None) -> None:
        self.shop_or_market = shop_or_market
        self.random_state = random_state
        shop = (shop_or_market.simulate(("customers", "orders"), full_truth=False)
                if isinstance(shop_or_market, Market) else shop_or_market)
        self._truth = shop.truth
        tc = shop.truth.customers
        self._rng = np.random.default_rng(random_state)
        self.customer_ids = pd.Index(tc.index, name="customer_id")
        self.day = 0
        self.alive = tc["alive_at_end"].to_numpy().copy()
        self._contacts = np.zeros((len(tc), _WINDOW), dtype=np.int16)
        self.unsubscribed = np.zeros((len(tc), len(CHANNELS)), dtype=bool)

    def recent_contacts(self) -> np.ndarray:
        """Contacts of each customer in the last 14 days."""
        return self._contacts.sum(axis=1)

    def _prepare(self, decisions: pd.DataFrame) -> tuple[np.ndarray, dict, np.ndarray]:
        check_actions(decisions, where="MarketEnv decisions",
                      columns=("customer_id", *ACTION_COLUMNS))
        pos = self.customer_ids.get_indexer(decisions["customer_id"].to_numpy(dtype=object))
        if (pos < 0).any():
            unknown = decisions["customer_id"].to_numpy(dtype=object)[pos < 0][:3].tolist()
            raise UnknownIdError(describe("MarketEnv decisions customer_id",
                                          "ids of the market's customers",
                                          f"unknown ids, e.g. {unknown}"))
        channel = decisions["channel"].to_numpy(dtype=object)
        offer = decisions["offer"].to_numpy(dtype=object)
        ch_idx = np.array([CHANNELS.index(c) if c in CHANNELS else -1 for c in channel],
                          dtype=np.int64)  # an empty day too
        blocked = (ch_idx >= 0) & self.unsubscribed[pos, np.maximum(ch_idx, 0)]
        delivered = (ch_idx >= 0) & (offer != NO_CONTACT) & ~blocked
        eff_channel = np.where(delivered, channel, NO_CONTACT)
        out = response_arrays(
            self._truth.customers, pos, offer, eff_channel,
            decisions["send_hour"].to_numpy(dtype=np.float64),
            decisions["format"].to_numpy(dtype=object), alive=self.alive[pos],
            recent=self.recent_contacts()[pos], day=self.day,
            scenarios=self._truth.params.get("scenarios", ()))
        return pos, out, np.stack([delivered, ch_idx]).astype(np.int64)

    def expected(self, decisions: pd.DataFrame) -> pd.DataFrame:
        """The true probabilities the next :meth:`step` would draw from (no state change)."""
        _, out, _ = self._prepare(decisions)
        return pd.DataFrame(out, index=decisions.index)

    def step(self, decisions: pd.DataFrame) -> pd.DataFrame:
        """Apply one day's decisions and return their outcomes; advances the day by one.

        ``decisions`` has columns ``customer_id, offer, channel, send_hour, format`` (one row
        per contact; ``no_contact`` for no message). Returns the decisions with ``day``,
        ``delivered`` (not to an unsubscribed channel), ``converted``, ``revenue``,
        ``complaint`` and ``unsubscribe``.
        """
        pos, out, (delivered, ch_idx) = self._prepare(decisions)
        delivered = delivered.astype(bool)
        rng = self._rng
        n = len(pos)
        converted = rng.random(n) < out["p_convert"]
        tc = self._truth.customers
        nu = tc["nu"].to_numpy()[pos]
        disc = np.array([OFFERS.get(o, (0.0, 0.0, 0.0))[0] for o in decisions["offer"]])
        lift = np.array([OFFERS.get(o, (0.0, 0.0, 0.0))[2] for o in decisions["offer"]])
        value = rng.gamma(GAMMA_GAMMA["p"], 1.0 / nu) * (1 + lift * delivered)
        revenue = np.where(converted, np.round(value * (1 - disc * delivered), 2), 0.0)
        complaint = delivered & (rng.random(n) < out["p_complaint"])
        unsub = delivered & (rng.random(n) < out["p_unsubscribe"])
        result = decisions.copy()
        result["day"] = self.day
        result["delivered"] = delivered
        result["converted"] = converted
        result["revenue"] = revenue
        result["complaint"] = complaint
        result["unsubscribe"] = unsub
        self._advance(pos, delivered, ch_idx, converted, unsub)
        return result

    def _advance(self, pos: np.ndarray, delivered: np.ndarray, ch_idx: np.ndarray,
                 converted: np.ndarray, unsub: np.ndarray) -> None:
        rng = self._rng
        tc = self._truth.customers
        self._contacts[:, self.day % _WINDOW] = 0
        np.add.at(self._contacts[:, self.day % _WINDOW], pos[delivered], 1)
        self.unsubscribed[pos[unsub], ch_idx[unsub]] = True
        lam = tc["lambda"].to_numpy() / WEEK_DAYS
        bought = self.alive & (rng.random(len(lam)) < -np.expm1(-lam))
        bought[pos[converted]] |= self.alive[pos[converted]]
        drop = bought & (rng.random(len(lam)) < tc["p"].to_numpy())
        self.alive &= ~drop
        self.day += 1
