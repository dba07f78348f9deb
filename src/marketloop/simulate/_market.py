"""``Market``: the seeded synthetic shop, and the ``Shop`` and ``Truth`` it returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from marketloop.simulate._params import BGNBD, GAMMA_GAMMA, RESPONSE
from marketloop.simulate._util import describe

if TYPE_CHECKING:
    from pathlib import Path

    from marketloop.simulate._campaign import Campaign

TABLES = ("customers", "products", "orders", "order_lines", "events", "texts", "consents")
SCENARIOS = ("historical_bias", "channel_degradation", "content_backlash", "small_shop")
#: Items per customer kept in ``truth.item_affinity``.
TOP_K = 20


@dataclass(frozen=True)
class Truth:
    """What generated a shop: latent traits, parameters, affinities, true effects, labels."""

    customers: pd.DataFrame
    params: dict[str, object]
    item_affinity: pd.DataFrame
    treatment_effects: pd.DataFrame
    texts: pd.DataFrame
    actions: pd.DataFrame
    products: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass(frozen=True)
class Shop:
    """The tables a shop would export, in the canonical layout, and the truth behind them."""

    customers: pd.DataFrame
    products: pd.DataFrame
    orders: pd.DataFrame
    order_lines: pd.DataFrame
    events: pd.DataFrame
    texts: pd.DataFrame
    consents: pd.DataFrame
    truth: Truth

    def tables(self) -> dict[str, pd.DataFrame]:
        """The seven export tables by name, in load order."""
        return {name: getattr(self, name) for name in TABLES}


def _default_products(n_customers: int) -> int:
    return int(np.clip(round(500 * (n_customers / 20_000) ** 0.3), 40, 5_000))


def _whole(name: str, value: object, *, low: int) -> int:
    """``value`` as a whole number of at least ``low``, or a ValueError naming ``name``."""
    whole = (isinstance(value, (int, np.integer)) or (  # 1e4 is a whole number too
        isinstance(value, (float, np.floating)) and float(value).is_integer()))
    if isinstance(value, bool) or not whole or int(value) < low:  # type: ignore[call-overload]
        raise ValueError(describe(f"Market {name}", f"a whole number >= {low}", repr(value)))
    return int(value)  # type: ignore[call-overload]


class Market:
    """A synthetic online shop with known ground truth (BG/NBD, Gamma-Gamma, tastes, uplift).

    Parameters
    ----------
    n_customers : int, default=20_000
        Customers ever acquired (before or during the period).
    n_days : int, default=365
        Length of the observed period in days, from ``start``.
    random_state : int or None, default=0
        Seed; the same seed and parameters give identical frames.
    start : str, default="2025-01-01"
        First day of the period (UTC).
    n_products : int or None, default=None
        Catalogue size; ``None`` scales gently with customers (500 for 20,000).
    scenarios : sequence of str, default=()
        Any of ``historical_bias``, ``channel_degradation``, ``content_backlash``,
        ``small_shop`` (see docs/simulator.md).
    history_share : float, default=0.3
        Share of customers acquired before ``start`` (uniformly over ``history_days``).
    history_days : int, default=730
        How far before ``start`` early customers may have been acquired.

    Examples
    --------
    >>> from marketloop.simulate import Market
    >>> shop = Market(n_customers=1_000, n_days=90, random_state=1).simulate()
    >>> list(shop.orders.columns)
    ['order_id', 'customer_id', 'ordered_at', 'currency', 'status', 'amount']
    """

    def __init__(
        self,
        n_customers: int = 20_000,
        n_days: int = 365,
        random_state: int | None = 0,
        start: str = "2025-01-01",
        n_products: int | None = None,
        scenarios: Sequence[str] = (),
        history_share: float = 0.3,
        history_days: int = 730,
    ) -> None:
        self.n_customers = n_customers
        self.n_days = n_days
        self.random_state = random_state
        self.start = start
        self.n_products = n_products
        self.scenarios = scenarios
        self.history_share = history_share
        self.history_days = history_days

    def effective_params(self) -> dict[str, object]:
        """Validated sizes after scenarios (``small_shop`` caps customers, days, products)."""
        if isinstance(self.scenarios, str):
            raise ValueError(describe("Market scenarios", "a list of scenario names",
                                       f"the text {self.scenarios!r}",
                                       f"Pass [{self.scenarios!r}]."))
        unknown = [s for s in self.scenarios if s not in SCENARIOS]
        if unknown:
            raise ValueError(describe("Market scenarios", f"any of {SCENARIOS}", str(unknown)))
        n = _whole("n_customers", self.n_customers, low=1)
        days = _whole("n_days", self.n_days, low=1)
        _whole("history_days", self.history_days, low=0)
        if self.random_state is not None:
            _whole("random_state", self.random_state, low=0)
        share = self.history_share
        if isinstance(share, bool) or not isinstance(share, (int, float, np.number)) or not (
                np.isfinite(share) and 0.0 <= share <= 1.0):
            raise ValueError(describe("Market history_share", "a share from 0 to 1",
                                       repr(share)))
        try:
            start = pd.Timestamp(self.start)
        except (ValueError, TypeError) as exc:
            raise ValueError(describe("Market start", "a date such as 2025-01-01",
                                       repr(self.start))) from exc
        if pd.isna(start):
            raise ValueError(describe("Market start", "a date such as 2025-01-01",
                                       repr(self.start)))
        n_products = (_default_products(n) if self.n_products is None
                      else _whole("n_products", self.n_products, low=1))
        if "small_shop" in self.scenarios:
            n, days, n_products = min(n, 300), min(days, 42), min(n_products, 60)
        return {"n_customers": n, "n_days": days, "n_products": int(n_products),
                "start": start.tz_localize(None).normalize()}

    def simulate(self, tables: Sequence[str] | None = None, *,
                 full_truth: bool = True) -> Shop:
        """Draw the shop, deterministically by ``random_state``.

        Parameters
        ----------
        tables : sequence of str, optional
            Tables to draw (default all seven); the others are empty frames. Each table has
            its own random stream, so skipping one changes no other.
        full_truth : bool, default=True
            ``False`` skips ``truth.treatment_effects`` and ``truth.item_affinity`` (the
            costly customer x action and customer x item tables) for large order-only runs.

        Returns
        -------
        Shop
        """
        from marketloop.simulate._build import build_shop

        want = set(TABLES if tables is None else tables)
        unknown = want - set(TABLES)
        if unknown:
            raise ValueError(describe("Market.simulate tables", f"any of {TABLES}",
                                       str(sorted(unknown))))
        return build_shop(self, want, full_truth=full_truth)

    def random_campaign(self, treat_share: float = 0.5, *, offer: str = "pct10",
                        channel: str = "email", random_state: int | None = None) -> Campaign:
        """A logged randomised campaign at the period end (see :func:`random_campaign`)."""
        from marketloop.simulate._campaign import random_campaign

        return random_campaign(self.simulate(("customers", "orders")), treat_share=treat_share,
                               offer=offer, channel=channel, random_state=random_state)

    def export(self, out_dir: str | Path, *, format: Literal["csv", "parquet"] = "csv",
               dirty_rate: float = 0.0, tables: Sequence[str] | None = None) -> Shop:
        """Simulate and write the export (see :func:`write_export`); returns the shop."""
        from marketloop.simulate._export import write_export

        shop = self.simulate(tables)
        write_export(shop, out_dir, format=format, dirty_rate=dirty_rate,
                     random_state=self.random_state, tables=tables)
        return shop


def model_params(market: Market, eff: dict[str, object]) -> dict[str, object]:
    """Every parameter of the generative model, as stored in ``truth.params``."""
    end = eff["start"] + pd.Timedelta(days=int(eff["n_days"]))
    return {
        **{k: float(v) for k, v in BGNBD.items()},
        "lambda_unit": "per week",
        **{f"gg_{k}": float(v) for k, v in GAMMA_GAMMA.items()},
        "seed": market.random_state,
        "start": str(eff["start"].date()),
        "end": str(end.date()),
        "n_customers": eff["n_customers"],
        "n_days": eff["n_days"],
        "n_products": eff["n_products"],
        "history_share": market.history_share,
        "history_days": market.history_days,
        "scenarios": tuple(market.scenarios),
        "response": asdict(RESPONSE),
        "currency": "EUR",
    }

