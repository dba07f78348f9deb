"""Reading an analyst's table file (CSV plain or gzip-compressed, or Parquet) at the CLI edge."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from marketloop.exceptions import ConfigError, IngestError, describe

if TYPE_CHECKING:
    import pandas as pd


def read_frame(path: Path) -> pd.DataFrame:
    """Every column of ``path`` as strings; a missing or unreadable file is an IngestError.

    CSV (plain, or compressed as its suffix says, e.g. ``.csv.gz``) keeps empty fields as
    empty strings, so the caller decides what a blank means; Parquet columns are cast to
    strings the same way.
    """
    import pandas as pd

    if not path.is_file():
        raise IngestError(describe(str(path), "an existing file", "nothing at that path"))
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path).astype("string")
        return pd.read_csv(path, dtype=str, keep_default_na=False, compression="infer")
    except Exception as exc:  # pandas, pyarrow, zlib: not a readable table
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise IngestError(
            describe(str(path), "a CSV (plain or .gz) or Parquet file", first)
        ) from None


def output_folder(path: Path, option: str = "--out") -> Path:
    """``path`` as a folder to write into, created if missing; else a ConfigError."""
    if path.exists() and not path.is_dir():
        raise ConfigError(describe(option, "a folder to write into", f"the file {path}"))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(describe(option, "a folder that can be created",
                                   f"{path} ({exc.strerror or type(exc).__name__})")) from None
    return path


def output_file(path: Path, option: str = "--out") -> Path:
    """``path`` as a file to write, in an existing folder; else a ConfigError."""
    if path.is_dir():
        raise ConfigError(describe(option, "a file name to write", f"the folder {path}"))
    if not path.parent.is_dir():
        raise ConfigError(describe(option, "a file in an existing folder",
                                   f"no folder {path.parent}"))
    return path
