"""Settings: one object, from ``marketloop.toml`` and ``MARKETLOOP_*`` environment variables."""

from __future__ import annotations

import functools
import tomllib
from pathlib import Path

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from marketloop.exceptions import ConfigError, describe

DEFAULT_WAREHOUSE = "duckdb:///marketloop.duckdb"
SUPPORTED_SCHEMES = ("duckdb", "postgresql", "postgres")


class Settings(BaseSettings):
    """marketloop settings; environment variables use the ``MARKETLOOP_`` prefix."""

    model_config = SettingsConfigDict(env_prefix="MARKETLOOP_", extra="forbid")

    warehouse_url: str = Field(DEFAULT_WAREHOUSE, description="Warehouse connection URL.")
    data: Path | None = Field(None, description="Folder of real data sets (tests only).")
    currency: str = Field("EUR", min_length=3, max_length=3, description="The shop's currency.")

    @field_validator("warehouse_url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in SUPPORTED_SCHEMES:
            raise ValueError(
                f"expected a URL starting with duckdb:// or postgresql://; found {value!r}"
            )
        return value


def read_settings(path: Path | None = None) -> Settings:
    """Settings from ``path`` (TOML, optional) overlaid by the environment.

    Raises
    ------
    ConfigError
        If the file cannot be parsed or a value is invalid.
    """
    values: dict[str, object] = {}
    if path is not None:
        try:
            values = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(describe(str(path), "a readable TOML file", str(exc))) from None
    try:
        return Settings(**values)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise ConfigError(describe(f"setting {where}", "a valid value", first["msg"])) from None


@functools.cache
def load_settings() -> Settings:
    """The process's settings, read once (``marketloop.toml`` in the working folder if present)."""
    path = Path("marketloop.toml")
    return read_settings(path if path.exists() else None)
