"""Policies as JSON files: ``save`` writes one, :func:`load_policy` reads it back."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from marketloop.exceptions import ConfigError, describe
from marketloop.strategy.bandits._actions import ActionSet

if TYPE_CHECKING:
    from marketloop.strategy.bandits._base import BasePolicy

#: Name of the file format and its version; a change of layout raises the version.
FORMAT = "marketloop-policy"
VERSION = 1

_REGISTRY: dict[str, type[BasePolicy]] = {}
P = TypeVar("P", bound="type[BasePolicy]")


def register(kind: str) -> Callable[[P], P]:
    """Class decorator: policies of this class are saved with ``"kind": kind``."""

    def wrap(cls: P) -> P:
        cls._kind = kind
        _REGISTRY[kind] = cls
        return cls

    return wrap


def _encode(value: object) -> object:
    """JSON-ready copy of ``value``: arrays become ``{"__array__": ...}``."""
    if isinstance(value, np.ndarray):
        return {"__array__": value.tolist(), "dtype": value.dtype.str}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if isinstance(value, ActionSet):
        return {"__actions__": _encode(value.to_dict())}
    return value


def _decode(value: object) -> object:
    if isinstance(value, dict):
        if "__array__" in value:
            return np.asarray(value["__array__"], dtype=np.dtype(value.get("dtype", "<f8")))
        if "__actions__" in value:
            spec = value["__actions__"]
            return ActionSet(spec["actions"], cyclic=spec.get("cyclic"))
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def save_policy(policy: BasePolicy, path: str | os.PathLike[str]) -> None:
    """Write ``policy`` to ``path`` as JSON (atomically: a temporary file, then a rename)."""
    document = {
        "format": FORMAT,
        "version": VERSION,
        "kind": policy._kind,
        "params": _encode(policy._params_dict()),
        "state": _encode(policy._state_dict()),
    }
    if hasattr(policy, "rng_"):
        document["rng"] = policy.rng_.bit_generator.state
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(json.dumps(document), encoding="utf-8")
    os.replace(tmp, target)


def _read(path: Path) -> dict[str, object]:
    where = f"policy file {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(describe(where, "an existing file", "no such file",
                                   "Check the path or save the policy first.")) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(describe(where, "a readable UTF-8 JSON file", str(exc))) from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(describe(where, "valid JSON", f"{exc.msg} at line {exc.lineno} "
                                   f"column {exc.colno}", "The file is damaged; save the "
                                   "policy again.")) from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        found = (repr(document.get("format")) if isinstance(document, dict)
                 else type(document).__name__)
        raise ConfigError(describe(where, f'"format": "{FORMAT}"', found,
                                   "Is this a file written by policy.save?"))
    if document.get("version") != VERSION:
        raise ConfigError(describe(where, f'"version": {VERSION}',
                                   repr(document.get("version")),
                                   "Save the policy again with this marketloop version."))
    for key in ("kind", "params", "state"):
        if key not in document:
            raise ConfigError(describe(where, f'a "{key}" field',
                                       f"fields {', '.join(map(str, document))}"))
    return document


def load_policy(path: str | os.PathLike[str]) -> BasePolicy:
    """Read a policy written by ``policy.save(path)``.

    Parameters
    ----------
    path : str or path-like
        The JSON file.

    Returns
    -------
    BasePolicy
        A policy of the saved kind, with the saved parameters and learned state; it makes
        the same decisions as the saved one.

    Raises
    ------
    ConfigError
        If the file is missing, not JSON, not a policy file, of another format version, of
        an unknown kind, or its parameters or state do not fit the kind.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from marketloop.strategy.bandits import BernoulliTS, load_policy
    >>> policy = BernoulliTS(3).fit(None, [0, 0, 1], [1.0, 0.0, 1.0])
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "bts.json"
    >>> policy.save(path)
    >>> load_policy(path).alpha_.tolist()
    [2.0, 2.0, 1.0]
    """
    import marketloop.strategy.bandits  # noqa: F401  (registers every kind)

    path = Path(path)
    document = _read(path)
    kind = document["kind"]
    where = f"policy file {path}"
    if kind not in _REGISTRY:
        raise ConfigError(describe(where, f"a kind among {', '.join(sorted(_REGISTRY))}",
                                   repr(kind)))
    cls = _REGISTRY[str(kind)]
    params, state = _decode(document["params"]), _decode(document["state"])
    if not isinstance(params, dict) or not isinstance(state, dict):
        raise ConfigError(describe(where, '"params" and "state" objects',
                                   f"{type(params).__name__} and {type(state).__name__}"))
    try:
        policy = cls(**params)
    except TypeError as exc:
        raise ConfigError(describe(where, f"parameters of {cls.__name__}", str(exc))) from None
    try:
        policy._load_state(state, where=where)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(describe(where, f"the learned state of a {cls.__name__}",
                                   f"{type(exc).__name__}: {exc}")) from None
    if "rng" in document:
        try:
            rng = np.random.default_rng()
            rng.bit_generator.state = document["rng"]
        except (TypeError, ValueError, KeyError) as exc:
            raise ConfigError(describe(where, "a numpy bit generator state under \"rng\"",
                                       str(exc))) from None
        policy.rng_ = rng
    return policy


def state_array(state: dict[str, object], key: str, shape: tuple[int, ...], *,
                where: str) -> np.ndarray:
    """``state[key]`` as a float64 array of ``shape``, or :class:`ConfigError`."""
    if key not in state:
        raise ConfigError(describe(where, f'state field "{key}"',
                                   f"fields {', '.join(map(str, state))}"))
    arr = np.asarray(state[key], dtype=np.float64)
    if arr.shape != shape or not np.isfinite(arr).all():
        raise ConfigError(describe(where, f'"{key}" of shape {shape} with finite values',
                                   f"shape {arr.shape}" if arr.shape != shape else
                                   f"{int((~np.isfinite(arr)).sum())} NaN or inf values"))
    return arr
