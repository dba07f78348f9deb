"""The ``reason`` of every plan row: why this offer, or why none."""

from __future__ import annotations

import numpy as np

from marketloop.strategy import _mckp


def reasons(sol: _mckp.Solution, profit: np.ndarray, cost: np.ndarray, offers: np.ndarray,
            group: np.ndarray | None, names: list[str], max_count: np.ndarray | None,
            max_spend: np.ndarray | None) -> list[str]:
    """One line per customer, e.g. ``best of 4 offers: +3.10 profit per 1.20 budget; rank 12``."""
    n = profit.shape[0]
    rows = np.arange(n)
    finite = np.isfinite(profit)
    n_eligible = finite.sum(axis=1).tolist()
    top = np.where(sol.best >= 0, sol.best, 0)
    top_p, top_c = profit[rows, top].tolist(), cost[rows, top].tolist()
    pick = np.where(sol.choice >= 0, sol.choice, 0)
    pick_p, pick_c = profit[rows, pick].tolist(), cost[rows, pick].tolist()
    with np.errstate(invalid="ignore"):
        max_p = np.where(finite.any(axis=1), np.nanmax(np.where(finite, profit, -np.inf),
                                                        axis=1), np.nan).tolist()
    limits = _limit_texts(group, names, max_count, max_spend, n)
    out = []
    for i, (status, upgrade, choice, best, rank) in enumerate(zip(
            sol.status.tolist(), sol.upgrade_status.tolist(), sol.choice.tolist(),
            sol.best.tolist(), sol.rank.tolist(), strict=True)):
        if status == _mckp.NO_PROFIT:
            out.append("no offer: no eligible offer" if n_eligible[i] == 0
                       else f"no offer: best expected profit {max_p[i]:+.2f}")
            continue
        if status != _mckp.TAKEN:
            why = "budget exhausted" if status == _mckp.BUDGET else limits[i]
            out.append(f"{why}: best offer {offers[best]} {top_p[i]:+.2f} profit per "
                       f"{top_c[i]:.2f} budget; rank {rank:,}")
            continue
        head = "best" if choice == best else str(offers[choice])
        of = f"of {n_eligible[i]} offers" if n_eligible[i] != 1 else "of 1 offer"
        text = f"{head} {of}: {pick_p[i]:+.2f} profit per {pick_c[i]:.2f} budget; rank {rank:,}"
        if choice != best:
            why = "budget exhausted" if upgrade == _mckp.BUDGET else limits[i]
            text += (f"; {offers[best]} would add {top_p[i] - pick_p[i]:+.2f} for "
                     f"{top_c[i] - pick_c[i]:.2f} more ({why})")
        out.append(text)
    return out


def _limit_texts(group: np.ndarray | None, names: list[str], max_count: np.ndarray | None,
                 max_spend: np.ndarray | None, n: int) -> list[str]:
    """Per customer, the words for its segment's limit (the same for count and spend)."""
    if group is None or max_count is None or max_spend is None:
        return ["segment limit reached"] * n
    words = []
    for name, count, spend in zip(names, max_count.tolist(), max_spend.tolist(), strict=True):
        parts = ([f"max_count {int(count):,}"] if np.isfinite(count) else []) + (
            [f"max_spend {spend:,.2f}"] if np.isfinite(spend) else [])
        words.append(f"segment limit reached ({name}: {', '.join(parts)})")
    return [words[g] if g >= 0 else "segment limit reached" for g in group.tolist()]
