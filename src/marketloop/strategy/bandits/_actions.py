"""An action set: actions described by attributes, encoded as features for shared models."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from marketloop.exceptions import ConfigError, describe

Value = str | int | float | bool | None
#: Attributes that name an action and never become features.
LABEL_KEYS = ("name",)


def _is_number(v: Value) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)


class ActionSet:
    """Actions as attribute dicts, e.g. ``{"offer": "pct10", "hour": 18, "discount": 0.1}``.

    Features (for shared linear models): text and boolean attributes are one-hot encoded,
    numbers scaled to [0, 1] over the set, and attributes named in ``cyclic`` become
    ``sin``/``cos`` of ``2 pi value / period`` (a send hour is close to its neighbours
    across midnight). An attribute that is the same for every action carries no
    information and is dropped. ``name`` labels an action and is never a feature.

    Parameters
    ----------
    actions : sequence of dict
        One dict per action, in index order.
    cyclic : dict of str to float or None, default=None
        Periodic numeric attributes and their period, e.g. ``{"hour": 24}``.

    Attributes
    ----------
    features : numpy.ndarray of shape (n_actions, n_features)
        The encoded attributes.
    feature_names : list of str
        One name per feature column (``offer=pct10``, ``hour_sin``, ``depth``).
    discount : numpy.ndarray of shape (n_actions,)
        The ``discount`` attribute (0 where absent), read by ``max_discount``.

    Examples
    --------
    >>> from marketloop.strategy.bandits import ActionSet
    >>> actions = ActionSet.grid(offer=["none", "pct10"], hour=[9, 18], cyclic={"hour": 24})
    >>> len(actions), actions.feature_names
    (4, ['offer=none', 'offer=pct10', 'hour_sin', 'hour_cos'])
    """

    def __init__(self, actions: Sequence[Mapping[str, Value]], *,
                 cyclic: Mapping[str, float] | None = None) -> None:
        records = [dict(a) for a in actions]
        if not records or not all(isinstance(a, Mapping) for a in actions):
            raise ConfigError(describe("ActionSet", "a non-empty list of dicts (one per action)",
                                       f"{type(actions).__name__} of {len(records)} items"))
        self.records = records
        self.cyclic = dict(cyclic or {})
        self.features, self.feature_names = self._encode()
        self.discount = np.array([float(a.get("discount", 0.0) or 0.0) for a in records])

    @classmethod
    def grid(cls, *, cyclic: Mapping[str, float] | None = None,
             **levels: Sequence[Value]) -> ActionSet:
        """Every combination of the given attribute levels, the first attribute slowest."""
        keys = list(levels)
        combos = itertools.product(*(levels[k] for k in keys))
        return cls([dict(zip(keys, c, strict=True)) for c in combos], cyclic=cyclic)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, *,
                   cyclic: Mapping[str, float] | None = None) -> ActionSet:
        """One action per row of ``frame``, its columns the attributes."""
        return cls(frame.to_dict("records"), cyclic=cyclic)  # type: ignore[arg-type]

    @classmethod
    def anonymous(cls, n_actions: int) -> ActionSet:
        """``n_actions`` actions known only by index (``{"action": "0"}``, ...).

        Their only feature is a one-hot of the index, so a shared model over them is a
        per-action model plus a common context effect.
        """
        return cls([{"action": str(i)} for i in range(n_actions)])

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[dict[str, Value]]:
        return iter(self.records)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ActionSet) and other.records == self.records
                and other.cyclic == self.cyclic)

    def __repr__(self) -> str:
        return f"ActionSet({len(self)} actions, features={self.feature_names})"

    @property
    def labels(self) -> list[str]:
        """A readable label per action: its ``name``, else ``key=value`` pairs."""
        return [str(a["name"]) if "name" in a else
                "|".join(f"{k}={v}" for k, v in a.items()) for a in self.records]

    def to_frame(self) -> pd.DataFrame:
        """The attributes, one row per action."""
        return pd.DataFrame(self.records)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready description; ``ActionSet(**d)`` rebuilds it."""
        return {"actions": self.records, "cyclic": self.cyclic}

    def _encode(self) -> tuple[np.ndarray, list[str]]:
        keys = list(dict.fromkeys(k for a in self.records for k in a if k not in LABEL_KEYS))
        columns: list[np.ndarray] = []
        names: list[str] = []
        for key in keys:
            values = [a.get(key) for a in self.records]
            if all(_is_number(v) for v in values):
                x = np.asarray(values, dtype=np.float64)
                if not np.isfinite(x).all():
                    raise ConfigError(describe(f"ActionSet attribute {key!r}",
                                               "finite numbers", f"{x.tolist()[:5]}"))
                if key in self.cyclic:
                    angle = 2 * math.pi * x / float(self.cyclic[key])
                    columns += [np.sin(angle), np.cos(angle)]
                    names += [f"{key}_sin", f"{key}_cos"]
                elif np.ptp(x) > 0:
                    columns.append((x - x.min()) / np.ptp(x))
                    names.append(key)
                continue
            levels = list(dict.fromkeys(map(str, values)))
            if len(levels) < 2:
                continue
            text = np.array([str(v) for v in values], dtype=object)
            for level in levels:
                columns.append((text == level).astype(np.float64))
                names.append(f"{key}={level}")
        features = (np.column_stack(columns) if columns
                    else np.zeros((len(self.records), 0)))
        return features, names


def as_action_set(actions: int | ActionSet | Sequence[Mapping[str, Value]] | pd.DataFrame,
                  *, where: str) -> ActionSet:
    """An :class:`ActionSet` from a count, a list of dicts, a frame or an ActionSet."""
    if isinstance(actions, ActionSet):
        return actions
    if isinstance(actions, int | np.integer) and not isinstance(actions, bool):
        if actions < 1:
            raise ConfigError(describe(where, "at least one action", str(actions)))
        return ActionSet.anonymous(int(actions))
    if isinstance(actions, pd.DataFrame):
        return ActionSet.from_frame(actions)
    if isinstance(actions, Sequence) and not isinstance(actions, str):
        return ActionSet(actions)
    raise ConfigError(describe(where, "a number of actions, a list of dicts, a DataFrame or "
                               "an ActionSet", type(actions).__name__))
