"""Uplift models on disk: ``model.save(path)`` writes one, :func:`load_model` reads it back."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING

import joblib

from marketloop._validation import check_fitted
from marketloop.exceptions import ConfigError, describe

if TYPE_CHECKING:
    from marketloop.strategy.uplift._base import UpliftModel

#: Name of the file format and its version; a change of layout raises the version.
FORMAT = "marketloop-uplift"
VERSION = 1


def save_model(model: UpliftModel, path: str | os.PathLike[str]) -> None:
    """Write a fitted ``model`` to ``path`` (joblib; a temporary file, then a rename)."""
    check_fitted(model)
    document = {"format": FORMAT, "version": VERSION, "kind": type(model).__name__,
                "model": model}
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    joblib.dump(document, tmp)
    os.replace(tmp, target)


def load_model(path: str | os.PathLike[str]) -> UpliftModel:
    """Read an uplift model written by ``model.save(path)``.

    The file is a joblib pickle: load only files you wrote yourself or otherwise trust,
    since unpickling can run code.

    Parameters
    ----------
    path : str or path-like
        The file.

    Returns
    -------
    UpliftModel
        The fitted model, predicting exactly as before it was saved.

    Raises
    ------
    ConfigError
        If the file is missing, unreadable, not an uplift model file, or of another version.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from marketloop.strategy.uplift import TLearner, load_model
    >>> rng = np.random.default_rng(0)
    >>> X, t = rng.normal(size=(500, 2)), rng.choice(["control", "coupon"], size=500)
    >>> model = TLearner(random_state=0).fit(X, t, rng.random(500) < 0.3)
    >>> path = os.path.join(tempfile.mkdtemp(), "uplift.joblib")
    >>> model.save(path)
    >>> bool((load_model(path).predict(X) == model.predict(X)).all().all())
    True
    """
    from marketloop.strategy.uplift._base import UpliftModel

    where = f"uplift model file {path}"
    target = Path(path)
    if not target.is_file():
        raise ConfigError(describe(where, "an existing file", "no such file",
                                   "Check the path or save the model first."))
    try:
        document = joblib.load(target)
    except (pickle.UnpicklingError, EOFError, ValueError, KeyError, IndexError,
            AttributeError, ImportError, OSError) as exc:
        raise ConfigError(describe(where, "a file written by model.save",
                                   f"an unreadable file ({type(exc).__name__}: {exc})",
                                   "The file is damaged or of another kind; save the model "
                                   "again.")) from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        found = (repr(document.get("format")) if isinstance(document, dict)
                 else f"a pickled {type(document).__name__}")
        raise ConfigError(describe(where, f'"format": "{FORMAT}"', found,
                                   "Is this a file written by model.save?"))
    if document.get("version") != VERSION:
        raise ConfigError(describe(where, f'"version": {VERSION}', repr(document.get("version")),
                                   "Save the model again with this marketloop version."))
    model = document.get("model")
    if not isinstance(model, UpliftModel):
        raise ConfigError(describe(where, "an uplift model in the file",
                                   type(model).__name__))
    return model
