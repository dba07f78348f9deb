"""Reviews and support messages from a small template grammar, and consents."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from marketloop.simulate._params import CHANNELS, PURPOSES
from marketloop.simulate._util import STR, day_to_timestamp, make_ids, sigmoid

LABELS = np.array(["negative", "neutral", "positive"])
P_REVIEW = 0.12  # share of orders followed by a review of their first item
SUPPORT_PER_YEAR = 0.15  # support messages per customer-year at satisfaction 0
#: Latent sentiment = SAT * satisfaction + AFF * item affinity + N(0, NOISE); cut at +-0.5.
SENT_SAT, SENT_AFF, SENT_NOISE, SENT_CUT = 0.8, 0.3, 0.6, 0.5

_REVIEW = {
    0: (["Disappointed.", "Not what I expected.", "Poor quality.", "Would not buy again."],
        ["The {} item broke after a week", "The {} product looks cheap",
         "My {} order was late and damaged", "This {} item is not worth the money"]),
    1: (["It's okay.", "Does the job.", "Average.", "Not bad, not great."],
        ["The {} item is as described", "A fairly normal {} product",
         "The {} order arrived on time", "This {} item is fine for the price"]),
    2: (["Love it!", "Great purchase.", "Really happy.", "Excellent quality."],
        ["The {} item is even better than the photos", "Best {} product I have bought",
         "My {} order arrived fast and well packed", "This {} item is worth every cent"]),
}
_SUPPORT = {
    0: (["Hello,", "This is unacceptable.", "I am upset.", "Hi,"],
        ["my {} order still has not arrived", "I want a refund for the {} item",
         "the {} product I got is wrong", "nobody answers about my {} return"]),
    1: (["Hello,", "Hi,", "Good morning,", "Quick question:"],
        ["how do I change the address of my {} order", "is the {} item back in stock",
         "can I exchange the {} product for another size", "where is my {} invoice"]),
    2: (["Hi,", "Thanks!", "Hello,", "Just a note:"],
        ["the {} order arrived, thank you for the quick help", "great service with my {} return",
         "happy with the {} item, thanks", "thanks for sorting out my {} order"]),
}


def _bodies(grammar: dict, label: np.ndarray, cat_name: np.ndarray,
            rng: np.random.Generator) -> pa.Array:
    n = len(label)
    head = np.empty(n, dtype=object)
    pre = np.empty(n, dtype=object)
    post = np.empty(n, dtype=object)
    i_head, i_mid = rng.integers(0, 4, n), rng.integers(0, 4, n)
    for lab, (heads, mids) in grammar.items():
        sel = label == lab
        head[sel] = np.array(heads, dtype=object)[i_head[sel]]
        split = np.array([m.split("{}") for m in mids], dtype=object)
        pre[sel] = split[i_mid[sel], 0]
        post[sel] = split[i_mid[sel], 1]
    return pc.binary_join_element_wise(
        pa.array(head, pa.string()), " ", pa.array(pre, pa.string()),
        pa.array(cat_name, pa.string()), pa.array(post, pa.string()), ".", "")


def _label(latent: np.ndarray) -> np.ndarray:
    return np.where(latent < -SENT_CUT, 0, np.where(latent > SENT_CUT, 2, 1))


def build_texts(cust: pd.DataFrame, orders: dict[str, np.ndarray], first_product: np.ndarray,
                affinity: np.ndarray, cat_name: np.ndarray, *, n_days: int,
                customer_ids: pa.Array, product_ids: pa.Array, start: pd.Timestamp,
                rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reviews and support messages inside the period; returns (texts, truth labels)."""
    sat = cust["satisfaction"].to_numpy()
    o_day = orders["day"]
    rev = np.flatnonzero((rng.random(len(o_day)) < P_REVIEW) & (o_day < n_days))
    r_day = o_day[rev] + rng.uniform(2, 20, len(rev))
    keep = (r_day >= 0) & (r_day < n_days)
    rev, r_day = rev[keep], r_day[keep]
    r_cust = orders["customer"][rev]
    r_prod = first_product[rev]
    latent_r = SENT_SAT * sat[r_cust] + SENT_AFF * affinity[rev] + rng.normal(0, SENT_NOISE,
                                                                             len(rev))
    rating = np.clip(np.rint(3 + 1.3 * latent_r + rng.normal(0, 0.4, len(rev))), 1, 5)

    acq = cust["acquired_day"].to_numpy()
    lo = np.clip(acq, 0, n_days)
    n_sup = rng.poisson(SUPPORT_PER_YEAR * np.exp(-0.8 * sat) * (n_days - lo) / 365.0)
    s_cust = np.repeat(np.arange(len(sat)), n_sup)
    s_day = lo[s_cust] + rng.random(len(s_cust)) * (n_days - lo[s_cust])
    latent_s = SENT_SAT * sat[s_cust] - 0.6 + rng.normal(0, SENT_NOISE, len(s_cust))
    s_cat = cat_name[rng.integers(0, len(cat_name), len(s_cust))]

    lab_r, lab_s = _label(latent_r), _label(latent_s)
    body = pa.concat_arrays([_bodies(_REVIEW, lab_r, cat_name[r_prod], rng),
                             _bodies(_SUPPORT, lab_s, s_cat, rng)])
    day = np.concatenate([r_day, s_day])
    order = np.argsort(day, kind="stable")
    cust_all = np.concatenate([r_cust, s_cust])[order]
    prod_all = np.concatenate([r_prod, np.full(len(s_cust), -1)])[order]
    n = len(order)
    text_ids = make_ids("t", np.arange(1, n + 1), 8)
    texts = pd.DataFrame({
        "text_id": text_ids,
        "customer_id": pd.Series(customer_ids.take(pa.array(cust_all)), dtype=STR),
        "ts": day_to_timestamp(start, day[order]),
        "kind": pd.Series(np.where(order < len(rev), "review", "support"), dtype=STR),
        "body": pd.Series(body.take(pa.array(order)), dtype=STR),
        "rating": pd.array(np.concatenate([rating, np.zeros(len(s_cust))])[order].astype(np.int64),
                           dtype="Int64"),
        "product_id": pd.Series(product_ids.take(pa.array(np.maximum(prod_all, 0),
                                                          mask=prod_all < 0)), dtype=STR),
    })
    texts["rating"] = texts["rating"].mask(order >= len(rev))
    latent = np.concatenate([latent_r, latent_s])[order]
    truth = pd.DataFrame({
        "text_id": text_ids,
        "sentiment": pd.Series(LABELS[_label(latent)], dtype=STR),
        "latent_sentiment": latent,
    })
    return texts, truth


#: Base consent rate per channel (marketing); personalisation is granted more often.
_CONSENT_BASE = {"email": 0.65, "sms": 0.3, "push": 0.4, "app": 0.5}


def build_consents(cust: pd.DataFrame, customer_ids: pa.Array, *, n_days: int,
                   start: pd.Timestamp, rng: np.random.Generator) -> pd.DataFrame:
    """Latest consent per customer x channel x purpose; tolerant customers grant more."""
    n = len(cust)
    n_c, n_p = len(CHANNELS), len(PURPOSES)
    reps = n_c * n_p
    ci = np.repeat(np.arange(n), reps)
    ch = np.tile(np.repeat(np.arange(n_c), n_p), n)
    pu = np.tile(np.arange(n_p), n * n_c)
    base = np.array([_CONSENT_BASE[c] for c in CHANNELS])[ch]
    tol = cust["contact_tolerance"].to_numpy()[ci]
    logit_base = np.log(base / (1 - base)) + 0.8 * (pu == 1) + 2.0 * (tol - 0.45)
    granted = rng.random(len(ci)) < sigmoid(logit_base)
    acq = cust["acquired_day"].to_numpy()[ci]
    delay = rng.exponential(20.0, len(ci)) * (rng.random(len(ci)) < 0.3)
    day = np.minimum(acq + delay, n_days - 1e-6)
    return pd.DataFrame({
        "customer_id": pd.Series(customer_ids.take(pa.array(ci)), dtype=STR),
        "channel": pd.Series(np.array(CHANNELS)[ch], dtype=STR),
        "purpose": pd.Series(np.array(PURPOSES)[pu], dtype=STR),
        "granted": granted,
        "ts": day_to_timestamp(start, day),
        "source": pd.Series(np.where(delay > 0, "preference_center", "signup"), dtype=STR),
    })
