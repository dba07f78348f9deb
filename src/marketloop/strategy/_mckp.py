"""Multiple-choice knapsack: at most one option per customer, total cost within a budget.

The greedy of Sinha & Zoltners (1979): each customer's options are reduced to the upper
convex hull of (cost, profit) from "nothing" at (0, 0); the hull's steps, pooled over all
customers, are taken in decreasing profit per unit of cost. Taken until the first step that
does not fit, that is the LP relaxation's optimum less the fractional step; this version
then keeps going with the steps that still fit, so the plan is never over budget and the
LP optimum bounds what any plan could earn. Sorting makes it O(S log S) for S hull steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Why a customer ended where it did (``Solution.status``).
TAKEN, NO_PROFIT, BUDGET, SEGMENT_COUNT, SEGMENT_SPEND = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class Steps:
    """The hull steps of every customer: one row per step, in hull order within a customer."""

    row: np.ndarray
    option: np.ndarray
    d_cost: np.ndarray
    d_profit: np.ndarray
    step: np.ndarray
    slope: np.ndarray


@dataclass(frozen=True)
class Solution:
    """A solved allocation: per customer option (``-1`` none), status, rank; totals."""

    choice: np.ndarray
    status: np.ndarray
    upgrade_status: np.ndarray
    best: np.ndarray
    rank: np.ndarray
    spend: float
    profit: float
    upper_bound: float


def hull_steps(profit: np.ndarray, cost: np.ndarray) -> Steps:
    """Upper convex hull of each row's options from (0, 0), as increments.

    Options with a non-finite or non-positive profit are left out. Among options on one
    line from the current point the cheapest is taken first (so it stays a choice), and
    among free ones the most profitable.
    """
    n, k = profit.shape
    valid = np.isfinite(profit) & np.isfinite(cost) & (profit > 0)
    cur_c, cur_p = np.zeros(n), np.zeros(n)
    rows, opts, dcs, dps, steps = [], [], [], [], []
    live = np.flatnonzero(valid.any(axis=1))
    for s in range(k):
        if live.size == 0:
            break
        dc = cost[live] - cur_c[live, None]
        dp = profit[live] - cur_p[live, None]
        cand = valid[live] & (dp > 0) & (dc >= 0)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # tiny dc: +inf
            slope = np.where(dc > 0, dp / dc, np.inf)
        slope = np.where(cand, slope, -np.inf)
        best = slope.max(axis=1)
        has = best > -np.inf
        on_line = cand & (slope == best[:, None])
        dc_line = np.where(on_line, dc, np.inf)
        nearest = on_line & (dc_line == dc_line.min(axis=1, keepdims=True))
        j = np.where(nearest, dp, -np.inf).argmax(axis=1)
        live, j = live[has], j[has]
        r = np.arange(len(has))[has]
        rows.append(live)
        opts.append(j)
        dcs.append(dc[r, j])
        dps.append(dp[r, j])
        steps.append(np.full(live.size, s))
        cur_c[live] = cost[live, j]
        cur_p[live] = profit[live, j]
    row, d_cost, d_profit = _cat(rows, np.int64), _cat(dcs, np.float64), _cat(dps, np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        slope = np.where(d_cost > 0, d_profit / d_cost, np.inf)
    return Steps(row, _cat(opts, np.int64), d_cost, d_profit, _cat(steps, np.int64), slope)


def _cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    """Concatenate, or an empty array of ``dtype``."""
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)


def priority(steps: Steps) -> np.ndarray:
    """Order of the steps: by slope, highest first; a customer's steps stay in hull order."""
    order = np.lexsort((steps.step, steps.row))
    # rounding may leave a later step a hair steeper than an earlier one: make slopes monotone
    slope = steps.slope[order].copy()
    for s in range(1, int(steps.step.max(initial=0)) + 1):
        later = steps.step[order] == s
        prev = np.flatnonzero(later) - 1
        slope[later] = np.minimum(slope[later], slope[prev])
    monotone = np.empty_like(slope)
    monotone[order] = slope
    return np.lexsort((steps.step, steps.row, -monotone))


def upper_bound(steps: Steps, order: np.ndarray, budget: float,
                limits: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> float:
    """A bound on what any plan can earn: the LP relaxation's optimum under the budget,
    tightened by the segment limits when there are some.

    With ``limits`` (group per row, most customers and most spend per group), each limited
    group can earn at most the lesser of its LP optimum under ``min(budget, max_spend)``
    and the sum of its ``max_count`` most profitable customers' best options; the bound is
    the lesser of the budget-only LP and the sum of those plus the other rows' LP.
    """
    alone = _lp(steps.d_cost[order], steps.d_profit[order], budget)
    if limits is None:
        return alone
    group, max_count, max_spend = limits
    step_group = group[steps.row[order]]
    total = 0.0
    for g in np.unique(step_group).tolist():
        mine = order[step_group == g]
        dc, dp = steps.d_cost[mine], steps.d_profit[mine]
        if g < 0 or not (np.isfinite(max_count[g]) or np.isfinite(max_spend[g])):
            total += _lp(dc, dp, budget)
            continue
        bound = _lp(dc, dp, min(budget, float(max_spend[g])))
        if np.isfinite(max_count[g]):  # a row's steps add up to its best option's profit
            best = np.bincount(steps.row[mine], weights=dp)
            best = np.sort(best[best > 0])[::-1]
            bound = min(bound, float(best[: int(max_count[g])].sum()))
        total += bound
    return min(alone, total)


def _lp(dc: np.ndarray, dp: np.ndarray, budget: float) -> float:
    """The fractional knapsack over steps already in priority order."""
    cum = np.cumsum(dc)
    fits = int(np.searchsorted(cum, budget, side="right"))
    total = float(dp[:fits].sum())
    if fits < len(dc) and dc[fits] > 0:
        left = budget - (cum[fits - 1] if fits else 0.0)
        total += float(dp[fits]) * left / float(dc[fits])
    return total


def solve(
    profit: np.ndarray,
    cost: np.ndarray,
    budget: float,
    *,
    group: np.ndarray | None = None,
    max_count: np.ndarray | None = None,
    max_spend: np.ndarray | None = None,
) -> Solution:
    """Choose at most one option per row: total cost within ``budget`` and group limits.

    ``profit`` and ``cost`` are (n, k); NaN profit marks an option a row may not take.
    ``group`` gives each row a group code in ``0..g-1`` (``-1``: no group), with
    ``max_count`` and ``max_spend`` per group (``inf`` for none).
    """
    n = profit.shape[0]
    steps = hull_steps(profit, cost)
    order = priority(steps)
    choice = np.full(n, -1, dtype=np.int64)
    status = np.full(n, NO_PROFIT, dtype=np.int64)
    status[np.unique(steps.row)] = BUDGET
    upgrade = np.full(n, TAKEN, dtype=np.int64)
    rank = np.zeros(n, dtype=np.int64)
    best = top_option(steps, n)
    first = steps.step[order] == 0
    rank[steps.row[order][first]] = np.arange(1, int(first.sum()) + 1)
    limits = None
    if group is not None and (max_count is not None or max_spend is not None):
        n_groups = len(max_count if max_count is not None else max_spend)
        limits = (group.astype(np.int64),
                  np.full(n_groups, np.inf) if max_count is None else max_count,
                  np.full(n_groups, np.inf) if max_spend is None else max_spend)
    taken_log = _greedy(steps, order, budget, choice, status, upgrade, limits)
    _repair(taken_log, cost, budget, choice, status, upgrade, limits)
    taken = choice >= 0
    spent = math.fsum(cost[taken, choice[taken]].tolist())
    chosen_profit = math.fsum(profit[taken, choice[taken]].tolist())
    return Solution(choice, status, upgrade, best, rank, spent, chosen_profit,
                    upper_bound(steps, order, budget, limits))


def _greedy(steps: Steps, order: np.ndarray, budget: float, choice: np.ndarray,
            status: np.ndarray, upgrade: np.ndarray,
            limits: tuple[np.ndarray, np.ndarray, np.ndarray] | None) -> list[tuple[int, int]]:
    """Take the steps in ``order`` while they fit; returns (row, previous choice) per step."""
    dcs = steps.d_cost[order]
    # once the budget left is below every remaining step's cost, nothing more fits
    tail = np.minimum.accumulate(dcs[::-1])[::-1].tolist() if len(dcs) else []
    rows, opts = steps.row[order].tolist(), steps.option[order].tolist()
    first, dcs_l = (steps.step[order] == 0).tolist(), dcs.tolist()
    n_groups = len(limits[1]) if limits is not None else 0
    group_l = limits[0].tolist() if limits is not None else [-1] * len(choice)
    max_count = limits[1].tolist() if limits is not None else []
    max_spend = limits[2].tolist() if limits is not None else []
    g_count, g_spend = [0] * n_groups, [0.0] * n_groups
    blocked = [False] * len(choice)
    current = [-1] * len(choice)
    log: list[tuple[int, int]] = []
    spent = 0.0
    for t in range(len(rows)):
        if spent + tail[t] > budget:
            break
        r = rows[t]
        if blocked[r]:
            continue
        dc, g = dcs_l[t], group_l[r]
        why = TAKEN
        if spent + dc > budget:
            why = BUDGET
        elif g >= 0 and first[t] and g_count[g] >= max_count[g]:
            why = SEGMENT_COUNT
        elif g >= 0 and g_spend[g] + dc > max_spend[g]:
            why = SEGMENT_SPEND
        if why != TAKEN:
            blocked[r] = True
            (status if first[t] else upgrade)[r] = why
            continue
        spent += dc
        if g >= 0:
            g_spend[g] += dc
            g_count[g] += first[t]
        log.append((r, current[r]))
        current[r] = opts[t]
    choice[:] = current
    status[choice >= 0] = TAKEN
    # rows whose later steps the loop never reached wanted an upgrade the budget did not fund
    pending = (choice >= 0) & ~np.array(blocked) & (choice != top_option(steps, len(choice)))
    upgrade[pending] = BUDGET
    return log


def _repair(log: list[tuple[int, int]], cost: np.ndarray, budget: float, choice: np.ndarray,
            status: np.ndarray, upgrade: np.ndarray,
            limits: tuple[np.ndarray, np.ndarray, np.ndarray] | None) -> None:
    """Undo the latest steps while an exact sum (fsum) of the chosen costs exceeds a limit.

    The running sum of cost increments can differ from the exact sum by a few ulps; this
    makes "never over budget" exact. It almost never undoes anything.
    """
    group = limits[0] if limits is not None else np.full(len(choice), -1)

    def over() -> np.ndarray | None:
        taken = choice >= 0
        spend = cost[taken, choice[taken]]
        if math.fsum(spend.tolist()) > budget:
            return np.ones(len(choice), dtype=bool)
        if limits is None:
            return None
        for g, cap in enumerate(limits[2].tolist()):
            in_g = taken & (group == g)
            if math.fsum(cost[in_g, choice[in_g]].tolist()) > cap:
                return group == g
        return None

    while log and (mask := over()) is not None:
        i = max(k for k, (r, _) in enumerate(log) if mask[r])
        r, previous = log.pop(i)
        choice[r] = previous
        if previous < 0:
            status[r] = BUDGET
        else:
            upgrade[r] = BUDGET


def top_option(steps: Steps, n: int) -> np.ndarray:
    """Each row's last hull option (its most profitable), ``-1`` for rows without steps."""
    top = np.full(n, -1, dtype=np.int64)
    if len(steps.row):
        idx = np.lexsort((steps.step, steps.row))
        row = steps.row[idx]
        last = idx[np.r_[row[1:] != row[:-1], True]]
        top[steps.row[last]] = steps.option[last]
    return top
