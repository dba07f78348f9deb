"""The offers file: offers, their cost model, the shop's economics and per-segment limits.

A TOML file read with :mod:`tomllib` and validated by pydantic models with
``extra="forbid"``, so a misspelt field is an error rather than a silent default.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from marketloop.exceptions import ConfigError, IngestError, describe

#: Offer and segment names: they become column names (``uplift_<offer>``) in scores files.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"
OfferType = Literal["pct", "fixed", "freeship", "message"]


class Offer(BaseModel):
    """One offer a customer may get, and what it costs.

    ``depth`` means the share off for ``pct`` (0.10 = 10 % off), the amount off for
    ``fixed`` and the shipping cost the shop pays per redeemed order for ``freeship``;
    ``message`` (a contact without a discount) has depth 0. The redemption cost is paid on
    every order placed with the offer, including orders that would have happened anyway:
    ``redemption_share`` × the treated order value + ``redemption_amount``. Both default
    from ``type`` and ``depth`` (``pct``: share = depth; ``fixed``/``freeship``: amount =
    depth) and may be set explicitly, e.g. to ``margin × depth`` when the shop states its
    margin on the amount paid.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN, description="Unique name; scores columns use it.")
    type: OfferType = Field(description="pct, fixed, freeship or message.")
    depth: float = Field(0.0, ge=0.0, allow_inf_nan=False)
    channel: str | None = Field(None, description="Channel it is sent through, if fixed.")
    format: str | None = Field(None, description="Creative format (plain, visual, ...).")
    contact_cost: float = Field(0.0, ge=0.0, allow_inf_nan=False,
                                description="Paid for every contact, in the shop's currency.")
    redemption_share: float | None = Field(None, ge=0.0, le=1.0, allow_inf_nan=False)
    redemption_amount: float | None = Field(None, ge=0.0, allow_inf_nan=False)
    value_lift: float = Field(0.0, ge=-0.9, le=10.0, allow_inf_nan=False,
                              description="Relative change of the order value when treated.")
    segments: list[str] | None = Field(None, description="Eligible segments; None: everyone.")
    treatment: str | None = Field(None, description="The uplift model's label (default name).")

    @model_validator(mode="after")
    def _depth_fits_type(self) -> Offer:
        if self.type == "pct" and not self.depth < 1.0:
            raise ValueError(f"a pct offer's depth is a share below 1; found {self.depth}")
        if self.type == "message" and self.depth != 0.0:
            raise ValueError(f"a message offer has depth 0; found {self.depth}")
        return self

    @property
    def share(self) -> float:
        """Share of the treated order value paid on each redemption."""
        if self.redemption_share is not None:
            return self.redemption_share
        return self.depth if self.type == "pct" else 0.0

    @property
    def amount(self) -> float:
        """Fixed amount paid on each redemption."""
        if self.redemption_amount is not None:
            return self.redemption_amount
        return self.depth if self.type in ("fixed", "freeship") else 0.0

    @property
    def label(self) -> str:
        """The uplift model's treatment label for this offer."""
        return self.treatment or self.name


class SegmentLimit(BaseModel):
    """At most ``max_count`` customers and ``max_spend`` expected spend in one segment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    segment: str = Field(min_length=1, max_length=128)
    max_count: int | None = Field(None, ge=0)
    max_spend: float | None = Field(None, ge=0.0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _some_limit(self) -> SegmentLimit:
        if self.max_count is None and self.max_spend is None:
            raise ValueError("a limit needs max_count, max_spend or both")
        return self


class OfferBook(BaseModel):
    """The offers file: economics, the offers and the optional per-segment limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    margin: float = Field(gt=0.0, le=1.0, allow_inf_nan=False,
                          description="Gross margin rate on the order value.")
    order_value: float | None = Field(None, gt=0.0, allow_inf_nan=False,
                                      description="Expected order value when scores lack one.")
    currency: str = Field("EUR", pattern=r"^[A-Z]{3}$")
    offers: list[Offer] = Field(min_length=1)
    limits: list[SegmentLimit] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> OfferBook:
        for what, names in (("offer names", [o.name for o in self.offers]),
                            ("offer treatment labels", [o.label for o in self.offers]),
                            ("limit segments", [lim.segment for lim in self.limits])):
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"{what} must be unique; {', '.join(dup)} repeated")
        return self

    @property
    def names(self) -> list[str]:
        """Offer names in file order."""
        return [o.name for o in self.offers]


def load_offers(path: str | Path) -> OfferBook:
    """Read and validate an offers file (TOML).

    Parameters
    ----------
    path : str or Path
        The offers file.

    Returns
    -------
    OfferBook

    Raises
    ------
    IngestError
        If the file is missing or unreadable.
    ConfigError
        If it is not TOML, has an unknown field, a negative cost or any other invalid value;
        the message names the file, the field and the value.
    """
    path = Path(path)
    if not path.is_file():
        raise IngestError(describe(str(path), "an offers file (TOML)", "nothing at that path"))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise IngestError(describe(str(path), "a readable UTF-8 TOML file", str(exc))) from None
    return parse_offers(text, where=str(path))


def parse_offers(text: str | Mapping[str, object], *, where: str = "offers") -> OfferBook:
    """Validate offers given as TOML text or an already parsed mapping (see :func:`load_offers`).

    Examples
    --------
    >>> book = parse_offers('margin = 0.4\\n[[offers]]\\nname = "pct10"\\ntype = "pct"\\n'
    ...                     'depth = 0.1\\n')
    >>> book.offers[0].share, book.offers[0].amount
    (0.1, 0.0)
    """
    if isinstance(text, str):
        try:
            data: Mapping[str, object] = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(describe(where, "a TOML file", f"invalid TOML ({exc})")) from None
    else:
        data = text
    try:
        return OfferBook.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_first_problem(exc, data, where)) from None


def _first_problem(exc: ValidationError, data: Mapping[str, object], where: str) -> str:
    """One line naming the field, what it must be, and what was found."""
    err = exc.errors()[0]
    loc = _location(err["loc"], data)
    kind = err["type"]
    if kind == "extra_forbidden":
        model = _model_at(err["loc"])
        allowed = ", ".join(model.model_fields)
        return describe(f"{where}, {loc}", f"only the fields {allowed}",
                        f"an unknown field {err['loc'][-1]!r}",
                        "Remove it or fix its spelling.")
    if kind == "missing":
        return describe(f"{where}, {loc}", "this field", "nothing", "It is required.")
    message = re.sub(r"^(Value error, )", "", err["msg"])
    found = err.get("input")
    if kind == "value_error" or isinstance(found, dict):
        return f"{where}, {loc}: {message}."
    return describe(f"{where}, {loc}", message[0].lower() + message[1:], repr(found))


def _location(loc: tuple[int | str, ...], data: Mapping[str, object]) -> str:
    """``offers[2] (pct20_sms) field 'contact_cost'`` from a pydantic location."""
    parts: list[str] = []
    node: object = data
    for i, key in enumerate(loc):
        if isinstance(key, int):
            parts[-1] = f"{parts[-1]}[{key + 1}]"
            node = node[key] if isinstance(node, list) and key < len(node) else None
            name = node.get("name") or node.get("segment") if isinstance(node, dict) else None
            if name:
                parts[-1] += f" ({name})"
        else:
            is_field = i == len(loc) - 1
            parts.append(f"field {key!r}" if is_field else str(key))
            node = node.get(key) if isinstance(node, dict) else None
    return " ".join(parts) if parts else "the file"


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel]:
    """The model whose field set an unknown field was found in."""
    if len(loc) >= 3 and loc[0] == "offers":
        return Offer
    if len(loc) >= 3 and loc[0] == "limits":
        return SegmentLimit
    return OfferBook


def finite_positive(value: float, *, where: str) -> float:
    """``value`` as a float if it is a finite amount above 0, else :class:`ConfigError`."""
    try:
        amount = float(value)
    except (TypeError, ValueError):
        amount = math.nan
    if not (math.isfinite(amount) and amount > 0):
        raise ConfigError(describe(where, "a positive amount of money", repr(value),
                                   "Give the campaign's budget, e.g. --budget 5000."))
    return amount
