"""Assemble a ``Shop`` from the generative pieces (seeded sub-streams per table)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from marketloop.simulate import _catalogue, _customers, _events, _purchases, _response, _texts
from marketloop.simulate._market import TOP_K, Shop, Truth, model_params
from marketloop.simulate._params import (
    AGE_BANDS,
    DEVICES,
    FORMATS,
    INCOME_BANDS,
    ORDER_STATUSES,
    REGIONS,
    TASTE_DIMS,
)
from marketloop.simulate._util import STR, day_to_timestamp, make_ids

if TYPE_CHECKING:
    from marketloop.simulate._market import Market

_STREAMS = ("customers", "catalogue", "purchases", "lines", "events", "texts", "consents")


def _labels(codes: np.ndarray, names: tuple[str, ...]) -> pd.Series:
    return pd.Series(np.asarray(names, dtype=object)[codes], dtype=STR)


def _empty(columns: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=d) for c, d in columns.items()})


def _orders_frame(pur: _purchases.Purchases, cust: pd.DataFrame, cids: pa.Array,
                  start: pd.Timestamp, rng: np.random.Generator) -> tuple[dict, pd.DataFrame]:
    day = _purchases.order_hours(pur.day, cust["preferred_hour"].to_numpy()[pur.customer], rng)
    status = _purchases.draw_status(len(day), rng)
    ts = day_to_timestamp(start, day)
    # order ids follow time; lines need the customer-sorted order, kept in ``arrays``
    rank = np.empty(len(day), dtype=np.int64)
    rank[np.argsort(ts, kind="stable")] = np.arange(len(day))
    arrays = {"customer": pur.customer, "day": day, "value": pur.value, "rank": rank}
    by_time = np.argsort(rank)
    frame = pd.DataFrame({
        "order_id": make_ids("o", rank[by_time] + 1, 9),
        "customer_id": pd.Series(cids.take(pa.array(pur.customer[by_time])), dtype=STR),
        "ordered_at": ts[by_time],
        "currency": pd.Series(np.full(len(day), "EUR", dtype=object), dtype=STR),
        "status": _labels(status[by_time], ORDER_STATUSES),
        "amount": pur.value[by_time],
    })
    return arrays, frame


def _lines_frame(lines: dict, arrays: dict, pids: pa.Array) -> pd.DataFrame:
    rank = arrays["rank"][lines["order"]]
    order = np.lexsort((lines["line_no"], rank))
    return pd.DataFrame({
        "order_id": make_ids("o", rank[order] + 1, 9),
        "line_no": lines["line_no"][order].astype(np.int64),
        "product_id": pd.Series(pids.take(pa.array(lines["product"][order])), dtype=STR),
        "quantity": lines["quantity"][order].astype(np.int64),
        "unit_price": lines["unit_price"][order],
        "discount": lines["discount"][order],
    })


def _truth_customers(cust: pd.DataFrame, pur: _purchases.Purchases, cids: pd.Series,
                     start: pd.Timestamp) -> pd.DataFrame:
    tc = cust.copy()
    tc.index = pd.Index(cids.to_numpy(dtype=object), name="customer_id")
    for col, names in (("region", REGIONS), ("age_band", AGE_BANDS), ("device", DEVICES),
                       ("income_band", INCOME_BANDS), ("preferred_format", FORMATS)):
        tc[col] = _labels(tc[col].to_numpy(), names).to_numpy()
    tc["acquired_at"] = day_to_timestamp(start, tc["acquired_day"].to_numpy())
    tc["alive_at_end"] = pur.alive
    tc["dropout_day"] = pur.dropout_day
    drop = pur.dropout_day
    tc["dropout_at"] = pd.Series(day_to_timestamp(start, np.nan_to_num(drop)),
                                 index=tc.index).where(~np.isnan(drop))
    tc["n_orders"] = (pur.n_repeat + 1).astype(np.int64)
    tc["expected_purchases_52w"] = _purchases.expected_purchases(
        tc["lambda"].to_numpy(), tc["p"].to_numpy(), pur.alive)
    tc["expected_spend_52w"] = tc["expected_purchases_52w"] * tc["mean_spend"]
    return tc


def build_shop(market: Market, want: set[str], *, full_truth: bool = True) -> Shop:
    """Draw every requested table; sub-streams make each table independent of the others."""
    eff = market.effective_params()
    n, n_days, start = eff["n_customers"], eff["n_days"], eff["start"]
    rngs = dict(zip(_STREAMS, (np.random.default_rng(s) for s in
                               np.random.SeedSequence(market.random_state).spawn(len(_STREAMS))),
                    strict=True))
    cust = _customers.draw_customers(n, n_days, rngs["customers"],
                                     history_share=market.history_share,
                                     history_days=market.history_days)
    prods = _catalogue.draw_catalogue(int(eff["n_products"]), rngs["catalogue"])
    cids = make_ids("c", np.arange(1, n + 1), 7)
    pids = make_ids("p", np.arange(1, len(prods) + 1), 5)
    cids_pa, pids_pa = pa.array(cids), pa.array(pids)
    taste = cust[[f"taste_{k}" for k in range(TASTE_DIMS)]].to_numpy()
    chooser = _catalogue.ItemChooser(prods, taste)

    pur = _purchases.draw_purchases(cust, n_days, rngs["purchases"])
    cust["dropout_day"] = pur.dropout_day
    arrays, orders = _orders_frame(pur, cust, cids_pa, start, rngs["purchases"])
    lines_needed = want & {"order_lines", "events", "texts"}
    lines = (_purchases.build_lines(pur, arrays["customer"], arrays["day"], arrays["value"],
                                    prods["price"].to_numpy(), chooser, rngs["lines"])
             if lines_needed else None)

    first_seen = day_to_timestamp(start, cust["acquired_day"].to_numpy())
    customers = pd.DataFrame({
        "customer_id": cids, "first_seen": first_seen,
        "region": _labels(cust["region"].to_numpy(), REGIONS),
        "age_band": _labels(cust["age_band"].to_numpy(), AGE_BANDS),
        "device": _labels(cust["device"].to_numpy(), DEVICES),
        "income_band": _labels(cust["income_band"].to_numpy(), INCOME_BANDS),
    })
    launched = start - pd.Timedelta(days=market.history_days) - pd.to_timedelta(
        rngs["catalogue"].uniform(0, 1_000, len(prods)), unit="D")
    products = pd.DataFrame({
        "product_id": pids,
        "category": pd.Series(prods["category_name"].to_numpy(), dtype=STR),
        "name": pd.Series((prods["name_adjective"] + " " + prods["category_name"] + " "
                           + pd.Series(np.arange(1, len(prods) + 1)).astype(str)).to_numpy(),
                          dtype=STR),
        "price": prods["price"].to_numpy(),
        "cost": prods["cost"].to_numpy(),
        "currency": pd.Series(np.full(len(prods), "EUR", dtype=object), dtype=STR),
        "launched": launched.floor("s").to_numpy().astype("datetime64[s]"),
    })
    tc = _truth_customers(cust, pur, cids, start)
    label, ref_uplift = _response.uplift_groups(tc)
    tc["uplift_group"] = label
    tc["reference_uplift"] = ref_uplift

    events = texts = consents = None
    text_truth = pd.DataFrame({"text_id": pd.Series([], dtype=STR),
                               "sentiment": pd.Series([], dtype=STR)})
    if "events" in want:
        events = _events.build_events(cust, arrays, lines, cids_pa, pids_pa, chooser,
                                      n_days=n_days, start=start, rng=rngs["events"])
    if "texts" in want:
        first_line = np.flatnonzero(lines["line_no"] == 1)
        first_product = lines["product"][first_line][np.argsort(lines["order"][first_line])]
        aff = np.einsum("ij,ij->i", taste[arrays["customer"]], chooser.vec[first_product])
        texts, text_truth = _texts.build_texts(
            cust, arrays, first_product, aff, prods["category_name"].to_numpy(dtype=object),
            n_days=n_days, customer_ids=cids_pa, product_ids=pids_pa, start=start,
            rng=rngs["texts"])
    if "consents" in want:
        consents = _texts.build_consents(cust, cids_pa, n_days=n_days, start=start,
                                         rng=rngs["consents"])
    order_lines = _lines_frame(lines, arrays, pids_pa) if "order_lines" in want else None

    c_, p_, s_ = chooser.top_k(TOP_K if full_truth else 0)
    affinity = pd.DataFrame({
        "customer_id": pd.Series(cids_pa.take(pa.array(c_)), dtype=STR),
        "product_id": pd.Series(pids_pa.take(pa.array(p_)), dtype=STR),
        "rank": np.tile(np.arange(1, len(c_) // max(n, 1) + 1), n).astype(np.int64),
        "affinity": s_,
    })
    tprod = prods.drop(columns=["name_adjective"]).assign(product_id=pids.to_numpy())
    truth = Truth(
        customers=tc,
        params=model_params(market, eff),
        item_affinity=affinity,
        treatment_effects=(_response.treatment_effects(tc, market.scenarios) if full_truth
                           else pd.DataFrame()),
        texts=text_truth,
        actions=_response.action_catalogue(),
        products=tprod.set_index("product_id"),
    )
    keep = {name: frame for name, frame in (
        ("customers", customers), ("products", products), ("orders", orders),
        ("order_lines", order_lines), ("events", events), ("texts", texts),
        ("consents", consents))}
    from marketloop.simulate._columns import empty_table

    return Shop(**{k: (v if v is not None and k in want else empty_table(k))
                   for k, v in keep.items()}, truth=truth)



