"""Checks shared by estimators and policies."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from marketloop.exceptions import ConfigError, NotFittedError, SchemaError, describe


def check_frame(frame: pd.DataFrame, *, required: Iterable[str], where: str) -> pd.DataFrame:
    """Return ``frame`` if it is a DataFrame holding every ``required`` column."""
    if not isinstance(frame, pd.DataFrame):
        raise SchemaError(describe(where, "a pandas DataFrame", type(frame).__name__))
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise SchemaError(
            describe(
                where,
                f"columns {', '.join(required)}",
                f"{', '.join(map(str, frame.columns)) or 'no columns'} "
                f"({', '.join(missing)} missing)",
            )
        )
    return frame


def check_fitted(estimator: object) -> None:
    """Raise :class:`NotFittedError` unless ``estimator`` has learned attributes (``*_``)."""
    fitted = [k for k in vars(estimator) if k.endswith("_") and not k.startswith("__")]
    if not fitted:
        name = type(estimator).__name__
        raise NotFittedError(f"This {name} is not fitted yet; call fit before using it.")


def check_in_range(
    owner: object,
    name: str,
    value: float,
    *,
    low: float | None = None,
    high: float | None = None,
) -> None:
    """Raise :class:`ConfigError` unless ``low <= value <= high``."""
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
        raise ConfigError(
            f"The {name!r} parameter of {type(owner).__name__} must be in the range {bounds}. "
            f"Got {value!r} instead."
        )
