"""Training models from the warehouse, saving them, and scoring customers at a cut-off.

``train`` reads only what was observable at ``as_of``:

- ``clv``: paid orders before ``as_of`` -> (frequency, recency, T, monetary value) summary
  with the calibration period ending at ``as_of`` -> BG/NBD and Gamma-Gamma.
- ``churn`` and ``next-purchase``: profiles at the earlier cut-off ``as_of - horizon_days``
  with labels from ``[as_of - horizon_days, as_of)``, so the label window is fully observed
  before ``as_of``.

``predict`` scores the customers known at its ``as_of`` with the latest saved model of each
kind (trained at or before that ``as_of``) and writes :mod:`._store`'s ``predictions``.
A saved model is ``<kind>-<as_of>-<version>.pkl`` (pickle) beside a ``.json`` of metadata;
the version is a short hash of the fitted parameters, ``as_of`` and marketloop's version.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
from ibis.backends import BaseBackend

from marketloop.exceptions import ConfigError, SchemaError, describe

__all__ = [
    "KINDS",
    "ModelKind",
    "TrainedModel",
    "latest_model",
    "load_model",
    "predict_model",
    "save_model",
    "train_model",
]

ModelKind = Literal["clv", "churn", "next-purchase"]
KINDS: tuple[str, ...] = get_args(ModelKind)

#: Horizons of the CLV quantities: weeks of expected purchases, months of discounted value.
CLV_WEEKS = 52
CLV_MONTHS = 12


@dataclass(frozen=True)
class TrainedModel:
    """A fitted model of one kind with what it was trained on."""

    kind: str
    as_of: datetime
    version: str
    model: Any
    metadata: dict[str, Any] = field(default_factory=dict)

    def file_stem(self) -> str:
        """``<kind>-<as_of>-<version>``; ``as_of`` is a date unless it has a time of day."""
        return f"{self.kind}-{_stamp(self.as_of)}-{self.version}"


def _stamp(moment: datetime) -> str:
    if moment == datetime(moment.year, moment.month, moment.day):
        return f"{moment:%Y-%m-%d}"
    return f"{moment:%Y-%m-%dT%H%M%S}"


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ConfigError(describe("model kind", f"one of {', '.join(KINDS)}", repr(kind)))
    return kind


def _check_horizon(horizon_days: int) -> int:
    if isinstance(horizon_days, bool) or not isinstance(horizon_days, int) or horizon_days < 1:
        raise ConfigError(describe("--horizon-days", "an integer number of days >= 1",
                                   repr(horizon_days)))
    return horizon_days


# ----- reading the warehouse ---------------------------------------------------------------
def _orders_table(con: BaseBackend) -> Any:
    if "orders" not in set(con.list_tables()):
        raise SchemaError(describe("warehouse", "a table orders", "none",
                                   "Load the shop's data with `marketloop ingest` first."))
    return con.table("orders")


def _paid_before(con: BaseBackend, as_of: datetime) -> pd.DataFrame:
    orders = _orders_table(con)
    paid = orders.filter(
        (orders.status == "paid") & orders.customer_id.notnull() & (orders.ordered_at < as_of)
    ).select("customer_id", "ordered_at", "amount")
    frame = paid.to_pandas()
    frame["amount"] = pd.to_numeric(frame["amount"], errors="coerce").fillna(0.0).clip(lower=0)
    return frame


def _last_order(con: BaseBackend) -> datetime | None:
    orders = _orders_table(con)
    value = orders.ordered_at.max().to_pyarrow().as_py()
    return None if value is None else pd.Timestamp(value).tz_localize(None).to_pydatetime()


def clv_summary(con: BaseBackend, as_of: datetime) -> pd.DataFrame:
    """Weekly (frequency, recency, T, monetary_value) of paid orders before ``as_of``.

    The calibration period ends on the last day before ``as_of``; ``T`` runs to it even when
    the data's last purchase is earlier.
    """
    from marketloop.predict._clv_summary import summary_from_transactions

    tx = _paid_before(con, as_of)
    if tx.empty:
        raise SchemaError(describe(f"paid orders before {as_of:%Y-%m-%d}", "at least one",
                                   "none", "Choose a later --as-of."))
    cal_end = (pd.Timestamp(as_of) - pd.Timedelta(microseconds=1)).normalize()
    last = pd.Timestamp(tx["ordered_at"].max()).tz_localize(None).normalize()
    summary = summary_from_transactions(
        tx, amount_col="amount", calibration_end=min(cal_end, last), freq="W"
    )
    if last < cal_end:
        summary["T"] = summary["T"] + (cal_end - last).days / 7.0
    return summary


def _profiles(con: BaseBackend, as_of: datetime) -> pd.DataFrame:
    from marketloop.data.profiles import build_profiles
    from marketloop.predict.churn import profiles_frame

    _orders_table(con)
    frame = profiles_frame(build_profiles(con, as_of=as_of))
    if frame.empty:
        raise SchemaError(describe(f"customers known before {as_of:%Y-%m-%d}", "at least one",
                                   "none", "Choose a later --as-of."))
    return frame


# ----- training ----------------------------------------------------------------------------
def train_model(
    con: BaseBackend,
    kind: str,
    *,
    as_of: datetime | date | str,
    horizon_days: int = 90,
    random_state: int = 0,
) -> TrainedModel:
    """Fit a model of ``kind`` on what the warehouse held before ``as_of``.

    Parameters
    ----------
    con : ibis connection
        The warehouse with the canonical tables.
    kind : {"clv", "churn", "next-purchase"}
        The model.
    as_of : datetime, date or str
        The training cut-off: no row at or after it is read.
    horizon_days : int, default=90
        Label window of ``churn`` and ``next-purchase`` (profiles are built at
        ``as_of - horizon_days``); recorded but unused for ``clv``.
    random_state : int, default=0
        Seed of the boosted models.

    Returns
    -------
    TrainedModel
        The fitted model, its version and metadata.

    Raises
    ------
    ConfigError
        ``kind``, ``as_of`` or ``horizon_days`` is invalid, or the orders end before ``as_of``
        so the label window is not observed.
    SchemaError
        The warehouse has no orders.
    """
    from marketloop.data.profiles import parse_as_of

    _check_kind(kind)
    horizon = _check_horizon(horizon_days)
    moment = parse_as_of(as_of, where="--as-of")
    meta: dict[str, Any] = {"horizon_days": horizon, "random_state": random_state}
    if kind == "clv":
        from marketloop.predict.clv import BetaGeoModel, GammaGammaModel

        summary = clv_summary(con, moment)
        model: Any = {"bgnbd": BetaGeoModel().fit(summary),
                      "gamma_gamma": GammaGammaModel().fit(summary)}
        fitted = {name: m.params_ for name, m in model.items()}
        meta.update(customers=len(summary), repeat_buyers=int((summary["frequency"] > 0).sum()),
                    params=fitted)
    else:
        last = _last_order(con)
        if last is None or last < moment - timedelta(days=1):
            raise ConfigError(
                describe(
                    "--as-of",
                    f"a date at most one day after the last order, so the {horizon}-day label "
                    "window before it is observed",
                    f"{moment:%Y-%m-%d} (last order {last or 'none'})",
                    "Choose an earlier --as-of.",
                )
            )
        cutoff = moment - timedelta(days=horizon)
        X = _profiles(con, cutoff)
        orders = _orders_table(con)
        if kind == "churn":
            from marketloop.predict._labels import churn_labels
            from marketloop.predict.churn import ChurnModel

            y = churn_labels(orders, X.index, as_of=cutoff, horizon_days=horizon,
                             observed_until=moment)
            model = ChurnModel(horizon_days=horizon, random_state=random_state).fit(X, y)
            meta.update(base_rate=model.base_rate_)
        else:
            from marketloop.predict._labels import next_purchase_labels
            from marketloop.predict.next_purchase import NextPurchaseModel

            labels = next_purchase_labels(orders, X.index, as_of=cutoff, horizon_days=horizon,
                                          observed_until=moment)
            model = NextPurchaseModel(horizon_days=horizon, random_state=random_state)
            model.fit(X, labels)
            meta.update(base_rate=float(labels["purchased"].mean()))
        fitted = {"params": model.get_params(),
                  "trees": hashlib.sha256(model.booster_.booster_.model_to_string().encode())
                  .hexdigest()}
        meta.update(customers=len(X), profiles_as_of=cutoff.isoformat(),
                    features=list(model.feature_names_in_))
    version = _version(kind, moment, fitted)
    return TrainedModel(kind, moment, version, model, meta)


def _version(kind: str, as_of: datetime, fitted: object) -> str:
    from marketloop import __version__

    text = json.dumps({"kind": kind, "as_of": as_of.isoformat(), "fitted": fitted,
                       "marketloop": __version__}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# ----- saving and loading ------------------------------------------------------------------
def save_model(trained: TrainedModel, models_dir: str | Path) -> Path:
    """Write ``<kind>-<as_of>-<version>.pkl`` and its ``.json`` metadata; returns the pickle."""
    from marketloop import __version__

    folder = Path(models_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{trained.file_stem()}.pkl"
        path.write_bytes(pickle.dumps(trained.model, protocol=pickle.HIGHEST_PROTOCOL))
        meta = {
            "kind": trained.kind,
            "as_of": trained.as_of.isoformat(),
            "version": trained.version,
            "file": path.name,
            "marketloop": __version__,
            "created_at": datetime.now(UTC).isoformat(),
            **trained.metadata,
        }
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2, default=str) + "\n",
                                             encoding="utf-8")
    except OSError as exc:
        raise ConfigError(describe(f"--models-dir {folder}", "a writable folder",
                                   str(exc))) from None
    return path


def load_model(json_path: str | Path) -> TrainedModel:
    """The model described by a saved ``.json`` (its pickle lies beside it).

    Raises
    ------
    ConfigError
        If the metadata or the pickle is missing, damaged, or holds another kind of model.
    """
    path = Path(json_path)
    expected = "a model saved by `marketloop train`"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(describe(str(path), expected, _first_line(exc))) from None
    kind, as_of = _meta_fields(path, meta)
    pickled = path.parent / str(meta["file"])
    try:
        model = pickle.loads(pickled.read_bytes())  # noqa: S301 - our own files
    except Exception as exc:  # truncated (EOFError), damaged, or of another version
        raise ConfigError(describe(str(pickled), f"the pickled {kind} model its .json names",
                                   f"{type(exc).__name__}: {_first_line(exc)}",
                                   "Train it again with `marketloop train`.")) from None
    if not _is_kind(kind, model):
        raise ConfigError(describe(str(pickled), f"a {kind} model",
                                   f"a {type(model).__name__}",
                                   "Train it again with `marketloop train`."))
    return TrainedModel(kind, as_of, str(meta["version"]), model, meta)


def _meta_fields(path: Path, meta: object) -> tuple[str, datetime]:
    """The kind and training time of a model's metadata, checked."""
    expected = "a model saved by `marketloop train` (kind, as_of, version, file)"
    if not isinstance(meta, dict) or not {"kind", "as_of", "version", "file"} <= set(meta):
        found = sorted(meta) if isinstance(meta, dict) else type(meta).__name__
        raise ConfigError(describe(str(path), expected, f"{found}"))
    if meta["kind"] not in KINDS:
        raise ConfigError(describe(str(path), f"a kind of {', '.join(KINDS)}",
                                   repr(meta["kind"])))
    try:
        as_of = datetime.fromisoformat(str(meta["as_of"]))
    except ValueError:
        raise ConfigError(describe(f"{path} as_of", "an ISO time",
                                   repr(meta["as_of"]))) from None
    if as_of.tzinfo is not None:  # training times are naive UTC
        as_of = as_of.astimezone(UTC).replace(tzinfo=None)
    return str(meta["kind"]), as_of


def _is_kind(kind: str, model: object) -> bool:
    if kind == "clv":
        return isinstance(model, dict) and {"bgnbd", "gamma_gamma"} <= set(model)
    needs = ("predict", "expected_days", "horizon_days") if kind == "next-purchase" else (
        "predict",)
    return not isinstance(model, dict) and all(hasattr(model, n) for n in needs)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def latest_model(models_dir: str | Path, kind: str, *, as_of: datetime) -> TrainedModel | None:
    """The saved model of ``kind`` with the latest training ``as_of`` at or before ``as_of``.

    A metadata file that cannot be read is an error, not skipped: an older model would be
    used in its place without a word.
    """
    folder = Path(models_dir)
    best: tuple[datetime, str, Path] | None = None
    for path in sorted(folder.glob(f"{kind}-*.json")) if folder.is_dir() else []:
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(describe(str(path), "a model's metadata saved by `marketloop "
                                       "train`", _first_line(exc),
                                       "Remove the file or train again.")) from None
        found_kind, trained_at = _meta_fields(path, meta)
        if found_kind != kind or trained_at > as_of:
            continue
        key = (trained_at, str(meta.get("created_at", "")), path)
        if best is None or key[:2] > best[:2]:
            best = key
    return None if best is None else load_model(best[2])


# ----- scoring -----------------------------------------------------------------------------
def predict_model(con: BaseBackend, trained: TrainedModel, *, as_of: datetime) -> pd.DataFrame:
    """Each customer's quantities at ``as_of``, one column per quantity.

    ``clv`` scores customers with a paid order before ``as_of``: ``expected_purchases_52w``,
    ``p_alive``, ``expected_spend``, ``clv_12m``. ``churn`` and ``next-purchase`` score every
    customer known before ``as_of``: ``p_churn``; ``p_purchase_<h>d`` and
    ``days_to_purchase_<h>d`` (median days, given a purchase within the horizon).
    """
    if trained.kind == "clv":
        summary = clv_summary(con, as_of)
        bg, gg = trained.model["bgnbd"], trained.model["gamma_gamma"]
        spend = gg.expected_spend(summary)
        out = pd.DataFrame(
            {
                f"expected_purchases_{CLV_WEEKS}w": bg.predict(summary, horizon=float(CLV_WEEKS)),
                "p_alive": bg.probability_alive(summary),
                "expected_spend": spend,
                f"clv_{CLV_MONTHS}m": bg.clv(summary, spend, months=CLV_MONTHS),
            }
        )
    else:
        X = _profiles(con, as_of)
        model = trained.model
        if trained.kind == "churn":
            out = model.predict(X).to_frame("p_churn")
        else:
            h = model.horizon_days
            out = pd.DataFrame({f"p_purchase_{h}d": model.predict(X),
                                f"days_to_purchase_{h}d": model.expected_days(X)})
    if not np.isfinite(out.to_numpy(dtype=float)).all():
        bad = out.columns[~np.isfinite(out.to_numpy(dtype=float)).all(axis=0)][0]
        raise ConfigError(describe(f"{trained.kind} model {trained.version} predictions",
                                   "finite values", f"NaN or infinite {bad}"))
    out.index.name = "customer_id"
    return out


def trained_kinds(models_dir: str | Path, kinds: Sequence[str] = KINDS) -> list[str]:
    """The kinds with at least one saved model in ``models_dir``."""
    folder = Path(models_dir)
    return [k for k in kinds if folder.is_dir() and any(folder.glob(f"{k}-*.json"))]
