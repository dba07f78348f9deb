"""A log of logged bandit feedback: what was shown, where, with what probability, and the reward.

Two layouts are read: marketloop's own decisions log (``action``, ``reward``,
``propensity``, optional ``position``, every other numeric column a context feature) and the
Open Bandit Dataset as published (``item_id``, ``position``, ``click``,
``propensity_score``, ``user_feature_*``, ``user-item_affinity_*``), CSV plain or
gzip-compressed, or Parquet. A log that cannot support off-policy evaluation (no
propensities, a propensity of zero for a chosen action) is refused with the rows at fault.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from marketloop.exceptions import IngestError, SchemaError, describe

#: Columns of marketloop's decisions log.
DECISIONS_COLUMNS = ("action", "reward", "propensity")
#: Columns of an Open Bandit Dataset log.
OBD_COLUMNS = ("item_id", "position", "click", "propensity_score")
OBD_AFFINITY = "user-item_affinity_"


@dataclass
class BanditLog:
    """Logged bandit feedback, one row per logged choice.

    Attributes
    ----------
    action : ndarray of int, shape (n,)
        Index of the action the logging policy chose (0-based).
    reward : ndarray of float, shape (n,)
        The reward observed for it.
    propensity : ndarray of float, shape (n,)
        Probability that the logging policy chose that action (at that position).
    position : ndarray of int, shape (n,)
        Slot of the choice (0-based); all zero for single-choice logs.
    context : ndarray of float, shape (n, d)
        Context features (may have zero columns).
    action_context : ndarray of float, shape (n, n_actions) or None
        A per-row, per-action feature (the Open Bandit Dataset's user-item affinity).
    n_actions : int
        Number of actions, read from the data.
    len_list : int
        Number of positions, read from the data.
    source : str
        Where the log came from (for messages).
    """

    action: np.ndarray
    reward: np.ndarray
    propensity: np.ndarray
    position: np.ndarray
    context: np.ndarray
    action_context: np.ndarray | None
    n_actions: int
    len_list: int
    source: str = "log"

    @property
    def n_rounds(self) -> int:
        return len(self.action)

    def check(self) -> None:
        """Refuse a log that no estimator can read (as :func:`read_log` does for files):
        unequal lengths, actions or positions out of range, propensities outside (0, 1],
        rewards that are not finite."""
        n = len(self.action)
        sizes = {"reward": len(self.reward), "propensity": len(self.propensity),
                 "position": len(self.position), "context": len(self.context)}
        if any(size != n for size in sizes.values()):
            raise SchemaError(describe(self.source, f"{n} rows in every field (as actions)",
                                       ", ".join(f"{k} {v}" for k, v in sizes.items())))
        rules = [
            ("action", ~np.isin(self.action, np.arange(self.n_actions)),
             f"action indices in [0, {self.n_actions - 1}]"),
            ("position", ~np.isin(self.position, np.arange(self.len_list)),
             f"positions in [0, {self.len_list - 1}]"),
            ("propensity", ~((self.propensity > 0) & (self.propensity <= 1)),
             "propensities in (0, 1]"),
            ("reward", ~np.isfinite(self.reward), "finite rewards"),
        ]
        for name, bad, expected in rules:
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                value = getattr(self, name)[i]
                value = value.item() if isinstance(value, np.generic) else value
                raise SchemaError(describe(self.source, expected,
                                           f"{value!r} in row {i + 1} "
                                           f"({int(bad.sum()):,} such rows)"))

    @property
    def binary_reward(self) -> bool:
        return bool(np.isin(self.reward, (0.0, 1.0)).all())

    def take(self, rows: np.ndarray) -> BanditLog:
        """The log restricted to ``rows`` (indices, repeats allowed: a bootstrap resample)."""
        return BanditLog(
            self.action[rows],
            self.reward[rows],
            self.propensity[rows],
            self.position[rows],
            self.context[rows],
            None if self.action_context is None else self.action_context[rows],
            self.n_actions,
            self.len_list,
            self.source,
        )


def read_log(path: str | Path, format: str = "decisions") -> BanditLog:
    """Read a log of logged bandit feedback.

    Parameters
    ----------
    path : str or Path
        CSV (plain or gzip-compressed) or Parquet file.
    format : {"decisions", "obd"}, default="decisions"
        marketloop's decisions log, or an Open Bandit Dataset log as published.

    Returns
    -------
    BanditLog

    Raises
    ------
    IngestError
        If the file cannot be read.
    SchemaError
        If columns are missing, or propensities are missing, zero or out of (0, 1].
    """
    path = Path(path)
    frame = _read_frame(path)
    if format == "obd":
        return _from_obd(frame, str(path))
    if format == "decisions":
        return _from_decisions(frame, str(path))
    raise SchemaError(describe("--format", "decisions or obd", repr(format)))


def _read_frame(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise IngestError(describe(str(path), "an existing log file", "nothing at that path"))
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path, compression="infer", low_memory=False)
    except Exception as exc:  # pandas/pyarrow/zlib errors: the file is not a readable table
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise IngestError(
            describe(str(path), "a CSV (plain or .gz) or Parquet log", first)
        ) from None


def _require(frame: pd.DataFrame, columns: tuple[str, ...], source: str, layout: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        hint = (
            "Off-policy evaluation needs the probability with which each logged action was chosen."
            if any("propensity" in c for c in missing)
            else ""
        )
        raise SchemaError(
            describe(
                source, f"{layout} columns {', '.join(columns)}", f"no {', '.join(missing)}", hint
            )
        )


def _numbers(frame: pd.DataFrame, column: str, source: str) -> np.ndarray:
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise SchemaError(
            describe(f"{source} column {column}", "a number on every row", _rows(bad, frame))
        )
    return values


def _rows(bad: np.ndarray, frame: pd.DataFrame) -> str:
    """'rows 3, 17, 40 (and 12 more)': 1-based data rows, header excluded."""
    shown = ", ".join(str(int(i) + 1) for i in bad[:5])
    more = f" (and {bad.size - 5} more)" if bad.size > 5 else ""
    return f"{'row' if bad.size == 1 else 'rows'} {shown}{more} (of {len(frame):,})"


def _check_propensity(p: np.ndarray, frame: pd.DataFrame, source: str, column: str) -> None:
    bad = np.flatnonzero((p <= 0) | (p > 1))
    if bad.size:
        raise SchemaError(
            describe(
                f"{source} column {column}",
                "a probability in (0, 1] for every logged action (zero means the logging "
                "policy could not have chosen it)",
                f"{_shown(p[bad[0]])} on {_rows(bad, frame)}",
            )
        )


def _actions(frame: pd.DataFrame, column: str, source: str) -> np.ndarray:
    values = _numbers(frame, column, source)
    bad = np.flatnonzero((values < 0) | (values != np.round(values)))
    if bad.size:
        raise SchemaError(
            describe(f"{source} column {column}", "an action index 0, 1, 2, ...", _rows(bad, frame))
        )
    return values.astype(np.int64)


def _from_decisions(frame: pd.DataFrame, source: str) -> BanditLog:
    _require(frame, DECISIONS_COLUMNS, source, "decisions-log")
    action = _actions(frame, "action", source)
    reward = _numbers(frame, "reward", source)
    propensity = _numbers(frame, "propensity", source)
    _check_propensity(propensity, frame, source, "propensity")
    position = np.zeros(len(frame), dtype=np.int64)
    if "position" in frame.columns:
        position = _actions(frame, "position", source)
    rest = frame.drop(columns=[*DECISIONS_COLUMNS, "position"], errors="ignore")
    context = _context(rest, frame, source)
    return BanditLog(
        action,
        reward,
        propensity,
        position,
        context,
        None,
        int(action.max()) + 1 if len(action) else 0,
        int(position.max()) + 1 if len(position) else 1,
        source,
    )


def _context(rest: pd.DataFrame, frame: pd.DataFrame, source: str) -> np.ndarray:
    """The context features: every other column that holds numbers.

    A column with no number in it (an id, a timestamp) is not a feature; a column of numbers
    with a blank or a word in it is refused, naming the rows, rather than dropped or zeroed.
    """
    columns = []
    for name in rest.columns:
        values = pd.to_numeric(rest[name], errors="coerce")
        numeric = values.notna() & np.isfinite(values.fillna(0).to_numpy(dtype=float))
        if not numeric.any():
            continue
        bad = np.flatnonzero(~numeric.to_numpy())
        if bad.size:
            raise SchemaError(describe(
                f"{source} context column {name}", "a finite number in every row (the "
                "policies read every column of numbers as a feature)",
                f"{_shown(rest[name].iloc[bad[0]])} on {_rows(bad, frame)}",
                "Fill or drop the rows, or drop the column."))
        columns.append(values.to_numpy(dtype=float))
    return np.column_stack(columns) if columns else np.zeros((len(rest), 0))


def _shown(value: object) -> str:
    """A cell for a message: ``'zz'``, ``inf``, ``a blank`` (not ``np.float64(nan)``)."""
    if pd.isna(value):
        return "a blank"
    item = getattr(value, "item", None)
    return repr(item() if callable(item) else value)


def _from_obd(frame: pd.DataFrame, source: str) -> BanditLog:
    _require(frame, OBD_COLUMNS, source, "Open Bandit Dataset")
    affinity_cols = [c for c in frame.columns if str(c).startswith(OBD_AFFINITY)]
    action = _actions(frame, "item_id", source)
    # the item count comes from the data: one affinity column per item, else the largest id
    n_items = len(affinity_cols) if affinity_cols else int(action.max()) + 1
    beyond = np.flatnonzero(action >= n_items)
    if beyond.size:
        raise SchemaError(
            describe(
                f"{source} column item_id",
                f"item ids below {n_items} (one user-item_affinity column per item)",
                _rows(beyond, frame),
            )
        )
    position = _actions(frame, "position", source)
    if len(position) and position.min() >= 1:  # published 1-based (left, centre, right)
        position = position - 1
    propensity = _numbers(frame, "propensity_score", source)
    _check_propensity(propensity, frame, source, "propensity_score")
    users = frame[[c for c in frame.columns if str(c).startswith("user_feature")]]
    context = pd.get_dummies(users.astype(str), drop_first=True).to_numpy(dtype=float)
    order = sorted(affinity_cols, key=lambda c: int(str(c)[len(OBD_AFFINITY) :]))
    affinity = frame[order].to_numpy(dtype=float) if order else None
    return BanditLog(
        action,
        _numbers(frame, "click", source),
        propensity,
        position,
        context,
        affinity,
        n_items,
        int(position.max()) + 1 if len(position) else 1,
        source,
    )
