"""Latent customer traits: BG/NBD rates, Gamma-Gamma spend, satisfaction, tastes, channels."""

from __future__ import annotations

import numpy as np
import pandas as pd

from marketloop.simulate._params import (
    AGE_BANDS,
    BGNBD,
    CHANNEL_MEAN,
    CHANNELS,
    DEVICES,
    FORMATS,
    GAMMA_GAMMA,
    INCOME_BANDS,
    INCOME_SPEND_RHO,
    REGIONS,
    SAT_DROPOUT_RHO,
    TASTE_DIMS,
)
from marketloop.simulate._util import rank_couple

#: Age-band multipliers of channel responsiveness (young: push/app, older: email).
_AGE_CHANNEL = np.array(
    [  # email, sms, push, app
        [0.6, 0.9, 1.5, 1.5],
        [0.8, 1.0, 1.3, 1.3],
        [1.0, 1.0, 1.0, 1.0],
        [1.2, 1.0, 0.8, 0.8],
        [1.4, 1.1, 0.6, 0.6],
        [1.5, 1.2, 0.4, 0.4],
    ]
)
_PREFERRED_HOURS = np.array([8, 12, 18, 21])


def draw_customers(
    n: int,
    n_days: int,
    rng: np.random.Generator,
    *,
    history_share: float,
    history_days: int,
) -> pd.DataFrame:
    """Draw every latent trait of ``n`` customers; one row each, positional index.

    Days are counted from the period start (negative: acquired before it).
    """
    r, alpha, a, b = BGNBD["r"], BGNBD["alpha"], BGNBD["a"], BGNBD["b"]
    p_gg, q, gamma = GAMMA_GAMMA["p"], GAMMA_GAMMA["q"], GAMMA_GAMMA["gamma"]

    before = rng.random(n) < history_share
    acquired = np.where(
        before, -rng.random(n) * history_days, rng.random(n) * n_days
    )
    lam = rng.gamma(r, 1.0 / alpha, n)  # purchases per week
    satisfaction = rng.standard_normal(n)
    rho = SAT_DROPOUT_RHO
    dropout_score = -rho * satisfaction + np.sqrt(1 - rho**2) * rng.standard_normal(n)
    p = rank_couple(rng.beta(a, b, n), dropout_score)

    income = rng.choice(len(INCOME_BANDS), size=n, p=[0.3, 0.5, 0.2])
    inc_z = (income - income.mean()) / max(income.std(), 1e-9)
    rho = INCOME_SPEND_RHO
    nu_score = -rho * inc_z + np.sqrt(1 - rho**2) * rng.standard_normal(n)
    nu = rank_couple(rng.gamma(q, 1.0 / gamma, n), nu_score)

    region = rng.choice(len(REGIONS), size=n, p=[0.25, 0.2, 0.2, 0.2, 0.15])
    age = rng.choice(len(AGE_BANDS), size=n, p=[0.12, 0.24, 0.22, 0.18, 0.14, 0.10])
    device = rng.choice(len(DEVICES), size=n, p=[0.6, 0.32, 0.08])
    price_sens = rng.lognormal(0.0, 0.5, n) * np.array([1.35, 1.0, 0.7])[income]
    tolerance = rng.beta(2.0, 2.5, n)
    base = np.array([CHANNEL_MEAN[c] for c in CHANNELS])
    resp = base * _AGE_CHANNEL[age] * rng.gamma(3.0, 1.0 / 3.0, (n, len(CHANNELS)))
    hour = (_PREFERRED_HOURS[rng.integers(0, len(_PREFERRED_HOURS), n)]
            + np.rint(rng.normal(0, 1.5, n))).astype(np.int64) % 24
    taste = rng.normal(0.0, TASTE_DIMS**-0.25, (n, TASTE_DIMS))

    out = {
        "acquired_day": acquired,
        "lambda": lam,
        "p": p,
        "nu": nu,
        "satisfaction": satisfaction,
        "price_sensitivity": price_sens,
        "contact_tolerance": tolerance,
        **{f"resp_{c}": resp[:, j] for j, c in enumerate(CHANNELS)},
        "preferred_hour": hour,
        "preferred_format": rng.integers(0, len(FORMATS), n),
        "region": region,
        "age_band": age,
        "device": device,
        "income_band": income,
        **{f"taste_{k}": taste[:, k] for k in range(TASTE_DIMS)},
    }
    frame = pd.DataFrame(out)
    frame["mean_spend"] = p_gg / nu  # E[z | nu] of the Gamma-Gamma model
    return frame
