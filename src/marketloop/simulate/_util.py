"""Small vectorised helpers shared by the simulator modules."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

#: pandas string dtype used for every id and label column.
STR = pd.StringDtype("pyarrow", na_value=np.nan)


def make_ids(prefix: str, numbers: np.ndarray, width: int) -> pd.Series:
    """Ids such as ``c0000042``: ``prefix`` and the zero-padded numbers, built in Arrow."""
    digits = pc.utf8_lpad(pc.cast(pa.array(np.asarray(numbers, dtype=np.int64)), pa.string()),
                          width, "0")
    return pd.Series(pc.binary_join_element_wise(prefix, digits, ""), dtype=STR)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function."""
    return 1.0 / (1.0 + np.exp(-x))


def logit(p: np.ndarray) -> np.ndarray:
    """Inverse of :func:`sigmoid`, clipped away from 0 and 1."""
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return np.log(p) - np.log1p(-p)


def rank_couple(values: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Reassign ``values`` so that their ranks follow ``score`` (marginal kept exactly)."""
    out = np.empty_like(values)
    out[np.argsort(score, kind="stable")] = np.sort(values)
    return out


def group_starts(counts: np.ndarray) -> np.ndarray:
    """Start offset of each group in a flat array holding ``counts[i]`` items of group i."""
    starts = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    return starts


def rank_in_group(counts: np.ndarray) -> np.ndarray:
    """0-based position of each flat item inside its group (groups contiguous)."""
    total = int(counts.sum())
    return np.arange(total, dtype=np.int64) - np.repeat(group_starts(counts), counts)


def grouped_cumsum(x: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Cumulative sum of ``x`` restarted at each group (groups contiguous)."""
    c = np.cumsum(x)
    if not len(c):  # no items at all (e.g. a tiny shop where nobody bought)
        return c
    starts = group_starts(counts)
    before = np.where(starts > 0, c[np.maximum(starts - 1, 0)], 0.0)
    return c - np.repeat(before, counts)


def day_to_timestamp(start: pd.Timestamp, days: np.ndarray) -> np.ndarray:
    """Float days after ``start`` to tz-naive UTC ``datetime64[s]``."""
    secs = np.floor(np.asarray(days, dtype=np.float64) * 86_400.0).astype(np.int64)
    return np.datetime64(start.to_datetime64(), "s") + secs.astype("timedelta64[s]")


def circular_hour_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance in hours on the 24-hour clock."""
    d = np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) % 24.0
    return np.minimum(d, 24.0 - d)


def describe(where: str, expected: str, found: str, hint: str = "") -> str:
    """The project's error message shape, ``where: expected ...; found ....`` and the remedy
    (as :func:`marketloop.exceptions.describe`; the simulator imports nothing of ours)."""
    message = f"{where}: expected {expected}; found {found}."
    return f"{message} {hint}" if hint else message


class UnknownIdError(ValueError, KeyError):
    """An id the simulated market does not hold.

    A ``ValueError`` like the simulator's other refusals of bad input, and a ``KeyError``
    as a failed lookup, so either ``except`` catches it.
    """

    def __str__(self) -> str:  # KeyError's own would print the message quoted
        return str(self.args[0]) if self.args else ""
