"""Reading the truth: true item affinity for any pair, and writing ``truth/`` to parquet."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from marketloop.simulate._market import Truth
from marketloop.simulate._params import TASTE_DIMS, TASTE_SCALE
from marketloop.simulate._util import UnknownIdError, describe


def true_affinity(truth: Truth, customer_ids: Sequence[str] | pd.Series,
                  product_ids: Sequence[str] | pd.Series) -> pd.Series:
    """True affinity ``popularity_j + u_i . v_j`` of each (customer, product) pair.

    It is the log-weight of the item in the customer's softmax choice, before the category's
    seasonal term; ``truth.item_affinity`` lists each customer's top items by it.

    Examples
    --------
    >>> from marketloop.simulate import Market, true_affinity
    >>> shop = Market(n_customers=300, n_days=60, random_state=0).simulate(("customers",))
    >>> top = shop.truth.item_affinity.iloc[0]
    >>> round(float(true_affinity(shop.truth, [top.customer_id], [top.product_id]).iloc[0]
    ...             - top.affinity), 9) + 0.0
    0.0
    """
    tc, tp = truth.customers, truth.products
    ci = tc.index.get_indexer(pd.Index(np.asarray(customer_ids, dtype=object)))
    pi = tp.index.get_indexer(pd.Index(np.asarray(product_ids, dtype=object)))
    if (ci < 0).any() or (pi < 0).any():
        lost = [*np.asarray(customer_ids, dtype=object)[ci < 0][:2],
                *np.asarray(product_ids, dtype=object)[pi < 0][:2]]
        raise UnknownIdError(describe("true_affinity", "customer and product ids of the market",
                                      f"unknown ids, e.g. {lost}"))
    u = tc[[f"taste_{k}" for k in range(TASTE_DIMS)]].to_numpy()[ci]
    v = tp[[f"item_{k}" for k in range(TASTE_DIMS)]].to_numpy()[pi]
    score = tp["popularity"].to_numpy()[pi] + TASTE_SCALE * np.einsum("ij,ij->i", u, v)
    return pd.Series(score, name="affinity")


def _jsonable(value: object) -> object:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_truth(truth: Truth, out_dir: str | Path) -> list[Path]:
    """Write ``customers``, ``products``, ``item_affinity``, ``treatment_effects``, ``texts``,
    ``actions`` as parquet and ``params.json`` into ``out_dir``; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    frames = {
        "customers": truth.customers.reset_index(),
        "products": truth.products.reset_index(),
        "item_affinity": truth.item_affinity,
        "treatment_effects": truth.treatment_effects,
        "texts": truth.texts,
        "actions": truth.actions,
    }
    for name, frame in frames.items():
        path = out / f"{name}.parquet"
        frame.to_parquet(path, index=False)
        written.append(path)
    path = out / "params.json"
    path.write_text(json.dumps(_jsonable(truth.params), indent=2, default=str), encoding="utf-8")
    written.append(path)
    return written
